/**
 * `floe checkpoints|savepoint|stop --outputs <file> --aws-endpoint <url>` against a job that emulator mode runs
 * in-process on the test emulator: the CLI knows only the outputs file (as `cdk deploy --outputs-file` writes it)
 * and reaches the job through its job row and its coordinator state machine.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ListStateMachinesCommand } from '@aws-sdk/client-sfn';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { EmulatorRunner } from '../../lib/hosts/emulator/emulator-runner.js';
import { emulatorResourceNames } from '../../lib/hosts/emulator/provision.js';
import { floeInProcess } from '../support/cli-in-process.js';
import { loadJob } from '../../lib/hosts/load-job.js';
import { REPO_ROOT } from '../support/floe-process.js';
import { generateWordInput } from '../support/wordcount-oracle.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'floe-cli-stack-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const floe = floeInProcess;

async function until(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('floe control commands against a deployed job (outputs file, emulator)', () => {
  it('lists checkpoints, takes a savepoint and stops the job through the job row', async () => {
    // Given the word count running in emulator mode, slowly enough to be controlled, without periodic checkpoints
    const input = await generateWordInput(join(work, 'in'), { files: 4, words: 200_000, vocabulary: 2_000, seed: 5 });
    const job = await loadJob(join(REPO_ROOT, 'examples/wordcount.ts'), ['--input', input.dir, '--output', join(work, 'out'), '--parallelism', '1']);
    const namespace = `cli-${randomUUID().slice(0, 8)}`;
    const runner = new EmulatorRunner(job, { endpoint, namespace, checkpoint: { interval: '1h' }, sourceChunkSize: 50 });
    const run = runner.run();
    try {
      await until('the job to run', () => runner.overview().state === 'RUNNING' || runner.overview().state === 'FAILED', 60_000);
      expect(runner.overview().state).toBe('RUNNING');

      // And an outputs file with the names of its resources, as `cdk deploy --outputs-file` writes them
      const names = emulatorResourceNames(runner.plan.job, namespace);
      const machines = await awsClients({ endpoint }).sfn.send(new ListStateMachinesCommand({}));
      const arn = machines.stateMachines?.find((m) => m.name === names.stateMachine)?.stateMachineArn;
      expect(arn).toBeDefined();
      const outputsFile = join(work, 'outputs.json');
      await writeFile(
        outputsFile,
        JSON.stringify({
          WordCountStack: {
            FloeJobName: runner.plan.job,
            FloeCheckpointBucket: names.bucket,
            FloeCoordinatorTable: names.coordinatorTable,
            FloeStateTable: names.stateTable,
            FloeStateMachineArn: arn,
            FloeSavepointDir: `s3://${names.bucket}/cli-savepoints`,
          },
        }),
      );
      const via = ['--outputs', outputsFile, '--aws-endpoint', endpoint];

      // When the checkpoints are listed: the table, with no checkpoint yet
      const listed = await floe(['checkpoints', runner.plan.job, ...via]);
      expect(listed.stderr).toBe('');
      expect(listed.code).toBe(0);
      expect(listed.stdout).toMatch(/completed/i);

      // When a savepoint is taken: it completes in the outputs' savepoint dir, and the history shows it
      const savepoint = await floe(['savepoint', runner.plan.job, ...via, '--timeout', '60s']);
      expect(savepoint.stderr).toMatch(/Triggered savepoint/);
      expect(savepoint.code, savepoint.stderr).toBe(0);
      expect(savepoint.stdout).toMatch(new RegExp(`^Savepoint completed\\. Path: s3://${names.bucket}/cli-savepoints/`));
      // The runner reads the job row every 250 ms; the CLI has just read it directly.
      await vi.waitFor(() => expect(runner.coordinatorState().history.some((h) => h.kind === 'savepoint' && h.status === 'COMPLETED')).toBe(true), { timeout: 10_000 });
      const after = await floe(['checkpoints', runner.plan.job, ...via, '--json']);
      expect((JSON.parse(after.stdout) as { counts: { completed: number } }).counts.completed).toBe(1);

      // And a wrong job name is refused with a message
      expect((await floe(['checkpoints', 'other-job', ...via])).stderr).toMatch(/holds job .*not 'other-job'/);

      // When the job is stopped: a second savepoint, and the job finishes
      const stop = await floe(['stop', runner.plan.job, ...via, '--timeout', '60s']);
      expect(stop.code, stop.stderr).toBe(0);
      expect(stop.stdout).toMatch(/^Savepoint completed\. Path: s3:\/\//);
      const outcome = await run;
      expect(outcome.state).toBe('FINISHED');
    } finally {
      if (runner.overview().state === 'RUNNING') {
        await runner.cancel().catch(() => {});
        await run;
      }
    }
  }, 180_000);

  it('cancels the job through its job row: the run ends CANCELED, and the job reports CANCELED with nothing pending', async () => {
    // Given the word count running in emulator mode, slowly, with a checkpoint every second
    const input = await generateWordInput(join(work, 'in-cancel'), { files: 2, words: 100_000, vocabulary: 1_000, seed: 9 });
    const job = await loadJob(join(REPO_ROOT, 'examples/wordcount.ts'), ['--input', input.dir, '--output', join(work, 'out-cancel'), '--parallelism', '1']);
    const namespace = `cli-${randomUUID().slice(0, 8)}`;
    const runner = new EmulatorRunner(job, { endpoint, namespace, checkpoint: { interval: '1s' }, sourceChunkSize: 50 });
    const run = runner.run();
    try {
      await until('a completed checkpoint', () => runner.coordinatorState().counts.completed >= 1 || runner.overview().state === 'FAILED', 90_000);
      expect(runner.overview().state).toBe('RUNNING');
      const names = emulatorResourceNames(runner.plan.job, namespace);
      const outputsFile = join(work, 'outputs-cancel.json');
      await writeFile(
        outputsFile,
        JSON.stringify({ S: { FloeJobName: runner.plan.job, FloeCheckpointBucket: names.bucket, FloeCoordinatorTable: names.coordinatorTable, FloeStateTable: names.stateTable, FloeStateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:unused' } }),
      );
      const via = ['--outputs', outputsFile, '--aws-endpoint', endpoint];

      // When the job is cancelled through the outputs file
      const cancel = await floe(['cancel', runner.plan.job, ...via]);
      expect(cancel.stderr).toBe('');
      expect(cancel.code).toBe(0);
      expect(cancel.stdout).toMatch(/^Cancelled job /);

      // Then the runner notices and ends CANCELED, and the job row says CANCELED with nothing pending
      const outcome = await run;
      expect(outcome.state).toBe('CANCELED');
      const listed = await floe(['checkpoints', runner.plan.job, ...via, '--json']);
      expect(listed.code, listed.stderr).toBe(0);
      const stats = JSON.parse(listed.stdout) as { counts: { in_progress: number; completed: number } };
      expect(stats.counts.in_progress).toBe(0);
      expect(stats.counts.completed).toBeGreaterThanOrEqual(1);
      // And cancelling again changes nothing; a savepoint is refused
      expect((await floe(['cancel', runner.plan.job, ...via])).code).toBe(0);
      expect((await floe(['savepoint', runner.plan.job, ...via])).stderr).toMatch(/is CANCELED/);
    } finally {
      if (runner.overview().state === 'RUNNING') {
        await runner.cancel().catch(() => {});
        await run;
      }
    }
  }, 180_000);
});
