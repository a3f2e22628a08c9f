import type { CheckpointOptions, RestartOptions, SavepointOptions } from '../core/options.js';
import type { SinkConnector, SourceConnector } from './connector.js';
import type {
  AggregateFunction,
  Collector,
  KeyedProcessFunction,
  KeySelector,
  OperatorOptions,
  ProcessFunction,
  ReduceFunction,
} from './functions.js';
import type { StateSpec } from './state.js';
import type { TimeWindow, WindowAssigner } from './windows.js';
import { parseDuration } from '../core/duration.js';

/** How records move from one operator to the next. */
export type Partitioning = 'forward' | 'hash' | 'rebalance';

/** An input of a logical operator. */
export interface LogicalEdge {
  readonly from: number;
  readonly partitioning: Partitioning;
  /** For `hash`: extracts the key. */
  readonly key?: KeySelector<unknown, unknown>;
}

/** Event-time settings of a source: where timestamps come from and how out of order they may be. */
export interface WatermarkStrategy<T> {
  readonly timestamp: (value: T) => number;
  /** Bounded out-of-orderness: the watermark trails the largest timestamp seen by this much. @default 0 */
  readonly outOfOrderness?: string | number;
}

/** What a window emits. */
export type WindowFunction =
  | { readonly type: 'aggregate'; readonly fn: AggregateFunction<unknown, unknown, unknown>; readonly emit: (key: unknown, window: TimeWindow, result: unknown) => unknown }
  | { readonly type: 'process'; readonly fn: (key: unknown, window: TimeWindow, elements: readonly unknown[]) => readonly unknown[] };

/** The operator kinds and the user code each carries. */
export type OperatorSpec =
  | { readonly kind: 'source'; readonly connector: SourceConnector<unknown>; readonly watermarks?: { readonly timestamp: (v: unknown) => number; readonly outOfOrderness: number } }
  | { readonly kind: 'map'; readonly fn: (v: unknown) => unknown }
  | { readonly kind: 'filter'; readonly fn: (v: unknown) => boolean }
  | { readonly kind: 'flatMap'; readonly fn: (v: unknown, out: Collector<unknown>) => void }
  | { readonly kind: 'asyncFlatMap'; readonly fn: (v: unknown) => Promise<Iterable<unknown>>; readonly capacity: number; readonly timeoutMs: number }
  | { readonly kind: 'process'; readonly fn: ProcessFunction<unknown, unknown> }
  | { readonly kind: 'keyedProcess'; readonly fn: KeyedProcessFunction<unknown, unknown, unknown, StateSpec> }
  | { readonly kind: 'reduce'; readonly fn: ReduceFunction<unknown> }
  | { readonly kind: 'aggregate'; readonly fn: AggregateFunction<unknown, unknown, unknown> }
  | { readonly kind: 'window'; readonly assigner: WindowAssigner; readonly allowedLateness: number; readonly fn: WindowFunction }
  | { readonly kind: 'sink'; readonly connector: SinkConnector<unknown> };

/** One operator of the logical graph, as the user declared it. */
export interface LogicalNode {
  readonly id: number;
  readonly spec: OperatorSpec;
  readonly uid?: string;
  readonly name: string;
  readonly parallelism?: number;
  readonly inputs: readonly LogicalEdge[];
  /** Names of keyed state the operator declares (for validation). */
  readonly keyedState: readonly string[];
  /** Whether the operator needs a keyed input (keyed state, timers, keyed aggregation, windows). */
  readonly requiresKeyedInput: boolean;
}

/** Job-wide settings. */
export interface JobOptions {
  /** Key groups: the most subtasks a keyed operator can ever have; fixed once the job has state. @default 128 */
  readonly maxParallelism?: number;
  /** Parallelism of operators that set none. @default 1 */
  readonly parallelism?: number;
  readonly checkpoint?: CheckpointOptions;
  readonly savepoint?: SavepointOptions;
  readonly restart?: RestartOptions;
}

/** A job under construction: add sources, transform the streams, add sinks. */
export class Job {
  readonly name: string;
  readonly options: JobOptions;
  /** @internal */
  readonly nodes: LogicalNode[] = [];

