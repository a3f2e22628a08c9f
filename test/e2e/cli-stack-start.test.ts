/**
 * `floe start --outputs <file> --aws-endpoint <url>` restarts a deployed job: word count "deployed" on the test
 * emulator with its functions run in this process (test/support/in-process-stack.ts), stopped with a savepoint at
 * parallelism 2, deployed again at parallelism 3 and started from the savepoint. The committed output is compared
 * with the oracle: no count lost, none committed twice.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { JobStatus } from '../../lib/core/coordinator/job-row.js';
import { floeInProcess } from '../support/cli-in-process.js';
import { resolveCheckpointOptions } from '../../lib/core/options.js';
import { loadJob } from '../../lib/hosts/load-job.js';
import { buildPlan } from '../../lib/graph/plan.js';
import { REPO_ROOT } from '../support/floe-process.js';
import { deployInProcess, type InProcessStack } from '../support/in-process-stack.js';
import { compareWithOracle, countWords, describeDiff, generateWordInput, readCommittedOutput } from '../support/wordcount-oracle.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
const clients = awsClients({ endpoint });
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'floe-cli-start-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const floe = floeInProcess;

async function until(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('floe start on a deployed job (functions in-process on the emulator)', () => {
  it('restarts word count from a savepoint at another parallelism: refused while running and from a corrupt manifest, then exact output', async () => {
    // Given word count deployed at parallelism 2, reading slowly, without periodic checkpoints (they would take the
    // checkpoint ids the CLI's triggers ask for)
    const input = await generateWordInput(join(work, 'in'), { files: 3, words: 30_000, vocabulary: 400, seed: 17 });
    const out = join(work, 'out');
    const jobAt = async (p: number) => loadJob(join(REPO_ROOT, 'examples/wordcount.ts'), ['--input', input.dir, '--output', out, '--parallelism', String(p)]);
    const job2 = await jobAt(2);
    const checkpoint = resolveCheckpointOptions({ ...job2.options.checkpoint, interval: '1h' });
    const namespace = `start-${randomUUID().slice(0, 8)}`;
    const deploy = async (p: number) => deployInProcess({ plan: buildPlan(await jobAt(p)), clients, endpoint, checkpoint, namespace, sourceChunkSize: 40 });
    let stack: InProcessStack | undefined = await deploy(2);
    try {
      const job = job2.name;
      const row = async () => (await stack!.store.require(job));
      await until('the sources to start', async () => (await row()).runtime.sourcesStartedAt !== undefined, 60_000);
      const file = await stack.writeOutputs(join(work, 'outputs.json'));
      const via = ['--outputs', file, '--aws-endpoint', endpoint];
      const taken = await floe(['savepoint', job, ...via, '--timeout', '90s']);
      expect(taken.code, taken.stderr).toBe(0);

      // When a start is asked for while generation 1 runs: refused, and nothing changes
      const running = await floe(['start', job, ...via, '--from-checkpoint', 'latest']);
      expect(running.code).toBe(1);
      expect(running.stderr).toMatch(/generation 1 is still RUNNING: stop it with a savepoint \(floe stop\) or cancel it \(floe cancel\) first/);
      expect((await row()).runtime.generation).toBe(1);

      // When it is stopped with a savepoint: the job finishes part-way, its output a gap-free prefix of the oracle's
      const stop = await floe(['stop', job, ...via, '--timeout', '90s']);
      expect(stop.code, stop.stderr).toBe(0);
      const savepoint = /Path: (s3:\/\/\S+)/.exec(stop.stdout)![1]!;
      await until('the job to finish', async () => (await row()).jobStatus?.status === JobStatus.Finished, 30_000);
      const oracle = await countWords(input.dir);
      const partial = compareWithOracle(await readCommittedOutput(out), oracle, { partial: true });
      expect(partial.ok, describeDiff(partial)).toBe(true);
      expect(partial.lines).toBeGreaterThan(0);
      expect(partial.lines).toBeLessThan(partial.expectedLines);

      // And the job is deployed again at parallelism 3: the coordinator records the new plan in the row
      await stack.stop();
      stack = undefined;
      stack = await deploy(3);
      const redeployed = await row();
      expect(redeployed.runtime.deployment?.vertices.map((v) => v.parallelism)).toEqual([1, 3, 3]);
      expect(redeployed.jobStatus?.status).toBe(JobStatus.Finished);

      // When a start names a corrupt _metadata: refused with what is wrong, and the row is unchanged
      const bad = `s3://${stack.resources.bucket}/broken/savepoint-0/_metadata`;
      await clients.s3.send(new PutObjectCommand({ Bucket: stack.resources.bucket, Key: 'broken/savepoint-0/_metadata', Body: '{"formatVersion": 1, "job": 7' }));
      const corrupt = await floe(['start', ...via, '--from-savepoint', bad]);
      expect(corrupt.code).toBe(1);
      expect(corrupt.stderr).toMatch(/broken\/savepoint-0\/_metadata/);
      expect(corrupt.stderr).toMatch(/JSON/i);
      const after = await row();
      expect(after.version).toBe(redeployed.version);
      expect(after.runtime).toEqual(redeployed.runtime);

      // When it is started from the savepoint
      const start = await floe(['start', job, ...via, '--from-savepoint', savepoint]);
      expect(start.code, start.stderr).toBe(0);
      expect(start.stdout).toMatch(/^Started job wordcount from savepoint \d+ \(s3:\/\/.*\): generation 2\./);
      expect(start.stderr).toMatch(/rescaled from parallelism 2 to 3/);
      const started = await row();
      expect(started.runtime.generation).toBe(2);
      expect(started.state.tasks.filter((t) => t.startsWith('count:'))).toHaveLength(3);
      expect(started.runtime.start).toBeUndefined();
      expect(started.state.latestCompletedId).toBeDefined();

      // Then it finishes at parallelism 3, and the committed output is the oracle's: no count lost, none twice
      await until('generation 2 to finish', async () => (await row()).jobStatus?.status === JobStatus.Finished, 150_000);
      const diff = compareWithOracle(await readCommittedOutput(out), oracle);
      expect(diff.ok, describeDiff(diff)).toBe(true);
      expect(diff.lines).toBe(input.words);
    } finally {
      await stack?.stop();
    }
  }, 420_000);
});
