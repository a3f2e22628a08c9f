import type { StreamRecord } from '../../core/envelope.js';
import type { AggregateFunction, ReduceFunction } from '../../api/functions.js';
import { KeyedOperator } from './keyed.js';
import { guard } from './stateless.js';

/** Rolling reduce per key: emits the running reduction on every record. */
export class ReduceOperator extends KeyedOperator {
  constructor(uid: string, private readonly fn: ReduceFunction<unknown>) {
    super(uid);
  }
  processRecord(r: StreamRecord): void {
    this.setKeyFrom(r);
    const prev = this.getEntry('reduce');
    const next = prev === undefined ? r.v : guard(this.uid, () => this.fn(prev, r.v));
    this.putEntry('reduce', next);
    this.out.emit(r.t === undefined ? { v: next } : { v: next, t: r.t });
  }
}

/** Rolling aggregate per key: emits the aggregate's result on every record. */
export class AggregateOperator extends KeyedOperator {
  constructor(uid: string, private readonly fn: AggregateFunction<unknown, unknown, unknown>) {
    super(uid);
  }
  processRecord(r: StreamRecord): void {
    this.setKeyFrom(r);
    const acc = guard(this.uid, () => this.fn.add(r.v, this.getEntry('accumulator') ?? this.fn.createAccumulator()));
    this.putEntry('accumulator', acc);
    const v = guard(this.uid, () => this.fn.getResult(acc));
    this.out.emit(r.t === undefined ? { v } : { v, t: r.t });
  }
}
