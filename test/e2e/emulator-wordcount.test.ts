/**
 * Emulator mode end to end: the word count provisioned on the test emulator (test/support/moto-global-setup.ts points
 * AWS_ENDPOINT_URL at it), its operator and coordinator handlers run in-process by pollers, and its committed output
 * compared with an oracle computed by a plain loop. Then `floe run … --aws-endpoint` as a child process, SIGKILLed
 * after a checkpoint completed and resumed with `--from-checkpoint latest`: still no gap and no repeat.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { EmulatorRunner } from '../../lib/hosts/emulator/emulator-runner.js';
import { provisionEmulatorJob } from '../../lib/hosts/emulator/provision.js';
import { resolveCheckpointOptions } from '../../lib/core/options.js';
import { buildPlan } from '../../lib/graph/plan.js';
import { loadJob } from '../../lib/hosts/load-job.js';
import { S3CheckpointStorage } from '../../lib/adapters/aws/s3-checkpoint-storage.js';
import { loadManifest } from '../../lib/runtime/snapshot-catalog.js';
import type { Manifest } from '../../lib/core/manifest/model.js';
import { REPO_ROOT } from '../support/floe-process.js';
import { compareWithOracle, countWords, describeDiff, generateWordInput, readCommittedOutput } from '../support/wordcount-oracle.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
const log = (m: string) => console.info(`[e2e] ${m}`);
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'floe-emulator-wc-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Bytes the word count's files source (`lines`) had read by a snapshot, summed over its file splits. */
function sourceProgress(manifest: Manifest): number {
  const source = manifest.operators.find((op) => op.uid === 'lines');
  if (!source) throw new Error(`checkpoint ${manifest.checkpointId} has no 'lines' operator`);
  return source.subtasks
    .flatMap((st) => st.operatorState)
    .reduce<number>((n, item) => {
      const offset = (item as { split?: { position?: { offset?: unknown } } }).split?.position?.offset;
      if (typeof offset !== 'number') throw new Error(`checkpoint ${manifest.checkpointId}: 'lines' holds ${JSON.stringify(item)}, not a file split`);
      return n + offset;
    }, 0);
}

