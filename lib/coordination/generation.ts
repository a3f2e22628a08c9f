/**
 * A job row for a plan: the shape of the deployed plan the row records, and a new generation's row. Every host
 * starts a generation through here (the embedded runner, emulator mode, `floe start`), so a row is laid out the same
 * way whatever runs it.
 */
import { initialCoordinatorState } from '../core/coordinator/coordinator.js';
import { planTasks, type CoordinatorRow, type DeployedPlan } from '../core/coordinator/job-row.js';
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
  readonly restored?: { readonly checkpointId: number };
  /** The previous generation of the same run: its counts and history carry over. */
  readonly previous?: CoordinatorRow;
}): CoordinatorRow {
  const restoredId = input.restored?.checkpointId;
  const nextCheckpointId = Math.max(1, ...input.usedIds.map((id) => id + 1), (restoredId ?? 0) + 1);
  const row = newCoordinatorRow({
    plan: input.plan,
    options: input.options,
    jobId: input.jobId,
    savepointDir: input.savepointDir,
    now: input.now,
    generation: input.generation,
    nextCheckpointId,
    ...(restoredId === undefined ? {} : { latestCompletedId: restoredId, restored: true }),
  });
  const earlier = input.previous?.state;
  if (!earlier) return row;
  return { ...row, state: { ...row.state, counts: { ...earlier.counts, restored: earlier.counts.restored + (restoredId === undefined ? 0 : 1) }, history: earlier.history } };
}

/**
 * Where a restart of the run restores from: the newest checkpoint the row's history records as completed, else
 * what the run started from (undefined: empty state). Not the newest in storage, which may belong to another run.
 */
export function restartPoint(row: CoordinatorRow | undefined, startedFrom: string | undefined): string | undefined {
  const latest = row?.state.history.find((h) => h.kind === 'checkpoint' && h.status === 'COMPLETED' && h.externalPath !== undefined);
  return latest?.externalPath ?? startedFrom;
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
