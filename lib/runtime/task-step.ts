import type { ControlRow, InputChannelState, Ports, SubtaskStateStore, TaskAddress, CaptureMode } from '../ports/index.js';
import type { PhysicalPlan, Vertex, VertexEdge } from '../graph/plan.js';
import type { PendingCommit, SubtaskSnapshot } from '../core/manifest/model.js';
import type { CheckpointMode } from '../core/options.js';
import { inputChannels } from '../graph/plan.js';
import { keyGroupOf, keyGroupRange, serializeKey, subtaskForKeyGroup } from '../graph/key-groups.js';
import { channelKey, COORDINATOR_CHANNEL, ENVELOPE_VERSION, EnvelopeKind, type BarrierInfo, type Envelope, type StreamRecord } from '../core/envelope.js';
import { MAX_WATERMARK, MIN_WATERMARK } from './watermark.js';
import { createOperator } from './operators/factory.js';
import type { Operator, Output } from './operators/operator.js';
import { SourceOperator } from './operators/source.js';
import { guard } from './operators/stateless.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import { readSpill, spillIfLarge, type ReadSpill } from './held-spill.js';

/** What a subtask needs to know about the run it belongs to. */
export interface SubtaskConfig {
  readonly plan: PhysicalPlan;
  readonly vertex: Vertex;
  readonly subtask: number;
  /** Generation of the run; envelopes of other generations are dropped. */
  readonly gen: number;
  readonly runId: string;
  /** Where sinks may stage what they write until their checkpoint completes (see SinkWriterContext.stagingDir). */
  readonly stagingDir?: string;
  readonly mode: CheckpointMode;
  readonly incremental: boolean;
  /** Uids of the operators whose state was restored from a snapshot (a restored source keeps its splits; a new one creates them). */
  readonly restoredUids: ReadonlySet<string>;
  /** Records packed into one data envelope at most. @default 512 */
  readonly maxRecordsPerEnvelope?: number;
  /**
   * Encoded bytes (JSON, UTF-8) of the records packed into one data envelope at most, besides the count limit: a
   * transport that bills per byte and caps message size (SQS: 64 KiB billing chunks, 1 MiB messages, 10 messages per
   * Lambda batch) packs many small records or few large ones. Measuring costs one JSON encoding per record.
   * @default no limit: records are packed by count only
   */
  readonly maxEnvelopeBytes?: number;
  /** Records a source reads per step at most. @default 2048 */
  readonly sourceChunkSize?: number;
  /**
   * Envelopes a subtask holds that arrived ahead of a gap in their channel's sequence numbers, waiting for the missing
   * one (a queue that hands redeliveries back out of order). One more fails the step with CHANNEL_GAP, naming the
   * channel. 0 suits a transport that never reorders (in-process channels): any gap is then a failure at once.
   * @default 64
   */
  readonly maxEnvelopesAhead?: number;
  /**
   * How long a gap may stay open (from the arrival of the first envelope after it) before the step fails with
   * CHANNEL_GAP: longer than the input queue takes to deliver a message handed back (its visibility timeout).
   * @default 900000 (15 minutes)
   */
  readonly gapTimeoutMs?: number;
  /**
   * Encoded bytes of held-back envelopes (alignment and gaps) the control row carries itself; more go to an object
   * under `spillDir`. A DynamoDB control row is one item of at most 400 KB.
   * @default no limit
   */
  readonly maxInlineHeldBytes?: number;
  /** Directory in checkpoint storage for held-back envelopes over `maxInlineHeldBytes`. @default none: exceeding the limit fails the step */
  readonly spillDir?: string;
}

/** Default of {@link SubtaskConfig.maxEnvelopesAhead}. */
export const DEFAULT_MAX_ENVELOPES_AHEAD = 64;

/** Default of {@link SubtaskConfig.gapTimeoutMs}. */
export const DEFAULT_GAP_TIMEOUT_MS = 15 * 60_000;

const COORDINATOR_KEY = channelKey(COORDINATOR_CHANNEL);

