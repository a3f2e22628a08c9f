import type { StreamRecord } from '../../core/envelope.js';
import type { Timer } from '../../ports/index.js';
import type { WindowFunction } from '../../api/job.js';
import { assignWindows, type TimeWindow, type WindowAssigner } from '../../api/windows.js';
import { KeyedOperator } from './keyed.js';
import { guard } from './stateless.js';
import { FloeError, ErrorCode } from '../../core/errors.js';

const windowName = (w: TimeWindow) => `w:${w.start}:${w.end}`;

/**
 * Event-time windows per key with allowed lateness (Flink's WindowOperator with EventTimeTrigger).
 * A window fires when the watermark passes its end; a late record within the allowed lateness updates the window
 * and fires it again; a record later than that is dropped and counted. Window state is cleared once the watermark
 * passes `end + allowedLateness`.
 */
export class WindowOperator extends KeyedOperator {
  /** Records dropped for arriving after their window's allowed lateness (Flink's numLateRecordsDropped). */
  lateRecordsDropped = 0;

  constructor(
    uid: string,
    private readonly assigner: WindowAssigner,
    private readonly allowedLateness: number,
    private readonly fn: WindowFunction,
  ) {
    super(uid);
  }

  processRecord(r: StreamRecord): void {
    if (r.t === undefined) {
      throw new FloeError(ErrorCode.InvalidJob, `window operator '${this.uid}' received a record without an event timestamp: give its source { watermarks: { timestamp, outOfOrderness } }`);
    }
    this.setKeyFrom(r);
    const watermark = this.rt.currentWatermark();
    const timers = this.timerService();
    for (const w of assignWindows(this.assigner, r.t)) {
      const maxTimestamp = w.end - 1;
      if (maxTimestamp + this.allowedLateness <= watermark) {
        this.lateRecordsDropped++;
        continue;
      }
      const name = windowName(w);
      const acc = this.fn.type === 'aggregate'
        ? guard(this.uid, () => (this.fn as Extract<WindowFunction, { type: 'aggregate' }>).fn.add(r.v, this.getEntry(name) ?? (this.fn as Extract<WindowFunction, { type: 'aggregate' }>).fn.createAccumulator()))
        : [...((this.getEntry(name) as unknown[] | undefined) ?? []), r.v];
      this.putEntry(name, acc);
      if (maxTimestamp <= watermark) {
        // Late but within the allowed lateness: the window already fired, so fire it again with the update.
        this.emitWindow(w, acc);
      } else {
        timers.registerEventTimeTimer(maxTimestamp);
      }
      if (this.allowedLateness > 0) timers.registerEventTimeTimer(maxTimestamp + this.allowedLateness);
    }
  }

  private emitWindow(w: TimeWindow, acc: unknown): void {
    const key = this.currentKey();
    const t = w.end - 1;
    if (this.fn.type === 'aggregate') {
      const f = this.fn;
      const v = guard(this.uid, () => f.emit(key, w, f.fn.getResult(acc)));
      this.out.emit({ v, t });
    } else {
      const f = this.fn;
      for (const v of guard(this.uid, () => f.fn(key, w, acc as unknown[]))) this.out.emit({ v, t });
    }
  }

  private onTimer = (timer: Timer): void => {
    // A timer at T fires the window ending at T + 1 and cleans up the one whose lateness ends at T.
    const size = this.assigner.size;
    const firing = { start: timer.timestamp + 1 - size, end: timer.timestamp + 1 };
    const acc = this.getEntry(windowName(firing));
    if (acc !== undefined) {
      this.emitWindow(firing, acc);
      if (this.allowedLateness === 0) this.putEntry(windowName(firing), undefined);
    }
    if (this.allowedLateness > 0) {
      const expired = { start: firing.start - this.allowedLateness, end: firing.end - this.allowedLateness };
      this.putEntry(windowName(expired), undefined);
    }
  };

  override async advanceWatermark(watermark: number): Promise<void> {
    await this.fireTimers('event', watermark, this.onTimer);
  }
}
