import type { SourceConnector, SourceSplit } from '../../api/connector.js';
import type { StreamRecord } from '../envelope.js';
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

  /** True once every assigned split is done. */
  isFinished(): boolean {
    return this.splits().every((s) => s.split.done);
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
    if (budget === 0) return 0;
    const states = this.splits();
    const next: SplitState[] = [];
    let count = 0;
    for (const s of states) {
      if (s.split.done || count >= budget) {
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
            t = this.watermarks.timestamp(v);
          } catch (e) {
            throw new UserFunctionError(this.uid, e);
          }
          if (t > maxTimestamp) maxTimestamp = t;
          record = { v, t };
        }
        this.out.emit(record);
      }
      count += result.values.length;
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

  /** The watermark this subtask's splits allow: the smallest over unfinished splits; the maximum once all are done. */
  currentSourceWatermark(): number {
    if (!this.watermarks) return MIN_WATERMARK;
    let wm = MAX_WATERMARK;
    for (const s of this.splits()) {
      if (s.split.done) continue;
      const w = s.maxTimestamp === MIN_WATERMARK ? MIN_WATERMARK : s.maxTimestamp - this.watermarks.outOfOrderness - 1;
      if (w < wm) wm = w;
    }
    return wm;
  }
}
