import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Job } from '../../lib/api/job.js';
import { valueState } from '../../lib/api/state.js';
import { tumblingEventTimeWindows } from '../../lib/api/windows.js';
import { generator } from '../../lib/connectors/generator.js';
import { collectSink } from '../../lib/connectors/collect-sink.js';
import { buildPlan, vertexById, type PhysicalPlan } from '../../lib/graph/plan.js';
import { keyGroupOf, serializeKey, subtaskForKeyGroup } from '../../lib/graph/key-groups.js';
import { InMemoryStateStore } from '../../lib/adapters/local/in-memory-state-store.js';
import { InMemoryQueues } from '../../lib/adapters/local/in-memory-queues.js';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { resolveRelative } from '../../lib/core/manifest/layout.js';
import type { StateHandle } from '../../lib/core/manifest/model.js';
import { CommitFencedError, ErrorCode } from '../../lib/core/errors.js';
import type { CheckpointMode } from '../../lib/core/options.js';
import { stateEntryKey, type Ports, type QueueSender } from '../../lib/ports/index.js';
import { DEFAULT_MAX_ENVELOPES_AHEAD, SubtaskExecutor, type StepResult, type SubtaskConfig } from '../../lib/runtime/task-step.js';
import { EnvelopeKind, type BarrierInfo, type ChannelEnd, type Envelope } from '../../lib/core/envelope.js';
import { MAX_WATERMARK } from '../../lib/runtime/watermark.js';
import {
  FakeClock,
  GatedSender,
  RecordingCoordinator,
  barrierEnvelope,
  checkpointBarrier,
  dataEnvelope,
  keyedRecord,
  makeTempDir,
  removeTempDir,
  watermarkEnvelope,
} from '../support/builders.js';

// ---------------------------------------------------------------------------------------------
// The job under test: words (parallelism 2) → keyBy(word) → counter (keyed, parallelism 2) → rebalance → sink (2).
// The test drives subtask counter:0 directly: its inputs are words:0 (channel A) and words:1 (channel B), its outputs
// are sink:0 and sink:1 (round-robin).
// ---------------------------------------------------------------------------------------------

const M = 8;
const GEN = 1;
/** The counter registers one event-time timer per key at this time and reports the final count when it fires. */
const REPORT_AT = 1_000;

interface Word {
  readonly word: string;
}

function countingPlan(): PhysicalPlan {
  const job = new Job('counts', { maxParallelism: M });
  job
    .source(generator<Word>({ count: 0, generate: (i) => ({ word: `w${i}` }) }), { uid: 'words', parallelism: 2 })
    .keyBy((w) => w.word)
    .process(
      {
        state: { count: valueState<number>() },
        processElement(w: Word, ctx, out) {
          const n = (ctx.state.count.value() ?? 0) + 1;
          ctx.state.count.update(n);
          out.collect(`${w.word}=${n}`);
          ctx.timerService().registerEventTimeTimer(REPORT_AT);
        },
        onTimer(_ts, ctx, out) {
          out.collect(`${String(ctx.key)} final ${ctx.state.count.value()}`);
        },
      },
      { uid: 'counter', parallelism: 2 },
    )
    .rebalance()
    .sinkTo(collectSink<string>('task-step-counts'), { uid: 'sink', parallelism: 2 });
  return buildPlan(job);
}

const A: ChannelEnd = { op: 'words', subtask: 0 };
const B: ChannelEnd = { op: 'words', subtask: 1 };
const ME: ChannelEnd = { op: 'counter', subtask: 0 };

/** Words whose key group belongs to counter:0 (key groups [0, 4) of 8). */
const [APPLE, PEAR, FIG] = ['apple', 'pear', 'fig', 'plum', 'kiwi', 'lime', 'date', 'sloe', 'yuzu', 'nut']
  .filter((w) => subtaskForKeyGroup(keyGroupOf(serializeKey(w), M), 2, M) === 0)
  .slice(0, 3) as [string, string, string];

const data = (from: ChannelEnd, seq: number, ...words: string[]): Envelope =>
  dataEnvelope({ from, to: ME, seq, job: 'counts', gen: GEN }, words.map((w) => keyedRecord({ word: w }, w, M)));

interface Harness {
  readonly executor: SubtaskExecutor;
  readonly clock: FakeClock;
  readonly coordinator: RecordingCoordinator;
  readonly queues: InMemoryQueues;
  readonly store: InMemoryStateStore;
  readonly storage: FileCheckpointStorage;
}

let root: string;
beforeEach(async () => {
  root = await makeTempDir('floe-task-step-');
});
afterEach(async () => {
  await removeTempDir(root);
});

const barrier = (checkpointId: number, overrides: Partial<BarrierInfo> = {}): BarrierInfo => checkpointBarrier(root, checkpointId, overrides);
const barrierOn = (from: ChannelEnd, seq: number, checkpointId: number, overrides: Partial<BarrierInfo> = {}): Envelope =>
  barrierEnvelope({ from, to: ME, seq, job: 'counts', gen: GEN }, barrier(checkpointId, overrides));
const endOn = (from: ChannelEnd, seq: number, checkpointId: number): Envelope => barrierEnvelope({ from, to: ME, seq, job: 'counts', gen: GEN }, barrier(checkpointId), true);

/** counter:0 of the counting job, exactly-once, generation 1, over fresh local ports unless some are given. */
function aCounterSubtask(
  options: {
    mode?: CheckpointMode;
    store?: InMemoryStateStore;
    queue?: QueueSender;
    clock?: FakeClock;
    plan?: PhysicalPlan;
    maxRecordsPerEnvelope?: number;
    maxEnvelopeBytes?: number;
    channels?: Pick<SubtaskConfig, 'maxEnvelopesAhead' | 'gapTimeoutMs' | 'maxInlineHeldBytes' | 'spillDir'>;
  } = {},
): Harness {
  const plan = options.plan ?? countingPlan();
  const clock = options.clock ?? new FakeClock(10_000);
  const coordinator = new RecordingCoordinator();
  const queues = new InMemoryQueues(1_000);
  const store = options.store ?? new InMemoryStateStore();
  const storage = new FileCheckpointStorage();
  const ports: Ports = { clock, queue: options.queue ?? queues, state: store, storage, coordinator };
  const executor = new SubtaskExecutor(
    {
      plan,
      vertex: vertexById(plan, 'counter'),
      subtask: 0,
      gen: GEN,
      runId: 'run-1',
      mode: options.mode ?? 'exactly-once',
      incremental: true,
      restoredUids: new Set<string>(),
      maxRecordsPerEnvelope: options.maxRecordsPerEnvelope,
      maxEnvelopeBytes: options.maxEnvelopeBytes,
      ...options.channels,
    },
    ports,
  );
  return { executor, clock, coordinator, queues, store, storage };
}

