import { describe, expect, it } from 'vitest';
import { generator } from '../../lib/connectors/generator.js';
import { SourceOperator } from '../../lib/runtime/operators/source.js';
import type { OperatorRuntime } from '../../lib/runtime/operators/operator.js';
import type { StreamRecord } from '../../lib/core/envelope.js';
import type { SubtaskStateStore } from '../../lib/ports/index.js';

/** A source subtask over a rate-limited generator, with its own clock and an operator state that can be copied. */
async function subtask(rate: number, state: Map<string, unknown>, clock: { t: number }) {
  const op = new SourceOperator('src', generator<number>({ generate: (i) => i, ratePerSecond: rate }), undefined);
  const emitted: number[] = [];
  const store = { getOperatorState: (uid: string) => state.get(uid) ?? [], setOperatorState: (uid: string, v: unknown) => state.set(uid, v) } as unknown as SubtaskStateStore;
  const rt = { uid: 'src', subtask: 0, parallelism: 1, maxParallelism: 128, store, clock: { now: () => clock.t }, runId: 'r', currentWatermark: () => 0 } as OperatorRuntime;
  await op.open(rt, { emit: (r: StreamRecord) => emitted.push(r.v as number) });
  if (!state.has('src')) await op.assignInitialSplits();
  return { op, emitted };
}

describe('a rate-limited source', () => {
  it('reads nothing or exactly one quantum (100 ms of its rate), however far the clock has run', async () => {
    const clock = { t: 1_000 };
    const { op, emitted } = await subtask(100, new Map(), clock);
    const reads: number[] = [];
    for (const t of [1_000, 1_050, 1_300, 5_000, 5_001, 5_002]) {
      clock.t = t;
      reads.push(await op.read(512));
    }
    // 100/s → quantum 10; a clock 4 s ahead allows 400 records but a read still takes 10.
    expect(reads).toEqual([10, 0, 10, 10, 10, 10]);
    expect(emitted).toEqual(Array.from({ length: 50 }, (_, i) => i));
    // And it says when the next quantum is due: 10 records at 100/s after the 100 ms start burst.
    clock.t = 1_000;
    const fresh = await subtask(100, new Map(), clock);
    await fresh.op.read(512);
    expect(fresh.op.nextReadyAt()).toBe(1_000 + 100 + 1);
  });

  it('does not burst to catch up after a long pause: it is owed a second of its rate at most', async () => {
    const clock = { t: 1_000 };
    const { op } = await subtask(100, new Map(), clock);
    await op.read(512);
    // When the clock jumps an hour ahead (the source was held off), reads at that instant stop after about a second's worth
    clock.t = 3_601_000;
    let reads = 0;
    while ((await op.read(512)) > 0) reads++;
    expect(reads).toBeGreaterThanOrEqual(9);
    expect(reads).toBeLessThanOrEqual(11);
    expect(op.nextReadyAt()).toBeGreaterThan(clock.t);
  });

  it('replays a step in a fresh executor as nothing or the same records, whatever its clock says', async () => {
    // Given a subtask that read one quantum and committed its position
    const clock = { t: 1 };
    const committed = new Map<string, unknown>();
    const first = await subtask(1_000, committed, clock);
    await first.op.read(512);
    const position = new Map(committed);
    // And the step that followed, which sent its records and crashed before its commit
    clock.t = 9_000;
    await first.op.read(512);
    const sent = first.emitted.slice(100);
    expect(sent).toHaveLength(100);
    // When the step is replayed from the committed position by fresh executors at various times
    for (const t of [1, 11, 100, 101, 102, 501, 60_001]) {
      const replay = await subtask(1_000, new Map(position), { t });
      const n = await replay.op.read(512);
      // Then each reads either nothing (the next step reads these records) or exactly what was sent
      if (n === 0) expect(replay.emitted).toEqual([]);
      else expect(replay.emitted).toEqual(sent);
    }
  });
});
