/**
 * The coordinator's job row as plain data, and the pure step that applies one reducer event to it.
 *
 * A row is the reducer's `CoordinatorState` plus what only the AWS substrate needs to carry out effects durably
 * (`CoordinatorRuntime`): the run's job id and generation, the last `seq` used on the coordinator's channels, and
 * for every pending checkpoint where it is written and the `seq` of its barrier — so a barrier re-sent by a retried
 * task is byte-for-byte the envelope sent the first time (same FIFO deduplication id, dropped by the receiver's seq
 * check), and a retried manifest write targets the same directory.
 *
 * Nothing here does I/O: a `CoordinatorStore` (lib/ports/coordinator-store.ts) loads and conditionally writes rows,
 * the coordinator's host (lib/coordination/host.ts) carries out the effects a committed step asks for.
 */
import { reduceCoordinator } from './coordinator.js';
import { CheckpointStatus, type CoordinatorEvent, type CoordinatorState, type CoordinatorStep, type PendingCheckpoint } from './types.js';
import { Layout } from '../manifest/layout.js';
import type { ResolvedCheckpointOptions } from '../options.js';
import type { RestartState } from '../restart-strategy.js';

/** Where a pending snapshot is written, and the `seq` its barrier carries on every coordinator channel. */
export interface SnapshotPlacement {
  readonly seq: number;
  /** The snapshot's own directory (holds `_metadata`). */
  readonly dir: string;
  /** Shared directory of incremental checkpoints; absent for savepoints. */
  readonly sharedDir?: string;
}

/** What the AWS coordinator keeps next to the reducer's state. */
export interface CoordinatorRuntime {
  /** Id of the run, recorded in manifests. */
  readonly jobId: string;
  /** Generation of the run; barriers carry it, and a restore bumps it. */
  readonly generation: number;
  /**
   * Last `seq` sent on the coordinator's channels in this generation. Every source subtask receives the same
   * barriers in the same order, so one counter numbers all of its channels (`$coordinator:0` → `<source>:<i>`).
   */
  readonly barrierSeq: number;
  /** Default savepoint directory (`savepoint.dir`). */
  readonly savepointDir: string;
  /** Checkpoint id → placement, for pending checkpoints only. */
  readonly placements: Readonly<Record<string, SnapshotPlacement>>;
  /**
   * When the source subtasks of this generation were sent their first wake-up messages; absent until then. The
   * coordinator's tick starts them when it finds this absent (a deployed job starts by itself after `cdk deploy`).
   */
  readonly sourcesStartedAt?: number;
  /** The plan the deployed functions run, as the coordinator last recorded it; `floe start` validates a restore against it. */
  readonly deployment?: DeployedPlan;
  /**
   * Set while `floe start` moves the job to this generation from a snapshot (job-start.ts): `restoring` while it
   * writes the state (nothing may start), `ready` once it is written, `preparing` while one coordinator invocation
   * (the one whose conditional write claimed it) commits the snapshot's pending sink transactions and removes
   * uncommitted output, `prepared` once that is done (only the writer of this phase, or a later tick, starts the
   * sources); removed when the sources are started. No checkpoint is triggered while it is set.
   */
  readonly start?: GenerationStart;
  /** The restart strategy's memory of this run's failures; the coordinator restarts a FAILING job by it. @default none yet */
  readonly restarts?: RestartState;
  /** The snapshot the run started from, where a restart goes when the run has completed no checkpoint. @default empty state */
  readonly origin?: string;
  /** The newest checkpoint this run completed (its directory), where a restart goes; a new run (`floe start`) starts without. */
  readonly latestCheckpoint?: string;
}

