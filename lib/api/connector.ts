import type { PendingCommit } from '../core/manifest/model.js';
import type { AwsResourceAccess } from './connector-resources.js';

/** A unit of source input with its read position, checkpointed as operator state (a file, a generator partition). */
export interface SourceSplit {
  readonly id: string;
  /** JSON-serializable position within the split. */
  readonly position: unknown;
  readonly done: boolean;
}

/** What a source read sees of the runtime. */
export interface SourceReadContext {
  now(): number;
}

/** Values read from one split, and the split's new position. */
export interface SourceReadResult<T> {
  readonly values: readonly T[];
  readonly split: SourceSplit;
}

/** A replayable source: splits with positions, read in chunks. */
export interface SourceConnector<T> {
  readonly type: string;
  readonly bounded: boolean;
  /** Records per second across all subtasks, if limited. */
  readonly ratePerSecond?: number;
  /** AWS resources its reads touch; a deployment grants them to the source's function (see connector-resources.ts). @default none */
  readonly resources?: readonly AwsResourceAccess[];
  /** The splits at first start; `parallelism` is the source's parallelism then. */
  createSplits(parallelism: number): Promise<SourceSplit[]>;
  /** Reads up to `max` values from a split. */
  read(split: SourceSplit, max: number, ctx: SourceReadContext): Promise<SourceReadResult<T>>;
}

/** Where a sink writer is running. */
export interface SinkWriterContext {
  readonly uid: string;
  readonly subtask: number;
  /** Unique per run of the job, to name files that no other run writes. */
  readonly runId: string;
}

/**
 * Writes a sink's records. Its state (returned by every call) is checkpointed as operator state; a writer must be able
 * to resume from the state of its last commit, discarding anything written after it (exactly-once).
 */
export interface SinkWriter<T> {
  /** Brings external resources in line with `state` after a (re)start; returns the state to continue with. */
  resume(state: unknown | undefined): Promise<unknown>;
  /** Appends values; returns the new state. */
  write(values: readonly T[], state: unknown): Promise<unknown>;
  /** Pre-commits what was written since the last barrier; returns the new state and the transactions to commit once the checkpoint completes. */
  preCommit(state: unknown, checkpointId: number): Promise<{ state: unknown; pendingCommits: PendingCommit[] }>;
}

/** A sink: a writer per subtask, and a committer that finishes pre-committed transactions idempotently. */
export interface SinkConnector<T> {
  readonly type: string;
  /** Whether output appears exactly once (two-phase) or may repeat after a failure. */
  readonly exactlyOnce: boolean;
  /** AWS resources its writes and commits touch; a deployment grants them where those run (see connector-resources.ts). @default none */
  readonly resources?: readonly AwsResourceAccess[];
  createWriter(ctx: SinkWriterContext): SinkWriter<T>;
  /**
   * Commits one pending transaction; called after the checkpoint completes, again on restore, and again with later
   * checkpoints while the sink subtask has not yet learned of the completion: it must be idempotent.
   */
  commit(commit: PendingCommit): Promise<void>;
}