  constructor(name: string, options: JobOptions = {}) {
    this.name = name;
    this.options = options;
  }

  /** Adds a source; `watermarks` turns on event time for what it emits. */
  source<T>(connector: SourceConnector<T>, options: OperatorOptions & { watermarks?: WatermarkStrategy<T> } = {}): DataStream<T> {
    const { watermarks, ...placement } = options;
    const spec: OperatorSpec = {
      kind: 'source',
      connector: connector as SourceConnector<unknown>,
      ...(watermarks
        ? { watermarks: { timestamp: watermarks.timestamp as (v: unknown) => number, outOfOrderness: parseDuration(watermarks.outOfOrderness ?? 0, 'watermarks.outOfOrderness') } }
        : {}),
    };
    const raw = new DataStream<T>(this, [this.addNode(spec, placement, [], `Source: ${connector.type}`)]);
    return connector.expand ? (connector.expand(raw, placement.uid) as DataStream<T>) : raw;
  }

  /** @internal */
  addNode(spec: OperatorSpec, options: OperatorOptions, inputs: LogicalEdge[], defaultName: string, extra: Partial<LogicalNode> = {}): number {
    const id = this.nodes.length;
    this.nodes.push({
      id,
      spec,
      uid: options.uid,
      name: options.name ?? defaultName,
      parallelism: options.parallelism,
      inputs,
      keyedState: [],
      requiresKeyedInput: false,
      ...extra,
    });
    return id;
  }
}

/** Options of `mapAsync` and `flatMapAsync`. */
export interface AsyncOptions extends OperatorOptions {
  /** Calls in flight at once per subtask. @default 16 */
  readonly capacity?: number;
  /** The longest one call may take. @default '1m' */
  readonly timeout?: string | number;
}

function asyncLimits(capacity: number | undefined, timeout: string | number | undefined): { capacity: number; timeoutMs: number } {
  const c = capacity ?? 16;
  if (!Number.isInteger(c) || c < 1) throw new Error(`async capacity must be a whole number ≥ 1, got ${String(capacity)}`);
  const timeoutMs = parseDuration(timeout ?? '1m', 'async timeout');
  // (setTimeout fires at once for anything above 2^31 - 1 ms.)
  if (timeoutMs <= 0 || timeoutMs > 2_147_483_647) throw new Error(`async timeout must be > 0 and at most 24 days, got ${String(timeout)}`);
  return { capacity: c, timeoutMs };
}

/** A stream of records of type T. */
export class DataStream<T> {
  /** @internal */
  constructor(
    readonly job: Job,
    /** @internal upstream nodes (more than one after a union) */
    readonly upstream: readonly number[],
  ) {}

  /** @internal */
  protected edges(partitioning: Partitioning = 'forward', key?: KeySelector<unknown, unknown>): LogicalEdge[] {
    return this.upstream.map((from) => ({ from, partitioning: this.upstream.length > 1 && partitioning === 'forward' ? 'rebalance' : partitioning, key }));
  }

  /** @internal */
  protected then<O>(spec: OperatorSpec, options: OperatorOptions, name: string, extra: Partial<LogicalNode> = {}): DataStream<O> {
    return new DataStream<O>(this.job, [this.job.addNode(spec, options, this.edges(), name, extra)]);
  }

  /** Transforms each record. */
  map<O>(fn: (value: T) => O, options: OperatorOptions = {}): DataStream<O> {
    return this.then({ kind: 'map', fn: fn as (v: unknown) => unknown }, options, 'Map');
  }

  /** Keeps the records for which `fn` is true. */
  filter(fn: (value: T) => boolean, options: OperatorOptions = {}): DataStream<T> {
    return this.then({ kind: 'filter', fn: fn as (v: unknown) => boolean }, options, 'Filter');
  }

  /** Emits zero or more records per record. */
  flatMap<O>(fn: (value: T, out: Collector<O>) => void, options: OperatorOptions = {}): DataStream<O> {
    return this.then({ kind: 'flatMap', fn: fn as (v: unknown, out: Collector<unknown>) => void }, options, 'FlatMap');
  }

