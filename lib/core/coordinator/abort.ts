import { serveQueue } from './checkpoint-starter.js';
import { addToHistory, failedRecord } from './history.js';
import { andThen, step, unchanged } from './step.js';
import type { CoordinatorEffect, CoordinatorState, CoordinatorStep, PendingCheckpoint } from './types.js';

/**
 * Why a pending checkpoint is aborted. Only a `failure` (declined, expired, manifest not written) counts
 * against the tolerable-failure budget; `subsumed` (a newer checkpoint completed) and `suspended` (the
 * job finished or is failing over) are recorded as failed in the history but do not.
 */
export type AbortCause = 'failure' | 'subsumed' | 'suspended';

function failJobReason(state: CoordinatorState, checkpoint: PendingCheckpoint, reason: string): string | undefined {
  switch (checkpoint.termination) {
    case 'end':
      return `final checkpoint ${checkpoint.id} of bounded input failed, so the job cannot finish: ${reason}`;
    case 'stop':
    case 'drain':
      return `stop-with-savepoint ${checkpoint.id} (${checkpoint.termination}) failed, failing over to resume from the latest checkpoint: ${reason}`;
    case undefined:
      break;
  }
  const { tolerableFailures } = state.options;
  if (checkpoint.kind === 'checkpoint' && state.consecutiveFailures > tolerableFailures) {
    return `exceeded checkpoint tolerable failure threshold: ${state.consecutiveFailures} consecutive failed checkpoints, ${tolerableFailures} tolerated; last: ${reason}`;
  }
  return undefined;
}

/** Removes a pending checkpoint, records it as failed, and, for a failure, charges the budget and fails the job when it is exhausted or the checkpoint was terminating. */
export function abortCheckpoint(state: CoordinatorState, checkpointId: number, reason: string, now: number, cause: AbortCause): CoordinatorStep {
  const checkpoint = state.pending.find((p) => p.id === checkpointId);
  if (checkpoint === undefined) return unchanged(state);
  // Savepoints are recorded but, as in Flink, only checkpoints count against the budget.
  const charged = cause === 'failure' && checkpoint.kind === 'checkpoint';
  const next: CoordinatorState = {
    ...state,
    pending: state.pending.filter((p) => p.id !== checkpointId),
    counts: { ...state.counts, failed: state.counts.failed + 1 },
    consecutiveFailures: state.consecutiveFailures + (charged ? 1 : 0),
    history: addToHistory(state.history, failedRecord(checkpoint, state.tasks.length, now, reason), state.historySize),
  };
  const aborted: CoordinatorEffect = {
    type: 'checkpointAborted',
    checkpointId,
    reason,
    ...(checkpoint.requestId === undefined ? {} : { requestId: checkpoint.requestId }),
    ...(checkpoint.termination === undefined ? {} : { termination: checkpoint.termination }),
  };
  const aborting = step(next, [aborted]);
  if (cause !== 'failure') return aborting;
  const fatal = failJobReason(next, checkpoint, reason);
  return andThen(aborting, (s) => (fatal === undefined ? serveQueue(s, now) : failJob(s, fatal, now)));
}

/** Aborts every pending checkpoint without charging the budget, oldest first. */
export function abortAllPending(state: CoordinatorState, reason: string, now: number): CoordinatorStep {
  return state.pending.reduce<CoordinatorStep>((acc, p) => andThen(acc, (s) => abortCheckpoint(s, p.id, reason, now, 'suspended')), unchanged(state));
}

/** Marks the job FAILING, aborts what is still pending (it cannot complete across a failover, as in Flink), and asks the runner to fail over. */
export function failJob(state: CoordinatorState, reason: string, now: number): CoordinatorStep {
  const failing = abortAllPending({ ...state, status: 'FAILING', failure: reason }, 'checkpoint coordinator suspended: the job is failing over', now);
  return andThen(failing, (s) => step(s, [{ type: 'failJob', reason }]));
}
