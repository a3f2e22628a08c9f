/**
 * What the operator handler reports per batch, per step and per checkpoint acknowledgement, as plain data, so the
 * Lambda can publish metrics without lib/ depending on a metrics library. The coordinator effects that an
 * operator's acks and source reports carry out (the last ack completes a checkpoint) are reported through the same
 * observer. Emulator mode and tests may leave it out.
 */
import type { AckResult } from '../../core/coordinator/ack-tracker.js';
import type { CoordinatorObservation } from '../../coordination/observer.js';

/** One thing the operator handler did. */
export type OperatorObservation =
  | CoordinatorObservation
  /**
   * A subtask's task step committed. `messages` are the SQS messages it took (dead-lettered ones excluded),
   * `recordsIn` the records it read (from envelopes, or from its source), `recordsOut` the records it sent to other
   * vertices, `dropped` the envelopes it dropped as duplicates or of another generation, `barriers` the checkpoint
   * barriers it aligned and snapshotted, `ackFailures` the acknowledgements of those snapshots that failed.
   */
  | {
      readonly type: 'step';
      readonly subtask: number;
      readonly generation: number;
      readonly messages: number;
      readonly recordsIn: number;
      readonly recordsOut: number;
      readonly dropped: number;
      readonly barriers: number;
      readonly ackFailures: number;
      readonly durationMs: number;
    }
  /** A subtask's step failed; its `messages` come back. */
  | { readonly type: 'stepFailed'; readonly subtask: number; readonly messages: number; readonly code?: string; readonly durationMs: number }
  /** A malformed message went to the vertex's dead-letter queue with its reason. */
  | { readonly type: 'deadLettered'; readonly subtask: number; readonly messageId: string; readonly code: string }
  /** A snapshot's acknowledgement reached the job row (`result` is Flink's TaskAcknowledgeResult), or was `dropped` because its step did not commit. */
  | { readonly type: 'ack'; readonly subtask: number; readonly checkpointId: number; readonly result: AckResult | 'dropped' }
  /** A subtask declined a checkpoint. */
  | { readonly type: 'decline'; readonly subtask: number; readonly checkpointId: number }
  /** A whole SQS batch was handled: `failed` messages are reported in `batchItemFailures`. */
  | { readonly type: 'batch'; readonly messages: number; readonly failed: number };

/** Receives operator observations; must be quick, and is not awaited. */
export type OperatorObserver = (observation: OperatorObservation) => void;
