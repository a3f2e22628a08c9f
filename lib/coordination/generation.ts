/**
 * A job row for a plan: the shape of the deployed plan the row records, and a new generation's row. Every host
 * starts a generation through here (the embedded runner, emulator mode, `floe start`), so a row is laid out the same
 * way whatever runs it.
 */
import { initialCoordinatorState } from '../core/coordinator/coordinator.js';
import { StartPhase, planTasks, startedPlanOf, type CoordinatorRow, type DeployedPlan } from '../core/coordinator/job-row.js';
import type { RestartState } from '../core/restart-strategy.js';
import type { ResolvedCheckpointOptions } from '../core/options.js';
import type { PhysicalPlan } from '../graph/plan.js';

/** The deployed plan's shape as recorded in the job row. */
export function deployedPlanOf(plan: PhysicalPlan, options: ResolvedCheckpointOptions, savepointDir: string, functionTimeoutMs?: number): DeployedPlan {
  return {
    fingerprint: plan.fingerprint,
    maxParallelism: plan.maxParallelism,
    vertices: plan.vertices.map((v) => ({ id: v.id, parallelism: v.parallelism, isSource: v.isSource, operators: v.operators.map((o) => ({ uid: o.uid, stateful: o.stateful })) })),
    options,
    savepointDir,
    ...(functionTimeoutMs === undefined ? {} : { functionTimeoutMs }),
  };
}

/** What a new job row starts from. */
export interface NewCoordinatorRowInput {
  readonly plan: PhysicalPlan;
  readonly options: ResolvedCheckpointOptions;
  readonly jobId: string;
  /** Default savepoint directory. */
  readonly savepointDir: string;
  readonly now: number;
  /** @default 1 */
  readonly generation?: number;
  /** First id to allocate. @default latestCompletedId + 1, or 1 */
  readonly nextCheckpointId?: number;
  readonly latestCompletedId?: number;
  /** @default false */
  readonly restored?: boolean;
  /** @default 20 */
  readonly historySize?: number;
  /** The functions' timeout in ms, recorded in the deployed plan. @default none (emulator mode) */
  readonly functionTimeoutMs?: number;
  /** Quiet checkpoints (lib/core/coordinator/quiet.ts): {@link QUIET_AFTER_MS} for hosts whose steps cache the row. @default off */
  readonly quietAfterMs?: number;
}

/** A RUNNING job row (version 0: not yet stored) for a plan, with nothing pending. */
export function newCoordinatorRow(input: NewCoordinatorRowInput): CoordinatorRow {
  const { tasks, sourceTasks } = planTasks(input.plan);
  const state = initialCoordinatorState({
    tasks,
    sourceTasks,
    options: input.options,
    now: input.now,
    ...(input.nextCheckpointId === undefined ? {} : { nextCheckpointId: input.nextCheckpointId }),
    ...(input.latestCompletedId === undefined ? {} : { latestCompletedId: input.latestCompletedId }),
    ...(input.restored === undefined ? {} : { restored: input.restored }),
    ...(input.historySize === undefined ? {} : { historySize: input.historySize }),
    ...(input.quietAfterMs === undefined ? {} : { quietAfterMs: input.quietAfterMs }),
  });
  return {
    job: input.plan.job,
    version: 0,
    state,
    runtime: {
      jobId: input.jobId,
      generation: input.generation ?? 1,
      barrierSeq: 0,
      savepointDir: input.savepointDir,
      placements: {},
      deployment: deployedPlanOf(input.plan, input.options, input.savepointDir, input.functionTimeoutMs),
    },
  };
}


/**
 * The row of a run's next generation: laid out for `plan`, ids continuing after every id used before (each names a
 * checkpoint directory and, on AWS, a Step Functions execution, which must be new), and — for a restart within one
 * run — the earlier generation's counts and history, as Flink keeps its checkpoint statistics across restarts.
 */
export function nextGenerationRow(input: {
  readonly plan: PhysicalPlan;
  readonly options: ResolvedCheckpointOptions;
  readonly jobId: string;
  readonly savepointDir: string;
  readonly now: number;
  readonly generation: number;
  /** Ids used so far: the last checkpoint found in storage, the previous row's next id. */
  readonly usedIds: readonly number[];
  /** The snapshot the generation restores, if any. */
  readonly restored?: { readonly checkpointId: number; readonly dir?: string };
  /** The previous generation of the same run: its counts and history carry over. */
  readonly previous?: CoordinatorRow;
  /** See {@link NewCoordinatorRowInput.quietAfterMs}. */
  readonly quietAfterMs?: number;
}): CoordinatorRow {
  const restoredId = input.restored?.checkpointId;
  const nextCheckpointId = Math.max(1, ...input.usedIds.map((id) => id + 1), (restoredId ?? 0) + 1);
  let row = newCoordinatorRow({
    plan: input.plan,
    options: input.options,
    jobId: input.jobId,
    savepointDir: input.savepointDir,
    now: input.now,
    generation: input.generation,
    nextCheckpointId,
    ...(restoredId === undefined ? {} : { latestCompletedId: restoredId, restored: true }),
    ...(input.quietAfterMs === undefined ? {} : { quietAfterMs: input.quietAfterMs }),
  });
  // A restart within the run: it keeps what the run started from and the newest checkpoint it completed.
  const origin = input.previous?.runtime.origin ?? input.restored?.dir;
  const latestCheckpoint = input.previous?.runtime.latestCheckpoint;
  if (origin !== undefined || latestCheckpoint !== undefined) {
    row = { ...row, runtime: { ...row.runtime, ...(origin === undefined ? {} : { origin }), ...(latestCheckpoint === undefined ? {} : { latestCheckpoint }) } };
  }
  const earlier = input.previous?.state;
  if (!earlier) return row;
  return { ...row, state: { ...row.state, counts: { ...earlier.counts, restored: earlier.counts.restored + (restoredId === undefined ? 0 : 1) }, history: earlier.history } };
}

