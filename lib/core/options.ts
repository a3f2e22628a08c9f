import { ValidationError, ErrorCode } from './errors.js';
import { parseDuration } from './duration.js';

/** Checkpointing modes: aligned barriers (exactly-once) or unaligned pass-through (at-least-once). */
export const CheckpointMode = { ExactlyOnce: 'exactly-once', AtLeastOnce: 'at-least-once' } as const;
export type CheckpointMode = (typeof CheckpointMode)[keyof typeof CheckpointMode];

/** Checkpoint options, named after Flink's `execution.checkpointing.*` keys. Durations accept `10s`-style text or milliseconds. */
export interface CheckpointOptions {
  /** Period between checkpoints (`execution.checkpointing.interval`); 0 turns periodic checkpoints off. @default 0 (off) */
  readonly interval?: string | number;
  /** Abort a checkpoint still pending after this (`execution.checkpointing.timeout`). @default '10m' */
  readonly timeout?: string | number;
  /** Idle time after one checkpoint completes before the next is triggered (`execution.checkpointing.min-pause`). @default 0 */
  readonly minPause?: string | number;
  /** Checkpoints that may be pending at once (`execution.checkpointing.max-concurrent-checkpoints`). @default 1 */
  readonly maxConcurrent?: number;
  /** Consecutive failed checkpoints tolerated before the job fails over (`execution.checkpointing.tolerable-failed-checkpoints`). @default 0 */
  readonly tolerableFailures?: number;
  /** `exactly-once` aligns barriers; `at-least-once` does not (`execution.checkpointing.mode`). @default 'exactly-once' */
  readonly mode?: CheckpointMode;
  /** Completed checkpoints kept; older ones are deleted (`execution.checkpointing.num-retained`). @default 1 */
  readonly retained?: number;
  /** Keep checkpoints when the job is cancelled (`execution.checkpointing.externalized-checkpoint-retention`). @default true */
  readonly retainOnCancel?: boolean;
  /** Write only state that changed since the previous checkpoint (`execution.checkpointing.incremental`). @default true */
  readonly incremental?: boolean;
  /** Directory under which `<job>/checkpoints/chk-<n>/_metadata` is written. @default '.floe/checkpoints' */
  readonly dir?: string;
}

/** Checkpoint options with defaults filled in and durations in milliseconds. */
export interface ResolvedCheckpointOptions {
  readonly interval: number;
  readonly timeout: number;
  readonly minPause: number;
  readonly maxConcurrent: number;
  readonly tolerableFailures: number;
  readonly mode: CheckpointMode;
  readonly retained: number;
  readonly retainOnCancel: boolean;
  readonly incremental: boolean;
  readonly dir: string;
}

/** Savepoint options (`execution.checkpointing.savepoint-dir`). */
export interface SavepointOptions {
  /** Default directory for savepoints when a trigger names none. @default '.floe/savepoints' */
  readonly dir?: string;
}

/** Restart strategies, named after Flink's `restart-strategy.type` values. */
export type RestartOptions =
  | {
      /** Restart a fixed number of times with a fixed delay (`restart-strategy.fixed-delay.*`). */
      readonly type: 'fixed-delay';
      /** Restarts before the job fails for good. @default 3 */
      readonly attempts?: number;
      /** Pause before each restart. @default '1s' */
      readonly delay?: string | number;
    }
  | {
      /** Restart unless too many failures fall in one interval (`restart-strategy.failure-rate.*`). */
      readonly type: 'failure-rate';
      /** Failures tolerated per interval. @default 1 */
      readonly maxFailuresPerInterval?: number;
      /** The measuring window. @default '1m' */
      readonly failureRateInterval?: string | number;
      /** Pause before each restart. @default '1s' */
      readonly delay?: string | number;
    }
  | {
      /** Restart with a delay that grows on each failure and resets after a quiet period (`restart-strategy.exponential-delay.*`). */
      readonly type: 'exponential-delay';
      /** First delay. @default '1s' */
      readonly initialBackoff?: string | number;
      /** Largest delay. @default '1m' */
      readonly maxBackoff?: string | number;
      /** Factor applied to the delay on each failure. @default 2 */
      readonly backoffMultiplier?: number;
      /** Quiet time after which the delay resets to the initial one. @default '1h' */
      readonly resetBackoffThreshold?: string | number;
      /** Random spread applied to each delay, as a fraction. @default 0.1 */
      readonly jitterFactor?: number;
      /** Restarts before the job fails for good. @default Infinity */
      readonly attempts?: number;
    }
  | {
      /** Fail the job on the first failure (`restart-strategy.type: none`). */
      readonly type: 'none';
    };