/** The shape of the deployed plan that a restore maps state onto (a {@link RestoreTarget}), with what a new generation's row needs. */
export interface DeployedPlan {
  /** The plan's fingerprint (operators and edges; not parallelism). */
  readonly fingerprint: string;
  readonly maxParallelism: number;
  readonly vertices: ReadonlyArray<{
    readonly id: string;
    readonly parallelism: number;
    readonly isSource: boolean;
    readonly operators: ReadonlyArray<{ readonly uid: string; readonly stateful: boolean }>;
  }>;
  /** The deployment's resolved checkpoint options. */
  readonly options: ResolvedCheckpointOptions;
  /** The deployment's default savepoint directory. */
  readonly savepointDir: string;
  /**
   * The functions' timeout in ms, the longest a step already in flight can still run: `floe start` waits it out
   * after fencing the old generation. Absent for emulator mode, whose steps have no time limit.
   */
  readonly functionTimeoutMs?: number;
}

/** Phases of a {@link GenerationStart}. */
export const StartPhase = { Restoring: 'restoring', Ready: 'ready', Preparing: 'preparing', Prepared: 'prepared' } as const;
export type StartPhase = (typeof StartPhase)[keyof typeof StartPhase];

/** A start of a new generation in progress (see {@link CoordinatorRuntime.start}). */
export interface GenerationStart {
  readonly phase: StartPhase;
  /** The generation being started. */
  readonly generation: number;
  /** The snapshot directory restored from; absent for a start with empty state. */
  readonly from?: string;
  /** When the start began, in ms since the epoch. */
  readonly at: number;
  /**
   * When a coordinator invocation claimed the preparation (phase `preparing`), in ms since the epoch; the claim is
   * its own: only the invocation that wrote this value may write `prepared`.
   */
  readonly preparingAt?: number;
  /**
   * The plan `floe start` laid the generation out for (absent on rows written before it was recorded): the
   * coordinator starts the generation only if it runs that plan, as the row's `deployment` is rewritten by a
   * redeployed coordinator.
   */
  readonly plan?: StartedPlan;
  /**
   * Set when the coordinator restarts a failed generation by itself (not `floe start`): not before this time, in ms
   * since the epoch (the strategy's delay, and long enough for every step of the failed generation to have ended),
   * a coordinator invocation writes the restored state.
   */
  readonly restoreAt?: number;
  /** When a coordinator invocation claimed writing the restored state (a restart's `restoring` phase); the claim is its own. */
  readonly restoringAt?: number;
}

/** What of a {@link DeployedPlan} a started generation's state depends on beyond its subtasks. */
export interface StartedPlan {
  readonly fingerprint: string;
  readonly maxParallelism: number;
  /** Operator uids, in plan order. */
  readonly uids: readonly string[];
}

/** The {@link StartedPlan} of a deployed plan. */
export function startedPlanOf(plan: Pick<DeployedPlan, 'fingerprint' | 'maxParallelism' | 'vertices'>): StartedPlan {
  return { fingerprint: plan.fingerprint, maxParallelism: plan.maxParallelism, uids: plan.vertices.flatMap((v) => v.operators.map((o) => o.uid)) };
}

/** How a started generation's plan differs from the plan the coordinator runs, or undefined when it does not. */
export function startedPlanMismatch(started: StartedPlan | undefined, running: StartedPlan): string | undefined {
  if (started === undefined) return undefined;
  const problems: string[] = [];
  if (started.fingerprint !== running.fingerprint) problems.push(`plan fingerprint ${started.fingerprint}, but the deployed plan's is ${running.fingerprint}`);
  if (started.maxParallelism !== running.maxParallelism) problems.push(`maxParallelism ${started.maxParallelism}, but the deployed plan's is ${running.maxParallelism}`);
  const uids = new Set(running.uids);
  const missing = started.uids.filter((u) => !uids.has(u));
  const added = running.uids.filter((u) => !started.uids.includes(u));
  if (missing.length > 0 || added.length > 0) problems.push(`operators ${started.uids.join(', ')}, but the deployed plan has ${running.uids.join(', ')}`);
  return problems.length === 0 ? undefined : problems.join('; ');
}