/** Everything sent to sink:0 and sink:1 so far, per channel. */
async function sent(h: Harness): Promise<{ 'sink:0': Envelope[]; 'sink:1': Envelope[] }> {
  return { 'sink:0': await h.queues.receive('sink:0', 10_000, 0), 'sink:1': await h.queues.receive('sink:1', 10_000, 0) };
}

const sorted = (values: readonly unknown[]) => [...values].map(String).sort();
const valuesOf = (envelopes: readonly Envelope[]) => envelopes.flatMap((e) => (e.records ?? []).map((r) => r.v));
const kindsOf = (envelopes: readonly Envelope[]) => envelopes.map((e) => e.kind);

async function stepAndSettle(h: Harness, envelopes: readonly Envelope[]): Promise<StepResult> {
  const result = await h.executor.step(envelopes);
  await Promise.all(result.pendingSnapshots);
  return result;
}

/** Reads a snapshot's keyed state back: applies the handle chain (full, then deltas) relative to the snapshot directory. */
async function readKeyedState(storage: FileCheckpointStorage, dir: string, handles: readonly StateHandle[]): Promise<Map<string, unknown>> {
  const entries = new Map<string, unknown>();
  for (const h of handles) {
    const text = new TextDecoder().decode(await storage.get(resolveRelative(dir, h.path)));
    for (const line of text.split('\n').filter((l) => l !== '')) {
      const [, key, value] = JSON.parse(line) as [number, string, unknown?];
      if (value === undefined) entries.delete(key);
      else entries.set(key, value);
    }
  }
  return entries;
}

const countKey = (word: string) => stateEntryKey('counter', 'count', serializeKey(word));

describe('SubtaskExecutor: fixtures', () => {
  it('drives a subtask with two input channels and two output channels', () => {
    const plan = countingPlan();
    const counter = vertexById(plan, 'counter');
    expect(counter.operators.map((o) => o.uid)).toEqual(['counter']);
    expect(counter.outputs.map((e) => [e.to, e.partitioning])).toEqual([['sink', 'rebalance']]);
    expect(new Set([APPLE, PEAR, FIG]).size).toBe(3);
  });
});

describe('SubtaskExecutor: records and sequence numbers', () => {
  it('processes records through keyed state and numbers each output channel from 1', async () => {
    const h = aCounterSubtask();

    const first = await h.executor.step([data(A, 1, APPLE, PEAR), data(B, 1, APPLE)]);
    const second = await h.executor.step([data(A, 2, PEAR)]);

    expect(first).toMatchObject({ recordsIn: 3, recordsOut: 3, dropped: 0, finished: false });
    expect(second).toMatchObject({ recordsIn: 1, recordsOut: 1, dropped: 0 });
    const out = await sent(h);
    // Round-robin over the sink's subtasks, in processing order: sink:0, sink:1, sink:0, sink:1.
    expect(out['sink:0'].map((e) => [e.seq, e.records?.map((r) => r.v)])).toEqual([[1, [`${APPLE}=1`, `${APPLE}=2`]]]);
    expect(out['sink:1'].map((e) => [e.seq, e.records?.map((r) => r.v)])).toEqual([
      [1, [`${PEAR}=1`]],
      [2, [`${PEAR}=2`]],
    ]);
    expect(out['sink:1'].every((e) => e.from.op === 'counter' && e.from.subtask === 0 && e.gen === GEN && e.job === 'counts')).toBe(true);
    const control = await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl();
    expect(control).toMatchObject({ version: 2, inputs: { 'words:0': { seq: 2 }, 'words:1': { seq: 1 } }, outputs: { 'sink:0': 1, 'sink:1': 2 }, roundRobin: 4 });
  });

  it.each([
    ['in the same batch', [[data(A, 1, APPLE), data(A, 1, APPLE)]]],
    ['in a later step', [[data(A, 1, APPLE)], [data(A, 1, APPLE)]]],
    ['after the gap before a held envelope filled', [[data(A, 2, PEAR)], [data(A, 1, APPLE)], [data(A, 2, PEAR)]]],
  ])('drops an already-seen envelope %s and counts it', async (_case, batches) => {
    const h = aCounterSubtask();

    const results: StepResult[] = [];
    for (const batch of batches) results.push(await h.executor.step(batch));

    expect(results.reduce((n, r) => n + r.dropped, 0)).toBe(1);
    const firsts = batches.flat().filter((e, i, all) => all.findIndex((x) => x.seq === e.seq) === i);
    expect(results.reduce((n, r) => n + r.recordsIn, 0)).toBe(firsts.length);
    const out = await sent(h);
    expect(sorted(valuesOf([...out['sink:0'], ...out['sink:1']]))).toEqual(sorted(firsts.map((e) => `${(e.records![0]!.v as Word).word}=1`)));
  });

  it.each([0, 2])('drops an envelope of generation %i (the run is generation 1) without moving the channel position', async (gen) => {
    const h = aCounterSubtask();
    const stale = dataEnvelope({ from: A, to: ME, seq: 1, job: 'counts', gen }, [keyedRecord({ word: APPLE }, APPLE, M)]);

    const dropped = await h.executor.step([stale]);
    const accepted = await h.executor.step([data(A, 1, PEAR)]);

    expect(dropped).toMatchObject({ dropped: 1, recordsIn: 0, recordsOut: 0 });
    expect(accepted).toMatchObject({ dropped: 0, recordsIn: 1 });
    const out = await sent(h);
    expect(valuesOf([...out['sink:0'], ...out['sink:1']])).toEqual([`${PEAR}=1`]);
  });

  it('drops an envelope from a sender that is not one of its input channels', async () => {
    const h = aCounterSubtask();
    const stranger = dataEnvelope({ from: { op: 'counter', subtask: 1 }, to: ME, seq: 1, job: 'counts', gen: GEN }, [keyedRecord({ word: APPLE }, APPLE, M)]);

    const result = await h.executor.step([stranger]);

    expect(result).toMatchObject({ dropped: 1, recordsIn: 0 });
  });

  it('sends identical envelopes (values, targets and seqs) when the same step is replayed from the same committed state', async () => {
    // Given two subtasks with the same committed history, on separate stores
    const history = [data(A, 1, APPLE, PEAR), data(B, 1, FIG)];
    const batch = [data(B, 2, APPLE, FIG), data(A, 2, PEAR, APPLE, FIG)];
    const original = aCounterSubtask();
    const replay = aCounterSubtask();
    await original.executor.step(history);
    await replay.executor.step(history);
    const before = await sent(original);
    await sent(replay);

    // When both run the same batch
    await original.executor.step(batch);
    await replay.executor.step(batch);

    // Then the receiver gets the very same envelopes twice, so it drops the second copy by seq
    const a = await sent(original);
    const b = await sent(replay);
    expect(a['sink:0'].length + a['sink:1'].length).toBeGreaterThan(0);
    expect(b).toEqual(a);
    expect(a['sink:0'][0]!.seq).toBe(before['sink:0'].at(-1)!.seq + 1);
  });
});

