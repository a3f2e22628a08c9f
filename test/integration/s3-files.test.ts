import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { EmbeddedRunner } from '../../lib/index.js';
import { loadJob } from '../../lib/hosts/load-job.js';
import { filesSink } from '../../lib/connectors/files-sink.js';
import { generateWordInput, countWords } from '../support/wordcount-oracle.js';

const s3 = awsClients().s3;
const bucket = `floe-s3-files-${Date.now().toString(36)}`;
let work: string;

async function committedLines(prefix: string): Promise<string[]> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  const lines: string[] = [];
  for (const o of listed.Contents ?? []) {
    const rel = o.Key!.slice(prefix.length);
    if (rel.split('/').some((s) => s.startsWith('.') || s.startsWith('_'))) continue;
    const body = await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }))).Body!.transformToString();
    lines.push(...body.split('\n').filter((l) => l !== ''));
  }
  return lines;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'floe-s3-files-'));
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const input = await generateWordInput(join(work, 'in'), { words: 30_000, files: 3 });
  for (const f of readdirSync(input.dir)) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `in/${f}`, Body: readFileSync(join(input.dir, f)) }));
  // Uncommitted output of some other writer under the input prefix must be skipped.
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'in/.inprogress-x', Body: 'ghost ghost\n' }));
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'in/_pending/y', Body: 'ghost\n' }));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('files source and sink on S3', () => {
  it('word count reads s3:// input and commits s3:// output exactly once, skipping hidden keys', async () => {
    // Given the word count example pointed at S3
    const job = await loadJob('examples/wordcount.ts', ['--input', `s3://${bucket}/in`, '--output', `s3://${bucket}/out`]);
    const runner = new EmbeddedRunner(job, { checkpoint: { dir: join(work, 'chk'), interval: 100 } });

    // When it runs to the end
    const outcome = await runner.run();

    // Then every word's running counts 1..N are committed once each, and nothing of the hidden keys was read
    expect(outcome.state).toBe('FINISHED');
    const oracle = await countWords(join(work, 'in'));
    const seen = new Map<string, number[]>();
    for (const line of await committedLines('out/')) {
      const [word, n] = line.split('\t');
      seen.set(word!, [...(seen.get(word!) ?? []), Number(n)]);
    }
    expect(seen.has('ghost')).toBe(false);
    expect([...seen.keys()].sort()).toEqual([...oracle.keys()].sort());
    for (const [word, n] of oracle) expect(seen.get(word)!.sort((a, b) => a - b), word).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  });

  it('commits a pending commit idempotently and cleans up uncommitted objects', async () => {
    const sink = filesSink<string>({ dir: `s3://${bucket}/idem` });
    const writer = sink.createWriter({ uid: 'u', subtask: 0, runId: 'r1' });
    let state = await writer.resume(undefined);
    state = await writer.write(['a', 'b'], state);
    const { pendingCommits } = await writer.preCommit(state, 7);
    await writer.write(['never committed'], (await writer.preCommit(state, 7)).state);
    await sink.commit(pendingCommits[0]!);
    await sink.commit(pendingCommits[0]!);
    await sink.cleanup('u');
    expect((await committedLines('idem/')).sort()).toEqual(['a', 'b']);
    const all = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'idem/' }));
    expect((all.Contents ?? []).map((o) => o.Key)).toEqual(['idem/part-u-0-chk7-r1-0']);
  });
  it('cleans up uncommitted objects of other runs only, when told which run is starting', async () => {
    const sink = filesSink<string>({ dir: `s3://${bucket}/keep` });
    const old = sink.createWriter({ uid: 'u', subtask: 0, runId: 'r1' });
    await old.write(['old'], await old.resume(undefined));
    const current = sink.createWriter({ uid: 'u', subtask: 0, runId: 'r2' });
    await current.write(['new'], await current.resume(undefined));
    await sink.cleanup('u', 'r2');
    const all = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'keep/' }));
    expect((all.Contents ?? []).map((o) => o.Key)).toEqual(['keep/.inprogress-u-0-r2-0']);
  });
});
