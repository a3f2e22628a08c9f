/**
 * Emulator mode end to end, through the CLI only: `floe run … --aws-endpoint` at parallelism 2 over enough input to be
 * mid-run, `floe savepoint` into S3 while it runs, `floe stop` (stop-with-savepoint), `floe inspect s3://…`, then a
 * restore from the stop's savepoint at parallelism 3, stopped again mid-run, and a last restore at parallelism 1
 * that reads to the end. The committed output must equal the oracle's exactly: no gap, no repeat in running counts.
 *
 * SQS queues have no backpressure: the source reads ahead of the keyed count, and a barrier reaches the count only
 * once the backlog before it is processed. So periodic checkpoints are rare here (a pending one would hold the
 * savepoint back), and the first savepoint is triggered as soon as the job runs: it completes quickly, the stop that
 * follows cuts the input while the source is still reading it, and each stop is a stop in the middle of the input.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { emulatorResourceNames } from '../../lib/hosts/emulator/provision.js';
import { RestClient } from '../../lib/rest/client.js';
import { FloeProcess, REPO_ROOT } from '../support/floe-process.js';
import { compareWithOracle, countWords, describeDiff, generateWordInput, readCommittedOutput } from '../support/wordcount-oracle.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
const log = (m: string) => console.info(`[e2e] ${m}`);
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'floe-emulator-sp-'));
});

afterEach(async () => {
  await FloeProcess.killAll();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A `floe` control command: its result once it ends, and a wait for a line on its stderr while it runs. */