describe('SubtaskExecutor: gap-free channels', () => {
  /** What counter:0 sends for `batches`, with its control row after them. */
  async function outputsOf(batches: readonly (readonly Envelope[])[], options: Parameters<typeof aCounterSubtask>[0] = {}) {
    const h = aCounterSubtask(options);
    const results: StepResult[] = [];
    for (const b of batches) {
      results.push(await h.executor.step(b));
      await Promise.all(results.at(-1)!.pendingSnapshots);
    }
    const control = await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl();
    return { h, results, out: await sent(h), control };
  }
  const inOrder = [data(A, 1, APPLE), data(A, 2, PEAR), data(A, 3, APPLE, FIG), data(B, 1, FIG)];

  it.each([
    ['reversed in one batch', [[data(A, 3, APPLE, FIG), data(A, 2, PEAR), data(B, 1, FIG), data(A, 1, APPLE)]]],
    ['newest first, one per step (a FIFO queue handing failures back)', [[data(A, 3, APPLE, FIG)], [data(A, 2, PEAR)], [data(B, 1, FIG)], [data(A, 1, APPLE)]]],
    ['with duplicates of envelopes waiting behind the gap', [[data(A, 3, APPLE, FIG)], [data(A, 3, APPLE, FIG), data(A, 2, PEAR)], [data(A, 2, PEAR), data(B, 1, FIG)], [data(A, 1, APPLE)]]],
  ])('takes envelopes that arrive %s in seq order, and counts every record once', async (_case, batches) => {
    const expected = await outputsOf([inOrder]);
    const { out, control, results } = await outputsOf(batches);

    // Per key the counts run 1, 2, ... with none missing or repeated, exactly as for the channel in order
    const counts = (o: typeof out) => sorted(valuesOf([...o['sink:0'], ...o['sink:1']]));
    expect(counts(out)).toEqual(counts(expected.out));
    expect(results.reduce((n, r) => n + r.recordsIn, 0)).toBe(5);
    expect(control).toMatchObject({ inputs: { 'words:0': { seq: 3 }, 'words:1': { seq: 1 } } });
    expect(control?.ahead ?? []).toEqual([]);
    expect(control?.gapSince).toBeUndefined();
  });

  it('keeps an envelope that came ahead of a gap in its control row, and takes nothing after the gap until it fills', async () => {
    const { control, results } = await outputsOf([[data(A, 1, APPLE)], [data(A, 3, FIG)]]);

    expect(results[1]).toMatchObject({ recordsIn: 0, dropped: 0 });
    expect(control).toMatchObject({ inputs: { 'words:0': { seq: 1 } }, gapSince: { 'words:0': 10_000 } });
    expect(control?.ahead?.map((e) => e.seq)).toEqual([3]);
  });

  it('holds a barrier behind a gap like a record: the checkpoint completes only once the gap fills', async () => {
    const h = aCounterSubtask();
    await h.executor.step([data(A, 1, APPLE), barrierOn(A, 3, 1), barrierOn(B, 1, 1)]);
    expect(h.coordinator.acks).toEqual([]);

    await stepAndSettle(h, [data(A, 2, PEAR)]);

    expect(h.coordinator.acks.map((a) => a.checkpointId)).toEqual([1]);
    const snapshot = h.coordinator.acks[0]!.operators['counter']!;
    const state = await readKeyedState(h.storage, barrier(1).location, snapshot.keyedState);
    // PEAR came before the barrier on its channel, so it is in checkpoint 1
    expect(state.get(countKey(PEAR))).toBe(1);
  });

  it('fails with CHANNEL_GAP naming the channel when more envelopes wait behind a gap than a reordering queue explains (a lost envelope)', async () => {
    const h = aCounterSubtask({ channels: { maxEnvelopesAhead: 3 } });
    await h.executor.step([data(A, 1, APPLE), data(A, 3, PEAR), data(A, 4, PEAR), data(A, 5, PEAR)]);

    const failure = h.executor.step([data(A, 6, FIG)]);

    await expect(failure).rejects.toMatchObject({ code: ErrorCode.ChannelGap });
    await expect(failure).rejects.toThrow(/channel words:0 → counter:0 has a gap that cannot fill: envelope 2 never arrived .*seq 3, 4, 5, 6/);
  });

  it('fails with CHANNEL_GAP once a gap stays open past gapTimeoutMs (a forged envelope with a high seq)', async () => {
    const clock = new FakeClock(10_000);
    const h = aCounterSubtask({ clock, channels: { gapTimeoutMs: 60_000 } });
    await h.executor.step([data(A, 1, APPLE), data(A, 1_000_000, PEAR)]);
    clock.advance(60_000);
    await h.executor.step([data(B, 1, FIG)]);
    clock.advance(1);

    await expect(h.executor.step([data(B, 2, FIG)])).rejects.toThrow(/channel words:0 → counter:0 has a gap that cannot fill: envelope 2 never arrived and it has been missing for 60001ms/);
  });

  it('fails with CHANNEL_GAP when its channel ends while an envelope still waits behind a gap (lost or forged)', async () => {
    const h = aCounterSubtask();
    await h.executor.step([data(A, 1, APPLE), data(A, 5, PEAR)]);

    await expect(h.executor.step([endOn(A, 2, 1)])).rejects.toThrow(/channel words:0 → counter:0 has a gap that cannot fill: envelope 3 never arrived and the channel ended at envelope 2 \(seq 5\)/);
  });

  it('times each gap from when it opened: a gap that filled does not age a later one on another channel, and a failing attempt sends nothing', async () => {
    // Given a gap on A opened at t, filled 50 s later while a gap on B opens
    const clock = new FakeClock(10_000);
    const h = aCounterSubtask({ clock, channels: { gapTimeoutMs: 60_000 } });
    await h.executor.step([data(A, 2, APPLE)]);
    clock.advance(50_000);
    await h.executor.step([data(A, 1, PEAR), data(B, 2, FIG)]);
    await sent(h);

    // When 70 s have passed since the first gap, 20 s since B's: no failure
    clock.advance(20_000);
    await h.executor.step([data(A, 3, PEAR)]);
    expect((await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl())?.gapSince).toEqual({ 'words:1': 60_000 });
    await sent(h);

    // Then once B's gap is older than the limit the step fails, having sent nothing
    clock.advance(40_001);
    await expect(h.executor.step([data(A, 4, APPLE)])).rejects.toThrow(/channel words:1 → counter:0 has a gap that cannot fill: envelope 1 never arrived and it has been missing for 60001ms/);
    const out = await sent(h);
    expect([...out['sink:0'], ...out['sink:1']]).toEqual([]);
  });

  it('with no room for envelopes ahead (maxEnvelopesAhead 0, in-process channels), fails at the first gap', async () => {
    const h = aCounterSubtask({ channels: { maxEnvelopesAhead: 0 } });
    await expect(h.executor.step([data(A, 2, APPLE)])).rejects.toMatchObject({ code: ErrorCode.ChannelGap });
  });

  it(`allows ${DEFAULT_MAX_ENVELOPES_AHEAD} envelopes ahead by default`, async () => {
    const ahead = Array.from({ length: DEFAULT_MAX_ENVELOPES_AHEAD }, (_, i) => data(A, i + 2, PEAR));
    const { control } = await outputsOf([ahead]);
    expect(control?.ahead).toHaveLength(DEFAULT_MAX_ENVELOPES_AHEAD);
  });

  it('spills envelopes held back for alignment to checkpoint storage when they outgrow the control row, and takes them back in order', async () => {
    // Given a control row that carries at most 200 bytes of held-back envelopes
    const spillDir = `${root}/spill`;
    const h = aCounterSubtask({ channels: { maxInlineHeldBytes: 200, spillDir } });
    const control = () => h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl();

    // When channel A delivers its barrier and then more records than that while B has not
    await h.executor.step([barrierOn(A, 1, 1), data(A, 2, APPLE, PEAR, FIG), data(A, 3, APPLE, PEAR, FIG)]);

    // Then the row references a spill object and holds nothing itself
    const spilled = await control();
    expect(spilled?.held).toEqual([]);
    expect(spilled?.spill).toMatch(new RegExp(`^${spillDir}/counter-0-v1-`));
    expect(await h.storage.exists(spilled!.spill!)).toBe(true);

    // And more held records go to a new spill object, the old one deleted
    await h.executor.step([data(A, 4, APPLE)]);
    const respilled = await control();
    expect(respilled?.spill).not.toBe(spilled?.spill);
    expect(await h.storage.exists(spilled!.spill!)).toBe(false);

    // When B's barrier completes the alignment, the held records are processed after the snapshot, in order
    await stepAndSettle(h, [barrierOn(B, 1, 1)]);
    const after = await control();
    expect(after?.spill).toBeUndefined();
    expect(after?.held).toEqual([]);
    expect(await h.storage.list(spillDir)).toEqual([]);
    expect(h.coordinator.acks.map((a) => a.checkpointId)).toEqual([1]);
    const out = await sent(h);
    expect(sorted(valuesOf([...out['sink:0'], ...out['sink:1']]))).toEqual(sorted([`${APPLE}=1`, `${PEAR}=1`, `${FIG}=1`, `${APPLE}=2`, `${PEAR}=2`, `${FIG}=2`, `${APPLE}=3`]));
  });

  it('fails with LIMIT_EXCEEDED, naming the subtask and the sizes, when held-back envelopes outgrow the control row and there is no spill directory', async () => {
    const h = aCounterSubtask({ channels: { maxInlineHeldBytes: 200 } });
    const failure = h.executor.step([barrierOn(A, 1, 1), data(A, 2, APPLE, PEAR, FIG), data(A, 3, APPLE, PEAR, FIG)]);
    await expect(failure).rejects.toMatchObject({ code: ErrorCode.LimitExceeded });
    await expect(failure).rejects.toThrow(/subtask counter:0 holds back 2 envelopes \(\d+ bytes\), more than its control row carries \(200 bytes\)/);
  });
});

