import type { SourceConnector, SourceSplit } from '../api/connector.js';
import { murmur3 } from '../graph/key-groups.js';

/** Options of the generator source. */
export interface GeneratorOptions<T> {
  /** Builds element `index`; `random` is seeded from the generator's seed and the index, so output is deterministic. */
  readonly generate: (index: number, random: () => number) => T;
  /** Elements to produce; omit for an unbounded stream. @default unbounded */
  readonly count?: number;
  /** Seed of the per-element random numbers. @default 0 */
  readonly seed?: number;
  /** Elements per second across all subtasks. @default unlimited */
  readonly ratePerSecond?: number;
  /** Splits the sequence is cut into (split i yields indices i, i + splits, ...). @default the source's parallelism at first start */
  readonly splits?: number;
}

/** A seeded PRNG (mulberry32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface GeneratorPosition {
  readonly split: number;
  readonly splits: number;
  /** Elements of this split already emitted. */
  readonly emitted: number;
}

/** A deterministic, seeded source of generated elements, bounded or unbounded, optionally rate-limited. */
export function generator<T>(options: GeneratorOptions<T>): SourceConnector<T> {
  const seed = options.seed ?? 0;
  const count = options.count ?? Infinity;
  return {
    type: 'generator',
    bounded: Number.isFinite(count),
    ratePerSecond: options.ratePerSecond,
    async createSplits(parallelism: number): Promise<SourceSplit[]> {
      const splits = options.splits ?? parallelism;
      return Array.from({ length: splits }, (_, i) => ({ id: `generator-${i}`, position: { split: i, splits, emitted: 0 } satisfies GeneratorPosition, done: i >= count }));
    },
    async read(split: SourceSplit, max: number) {
      const pos = split.position as GeneratorPosition;
      const values: T[] = [];
      let emitted = pos.emitted;
      for (let index = pos.split + emitted * pos.splits; values.length < max && index < count; index = pos.split + emitted * pos.splits) {
        let random: (() => number) | undefined;
        const i = index;
        values.push(options.generate(index, () => (random ??= mulberry32(murmur3(String(i), seed)))()));
        emitted++;
      }
      const next = pos.split + emitted * pos.splits;
      return { values, split: { id: split.id, position: { ...pos, emitted }, done: next >= count } };
    },
  };
}
