/**
 * Starts moto server (an AWS-compatible emulator from PyPI, pinned) on 127.0.0.1 for the AWS integration tests,
 * installing it into a project-local virtualenv on first use, and points the AWS SDK at it with AWS_ENDPOINT_URL.
 * Set FLOE_AWS_ENDPOINT to run the same tests against another emulator (LocalStack, fakecloud) instead.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { CreateStateMachineCommand, DeleteStateMachineCommand, DescribeExecutionCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const MOTO_VERSION = '5.2.5';
const root = join(import.meta.dirname, '..', '..');
const cache = join(root, '.cache');
const venv = join(cache, 'moto-venv');
const stamp = join(venv, 'floe-moto-version');

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

async function waitReady(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  let exited = false;
  child.once('exit', () => (exited = true));
  while (Date.now() < deadline) {
    if (exited) throw new Error(`moto server exited during start-up; see ${join(cache, 'moto.log')}`);
    try {
      const res = await fetch(`${url}/moto-api/data.json`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`moto server did not answer at ${url} within 30s`);
}

export default async function setup(): Promise<() => Promise<void>> {
  process.env.AWS_REGION ??= 'us-east-1';
  process.env.AWS_ACCESS_KEY_ID ??= 'test';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'test';
  if (process.env.FLOE_AWS_ENDPOINT) {
    process.env.AWS_ENDPOINT_URL = process.env.FLOE_AWS_ENDPOINT;
    return async () => {};
  }
  ensureMotoInstalled();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log = openSync(join(cache, 'moto.log'), 'w');
  const child = spawn(join(venv, 'bin', 'moto_server'), ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', log, log],
    env: { ...process.env, MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR: 'false' },
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitReady(url, child);
    await enableStepFunctionsExecution(url);
  } catch (e) {
    await stop();
    throw e;
  }
  process.env.AWS_ENDPOINT_URL = url;
  return stop;
}

/**
 * Step Functions executes state machines only when asked to, before any is created. Fails the setup when the request
 * is refused, and when a one-state probe machine then does not run to completion (moto's config answer does not echo
 * the Step Functions setting), since every coordinator test would otherwise wait for executions that never run.
 */
async function enableStepFunctionsExecution(url: string): Promise<void> {
  const res = await fetch(`${url}/moto-api/config`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ stepfunctions: { execute_state_machine: true } }) });
  if (!res.ok) throw new Error(`moto setup: turning on Step Functions execution failed: HTTP ${res.status} ${await res.text()}`);
  await res.body?.cancel();
  const sfn = new SFNClient({ endpoint: url, region: process.env.AWS_REGION, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  try {
    const { stateMachineArn } = await sfn.send(
      new CreateStateMachineCommand({
        name: `floe-moto-setup-probe-${process.pid}`,
        roleArn: 'arn:aws:iam::123456789012:role/floe-moto-setup-probe',
        definition: JSON.stringify({ StartAt: 'Probe', States: { Probe: { Type: 'Pass', Result: { executed: true }, End: true } } }),
      }),
    );
    const { executionArn } = await sfn.send(new StartExecutionCommand({ stateMachineArn, input: '{}' }));
    const deadline = Date.now() + 10_000;
    for (;;) {
      const execution = await sfn.send(new DescribeExecutionCommand({ executionArn }));
      if (execution.status === 'SUCCEEDED' && (JSON.parse(execution.output ?? 'null') as { executed?: unknown } | null)?.executed === true) break;
      if (execution.status !== 'RUNNING' || Date.now() > deadline) {
        throw new Error(`moto setup: Step Functions execution is off (a Pass-state probe is ${execution.status} with output ${execution.output ?? 'none'} after turning it on)`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await sfn.send(new DeleteStateMachineCommand({ stateMachineArn }));
  } finally {
    sfn.destroy();
  }
}
