import type { StreamRecord } from '../../core/envelope.js';
import type { Collector, ProcessFunction } from '../../api/functions.js';
import { Operator } from './operator.js';
import { UserFunctionError } from '../../core/errors.js';

/** Runs user code, turning a throw into a UserFunctionError that names the operator. */
export function guard<R>(uid: string, fn: () => R): R {
  try {
    return fn();
  } catch (e) {
    if (e instanceof UserFunctionError) throw e;
    throw new UserFunctionError(uid, e);
  }
}

/** A collector that emits records carrying a default timestamp. */
export function collectorFor(emit: (r: StreamRecord) => void, timestamp: () => number | undefined): Collector<unknown> {
  return {
    collect: (v) => {
      const t = timestamp();
      emit(t === undefined ? { v } : { v, t });
    },
    collectWithTimestamp: (v, t) => emit({ v, t }),
  };
}

/** `map`: one record in, one out, timestamp kept. */
export class MapOperator extends Operator {
  constructor(uid: string, private readonly fn: (v: unknown) => unknown) {
    super(uid);
  }
  processRecord(r: StreamRecord): void {
    const v = guard(this.uid, () => this.fn(r.v));
    this.out.emit(r.t === undefined ? { v } : { v, t: r.t });
  }
}

/** `filter`: keeps records for which the predicate holds. */
export class FilterOperator extends Operator {
  constructor(uid: string, private readonly fn: (v: unknown) => boolean) {
    super(uid);
  }
  processRecord(r: StreamRecord): void {
    if (guard(this.uid, () => this.fn(r.v))) this.out.emit(r.t === undefined ? { v: r.v } : { v: r.v, t: r.t });
  }
}

/** `flatMap` and non-keyed `process`: zero or more records out per record in. */
export class FlatMapOperator extends Operator {
  private current: StreamRecord | undefined;
  private collector!: Collector<unknown>;
  constructor(uid: string, private readonly fn: (v: unknown, out: Collector<unknown>, ctx: { timestamp: number | undefined }) => void) {
    super(uid);
  }
  override async open(...args: Parameters<Operator['open']>): Promise<void> {
    await super.open(...args);
    this.collector = collectorFor((r) => this.out.emit(r), () => this.current?.t);
  }
  processRecord(r: StreamRecord): void {
    this.current = r;
    guard(this.uid, () => this.fn(r.v, this.collector, { timestamp: r.t }));
    this.current = undefined;
  }
}

/** Adapts a ProcessFunction to the flatMap operator's signature. */
export function processFunctionAsFlatMap(fn: ProcessFunction<unknown, unknown>): (v: unknown, out: Collector<unknown>, ctx: { timestamp: number | undefined }) => void {
  return (v, out, ctx) => fn.processElement(v, ctx, out);
}
