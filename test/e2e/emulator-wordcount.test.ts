/**
 * Emulator mode end to end: the word count provisioned on the test emulator (test/support/moto-global-setup.ts points
 * AWS_ENDPOINT_URL at it), its operator and coordinator handlers run in-process by pollers, and its committed output
 * compared with an oracle computed by a plain loop.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmulatorRunner } from '../../lib/aws/emulator/emulator-runner.js';
import { loadJob } from '../../lib/embedded/load-job.js';
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
});
