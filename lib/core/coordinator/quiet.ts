/**
 * Quiet checkpoints: no periodic checkpoint while nothing changed since the last one.
 *
 * Every subtask counts the records it took in and sent out since its last barrier and reports the count with its
 * acknowledgement (`SubtaskStats.records`). A completed checkpoint whose every acknowledgement says 0 means the whole
 * job did nothing between its previous barrier and this one: the job goes quiet (`since` = that completion). Periodic
 * checkpoints go on until a checkpoint *triggered* `quietAfterMs` after `since` completes with no work either; then
 * the quiet is confirmed and periodic checkpoints stop. A checkpoint with any work ends the quiet.
 *
 * What resumes them: a subtask whose step did work since its last barrier while its view of the job row shows the
 * quiet reports `activity` (once), which ends the quiet, and the same event lets a checkpoint start at once. Why no
 * work is left uncommitted: a step refreshes its view of the row at least every `quietAfterMs` (the hosts' row
 * refresh plus a margin). Work after the barrier of the confirming checkpoint happens after its trigger, which is
 * `quietAfterMs` after `since`, so the step doing it saw a row read after `since`: it saw the quiet and reports.
 * Work before that barrier is in the confirming checkpoint, which completed.
 *
 *     chk k: 0 work ──▶ quiet(since) ── chk j (triggered ≥ since + quietAfterMs): 0 work ──▶ confirmed: no periodic trigger
 *     any chk with work, or `activity` ──▶ not quiet
 */
import type { CoordinatorState, PendingCheckpoint, QuietState } from './types.js';

/** True when every acknowledgement of `checkpoint` reports no work since its subtask's previous barrier. */
export function checkpointDidNoWork(checkpoint: PendingCheckpoint): boolean {
  return Object.values(checkpoint.acks).every((ack) => Object.values(ack.operators).every((o) => o.stats.records === 0));
}

/** The quiet state after `checkpoint` completed at `now`; unchanged when quiet checkpoints are off. */
export function quietAfterCompletion(state: CoordinatorState, checkpoint: PendingCheckpoint, now: number): QuietState | undefined {
  const after = state.quietAfterMs;
  if (after === undefined) return undefined;
  if (!checkpointDidNoWork(checkpoint)) return undefined;
  const quiet = state.quiet;
  if (quiet === undefined) return { since: now, confirmed: false };
  if (quiet.confirmed || checkpoint.triggeredAt < quiet.since + after) return quiet;
  return { since: quiet.since, confirmed: true };
}

/** `state` without its quiet. */
export function endQuiet(state: CoordinatorState): CoordinatorState {
  if (state.quiet === undefined) return state;
  const { quiet: _quiet, ...rest } = state;
  return rest;
}
