import { afterEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { CreateStreamCommand, KinesisClient, ListShardsCommand, PutRecordsCommand, SplitShardCommand } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { Job } from '../../lib/api/job.js';
import { valueState } from '../../lib/api/state.js';
import { tumblingEventTimeWindows } from '../../lib/api/windows.js';
import { kinesisSource, type KinesisStart } from '../../lib/connectors/kinesis-source.js';
import type { CollectSink } from '../../lib/connectors/collect-sink.js';
import { FakeKinesis } from '../support/fake-kinesis.js';
import { Scratch, captureLog, runOptions, sleep, startRunner, waitFor, FailOnce } from '../support/jobs.js';

// The Kinesis source over moto server (the wire, the SDK's endpoint resolution, moto's shard iterators), and over an
// in-process stream with Kinesis's resharding semantics, which moto 5.2.5 does not have: after SplitShard and
// MergeShards moto keeps routing records to the closed parent (the first shard in its table whose range holds the
// key), never ends a closed shard (GetRecords always returns a NextShardIterator, and no ChildShards), and a merge
// copies the parents' records into the child. A split on moto therefore tests that resharding while the job runs
// costs nothing and loses nothing, not that children are read after their parents; the in-process stream does that.

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

const kinesis = () => new KinesisClient({ endpoint: process.env.AWS_ENDPOINT_URL, region: 'us-east-1', requestHandler: new NodeHttpHandler() });

/** One event: its partition key and its index among all events put. */
interface Ev {
  readonly k: string;
  readonly i: number;
}

/** An event as put: where PutRecords stored it, for the expected order of its key. */
interface Put extends Ev {
  readonly batch: number;
  readonly seq: string;
}

/** `count` events over `keys` keys, numbered on from `from`. */
function events(from: number, count: number, keys: number): Ev[] {
  return Array.from({ length: count }, (_, j) => ({ k: `key-${(from + j) % keys}`, i: from + j }));
}

async function createStream(client: KinesisClient, shards: number): Promise<string> {
  const name = `events-${randomUUID().slice(0, 8)}`;
  await client.send(new CreateStreamCommand({ StreamName: name, ShardCount: shards }));
  return name;
}

let batches = 0;
async function putAll(client: KinesisClient, stream: string, evs: readonly Ev[]): Promise<Put[]> {
  const out: Put[] = [];
  for (let j = 0; j < evs.length; j += 500) {
    const chunk = evs.slice(j, j + 500);
    const batch = batches++;
    const res = await client.send(new PutRecordsCommand({ StreamName: stream, Records: chunk.map((e) => ({ PartitionKey: e.k, Data: new TextEncoder().encode(JSON.stringify(e)) })) }));
    expect(res.FailedRecordCount ?? 0).toBe(0);
    chunk.forEach((e, n) => out.push({ ...e, batch, seq: res.Records![n]!.SequenceNumber! }));
  }
  return out;
}

/** Per key, the running count and the event's index: one committed line per event. */
function sequenceJob(o: { name?: string; stream: string; start: KinesisStart; sink: CollectSink<string>; client?: KinesisClient; fail?: FailOnce; parallelism?: number }): Job {
  const job = new Job(o.name ?? 'kinesis-it', { parallelism: o.parallelism ?? 2 });
  let seen = 0;
  job
    .source(
      kinesisSource<Ev>({
        stream: o.stream,
        start: o.start,
        parse: (data) => JSON.parse(new TextDecoder().decode(data)) as Ev,
        discoveryInterval: '100ms',
        ...(o.client ? { client: o.client } : {}),
      }),
      { uid: 'events' },
    )
    .map((e) => {
      o.fail?.check(++seen);
      return e;
    })
    .keyBy((e) => e.k)
    .process(
      {
        state: { n: valueState<number>() },
        processElement(e, ctx, out) {
          const n = (ctx.state.n.value() ?? 0) + 1;
          ctx.state.n.update(n);
          out.collect(`${e.k}\t${n}\t${e.i}`);
        },
      },
      { uid: 'sequence' },
    )
    .sinkTo(o.sink, { uid: 'out' });
  return job;
}

/**
 * The committed lines must hold, per key, counts 1..N once each over exactly the key's events; for the keys `ordered`
 * says, the n-th line carries the key's n-th event as stored (by put batch, then sequence number within the shard).
 */
function expectExactlyOnce(committed: readonly string[], input: readonly Put[], ordered: (key: string) => boolean): void {
  const expected = new Map<string, number[]>();
  for (const p of [...input].sort((a, b) => a.batch - b.batch || (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1))) (expected.get(p.k) ?? expected.set(p.k, []).get(p.k)!).push(p.i);
  const got = new Map<string, { n: number; i: number }[]>();
  for (const line of committed) {
    const [k, n, i] = line.split('\t');
    (got.get(k!) ?? got.set(k!, []).get(k!)!).push({ n: Number(n), i: Number(i) });
  }
  expect([...got.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [k, want] of expected) {
    const lines = got.get(k)!.sort((a, b) => a.n - b.n);
    expect(lines.map((l) => l.n), `counts of ${k}`).toEqual(want.map((_, j) => j + 1));
    expect([...lines.map((l) => l.i)].sort((a, b) => a - b), `events of ${k}`).toEqual([...want].sort((a, b) => a - b));
    if (ordered(k)) expect(lines.map((l) => l.i), `order of ${k}`).toEqual(want);
  }
}

async function runUntil(runner: EmbeddedRunner, what: string, done: () => boolean | Promise<boolean>, text: () => string, during: () => Promise<void> = async () => {}): Promise<void> {
  const { done: outcome } = await startRunner(runner);
  let ended: string | undefined;
  void outcome.then((o) => (ended = o.state));
  try {
    await during();
    await waitFor(what, async () => {
      if (ended !== undefined) throw new Error(`the job ended (${ended}) before ${what}\n${text()}`);
      return done();
    }, 40_000, 50).catch((e: Error) => {
      throw new Error(`${e.message}\n${text()}`);
    });
  } finally {
    await runner.cancel();
  }
  await outcome;
}

describe('kinesis source, embedded over a Kinesis endpoint (moto)', () => {
  it('reads every record exactly once and each key in order, across a failover and a shard split while it runs', async () => {
    // Given three shards (so one subtask of two reads two) and 300 events over 12 keys
    const client = kinesis();
    const stream = await createStream(client, 3);
    const input = await putAll(client, stream, events(0, 300, 12));
    const sink = scratch.collector<string>();
    const fail = new FailOnce(450);
    const { log, text } = captureLog();
    // When a job that fails once reads them, while shard 0 is split and 300 more events are put
    const runner = new EmbeddedRunner(sequenceJob({ stream, start: 'TRIM_HORIZON', sink, fail }), runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }));
    await runUntil(runner, 'every event committed', () => sink.committed.length >= 600, text, async () => {
      await waitFor('some events committed', () => sink.committed.length >= 100, 20_000);
      const shard0 = (await client.send(new ListShardsCommand({ StreamName: stream }))).Shards!.find((s) => s.ShardId === 'shardId-000000000000')!;
      const { StartingHashKey, EndingHashKey } = shard0.HashKeyRange!;
      await client.send(new SplitShardCommand({ StreamName: stream, ShardToSplit: shard0.ShardId!, NewStartingHashKey: String((BigInt(StartingHashKey!) + BigInt(EndingHashKey!)) / 2n) }));
      input.push(...(await putAll(client, stream, events(300, 300, 12))));
    });
    // Then the job failed over once, the stream has the children, and the committed output is every event once, in order per key
    expect(fail.thrown, text()).toBe(true);
    expect(text()).toMatch(/restor/i);
    expect((await client.send(new ListShardsCommand({ StreamName: stream }))).Shards).toHaveLength(5);
    expect(sink.committed).toHaveLength(600);
    expectExactlyOnce(sink.committed, input, () => true);
  });

  it('starts at the oldest record, at a timestamp, or at the records that arrive after the job started', async () => {
    // Given events A, then a timestamp, then events B
    const client = kinesis();
    const stream = await createStream(client, 2);
    const a = await putAll(client, stream, events(0, 20, 5));
    await sleep(30);
    const at = Date.now();
    await sleep(30);
    const b = await putAll(client, stream, events(20, 20, 5));
    const sinks = { trim: scratch.collector<string>(), at: scratch.collector<string>(), latest: scratch.collector<string>() };
    const logs = { trim: captureLog(), at: captureLog(), latest: captureLog() };
    const runners = {
      trim: new EmbeddedRunner(sequenceJob({ name: 'start-trim', stream, start: 'TRIM_HORIZON', sink: sinks.trim }), runOptions(await scratch.dir(), logs.trim.log, { checkpoint: { interval: 100 } })),
      at: new EmbeddedRunner(sequenceJob({ name: 'start-at', stream, start: { atTimestamp: at }, sink: sinks.at }), runOptions(await scratch.dir(), logs.at.log, { checkpoint: { interval: 100 } })),
      latest: new EmbeddedRunner(sequenceJob({ name: 'start-latest', stream, start: 'LATEST', sink: sinks.latest }), runOptions(await scratch.dir(), logs.latest.log, { checkpoint: { interval: 100 } })),
    };
    // When the three jobs run, and events C are put once the LATEST job has completed a checkpoint (so it has started reading)
    let c: Put[] = [];
    const all = () => [logs.trim.text(), logs.at.text(), logs.latest.text()].join('\n');
    await Promise.all([
      runUntil(runners.trim, 'A, B and C committed (TRIM_HORIZON)', () => c.length > 0 && sinks.trim.committed.length >= 60, all),
      runUntil(runners.at, 'B and C committed (AT_TIMESTAMP)', () => c.length > 0 && sinks.at.committed.length >= 40, all),
      runUntil(runners.latest, 'C committed (LATEST)', () => c.length > 0 && sinks.latest.committed.length >= 20, all, async () => {
        await waitFor('a checkpoint of the LATEST job', () => /checkpoint \d+ completed/.test(logs.latest.text()), 20_000);
        c = await putAll(client, stream, events(40, 20, 5));
      }),
    ]);
    // Then each read exactly what its start says
    expectExactlyOnce(sinks.trim.committed, [...a, ...b, ...c], () => true);
    expectExactlyOnce(sinks.at.committed, [...b, ...c], () => true);
    expectExactlyOnce(sinks.latest.committed, c, () => true);
  });

  it('reads the same records from the same split twice, though more arrived in between', async () => {
    // Given a split whose first read fixed what the next read emits
    const client = kinesis();
    const stream = await createStream(client, 1);
    await putAll(client, stream, events(0, 3, 1));
    const src = kinesisSource({ stream, start: 'TRIM_HORIZON' });
    const [split] = await src.createSplits(1);
    const ctx = { now: () => Date.now() };
    const first = await src.read(split!, 100, ctx);
    // When the split is read, then more records arrive and it is read again by a fresh source (a replay in another process)
    const once = await src.read(first.split, 100, ctx);
    await putAll(client, stream, events(3, 3, 1));
    const twice = await kinesisSource({ stream, start: 'TRIM_HORIZON' }).read(first.split, 100, ctx);
    // Then both emit the same three records, and the read after the replay the three that came after
    expect(once.values.map((v) => (JSON.parse(v) as Ev).i)).toEqual([0, 1, 2]);
    expect(twice.values).toEqual(once.values);
    // (Only what they read ahead for the read after them differs: the replay's commit is the one that counts.)
    expect((await src.read(twice.split, 100, ctx)).values.map((v) => (JSON.parse(v) as Ev).i)).toEqual([3, 4, 5]);
  });
});

