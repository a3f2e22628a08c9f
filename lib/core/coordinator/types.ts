import type { ResolvedCheckpointOptions } from '../options.js';
import type { SubtaskSnapshot } from '../manifest/model.js';

/** Checkpoint statuses as Flink's REST API reports them. */
export const CheckpointStatus = { InProgress: 'IN_PROGRESS', Completed: 'COMPLETED', Failed: 'FAILED' } as const;
export type CheckpointStatus = (typeof CheckpointStatus)[keyof typeof CheckpointStatus];

/** How a snapshot ends the job, if it does: `stop` (stop-with-savepoint), `drain` (stop after draining event time), `end` (bounded input ended). */
export type Termination = 'stop' | 'drain' | 'end';

/** A request to take a snapshot outside the periodic schedule. */
export interface TriggerRequest {
  /** Caller's id for the request (the REST trigger id). */
  readonly requestId: string;
  readonly kind: 'checkpoint' | 'savepoint';
  /** Target directory for a savepoint. */
  readonly dir?: string;
  readonly termination?: Termination;
}

/** One subtask's acknowledgement as the coordinator keeps it. */
export interface SubtaskAck {
  /** `<vertex>:<subtask>` */
  readonly task: string;
  /** Operator uid → snapshot of that operator in this subtask. */
  readonly operators: Readonly<Record<string, SubtaskSnapshot>>;
  readonly ackTimestamp: number;
}

/** A checkpoint that was triggered and is not yet complete or aborted. */
export interface PendingCheckpoint {
  readonly id: number;
  readonly kind: 'checkpoint' | 'savepoint';
  readonly triggeredAt: number;
  /** Request that asked for it; absent for periodic checkpoints. */
  readonly requestId?: string;
  readonly dir?: string;
  readonly termination?: Termination;
  /** Acks received so far, by task key. */
  readonly acks: Readonly<Record<string, SubtaskAck>>;
  /** True once every task acked and the manifest write was requested. */
  readonly finalizing: boolean;
  /** The newest completed checkpoint when this one was triggered; its barriers carry it to the sinks. */
  readonly committedThrough?: number;
}

/** Summary of a finished (completed or failed) checkpoint, for the REST history. */
export interface CheckpointRecord {
  readonly id: number;
  readonly kind: 'checkpoint' | 'savepoint';
  readonly status: CheckpointStatus;
  readonly triggeredAt: number;
  /** Completion or failure time. */
  readonly finishedAt?: number;
  readonly termination?: Termination;
  /** The request that asked for it (a user's trigger), if any. */
  readonly requestId?: string;
  readonly acknowledged: number;
  readonly total: number;
  readonly failureReason?: string;
  /** Where the manifest was written, for completed ones. */
  readonly externalPath?: string;
  /** Bytes written by this checkpoint (sum of subtask stateSize). */
  readonly stateSize: number;
  /** Bytes referenced by this checkpoint (sum of subtask fullSize). */
  readonly fullSize: number;
  /** Operator uid → subtask acks, for details and per-subtask statistics. */
  readonly acks: Readonly<Record<string, SubtaskAck>>;
}

/** The coordinator's whole state: plain data, so it can live in memory or in a DynamoDB job row. */
export interface CoordinatorState {
  /** Task keys (`<vertex>:<subtask>`) that must ack every checkpoint. */
  readonly tasks: readonly string[];
  /** Task keys of source subtasks. */
  readonly sourceTasks: readonly string[];
  readonly options: ResolvedCheckpointOptions;
  /** Lifecycle of the job as the coordinator sees it; FINISHED and CANCELED are terminal. */
  readonly status: 'RUNNING' | 'FINISHED' | 'FAILING' | 'CANCELED';
  readonly nextCheckpointId: number;
  readonly pending: readonly PendingCheckpoint[];
  /** Requests waiting for a free slot (max concurrent) or for min pause. */
  readonly queued: readonly TriggerRequest[];
  /** When the coordinator started; the first periodic checkpoint is due one interval later. Set on the first tick when absent. */
  readonly startedAt?: number;
  readonly lastTriggeredAt?: number;
  readonly lastCompletedAt?: number;
  readonly latestCompletedId?: number;
  /**
   * Latest checkpoint whose sink transactions were committed (the host reports it with `committed` after the commit
   * succeeded). Barriers carry it as `committedThrough`, so sinks drop a transaction from their state only once it is
   * committed: a commit that fails leaves it in every later snapshot, and restoring any of them commits it.
   */
  readonly latestCommittedId?: number;
  readonly consecutiveFailures: number;
  /** Source task keys that reported the end of their input. */
  readonly finishedSources: readonly string[];
  /** Counts as Flink's REST reports them. */
  readonly counts: { readonly completed: number; readonly failed: number; readonly restored: number };
  /** Most recent finished checkpoints, newest first, at most `historySize`. */
  readonly history: readonly CheckpointRecord[];
  readonly historySize: number;
  /**
   * Quiet checkpoints, off when absent: how long a step's view of the job row may lag behind it, in ms (the hosts'
   * row refresh and a margin). With it, a job whose subtasks did no work between two barriers goes quiet, and once a
   * checkpoint triggered that long after goes by without work too, periodic checkpoints stop until a subtask reports
   * work (`activity`). See quiet.ts.
   */
  readonly quietAfterMs?: number;
  /**
   * Why the job is FAILING (the `failJob` effect's reason), kept with the status: the restarter names it even when
   * the effect's own status write has not landed yet.
   */
  readonly failure?: string;
  /** The job is quiet since `since` (a completion time); `confirmed`: periodic checkpoints are skipped. */
  readonly quiet?: QuietState;
}