/** What one step did. */
export interface StepResult {
  /** Snapshots still being written; each acknowledges (or declines) its checkpoint when done. */
  readonly pendingSnapshots: readonly Promise<void>[];
  /** The subtask passed end of input or a stop barrier and will do nothing more. */
  readonly finished: boolean;
  readonly recordsIn: number;
  readonly recordsOut: number;
  /** Envelopes dropped as duplicates or of another generation. */
  readonly dropped: number;
  /** A source read nothing this step (it may sleep before the next). */
  readonly idle: boolean;
  /** A rate-limited source: when it may read its next record (ms since the epoch), so its driver can wait until then. */
  readonly sourceReadyAt?: number;
  /** For a step run for a wake (`StepOptions.wake`): whether that wake was new, the last one a step ran for, or older. */
  readonly wake?: WakeOutcome;
  /**
   * For a step asked for by a timer wake (`StepOptions.timerWake`): `step` (it ran: a timer was due, or a wake had to
   * be scheduled again), `nothing-due` (no timer due and the next one's wake is on its way: nothing ran, nothing was
   * committed), `stale` (the subtask's row belongs to another generation: nothing ran).
   */
  readonly timer?: TimerWakeOutcome;
  /** The timer wake this step scheduled (its due time), if it scheduled one. */
  readonly timerWakeScheduled?: number;
  /** Records taken in and sent out since the subtask's last barrier, after this step (`ControlRow.work`). */
  readonly workSinceBarrier: number;
}

/** What became of a timer wake a step was asked to run for; see {@link StepResult.timer}. */
export type TimerWakeOutcome = 'step' | 'nothing-due' | 'stale';

/**
 * What became of a wake-up message a step was asked to run for: `new` (newer than any before: the step ran and
 * recorded it), `repeat` (the very wake the last recorded step ran for, delivered again), `stale` (older than that).
 * A wake that is not new takes no step unless envelopes came with it.
 */
export type WakeOutcome = 'new' | 'repeat' | 'stale';

/** Options of one step. */
export interface StepOptions {
  /** The number of the wake-up message this step runs for (source subtasks on AWS), fenced by the control row. */
  readonly wake?: number;
  /**
   * Whether a source subtask reads its source in this step. `false` holds the source off (backpressure: its
   * downstream queues are backed up): the step still accepts its envelopes (barriers, so checkpoints go on), advances
   * processing time, commits and records its wake, but reads no record. Such a step is safe to replay: it sends no
   * records, and the source's position is unchanged, so the next step that reads takes the same records under the
   * same sequence numbers. Its outputs (a forwarded barrier, a timer's records) are a prefix of what a reading attempt
   * of the same step sends, so a read-less step replayed as a reading one only sends more.
   * @default true
   */
  readonly read?: boolean;
  /**
   * The due time of the timer wake this step runs for (non-source subtasks on AWS, see `Ports.timerWakes`). Without
   * envelopes, the step runs only when a processing-time timer is due (it fires it and commits) or the next timer's
   * wake must be scheduled again; otherwise it reads the control row and does nothing. With envelopes it is an ordinary
   * step that also counts the wake as arrived.
   */
  readonly timerWake?: number;
}

interface MutableControl {
  wake?: number;
  wakeAt?: number;
  work?: number;
  timerAt?: number;
  timerWake?: number;
  version: number;
  gen: number;
  epoch: number;
  inputs: Record<string, { seq: number; watermark: number; blockedAt?: number; ended: boolean }>;
  outputs: Record<string, number>;
  held: Envelope[];
  ahead: Envelope[];
  gapSince: Record<string, number>;
  spill?: string;
  watermark: number;
  roundRobin: number;
  alignmentStartedAt?: number;
  finished: boolean;
}

function initialControl(channels: readonly string[], gen: number): ControlRow {
  const inputs: Record<string, InputChannelState> = {};
  for (const c of channels) inputs[c] = { seq: 0, watermark: MIN_WATERMARK, ended: false };
  return { version: 0, gen, epoch: 0, inputs, outputs: {}, held: [], watermark: MIN_WATERMARK, roundRobin: 0, finished: false };
}

/** How wake `n` of generation `gen` relates to the last wake a committed step recorded (none recorded: it is new). */
function wakeOutcome(stored: ControlRow | undefined, gen: number, n: number): WakeOutcome {
  if (stored === undefined || stored.gen !== gen || stored.wake === undefined || n > stored.wake) return 'new';
  return n === stored.wake ? 'repeat' : 'stale';
}

function thaw(c: ControlRow): MutableControl {
  const inputs: MutableControl['inputs'] = {};
  for (const [k, v] of Object.entries(c.inputs)) inputs[k] = { ...v };
  return { ...c, inputs, outputs: { ...c.outputs }, held: [...c.held], ahead: [...(c.ahead ?? [])], gapSince: { ...c.gapSince } };
}

