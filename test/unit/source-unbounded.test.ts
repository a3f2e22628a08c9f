import { describe, expect, it } from 'vitest';
import { SourceOperator } from '../../lib/runtime/operators/source.js';
import type { SourceConnector, SourceSplit } from '../../lib/api/connector.js';
import type { OperatorRuntime } from '../../lib/runtime/operators/operator.js';
import type { SubtaskStateStore } from '../../lib/ports/index.js';
import { MAX_WATERMARK } from '../../lib/runtime/watermark.js';

/** One split of timestamps 1..3 that is done after one read; `bounded` as given (a Kinesis shard read to its end is such a split). */
function oneSplit(bounded: boolean): SourceConnector<number> {
  return {
    type: 'test',
    bounded,
    async createSplits(): Promise<SourceSplit[]> {
      return [{ id: 'only', position: 0, done: false }];
    },
    async read(split) {
      return { values: split.position === 0 ? [1_000, 2_000, 3_000] : [], split: { id: split.id, position: 1, done: true } };
    },
  };
}

async function subtask(connector: SourceConnector<number>) {
  const op = new SourceOperator('src', connector, { timestamp: (v) => v as number, outOfOrderness: 0 });
  const state = new Map<string, unknown>();
  const store = { getOperatorState: (uid: string) => state.get(uid) ?? [], setOperatorState: (uid: string, v: unknown) => state.set(uid, v) } as unknown as SubtaskStateStore;
  const rt = { uid: 'src', subtask: 0, parallelism: 1, maxParallelism: 128, store, clock: { now: () => 1 }, runId: 'r', currentWatermark: () => 0 } as OperatorRuntime;
  await op.open(rt, { emit: () => undefined });
  await op.assignInitialSplits();
  return op;
}

describe('a source whose splits are all done', () => {
  it('has finished, with the maximum watermark, when it is bounded', async () => {
    const op = await subtask(oneSplit(true));
    await op.read(10);
    expect(op.isFinished()).toBe(true);
    expect(op.currentSourceWatermark()).toBe(MAX_WATERMARK);
  });

  it('has not finished when it is unbounded, and holds the watermark it reached, since more splits may come', async () => {
    // (Before: the job ended once a Kinesis shard was read to its end before its children were discovered, and
    // every event-time window fired, making the children's records late.)
    const op = await subtask(oneSplit(false));
    await op.read(10);
    expect(op.isFinished()).toBe(false);
    expect(op.currentSourceWatermark()).toBe(3_000 - 1);
  });
});

describe('a split that does not hold the watermark', () => {
  /** A split with timestamps 1..3 and a silent one; `holds` says whether the silent one holds the watermark. */
  function withSilentSplit(holds: boolean): SourceConnector<number> {
    return {
      type: 'test',
      bounded: false,
      async createSplits(): Promise<SourceSplit[]> {
        return [{ id: 'events', position: 0, done: false }, { id: 'repair', position: 0, done: false }];
      },
      async read(split) {
        return { values: split.id === 'events' && split.position === 0 ? [1_000, 2_000, 3_000] : [], split: { ...split, position: 1 } };
      },
      holdsWatermark: (split) => holds || split.id !== 'repair',
    };
  }

  it('leaves the watermark to the splits that hold it; one that holds and is silent keeps it at the minimum', async () => {
    const free = await subtask(withSilentSplit(false));
    await free.read(10);
    expect(free.currentSourceWatermark()).toBe(3_000 - 1);
    const held = await subtask(withSilentSplit(true));
    await held.read(10);
    expect(held.currentSourceWatermark()).toBeLessThan(0);
  });
});