/** A `floe run` child with its stderr lines, killable, awaitable. */
function floeRun(args: readonly string[]): { lines: string[]; waitFor: (re: RegExp, timeoutMs: number) => Promise<RegExpExecArray>; kill: () => void; exit: Promise<number | null> } {
  const child = spawn(process.execPath, ['bin/floe.js', 'run', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  const lines: string[] = [];
  const listeners = new Set<() => void>();
  let partial = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    for (const l of [...listeners]) l();
  });
  let exited = false;
  const exit = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      exited = true;
      for (const l of [...listeners]) l();
      resolve(code);
    }),
  );
  const waitFor = (re: RegExp, timeoutMs: number) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const check = () => {
        for (const line of lines) {
          const m = re.exec(line);
          if (m) return done(() => resolve(m));
        }
        if (exited) done(() => reject(new Error(`floe exited before a line matching ${re}:\n${lines.join('\n')}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`no line matching ${re} within ${timeoutMs}ms:\n${lines.join('\n')}`))), timeoutMs);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        listeners.delete(check);
        settle();
      };
      listeners.add(check);
      check();
    });
  return { lines, waitFor, kill: () => child.kill('SIGKILL'), exit };
}

describe('emulator provisioning', () => {
  it('creates FIFO queues with FIFO dead-letter queues, and finds the same resources when run again', async () => {
    // Given the word count's plan
    const job = await loadJob(join(REPO_ROOT, 'examples/wordcount.ts'), ['--input', work, '--output', join(work, 'unused')]);
    const plan = buildPlan(job);
    const clients = awsClients({ endpoint });
    const options = { plan, clients, checkpoint: resolveCheckpointOptions(job.options.checkpoint), namespace: `prov-${randomUUID().slice(0, 8)}` };

    // When its resources are provisioned twice
    const first = await provisionEmulatorJob(options);
    const second = await provisionEmulatorJob(options);

    // Then the second run finds the first one's resources, and every vertex queue is FIFO with a FIFO dead-letter queue
    expect(second).toEqual(first);
    expect(Object.keys(first.queueUrls).sort()).toEqual(plan.vertices.map((v) => v.id).sort());
    for (const v of plan.vertices) {
      const attrs = async (url: string) => (await clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['All'] }))).Attributes ?? {};
      const queue = await attrs(first.queueUrls[v.id]!);
      const dlq = await attrs(first.dlqUrls[v.id]!);
      expect(queue.FifoQueue).toBe('true');
      expect(dlq.FifoQueue).toBe('true');
      expect(JSON.parse(queue.RedrivePolicy!)).toMatchObject({ deadLetterTargetArn: dlq.QueueArn, maxReceiveCount: 5 });
    }
  });
});

describe('word count in emulator mode', () => {
  it('commits exactly the oracle\'s counts, run in-process against the emulator', async () => {
    // Given generated input and a fresh output directory
    const input = await generateWordInput(join(work, 'in-1'), { files: 4, words: 40_000, vocabulary: 2_000, seed: 7 });
    const output = join(work, 'out-1');
    const job = await loadJob(join(REPO_ROOT, 'examples/wordcount.ts'), ['--input', input.dir, '--output', output, '--parallelism', '2']);

    // When the job runs in emulator mode until its input ends
    const started = Date.now();
    const runner = new EmulatorRunner(job, { endpoint, namespace: `e2e-${randomUUID().slice(0, 8)}`, checkpoint: { interval: '500ms' }, log });
    const outcome = await runner.run();
    log(`in-process run: ${outcome.state} after ${Date.now() - started}ms, ${runner.coordinatorState().counts.completed} checkpoints completed`);

    // Then it finished, and its committed output equals the oracle's
    expect(outcome.error?.message).toBeUndefined();
    expect(outcome.state).toBe('FINISHED');
    expect(runner.overview().state).toBe('FINISHED');
    const diff = compareWithOracle(await readCommittedOutput(output), await countWords(input.dir));
    expect(diff.ok, describeDiff(diff)).toBe(true);
  }, 180_000);

  it('resumes a killed `floe run --aws-endpoint` with --from-checkpoint latest: no gap, no repeat', async () => {
    // Given a run of the CLI in emulator mode that completed a checkpoint
    const input = await generateWordInput(join(work, 'in-2'), { files: 6, words: 80_000, vocabulary: 3_000, seed: 11 });
    const output = join(work, 'out-2');
    const jobArgs = ['--', '--input', input.dir, '--output', output, '--parallelism', '2'];
    const common = ['examples/wordcount.ts', '--aws-endpoint', endpoint, '--port', '0', '--checkpoint-interval', '300ms'];
    const first = floeRun([...common, ...jobArgs]);
    const started = Date.now();
    const completed = await first.waitFor(/^\[floe\] checkpoint (\d+) completed: (s3:\/\/\S+)$/, 120_000);
    // (a checkpoint really written, with progress to restore: its `_metadata` in the bucket names it, and holds the
    // source's read offsets past the start and the counts' keyed state files)
    const storage = new S3CheckpointStorage({ client: awsClients({ endpoint }).s3 });
    const written = (await loadManifest(storage, completed[2]!)).manifest;
    expect(written).toMatchObject({ checkpointId: Number(completed[1]), kind: 'checkpoint', endOfInput: false });
    expect(sourceProgress(written)).toBeGreaterThan(0);
    expect(written.operators.find((op) => op.uid === 'count')?.subtasks.flatMap((st) => st.keyedState).length).toBeGreaterThan(0);

    // When it is SIGKILLed, and run again from the latest checkpoint
    first.kill();
    await first.exit;
    log(`killed after checkpoint ${completed[1]} (${Date.now() - started}ms)`);
    const partial = compareWithOracle(await readCommittedOutput(output), await countWords(input.dir), { partial: true });
    expect(partial.ok, describeDiff(partial)).toBe(true);
    log(`committed before the kill: ${partial.lines} of ${partial.expectedLines} lines`);
    // Otherwise the rerun would have nothing left to do, and the test would prove nothing.
    expect(partial.lines).toBeLessThan(partial.expectedLines);
    const second = floeRun([...common, '--from-checkpoint', 'latest', ...jobArgs]);
    const restored = await second.waitFor(/^\[floe\] restored from checkpoint (\S+) \(checkpoint (\d+), generation (\d+)\)/, 60_000);
    const restoredFrom = (await loadManifest(storage, restored[1]!)).manifest;
    expect(restoredFrom.checkpointId).toBe(Number(restored[2]));
    expect(restoredFrom.checkpointId).toBeGreaterThanOrEqual(written.checkpointId);
    // The resume starts where that checkpoint's source had read to, not from the start of the input.
    expect(sourceProgress(restoredFrom)).toBeGreaterThanOrEqual(sourceProgress(written));
    const code = await second.exit;
    log(`resumed from checkpoint ${restored[2]} (generation ${restored[3]}); both runs took ${Date.now() - started}ms`);

    // Then the second run finished, and the committed output equals the oracle's: no gap, no repeat
    expect(code, second.lines.join('\n')).toBe(0);
    expect(second.lines.some((l) => /job finished after/.test(l))).toBe(true);
    const diff = compareWithOracle(await readCommittedOutput(output), await countWords(input.dir));
    expect(diff.ok, describeDiff(diff)).toBe(true);
  }, 300_000);
});
