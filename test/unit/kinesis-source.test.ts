import { describe, expect, it } from 'vitest';
import { kinesisSource, type KinesisRecordInfo } from '../../lib/connectors/kinesis-source.js';
import type { SourceConnector, SourceSplit } from '../../lib/api/connector.js';
import { FakeKinesis, type FakeKinesisOptions } from '../support/fake-kinesis.js';

const ctx = { now: () => Date.now() };
const sub = (subtask: number, parallelism = 2) => ({ ...ctx, subtask, parallelism });

function stream(shards: number, options?: FakeKinesisOptions): FakeKinesis {
  return new FakeKinesis(`s-${Math.random().toString(36).slice(2, 8)}`, shards, options);
}

/** A source over the fake stream, as a fresh process would build it (nothing read ahead in memory). */
function source(k: FakeKinesis, start: 'TRIM_HORIZON' | 'LATEST' | { atTimestamp: number } = 'TRIM_HORIZON'): SourceConnector<string> {
  return kinesisSource({ stream: k.name, start, client: k.client, pollInterval: 0 });
}

/** Reads a split until a read returns nothing new and nothing is pending; returns the values and the last split. */
async function drain(src: SourceConnector<string>, split: SourceSplit, max = 3): Promise<{ values: string[]; split: SourceSplit }> {
  const values: string[] = [];
  for (let i = 0; i < 1_000; i++) {
    const r = await src.read(split, max, ctx);
    values.push(...r.values);
    split = r.split;
    if (split.done || (r.values.length === 0 && !r.pending)) return { values, split };
  }
  throw new Error('the split never drained');
}

/** Keys that the fake stream sends to the given shard. */
function keysOn(k: FakeKinesis, shardId: string, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) if (k.shardFor(`key-${i}`).id === shardId) out.push(`key-${i}`);
  return out;
}

describe('kinesis source: reading a shard', () => {
  it('reads the same records again from the same split, though more arrived since and GetRecords returns fewer than asked', async () => {
    // Given a shard with five records and a split whose last read fixed the next range
    const k = stream(1);
    for (let i = 0; i < 5; i++) k.put('a', `r${i}`);
    const src = source(k);
    const [fresh] = await src.createSplits(1);
    const first = await src.read(fresh!, 4, ctx);
    expect(first.values).toEqual([]);
    expect(first.pending).toBe(true);
    // When the split is read, then more records arrive and it is read again by a fresh source (a replay in another
    // process) on a stream that answers one record per call with empty responses in between
    const again = await src.read(first.split, 4, ctx);
    for (let i = 5; i < 9; i++) k.put('a', `r${i}`);
    const cold = new FakeKinesis(k.name, 1, { maxPerCall: 1, emptyEvery: 2 });
    cold.shards[0]!.records.push(...k.shards[0]!.records);
    const replay = await kinesisSource({ stream: k.name, start: 'TRIM_HORIZON', client: cold.client }).read(first.split, 4, ctx);
    // Then both emit exactly the range the split fixed
    expect(again.values).toEqual(['r0', 'r1', 'r2', 'r3']);
    expect(replay.values).toEqual(again.values);
    // And reading on emits the rest once, in order
    const rest = await drain(src, again.split, 4);
    expect([...again.values, ...rest.values]).toEqual(Array.from({ length: 9 }, (_, i) => `r${i}`));
  });

  it('reads a closed shard to its end and is then done; the position is the last sequence number', async () => {
    const k = stream(1);
    const seqs = [k.put('a', 'x'), k.put('a', 'y')];
    const src = source(k);
    const [split] = await src.createSplits(1);
    const r = await drain(src, split!);
    expect(r.values).toEqual(['x', 'y']);
    expect(r.split.done).toBe(false);
    k.split('shardId-000000000000');
    const end = await drain(src, r.split);
    expect(end.split.done).toBe(true);
    expect(end.split.position).toMatchObject({ after: seqs[1], end: true });
  });

  it('gives parse the data, the partition key, the sequence number and the arrival time', async () => {
    const k = stream(1);
    const seq = k.put('pk', '{"v":1}', 1_700_000_000_123);
    const seen: KinesisRecordInfo[] = [];
    const src = kinesisSource<number>({
      stream: k.arn,
      start: 'TRIM_HORIZON',
      client: k.client,
      parse: (data, info) => (seen.push(info), (JSON.parse(new TextDecoder().decode(data)) as { v: number }).v),
    });
    const [split] = await src.createSplits(1);
    const r = await src.read((await src.read(split!, 10, ctx)).split, 10, ctx);
    expect(r.values).toEqual([1]);
    expect(seen).toEqual([{ shardId: 'shardId-000000000000', sequenceNumber: seq, partitionKey: 'pk', approximateArrivalTimestamp: 1_700_000_000_123 }]);
  });

  it('starts at the oldest record, at a timestamp, or at the first start (LATEST, which a replay does not move)', async () => {
    const k = stream(1);
    k.put('a', 'old', 1_000);
    k.put('a', 'mid', 2_000);
    const read = async (start: Parameters<typeof source>[1]) => {
      const src = source(k, start);
      const [split] = await src.createSplits(1);
      return { split: split!, values: (await drain(src, split!)).values };
    };
    expect((await read('TRIM_HORIZON')).values).toEqual(['old', 'mid']);
    expect((await read({ atTimestamp: 1_500 })).values).toEqual(['mid']);
    const latest = await read('LATEST');
    expect(latest.values).toEqual([]);
    // The start time is in the split: a replay of the first step from it, after more arrived, reads them.
    k.put('a', 'new');
    expect((await drain(source(k, 'LATEST'), latest.split)).values).toEqual(['new']);
    expect(latest.split.position).toEqual({ start: { at: expect.any(Number) } });
  });

  it('does not ask an idle shard again within the poll interval', async () => {
    const k = stream(1);
    const src = kinesisSource({ stream: k.name, start: 'TRIM_HORIZON', client: k.client, pollInterval: '1h' });
    const [split] = await src.createSplits(1);
    let s = (await src.read(split!, 10, ctx)).split;
    const calls = k.calls.GetRecords;
    for (let i = 0; i < 5; i++) s = (await src.read(s, 10, ctx)).split;
    expect(k.calls.GetRecords).toBe(calls);
    expect(k.calls.GetShardIterator).toBe(1);
  });

  it('refuses bad options, naming each', () => {
    expect(() => kinesisSource({ stream: '', start: 'EARLIEST' as never, discoveryInterval: 0 })).toThrow(
      /kinesisSource.stream must be .*kinesisSource.start must be .*kinesisSource.discoveryInterval must be > 0/,
    );
  });
});