/** See {@link CoordinatorState.quiet}. */
export interface QuietState {
  readonly since: number;
  readonly confirmed: boolean;
}

/** Inputs to the reducer. Every event carries the current time; the reducer reads no clock. */
export type CoordinatorEvent =
  | { readonly type: 'tick'; readonly now: number }
  | { readonly type: 'trigger'; readonly now: number; readonly request: TriggerRequest }
  | { readonly type: 'ack'; readonly now: number; readonly checkpointId: number; readonly ack: SubtaskAck }
  | { readonly type: 'decline'; readonly now: number; readonly checkpointId: number; readonly task: string; readonly reason: string }
  | { readonly type: 'sourceFinished'; readonly now: number; readonly task: string }
  | { readonly type: 'manifestWritten'; readonly now: number; readonly checkpointId: number; readonly path: string }
  | { readonly type: 'manifestFailed'; readonly now: number; readonly checkpointId: number; readonly reason: string }
  /** A subtask's step failed for good (user code, a service limit, a channel gap): the job fails over. */
  | { readonly type: 'taskFailed'; readonly now: number; readonly task: string; readonly reason: string }
  /** End the job without a snapshot (Flink's cancel): pending checkpoints are aborted, nothing starts any more. */
  | { readonly type: 'cancel'; readonly now: number }
  /** The sink transactions of completed checkpoint `checkpointId` (and of every earlier one it carries) are committed. */
  | { readonly type: 'committed'; readonly now: number; readonly checkpointId: number }
  /** A subtask did work since its last barrier while the job row said the job was quiet: periodic checkpoints resume. */
  | { readonly type: 'activity'; readonly now: number; readonly task: string };

/** What the runner must do after a reducer step; the runner feeds results back as events. */
export type CoordinatorEffect =
  /** Send barrier `checkpointId` to every source subtask (an `end` barrier when termination is `end` or `drain`). */
  | { readonly type: 'injectBarrier'; readonly checkpointId: number; readonly kind: 'checkpoint' | 'savepoint'; readonly timestamp: number; readonly termination?: Termination; readonly committedThrough?: number }
  /** Every task acked: write the manifest, then report `manifestWritten` or `manifestFailed`. */
  | { readonly type: 'writeManifest'; readonly checkpoint: PendingCheckpoint }
  /**
   * The manifest exists: commit pending sink transactions (unless `commits` is false: an intermediate savepoint, which
   * as in Flink commits no side effects, so restoring an older checkpoint cannot repeat them), delete checkpoints beyond
   * the retained count.
   */
  | { readonly type: 'checkpointCompleted'; readonly checkpointId: number; readonly path: string; readonly kind: 'checkpoint' | 'savepoint'; readonly commits: boolean; readonly requestId?: string; readonly termination?: Termination }
  /** Discard a checkpoint's partial files. */
  | { readonly type: 'checkpointAborted'; readonly checkpointId: number; readonly reason: string; readonly requestId?: string; readonly termination?: Termination }
  /** Too many consecutive failures, or a terminating snapshot failed: fail over (restart strategy). */
  | { readonly type: 'failJob'; readonly reason: string }
  /** The terminating snapshot completed: the job is done. */
  | { readonly type: 'jobFinished'; readonly checkpointId: number; readonly termination: Termination }
  /** The job was cancelled: record it where the control plane and the runners look. */
  | { readonly type: 'jobCanceled' };

/** The reducer's result. */
export interface CoordinatorStep {
  readonly state: CoordinatorState;
  readonly effects: readonly CoordinatorEffect[];
  /** What became of an ack or decline, Flink's TaskAcknowledgeResult. */
  readonly result?: 'accepted' | 'duplicate' | 'unknown' | 'discarded';
}
