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

