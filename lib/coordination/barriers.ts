import { ErrorCode, FloeError } from '../core/errors.js';
import type { PhysicalPlan } from '../graph/plan.js';
import { COORDINATOR_CHANNEL, ENVELOPE_VERSION, EnvelopeKind, type Envelope } from '../core/envelope.js';
import type { CoordinatorRow } from '../core/coordinator/job-row.js';

/**
 * The barrier envelopes of pending checkpoint `checkpointId`, one per source subtask, shaped as the embedded runner
 * builds them: from `$coordinator:0`, the `seq` and directory allocated in the job row when the checkpoint started.
 * The same row always gives byte-identical envelopes, so a re-send is dropped by the FIFO deduplication id and by
 * the receiver's seq check. A checkpoint that is no longer pending has no barriers to send: the result is empty.
 */
export function barrierEnvelopes(plan: PhysicalPlan, row: CoordinatorRow, checkpointId: number): Envelope[] {
  const pending = row.state.pending.find((p) => p.id === checkpointId);
  if (!pending) return [];
  const placement = row.runtime.placements[String(checkpointId)];
  if (!placement) throw new FloeError(ErrorCode.Storage, `the job row of '${row.job}' has no placement for pending ${pending.kind} ${checkpointId}`);
  const end = pending.termination === 'end' || pending.termination === 'drain';
  const envelopes: Envelope[] = [];
  for (const v of plan.vertices.filter((x) => x.isSource)) {
    for (let i = 0; i < v.parallelism; i++) {
      envelopes.push({
        v: ENVELOPE_VERSION,
        job: plan.job,
        gen: row.runtime.generation,
        from: COORDINATOR_CHANNEL,
        to: { op: v.id, subtask: i },
        seq: placement.seq,
        kind: end ? EnvelopeKind.End : EnvelopeKind.Barrier,
        epoch: checkpointId,
        barrier: {
          checkpointId,
          kind: pending.kind,
          timestamp: pending.triggeredAt,
          ...(pending.termination === 'stop' ? { stop: true } : {}),
          location: placement.dir,
          ...(placement.sharedDir === undefined ? {} : { sharedLocation: placement.sharedDir }),
          ...(pending.committedThrough === undefined ? {} : { committedThrough: pending.committedThrough }),
        },
      });
    }
  }
  return envelopes;
}