describe('SubtaskExecutor: packing and watermarks', () => {
  it('packs at most maxRecordsPerEnvelope records per envelope, numbering each envelope of a channel in turn', async () => {
    const h = aCounterSubtask({ maxRecordsPerEnvelope: 2 });

    await h.executor.step([data(A, 1, APPLE, APPLE, APPLE, APPLE, APPLE, APPLE, APPLE)]);

    const out = await sent(h);
    expect(out['sink:0'].map((e) => [e.seq, e.records?.length])).toEqual([
      [1, 2],
      [2, 2],
    ]);
    expect(out['sink:1'].map((e) => [e.seq, e.records?.length])).toEqual([
      [1, 2],
      [2, 1],
    ]);
    expect(valuesOf([...out['sink:0'], ...out['sink:1']]).sort()).toEqual([1, 2, 3, 4, 5, 6, 7].map((n) => `${APPLE}=${n}`).sort());
  });

  it('packs records by encoded bytes when maxEnvelopeBytes is set: each envelope as full as the limit allows', async () => {
    const limit = 40;
    const h = aCounterSubtask({ maxEnvelopeBytes: limit });

    await h.executor.step([data(A, 1, ...Array.from({ length: 9 }, () => APPLE))]);

    const out = await sent(h);
    const size = (r: unknown) => Buffer.byteLength(JSON.stringify(r), 'utf8') + 1;
    for (const channel of [out['sink:0'], out['sink:1']]) {
      expect(channel.map((e) => e.seq)).toEqual(channel.map((_, i) => i + 1));
      channel.forEach((e, i) => {
        const bytes = e.records!.reduce((n, r) => n + size(r), 0);
        expect(bytes).toBeLessThanOrEqual(limit);
        // Sealed only when the next record would not have fitted.
        const next = channel[i + 1]?.records?.[0];
        if (next !== undefined) expect(bytes + size(next)).toBeGreaterThan(limit);
      });
    }
    expect(out['sink:0'].length + out['sink:1'].length).toBeGreaterThan(2);
    expect(valuesOf([...out['sink:0'], ...out['sink:1']]).sort()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => `${APPLE}=${n}`).sort());
  });

  it('names the edge when a record cannot be encoded as JSON (a BigInt) instead of throwing a bare TypeError', async () => {
    const job = new Job('counts', { maxParallelism: M });
    job
      .source(generator<Word>({ count: 0, generate: (i) => ({ word: `w${i}` }) }), { uid: 'words', parallelism: 2 })
      .keyBy((w) => w.word)
      .process({ processElement: (_w: Word, _ctx, out) => out.collect(BigInt(1) as unknown as string) }, { uid: 'counter', parallelism: 2 })
      .rebalance()
      .sinkTo(collectSink<string>('task-step-bigint'), { uid: 'sink', parallelism: 2 });
    const h = aCounterSubtask({ plan: buildPlan(job), maxEnvelopeBytes: 1024 });

    const step = h.executor.step([data(A, 1, APPLE)]);

    await expect(step).rejects.toThrow(/a record vertex 'counter' sends to 'sink' cannot be encoded as JSON.*BigInt/);
    await expect(step).rejects.toMatchObject({ code: 'USER_FUNCTION' });
  });

  const wm = (from: ChannelEnd, seq: number, watermark: number) => watermarkEnvelope({ from, to: ME, seq, job: 'counts', gen: GEN }, watermark);

  it('advances its watermark to the minimum over its input channels, forwards it, and fires event-time timers when it passes them', async () => {
    const h = aCounterSubtask();
    await h.executor.step([data(A, 1, APPLE)]);
    await sent(h);

    // A at 2_000 but B still at 500: the subtask is at 500, the timer at 1_000 waits
    await h.executor.step([wm(A, 2, 2_000), wm(B, 1, 500)]);
    const early = await sent(h);
    // B moves to 1_500: the subtask moves to 1_500 and the timer fires
    await h.executor.step([wm(B, 2, 1_500)]);
    const late = await sent(h);

    expect(early['sink:0'].map((e) => [e.kind, e.watermark])).toEqual([[EnvelopeKind.Watermark, 500]]);
    expect(valuesOf([...early['sink:0'], ...early['sink:1']])).toEqual([]);
    expect(valuesOf([...late['sink:0'], ...late['sink:1']])).toEqual([`${APPLE} final 1`]);
    // The timer's output precedes the watermark that fired it.
    expect(late['sink:1'].map((e) => [e.kind, e.watermark])).toEqual([
      [EnvelopeKind.Data, undefined],
      [EnvelopeKind.Watermark, 1_500],
    ]);
    expect((await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl())?.watermark).toBe(1_500);
  });

  it('never moves its watermark backwards', async () => {
    const h = aCounterSubtask();
    await h.executor.step([wm(A, 1, 800), wm(B, 1, 800)]);
    await sent(h);

    await h.executor.step([wm(A, 2, 300)]);

    const out = await sent(h);
    expect(out['sink:0']).toEqual([]);
    expect((await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl())?.watermark).toBe(800);
  });
});

