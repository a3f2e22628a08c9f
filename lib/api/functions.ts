import type { BoundState, StateSpec } from './state.js';

/** Receives a function's output records. */
export interface Collector<O> {
  collect(value: O): void;
  /** Emits a record with an explicit event timestamp. */
  collectWithTimestamp(value: O, timestamp: number): void;
}

/** Registers and deletes timers for the current key. */
export interface TimerService {
  /** Current processing time, from the runtime's clock. */
  currentProcessingTime(): number;
  /** Current event-time watermark of this subtask. */
  currentWatermark(): number;
  registerEventTimeTimer(timestamp: number): void;
  registerProcessingTimeTimer(timestamp: number): void;
  deleteEventTimeTimer(timestamp: number): void;
  deleteProcessingTimeTimer(timestamp: number): void;
}

/** What a keyed process function sees while handling a record or a timer. */
export interface KeyedContext<K, S extends StateSpec> {
  /** The current key. */
  readonly key: K;
  /** Event timestamp of the current record (or the firing timer's time in onTimer), if any. */
  readonly timestamp: number | undefined;
  /** This key's state, as declared in the function's `state`. */
  readonly state: BoundState<S>;
  timerService(): TimerService;
}

/** A timer firing: its domain in addition to the usual context. */
export interface OnTimerContext<K, S extends StateSpec> extends KeyedContext<K, S> {
  readonly timeDomain: 'event' | 'processing';
}

/** Flink's KeyedProcessFunction: per-record logic with keyed state and timers. */
export interface KeyedProcessFunction<I, K, O, S extends StateSpec = Record<string, never>> {
  /** Keyed state the function uses; declaring it lets the job be validated before it runs. */
  readonly state?: S;
  processElement(value: I, ctx: KeyedContext<K, S>, out: Collector<O>): void;
  onTimer?(timestamp: number, ctx: OnTimerContext<K, S>, out: Collector<O>): void;
}

/** A non-keyed process function: per-record logic without keyed state. */
export interface ProcessFunction<I, O> {
  processElement(value: I, ctx: { readonly timestamp: number | undefined }, out: Collector<O>): void;
}

/** Flink's AggregateFunction: an accumulator built incrementally. */
export interface AggregateFunction<I, A, O> {
  createAccumulator(): A;
  add(value: I, accumulator: A): A;
  getResult(accumulator: A): O;
}

/** Combines two values into one of the same type. */
export type ReduceFunction<T> = (a: T, b: T) => T;

/** Extracts the key of a record; keys are strings or numbers (or JSON-serializable values). */
export type KeySelector<T, K> = (value: T) => K;

/** Placement and naming of an operator. */
export interface OperatorOptions {
  /** Stable name the operator's state is filed under in every checkpoint and savepoint. Required for stateful operators. */
  readonly uid?: string;
  /** Display name. @default the operator kind */
  readonly name?: string;
  /** Number of subtasks. @default the job's parallelism */
  readonly parallelism?: number;
}
