/**
 * Cancelling a job on AWS (Flink's cancel: the job ends CANCELED, without a savepoint). The reducer's `cancel` event
 * is applied to the job row with the usual conditional write: the row's generation is then CANCELED for good —
 * ticks and triggers start nothing, acks are ignored, so no checkpoint completes and no sink output is committed —
 * and the pending checkpoints are aborted. This side then writes what the step's effects ask for that needs no plan:
 * the aborted checkpoints' status items (their watchdog executions end) and `jobStatus = CANCELED` (for the control
 * plane and emulator mode's runner). Operator handlers read the row and drop the generation's messages; the source
 * wake chains end.
 *
 * Repeating a cancel is harmless, and finishes what a first cancel that died part-way left: the status items of
 * finished checkpoints still saying IN_PROGRESS are written from the history, and the status attribute again. A
 * FINISHED job cannot be cancelled.
 */
import { CheckpointStatus } from '../core/coordinator/types.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import { JobStatus, checkpointStatusOf, isCanceled, type CoordinatorRow } from '../core/coordinator/job-row.js';
import type { CoordinatorStore } from '../ports/coordinator-store.js';

/** What {@link cancelJob} did. */
export interface CancelOutcome {
  /** The job row after the cancel. */
  readonly row: CoordinatorRow;
  /** False when the row was already cancelled. */
  readonly changed: boolean;
  /** Checkpoints and savepoints that were pending and are now aborted. */
  readonly aborted: readonly number[];
}

/** Cancels the current generation of `job`'s row; throws BAD_REQUEST when the job already finished. */
export async function cancelJob(store: CoordinatorStore, job: string, now: number): Promise<CancelOutcome> {
  const applied = await store.apply(job, { type: 'cancel', now });
  if (!isCanceled(applied.row)) {
    throw new FloeError(ErrorCode.BadRequest, `job '${job}' is ${applied.row.jobStatus?.status ?? applied.row.state.status}: there is nothing to cancel`);
  }
  const aborted = applied.statusChanges.filter((c) => c.status !== CheckpointStatus.InProgress).map((c) => c.checkpointId);
  for (const change of applied.statusChanges) await store.putCheckpointStatus(job, change);
  if (!applied.written) await finishStatusItems(store, job, applied.row);
  if (applied.row.jobStatus?.status !== JobStatus.Canceled) await store.setJobStatus(job, { status: JobStatus.Canceled, at: now });
  const row = (await store.load(job)) ?? applied.row;
  return { row, changed: applied.written, aborted };
}

/** Writes the final status of every checkpoint in the row's history whose status item still says IN_PROGRESS. */
async function finishStatusItems(store: CoordinatorStore, job: string, row: CoordinatorRow): Promise<void> {
  for (const record of row.state.history) {
    const item = await store.getCheckpointStatus(job, record.id);
    if (item?.status !== CheckpointStatus.InProgress) continue;
    const change = checkpointStatusOf(row, record.id);
    if (change) await store.putCheckpointStatus(job, change);
  }
}