/**
 * Runs one subtask over one batch of envelopes through the ports: the same code for an embedded subtask and for a
 * Lambda invocation. Protocol per envelope: drop other generations and already-seen sequence numbers; hold back a
 * channel that delivered barrier n until every channel has (exactly-once); at alignment, snapshot state, pre-commit
 * sinks, forward the barrier and acknowledge asynchronously. Outputs are sent before the control row commits, with
 * deterministic sequence numbers, so a step replayed after a crash re-sends envelopes the receiver drops.
 *
 * The executor keeps operator instances and their caches between steps; everything the next step needs is in the
 * state store.
 */
export class SubtaskExecutor {
  readonly address: TaskAddress;
  private readonly operators: Operator[];
  private readonly source: SourceOperator | undefined;
  private readonly store: SubtaskStateStore;
  private readonly channels: string[];
  private readonly keyGroups: [number, number];
  private readonly maxRecords: number;
  private readonly maxBytes: number | undefined;
  /** Encoded bytes of each open buffer's records, when envelopes are packed by bytes. */
  private readonly bufferBytes = new Map<string, number>();
  private readonly chunk: number;
  private opened = false;
  private reportedSourceFinished = false;

  // Per-step working state.
  private control!: MutableControl;
  private buffers = new Map<string, StreamRecord[]>();
  private outbox: Envelope[] = [];
  private pendingSnapshots: Promise<void>[] = [];
  /** Resolves true once this step's commit succeeded, false if the step failed: a snapshot is acknowledged only then. */
  private committed: Promise<boolean> = Promise.resolve(true);
  private recordsIn = 0;
  private recordsOut = 0;
  /** Of `recordsIn + recordsOut`, what is already counted in the control row's `work`. */
  private workCounted = 0;
  private dropped = 0;

  constructor(
    private readonly config: SubtaskConfig,
    private readonly ports: Ports,
  ) {
    const { vertex, subtask, plan } = config;
    this.address = { vertex: vertex.id, subtask };
    this.store = ports.state.forSubtask(this.address);
    this.operators = vertex.operators.map(createOperator);
    this.source = this.operators[0] instanceof SourceOperator ? this.operators[0] : undefined;
    this.channels = inputChannels(plan, vertex, subtask);
    this.keyGroups = keyGroupRange(subtask, vertex.parallelism, plan.maxParallelism);
    this.maxRecords = config.maxRecordsPerEnvelope ?? 512;
    this.maxBytes = config.maxEnvelopeBytes;
    this.chunk = config.sourceChunkSize ?? 2048;
  }

  private async open(): Promise<void> {
    const { vertex, subtask, plan, runId, stagingDir } = this.config;
    const outputs = this.operators.map<Output>((_, i) => {
      const next = this.operators[i + 1];
      return next ? { emit: (r) => next.processRecord(r) } : { emit: (r) => this.emitDownstream(r) };
    });
    for (let i = 0; i < this.operators.length; i++) {
      const op = this.operators[i]!;
      await op.open(
        {
          uid: op.uid,
          subtask,
          parallelism: vertex.parallelism,
          maxParallelism: plan.maxParallelism,
          store: this.store,
          clock: this.ports.clock,
          runId,
          ...(stagingDir !== undefined ? { stagingDir } : {}),
          currentWatermark: () => this.control.watermark,
        },
        outputs[i]!,
      );
    }
    this.opened = true;
  }

  /**
   * Processes a batch of envelopes (possibly none: a source then reads, timers may fire) and commits. A step for a
   * wake that is not newer than the last recorded one, with no envelopes, does nothing and commits nothing.
   */
  async step(envelopes: readonly Envelope[], options: StepOptions = {}): Promise<StepResult> {
    if (!this.opened) await this.open();
    const stored = await this.store.readControl();
    const fresh = stored === undefined;
    const wake = options.wake === undefined ? undefined : wakeOutcome(stored, this.config.gen, options.wake);
    if (wake !== undefined && wake !== 'new' && envelopes.length === 0) {
      this.pendingSnapshots = [];
      this.committed = Promise.resolve(true);
      return { pendingSnapshots: [], finished: stored?.finished ?? false, recordsIn: 0, recordsOut: 0, dropped: 0, idle: true, wake, workSinceBarrier: stored?.work ?? 0 };
    }
    const timer = options.timerWake === undefined || wake !== undefined || envelopes.length > 0 ? undefined : this.timerWakeOutcome(stored, options.timerWake);
    if (timer !== undefined && timer !== 'step') {
      this.pendingSnapshots = [];
      this.committed = Promise.resolve(true);
      return { pendingSnapshots: [], finished: stored?.finished ?? false, recordsIn: 0, recordsOut: 0, dropped: 0, idle: true, timer, workSinceBarrier: stored?.work ?? 0 };
    }
    this.control = thaw(stored ?? initialControl(this.channels, this.config.gen));
    // The wake this step runs for has arrived: it no longer counts as one to come, even if it came early.
    if (options.timerWake !== undefined && this.control.timerWake === options.timerWake) delete this.control.timerWake;
    const spilled = await this.loadSpill();
    this.buffers.clear();
    this.bufferBytes.clear();
    this.outbox = [];
    this.pendingSnapshots = [];
    this.recordsIn = 0;
    this.recordsOut = 0;
    this.workCounted = 0;
    this.dropped = 0;
    if (fresh && this.source) {
      if (this.config.restoredUids.has(this.source.uid)) await this.source.restored();
      else await this.source.assignInitialSplits();
    }

    let settleCommitted!: (committed: boolean) => void;
    this.committed = new Promise<boolean>((resolve) => (settleCommitted = resolve));
    if (wake === 'new') {
      this.control.wake = options.wake;
      this.control.wakeAt = this.ports.clock.now();
    }
    try {
      const result = await this.run(envelopes, options.read ?? true, spilled);
      settleCommitted(true);
      return { ...result, ...(wake === undefined ? {} : { wake }), ...(timer === undefined ? {} : { timer }) };
    } catch (e) {
      // A step that did not commit will be replayed and snapshot again; its snapshots must not be acknowledged.
      settleCommitted(false);
      throw e;
    }
  }

