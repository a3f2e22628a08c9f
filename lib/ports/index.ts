import type { Envelope } from '../core/envelope.js';
import type { StateHandle, SubtaskSnapshot } from '../core/manifest/model.js';

/** The time source; the engine never reads the system clock directly. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** Sends envelopes to the input queues of their receivers (`envelope.to`). */
export interface QueueSender {
  /** Sends envelopes in order per receiving subtask; resolves once they are durably enqueued (or, in memory, accepted). */
  send(envelopes: readonly Envelope[]): Promise<void>;
}

/** A subtask's address: the vertex (chain) it belongs to and its index. */
export interface TaskAddress {
  readonly vertex: string;
  readonly subtask: number;
}

/** A keyed-state entry's address: key group plus the full state key (`uid`, state name, record key). */
export interface StateKey {
  readonly keyGroup: number;
  readonly key: string;
}

/** A registered timer; timers are keyed state, so they move with their key group on rescale. */
export interface Timer {
  readonly uid: string;
  readonly domain: 'event' | 'processing';
  readonly timestamp: number;
  readonly keyGroup: number;
  /** Serialized record key the timer belongs to. */
  readonly recordKey: string;
}

/** The per-subtask control row: input positions, output sequence numbers, alignment and watermarks. Committed with state, fenced by `version`. */
export interface ControlRow {
  /** Bumped on every commit; a commit whose base version is stale is fenced. */
  readonly version: number;
  /** Generation of the run; envelopes of older generations are dropped. */
  readonly gen: number;
  /** Barriers this subtask has passed (the id of the last checkpoint it snapshotted). */
  readonly epoch: number;
  /** Per input channel (`<vertex>:<subtask>` of the sender): last accepted seq, its watermark, a barrier it is held at, whether it ended. */
  readonly inputs: Readonly<Record<string, InputChannelState>>;
  /** Per output channel (`<vertex>:<subtask>` of the receiver): last sent seq. */
  readonly outputs: Readonly<Record<string, number>>;
  /** Envelopes held back during alignment, in arrival order. */
  readonly held: readonly Envelope[];
  /**
   * Envelopes that arrived ahead of a gap in their channel's sequence (a queue that reorders redeliveries), held until
   * the gap fills, by channel and seq. @default none
   */
  readonly ahead?: readonly Envelope[];
  /** Per channel with envelopes in `ahead`: when its current gap opened (ms since the epoch); one open too long cannot fill. */
  readonly gapSince?: Readonly<Record<string, number>>;
  /**
   * Where `held` and `ahead` are kept when they are too large for the control row (a DynamoDB item holds 400 KB): an
   * object in checkpoint storage, written before the commit that references it; `held` and `ahead` are then empty.
   */
  readonly spill?: string;
  /** Watermark last emitted downstream. */
  readonly watermark: number;
  /** Round-robin position for `rebalance` outputs, so a replayed step routes records the same way. */
  readonly roundRobin: number;
  /** When the first barrier of the checkpoint being aligned arrived, for alignment statistics. */
  readonly alignmentStartedAt?: number;
  /** True once the subtask has processed end of input or a stop barrier and will process nothing more. */
  readonly finished: boolean;
  /**
   * Source subtasks driven by wake-up messages (AWS): the number of the last wake a step ran for, committed with that
   * step, so a wake delivered again later (after the queue's deduplication window) is recognised and takes no step.
   */
  readonly wake?: number;
  /** When the step of `wake` ran (ms since the epoch): how a watchdog tells a stalled wake chain. */
  readonly wakeAt?: number;
  /**
   * Records taken in and sent out since the subtask's last barrier (absent: none). Reported with the next barrier's
   * acknowledgement, so the coordinator can tell a checkpoint that captured no change (quiet checkpoints).
   */
  readonly work?: number;
  /** The earliest processing-time timer left after this commit (ms since the epoch); absent when none is registered. */
  readonly timerAt?: number;
  /**
   * The due time of the last timer wake this subtask scheduled (AWS, see {@link TimerWakeScheduler}), committed with
   * the step that scheduled it, after the request was sent: a later step schedules none while this one is still to come
   * and no earlier timer needs one.
   */
  readonly timerWake?: number;
}

/** Position and status of one input channel. */
export interface InputChannelState {
  readonly seq: number;
  readonly watermark: number;
  /** Id of the barrier received on this channel while waiting for the others. */
  readonly blockedAt?: number;
  readonly ended: boolean;
}

/** A synchronous capture of a subtask's keyed state, written out asynchronously. */
export interface StateSnapshotWriter {
  /** Writes the captured state; returns, per operator uid, the handle chain to record, with bytes written and referenced. */
  write(storage: CheckpointStorage, location: SnapshotLocation): Promise<Record<string, WrittenState>>;
}

