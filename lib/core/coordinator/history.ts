import { CheckpointStatus } from './types.js';
import type { CheckpointRecord, PendingCheckpoint, SubtaskAck } from './types.js';

/** How many finished checkpoints the history keeps when the caller does not say. */
export const DEFAULT_HISTORY_SIZE = 20;

/** Bytes a checkpoint wrote (`stateSize`) and referenced (`fullSize`), summed over every operator of every ack. */
export function snapshotSizes(acks: Readonly<Record<string, SubtaskAck>>): { stateSize: number; fullSize: number } {
  let stateSize = 0;
  let fullSize = 0;
  for (const ack of Object.values(acks)) {
    for (const snapshot of Object.values(ack.operators)) {
      stateSize += snapshot.stats.stateSize;
      fullSize += snapshot.stats.fullSize;
    }
  }
  return { stateSize, fullSize };
}

function baseRecord(checkpoint: PendingCheckpoint, total: number, finishedAt: number) {
  return {
    id: checkpoint.id,
    kind: checkpoint.kind,
    triggeredAt: checkpoint.triggeredAt,
    finishedAt,
    ...(checkpoint.termination === undefined ? {} : { termination: checkpoint.termination }),
    ...(checkpoint.requestId === undefined ? {} : { requestId: checkpoint.requestId }),
    acknowledged: Object.keys(checkpoint.acks).length,
    total,
    ...snapshotSizes(checkpoint.acks),
    acks: withoutOperatorState(checkpoint.acks),
  };
}

/**
 * The acks as history keeps them: without operator state (source splits, sink writer state), which the manifest holds
 * and nothing reads from history; on AWS history lives in the job row, an item of at most 400 KB.
 */
function withoutOperatorState(acks: PendingCheckpoint['acks']): PendingCheckpoint['acks'] {
  return Object.fromEntries(
    Object.entries(acks).map(([task, ack]) => [task, { ...ack, operators: Object.fromEntries(Object.entries(ack.operators).map(([uid, op]) => [uid, { ...op, operatorState: [] }])) }]),
  );
}

/** The history record of a checkpoint whose manifest was written to `path`. */
export function completedRecord(checkpoint: PendingCheckpoint, total: number, finishedAt: number, path: string): CheckpointRecord {
  return { ...baseRecord(checkpoint, total, finishedAt), status: CheckpointStatus.Completed, externalPath: path };
}

/** The history record of a checkpoint that was aborted for `reason`. */
export function failedRecord(checkpoint: PendingCheckpoint, total: number, finishedAt: number, reason: string): CheckpointRecord {
  return { ...baseRecord(checkpoint, total, finishedAt), status: CheckpointStatus.Failed, failureReason: reason };
}

/** Puts `record` first and drops the oldest records beyond `size`. */
export function addToHistory(history: readonly CheckpointRecord[], record: CheckpointRecord, size: number): readonly CheckpointRecord[] {
  return [record, ...history].slice(0, Math.max(0, size));
}