  /**
   * Whether a timer wake without envelopes needs a step: a processing-time timer is due, or the next one has no wake
   * on its way (the one scheduled was this very wake, come early, or none was). A subtask with no control row yet (a
   * generation's first wake, restored timers) steps. Reads nothing beyond the control row the step already read.
   */
  private timerWakeOutcome(stored: ControlRow | undefined, due: number): TimerWakeOutcome {
    if (stored === undefined) return 'step';
    if (stored.gen !== this.config.gen) return 'stale';
    if (stored.finished) return 'nothing-due';
    const next = this.store.nextTimer('processing');
    const now = this.ports.clock.now();
    if (next === undefined) return 'nothing-due';
    if (next <= now) return 'step';
    const pending = stored.timerWake;
    return pending !== undefined && pending !== due && pending > now && pending <= next ? 'nothing-due' : 'step';
  }

  /**
   * Records the earliest processing-time timer left in the control row and, when a scheduler is given, asks for a
   * wake at that time unless one is on its way for it or earlier. Runs after the step's outputs are sent and before
   * its commit: the row says a wake was scheduled only if the request was made, and a step that dies before committing
   * asks again when it is replayed (same `id`: the control version it commits), so a wake is never lost. A wake for a
   * time that passed without it arriving (a data step fired the timer first) counts as arrived.
   */
  private async scheduleTimerWake(c: MutableControl): Promise<number | undefined> {
    const next = c.finished ? undefined : this.store.nextTimer('processing');
    if (next === undefined) delete c.timerAt;
    else c.timerAt = next;
    const scheduler = this.ports.timerWakes;
    if (scheduler === undefined || next === undefined) return undefined;
    const pending = c.timerWake;
    if (pending !== undefined && pending > this.ports.clock.now() && pending <= next) return undefined;
    await scheduler.schedule({ task: this.address, gen: c.gen, dueAt: next, id: c.version });
    c.timerWake = next;
    return next;
  }

  /** Brings back the held-back envelopes a spilled control row keeps in storage. */
  private async loadSpill(): Promise<ReadSpill | undefined> {
    const path = this.control.spill;
    if (path === undefined) return undefined;
    const { envelopes, spill } = await readSpill(this.ports.storage, path, this.name());
    this.control.held = [...envelopes.held];
    this.control.ahead = [...envelopes.ahead];
    return spill;
  }

  private name(): string {
    return `${this.address.vertex}:${this.address.subtask}`;
  }

  /** The control row to commit: held-back envelopes stay in it while small, else go to a spill object written first. */
  private async rowToCommit(c: MutableControl, spilled: ReadSpill | undefined): Promise<ControlRow> {
    const { ahead, held, spill: _spill, gapSince: open, ...fields } = c;
    const rest = { ...fields, ...(Object.keys(open).length > 0 ? { gapSince: open } : {}) };
    const { maxInlineHeldBytes: maxInlineBytes, spillDir: dir } = this.config;
    const owner = { subtask: this.name(), fileStem: `${this.address.vertex}-${this.address.subtask}-v${c.version}` };
    const spill = await spillIfLarge(this.ports.storage, { held, ahead }, { maxInlineBytes, dir }, owner, spilled);
    return spill === undefined ? { ...rest, held, ...(ahead.length > 0 ? { ahead } : {}) } : { ...rest, held: [], spill };
  }