/** A restart strategy with defaults filled in and durations in milliseconds. */
export type ResolvedRestartOptions =
  | { readonly type: 'fixed-delay'; readonly attempts: number; readonly delay: number }
  | { readonly type: 'failure-rate'; readonly maxFailuresPerInterval: number; readonly failureRateInterval: number; readonly delay: number }
  | {
      readonly type: 'exponential-delay';
      readonly initialBackoff: number;
      readonly maxBackoff: number;
      readonly backoffMultiplier: number;
      readonly resetBackoffThreshold: number;
      readonly jitterFactor: number;
      readonly attempts: number;
    }
  | { readonly type: 'none' };

function duration(problems: string[], field: string, value: string | number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  try {
    return parseDuration(value, field);
  } catch (e) {
    problems.push((e as Error).message);
    return fallback;
  }
}

function integer(problems: string[], field: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!(Number.isInteger(value) || value === Infinity) || value < min) problems.push(`${field} must be an integer >= ${min}, got ${value}`);
  return value;
}

/** Fills defaults into checkpoint options and validates them, reporting every problem at once. */
export function resolveCheckpointOptions(options: CheckpointOptions = {}): ResolvedCheckpointOptions {
  const problems: string[] = [];
  const mode = options.mode ?? CheckpointMode.ExactlyOnce;
  if (!Object.values(CheckpointMode).includes(mode)) problems.push(`checkpoint.mode must be 'exactly-once' or 'at-least-once', got '${mode}'`);
  const resolved: ResolvedCheckpointOptions = {
    interval: duration(problems, 'checkpoint.interval', options.interval, 0),
    timeout: duration(problems, 'checkpoint.timeout', options.timeout, 600_000),
    minPause: duration(problems, 'checkpoint.minPause', options.minPause, 0),
    maxConcurrent: integer(problems, 'checkpoint.maxConcurrent', options.maxConcurrent, 1, 1),
    tolerableFailures: integer(problems, 'checkpoint.tolerableFailures', options.tolerableFailures, 0, 0),
    mode,
    retained: integer(problems, 'checkpoint.retained', options.retained, 1, 1),
    retainOnCancel: options.retainOnCancel ?? true,
    incremental: options.incremental ?? true,
    dir: options.dir ?? '.floe/checkpoints',
  };
  if (resolved.timeout <= 0) problems.push('checkpoint.timeout must be > 0');
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'checkpoint options', problems);
  return resolved;
}

/** The restart strategy of a job that names none: Flink's fixed-delay, 3 attempts, 1 s apart. */
export const DEFAULT_RESTART_OPTIONS: RestartOptions = { type: 'fixed-delay', attempts: 3, delay: '1s' };

/** Fills defaults into a restart strategy and validates it, reporting every problem at once. */
export function resolveRestartOptions(options: RestartOptions = { type: 'fixed-delay' }): ResolvedRestartOptions {
  const problems: string[] = [];
  let resolved: ResolvedRestartOptions;
  switch (options.type) {
    case 'none':
      resolved = { type: 'none' };
      break;
    case 'fixed-delay':
      resolved = {
        type: 'fixed-delay',
        attempts: integer(problems, 'restart.attempts', options.attempts, 3, 0),
        delay: duration(problems, 'restart.delay', options.delay, 1000),
      };
      break;
    case 'failure-rate':
      resolved = {
        type: 'failure-rate',
        maxFailuresPerInterval: integer(problems, 'restart.maxFailuresPerInterval', options.maxFailuresPerInterval, 1, 1),
        failureRateInterval: duration(problems, 'restart.failureRateInterval', options.failureRateInterval, 60_000),
        delay: duration(problems, 'restart.delay', options.delay, 1000),
      };
      break;
    case 'exponential-delay': {
      const r = {
        type: 'exponential-delay' as const,
        initialBackoff: duration(problems, 'restart.initialBackoff', options.initialBackoff, 1000),
        maxBackoff: duration(problems, 'restart.maxBackoff', options.maxBackoff, 60_000),
        backoffMultiplier: options.backoffMultiplier ?? 2,
        resetBackoffThreshold: duration(problems, 'restart.resetBackoffThreshold', options.resetBackoffThreshold, 3_600_000),
        jitterFactor: options.jitterFactor ?? 0.1,
        attempts: integer(problems, 'restart.attempts', options.attempts, Infinity, 0),
      };
      if (r.backoffMultiplier < 1) problems.push('restart.backoffMultiplier must be >= 1');
      if (r.jitterFactor < 0 || r.jitterFactor > 1) problems.push('restart.jitterFactor must be between 0 and 1');
      if (r.maxBackoff < r.initialBackoff) problems.push('restart.maxBackoff must be >= restart.initialBackoff');
      resolved = r;
      break;
    }
    default:
      problems.push(`restart.type must be one of fixed-delay, failure-rate, exponential-delay, none; got '${(options as { type: string }).type}'`);
      resolved = { type: 'none' };
  }
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'restart options', problems);
  return resolved;
}
