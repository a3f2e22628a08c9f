/**
 * Runs cfn-lint (from PyPI, pinned) on a CloudFormation template, installing it on first use into a project-local
 * virtualenv (.cache/cfn-lint-venv), as test/support/moto-global-setup.ts does for moto.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CFN_LINT_VERSION = '1.58.0';
const root = join(import.meta.dirname, '..', '..', '..');
const cache = join(root, '.cache');
const venv = join(cache, 'cfn-lint-venv');
const stamp = join(venv, 'floe-cfn-lint-version');

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`cfn-lint setup: '${cmd} ${args.join(' ')}' failed with exit code ${r.status}`);
}

/** Installs the pinned cfn-lint unless the venv has it already (the stamp file is written last). */
export function ensureCfnLintInstalled(): string {
  if (!(existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === CFN_LINT_VERSION)) {
    mkdirSync(cache, { recursive: true });
    run('python3', ['-m', 'venv', venv]);
    run(join(venv, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', `cfn-lint==${CFN_LINT_VERSION}`]);
    writeFileSync(stamp, CFN_LINT_VERSION);
  }
  return join(venv, 'bin', 'cfn-lint');
}

/** What cfn-lint said about a template. */
export interface CfnLintResult {
  readonly status: number | null;
  readonly output: string;
}

/** Lints a template file; W3005 (DependsOn already implied by a reference, common in CDK output) is ignored. */
export function cfnLint(templateFile: string): CfnLintResult {
  const bin = ensureCfnLintInstalled();
  const r = spawnSync(bin, ['--ignore-checks', 'W3005', '--', templateFile], { encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}