  private async run(envelopes: readonly Envelope[], read: boolean, spilled: ReadSpill | undefined): Promise<StepResult> {
    await this.prefetchKeys(envelopes);
    for (const env of envelopes) await this.accept(env);
    // Before anything is sent: an attempt that fails here must send nothing, or a replay whose gap did fill would
    // send other contents under the same seqs.
    this.checkGap();

    let idle = true;
    if (!this.control.finished) {
      const now = this.ports.clock.now();
      for (const op of this.operators) await op.advanceProcessingTime(now);
      if (this.source && read) idle = await this.readSource();
    }
    for (const op of this.operators) await op.flush();
    this.sealAll();
    if (this.outbox.length > 0) await this.ports.queue.send(this.outbox);
    const c = this.control;
    this.countWork();
    c.version += 1;
    const timerWakeScheduled = await this.scheduleTimerWake(c);
    const row = await this.rowToCommit(c, spilled);
    await this.store.commit(row);
    // The spill the previous commit referenced is garbage now; one left behind by a crash here only costs storage.
    if (spilled !== undefined && spilled.path !== row.spill) await this.ports.storage.delete([spilled.path]).catch(() => undefined);
    const readyAt = this.source && !c.finished ? this.source.nextReadyAt() : undefined;
    return {
      pendingSnapshots: this.pendingSnapshots,
      finished: c.finished,
      recordsIn: this.recordsIn,
      recordsOut: this.recordsOut,
      dropped: this.dropped,
      idle: idle && envelopes.length === 0,
      ...(readyAt === undefined ? {} : { sourceReadyAt: readyAt }),
      ...(timerWakeScheduled === undefined ? {} : { timerWakeScheduled }),
      workSinceBarrier: c.work ?? 0,
    };
  }

  /**
   * Adds the records this step took in and sent out since the last call to the control row's `work` (what the next
   * barrier's acknowledgement reports): at a barrier, and before the commit. From the step's own counters, so the
   * per-record path does nothing more.
   */
  private countWork(): void {
    const n = this.recordsIn + this.recordsOut - this.workCounted;
    if (n > 0) this.control.work = (this.control.work ?? 0) + n;
    this.workCounted += n;
  }

  /**
   * Reads the state of every key the batch's data envelopes carry in one go: a remote store then makes one round of
   * requests per step, not one per envelope (an envelope held back for alignment only makes its keys read early).
   */
  private async prefetchKeys(envelopes: readonly Envelope[]): Promise<void> {
    if (this.store.prefetchRequired === false) return;
    const keys: { keyGroup: number; key: string }[] = [];
    for (const env of envelopes) {
      if (env.kind !== EnvelopeKind.Data || env.gen !== this.control.gen) continue;
      for (const r of env.records ?? []) if (r.k !== undefined) keys.push({ keyGroup: r.g!, key: r.k });
    }
    if (keys.length > 0) await this.store.prefetch(keys);
  }

  private async readSource(): Promise<boolean> {
    const source = this.source!;
    const n = await source.read(this.chunk);
    this.recordsIn += n;
    await this.advanceWatermark(source.currentSourceWatermark());
    if (source.isFinished() && !this.reportedSourceFinished) {
      this.reportedSourceFinished = true;
      await this.ports.coordinator.sourceFinished(this.address);
    }
    return n === 0 && !source.hasPending();
  }

  /**
   * Checks an envelope against its channel's sequence: another generation's or a seq already seen is dropped; one
   * from the future (a seq past the next) waits in `ahead` until the gap before it fills; the next one is taken —
   * held back if its channel is blocked at a barrier, else handled — and then whatever waited right behind it.
   *
   * Channels are gap-free: a high-water mark alone would skip the missing envelope's records for good when a queue
   * hands a redelivery back after newer ones (or loses one). Barriers the coordinator injects into sources are the
   * exception: it may allocate a barrier it never sends (a checkpoint aborted before its barriers went out), and
   * skipping a barrier loses no record, so the coordinator's channel keeps a high-water mark.
   */
  private async accept(env: Envelope): Promise<void> {
    const c = this.control;
    if (env.gen !== c.gen) {
      this.dropped++;
      return;
    }
    const key = channelKey(env.from);
    const input = c.inputs[key];
    // A sender that is not an input channel (misrouted, forged) cannot open a gap in one: dropped.
    if (!input || env.seq <= input.seq) {
      this.dropped++;
      return;
    }
    if (env.seq > input.seq + 1 && key !== COORDINATOR_KEY) {
      this.holdAhead(env, key, input.seq);
      return;
    }
    input.seq = env.seq;
    if (!c.finished) {
      if (input.blockedAt !== undefined && this.config.mode === 'exactly-once') c.held.push(env);
      else await this.handle(env, input);
    }
    const i = c.ahead.findIndex((e) => e.seq === input.seq + 1 && channelKey(e.from) === key);
    if (i >= 0) {
      const [next] = c.ahead.splice(i, 1);
      // The gap before `next` filled; what still waits on the channel waits behind a gap that opens now.
      if (c.ahead.some((e) => channelKey(e.from) === key)) c.gapSince[key] = this.ports.clock.now();
      else delete c.gapSince[key];
      await this.accept(next!);
    }
  }