/** One operator's keyed state as written for one subtask. */
export interface WrittenState {
  readonly handles: StateHandle[];
  /** Bytes this snapshot wrote. */
  readonly bytesWritten: number;
  /** Bytes of every file in the chain. */
  readonly fullSize: number;
}

/**
 * How a snapshot is captured: `incremental` writes what changed since the previous capture to the shared area and
 * chains onto it; `full` starts a new chain there; `canonical` writes everything into the snapshot's own
 * directory (savepoints) and leaves the chain alone.
 */
export type CaptureMode = 'incremental' | 'full' | 'canonical';

/** Builds the key of a keyed-state entry: `<uid>\0<state name>\0<record key>`. */
export function stateEntryKey(uid: string, name: string, recordKey: string): string {
  return `${uid}\u0000${name}\u0000${recordKey}`;
}

/** State name prefix under which timers are kept as keyed entries. */
export const TIMER_STATE_PREFIX = '\u0001timer';

/** The keyed-state entry key of a timer: timers are keyed state, so snapshots and rescaling carry them. */
export function timerEntryKey(timer: Timer): string {
  return stateEntryKey(timer.uid, `${TIMER_STATE_PREFIX}:${timer.domain}:${timer.timestamp}`, timer.recordKey);
}

/** Reads a timer back from its entry key, or undefined when the key is not a timer's. */
export function parseTimerEntryKey(key: string, keyGroup: number): Timer | undefined {
  const { uid, name, recordKey } = parseStateEntryKey(key);
  if (!name.startsWith(TIMER_STATE_PREFIX)) return undefined;
  const [, domain, ts] = name.split(':');
  return { uid, domain: domain as Timer['domain'], timestamp: Number(ts), keyGroup, recordKey };
}

/** Splits a keyed-state entry key into its parts. */
export function parseStateEntryKey(key: string): { uid: string; name: string; recordKey: string } {
  const a = key.indexOf('\u0000');
  const b = key.indexOf('\u0000', a + 1);
  return { uid: key.slice(0, a), name: key.slice(a + 1, b), recordKey: key.slice(b + 1) };
}

/** Where a snapshot's state files go. */
export interface SnapshotLocation {
  /** The snapshot's own directory (holds `_metadata`). */
  readonly dir: string;
  /** Directory for files that later incremental checkpoints may reference; absent for canonical (self-contained) snapshots. */
  readonly sharedDir?: string;
  readonly checkpointId: number;
}

/** State of one subtask: keyed entries, operator state, timers and the control row. */
export interface SubtaskStateStore {
  /** Reads the control row, or undefined for a subtask that has never committed. */
  readControl(): Promise<ControlRow | undefined>;
  /** False for a store that holds everything in memory, so the task step need not gather keys to prefetch. @default true */
  readonly prefetchRequired?: boolean;
  /** Loads every entry of the given record keys (StateKey.key is the record key) so `get` can answer synchronously. */
  prefetch(keys: readonly StateKey[]): Promise<void>;
  /** Reads a keyed entry (prefetched, or held in memory); `key` comes from `stateEntryKey`. */
  get(keyGroup: number, key: string): unknown;
  /** Writes (or with `undefined`, deletes) a keyed entry; applied at the next commit. Values are treated as immutable once written. */
  put(keyGroup: number, key: string, value: unknown): void;
  /** Reads an operator's non-keyed state list. */
  getOperatorState(uid: string): readonly unknown[];
  /** Replaces an operator's non-keyed state list; applied at the next commit. */
  setOperatorState(uid: string, items: readonly unknown[]): void;
  /** Registers a timer (idempotent); timers are keyed state and are snapshotted and rescaled with it. */
  registerTimer(timer: Timer): void;
  /** Deletes a timer (idempotent). */
  deleteTimer(timer: Timer): void;
  /** Removes and returns the timers of `domain` with `timestamp <= upTo`, in timestamp order; the removal commits with the step. */
  popDueTimers(domain: Timer['domain'], upTo: number): Promise<readonly Timer[]>;
  /** The earliest timer of `domain` as of now (this step's writes included), without reading any state; undefined when none. */
  nextTimer(domain: Timer['domain']): number | undefined;
  /** Atomically applies the pending writes together with `control`, whose version must be exactly one above the stored one. */
  commit(control: ControlRow): Promise<void>;
  /** Captures keyed state, timers included, synchronously at the barrier, for the operators `uids`. */
  captureSnapshot(options: { mode: CaptureMode; checkpointId: number; uids: readonly string[]; keyGroups: readonly [number, number] }): StateSnapshotWriter;
  /** Replaces all state with what the given handles hold, keeping only key groups in `keyGroups` ([start, end)). */
  restore(input: RestoreInput): Promise<void>;
}