describe('SubtaskExecutor: barrier alignment', () => {
  it('in exactly-once mode holds back a channel after its barrier until every channel has delivered it, then snapshots, forwards and acks', async () => {
    // Given barrier 1 (triggered at 9_000) arrives on A at 10_000, followed on A by a record for APPLE, and B delivers PEAR
    const h = aCounterSubtask();
    const first = await h.executor.step([barrierOn(A, 1, 1, { timestamp: 9_000 }), data(A, 2, APPLE), data(B, 1, PEAR)]);

    // Then APPLE waits while PEAR goes through, and nothing is acknowledged yet
    expect(first).toMatchObject({ recordsIn: 1, pendingSnapshots: [] });
    const whileAligning = await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl();
    expect(whileAligning?.held.map((e) => e.seq)).toEqual([2]);
    expect(whileAligning?.inputs['words:0']?.blockedAt).toBe(1);
    expect(whileAligning?.inputs['words:1']?.blockedAt).toBeUndefined();

    // When barrier 1 arrives on B half a second later
    h.clock.advance(500);
    const second = await stepAndSettle(h, [barrierOn(B, 2, 1, { timestamp: 9_000 })]);

    // Then the held record is processed after the barrier was forwarded on every output channel
    expect(second.recordsIn).toBe(1);
    const out = await sent(h);
    expect(kindsOf(out['sink:0'])).toEqual([EnvelopeKind.Data, EnvelopeKind.Barrier]);
    expect(kindsOf(out['sink:1'])).toEqual([EnvelopeKind.Barrier, EnvelopeKind.Data]);
    expect(valuesOf(out['sink:0'])).toEqual([`${PEAR}=1`]);
    expect(valuesOf(out['sink:1'])).toEqual([`${APPLE}=1`]);
    expect([...out['sink:0'], ...out['sink:1']].filter((e) => e.kind === EnvelopeKind.Barrier).map((e) => e.barrier?.checkpointId)).toEqual([1, 1]);

    // And the ack carries the operator's snapshot, which has PEAR's count but not APPLE's (it came after the barrier)
    expect(h.coordinator.declines).toEqual([]);
    expect(h.coordinator.acks).toHaveLength(1);
    const ack = h.coordinator.acks[0]!;
    expect(ack.checkpointId).toBe(1);
    expect(ack.task).toEqual({ vertex: 'counter', subtask: 0 });
    expect(Object.keys(ack.operators)).toEqual(['counter']);
    const snap = ack.operators['counter']!;
    expect(snap).toMatchObject({ subtask: 0, keyGroups: [0, 4], pendingCommits: [], stats: { alignmentMs: 500, startDelayMs: 1_000 } });
    expect(snap.keyedState.map((s) => s.kind)).toEqual(['full']);
    const state = await readKeyedState(h.storage, barrier(1).location, snap.keyedState);
    expect(state.get(countKey(PEAR))).toBe(1);
    expect(state.has(countKey(APPLE))).toBe(false);
    const after = await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl();
    expect(after).toMatchObject({ epoch: 1, held: [] });
    expect(Object.values(after!.inputs).map((i) => i.blockedAt)).toEqual([undefined, undefined]);
  });

  it('in at-least-once mode does not hold back records after a barrier, so they reach the snapshot', async () => {
    const h = aCounterSubtask({ mode: 'at-least-once' });

    const first = await h.executor.step([barrierOn(A, 1, 1), data(A, 2, APPLE), data(B, 1, PEAR)]);
    await stepAndSettle(h, [barrierOn(B, 2, 1)]);

    expect(first.recordsIn).toBe(2);
    expect((await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl())?.held).toEqual([]);
    expect(h.coordinator.acks.map((a) => a.checkpointId)).toEqual([1]);
    const snap = h.coordinator.acks[0]!.operators['counter']!;
    const state = await readKeyedState(h.storage, barrier(1).location, snap.keyedState);
    expect(state.get(countKey(APPLE))).toBe(1);
    expect(state.get(countKey(PEAR))).toBe(1);
  });

  it('reports with each barrier the records taken in and sent out since the previous one (quiet checkpoints), counting work after the barrier toward the next', async () => {
    const h = aCounterSubtask();

    // APPLE (1 in, 1 out) before barrier 1; PEAR (1 in, 1 out) after it, in the same step.
    const first = await stepAndSettle(h, [data(A, 1, APPLE), barrierOn(A, 2, 1), barrierOn(B, 1, 1), data(A, 3, PEAR)]);
    expect(h.coordinator.acks.map((a) => [a.checkpointId, a.operators['counter']!.stats.records])).toEqual([[1, 2]]);
    expect(first.workSinceBarrier).toBe(2);
    expect((await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl())?.work).toBe(2);

    // Barrier 2 with nothing after it: PEAR's work counts toward it; barrier 3 right behind reports none.
    const second = await stepAndSettle(h, [barrierOn(A, 4, 2), barrierOn(B, 2, 2), barrierOn(A, 5, 3), barrierOn(B, 3, 3)]);
    expect(h.coordinator.acks.map((a) => [a.checkpointId, a.operators['counter']!.stats.records])).toEqual([
      [1, 2],
      [2, 2],
      [3, 0],
    ]);
    expect(second.workSinceBarrier).toBe(0);
    expect((await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl())?.work).toBeUndefined();
  });

  it.each([1, 2])('ignores a stale barrier %i once it has passed barrier 2 (id <= epoch)', async (stale) => {
    const h = aCounterSubtask();
    await stepAndSettle(h, [barrierOn(A, 1, 2), barrierOn(B, 1, 2)]);
    await sent(h);

    const result = await stepAndSettle(h, [barrierOn(A, 2, stale), data(A, 3, APPLE)]);

    expect(result.recordsIn).toBe(1);
    expect(h.coordinator.acks.map((a) => a.checkpointId)).toEqual([2]);
    const control = await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl();
    expect(control).toMatchObject({ epoch: 2, held: [] });
    expect(control?.inputs['words:0']?.blockedAt).toBeUndefined();
    const out = await sent(h);
    expect(kindsOf([...out['sink:0'], ...out['sink:1']])).not.toContain(EnvelopeKind.Barrier);
    expect(valuesOf([...out['sink:0'], ...out['sink:1']])).toEqual([`${APPLE}=1`]);
  });

  it('declines an older checkpoint when a newer barrier overtakes its alignment, and completes the newer one', async () => {
    const h = aCounterSubtask();

    await stepAndSettle(h, [barrierOn(A, 1, 1), data(A, 2, APPLE), barrierOn(B, 1, 2), barrierOn(A, 3, 2)]);

    expect(h.coordinator.declines).toEqual([{ checkpointId: 1, task: { vertex: 'counter', subtask: 0 }, reason: expect.stringContaining('subsumed by barrier 2') }]);
    expect(h.coordinator.acks.map((a) => a.checkpointId)).toEqual([2]);
    // APPLE arrived before barrier 2 on A, so checkpoint 2 includes it.
    const state = await readKeyedState(h.storage, barrier(2).location, h.coordinator.acks[0]!.operators['counter']!.keyedState);
    expect(state.get(countKey(APPLE))).toBe(1);
  });

  it('ignores a barrier older than the one it is aligning, instead of blocking that channel for ever', async () => {
    // Given A's upstream abandoned checkpoint 2 (it only forwards 3) while B's upstream forwarded 2 and then 3
    const h = aCounterSubtask();

    // When barrier 3 arrives on A before barrier 2 and then 3 arrive on B
    await stepAndSettle(h, [barrierOn(A, 1, 3), barrierOn(B, 1, 2), data(B, 2, PEAR), barrierOn(B, 3, 3), data(A, 2, APPLE)]);

    // Then checkpoint 3 completes and nothing stays held back
    expect(h.coordinator.acks.map((a) => a.checkpointId)).toEqual([3]);
    const control = await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl();
    expect(control).toMatchObject({ epoch: 3, held: [] });
    const out = await sent(h);
    expect(valuesOf([...out['sink:0'], ...out['sink:1']]).sort()).toEqual([`${APPLE}=1`, `${PEAR}=1`].sort());
  });

  it.each<[CheckpointMode, number[], number[]]>([
    // Exactly-once holds B's barrier 2 behind its barrier 1, so checkpoint 1 aligns normally.
    ['exactly-once', [], [1, 2]],
    // At-least-once lets B's barrier 2 subsume 1; A's late barrier 1 must then be ignored, not block A at 1.
    ['at-least-once', [1], [2]],
  ])('in %s mode, with barriers 1 and 2 on B before A, declines %j and acks %j', async (mode, declined, acked) => {
    const h = aCounterSubtask({ mode });

    await stepAndSettle(h, [barrierOn(B, 1, 1), barrierOn(B, 2, 2), barrierOn(A, 1, 1), barrierOn(A, 2, 2)]);

    expect(h.coordinator.declines.map((d) => d.checkpointId)).toEqual(declined);
    expect(h.coordinator.acks.map((a) => a.checkpointId)).toEqual(acked);
    expect(await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl()).toMatchObject({ epoch: 2, held: [] });
  });

  it('writes a savepoint barrier in canonical form inside the savepoint directory', async () => {
    const h = aCounterSubtask();
    const savepoint = { kind: 'savepoint' as const, location: `${root}/savepoints/savepoint-1`, sharedLocation: undefined };

    await stepAndSettle(h, [data(A, 1, APPLE), barrierOn(A, 2, 4, savepoint), barrierOn(B, 1, 4, savepoint)]);

    const snap = h.coordinator.acks[0]!.operators['counter']!;
    expect(snap.keyedState.map((s) => [s.kind, s.path.startsWith('state/')])).toEqual([['full', true]]);
    const state = await readKeyedState(h.storage, savepoint.location, snap.keyedState);
    expect(state.get(countKey(APPLE))).toBe(1);
  });

  it('finishes after a stop barrier and processes nothing more', async () => {
    const h = aCounterSubtask();

    const stopped = await stepAndSettle(h, [barrierOn(A, 1, 1, { stop: true }), barrierOn(B, 1, 1, { stop: true })]);
    const later = await h.executor.step([data(A, 2, APPLE)]);

    expect(stopped.finished).toBe(true);
    expect(later).toMatchObject({ finished: true, recordsIn: 0 });
    expect(h.coordinator.acks.map((a) => a.checkpointId)).toEqual([1]);
  });
});