/**
 * Where a restart of the run restores from: the newest checkpoint this run completed, else what the run started from
 * (undefined: empty state). Not the newest in storage, nor in the row's history: either may belong to an earlier run.
 */
export function restartPoint(row: CoordinatorRow | undefined): string | undefined {
  return row?.runtime.latestCheckpoint ?? row?.runtime.origin;
}

/**
 * Deletes the output that the plan's sinks wrote but no checkpoint committed (in-progress files, staged parts of
 * another run): the new generation replays those records. `keepRunId` spares the objects of that run.
 */
export async function removeUncommittedOutput(plan: PhysicalPlan, keepRunId?: string): Promise<void> {
  for (const v of plan.vertices) {
    for (const op of v.operators) {
      if (op.node.spec.kind !== 'sink') continue;
      const connector = op.node.spec.connector as { cleanup?: (uid: string, keepRunId?: string) => Promise<void> };
      await connector.cleanup?.(op.uid, keepRunId);
    }
  }
}

/**
 * How often the operator handlers reread the job row at most, in ms (their view of the generation, the cancel): a
 * generation the row moved past is left within this long. Default of `OperatorHandlerOptions.runRefreshMs`.
 */
export const RUN_REFRESH_MS = 5000;

/**
 * Quiet checkpoints on AWS (lib/core/coordinator/quiet.ts): how long a step's view of the job row may lag behind the
 * row, in ms: the handlers' row refresh and a second for clocks.
 */
export const QUIET_AFTER_MS = RUN_REFRESH_MS + 1000;

/**
 * How often a quiet job is ticked, in ms: its schedule's once a minute, whatever the checkpoint interval (the ticker
 * reads the row's `quiet` attribute and sends one tick instead of a minute's worth).
 */
export const QUIET_TICK_MS = 60_000;

/**
 * How long a new generation waits after fencing the old one before its state is written, in ms. A step of the old
 * generation that began before the fence may run until the function's timeout and then commit its control row;
 * after the state table is cleared that commit would find no claim to conflict with and land in the new
 * generation's state. So the wait covers the functions' timeout, recorded by the coordinator in the deployed plan,
 * plus the handlers' reread interval.
 */
export function settleMsOf(deployment: Pick<DeployedPlan, 'functionTimeoutMs'>): number {
  return (deployment.functionTimeoutMs ?? 0) + RUN_REFRESH_MS + 1000;
}

/**
 * The row of a generation whose state has been written (by `floe start`, or by the coordinator restarting a failed
 * one): laid out for the deployed plan, phase `ready`, so the coordinator's next tick commits the snapshot's pending
 * sink transactions, removes uncommitted output and starts the sources. `fenced` is the row as the fence left it
 * (its history and counts carry over); ids never go back.
 */
export function readyGenerationRow(input: {
  readonly fenced: CoordinatorRow;
  readonly deployment: DeployedPlan;
  readonly generation: number;
  /** When the start began (the fence). */
  readonly startedAt: number;
  readonly now: number;
  /** The run's id: a new one for `floe start`, the same for a restart. */
  readonly jobId: string;
  /** The snapshot restored, if any. */
  readonly from?: { readonly dir: string; readonly manifest: { readonly checkpointId: number } };
  /** The restart strategy's state to keep (a restart); absent for a new run. */
  readonly restarts?: RestartState;
  /** The snapshot the run started from. @default `from`'s directory */
  readonly origin?: string;
  /** The newest checkpoint the run completed (a restart keeps it); absent for a new run. */
  readonly latestCheckpoint?: string;
}): CoordinatorRow {
  const origin = input.origin ?? input.from?.dir;
  const { fenced, deployment, generation, from } = input;
  const { tasks, sourceTasks } = planTasks(deployment);
  const initial = initialCoordinatorState({
    tasks,
    sourceTasks,
    options: deployment.options,
    now: input.now,
    // Ids never go back: each names a checkpoint directory and a Step Functions execution, both of which must be new.
    nextCheckpointId: Math.max(fenced.state.nextCheckpointId, (from?.manifest.checkpointId ?? 0) + 1),
    ...(from ? { latestCompletedId: from.manifest.checkpointId, restored: true } : {}),
    historySize: fenced.state.historySize,
    ...(fenced.state.quietAfterMs === undefined ? {} : { quietAfterMs: fenced.state.quietAfterMs }),
  });
  return {
    job: fenced.job,
    version: fenced.version,
    state: { ...initial, history: fenced.state.history, counts: { ...fenced.state.counts, restored: fenced.state.counts.restored + (from ? 1 : 0) } },
    runtime: {
      jobId: input.jobId,
      generation,
      barrierSeq: 0,
      savepointDir: deployment.savepointDir,
      placements: {},
      deployment,
      start: { phase: StartPhase.Ready, generation, at: input.startedAt, ...(from ? { from: from.dir } : {}), plan: startedPlanOf(deployment) },
      ...(input.restarts ? { restarts: input.restarts } : {}),
      ...(origin === undefined ? {} : { origin }),
      ...(input.latestCheckpoint === undefined ? {} : { latestCheckpoint: input.latestCheckpoint }),
    },
  };
}