/** Whether two recorded plans are the same deployment (operators, parallelism, options). */
export function sameDeployment(a: DeployedPlan | undefined, b: DeployedPlan): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The job's lifecycle as the effects record it (`failJob`, `jobFinished`, `jobCanceled`), for the control plane and the
 * restart supervisor. FINISHED and CANCELED are final for the row's generation: only a new generation (a restore)
 * runs again.
 */
export const JobStatus = { Running: 'RUNNING', Failing: 'FAILING', Failed: 'FAILED', Finished: 'FINISHED', Canceled: 'CANCELED' } as const;
export type JobStatus = (typeof JobStatus)[keyof typeof JobStatus];

/** Whether a job status is final for its generation: FINISHED, CANCELED, or FAILED (the restart strategy gave up). */
export function isFinalStatus(status: JobStatus | undefined): boolean {
  return status === JobStatus.Finished || status === JobStatus.Canceled || status === JobStatus.Failed;
}

/** Whether a row's generation has ended for good: the reducer's state or the recorded status says FINISHED, CANCELED or FAILED. */
export function isTerminal(row: Pick<CoordinatorRow, 'state' | 'jobStatus'>): boolean {
  return row.state.status === 'FINISHED' || row.state.status === 'CANCELED' || isFinalStatus(row.jobStatus?.status);
}

/** Whether a row's generation was cancelled (the reducer's state is the truth; the status attribute follows it). */
export function isCanceled(row: Pick<CoordinatorRow, 'state' | 'jobStatus'>): boolean {
  return row.state.status === 'CANCELED' || row.jobStatus?.status === JobStatus.Canceled;
}

/** The job status attributes of a row; written by effects, never by a reducer step. */
export interface JobStatusRecord {
  readonly status: JobStatus;
  /** Why the job is failing, or the savepoint it finished with. */
  readonly detail?: string;
  readonly at: number;
}

/** One job's coordinator row. */
export interface CoordinatorRow {
  readonly job: string;
  /** Bumped by every write; a write whose base version is stale is refused. */
  readonly version: number;
  readonly state: CoordinatorState;
  readonly runtime: CoordinatorRuntime;
  /** Present on rows read back from the store. */
  readonly jobStatus?: JobStatusRecord;
}

/** A checkpoint whose status changed in a step, for the per-checkpoint status items the state machine polls. */
export interface CheckpointStatusChange {
  readonly checkpointId: number;
  readonly kind: 'checkpoint' | 'savepoint';
  readonly status: CheckpointStatus;
  readonly at: number;
  readonly reason?: string;
  /** The snapshot directory, for completed ones. */
  readonly path?: string;
}

/** The outcome of applying one event to a row. */
export interface RowTransition {
  /** The row to write (same `version` as the input; the store bumps it). */
  readonly row: CoordinatorRow;
  readonly step: CoordinatorStep;
  /** False when the reducer changed nothing and asked for nothing: there is nothing to write. */
  readonly changed: boolean;
  readonly statusChanges: readonly CheckpointStatusChange[];
}

/** Task keys (`<vertex>:<subtask>`) of every subtask of a plan, and of its source subtasks. */
export function planTasks(plan: Pick<DeployedPlan, 'vertices'>): { tasks: string[]; sourceTasks: string[] } {
  const keys = (sourcesOnly: boolean) => plan.vertices.filter((v) => !sourcesOnly || v.isSource).flatMap((v) => Array.from({ length: v.parallelism }, (_, i) => `${v.id}:${i}`));
  return { tasks: keys(false), sourceTasks: keys(true) };
}

/** Where checkpoint or savepoint `checkpoint` is written; deterministic, so a retried allocation lands in the same place. */
export function placeSnapshot(row: Pick<CoordinatorRow, 'job' | 'state' | 'runtime'>, checkpoint: Pick<PendingCheckpoint, 'id' | 'kind' | 'dir'>, seq: number): SnapshotPlacement {
  const root = row.state.options.dir;
  if (checkpoint.kind === 'savepoint') {
    return { seq, dir: Layout.savepointDir(checkpoint.dir ?? row.runtime.savepointDir, `${row.runtime.jobId.slice(0, 8)}-${checkpoint.id}`) };
  }
  return { seq, dir: Layout.checkpointDir(root, row.job, checkpoint.id), sharedDir: Layout.sharedDir(root, row.job) };
}

