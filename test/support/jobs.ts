import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Job, tumblingEventTimeWindows, valueState, type SinkConnector, type SourceConnector, type SourceSplit } from '../../lib/index.js';
import { generator } from '../../lib/connectors/generator.js';
import { collectSink, resetCollector, type CollectSink } from '../../lib/connectors/collect-sink.js';
import { generatedSequence } from './reference-generator.js';
import type { EmbeddedRunner, EmbeddedRunOptions } from '../../lib/hosts/embedded/embedded-runner.js';
import type { TriggerStatus } from '../../lib/rest/job-control.js';
import type { Manifest } from '../../lib/core/manifest/model.js';
import type { RunOutcome } from '../../lib/coordination/restarts.js';

// Shared jobs, sources and oracles for the embedded integration tests. Every builder has safe defaults; a test
// overrides only what it is about. Oracles are plain loops over the input the job is defined to read (generated
// input re-derived from the generator's definition, never read back through the connector), never numbers copied
// from a run.

// ---------------------------------------------------------------------------------------------------------------
// Scratch space, logs, waiting

/** A fresh directory under the OS temp dir; `cleanup` removes everything made with it. */
export class Scratch {
  private readonly dirs: string[] = [];
  private readonly collectors: string[] = [];

  /** Makes a new empty directory. */
  async dir(prefix = 'floe-it-'): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), prefix));
    this.dirs.push(d);
    return d;
  }

  /** A collect sink with a name no other test uses; forgotten on cleanup. */
  collector<T>(label = 'out'): CollectSink<T> {
    const name = `${label}-${randomUUID()}`;
    this.collectors.push(name);
    return collectSink<T>(name);
  }

  async cleanup(): Promise<void> {
    for (const c of this.collectors.splice(0)) resetCollector(c);
    await Promise.all(this.dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  }
}