describe("kinesis source, embedded over a stream with Kinesis's resharding semantics", () => {
  /** Puts events on the fake stream; the "batch" is the put's order, which is also the shard's order. */
  function putFake(k: FakeKinesis, evs: readonly Ev[], arrival?: (e: Ev) => number): Put[] {
    return evs.map((e) => ({ ...e, batch: batches++, seq: k.put(e.k, JSON.stringify(e), arrival?.(e)) }));
  }

  it('reads children after their parents, exactly once across a failover, a split and a merge of shards on two subtasks', async () => {
    // Given two shards, each held by one subtask, and 200 events over 16 keys
    const k = new FakeKinesis(`events-${randomUUID().slice(0, 8)}`, 2, { maxPerCall: 7 });
    const input = putFake(k, events(0, 200, 16));
    // Keys of shard 1's range: the merge below takes shard 1, held by the other subtask, as its adjacent parent.
    const adjacentKeys = new Set(input.filter((e) => k.shardFor(e.k).id === 'shardId-000000000001').map((e) => e.k));
    const sink = scratch.collector<string>();
    const fail = new FailOnce(380);
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(sequenceJob({ stream: k.name, start: 'TRIM_HORIZON', sink, fail, client: k.client }), runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }));
    // When shard 0 splits while the job runs, its upper child merges with shard 1, and events follow each change
    await runUntil(runner, 'every event committed', () => sink.committed.length >= 600, text, async () => {
      await waitFor('some events committed', () => sink.committed.length >= 50, 20_000);
      const [, upper] = k.split('shardId-000000000000');
      input.push(...putFake(k, events(200, 200, 16)));
      await waitFor('events of the split committed', () => sink.committed.length >= 300, 20_000);
      k.merge(upper, 'shardId-000000000001');
      input.push(...putFake(k, events(400, 200, 16)));
    });
    // Then every event is committed once, and in order for every key the merge across subtasks does not touch
    expect(fail.thrown, text()).toBe(true);
    expect(k.shards.filter((s) => s.records.length > 0).map((s) => s.id)).toEqual(['shardId-000000000000', 'shardId-000000000001', 'shardId-000000000002', 'shardId-000000000003', 'shardId-000000000004']);
    expect(sink.committed).toHaveLength(600);
    expectExactlyOnce(sink.committed, input, (key) => !adjacentKeys.has(key));
  });

  it('keeps running, and keeps event time, when its only shard is read to its end before the children are found', async () => {
    // Given one subtask over one shard, events one per 100 ms of arrival time, counted in windows of one second
    const k = new FakeKinesis(`events-${randomUUID().slice(0, 8)}`, 1);
    const base = 1_800_000_000_000;
    const at = (e: Ev) => base + e.i * 100;
    const input = putFake(k, events(0, 20, 3), at);
    const sink = scratch.collector<string>();
    const job = new Job('kinesis-windows', { parallelism: 1 });
    job
      .source(kinesisSource<Ev & { t: number }>({ stream: k.name, start: 'TRIM_HORIZON', client: k.client, discoveryInterval: '300ms', parse: (d, r) => ({ ...(JSON.parse(new TextDecoder().decode(d)) as Ev), t: r.approximateArrivalTimestamp }) }), {
        uid: 'events',
        watermarks: { timestamp: (e) => e.t },
      })
      .keyBy((e) => e.k)
      .window(tumblingEventTimeWindows('1s'))
      .aggregate<number, number, string>({ createAccumulator: () => 0, add: (_e, n) => n + 1, getResult: (n) => n }, { uid: 'counts', emit: (key, w, n) => `${key}\t${w.start - base}\t${n}` })
      .sinkTo(sink, { uid: 'out' });
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(job, runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }));
    // When the shard splits once the first second's windows fired, and later events (and one per key far later, to
    // move event time past them on both children: a source's watermark is the least over its shards) go to the children
    const expected = (evs: readonly Ev[], upTo: number) => {
      const counts = new Map<string, number>();
      for (const e of evs) if (at(e) - base < upTo) counts.set(`${e.k}\t${Math.floor((at(e) - base) / 1000) * 1000}`, (counts.get(`${e.k}\t${Math.floor((at(e) - base) / 1000) * 1000}`) ?? 0) + 1);
      return [...counts].map(([w, n]) => `${w}\t${n}`).sort();
    };
    await runUntil(runner, 'the windows of four seconds committed', () => sink.committed.length >= expected(input, 4_000).length, text, async () => {
      await waitFor('the first second committed', () => sink.committed.length >= expected(input, 1_000).length, 20_000);
      k.split('shardId-000000000000');
      input.push(...putFake(k, events(20, 20, 3), at), ...putFake(k, events(100, 3, 3), at));
    });
    // Then the job did not end with its shard, and no window fired early or lost the children's events
    expect([...sink.committed].sort()).toEqual(expected(input, 4_000));
  });
});
