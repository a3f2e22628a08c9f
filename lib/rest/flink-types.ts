/**
 * Response and request bodies of the REST API, field for field as Flink's REST API v1 names them
 * (`docs/static/generated/rest_v1_dispatcher.yml` in apache/flink). Floe's own additions are marked.
 * The server builds these and the CLI's client reads them, so both share one definition.
 */

/** Flink's error body, for every 4xx and 5xx answer. */
export interface ErrorBody {
  readonly errors: readonly string[];
}

/** `GET /jobs` */
export interface JobIdsWithStatusOverview {
  readonly jobs: readonly { readonly id: string; readonly status: string }[];
}

/** Flink's `IOMetricsInfo`; Floe counts records only, so the byte counters are 0. */
export interface IoMetricsInfo {
  readonly 'read-bytes': number;
  readonly 'read-bytes-complete': boolean;
  readonly 'write-bytes': number;
  readonly 'write-bytes-complete': boolean;
  readonly 'read-records': number;
  readonly 'read-records-complete': boolean;
  readonly 'write-records': number;
  readonly 'write-records-complete': boolean;
}

/** One vertex in `GET /jobs/:id`. */
export interface JobVertexDetailsInfo {
  readonly id: string;
  readonly name: string;
  readonly maxParallelism: number;
  readonly parallelism: number;
  /** An execution state (`RUNNING`, `FINISHED`, ...). */
  readonly status: string;
  readonly 'start-time': number;
  readonly 'end-time': number;
  readonly duration: number;
  readonly tasks: Readonly<Record<string, number>>;
  readonly metrics: IoMetricsInfo;
}

/** `GET /jobs/:id` */
export interface JobDetailsInfo {
  readonly jid: string;
  readonly name: string;
  readonly isStoppable: boolean;
  readonly state: string;
  readonly 'job-type': 'STREAMING';
  readonly 'start-time': number;
  /** -1 while the job runs. */
  readonly 'end-time': number;
  readonly duration: number;
  readonly maxParallelism: number;
  readonly now: number;
  readonly timestamps: Readonly<Record<string, number>>;
  readonly vertices: readonly JobVertexDetailsInfo[];
  readonly 'status-counts': Readonly<Record<string, number>>;
  /** Floe: restarts by the restart strategy so far. */
  readonly restarts: number;
  /** Floe: why the job failed, when it did. */
  readonly 'failure-cause'?: string;
  /** Floe: periodic checkpoints are paused since then (epoch ms): the job did no work (scale to zero). */
  readonly 'quiet-since'?: number;
}

/** Flink's `StatsSummaryDto`: min, max, average and percentiles over completed checkpoints. */
export interface StatsSummaryDto {
  readonly min: number;
  readonly max: number;
  readonly avg: number;
  readonly p50: number;
  readonly p90: number;
  readonly p95: number;
  readonly p99: number;
  readonly p999: number;
}

/** Flink's `CheckpointAlignment`; Floe aligns by holding back channels, so only the duration is meaningful. */
export interface CheckpointAlignment {
  readonly buffered: number;
  readonly processed: number;
  readonly persisted: number;
  readonly duration: number;
}

/** A subtask that acknowledged a checkpoint (`CompletedSubtaskCheckpointStatistics`). */
export interface CompletedSubtaskCheckpointStatistics {
  readonly index: number;
  readonly status: 'completed';
  readonly ack_timestamp: number;
  readonly end_to_end_duration: number;
  /** Bytes referenced by the subtask's snapshot (the full state). */
  readonly state_size: number;
  /** Bytes the checkpoint wrote for the subtask (the increment). */
  readonly checkpointed_size: number;
  readonly checkpoint: { readonly sync: number; readonly async: number };
  readonly alignment: CheckpointAlignment;
  readonly start_delay: number;
  readonly unaligned_checkpoint: boolean;
  readonly aborted: boolean;
}

/** A subtask that has not acknowledged (`PendingSubtaskCheckpointStatistics`). */
export interface PendingSubtaskCheckpointStatistics {
  readonly index: number;
  readonly status: 'pending_or_failed';
}

export type SubtaskCheckpointStatistics = CompletedSubtaskCheckpointStatistics | PendingSubtaskCheckpointStatistics;

/** One vertex's part of a checkpoint (`TaskCheckpointStatistics`). */
export interface TaskCheckpointStatistics {
  readonly id: number;
  readonly status: CheckpointStatusName;
  readonly latest_ack_timestamp: number;
  readonly checkpointed_size: number;
  readonly state_size: number;
  readonly end_to_end_duration: number;
  readonly alignment_buffered: number;
  readonly processed_data: number;
  readonly persisted_data: number;
  readonly num_subtasks: number;
  readonly num_acknowledged_subtasks: number;
  /** Floe: the per-subtask statistics, inline (Flink serves them at `.../details/:n/subtasks/:vertex`). */
  readonly subtasks: readonly SubtaskCheckpointStatistics[];
}

/** `GET /jobs/:id/checkpoints/details/:n/subtasks/:vertex` (`TaskCheckpointStatisticsWithSubtaskDetails`). */
export interface TaskCheckpointStatisticsWithSubtaskDetails extends TaskCheckpointStatistics {
  readonly summary: {
    readonly state_size: StatsSummaryDto;
    readonly checkpointed_size: StatsSummaryDto;
    readonly end_to_end_duration: StatsSummaryDto;
    readonly checkpoint_duration: { readonly sync: StatsSummaryDto; readonly async: StatsSummaryDto };
    readonly alignment: { readonly duration: StatsSummaryDto };
    readonly start_delay: StatsSummaryDto;
  };
}