/**
 * Applies one event: runs the reducer, places every checkpoint it starts (allocating its barrier `seq`), forgets
 * placements of checkpoints that are no longer pending, and lists the checkpoints whose status changed.
 */
export function transitionRow(row: CoordinatorRow, event: CoordinatorEvent): RowTransition {
  const step = reduceCoordinator(row.state, event);
  // The reducer returns the very same state object when nothing changed (duplicate ack, late message, idle tick).
  const changed = step.state !== row.state || step.effects.length > 0;
  if (!changed) return { row, step, changed, statusChanges: [] };

  let barrierSeq = row.runtime.barrierSeq;
  const placements: Record<string, SnapshotPlacement> = {};
  for (const p of step.state.pending) {
    const existing = row.runtime.placements[String(p.id)];
    if (existing) placements[String(p.id)] = existing;
  }
  for (const effect of step.effects) {
    if (effect.type !== 'injectBarrier' || placements[String(effect.checkpointId)]) continue;
    const pending = step.state.pending.find((p) => p.id === effect.checkpointId);
    // Started and finished within one step (cannot happen today): nothing to place.
    if (!pending) continue;
    placements[String(pending.id)] = placeSnapshot(row, pending, ++barrierSeq);
  }
  // The run's newest completed checkpoint, where a restart goes (the history holds only the last few records, and those of earlier runs).
  const completed = step.effects.filter((e) => e.type === 'checkpointCompleted' && e.kind === 'checkpoint');
  const latest = completed.length === 0 ? undefined : (completed[completed.length - 1] as { path: string }).path;
  const next: CoordinatorRow = { ...row, state: step.state, runtime: { ...row.runtime, barrierSeq, placements, ...(latest === undefined ? {} : { latestCheckpoint: latest }) } };
  return { row: next, step, changed, statusChanges: statusChanges(row.state, step.state, event.now) };
}

/** Checkpoints that became pending or left the pending list between two states. */
export function statusChanges(before: CoordinatorState, after: CoordinatorState, now: number): CheckpointStatusChange[] {
  const out: CheckpointStatusChange[] = [];
  const wasPending = new Set(before.pending.map((p) => p.id));
  const isPending = new Set(after.pending.map((p) => p.id));
  for (const p of after.pending) {
    if (!wasPending.has(p.id)) out.push({ checkpointId: p.id, kind: p.kind, status: CheckpointStatus.InProgress, at: now });
  }
  for (const p of before.pending) {
    if (isPending.has(p.id)) continue;
    const record = after.history.find((h) => h.id === p.id);
    out.push({
      checkpointId: p.id,
      kind: p.kind,
      status: record?.status ?? CheckpointStatus.Failed,
      at: record?.finishedAt ?? now,
      ...(record?.failureReason === undefined ? {} : { reason: record.failureReason }),
      ...(record?.externalPath === undefined ? {} : { path: record.externalPath }),
    });
  }
  return out;
}

/**
 * What the row says about checkpoint `id`: pending, in the history, or — when it finished so long ago that the
 * history no longer holds it — `undefined` (the caller may look for its manifest).
 */
export function checkpointStatusOf(row: CoordinatorRow, id: number): CheckpointStatusChange | undefined {
  const pending = row.state.pending.find((p) => p.id === id);
  if (pending) return { checkpointId: id, kind: pending.kind, status: CheckpointStatus.InProgress, at: pending.triggeredAt };
  const record = row.state.history.find((h) => h.id === id);
  if (!record) return undefined;
  return {
    checkpointId: id,
    kind: record.kind,
    status: record.status,
    at: record.finishedAt ?? record.triggeredAt,
    ...(record.failureReason === undefined ? {} : { reason: record.failureReason }),
    ...(record.externalPath === undefined ? {} : { path: record.externalPath }),
  };
}