describe('SubtaskExecutor: end of input', () => {
  it('on end from every channel moves the watermark to the maximum, fires timers, forwards end and finishes', async () => {
    const h = aCounterSubtask();

    const partial = await h.executor.step([data(A, 1, APPLE), endOn(A, 2, 5)]);
    expect(partial.finished).toBe(false);
    const done = await stepAndSettle(h, [data(B, 1, PEAR, APPLE), endOn(B, 2, 5)]);

    expect(done.finished).toBe(true);
    const out = await sent(h);
    for (const channel of [out['sink:0'], out['sink:1']]) {
      expect(kindsOf(channel).slice(-2)).toEqual([EnvelopeKind.Watermark, EnvelopeKind.End]);
      expect(channel.at(-2)!.watermark).toBe(MAX_WATERMARK);
      expect(channel.at(-1)!.barrier?.checkpointId).toBe(5);
    }
    expect(valuesOf([...out['sink:0'], ...out['sink:1']]).filter((v) => String(v).includes('final')).sort()).toEqual([`${APPLE} final 2`, `${PEAR} final 1`].sort());
    expect(h.coordinator.acks.map((a) => a.checkpointId)).toEqual([5]);
    expect(await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl()).toMatchObject({ finished: true, epoch: 5, watermark: MAX_WATERMARK });

    const after = await h.executor.step([data(A, 3, APPLE)]);
    expect(after).toMatchObject({ finished: true, recordsIn: 0, recordsOut: 0 });
  });

  it('fires event-time windows at the watermark and the rest at end of input, and pre-commits them in the sink', async () => {
    // Given events → keyBy(user) → tumbling 10ms count window → collect sink, chained into one vertex
    const job = new Job('windows', { maxParallelism: M });
    job
      .source(generator<{ user: string; t: number }>({ count: 0, generate: (i) => ({ user: 'u', t: i }) }), { uid: 'events', watermarks: { timestamp: (e) => e.t } })
      .keyBy((e) => e.user)
      .window(tumblingEventTimeWindows(10))
      .aggregate<number, number, string>(
        { createAccumulator: () => 0, add: (_e, n) => n + 1, getResult: (n) => n },
        { uid: 'per-user', emit: (user, w, n) => `${user}@${w.start}:${n}` },
      )
      .sinkTo(collectSink<string>('task-step-windows'), { uid: 'sink' });
    const plan = buildPlan(job);
    const vertex = vertexById(plan, 'per-user');
    expect(vertex.operators.map((o) => o.uid)).toEqual(['per-user', 'sink']);
    const coordinator = new RecordingCoordinator();
    const executor = new SubtaskExecutor(
      { plan, vertex, subtask: 0, gen: GEN, runId: 'run-1', mode: 'exactly-once', incremental: true, restoredUids: new Set<string>() },
      { clock: new FakeClock(), queue: new InMemoryQueues(), state: new InMemoryStateStore(), storage: new FileCheckpointStorage(), coordinator },
    );
    const from: ChannelEnd = { op: 'events', subtask: 0 };
    const to: ChannelEnd = { op: 'per-user', subtask: 0 };
    const event = (user: string, t: number) => keyedRecord({ user, t }, user, M, t);

    // When events arrive, the watermark passes 9 and then input ends
    const result = await executor.step([
      dataEnvelope({ from, to, seq: 1, job: 'windows' }, [event('a', 1), event('b', 3), event('a', 5), event('a', 12)]),
      watermarkEnvelope({ from, to, seq: 2, job: 'windows' }, 9),
      barrierEnvelope({ from, to, seq: 3, job: 'windows' }, barrier(6), true),
    ]);
    await Promise.all(result.pendingSnapshots);

    // Then [0, 10) fired at watermark 9, [10, 20) at end of input, and the sink pre-committed all of it with checkpoint 6
    expect(result.finished).toBe(true);
    const commits = coordinator.acks[0]!.operators['sink']!.pendingCommits as unknown as { values: string[] }[];
    expect(commits).toHaveLength(1);
    const values = commits[0]!.values;
    expect([...values].sort()).toEqual(['a@0:2', 'a@10:1', 'b@0:1']);
    expect(values.at(-1)).toBe('a@10:1');
  });
});

