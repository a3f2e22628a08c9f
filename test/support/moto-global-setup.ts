/**
 * Starts the AWS-compatible emulator the AWS integration tests run against, on 127.0.0.1 and a free port, and points
 * the AWS SDK at it with AWS_ENDPOINT_URL:
 *
 * - moto server (the default), from PyPI, pinned, installed into `.cache/moto-venv` on first use;
 * - fakecloud with `FLOE_TEST_EMULATOR=fakecloud`, pinned, built from crates.io into `.cache/fakecloud-venv` on first
 *   use (its PyPI package is only a client; the server is a Rust binary, so this needs `cargo`);
 * - any emulator already running with `FLOE_AWS_ENDPOINT=<url>` (LocalStack, …): nothing is started.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const MOTO_VERSION = '5.2.5';
export const FAKECLOUD_VERSION = '0.51.0';
const root = join(import.meta.dirname, '..', '..');
const cache = join(root, '.cache');
const venv = join(cache, 'moto-venv');
const stamp = join(venv, 'floe-moto-version');
const fakecloudRoot = join(cache, 'fakecloud-venv');
const fakecloudStamp = join(fakecloudRoot, 'floe-fakecloud-version');

/** The emulators this setup can start. */
const EMULATORS = ['moto', 'fakecloud'] as const;
type Emulator = (typeof EMULATORS)[number];

function ensureMotoInstalled(): void {
  if (existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === MOTO_VERSION) return;
  mkdirSync(cache, { recursive: true });
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new Error(`moto setup: '${cmd} ${args.join(' ')}' failed with exit code ${r.status}`);
  };
  run('python3', ['-m', 'venv', venv]);
  run(join(venv, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', `moto[server]==${MOTO_VERSION}`]);
  writeFileSync(stamp, MOTO_VERSION);
}

/** Builds the pinned fakecloud server into `.cache/fakecloud-venv/bin` unless it is there; answers the binary's path. */
function ensureFakecloudInstalled(): string {
  const binary = join(fakecloudRoot, 'bin', 'fakecloud');
  if (existsSync(binary) && existsSync(fakecloudStamp) && readFileSync(fakecloudStamp, 'utf8').trim() === FAKECLOUD_VERSION) return binary;
  mkdirSync(fakecloudRoot, { recursive: true });
  if (spawnSync('cargo', ['--version'], { stdio: 'ignore' }).status !== 0) {
    throw new Error(`fakecloud setup: ${binary} is missing and building it needs cargo (https://rustup.rs); or start an emulator yourself and set FLOE_AWS_ENDPOINT`);
  }
  console.info(`fakecloud setup: building fakecloud ${FAKECLOUD_VERSION} from crates.io into ${fakecloudRoot} (once; this takes a while)`);
  const r = spawnSync('cargo', ['install', 'fakecloud', '--version', FAKECLOUD_VERSION, '--locked', '--root', fakecloudRoot], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`fakecloud setup: 'cargo install fakecloud --version ${FAKECLOUD_VERSION}' failed with exit code ${r.status}`);
  writeFileSync(fakecloudStamp, FAKECLOUD_VERSION);
  return binary;
}

/** Which emulator to start, from FLOE_TEST_EMULATOR. */
function selectedEmulator(): Emulator {
  const name = process.env.FLOE_TEST_EMULATOR || 'moto';
  if (!(EMULATORS as readonly string[]).includes(name)) throw new Error(`FLOE_TEST_EMULATOR must be one of ${EMULATORS.join(', ')}, got '${name}'`);
  return name as Emulator;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function waitReady(name: string, healthUrl: string, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  let exited = false;
  child.once('exit', () => (exited = true));
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${name} exited during start-up; see ${logFile}`);
    try {
      const res = await fetch(healthUrl);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} did not answer at ${healthUrl} within 30s`);
}

/** Starts the emulator on a free port; answers its URL and the child process. */
async function startEmulator(emulator: Emulator): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  if (emulator === 'fakecloud') {
    const binary = ensureFakecloudInstalled();
    const logFile = join(cache, 'fakecloud.log');
    const log = openSync(logFile, 'w');
    const child = spawn(binary, ['--addr', `127.0.0.1:${port}`, '--log', 'warn'], { stdio: ['ignore', log, log] });
    await waitReady('fakecloud', `${url}/_fakecloud/health`, child, logFile);
    return { url, child };
  }
  ensureMotoInstalled();
  const logFile = join(cache, 'moto.log');
  const log = openSync(logFile, 'w');
  const child = spawn(join(venv, 'bin', 'moto_server'), ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', log, log],
    env: { ...process.env, MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR: 'false' },
  });
  await waitReady('moto server', `${url}/moto-api/data.json`, child, logFile);
  // Step Functions executes state machines only when asked to, before any is created.
  await fetch(`${url}/moto-api/config`, { method: 'POST', body: JSON.stringify({ stepfunctions: { execute_state_machine: true } }) });
  return { url, child };
}

export default async function setup(): Promise<() => Promise<void>> {
  process.env.AWS_REGION ??= 'us-east-1';
  process.env.AWS_ACCESS_KEY_ID ??= 'test';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'test';
  if (process.env.FLOE_AWS_ENDPOINT) {
    process.env.AWS_ENDPOINT_URL = process.env.FLOE_AWS_ENDPOINT;
    return async () => {};
  }
  const { url, child } = await startEmulator(selectedEmulator());
  process.env.AWS_ENDPOINT_URL = url;
  return async () => {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await new Promise((r) => child.once('exit', r));
    clearTimeout(timer);
  };
}