/** What a subtask restores: per operator uid, keyed state files from every old subtask overlapping its key groups, and its share of operator state. */
export interface RestoreInput {
  readonly storage: CheckpointStorage;
  /** Directory of the manifest the handles are relative to. */
  readonly manifestDir: string;
  readonly keyGroups: readonly [number, number];
  readonly operators: Readonly<Record<string, OperatorRestore>>;
}

/** One operator's share of a snapshot for one new subtask. */
export interface OperatorRestore {
  /** Each overlapping old subtask's handle chain (full file then deltas). */
  readonly keyedState: ReadonlyArray<readonly StateHandle[]>;
  /** The operator-state items this subtask gets. */
  readonly operatorState: readonly unknown[];
}

/** Keyed and operator state for all subtasks of a job. */
export interface StateStore {
  /** The state of one subtask. */
  forSubtask(task: TaskAddress): SubtaskStateStore;
  /** Drops every subtask's state (before a restore). */
  clear(): Promise<void>;
}

/** Blob storage for manifests and state files: a directory on local disk, or S3. Locations are full paths or `s3://` URLs. */
export interface CheckpointStorage {
  /** Writes an object, replacing any existing one. */
  put(location: string, bytes: Uint8Array): Promise<void>;
  /** Writes an object only if none exists (S3 `If-None-Match: *`); throws FloeError MANIFEST_EXISTS otherwise. */
  putIfAbsent(location: string, bytes: Uint8Array): Promise<void>;
  /** Reads an object; throws FloeError NOT_FOUND when it does not exist. */
  get(location: string): Promise<Uint8Array>;
  /** True when the object exists. */
  exists(location: string): Promise<boolean>;
  /** Locations of all objects under a directory prefix, recursively. */
  list(prefix: string): Promise<string[]>;
  /** Deletes objects; missing ones are ignored. */
  delete(locations: readonly string[]): Promise<void>;
}

/** What a subtask acknowledges to the coordinator once its part of a checkpoint is durable. */
export interface CheckpointAck {
  readonly checkpointId: number;
  readonly task: TaskAddress;
  /** Operator uid → this subtask's snapshot of that operator. */
  readonly operators: Readonly<Record<string, SubtaskSnapshot>>;
}

/** How subtasks report to the checkpoint coordinator. */
export interface CoordinatorGateway {
  /** The subtask's state for a checkpoint is durable. */
  acknowledge(ack: CheckpointAck): Promise<void>;
  /** The subtask cannot take part in a checkpoint. */
  decline(checkpointId: number, task: TaskAddress, reason: string): Promise<void>;
  /** A source subtask has read all of its input. */
  sourceFinished(task: TaskAddress): Promise<void>;
  /**
   * The subtask's step failed in a way retrying cannot mend, or on every delivery its input allows: fail the job over.
   * `generation` is the run the step belonged to; a report of another generation (a zombie after a restart) is ignored.
   */
  failTask(task: TaskAddress, reason: string, generation?: number): Promise<void>;
}

/** Commits a sink's pre-committed transaction; idempotent, since restore commits again what the manifest lists. */
export interface SinkCommitter {
  /** The `sink` value of the pending commits this committer handles. */
  readonly sink: string;
  commit(commit: import('../core/manifest/model.js').PendingCommit): Promise<void>;
}

/** A request to step a subtask at a processing time: its earliest processing-time timer is due then. */
export interface TimerWakeRequest {
  readonly task: TaskAddress;
  /** Generation of the run the subtask belongs to; a wake of a generation the job moved past does nothing. */
  readonly gen: number;
  /** When the timer is due (ms since the epoch); may be now or past (a timer registered behind the clock). */
  readonly dueAt: number;
  /** The control-row version of the step that asks: a replay of that step asks again with the same id, a later step with another. */
  readonly id: number;
}

/**
 * Steps a subtask when its earliest processing-time timer is due, where nothing else would (AWS: a subtask steps only
 * when a message reaches its queue). The task step asks before it commits, once per due time; the request must be
 * durable when `schedule` resolves. A host whose idle subtasks step on their own (embedded: every 50 ms) has none.
 */
export interface TimerWakeScheduler {
  schedule(request: TimerWakeRequest): Promise<void>;
}

/** Everything the task step may touch. */
export interface Ports {
  readonly clock: Clock;
  readonly queue: QueueSender;
  readonly state: StateStore;
  readonly storage: CheckpointStorage;
  readonly coordinator: CoordinatorGateway;
  /** Wakes a quiet subtask when a processing-time timer is due. @default none: the host steps idle subtasks itself */
  readonly timerWakes?: TimerWakeScheduler;
}
