/**
 * `--aws-endpoint` alone points a job at the emulator. `floe run` with `s3://` input and output runs as a child
 * process whose environment names no endpoint (no AWS_ENDPOINT_URL), no region and no credentials, and whose
 * shared AWS files do not exist: the job's connectors read their input from, and commit their output to, the
 * emulator's buckets, which hold exactly the oracle's counts afterwards. `floe inspect --aws-endpoint` reaches the
 * emulator in the same environment; without the flag, every command that reaches AWS says what to set.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { FloeProcess } from '../support/floe-process.js';
import { compareWithOracle, countWords, describeDiff, generateWordInput, readCommittedOutput } from '../support/wordcount-oracle.js';

/** The test emulator (test/support/moto-global-setup.ts); this process's own clients reach it through AWS_ENDPOINT_URL. */
const endpoint = process.env.AWS_ENDPOINT_URL!;
const s3 = awsClients().s3;
const tag = randomUUID().slice(0, 8);
const inBucket = `floe-endpoint-in-${tag}`;
const outBucket = `floe-endpoint-out-${tag}`;
let work: string;

/**
 * A child environment in which the AWS SDK finds no endpoint, region or credentials of its own: every such variable
 * removed, the shared config and credentials files pointed at paths that do not exist, instance metadata off.
 */
function bareAwsEnvironment(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const name of Object.keys(process.env)) if (/^AWS_/.test(name)) env[name] = undefined;
  return {
    ...env,
    AWS_CONFIG_FILE: join(work, 'no-such-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(work, 'no-such-aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}

/** Downloads the objects under `s3://bucket/prefix` into `dir` (same names), so the oracle's reader can read them. */
async function download(bucket: string, prefix: string, dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) keys.push(o.Key!);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  for (const key of keys) {
    const body = await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray();
    await writeFile(join(dir, key.slice(prefix.length)), body);
  }
  return keys;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'floe-endpoint-'));
  for (const bucket of [inBucket, outBucket]) await s3.send(new CreateBucketCommand({ Bucket: bucket }));
});

afterEach(() => FloeProcess.killAll());

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('floe run --aws-endpoint with s3:// input and output', () => {
  it('reads the input from and commits the output to the emulator, with no AWS settings in the environment', async () => {
    // Given word count input in the emulator's input bucket
    const input = await generateWordInput(join(work, 'in'), { files: 2, words: 6_000, vocabulary: 400, seed: 29 });
    for (const name of await readdir(input.dir)) {
      await s3.send(new PutObjectCommand({ Bucket: inBucket, Key: `corpus/${name}`, Body: await readFile(join(input.dir, name)) }));
    }

    // When `floe run` runs the word count in emulator mode in a process that knows nothing of AWS but the flag
    const run = FloeProcess.run({
      jobFile: 'test/fixtures/jobs/named-wordcount.ts',
      awsEndpoint: endpoint,
      checkpointInterval: '500ms',
      jobArgs: ['--job-name', `endpoint-${tag}`, '--input', `s3://${inBucket}/corpus/`, '--output', `s3://${outBucket}/counts/`],
      env: bareAwsEnvironment(),
    });
    const exit = await run.waitForExit(120_000);

    // Then it finished, and the committed objects in the output bucket hold exactly the oracle's counts
    expect(exit, run.stderr()).toEqual({ code: 0, signal: null });
    expect(run.matching(/job finished after/)).toHaveLength(1);
    const keys = await download(outBucket, 'counts/', join(work, 'out'));
    expect(keys.some((k) => k.startsWith('counts/part-'))).toBe(true);
    const diff = compareWithOracle(await readCommittedOutput(join(work, 'out')), await countWords(input.dir));
    expect(diff.ok, describeDiff(diff)).toBe(true);

    // And `floe inspect` of its last checkpoint reads it from the emulator in the same bare environment
    const checkpoints = run.lines.map((l) => /^\[floe\] checkpoint \d+ completed: (s3:\/\/\S+)$/.exec(l.text)?.[1]).filter((p): p is string => p !== undefined);
    expect(checkpoints.length).toBeGreaterThan(0);
    const inspect = FloeProcess.command(['inspect', checkpoints.at(-1)!, '--aws-endpoint', endpoint], bareAwsEnvironment());
    expect(await inspect.waitForExit(30_000), inspect.stderr()).toEqual({ code: 0, signal: null });
    expect(inspect.stdout).toMatch(new RegExp(`^Job:\\s+endpoint-${tag}$`, 'm'));
  }, 150_000);
});

describe('commands that reach AWS without --aws-endpoint', () => {
  it.each([
    ['floe inspect s3://…', () => ['inspect', `s3://${inBucket}/some/savepoint`]],
    ['floe checkpoints --stack', () => ['checkpoints', 'wordcount', '--stack', 'Floe-wordcount']],
    ['floe run with s3:// connectors', () => ['run', 'examples/wordcount.ts', '--port', '0', '--', '--input', `s3://${inBucket}/corpus/`, '--output', `s3://${outBucket}/x/`]],
  ])('%s says that no region and no credentials are configured, and what to set', async (_what, argv) => {
    const cli = FloeProcess.command(argv(), bareAwsEnvironment());
    expect(await cli.waitForExit(30_000)).toEqual({ code: 1, signal: null });
    const stderr = cli.stderr();
    expect(stderr).toMatch(/^error: AWS is not configured \(this command reaches AWS; for an emulator, pass --aws-endpoint <url>\):$/m);
    expect(stderr).toMatch(/^ {2}- no AWS region: set AWS_REGION /m);
    expect(stderr).toMatch(/^ {2}- no AWS credentials: set AWS_PROFILE .* or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/m);
    // One message, not the SDK's error with its stack, and nothing ran.
    expect(stderr).not.toMatch(/^\s+at /m);
    expect(stderr).not.toMatch(/job '.*' \(\w+\) running/);
  });
});
