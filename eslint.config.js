import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * lib/'s layers, bottom first (docs/architecture.md): a folder imports only from the folders below it. `sdk: false`
 * also keeps the AWS SDK out; `pure` keeps out the environment, the wall clock and node's I/O.
 */
const LAYERS = [
  { dir: 'core', sdk: false, pure: true },
  { dir: 'api', sdk: false },
  { dir: 'graph', sdk: false },
  { dir: 'ports', sdk: false },
  { dir: 'runtime', sdk: false, clock: true },
  { dir: 'coordination', sdk: false, clock: true },
  { dir: 'adapters' },
  { dir: 'connectors' },
  { dir: 'rest', sdk: false },
  { dir: 'hosts' },
  { dir: 'cli' },
];

/** One config per layer: no import of a higher layer (at any depth below lib/), and the layer's own bans. */
function layerRules() {
  return LAYERS.map((layer, i) => {
    const above = LAYERS.slice(i + 1).map((l) => l.dir);
    const upward = above.flatMap((d) => ['../', '../../', '../../../'].map((up) => `${up}${d}/*`));
    const patterns = ['@aws-lambda-powertools/*', ...(layer.sdk === false ? ['@aws-sdk/*'] : []), ...(layer.pure ? ['node:*', 'fs', 'path', 'http'] : []), ...upward];
    const properties = layer.pure || layer.clock
      ? [
          { object: 'Date', property: 'now', message: `lib/${layer.dir} takes time from a Clock or from its events.` },
          { object: 'process', property: 'env', message: `lib/${layer.dir} reads no environment.` },
        ]
      : [];
    return {
      files: [`lib/${layer.dir}/**/*.ts`],
      rules: {
        'no-restricted-imports': ['error', { patterns: [{ group: patterns, message: `lib/${layer.dir} may import only the layers below it (${LAYERS.slice(0, i).map((l) => l.dir).join(', ') || 'none'}); see docs/architecture.md.` }] }],
        ...(properties.length > 0 ? { 'no-restricted-properties': ['error', ...properties] } : {}),
      },
    };
  });
}

export default tseslint.config(
  { ignores: ['node_modules', '.floe', 'cdk.out', 'dist', '.venv', '.cache', '.scratch'] },
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
  ...layerRules(),
  { files: ['bin/**/*.js'], languageOptions: { globals: { process: 'readonly', console: 'readonly' } } },
);
