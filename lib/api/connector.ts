import type { PendingCommit } from '../core/manifest/model.js';
import type { AwsResourceAccess, FeedQueue } from './connector-resources.js';

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
  /** The split holds values for the next read already (a live source received more): the subtask should not idle. */
  readonly pending?: boolean;
}

/** The timings a source's settings must fit, as the job will run (checked before it starts). */
export interface SourceTiming {
  /** 0 when periodic checkpoints are off. */
  readonly checkpointIntervalMs: number;
  readonly checkpointTimeoutMs: number;
  /** The longest a step may run (the function timeout when deployed); unknown embedded. */
  readonly stepTimeoutMs?: number;
}

/** What a source sees of its subtask when it discovers splits or hears that a checkpoint completed. */
export interface SourceSubtaskContext extends SourceReadContext {
  readonly subtask: number;
  readonly parallelism: number;
}

/**
 * A source: splits with positions, read in chunks (Flink's FLIP-27 source, with the split enumerator's discovery
 * done by each subtask for the splits it owns).
 *
 * A replayable source (files, a generator, a Kinesis shard) reads the same values again from the same position. A
 * live, acknowledging source (a queue) is not replayable: it keeps what it received in the split's position before it
 * emits it (so a replayed step emits the same values), marks what it emitted at each barrier (`snapshotSplit`), and
 * acknowledges input only when a checkpoint that covers it has completed (`notifyCheckpointComplete`).
 *
 * Each `read`, `snapshotSplit` and `notifyCheckpointComplete` must depend only on the split it is given (and what the
 * outside world holds): the split returned is the new state, committed with the step.
 */
export interface SourceConnector<T> {
  readonly type: string;
  readonly bounded: boolean;
  /** Records per second across all subtasks, if limited. */
  readonly ratePerSecond?: number;
  /** AWS resources its reads touch; a deployment grants them to the source's function (see connector-resources.ts). @default none */
  readonly resources?: readonly AwsResourceAccess[];
  /** What the operators that `expand` adds after the source touch, where they run in other functions (the S3 source reads objects after deduplicating them by key). */
  readonly expandedResources?: readonly AwsResourceAccess[];
  /** A queue the deployment creates and wires for this source (see connector-resources.ts). @default none */
  readonly feed?: FeedQueue;
  /** The splits at first start; `parallelism` is the source's parallelism then. */
  createSplits(parallelism: number): Promise<SourceSplit[]>;
  /** Reads up to `max` values from a split. */
  read(split: SourceSplit, max: number, ctx: SourceReadContext): Promise<SourceReadResult<T>>;
  /**
   * Split discovery while running (new shards, new objects): called in each subtask about every
   * `discoveryIntervalMs`, with the splits the subtask holds; returns the new splits this subtask takes (each new
   * split must be taken by exactly one subtask, e.g. by a hash of its id). New splits are read from the next step on,
   * so a step that is replayed reads the same values whether or not its replay discovers them again.
   */
  discoverSplits?(known: readonly SourceSplit[], ctx: SourceSubtaskContext): Promise<readonly SourceSplit[]>;
  /** How often `discoverSplits` runs. @default 10 s */
  readonly discoveryIntervalMs?: number;
  /**
   * Whether a split's event time holds the subtask's watermark back (the watermark is the least of its splits').
   * A split that only repairs what others miss — the S3 source's listing beside its notifications — says false: what
   * it finds is late, and its silence must not stop event time. @default true
   */
  holdsWatermark?(split: SourceSplit): boolean;
  /** At barrier `checkpointId`, before the snapshot: the split as the checkpoint records it (an acknowledging source marks what it emitted so far as covered by `checkpointId`). */
  snapshotSplit?(split: SourceSplit, checkpointId: number): SourceSplit;
  /**
   * Every checkpoint up to `checkpointId` has completed, and no restore will go back before it: acknowledge the
   * input those checkpoints cover (Flink's `notifyCheckpointComplete`). Also called, with `Infinity`, on the first
   * step after a restore, for what the restored snapshot covers. Returns the new split; may run again for the same
   * id after a crash, so it must be idempotent.
   */
  notifyCheckpointComplete?(split: SourceSplit, checkpointId: number, ctx: SourceSubtaskContext): Promise<SourceSplit>;
  /** With `expand`: the value of type `T` a record `read` emits carries, which the job's watermark strategy takes its timestamp from. */
  recordValue?(raw: unknown): T;
  /** Problems with the source's settings for these timings (each names what to change); checked with the rest of the job. */
  checkTiming?(timing: SourceTiming): string[];
  /**
   * Operators the job places right after the source, e.g. the deduplication a non-replayable source needs across
   * subtasks. `raw` is the `DataStream` of what `read` emits; the `DataStream<T>` returned is what the job sees
   * (typed loosely here, so that this file need not import the job builder). `uid` is the source's.
   */
  expand?(raw: unknown, uid: string | undefined): unknown;
}

/** Where a sink writer is running. */
export interface SinkWriterContext {
  readonly uid: string;
  readonly subtask: number;
  /** Unique per run of the job, to name files that no other run writes. */
  readonly runId: string;
  /**
   * Where a sink may stage what it writes until its checkpoint completes: `<checkpoint root>/<job>/checkpoints/staging`
   * (a directory, or an `s3://` prefix in the checkpoint bucket), which the deployment's functions may write and which
   * no checkpoint cleanup removes. Unset where the runtime has none.
   */
  readonly stagingDir?: string;
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
