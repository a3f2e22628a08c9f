/** Envelope kinds: records, barriers, watermarks, and end of input (a final barrier after which nothing follows). */
export const EnvelopeKind = { Data: 'data', Barrier: 'barrier', Watermark: 'watermark', End: 'end' } as const;
export type EnvelopeKind = (typeof EnvelopeKind)[keyof typeof EnvelopeKind];

/** The envelope format version. */
export const ENVELOPE_VERSION = 1;

/** One end of a channel: a vertex (operator chain, named by its head's uid) and a subtask index. */
export interface ChannelEnd {
  readonly op: string;
  readonly subtask: number;
}

/** A record in flight: value, optional event timestamp, and for keyed exchanges the serialized key and its key group. */
export interface StreamRecord {
  readonly v: unknown;
  readonly t?: number;
  readonly k?: string;
  readonly g?: number;
}

/** What a barrier asks of the subtasks it passes. */
export interface BarrierInfo {
  readonly checkpointId: number;
  readonly kind: 'checkpoint' | 'savepoint';
  readonly timestamp: number;
  /** After this barrier, sources stop reading: stop-with-savepoint. */
  readonly stop?: boolean;
  /** Directory the snapshot is written to: `chk-<n>` for checkpoints, the savepoint's own directory for savepoints. */
  readonly location: string;
  /** Directory for state files shared between incremental checkpoints; absent for savepoints (canonical, self-contained). */
  readonly sharedLocation?: string;
  /**
   * The newest completed checkpoint when this barrier was triggered: its manifest exists, so every transaction a sink
   * pre-committed for it (or carried into it) is committed, now or on restore. Sinks forget carried transactions up
   * to this id and carry the rest into this snapshot. Absent: none completed yet.
   */
  readonly committedThrough?: number;
}

/** The unit that travels on a channel; many records are packed into one data envelope. */
export interface Envelope {
  readonly v: typeof ENVELOPE_VERSION;
  readonly job: string;
  readonly gen: number;
  readonly from: ChannelEnd;
  readonly to: ChannelEnd;
  /** Per-channel sequence number, starting at 1 in each generation; receivers drop anything at or below the last one seen. */
  readonly seq: number;
  readonly kind: EnvelopeKind;
  /** The sender's epoch when it sent this envelope. */
  readonly epoch: number;
  readonly records?: readonly StreamRecord[];
  readonly watermark?: number;
  /** Set on `barrier` and `end` envelopes. */
  readonly barrier?: BarrierInfo;
}

/** The sending end the coordinator uses for barriers it injects into sources. */
export const COORDINATOR_CHANNEL: ChannelEnd = { op: '$coordinator', subtask: 0 };

/** The key of a channel in a control row: `<vertex>:<subtask>`. */
export function channelKey(end: ChannelEnd): string {
  return `${end.op}:${end.subtask}`;
}
