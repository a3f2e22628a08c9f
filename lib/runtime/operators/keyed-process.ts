import type { StreamRecord } from '../../core/envelope.js';
import type { Timer } from '../../ports/index.js';
import type { Collector, KeyedContext, KeyedProcessFunction, OnTimerContext } from '../../api/functions.js';
import type { StateSpec } from '../../api/state.js';
import { KeyedOperator } from './keyed.js';
import { collectorFor, guard } from './stateless.js';
import type { Operator } from './operator.js';

/** Runs a KeyedProcessFunction with its declared state and timers. */
export class KeyedProcessOperator extends KeyedOperator {
  private ctx!: KeyedContext<unknown, StateSpec> & { timestamp: number | undefined; timeDomain?: 'event' | 'processing' };
  private collector!: Collector<unknown>;

  constructor(uid: string, private readonly fn: KeyedProcessFunction<unknown, unknown, unknown, StateSpec>) {
    super(uid);
  }

  override async open(...args: Parameters<Operator['open']>): Promise<void> {
    await super.open(...args);
    const state = this.bindState(this.fn.state ?? {});
    const timers = this.timerService();
    const currentKey = () => this.currentKey();
    this.ctx = {
      get key() {
        return currentKey();
      },
      timestamp: undefined,
      state,
      timerService: () => timers,
    };
    this.collector = collectorFor((r) => this.out.emit(r), () => this.ctx.timestamp);
  }

  processRecord(r: StreamRecord): void {
    this.setKeyFrom(r);
    this.ctx.timestamp = r.t;
    guard(this.uid, () => this.fn.processElement(r.v, this.ctx, this.collector));
  }

  private onTimer = (timer: Timer): void => {
    if (!this.fn.onTimer) return;
    this.ctx.timestamp = timer.timestamp;
    this.ctx.timeDomain = timer.domain;
    guard(this.uid, () => this.fn.onTimer!(timer.timestamp, this.ctx as OnTimerContext<unknown, StateSpec>, this.collector));
    this.ctx.timeDomain = undefined;
  };

  override async advanceWatermark(watermark: number): Promise<void> {
    await this.fireTimers('event', watermark, this.onTimer);
  }

  override async advanceProcessingTime(now: number): Promise<void> {
    await this.fireTimers('processing', now, this.onTimer);
  }
}
