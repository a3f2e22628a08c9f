import { FloeJobErrorId, type FloeJobProblem } from './errors.js';

/**
 * How periodic checkpoints are driven on AWS: by ticks on the coordinator-tasks queue, each letting the coordinator's
 * trigger decider (which honours interval, min pause and max concurrent) start a checkpoint. EventBridge Scheduler's
 * rate expressions count whole minutes (1 at least), so an interval of whole minutes is a schedule ticking once a
 * minute, the decider letting a checkpoint start once the interval has passed (a tick a minute also starts a new
 * generation's sources and watches their wake chains within a minute, however long the interval); an interval below a minute is a schedule of 1 minute starting the ticker, an Express
 * state machine whose Wait loop sends a tick every interval (whole seconds: Wait counts seconds). With periodic
 * checkpoints off (interval 0) a tick still comes every minute: ticks also start a new generation's sources (so a
 * deployed job starts by itself) and run the watchdog of stalled source wake chains. A quiet job (periodic
 * checkpoints paused, lib/core/coordinator/quiet.ts) is ticked once a minute whatever the interval: the ticker reads
 * the job row's `quiet` attribute first and then sends one tick (infra/coordinator-definition.ts).
 */
export interface CheckpointSchedule {
  /** Minutes between the schedule's executions. */
  readonly rateMinutes: number;
  /** Seconds between ticks inside one execution; 0 when each execution ticks once. */
  readonly tickSeconds: number;
  /** Ticks per execution: `60 / tickSeconds` below a minute, else 1. */
  readonly ticksPerExecution: number;
}

/** Sub-minute intervals that divide a minute evenly, so ticks stay evenly spaced across executions. */
export const SUB_MINUTE_INTERVALS_S = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30] as const;

/** Maps `checkpoint.interval` (ms; 0 = off, ticking once a minute) onto a schedule, pushing a problem when AWS cannot drive it. */
export function planCheckpointSchedule(intervalMs: number, problems: FloeJobProblem[]): CheckpointSchedule | undefined {
  if (intervalMs === 0) return { rateMinutes: 1, tickSeconds: 0, ticksPerExecution: 1 };
  if (intervalMs < 1000) {
    problems.push({
      id: FloeJobErrorId.CheckpointIntervalBelowMinimum,
      message: `checkpoint.interval ${intervalMs}ms is below the 1s minimum on AWS: the state machine's Wait state counts whole seconds (use 0 to turn periodic checkpoints off)`,
    });
    return undefined;
  }
  if (intervalMs < 60_000) {
    const seconds = intervalMs / 1000;
    if (!(SUB_MINUTE_INTERVALS_S as readonly number[]).includes(seconds)) {
      problems.push({
        id: FloeJobErrorId.CheckpointIntervalNotSchedulable,
        message:
          `checkpoint.interval ${intervalMs}ms cannot be scheduled on AWS: below 1 minute it must divide a minute evenly ` +
          `(${SUB_MINUTE_INTERVALS_S.map((s) => `${s}s`).join(', ')}), since EventBridge Scheduler starts one execution a minute and its Wait loop ticks every interval`,
      });
      return undefined;
    }
    return { rateMinutes: 1, tickSeconds: seconds, ticksPerExecution: 60 / seconds };
  }
  if (intervalMs % 60_000 !== 0) {
    problems.push({
      id: FloeJobErrorId.CheckpointIntervalNotSchedulable,
      message: `checkpoint.interval ${intervalMs}ms cannot be scheduled on AWS: from 1 minute up it must be a whole number of minutes (EventBridge Scheduler rate expressions count minutes)`,
    });
    return undefined;
  }
  return { rateMinutes: 1, tickSeconds: 0, ticksPerExecution: 1 };
}