  /**
   * Calls `fn` for each record, up to `capacity` at once, and emits its results in the order the records came
   * (Flink's ordered async I/O): for lookups and reads against other services. Calls finish before the record's
   * watermark, a checkpoint barrier or the end of a step goes on, so no call is in flight across a checkpoint — and a
   * step replayed after a crash makes its calls again: `fn` must return the same for the same record (a read of an
   * immutable object) or be safe to repeat. A call that rejects or takes longer than `timeout` fails the job over by
   * its restart strategy.
   */
  flatMapAsync<O>(fn: (value: T) => Promise<Iterable<O>>, options: AsyncOptions = {}): DataStream<O> {
    const { capacity, timeout, ...placement } = options;
    return this.then({ kind: 'asyncFlatMap', fn: fn as (v: unknown) => Promise<Iterable<unknown>>, ...asyncLimits(capacity, timeout) }, placement, 'AsyncFlatMap');
  }

  /** `flatMapAsync` with one record out per record in. */
  mapAsync<O>(fn: (value: T) => Promise<O>, options: AsyncOptions = {}): DataStream<O> {
    const { capacity, timeout, ...placement } = options;
    return this.then({ kind: 'asyncFlatMap', fn: async (v: unknown) => [await fn(v as T)], ...asyncLimits(capacity, timeout) }, placement, 'AsyncMap');
  }

  /**
   * Per-record logic without keys. A function that declares keyed `state` here is reported when the job is
   * validated: keyed state needs `keyBy` first.
   */
  process<O>(fn: ProcessFunction<T, O> | KeyedProcessFunction<T, never, O, StateSpec>, options: OperatorOptions = {}): DataStream<O> {
    const declared = 'state' in fn && fn.state ? Object.keys(fn.state) : [];
    const usesTimers = 'onTimer' in fn && typeof fn.onTimer === 'function';
    return this.then({ kind: 'process', fn: fn as ProcessFunction<unknown, unknown> }, options, 'Process', {
      keyedState: declared,
      requiresKeyedInput: declared.length > 0 || usesTimers,
    });
  }

  /** Partitions the stream by key: records with the same key go to the same subtask and share keyed state. */
  keyBy<K>(key: KeySelector<T, K>): KeyedStream<T, K> {
    return new KeyedStream<T, K>(this.job, this.upstream, key);
  }

  /** Merges streams of the same type. */
  union(...others: DataStream<T>[]): DataStream<T> {
    for (const o of others) if (o.job !== this.job) throw new Error('union: streams belong to different jobs');
    return new DataStream<T>(this.job, [...this.upstream, ...others.flatMap((o) => o.upstream)]);
  }

  /** Spreads records round-robin over the next operator's subtasks. */
  rebalance(): DataStream<T> {
    return new RebalancedStream<T>(this.job, this.upstream);
  }

  /** Writes the stream to a sink. */
  sinkTo(connector: SinkConnector<T>, options: OperatorOptions = {}): void {
    this.then({ kind: 'sink', connector: connector as SinkConnector<unknown> }, options, `Sink: ${connector.type}`);
  }
}

class RebalancedStream<T> extends DataStream<T> {
  protected override edges(): LogicalEdge[] {
    return super.edges('rebalance');
  }
}

/** A stream partitioned by key, on which keyed state, timers, aggregations and windows are available. */
export class KeyedStream<T, K> extends DataStream<T> {
  /** @internal */
  constructor(
    job: Job,
    upstream: readonly number[],
    readonly key: KeySelector<T, K>,
  ) {
    super(job, upstream);
  }

  protected override edges(): LogicalEdge[] {
    return super.edges('hash', this.key as KeySelector<unknown, unknown>);
  }

  /** Per-record logic with keyed state and timers (Flink's KeyedProcessFunction). */
  override process<O, S extends StateSpec = Record<string, never>>(fn: KeyedProcessFunction<T, K, O, S>, options: OperatorOptions = {}): DataStream<O> {
    return this.then({ kind: 'keyedProcess', fn: fn as unknown as KeyedProcessFunction<unknown, unknown, unknown, StateSpec> }, options, 'KeyedProcess', {
      keyedState: Object.keys(fn.state ?? {}),
      requiresKeyedInput: true,
    });
  }

