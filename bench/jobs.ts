/** Jobs and connectors the benchmark runs: a generated word count and a keyed-state builder. */
import { Job, filesSink, generator, valueState, type SinkConnector, type SinkWriter } from '../lib/index.js';
import type { CheckpointOptions } from '../lib/index.js';
import type { SourceConnector } from '../lib/index.js';
import { mulberry32 } from '../lib/connectors/generator.js';
import { setImmediate as nextTurn } from 'node:timers/promises';

/** Counts what a discarding sink received, and when it first received something. */
export interface SinkCounter {
  records: number;
  firstRecordAt: number | undefined;
  /** First values seen (a few), to check what a restored job emits. */
  readonly sample: unknown[];
  /** Called after every write, with the running count (the probe stops a job from here when timers cannot fire). */
  onWrite?: (records: number) => void;
}

/** Creates an empty sink counter. */
export function sinkCounter(): SinkCounter {
  return { records: 0, firstRecordAt: undefined, sample: [] };
}

/** An exactly-once-shaped sink that counts records and throws them away: no I/O, no pending commits. */
export function discardSink<T>(counter: SinkCounter, sampleSize = 0): SinkConnector<T> {
  return {
    type: 'discard',
    exactlyOnce: true,
    createWriter(): SinkWriter<T> {
      return {
        async resume() {
          return 0;
        },
        async write(values) {
          if (counter.firstRecordAt === undefined && values.length > 0) counter.firstRecordAt = performance.now();
          counter.records += values.length;
          for (let i = 0; i < values.length && counter.sample.length < sampleSize; i++) counter.sample.push(values[i]);
          counter.onWrite?.(counter.records);
          return 0;
        },
        async preCommit() {
          return { state: 0, pendingCommits: [] };
        },
      };
    },
    async commit() {},
  };
}

/**
 * Wraps a source so every read first yields one turn of the event loop, as a source doing real I/O (a file, a
 * socket) does. The embedded runner's subtask loops otherwise chain only promises while a source always has data,
 * and timers (the checkpoint ticker among them) never run; the benchmark probes that separately.
 */
export function yieldingSource<T>(source: SourceConnector<T>): SourceConnector<T> {
  return {
    ...source,
    async read(split, max, ctx) {
      await nextTurn();
      return source.read(split, max, ctx);
    },
  };
}

/** `size` distinct lowercase pseudo-words of 3 to 10 letters, deterministic. */
export function vocabulary(size: number, seed = 42): string[] {
  const random = mulberry32(seed);
  const words = new Set<string>();
  while (words.size < size) {
    const length = 3 + Math.floor(random() * 8);
    let w = '';
    for (let i = 0; i < length; i++) w += String.fromCharCode(97 + Math.floor(random() * 26));
    words.add(w);
  }
  return [...words];
}

/** Options of the benchmark word count. */
export interface WordCountJobOptions {
  readonly parallelism: number;
  readonly vocabularySize: number;
  readonly wordsPerLine: number;
  readonly checkpoint: CheckpointOptions;
  /** `discard` counts and drops; `files` writes committed files into `outputDir`. */
  readonly sink: 'discard' | 'files';
  readonly outputDir?: string;
  readonly counter: SinkCounter;
  /** Wrap the generator with `yieldingSource` (false reproduces the timer starvation). @default true */
  readonly yieldToEventLoop?: boolean;
}

/**
 * Word count over an unbounded generator: each element is a line of `wordsPerLine` words drawn uniformly from the
 * vocabulary; split, keyBy word, a running count in keyed value state, one `word<TAB>n` output per word.
 */
export function wordCountJob(o: WordCountJobOptions): Job {
  const words = vocabulary(o.vocabularySize);
  const job = new Job('bench-wordcount', { maxParallelism: 128, parallelism: o.parallelism, checkpoint: o.checkpoint, restart: { type: 'none' } });
  const sink: SinkConnector<string> = o.sink === 'files' ? filesSink<string>({ dir: o.outputDir! }) : discardSink<string>(o.counter);
  const lines = generator<string>({
    generate: (_index, random) => {
      let line = words[Math.floor(random() * words.length)]!;
      for (let i = 1; i < o.wordsPerLine; i++) line += ' ' + words[Math.floor(random() * words.length)]!;
      return line;
    },
  });
  job
    .source(o.yieldToEventLoop === false ? lines : yieldingSource(lines), { uid: 'lines' })
    .flatMap<string>((line, out) => {
      for (const word of line.split(' ')) if (word !== '') out.collect(word);
    }, { name: 'Split' })
    .keyBy((word) => word)
    .process(
      {
        state: { count: valueState<number>() },
        processElement(word, ctx, out) {
          const n = (ctx.state.count.value() ?? 0) + 1;
          ctx.state.count.update(n);
          out.collect(`${word}\t${n}`);
        },
      },
      { uid: 'count', name: 'Count' },
    )
    .sinkTo(sink, { uid: 'sink', name: o.sink === 'files' ? 'Files' : 'Discard' });
  return job;
}

/** Options of the keyed-state job used for restore and incremental checkpoints. */
export interface KeyedStateJobOptions {
  readonly parallelism: number;
  /** Distinct keys created first (element i < keys writes key i). */
  readonly keys: number;
  /** After the first `keys` elements, only keys `0 .. hotKeys-1` are updated. */
  readonly hotKeys: number;
  readonly checkpoint: CheckpointOptions;
  readonly counter: SinkCounter;
  /** Values the sink keeps for inspection. @default 0 */
  readonly sampleSize?: number;
}

/**
 * Builds `keys` distinct keys of keyed value state (a count per key), then keeps updating only `hotKeys` of them, so
 * after the first checkpoint taken past element `keys` a fixed small fraction of the state changes.
 */
export function keyedStateJob(o: KeyedStateJobOptions): Job {
  const job = new Job('bench-keyed-state', { maxParallelism: 128, parallelism: o.parallelism, checkpoint: o.checkpoint, restart: { type: 'none' } });
  job
    .source(yieldingSource(generator<number>({ generate: (index) => (index < o.keys ? index : (index - o.keys) % o.hotKeys) })), { uid: 'keys' })
    .keyBy((k) => k)
    .process(
      {
        state: { count: valueState<number>() },
        processElement(k, ctx, out) {
          const n = (ctx.state.count.value() ?? 0) + 1;
          ctx.state.count.update(n);
          out.collect(n);
        },
      },
      { uid: 'count', name: 'Count' },
    )
    .sinkTo(discardSink<number>(o.counter, o.sampleSize ?? 0), { uid: 'sink', name: 'Discard' });
  return job;
}