  /** Keeps an envelope that arrived before one it follows; fails once more wait than a reordering queue explains. */
  private holdAhead(env: Envelope, key: string, lastSeq: number): void {
    const c = this.control;
    if (c.ahead.some((e) => e.seq === env.seq && channelKey(e.from) === key)) {
      this.dropped++;
      return;
    }
    c.ahead.push(env);
    c.gapSince[key] ??= this.ports.clock.now();
    const max = this.config.maxEnvelopesAhead ?? DEFAULT_MAX_ENVELOPES_AHEAD;
    if (c.ahead.filter((e) => channelKey(e.from) === key).length > max) throw this.gapError(key, lastSeq, `more than ${max} envelopes arrived after it`);
  }

  /** Fails the step when a channel ended behind a gap, or a channel's gap has been open longer than a redelivery takes. */
  private checkGap(): void {
    const c = this.control;
    for (const key of Object.keys(c.gapSince)) if (!c.ahead.some((e) => channelKey(e.from) === key)) delete c.gapSince[key];
    if (c.ahead.length === 0) return;
    // Nothing follows the end of a channel: an envelope waiting behind a gap in an ended channel was lost or forged.
    const afterEnd = c.ahead.find((e) => c.inputs[channelKey(e.from)]?.ended === true);
    if (afterEnd !== undefined) {
      const key = channelKey(afterEnd.from);
      throw this.gapError(key, c.inputs[key]!.seq, `the channel ended at envelope ${c.inputs[key]!.seq}`);
    }
    const timeout = this.config.gapTimeoutMs ?? DEFAULT_GAP_TIMEOUT_MS;
    const now = this.ports.clock.now();
    for (const [key, since] of Object.entries(c.gapSince)) {
      const open = now - since;
      if (open > timeout) throw this.gapError(key, c.inputs[key]!.seq, `it has been missing for ${open}ms (limit ${timeout}ms)`);
    }
  }

  private gapError(key: string, lastSeq: number, why: string): FloeError {
    const waiting = this.control.ahead.filter((e) => channelKey(e.from) === key).map((e) => e.seq).sort((a, b) => a - b);
    return new FloeError(
      ErrorCode.ChannelGap,
      `channel ${key} → ${this.name()} has a gap that cannot fill: envelope ${lastSeq + 1} never arrived and ${why} (seq ${waiting.join(', ')}); ` +
        'it was lost, dead-lettered or forged, and skipping it would lose its records',
    );
  }

  private async handle(env: Envelope, input: MutableControl['inputs'][string]): Promise<void> {
    switch (env.kind) {
      case EnvelopeKind.Data: {
        const records = env.records ?? [];
        this.recordsIn += records.length;
        const head = this.operators[0]!;
        if (records.length > 0 && records[0]!.k !== undefined && this.store.prefetchRequired !== false) {
          await this.store.prefetch(records.map((r) => ({ keyGroup: r.g!, key: r.k! })));
        }
        for (const r of records) head.processRecord(r);
        return;
      }
      case EnvelopeKind.Watermark:
        if ((env.watermark ?? MIN_WATERMARK) > input.watermark) input.watermark = env.watermark!;
        await this.advanceWatermark(this.inputWatermark());
        return;
      case EnvelopeKind.Barrier:
      case EnvelopeKind.End:
        await this.onBarrier(env, input);
        return;
    }
  }

  private inputWatermark(): number {
    let wm = MAX_WATERMARK;
    for (const i of Object.values(this.control.inputs)) {
      const w = i.ended ? MAX_WATERMARK : i.watermark;
      if (w < wm) wm = w;
    }
    return wm;
  }

  /** Moves the subtask's watermark forward: each chained operator fires its timers in turn, then downstream hears of it. */
  private async advanceWatermark(watermark: number): Promise<void> {
    if (watermark <= this.control.watermark) return;
    this.control.watermark = watermark;
    for (const op of this.operators) await op.advanceWatermark(watermark);
    this.broadcast((to, seq) => ({ ...this.header(to, seq), kind: EnvelopeKind.Watermark, watermark }));
  }

