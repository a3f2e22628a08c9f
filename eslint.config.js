import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules', '.floe', 'cdk.out', 'dist', '.venv', '.cache'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // lib/ reports through log callbacks and observers; only functions/ (the Lambdas) knows Powertools.
    files: ['lib/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: ['@aws-lambda-powertools/*'] }] },
  },
  {
    // lib/core is the sans-I/O protocol core: no AWS SDK, no environment, no wall clock, no file system.
    files: ['lib/core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['@aws-sdk/*', '@aws-lambda-powertools/*', 'node:*', 'fs', 'path', 'http', '../../adapters/*', '../adapters/*'] }],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'lib/core takes time from a Clock or from its events.' },
        { object: 'process', property: 'env', message: 'lib/core reads no environment.' },
      ],
    },
  },
  {
    files: ['lib/runtime/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['@aws-sdk/*', '@aws-lambda-powertools/*', '../adapters/*', '../../adapters/*'] }],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'lib/runtime takes time from the Clock port.' },
        { object: 'process', property: 'env', message: 'lib/runtime reads no environment.' },
      ],
    },
  },
  { files: ['bin/**/*.js'], languageOptions: { globals: { process: 'readonly', console: 'readonly' } } },
);
