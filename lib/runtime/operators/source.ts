import type { SourceConnector, SourceSplit, SourceSubtaskContext } from '../../api/connector.js';
import type { BarrierInfo, StreamRecord } from '../../core/envelope.js';
import type { PendingCommit } from '../../core/manifest/model.js';
import { Operator } from './operator.js';
import { MAX_WATERMARK, MIN_WATERMARK } from '../watermark.js';
import { UserFunctionError } from '../../core/errors.js';

/** A split as a source subtask checkpoints it: the connector's split plus the largest timestamp read from it. */
interface SplitState {
  readonly split: SourceSplit;
  readonly maxTimestamp: number;
}

/**
 * Reads a source's splits in chunks. Its operator state is the list of splits assigned to the subtask, so
 * positions are checkpointed and splits are redistributed on rescale.
 */
export class SourceOperator extends Operator {
  private startedAt = 0;
  private emitted = 0;
  /** The last rate quantum (see read()); 1 before the first read. */
  private quantum = 1;
  /** When this executor next asks the connector for new splits (0: at the first read). */
  private nextDiscoveryAt = 0;
  /** The highest checkpoint the connector heard had completed, in this executor. */
  private notifiedThrough = 0;
  /** Whether the last read left values in a split for the next one (a live source that received more). */
  private pending = false;

  constructor(
    uid: string,
    private readonly connector: SourceConnector<unknown>,
    private readonly watermarks: { timestamp: (v: unknown) => number; outOfOrderness: number } | undefined,
  ) {
    super(uid);
  }

  processRecord(): void {
    throw new Error(`source '${this.uid}' does not take input records`);
  }

  private splits(): SplitState[] {
    return this.rt.store.getOperatorState(this.uid) as SplitState[];
  }

  /** Creates this subtask's splits on a fresh start (no restored state): split i goes to subtask i mod parallelism. */
  async assignInitialSplits(): Promise<void> {
    const all = await this.connector.createSplits(this.rt.parallelism);
    const mine = all.filter((_, i) => i % this.rt.parallelism === this.rt.subtask);
    this.rt.store.setOperatorState(this.uid, mine.map((split) => ({ split, maxTimestamp: MIN_WATERMARK })));
  }

  private context(): SourceSubtaskContext {
    return { now: () => this.rt.clock.now(), subtask: this.rt.subtask, parallelism: this.rt.parallelism };
  }

  /** The first step after a restore: what the restored snapshot covers is durable, so an acknowledging source acknowledges it. */
  async restored(): Promise<void> {
    await this.notifyComplete(Infinity);
  }

  private async notifyComplete(checkpointId: number): Promise<void> {
    const notify = this.connector.notifyCheckpointComplete?.bind(this.connector);
    if (!notify || checkpointId <= this.notifiedThrough) return;
    const next: SplitState[] = [];
    for (const s of this.splits()) next.push({ ...s, split: await notify(s.split, checkpointId, this.context()) });
    this.rt.store.setOperatorState(this.uid, next);
    if (Number.isFinite(checkpointId)) this.notifiedThrough = checkpointId;
  }

  /**
   * At a barrier: first acknowledges what the checkpoints the barrier says completed cover, then lets the connector
   * mark what this snapshot covers. Both change only the splits, which the snapshot then records.
   */
  override async prepareSnapshot(barrier: BarrierInfo): Promise<PendingCommit[]> {
    if (barrier.committedThrough !== undefined) await this.notifyComplete(barrier.committedThrough);
    const snapshot = this.connector.snapshotSplit?.bind(this.connector);
    if (snapshot) this.rt.store.setOperatorState(this.uid, this.splits().map((s) => ({ ...s, split: snapshot(s.split, barrier.checkpointId) })));
    return [];
  }

  /** Whether the last read left values in a split for the next read, so the subtask should not idle. */
  hasPending(): boolean {
    return this.pending;
  }

  /** Adds the splits the connector discovered; they are read from the next step on (see SourceConnector.discoverSplits). */
  private async discover(now: number): Promise<ReadonlySet<string>> {
    const discover = this.connector.discoverSplits?.bind(this.connector);
    if (!discover || now < this.nextDiscoveryAt) return new Set();
    this.nextDiscoveryAt = now + (this.connector.discoveryIntervalMs ?? 10_000);
    const states = this.splits();
    const found = await discover(states.map((s) => s.split), this.context());
    const known = new Set(states.map((s) => s.split.id));
    const added = found.filter((s) => !known.has(s.id));
    if (added.length > 0) this.rt.store.setOperatorState(this.uid, [...states, ...added.map((split) => ({ split, maxTimestamp: MIN_WATERMARK }))]);
    return new Set(added.map((s) => s.id));
  }

  /**
   * True once every assigned split of a bounded source is done. An unbounded source never finishes: its splits may
   * all be done for a while (a Kinesis shard read to its end before its children are discovered) without its input
   * having ended.
   */
  isFinished(): boolean {
    return this.connector.bounded && this.splits().every((s) => s.split.done);
  }