  private async onBarrier(env: Envelope, input: MutableControl['inputs'][string]): Promise<void> {
    const barrier = env.barrier!;
    const c = this.control;
    const aligning = Object.values(c.inputs).find((i) => i.blockedAt !== undefined)?.blockedAt;
    // Older than the epoch, or than the barrier being aligned (its checkpoint was abandoned upstream): ignore it, as
    // Flink does. Blocking its channel at the older id would hold back that channel's newer barrier for ever.
    if (barrier.checkpointId <= c.epoch || (aligning !== undefined && barrier.checkpointId < aligning)) return;
    if (aligning !== undefined && barrier.checkpointId > aligning) {
      // A newer barrier overtook an alignment that can no longer finish: abandon the older checkpoint.
      await this.ports.coordinator.decline(aligning, this.address, `subsumed by barrier ${barrier.checkpointId} during alignment`);
      await this.releaseHeld();
    }
    input.blockedAt = barrier.checkpointId;
    if (env.kind === EnvelopeKind.End) input.ended = true;
    c.alignmentStartedAt ??= this.ports.clock.now();
    if (Object.values(c.inputs).every((i) => i.blockedAt === barrier.checkpointId)) {
      await this.completeBarrier(barrier, env.kind === EnvelopeKind.End);
    }
  }

  private async completeBarrier(barrier: BarrierInfo, endOfInput: boolean): Promise<void> {
    const c = this.control;
    const clock = this.ports.clock;
    const alignedAt = clock.now();
    const alignmentMs = Math.max(0, alignedAt - (c.alignmentStartedAt ?? alignedAt));
    const startDelayMs = Math.max(0, (c.alignmentStartedAt ?? alignedAt) - barrier.timestamp);
    if (endOfInput) {
      await this.advanceWatermark(MAX_WATERMARK);
      for (const op of this.operators) await op.endInput();
    }
    const commits: Record<string, PendingCommit[]> = {};
    for (const op of this.operators) commits[op.uid] = await op.prepareSnapshot(barrier);
    this.sealAll();
    const uids = this.operators.map((o) => o.uid);
    const mode: CaptureMode = barrier.kind === 'savepoint' ? 'canonical' : this.config.incremental ? 'incremental' : 'full';
    const writer = this.store.captureSnapshot({ mode, checkpointId: barrier.checkpointId, uids, keyGroups: this.keyGroups });
    const operatorState: Record<string, readonly unknown[]> = {};
    for (const uid of uids) operatorState[uid] = this.store.getOperatorState(uid);
    const syncMs = clock.now() - alignedAt;
    this.countWork();
    const records = c.work ?? 0;
    delete c.work;

    const kind = endOfInput ? EnvelopeKind.End : EnvelopeKind.Barrier;
    this.broadcast((to, seq) => ({ ...this.header(to, seq), kind, barrier }));
    c.epoch = barrier.checkpointId;
    for (const i of Object.values(c.inputs)) delete i.blockedAt;
    delete c.alignmentStartedAt;
    if (endOfInput || barrier.stop) c.finished = true;

    const asyncStart = clock.now();
    const location = { dir: barrier.location, sharedDir: barrier.sharedLocation, checkpointId: barrier.checkpointId };
    const committed = this.committed;
    this.pendingSnapshots.push(
      writer.write(this.ports.storage, location).then(
        async (written) => {
          const asyncMs = clock.now() - asyncStart;
          if (!(await committed)) return;
          const operators: Record<string, SubtaskSnapshot> = {};
          for (const uid of uids) {
            const w = written[uid]!;
            operators[uid] = {
              subtask: this.address.subtask,
              keyGroups: [this.keyGroups[0], this.keyGroups[1]],
              keyedState: w.handles,
              operatorState: [...operatorState[uid]!],
              pendingCommits: commits[uid]!,
              stats: { ackTimestamp: clock.now(), alignmentMs, syncMs, asyncMs, startDelayMs, stateSize: w.bytesWritten, fullSize: w.fullSize, records },
            };
          }
          await this.ports.coordinator.acknowledge({ checkpointId: barrier.checkpointId, task: this.address, operators });
        },
        async (e: unknown) => {
          if (await committed) await this.ports.coordinator.decline(barrier.checkpointId, this.address, `snapshot write failed: ${(e as Error).message}`);
        },
      ),
    );
    if (!c.finished) await this.releaseHeld();
  }