interface FloeCommand {
  readonly result: Promise<{ code: number | null; stdout: string; stderr: string }>;
  stderrLine(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

/** Starts a `floe` control command without blocking the event loop (the running job's stderr keeps flowing). */
function floeCommand(...args: string[]): FloeCommand {
  const child = spawn(process.execPath, ['bin/floe.js', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  let stdout = '';
  let stderr = '';
  let ended = false;
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const result = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      ended = true;
      resolve({ code, stdout, stderr });
    });
  });
  const stderrLine = async (pattern: RegExp, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(stderr)) {
      if (ended || Date.now() > deadline) throw new Error(`floe ${args[0]} printed no line matching ${pattern}; stdout:\n${stdout}\nstderr:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { result, stderrLine };
}

/** Runs a `floe` control command to its end. */
const floe = (...args: string[]) => floeCommand(...args).result;

/** Waits until the job runs and its source vertex has sent at least `records` records (0: only runs), as the REST API reports. */
async function waitForSourceRecords(url: string, job: string, records: number, timeoutMs = 60_000): Promise<void> {
  const rest = new RestClient({ url });
  const deadline = Date.now() + timeoutMs;
  let seen = 'no answer';
  while (Date.now() < deadline) {
    const details = await rest.job(job).catch((e: Error) => ({ error: e.message }));
    if ('vertices' in details) {
      const sent = details.vertices[0]?.metrics['write-records'] ?? 0;
      seen = `${details.state}, source sent ${sent}`;
      if (details.state === 'RUNNING' && sent >= records) return;
    } else seen = details.error;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`job ${job} did not send ${records} source records within ${timeoutMs}ms (last seen: ${seen})`);
}

/** Stops a running job with a savepoint through the CLI; answers the savepoint's s3:// path once the job has exited. */
async function stopWithSavepoint(run: FloeProcess, job: string, url: string): Promise<string> {
  const stop = await floe('stop', job, '--url', url, '--timeout', '90s');
  expect(stop.code, `${stop.stderr}\n--- floe run ---\n${run.stderr()}`).toBe(0);
  const path = /Path: (s3:\/\/\S+)/.exec(stop.stdout)?.[1];
  expect(path, stop.stdout).toBeDefined();
  const exit = await run.waitForExit(60_000);
  expect(exit.code, run.stderr()).toBe(0);
  expect(run.stderr()).toContain(`job stopped with savepoint ${path}`);
  return path!;
}

describe('savepoints in emulator mode', () => {
  it('takes a savepoint, stops with one, and restores it at parallelism 3 and then 1: no gap, no repeat', async () => {
    // Given a word count of its own (the CLI names resources after the job) over input that takes a while to read
    const job = `wc-sp-${randomUUID().slice(0, 8)}`;
    const bucket = emulatorResourceNames(job).bucket;
    const input = await generateWordInput(join(work, 'in'), { files: 8, words: 200_000, vocabulary: 2_000, seed: 23 });
    const oracle = await countWords(input.dir);
    const output = join(work, 'out');
    const jobFile = 'test/fixtures/jobs/named-wordcount.ts';
    const jobArgs = ['--job-name', job, '--input', input.dir, '--output', output];
    const started = Date.now();
    const first = FloeProcess.run({ jobFile, awsEndpoint: endpoint, checkpointInterval: '10m', jobArgs: [...jobArgs, '--parallelism', '2'] });
    const url = (await first.waitForLine(/REST API at (http:\/\/\S+)/, { timeoutMs: 60_000 }))!.match[1]!;
    await waitForSourceRecords(url, job, 0);

    // When the CLI takes a savepoint into a directory of its choosing while the job runs, and, once that is
    // triggered, stops the job with a savepoint in its default savepoint directory (the stop waits its turn)
    const savepointCommand = floeCommand('savepoint', job, `s3://${bucket}/${job}/manual-savepoints`, '--url', url, '--timeout', '90s');
    await savepointCommand.stderrLine(/Triggered savepoint/);
    const stopped = await stopWithSavepoint(first, job, url);
    expect(stopped).toMatch(new RegExp(`^s3://${bucket}/${job}/savepoints/savepoint-`));
    log(`stopped with ${stopped} after ${Date.now() - started}ms`);
    const savepoint = await savepointCommand.result;
    expect(savepoint.code, `${savepoint.stderr}\n--- floe run ---\n${first.stderr()}`).toBe(0);
    const savepointPath = /Path: (s3:\/\/\S+)/.exec(savepoint.stdout)?.[1];
    expect(savepointPath, savepoint.stdout).toMatch(new RegExp(`^s3://${bucket}/${job}/manual-savepoints/savepoint-`));
    // The savepoint completed while the job ran: the stop's snapshot came after it
    const idOf = (path: string) => Number(/-(\d+)$/.exec(path)?.[1]);
    expect(idOf(stopped)).toBeGreaterThan(idOf(savepointPath!));

    // Then it stopped mid-run: what it committed is a prefix of every word's counts, and not all of them
    const partial = compareWithOracle(await readCommittedOutput(output), oracle, { partial: true });
    expect(partial.ok, describeDiff(partial)).toBe(true);
    expect(partial.lines).toBeGreaterThan(0);
    expect(partial.lines).toBeLessThan(partial.expectedLines);
    log(`committed before the stop: ${partial.lines} of ${partial.expectedLines} lines`);

    // And both savepoints inspect from S3 as canonical savepoints of the job at parallelism 2
    for (const path of [savepointPath!, stopped]) {
      const inspected = await floe('inspect', path, '--aws-endpoint', endpoint);
      expect(inspected.code, inspected.stderr).toBe(0);
      expect(inspected.stdout).toMatch(/Kind:\s+savepoint/);
      expect(inspected.stdout).toMatch(/Format:\s+canonical/);
      expect(inspected.stdout).toContain(job);
      const manifest = await floe('inspect', path, '--aws-endpoint', endpoint, '--json');
      expect(manifest.code, manifest.stderr).toBe(0);
      const parsed = JSON.parse(manifest.stdout) as { kind: string; operators: Array<{ uid: string; parallelism: number }> };
      expect(parsed.kind).toBe('savepoint');
      expect(parsed.operators.find((o) => o.uid === 'count')?.parallelism).toBe(2);
    }

    const missing = await floe('inspect', `s3://${bucket}/no-such-savepoint`, '--aws-endpoint', endpoint);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`no snapshot at 's3://${bucket}/no-such-savepoint'`);

    // When the stop's savepoint is restored at parallelism 3 and stopped again once it has read on
    const second = FloeProcess.run({ jobFile, awsEndpoint: endpoint, fromSavepoint: stopped, parallelism: 3, checkpointInterval: '10m', jobArgs });
    const restored = (await second.waitForLine(/^\[floe\] restored from savepoint (s3:\/\/\S+) \(checkpoint \d+, generation (\d+)\)/, { timeoutMs: 60_000 }))!;
    expect(restored.match[1]).toBe(stopped);
    expect(second.stderr()).toMatch(/operator 'count' rescaled from parallelism 2 to 3/);
    const url2 = (await second.waitForLine(/REST API at (http:\/\/\S+)/, { timeoutMs: 30_000 }))!.match[1]!;
    await waitForSourceRecords(url2, job, 1);
    const stoppedAgain = await stopWithSavepoint(second, job, url2);
    const middle = compareWithOracle(await readCommittedOutput(output), oracle, { partial: true });
    expect(middle.ok, describeDiff(middle)).toBe(true);
    expect(middle.lines).toBeGreaterThan(partial.lines);
    expect(middle.lines, 'the run at parallelism 3 read to the end before it was stopped; use more input').toBeLessThan(middle.expectedLines);
    log(`stopped again with ${stoppedAgain}: ${middle.lines} of ${middle.expectedLines} lines committed`);

    // And that savepoint is restored at parallelism 1 and runs to the end of the input
    const third = FloeProcess.run({ jobFile, awsEndpoint: endpoint, fromSavepoint: stoppedAgain, parallelism: 1, checkpointInterval: '2s', jobArgs });
    const exit = await third.waitForExit(240_000);
    expect(exit.code, third.stderr()).toBe(0);
    expect(third.stderr()).toMatch(/operator 'count' rescaled from parallelism 3 to 1/);
    expect(third.stderr()).toMatch(/job finished after/);
    log(`three runs took ${Date.now() - started}ms`);

    // Then the committed output equals the oracle's: every count 1..N of every word exactly once
    const diff = compareWithOracle(await readCommittedOutput(output), oracle);
    expect(diff.ok, describeDiff(diff)).toBe(true);
  }, 600_000);
});
