import type { CoordinatorState, Termination } from '../core/coordinator/types.js';
import type { ResolvedCheckpointOptions } from '../core/options.js';
import type { PhysicalPlan } from '../graph/plan.js';

/** Job states, Flink's names. */
export const JobState = {
  Created: 'CREATED',
  Running: 'RUNNING',
  Restarting: 'RESTARTING',
  Finished: 'FINISHED',
  Canceled: 'CANCELED',
  Failed: 'FAILED',
} as const;
export type JobState = (typeof JobState)[keyof typeof JobState];

/** One vertex (operator chain) of a running job. */
export interface VertexOverview {
  /** The chain head's uid. */
  readonly id: string;
  /** Names of the chained operators, joined with ' -> '. */
  readonly name: string;
  readonly parallelism: number;
  /** Records that entered / left the vertex since the job started (across restarts). */
  readonly recordsIn: number;
  readonly recordsOut: number;
  /** True when the chain starts with a source; the progress line counts records in from these. Absent: the coordinator's source tasks decide. */
  readonly isSource?: boolean;
  /** True when the chain ends in a sink; the progress line counts records out from these. Absent: the last vertex is taken as the sink. */
  readonly isSink?: boolean;
}

/** A job as `GET /jobs/:id` reports it. */
export interface JobOverview {
  /** 32 hex digits. */
  readonly jid: string;
  readonly name: string;
  readonly state: JobState;
  /** Epoch milliseconds. */
  readonly startTime: number;
  readonly endTime?: number;
  readonly maxParallelism: number;
  readonly vertices: readonly VertexOverview[];
  /** Restarts by the restart strategy so far. */
  readonly restarts: number;
  /** Where the run restored from, if it did. */
  readonly restoredFrom?: { readonly id: number; readonly path: string; readonly kind: 'checkpoint' | 'savepoint'; readonly restoredAt: number };
  /** Why the job failed, when it did. */
  readonly failureCause?: string;
  /** Since when periodic checkpoints are paused because the job did no work (quiet checkpoints, epoch ms); absent while they run. */
  readonly quietSince?: number;
}

/** Status of an asynchronous savepoint or checkpoint trigger, by trigger id. */
export interface TriggerStatus {
  readonly status: 'IN_PROGRESS' | 'COMPLETED' | 'FAILED';
  /** Checkpoint id allocated for the trigger, once known. */
  readonly checkpointId?: number;
  /** Path of the written `_metadata` directory, when completed. */
  readonly location?: string;
  readonly failureCause?: string;
}

/** What the REST API needs from a running job: implemented by the embedded runner and, later, by the AWS control plane. */
export interface JobControl {
  overview(): JobOverview;
  /** The coordinator's current state: counts, pending checkpoints, history with per-subtask acks. */
  coordinatorState(): CoordinatorState;
  checkpointConfig(): ResolvedCheckpointOptions;
  /** Triggers a checkpoint now; returns the trigger id. */
  triggerCheckpoint(): string;
  /**
   * Checks a savepoint target before anything is triggered, and returns the target to trigger with: `dir`, or the
   * configured default when absent, as the control writes it (a local path resolved and checked on disk, an `s3://`
   * location inside the job's own bucket). Throws a BAD_REQUEST FloeError (a 400) saying what is wrong.
   */
  validateSavepointTarget(dir: string | undefined): Promise<string>;
  /**
   * Triggers a savepoint into `dir` (the configured default when absent); `termination` stops the job after it. Returns
   * the trigger id. Callers pass a `dir` that {@link JobControl.validateSavepointTarget} returned (the REST router does).
   */
  triggerSavepoint(options: { dir?: string; termination?: Extract<Termination, 'stop' | 'drain'> }): string;
  /** Status of a trigger, or undefined for an unknown id. */
  triggerStatus(requestId: string): TriggerStatus | undefined;
  /** Cancels the job without a savepoint. */
  cancel(): Promise<void>;
}

/** The vertices of a plan as the overview reports them, with their record counts. */
export function vertexOverviews(plan: PhysicalPlan, metrics: ReadonlyMap<string, { readonly recordsIn: number; readonly recordsOut: number }>): VertexOverview[] {
  return plan.vertices.map((v) => ({
    id: v.id,
    name: v.name,
    parallelism: v.parallelism,
    isSource: v.isSource,
    isSink: v.isSink,
    recordsIn: metrics.get(v.id)?.recordsIn ?? 0,
    recordsOut: metrics.get(v.id)?.recordsOut ?? 0,
  }));
}

/**
 * What the coordinator's state says of the trigger `requestId`: queued or pending (IN_PROGRESS), or finished as its
 * history records it; undefined when the state does not know it (not yet applied, or out of the history).
 */
export function triggerStatusOf(state: CoordinatorState, requestId: string): TriggerStatus | undefined {
  if (state.queued.some((q) => q.requestId === requestId)) return { status: 'IN_PROGRESS' };
  const pending = state.pending.find((p) => p.requestId === requestId);
  if (pending) return { status: 'IN_PROGRESS', checkpointId: pending.id };
  const record = state.history.find((h) => h.requestId === requestId);
  if (!record) return undefined;
  return record.status === 'COMPLETED'
    ? { status: 'COMPLETED', checkpointId: record.id, ...(record.externalPath === undefined ? {} : { location: record.externalPath }) }
    : { status: 'FAILED', checkpointId: record.id, failureCause: record.failureReason ?? 'checkpoint failed' };
}

/**
 * The triggers a job control was asked for (REST API, CLI), answered from the coordinator's state: a runner records
 * each request id it hands out and a trigger that failed to apply; everything else is read from the job row.
 */
export class TriggerRequests {
  /** Request id → why its trigger failed to apply, or undefined. */
  private readonly requests = new Map<string, string | undefined>();

  /** Records a request id handed out. */
  add(requestId: string): void {
    this.requests.set(requestId, undefined);
  }

  /** Records that the trigger of `requestId` failed before the coordinator took it. */
  failed(requestId: string, reason: string): void {
    this.requests.set(requestId, reason);
  }

  /** The status of `requestId` given the coordinator's state and whether the job has ended; undefined for an id never handed out. */
  status(requestId: string, state: CoordinatorState | undefined, ended: JobState | undefined): TriggerStatus | undefined {
    if (!this.requests.has(requestId)) return undefined;
    const failure = this.requests.get(requestId);
    if (failure !== undefined) return { status: 'FAILED', failureCause: failure };
    const known = state && triggerStatusOf(state, requestId);
    if (known) return known;
    return ended === undefined ? { status: 'IN_PROGRESS' } : { status: 'FAILED', failureCause: `the job ended (${ended}) before it completed` };
  }
}

/** The state a finished job ended in, or undefined while it has not. */
export function endedState(state: JobState): JobState | undefined {
  return state === JobState.Finished || state === JobState.Canceled || state === JobState.Failed ? state : undefined;
}