  /** Handles envelopes held back during alignment, re-holding those whose channel is blocked again. */
  private async releaseHeld(): Promise<void> {
    const c = this.control;
    for (const i of Object.values(c.inputs)) delete i.blockedAt;
    delete c.alignmentStartedAt;
    const held = c.held;
    c.held = [];
    for (const env of held) {
      const input = c.inputs[channelKey(env.from)]!;
      if (c.finished) return;
      if (input.blockedAt !== undefined && this.config.mode === 'exactly-once') c.held.push(env);
      else await this.handle(env, input);
    }
  }

  private header(to: { op: string; subtask: number }, seq: number) {
    return { v: ENVELOPE_VERSION, job: this.config.plan.job, gen: this.config.gen, from: { op: this.address.vertex, subtask: this.address.subtask }, to, seq, epoch: this.control.epoch } as const;
  }

  private nextSeq(target: string): number {
    const seq = (this.control.outputs[target] ?? 0) + 1;
    this.control.outputs[target] = seq;
    return seq;
  }

  /** Seals buffered records, then sends one envelope to every downstream subtask. */
  private broadcast(make: (to: { op: string; subtask: number }, seq: number) => Envelope): void {
    this.sealAll();
    for (const edge of this.config.vertex.outputs) {
      const target = this.config.plan.vertices.find((v) => v.id === edge.to)!;
      const subtasks = edge.partitioning === 'forward' ? [this.address.subtask] : Array.from({ length: target.parallelism }, (_, i) => i);
      for (const s of subtasks) {
        const key = `${edge.to}:${s}`;
        this.outbox.push(make({ op: edge.to, subtask: s }, this.nextSeq(key)));
      }
    }
  }

  private emitDownstream(r: StreamRecord): void {
    for (const edge of this.config.vertex.outputs) this.route(edge, r);
  }

  private route(edge: VertexEdge, r: StreamRecord): void {
    const target = this.targetParallelism(edge.to);
    let subtask: number;
    let record = r;
    if (edge.partitioning === 'hash') {
      const k = serializeKey(guard(edge.to, () => edge.key!(r.v)));
      const g = keyGroupOf(k, this.config.plan.maxParallelism);
      subtask = subtaskForKeyGroup(g, target, this.config.plan.maxParallelism);
      record = r.t === undefined ? { v: r.v, k, g } : { v: r.v, t: r.t, k, g };
    } else if (edge.partitioning === 'forward') {
      subtask = this.address.subtask;
    } else {
      subtask = this.control.roundRobin++ % target;
    }
    const key = `${edge.to}:${subtask}`;
    let buf = this.buffers.get(key);
    if (this.maxBytes !== undefined) {
      // Sizes are a function of the records, so a replayed step seals the same envelopes with the same seqs.
      let json: string;
      try {
        json = JSON.stringify(record);
      } catch (cause) {
        // A BigInt, a cycle, a throwing toJSON: records cross queues as JSON, so say which edge could not carry it.
        throw new FloeError(
          ErrorCode.UserFunction,
          `a record vertex '${this.address.vertex}' sends to '${edge.to}' cannot be encoded as JSON (records must be JSON values): ${(cause as Error).message}`,
          { cause },
        );
      }
      const size = Buffer.byteLength(json, 'utf8') + 1;
      let bytes = this.bufferBytes.get(key) ?? 0;
      if (buf && buf.length > 0 && bytes + size > this.maxBytes) {
        this.seal(key, buf);
        buf = undefined;
        bytes = 0;
      }
      this.bufferBytes.set(key, bytes + size);
    }
    if (!buf) this.buffers.set(key, (buf = []));
    buf.push(record);
    this.recordsOut++;
    if (buf.length >= this.maxRecords) this.seal(key, buf);
  }

  private targetParallelismCache = new Map<string, number>();
  private targetParallelism(vertex: string): number {
    let p = this.targetParallelismCache.get(vertex);
    if (p === undefined) this.targetParallelismCache.set(vertex, (p = this.config.plan.vertices.find((v) => v.id === vertex)!.parallelism));
    return p;
  }

  private seal(key: string, records: StreamRecord[]): void {
    const sep = key.lastIndexOf(':');
    const to = { op: key.slice(0, sep), subtask: Number(key.slice(sep + 1)) };
    this.outbox.push({ ...this.header(to, this.nextSeq(key)), kind: EnvelopeKind.Data, records });
    this.buffers.delete(key);
    this.bufferBytes.delete(key);
  }

  private sealAll(): void {
    for (const [key, buf] of [...this.buffers.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) if (buf.length > 0) this.seal(key, buf);
  }
}