describe('SubtaskExecutor: commit fencing', () => {
  it('refuses the commit of a zombie whose step started from a state a successor has since committed over', async () => {
    // Given a zombie and its successor on the same state, the zombie paused after sending its outputs
    const store = new InMemoryStateStore();
    const gate = new GatedSender();
    const zombie = aCounterSubtask({ store, queue: gate });
    const successor = aCounterSubtask({ store });
    const zombieStep = zombie.executor.step([data(A, 1, APPLE)]);
    await gate.entered;

    // When the successor commits first and the zombie then tries to commit
    await successor.executor.step([data(A, 1, APPLE), data(B, 1, PEAR)]);
    gate.open();

    // Then the zombie's commit is fenced and the successor's control row stands
    await expect(zombieStep).rejects.toBeInstanceOf(CommitFencedError);
    const control = await store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl();
    expect(control).toMatchObject({ version: 1, inputs: { 'words:0': { seq: 1 }, 'words:1': { seq: 1 } } });
    expect(gate.sent.map((e) => e.seq)).toEqual([1]);
  });

  it('lets the same executor commit step after step (each commit is one version above the last)', async () => {
    const h = aCounterSubtask();
    for (let seq = 1; seq <= 3; seq++) await h.executor.step([data(A, seq, APPLE)]);
    expect((await h.store.forSubtask({ vertex: 'counter', subtask: 0 }).readControl())?.version).toBe(3);
  });
});