export type CheckpointStatusName = 'IN_PROGRESS' | 'COMPLETED' | 'FAILED';

/** One checkpoint in the history or in details (`CheckpointStatistics` and its completed / failed / in-progress subtypes). */
export interface CheckpointStatistics {
  /** Jackson's type discriminator in Flink's answer. */
  readonly className: 'completed' | 'failed' | 'in_progress';
  readonly id: number;
  readonly status: CheckpointStatusName;
  readonly is_savepoint: boolean;
  /** `CANONICAL` for savepoints, null for checkpoints. */
  readonly savepointFormat: 'CANONICAL' | null;
  readonly trigger_timestamp: number;
  /** -1 before the first acknowledgement. */
  readonly latest_ack_timestamp: number;
  /** Bytes this checkpoint wrote (the increment, for incremental checkpoints). */
  readonly checkpointed_size: number;
  /** Bytes of state the checkpoint references in full. */
  readonly state_size: number;
  readonly end_to_end_duration: number;
  readonly alignment_buffered: number;
  readonly processed_data: number;
  readonly persisted_data: number;
  readonly num_subtasks: number;
  readonly num_acknowledged_subtasks: number;
  /** `SYNC_SAVEPOINT` for the savepoint of a stop. */
  readonly checkpoint_type: 'CHECKPOINT' | 'SAVEPOINT' | 'SYNC_SAVEPOINT';
  /** Vertex id → statistics; empty in the history, filled in details. */
  readonly tasks: Readonly<Record<string, TaskCheckpointStatistics>>;
  /** Completed only: the snapshot's directory. */
  readonly external_path?: string;
  /** Completed only: true once retention deleted the checkpoint. */
  readonly discarded?: boolean;
  /** Failed only. */
  readonly failure_timestamp?: number;
  readonly failure_message?: string;
}

/** `GET /jobs/:id/checkpoints` (`CheckpointingStatistics`). */
export interface CheckpointingStatistics {
  readonly counts: { readonly restored: number; readonly total: number; readonly in_progress: number; readonly completed: number; readonly failed: number };
  readonly summary: {
    readonly checkpointed_size: StatsSummaryDto;
    readonly state_size: StatsSummaryDto;
    readonly end_to_end_duration: StatsSummaryDto;
    readonly alignment_buffered: StatsSummaryDto;
    readonly processed_data: StatsSummaryDto;
    readonly persisted_data: StatsSummaryDto;
  };
  readonly latest: {
    readonly completed: CheckpointStatistics | null;
    readonly savepoint: CheckpointStatistics | null;
    readonly failed: CheckpointStatistics | null;
    readonly restored: RestoredCheckpointStatistics | null;
  };
  /** Newest first; in-progress checkpoints included. */
  readonly history: readonly CheckpointStatistics[];
}

/** Where the run restored from (`RestoredCheckpointStatistics`). */
export interface RestoredCheckpointStatistics {
  readonly id: number;
  readonly restore_timestamp: number;
  readonly is_savepoint: boolean;
  readonly external_path: string;
}

/** `GET /jobs/:id/checkpoints/config` (`CheckpointConfigInfo`) plus Floe's own options. */
export interface CheckpointConfigInfo {
  readonly mode: 'exactly_once' | 'at_least_once';
  readonly interval: number;
  readonly timeout: number;
  readonly min_pause: number;
  readonly max_concurrent: number;
  readonly externalization: { readonly enabled: boolean; readonly delete_on_cancellation: boolean };
  readonly state_backend: string;
  readonly checkpoint_storage: string;
  readonly unaligned_checkpoints: boolean;
  readonly tolerable_failed_checkpoints: number;
  readonly aligned_checkpoint_timeout: number;
  readonly checkpoints_after_tasks_finish: boolean;
  readonly state_changelog_enabled: boolean;
  /** Floe: completed checkpoints kept (`execution.checkpointing.num-retained`). */
  readonly retained: number;
  /** Floe: whether checkpoints store only what changed (`execution.checkpointing.incremental`). */
  readonly incremental: boolean;
  /** Floe: the checkpoint root directory. */
  readonly checkpoint_dir: string;
}

/** Answer to every asynchronous trigger (`TriggerResponse`). */
export interface TriggerResponse {
  readonly 'request-id': string;
}

/** Flink's `SerializedThrowable` as the REST API renders it. */
export interface FailureCause {
  readonly class: string;
  readonly 'stack-trace': string;
}

/** `GET /jobs/:id/savepoints/:triggerid` (`AsynchronousOperationResult<SavepointInfo>`). */
export interface SavepointStatusResponse {
  readonly status: { readonly id: 'IN_PROGRESS' | 'COMPLETED' };
  readonly operation?: { readonly location: string } | { readonly 'failure-cause': FailureCause };
}

/** `GET /jobs/:id/checkpoints/:triggerid` (`AsynchronousOperationResult<CheckpointInfo>`). */
export interface CheckpointStatusResponse {
  readonly status: { readonly id: 'IN_PROGRESS' | 'COMPLETED' };
  readonly operation?: { readonly checkpointId: number } | { readonly 'failure-cause': FailureCause };
}

/** `POST /jobs/:id/savepoints` body (`SavepointTriggerRequestBody`). */
export interface SavepointTriggerRequestBody {
  readonly 'target-directory'?: string;
  readonly 'cancel-job'?: boolean;
}

/** `POST /jobs/:id/stop` body (`StopWithSavepointRequestBody`). */
export interface StopWithSavepointRequestBody {
  readonly targetDirectory?: string;
  readonly drain?: boolean;
}