  /** Rolling reduce: emits the running reduction per key on every record. */
  reduce(fn: ReduceFunction<T>, options: OperatorOptions = {}): DataStream<T> {
    return this.then({ kind: 'reduce', fn: fn as ReduceFunction<unknown> }, options, 'Reduce', { keyedState: ['reduce'], requiresKeyedInput: true });
  }

  /** Rolling aggregate: emits the aggregate's result per key on every record. */
  aggregate<A, O>(fn: AggregateFunction<T, A, O>, options: OperatorOptions = {}): DataStream<O> {
    return this.then({ kind: 'aggregate', fn: fn as AggregateFunction<unknown, unknown, unknown> }, options, 'Aggregate', {
      keyedState: ['accumulator'],
      requiresKeyedInput: true,
    });
  }

  /** Groups each key's records into event-time windows. */
  window(assigner: WindowAssigner, options: { allowedLateness?: string | number } = {}): WindowedStream<T, K> {
    return new WindowedStream<T, K>(this, assigner, parseDuration(options.allowedLateness ?? 0, 'allowedLateness'));
  }
}

/** A keyed stream grouped into event-time windows; finish it with `aggregate`, `reduce` or `process`. */
export class WindowedStream<T, K> {
  /** @internal */
  constructor(
    private readonly keyed: KeyedStream<T, K>,
    private readonly assigner: WindowAssigner,
    private readonly allowedLateness: number,
  ) {}

  private add<O>(fn: WindowFunction, options: OperatorOptions): DataStream<O> {
    const job = this.keyed.job;
    const edges = this.keyed.upstream.map((from) => ({ from, partitioning: 'hash' as const, key: this.keyed.key as KeySelector<unknown, unknown> }));
    const name = `Window(${this.assigner.kind} ${this.assigner.size}ms)`;
    const id = job.addNode({ kind: 'window', assigner: this.assigner, allowedLateness: this.allowedLateness, fn }, options, edges, name, {
      keyedState: ['window'],
      requiresKeyedInput: true,
    });
    return new DataStream<O>(job, [id]);
  }

  /** Aggregates each window incrementally; `emit` shapes the output from key, window and result. */
  aggregate<A, R, O = { key: K; window: TimeWindow; value: R }>(
    fn: AggregateFunction<T, A, R>,
    options: OperatorOptions & { emit?: (key: K, window: TimeWindow, result: R) => O } = {},
  ): DataStream<O> {
    const { emit, ...placement } = options;
    const shape = (emit ?? ((key: K, window: TimeWindow, value: R) => ({ key, window, value }))) as (k: unknown, w: TimeWindow, r: unknown) => unknown;
    return this.add({ type: 'aggregate', fn: fn as AggregateFunction<unknown, unknown, unknown>, emit: shape }, placement);
  }

  /** Reduces each window's records to one. */
  reduce<O = { key: K; window: TimeWindow; value: T }>(fn: ReduceFunction<T>, options: OperatorOptions & { emit?: (key: K, window: TimeWindow, result: T) => O } = {}): DataStream<O> {
    return this.aggregate<{ v?: T; has: boolean }, T, O>(
      {
        createAccumulator: () => ({ has: false }),
        add: (value, acc) => (acc.has ? { has: true, v: fn(acc.v as T, value) } : { has: true, v: value }),
        getResult: (acc) => acc.v as T,
      },
      options,
    );
  }

  /** Hands each window's records to `fn` when it fires (keeps every record in state until then). */
  process<O>(fn: (key: K, window: TimeWindow, elements: readonly T[]) => readonly O[], options: OperatorOptions = {}): DataStream<O> {
    return this.add({ type: 'process', fn: fn as (k: unknown, w: TimeWindow, e: readonly unknown[]) => readonly unknown[] }, options);
  }
}

/** A job file's default export: a job, or a function of the job arguments that builds one. */
export type JobFactory = Job | ((args: readonly string[]) => Job | Promise<Job>);

/** Declares a job file's factory with its type checked. */
export function defineJob(factory: (args: readonly string[]) => Job | Promise<Job>): JobFactory {
  return factory;
}
