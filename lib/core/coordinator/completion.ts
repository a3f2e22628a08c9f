import { abortAllPending, abortCheckpoint } from './abort.js';
import { serveQueue } from './checkpoint-starter.js';
import { addToHistory, completedRecord } from './history.js';
import { andThen, step, unchanged } from './step.js';
import { quietAfterCompletion } from './quiet.js';
import type { CoordinatorEffect, CoordinatorState, CoordinatorStep, PendingCheckpoint } from './types.js';

/** True for a pending checkpoint that a newer completed checkpoint makes useless: an older, plain checkpoint whose manifest was not yet requested. */
function isSubsumedBy(completedId: number, p: PendingCheckpoint): boolean {
  return p.id < completedId && p.kind === 'checkpoint' && p.termination === undefined && !p.finalizing;
}

/** Completes a finalizing checkpoint whose manifest was written to `path`: history, counts, subsumption, and the end of the job for a terminating one. */
export function completeCheckpoint(state: CoordinatorState, checkpointId: number, path: string, now: number): CoordinatorStep {
  const checkpoint = state.pending.find((p) => p.id === checkpointId);
  if (checkpoint === undefined || !checkpoint.finalizing) return unchanged(state);
  const isCheckpoint = checkpoint.kind === 'checkpoint';
  const { quiet: _quiet, ...rest } = state;
  const quiet = quietAfterCompletion(state, checkpoint, now);
  const next: CoordinatorState = {
    ...rest,
    ...(quiet === undefined ? {} : { quiet }),
    pending: state.pending.filter((p) => p.id !== checkpointId),
    counts: { ...state.counts, completed: state.counts.completed + 1 },
    consecutiveFailures: 0,
    lastCompletedAt: now,
    // Savepoints are not used for recovery, so they never move the pointer; max() keeps it monotonic.
    ...(isCheckpoint ? { latestCompletedId: Math.max(checkpointId, state.latestCompletedId ?? 0) } : {}),
    history: addToHistory(state.history, completedRecord(checkpoint, state.tasks.length, now, path), state.historySize),
  };
  const completed: CoordinatorEffect = {
    type: 'checkpointCompleted',
    checkpointId,
    path,
    kind: checkpoint.kind,
    // An intermediate savepoint commits nothing: its sinks carry what they pre-committed into the next checkpoint.
    commits: isCheckpoint || checkpoint.termination !== undefined,
    ...(checkpoint.requestId === undefined ? {} : { requestId: checkpoint.requestId }),
    ...(checkpoint.termination === undefined ? {} : { termination: checkpoint.termination }),
  };
  let result = step(next, [completed]);
  // Like Flink, a savepoint subsumes nothing unless it is synchronous (it ends the job).
  if (isCheckpoint || checkpoint.termination !== undefined) {
    for (const older of next.pending.filter((p) => isSubsumedBy(checkpointId, p))) {
      result = andThen(result, (s) => abortCheckpoint(s, older.id, `subsumed by checkpoint ${checkpointId}`, now, 'subsumed'));
    }
  }
  const termination = checkpoint.termination;
  if (termination === undefined) return andThen(result, (s) => serveQueue(s, now));
  result = andThen(result, (s) => abortAllPending(s, `the job finished with ${checkpoint.kind} ${checkpointId}`, now));
  return andThen(result, (s) => step({ ...s, status: 'FINISHED' }, [{ type: 'jobFinished', checkpointId, termination }]));
}
