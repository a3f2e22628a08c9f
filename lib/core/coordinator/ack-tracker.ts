import type { CoordinatorState, PendingCheckpoint, SubtaskAck } from './types.js';

/** What became of an acknowledgement or decline, Flink's `TaskAcknowledgeResult`. */
export type AckResult = 'accepted' | 'duplicate' | 'unknown' | 'discarded';

/** The outcome of recording one ack. */
export type AckOutcome =
  | { readonly result: 'accepted'; readonly checkpoint: PendingCheckpoint; readonly fullyAcknowledged: boolean }
  | { readonly result: Exclude<AckResult, 'accepted'> };

/** Finds a pending checkpoint by id. */
export function findPending(state: CoordinatorState, checkpointId: number): PendingCheckpoint | undefined {
  return state.pending.find((p) => p.id === checkpointId);
}

/**
 * Classifies a message for a checkpoint that is not pending. Ids are allocated monotonically and every
 * allocated id is pending until it completes or is aborted, so an id below `nextCheckpointId` names a
 * checkpoint that already finished ('discarded': a late message); any other id was never triggered ('unknown').
 */
export function classifyNotPending(state: CoordinatorState, checkpointId: number): 'unknown' | 'discarded' {
  return checkpointId < state.nextCheckpointId || checkpointId <= (state.latestCompletedId ?? 0) ? 'discarded' : 'unknown';
}

/** Records a task's ack on a pending checkpoint; rejects tasks outside the job, repeats, and acks for checkpoints that are not pending. */
export function recordAck(state: CoordinatorState, checkpointId: number, ack: SubtaskAck): AckOutcome {
  const pending = findPending(state, checkpointId);
  if (pending === undefined) return { result: classifyNotPending(state, checkpointId) };
  if (!state.tasks.includes(ack.task)) return { result: 'unknown' };
  if (Object.hasOwn(pending.acks, ack.task)) return { result: 'duplicate' };
  const checkpoint: PendingCheckpoint = { ...pending, acks: { ...pending.acks, [ack.task]: ack } };
  return { result: 'accepted', checkpoint, fullyAcknowledged: state.tasks.every((t) => Object.hasOwn(checkpoint.acks, t)) };
}

