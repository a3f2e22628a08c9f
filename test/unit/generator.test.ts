import { describe, expect, it } from 'vitest';
import { generator, mulberry32 } from '../../lib/connectors/generator.js';
import type { SourceConnector, SourceSplit } from '../../lib/api/connector.js';
import { generatedSequence, mulberry32Reference } from '../support/reference-generator.js';

const ctx = { now: () => 0 };

/** Each value carries its index and a seeded random draw, so output can be compared across split layouts. */
const numbered = (options: { count?: number; seed?: number; splits?: number } = {}) =>
  generator<{ index: number; r: number }>({ generate: (index, random) => ({ index, r: random() }), ...options });

/** Reads every split to the end, `max` values at a time; returns the values per split. */
async function drain<T>(source: SourceConnector<T>, splits: readonly SourceSplit[], max = 3): Promise<T[][]> {
  const out: T[][] = [];
  for (let split of splits) {
    const values: T[] = [];
    for (let guard = 0; !split.done; guard++) {
      if (guard > 10_000) throw new Error('split never finished');
      const result = await source.read(split, max, ctx);
      values.push(...result.values);
      split = result.split;
    }
    out.push(values);
  }
  return out;
}

const byIndex = (a: { index: number }, b: { index: number }) => a.index - b.index;

describe('generator', () => {
  it.each([1, 2, 3, 7, 25, 40])('generates the same values for indices 0..24 whether cut into %i splits', async (splits) => {
    const reference = (await drain(numbered({ count: 25, seed: 9, splits: 1 }), await numbered({ count: 25, seed: 9, splits: 1 }).createSplits(1))).flat();
    const source = numbered({ count: 25, seed: 9, splits });

    const values = (await drain(source, await source.createSplits(4))).flat();

    expect(values.sort(byIndex)).toEqual(reference);
    expect(reference.map((v) => v.index)).toEqual(Array.from({ length: 25 }, (_, i) => i));
  });

  it('takes the split count from the parallelism at first start, and deals indices i, i + n, … to split i', async () => {
    const source = numbered({ count: 10 });
    const splits = await source.createSplits(3);

    const values = await drain(source, splits);

    expect(splits.map((s) => s.id)).toEqual(['generator-0', 'generator-1', 'generator-2']);
    expect(values.map((v) => v.map((x) => x.index))).toEqual([
      [0, 3, 6, 9],
      [1, 4, 7],
      [2, 5, 8],
    ]);
  });

  it('marks splits that have no index below count as done from the start', async () => {
    const splits = await numbered({ count: 2 }).createSplits(5);
    expect(splits.map((s) => s.done)).toEqual([false, false, true, true, true]);
  });

  it('resumes from a checkpointed position with exactly the values not yet read', async () => {
    const source = numbered({ count: 20, splits: 2 });
    const [split] = await source.createSplits(2);
    const all = await source.read(split!, 100, ctx);

    const first = await source.read(split!, 4, ctx);
    const checkpointed = JSON.parse(JSON.stringify(first.split)) as SourceSplit;
    const rest = await source.read(checkpointed, 100, ctx);

    expect([...first.values, ...rest.values]).toEqual(all.values);
    expect(first.split).toMatchObject({ done: false, position: { split: 0, splits: 2, emitted: 4 } });
    expect(rest.split.done).toBe(true);
  });

  it('depends on the seed, and only on the seed and index', async () => {
    const read = async (seed: number) => (await drain(numbered({ count: 5, seed }), await numbered({ count: 5, seed }).createSplits(1))).flat();
    expect(await read(1)).toEqual(await read(1));
    expect((await read(1)).map((v) => v.r)).not.toEqual((await read(2)).map((v) => v.r));
  });

  it.each([1, 3, 8])('yields exactly its documented sequence (re-derived by a plain loop) when cut into %i splits', async (splits) => {
    const definition = { generate: (index: number, random: () => number) => ({ index, r: random(), r2: random() }), count: 500, seed: 11 };
    const source = generator({ ...definition, splits });

    const values = (await drain(source, await source.createSplits(splits), 7)).flat();

    expect(values).toHaveLength(500);
    expect(values.sort(byIndex)).toEqual(generatedSequence(definition));
  });

  it('is unbounded without a count and keeps going', async () => {
    const source = numbered();
    const [split] = await source.createSplits(1);

    const result = await source.read(split!, 1000, ctx);

    expect(source.bounded).toBe(false);
    expect(result.values).toHaveLength(1000);
    expect(result.split.done).toBe(false);
  });
});

describe('mulberry32', () => {
  it('is deterministic per seed and stays in [0, 1)', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const draws = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(draws);
    expect(draws.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Set(draws).size).toBe(1000);
  });

  it.each([0, 1, 42, 0x9747b28c, 0xffffffff])('draws what the reference algorithm draws for seed %i', (seed) => {
    const floe = mulberry32(seed);
    const reference = mulberry32Reference(seed);
    expect(Array.from({ length: 200 }, () => floe())).toEqual(Array.from({ length: 200 }, () => reference()));
  });
});