describe('SubtaskExecutor: a source held off (read: false)', () => {
  /** numbers 0..9 (one source subtask) → rebalance → sink (1): the source subtask under test is `nums:0`. */
  function aSourceSubtask(queues: InMemoryQueues, store: InMemoryStateStore): SubtaskExecutor {
    const job = new Job('held', { maxParallelism: M });
    job.source(generator<number>({ count: 10, generate: (i) => i }), { uid: 'nums', parallelism: 1 }).rebalance().sinkTo(collectSink<number>('task-step-held'), { uid: 'sink', parallelism: 1 });
    const plan = buildPlan(job);
    const ports: Ports = { clock: new FakeClock(10_000), queue: queues, state: store, storage: new FileCheckpointStorage(), coordinator: new RecordingCoordinator() };
    const config = { plan, vertex: vertexById(plan, 'nums'), subtask: 0, gen: GEN, runId: 'run-1', mode: 'exactly-once' as const, incremental: true, restoredUids: new Set<string>(), sourceChunkSize: 4 };
    return new SubtaskExecutor(config, ports);
  }
  const coordinatorBarrier = (seq: number, checkpointId: number): Envelope =>
    barrierEnvelope({ from: { op: '$coordinator', subtask: 0 }, to: { op: 'nums', subtask: 0 }, seq, job: 'held', gen: GEN }, barrier(checkpointId));

  it('takes barriers and records its wake but reads nothing, and the next reading step sends the same records under the same seqs', async () => {
    // Given a source subtask, and a twin over its own ports that reads at once
    const heldQueues = new InMemoryQueues(1_000);
    const heldStore = new InMemoryStateStore();
    const held = aSourceSubtask(heldQueues, heldStore);
    const twinQueues = new InMemoryQueues(1_000);
    const twin = aSourceSubtask(twinQueues, new InMemoryStateStore());

    // When the held-off step runs for wake 0 with a barrier
    const first = await held.step([coordinatorBarrier(1, 1)], { wake: 0, read: false });
    await Promise.all(first.pendingSnapshots);

    // Then it forwarded the barrier, read no record and recorded its wake
    expect(first).toMatchObject({ recordsIn: 0, recordsOut: 0, finished: false, wake: 'new' });
    expect(first.pendingSnapshots).toHaveLength(1);
    const afterHold = await heldQueues.receive('sink:0', 100, 0);
    expect(kindsOf(afterHold)).toEqual([EnvelopeKind.Barrier]);
    expect((await heldStore.forSubtask({ vertex: 'nums', subtask: 0 }).readControl())).toMatchObject({ wake: 0, epoch: 1 });
    // A repeat of the same wake does nothing more (the wake was recorded)
    expect((await held.step([], { wake: 0 })).wake).toBe('repeat');

    // When the next wake reads, and the twin takes the same barrier and wakes reading throughout
    const next = await held.step([], { wake: 1 });
    await Promise.all((await twin.step([coordinatorBarrier(1, 1)], { wake: 0, read: false })).pendingSnapshots);
    await twin.step([], { wake: 1 });

    // Then the held source read its first chunk then, with the seqs a source that never held off uses
    expect(next.recordsIn).toBe(4);
    const heldSent = await heldQueues.receive('sink:0', 100, 0);
    const twinSent = (await twinQueues.receive('sink:0', 100, 0)).slice(1);
    expect(valuesOf(heldSent)).toEqual([0, 1, 2, 3]);
    expect(heldSent.map((e) => [e.kind, e.seq])).toEqual(twinSent.map((e) => [e.kind, e.seq]));
    expect(heldSent[0]!.seq).toBe(afterHold[0]!.seq + 1);
  });

  it('does not read a source when asked not to, even with no envelopes', async () => {
    const queues = new InMemoryQueues(1_000);
    const executor = aSourceSubtask(queues, new InMemoryStateStore());
    const held = await executor.step([], { wake: 0, read: false });
    expect(held).toMatchObject({ recordsIn: 0, idle: true });
    expect(await queues.receive('sink:0', 100, 0)).toEqual([]);
    const read = await executor.step([], { wake: 1 });
    expect(read).toMatchObject({ recordsIn: 4, idle: false });
    expect(valuesOf(await queues.receive('sink:0', 100, 0))).toEqual([0, 1, 2, 3]);
  });
});