  /**
   * Reads up to `max` records across the subtask's splits, honouring the rate limit; returns how many were emitted.
   *
   * A rate-limited read asks for nothing or for exactly one quantum (`rateQuantum`: 100 ms of the subtask's rate, at
   * most `max`), never for "whatever the clock allows": a replayed step (the same input after a crash before its
   * commit, in a fresh executor whose clock started anew) then reads either nothing — and the next step re-reads
   * the same records under the same sequence numbers — or the same records, so receivers' sequence dedup stays exact.
   */
  async read(max: number): Promise<number> {
    const now = this.rt.clock.now();
    if (this.startedAt === 0) this.startedAt = now;
    let budget = max;
    if (this.connector.ratePerSecond !== undefined) {
      this.quantum = this.rateQuantum(max);
      // A source that was held off (backpressure, a paused job) does not burst to catch up: it is owed a second of its rate at most.
      const perSubtask = this.connector.ratePerSecond / this.rt.parallelism;
      const owed = this.allowed(now) - Math.ceil(perSubtask);
      if (owed > 0) this.startedAt += (owed / perSubtask) * 1000;
      budget = this.allowed(now) >= this.quantum ? this.quantum : 0;
    }
    this.pending = false;
    const discovered = await this.discover(now);
    if (budget === 0) return 0;
    const states = this.splits();
    const next: SplitState[] = [];
    let count = 0;
    for (const s of states) {
      if (s.split.done || count >= budget || discovered.has(s.split.id)) {
        next.push(s);
        continue;
      }
      const result = await this.connector.read(s.split, budget - count, { now: () => this.rt.clock.now() });
      let maxTimestamp = s.maxTimestamp;
      for (const v of result.values) {
        let record: StreamRecord = { v };
        if (this.watermarks) {
          let t: number;
          try {
            t = this.watermarks.timestamp(this.connector.recordValue ? this.connector.recordValue(v) : v);
          } catch (e) {
            throw new UserFunctionError(this.uid, e);
          }
          if (t > maxTimestamp) maxTimestamp = t;
          record = { v, t };
        }
        this.out.emit(record);
      }
      count += result.values.length;
      if (result.pending) this.pending = true;
      next.push({ split: result.split, maxTimestamp });
    }
    this.rt.store.setOperatorState(this.uid, next);
    this.emitted += count;
    return count;
  }

  /**
   * When a rate-limited source may emit its next record (ms since the epoch; the past when it may now), so a caller
   * can wait instead of asking again at once; undefined without a rate limit or before the first read.
   */
  nextReadyAt(): number | undefined {
    if (this.connector.ratePerSecond === undefined || this.startedAt === 0) return undefined;
    const perSubtask = this.connector.ratePerSecond / this.rt.parallelism;
    // The inverse of allowed(): the first time at which one more quantum is allowed.
    return this.startedAt + Math.ceil(((this.emitted + this.quantum - perSubtask / 10) / perSubtask) * 1000) + 1;
  }

  /** Records a rate-limited read takes at once: 100 ms of this subtask's share of the rate, at least 1, at most `max`. */
  private rateQuantum(max: number): number {
    const perSubtask = this.connector.ratePerSecond! / this.rt.parallelism;
    return Math.max(1, Math.min(max, Math.ceil(perSubtask / 10)));
  }

  /** Records the rate allows by `now` beyond those emitted (a burst of 100 ms is allowed at the start). */
  private allowed(now: number): number {
    const perSubtask = this.connector.ratePerSecond! / this.rt.parallelism;
    return Math.floor(((now - this.startedAt) / 1000) * perSubtask + perSubtask / 10) - this.emitted;
  }

  /**
   * The watermark this subtask's splits allow: the smallest over unfinished splits; the maximum once all are done
   * (or when it has none). An unbounded source whose splits are all done holds the highest watermark they reached
   * instead: more splits may come (a finished shard's children), and their records must not be late. Splits for which
   * the connector's `holdsWatermark` is false (a repairing listing beside notifications) do not count.
   */
  currentSourceWatermark(): number {
    if (!this.watermarks) return MIN_WATERMARK;
    let wm = MAX_WATERMARK;
    let reached = MIN_WATERMARK;
    let open = false;
    const splits = this.splits().filter((s) => this.connector.holdsWatermark?.(s.split) ?? true);
    for (const s of splits) {
      const w = s.maxTimestamp === MIN_WATERMARK ? MIN_WATERMARK : s.maxTimestamp - this.watermarks.outOfOrderness - 1;
      if (s.split.done) {
        if (w > reached) reached = w;
        continue;
      }
      open = true;
      if (w < wm) wm = w;
    }
    return !open && !this.connector.bounded && splits.length > 0 ? reached : wm;
  }
}