describe('kinesis source: splits and resharding', () => {
  it('starts from the root shards only, listing every page', async () => {
    // Given a stream of five shards, one of them split (children not roots), listed two per page
    const k = stream(5, { pageSize: 2 });
    k.split('shardId-000000000002');
    const splits = await source(k).createSplits(2);
    expect(splits.map((s) => s.id)).toEqual(['shardId-000000000000', 'shardId-000000000001', 'shardId-000000000002', 'shardId-000000000003', 'shardId-000000000004']);
    expect(k.calls.ListShards).toBe(4);
  });

  it("gives a split's children to the subtask holding the parent, once it read the parent to its end", async () => {
    const k = stream(2);
    const src = source(k);
    const [s0, s1] = await src.createSplits(2);
    k.put(keysOn(k, 'shardId-000000000000', 1)[0]!, 'p');
    const [c1, c2] = k.split('shardId-000000000000');
    // Subtask 0 holds the parent; it has not read it to its end yet: nobody takes the children.
    expect(await src.discoverSplits!([s0!], sub(0))).toEqual([]);
    const parent = await drain(src, s0!);
    expect(parent.split.done).toBe(true);
    expect(await src.discoverSplits!([s1!], sub(1))).toEqual([]);
    const found = await src.discoverSplits!([parent.split], sub(0));
    // The parent emitted a record, so the children are newer than the start point: read from their beginning.
    expect(found).toEqual([
      { id: c1, position: { start: 'TRIM_HORIZON' }, done: false },
      { id: c2, position: { start: 'TRIM_HORIZON' }, done: false },
    ]);
    // Known children are not found again.
    expect(await src.discoverSplits!([parent.split, ...found], sub(0))).toEqual([]);
  });

  it("gives a merge's child to the holder of its ParentShardId; a holder of both parents waits for both", async () => {
    const k = stream(3);
    const src = source(k);
    const [a, b, c] = await src.createSplits(3);
    const ab = k.merge('shardId-000000000000', 'shardId-000000000001');
    const doneA = (await drain(src, a!)).split;
    const doneB = (await drain(src, b!)).split;
    // Parents on two subtasks: the holder of ParentShardId takes the child, the other never does.
    expect((await src.discoverSplits!([doneA], sub(0, 3))).map((s) => s.id)).toEqual([ab]);
    expect(await src.discoverSplits!([doneB, c!], sub(1, 3))).toEqual([]);
    // Both parents on one subtask (after a rescale, say): the child waits until both are done.
    expect(await src.discoverSplits!([doneA, b!], sub(0, 1))).toEqual([]);
    expect((await src.discoverSplits!([doneA, doneB], sub(0, 1))).map((s) => s.id)).toEqual([ab]);
  });

  it('starts a child where its parent started when the parent ended before the start point (LATEST)', async () => {
    const k = stream(1);
    const before = Date.now() - 10_000;
    k.put('a', 'before the job', before);
    const [child] = k.split('shardId-000000000000');
    k.put('a', 'older than the job, in the child', before + 1);
    const src = source(k, 'LATEST');
    const [root] = await src.createSplits(1);
    const done = (await drain(src, root!)).split;
    expect(done.done).toBe(true);
    const [found] = await src.discoverSplits!([done], sub(0, 1));
    expect(found).toEqual({ id: child, position: { start: (root!.position as { start: unknown }).start }, done: false });
    expect((await drain(src, found!)).values).toEqual([]);
  });
});

describe('kinesis source: what a deployment must grant', () => {
  it('declares read access to its stream, by the name or ARN it was given', () => {
    // Given a source over a stream named by ARN
    const arn = 'arn:aws:kinesis:eu-west-1:123456789012:stream/clicks';
    // When its resources are read
    const resources = kinesisSource({ stream: arn }).resources;
    // Then it asks to read exactly that stream
    expect(resources).toEqual([{ service: 'kinesis', stream: arn, access: 'read' }]);
  });
});