/** A `log` option that keeps the lines, for assertions and for failure messages. */
export function captureLog(): { readonly lines: string[]; readonly log: (m: string) => void; text(): string } {
  const lines: string[] = [];
  return { lines, log: (m) => void lines.push(m), text: () => lines.join('\n') };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` until it returns something other than undefined/false, or fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 8_000, everyMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Starts `runner.run()` and waits until the job is RUNNING (so triggers are accepted); `done` is the run's outcome. */
export async function startRunner(runner: EmbeddedRunner): Promise<{ readonly done: Promise<RunOutcome> }> {
  const done = runner.run();
  // Surface a run that ends (or throws) before it ever reports RUNNING instead of timing out.
  let settled: { outcome?: RunOutcome; error?: unknown } | undefined;
  done.then(
    (outcome) => (settled = { outcome }),
    (error: unknown) => (settled = { error }),
  );
  await waitFor('the job to be RUNNING', () => {
    if (settled?.error) throw settled.error;
    if (settled?.outcome) throw new Error(`the run ended as ${settled.outcome.state} before it was seen RUNNING: ${settled.outcome.error?.message ?? ''}`);
    return runner.overview().state === 'RUNNING';
  });
  // Wrapped: an async function returning the promise itself would wait for the whole run.
  return { done };
}

/** Records the source vertices of a running job have read so far. */
export function sourceRecordsRead(runner: EmbeddedRunner): number {
  return runner.overview().vertices.filter((v) => v.isSource).reduce((n, v) => n + v.recordsIn, 0);
}

/** Polls a savepoint or checkpoint trigger until it completes or fails. */
export async function awaitTrigger(runner: EmbeddedRunner, requestId: string, timeoutMs = 8_000): Promise<TriggerStatus> {
  return waitFor(`trigger ${requestId}`, () => {
    const s = runner.triggerStatus(requestId);
    return s && s.status !== 'IN_PROGRESS' ? s : undefined;
  }, timeoutMs);
}

/** Runner options every test wants: a private checkpoint dir, a short interval, a quick restart, captured logs. */
export function runOptions(checkpointDir: string, log: (m: string) => void, overrides: EmbeddedRunOptions = {}): EmbeddedRunOptions {
  return {
    ...overrides,
    checkpoint: { dir: checkpointDir, interval: 50, ...overrides.checkpoint },
    restart: overrides.restart ?? { type: 'fixed-delay', attempts: 2, delay: 20 },
    savepointDir: overrides.savepointDir ?? join(checkpointDir, 'savepoints'),
    log,
  };
}

/** Lines of the committed files of a files sink (names starting with `.` or `_` are in progress). */
export async function readCommittedLines(dir: string): Promise<string[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => !n.startsWith('.') && !n.startsWith('_'));
  const out: string[] = [];
  for (const n of names.sort()) {
    for (const line of (await readFile(join(dir, n), 'utf8')).split('\n')) if (line !== '') out.push(line);
  }
  return out;
}

/** Sorted copy, for comparing multisets of output lines. */
export function sorted<T>(values: readonly T[]): T[] {
  return [...values].sort((a, b) => (String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0));
}

// ---------------------------------------------------------------------------------------------------------------
// Sources

/**
 * A replayable source over a fixed list, one split, at most `perRead` values per read (default 1): with one value per
 * read, the source's watermark advances after every record, so event-time tests control exactly what is late.
 */
export function listSource<T>(values: readonly T[], perRead = 1): SourceConnector<T> {
  return {
    type: 'list',
    bounded: true,
    async createSplits(): Promise<SourceSplit[]> {
      return [{ id: 'list', position: 0, done: values.length === 0 }];
    },
    async read(split: SourceSplit, max: number) {
      const from = split.position as number;
      const to = Math.min(values.length, from + Math.min(max, perRead));
      return { values: values.slice(from, to), split: { id: split.id, position: to, done: to >= values.length } };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Keyed running counts: the exactly-once workhorse

/** One generated event of the running-counts job. */
export interface KeyedEvent {
  readonly key: string;
  /** The event's index in the generated sequence. */
  readonly i: number;
}

/** Options of the generated keyed events. */
export interface KeyedEventsOptions {
  /** Events in total. @default 3000 */
  readonly count?: number;
  /** Distinct keys. @default 20 */
  readonly keys?: number;
  readonly seed?: number;
  /** Rate limit across all source subtasks. @default unlimited */
  readonly ratePerSecond?: number;
  /** Generator splits; fixed so that rescaled runs read the same sequence. @default 2 */
  readonly splits?: number;
  /** Picks the key of event `i` (overrides `keys`). */
  readonly keyOf?: (i: number, random: () => number) => string;
}

/** The count, seed and element builder of the keyed events, with their defaults. */
function keyedEventDefinition(o: KeyedEventsOptions): { count: number; seed: number; generate: (i: number, random: () => number) => KeyedEvent } {
  const keys = o.keys ?? 20;
  const keyOf = o.keyOf ?? ((_i: number, random: () => number) => `k${Math.floor(random() * keys)}`);
  return { count: o.count ?? 3000, seed: o.seed ?? 1, generate: (i, random) => ({ key: keyOf(i, random), i }) };
}

/** A seeded generator of keyed events. */
export function keyedEvents(o: KeyedEventsOptions = {}): SourceConnector<KeyedEvent> {
  return generator<KeyedEvent>({
    ...keyedEventDefinition(o),
    splits: o.splits ?? 2,
    ...(o.ratePerSecond !== undefined ? { ratePerSecond: o.ratePerSecond } : {}),
  });
}

/**
 * The events `keyedEvents(o)` must yield, in index order, derived from the generator's documented definition by a
 * plain loop (test/support/reference-generator.ts) rather than by reading the connector: an oracle that a generator
 * dropping, repeating or mis-seeding events disagrees with. Checks it holds one event per index 0 .. count-1.
 */
export function expectedKeyedEvents(o: KeyedEventsOptions = {}): KeyedEvent[] {
  const definition = keyedEventDefinition(o);
  const events = generatedSequence(definition);
  if (events.length !== definition.count || events.some((e, i) => e.i !== i)) {
    throw new Error(`the keyed-events oracle has ${events.length} events, not one for each index 0 .. ${definition.count - 1}`);
  }
  return events;
}

/**
 * The keyed events a snapshot shows its generator source `uid` had read: for each generator split, the events before
 * the position the snapshot holds for it (split `s` of `n` yields the indices s, s + n, ...). The running counts of
 * these are the output the snapshot covers.
 */
export function keyedEventsReadAt(manifest: Manifest, o: KeyedEventsOptions = {}, sourceUid = 'events'): KeyedEvent[] {
  const source = manifest.operators.find((op) => op.uid === sourceUid);
  if (!source) throw new Error(`snapshot ${manifest.checkpointId} has no operator '${sourceUid}'`);
  const emitted = new Map<number, number>();
  let splits: number | undefined;
  for (const item of source.subtasks.flatMap((st) => st.operatorState)) {
    const position = (item as { split?: { position?: { split?: unknown; splits?: unknown; emitted?: unknown } } }).split?.position;
    if (typeof position?.split !== 'number' || typeof position.splits !== 'number' || typeof position.emitted !== 'number') {
      throw new Error(`snapshot ${manifest.checkpointId}: '${sourceUid}' holds ${JSON.stringify(item)}, not a generator split`);
    }
    splits = position.splits;
    emitted.set(position.split, position.emitted);
  }
  if (splits === undefined || emitted.size !== splits) throw new Error(`snapshot ${manifest.checkpointId}: '${sourceUid}' holds positions of splits ${[...emitted.keys()].join(', ')}, not of all ${splits ?? '?'}`);
  const n = splits;
  return expectedKeyedEvents(o).filter((e) => Math.floor(e.i / n) < emitted.get(e.i % n)!);
}

/**
 * Checks that committed running-count lines are, for each key, exactly the first N lines of that key's running counts
 * in order (`key<TAB>1` .. `key<TAB>N`, no gap, no repeat, no reordering), with N at most the key's count in `events`.
 * Returns N per key.
 */
export function expectRunningCountPrefixes(committed: readonly string[], events: readonly KeyedEvent[]): Map<string, number> {
  const total = new Map<string, number>();
  for (const e of events) total.set(e.key, (total.get(e.key) ?? 0) + 1);
  const seen = new Map<string, number>();
  committed.forEach((line, at) => {
    const [key, n, ...rest] = line.split('\t');
    const next = (seen.get(key!) ?? 0) + 1;
    if (rest.length > 0 || n !== String(next)) throw new Error(`committed line ${at} is ${JSON.stringify(line)}, but the next running count of '${key}' is ${countLine(key!, next)}`);
    if (next > (total.get(key!) ?? 0)) throw new Error(`committed line ${at} (${JSON.stringify(line)}) is past the ${total.get(key!) ?? 0} events of '${key}'`);
    seen.set(key!, next);
  });
  return seen;
}

/**
 * Makes a user function throw once: at the first event with index `at` or later seen while `armed()` holds (arm it
 * once a checkpoint has completed, so the failure always has something to restore). A module-level instance
 * survives the restarts of the job that reads it.
 */
export class FailOnce {
  thrown = false;
  /** Index of the event the function threw at. */
  thrownAt: number | undefined;
  armed: () => boolean = () => true;
  constructor(readonly at: number, readonly message = `injected failure at event ${at} or later`) {}
  check(i: number): void {
    if (i >= this.at && !this.thrown && this.armed()) {
      this.thrown = true;
      this.thrownAt = i;
      throw new Error(this.message);
    }
  }
}

/** Options of the running-counts job. */
export interface RunningCountsOptions extends KeyedEventsOptions {
  readonly name?: string;
  readonly sink: SinkConnector<string>;
  /** @default 2 */
  readonly parallelism?: number;
  readonly maxParallelism?: number;
  readonly failure?: FailOnce;
  /** More failures, each checked like `failure`. */
  readonly failures?: readonly FailOnce[];
}

/** The line the running-counts job writes for the `n`-th event of `key`. */
export const countLine = (key: string, n: number) => `${key}\t${n}`;

/**
 * `events` (generator) → keyBy key → `count` (keyed value state, emits `key<TAB>n` per event) → sink `out`. With
 * exactly-once, the committed output holds each of `key<TAB>1..N` once, whatever failures and rescales happen.
 */
export function runningCountsJob(o: RunningCountsOptions): Job {
  const job = new Job(o.name ?? 'running-counts', { parallelism: o.parallelism ?? 2, maxParallelism: o.maxParallelism ?? 128 });
  const failures = [...(o.failure ? [o.failure] : []), ...(o.failures ?? [])];
  job
    .source(keyedEvents(o), { uid: 'events' })
    .keyBy((e) => e.key)
    .process(
      {
        state: { n: valueState<number>() },
        processElement(e, ctx, out) {
          for (const f of failures) f.check(e.i);
          const n = (ctx.state.n.value() ?? 0) + 1;
          ctx.state.n.update(n);
          out.collect(countLine(e.key, n));
        },
      },
      { uid: 'count', name: 'Count' },
    )
    .sinkTo(o.sink, { uid: 'out', name: 'Out' });
  return job;
}

/** The running-counts oracle: for every key with N events, the lines `key<TAB>1` .. `key<TAB>N`, sorted. */
export function runningCountsOracle(events: readonly KeyedEvent[]): string[] {
  const n = new Map<string, number>();
  const lines: string[] = [];
  for (const e of events) {
    const c = (n.get(e.key) ?? 0) + 1;
    n.set(e.key, c);
    lines.push(countLine(e.key, c));
  }
  return sorted(lines);
}

// ---------------------------------------------------------------------------------------------------------------
// Event-time windows

/** A window firing as the tests compare them. */
export interface WindowFiring {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly count: number;
}

export const firingLine = (f: WindowFiring) => `${f.key}\t${f.start}\t${f.end}\t${f.count}`;

export function parseFiring(line: string): WindowFiring {
  const [key, start, end, count] = line.split('\t');
  return { key: key!, start: Number(start), end: Number(end), count: Number(count) };
}

/** The tumbling window `[start, end)` of a timestamp. */
export function tumblingWindowOf(ts: number, size: number): { start: number; end: number } {
  const start = ts - (((ts % size) + size) % size);
  return { start, end: start + size };
}

/** Window settings the simulations take. */
export interface WindowSemantics {
  readonly size: number;
  readonly allowedLateness: number;
  readonly outOfOrderness: number;
}

/**
 * Flink's event-time tumbling-window count with allowed lateness, simulated record by record for a single ordered
 * input whose watermark advances after every record to `max(timestamp) - outOfOrderness - 1` and to +∞ at the end:
 * a window fires once when the watermark reaches `end - 1`; a record for a window that already fired but is within
 * the allowed lateness fires it again with the new count; a record later than that is dropped. Returns the firings
 * in order (per key, the order the job emits them) and the number of dropped records.
 */
export function simulateTumblingCounts(events: readonly { key: string; ts: number }[], o: WindowSemantics): { firings: WindowFiring[]; dropped: number } {
  const firings: WindowFiring[] = [];
  const windows = new Map<string, { key: string; start: number; end: number; count: number; fired: boolean }>();
  let watermark = -Infinity;
  let maxTs = -Infinity;
  let dropped = 0;
  const advance = (to: number) => {
    if (to <= watermark) return;
    watermark = to;
    for (const [id, w] of [...windows.entries()].sort(([, a], [, b]) => a.end - b.end)) {
      if (!w.fired && w.end - 1 <= watermark) {
        firings.push({ key: w.key, start: w.start, end: w.end, count: w.count });
        w.fired = true;
      }
      if (w.end - 1 + o.allowedLateness <= watermark) windows.delete(id);
    }
  };
  for (const e of events) {
    const { start, end } = tumblingWindowOf(e.ts, o.size);
    if (end - 1 + o.allowedLateness <= watermark) dropped++;
    else {
      const id = `${e.key}\u0000${start}`;
      let w = windows.get(id);
      if (!w) windows.set(id, (w = { key: e.key, start, end, count: 0, fired: false }));
      w.count++;
      if (end - 1 <= watermark) {
        // Late but within the allowed lateness: fires at once (and no on-time firing is due any more).
        firings.push({ key: w.key, start, end, count: w.count });
        w.fired = true;
      }
    }
    maxTs = Math.max(maxTs, e.ts);
    advance(maxTs - o.outOfOrderness - 1);
  }
  advance(Infinity);
  return { firings, dropped };
}

/** Per-key firings, in emission order: the order a job's output must keep per key whatever the parallelism. */
export function firingsByKey(firings: readonly WindowFiring[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const f of firings) {
    let list = out.get(f.key);
    if (!list) out.set(f.key, (list = []));
    list.push(firingLine(f));
  }
  return out;
}

/** What is certain about each (key, window) of an input whose watermark advances only between chunks of records. */
export interface ChunkedWindowOracle {
  /** `key<TAB>start<TAB>end` → records counted in the window (kept for certain). */
  readonly counts: Map<string, number>;
  /** `key<TAB>start<TAB>end` → records that certainly arrived after the window had fired, each firing it again. */
  readonly certainlyLate: Map<string, number>;
  /** Records dropped for certain (later than the allowed lateness). */
  readonly dropped: number;
  /** Records whose fate depends on where chunk boundaries fall; a sound test input has none. */
  readonly ambiguous: number;
}

/**
 * Window counts for one ordered input read in chunks of at most `maxChunk` records, the watermark moving only between
 * chunks: when record i is handled the watermark lies between `max(ts[0 .. i-maxChunk]) - outOfOrderness - 1` (every
 * earlier chunk has been seen) and `max(ts[0 .. i-1]) - outOfOrderness - 1` (no later record has). Records whose fate
 * differs between the two bounds are counted as ambiguous.
 */
export function chunkedWindowOracle(events: readonly { key: string; ts: number }[], o: WindowSemantics & { maxChunk: number }): ChunkedWindowOracle {
  const counts = new Map<string, number>();
  const certainlyLate = new Map<string, number>();
  const prefixMax: number[] = [];
  let max = -Infinity;
  for (const e of events) prefixMax.push((max = Math.max(max, e.ts)));
  const wmBefore = (i: number) => (i < 0 ? -Infinity : prefixMax[i]! - o.outOfOrderness - 1);
  let dropped = 0;
  let ambiguous = 0;
  events.forEach((e, i) => {
    const { start, end } = tumblingWindowOf(e.ts, o.size);
    const upper = wmBefore(i - 1);
    const lower = wmBefore(i - o.maxChunk);
    const droppedAtUpper = end - 1 + o.allowedLateness <= upper;
    const droppedAtLower = end - 1 + o.allowedLateness <= lower;
    if (droppedAtUpper !== droppedAtLower) {
      ambiguous++;
      return;
    }
    if (droppedAtUpper) {
      dropped++;
      return;
    }
    const id = `${e.key}\t${start}\t${end}`;
    counts.set(id, (counts.get(id) ?? 0) + 1);
    if (end - 1 <= lower) certainlyLate.set(id, (certainlyLate.get(id) ?? 0) + 1);
  });
  return { counts, certainlyLate, dropped, ambiguous };
}

/** Options of the event-time windows job. */
export interface WindowCountsOptions {
  readonly name?: string;
  readonly events: SourceConnector<{ key: string; ts: number }>;
  readonly sink: SinkConnector<string>;
  /** Also write every record read to this sink (to learn exactly which records a stopped run read). */
  readonly rawSink?: SinkConnector<{ key: string; ts: number }>;
  readonly semantics: WindowSemantics;
  /** Parallelism of the window operator (the source has one subtask). @default 2 */
  readonly parallelism?: number;
  /** Called with every record before it is keyed (in a map chained to the source), e.g. to inject a failure. */
  readonly beforeWindow?: (e: { key: string; ts: number }) => void;
}

/** `events` (one subtask, event time) → keyBy key → tumbling count window `window-counts` → sink `out` as firing lines. */
export function windowCountsJob(o: WindowCountsOptions): Job {
  const job = new Job(o.name ?? 'window-counts', { parallelism: o.parallelism ?? 2 });
  const events = job.source(o.events, { uid: 'events', parallelism: 1, watermarks: { timestamp: (e) => e.ts, outOfOrderness: o.semantics.outOfOrderness } });
  if (o.rawSink) events.sinkTo(o.rawSink, { uid: 'raw', name: 'Raw', parallelism: 1 });
  const hook = o.beforeWindow;
  (hook ? events.map((e) => (hook(e), e), { name: 'Hook', parallelism: 1 }) : events)
    .keyBy((e) => e.key)
    .window(tumblingEventTimeWindows(o.semantics.size), { allowedLateness: o.semantics.allowedLateness })
    .aggregate<number, number, string>(
      { createAccumulator: () => 0, add: (_e, n) => n + 1, getResult: (n) => n },
      { uid: 'window-counts', name: 'Count', emit: (key, w, n) => firingLine({ key, start: w.start, end: w.end, count: n }) },
    )
    .sinkTo(o.sink, { uid: 'out', name: 'Out' });
  return job;
}
