import type { StreamRecord } from '../../core/envelope.js';
import { Operator } from './operator.js';
import { ErrorCode, FloeError, UserFunctionError } from '../../core/errors.js';

/** What `flatMapAsync` calls per record: the records to emit for it, in order, when its promise resolves. */
export type AsyncFlatMapFunction = (value: unknown) => Promise<Iterable<unknown>>;

interface Call {
  readonly record: StreamRecord;
  result?: Promise<Iterable<unknown>>;
}

/**
 * `mapAsync` / `flatMapAsync` (Flink's async I/O, ordered): up to `capacity` calls run at once; their results are
 * emitted in the order the records came in, before anything that follows them leaves the operator — a watermark, a
 * barrier, the end of the step. So no call is ever in flight across a snapshot: a checkpoint needs no record of
 * pending calls (Flink checkpoints them; here the barrier waits for them), and a step replayed after a crash makes
 * the same calls again, which is why the function must give the same result for the same record (a read of an
 * immutable object, a lookup that changes rarely) or be idempotent.
 */
export class AsyncFlatMapOperator extends Operator {
  private calls: Call[] = [];
  private running = 0;
  /** Bumped when a drain fails: calls of the failed attempt that settle later no longer count. */
  private epoch = 0;

  constructor(
    uid: string,
    private readonly fn: AsyncFlatMapFunction,
    private readonly capacity: number,
    private readonly timeoutMs: number,
  ) {
    super(uid);
  }

  processRecord(record: StreamRecord): void {
    const call: Call = { record };
    this.calls.push(call);
    if (this.running < this.capacity) this.start(call);
  }

  private start(call: Call): void {
    this.running += 1;
    const epoch = this.epoch;
    const settle = () => {
      if (epoch !== this.epoch) return;
      this.running -= 1;
      // A slot is free: start the next call waiting, whichever call settled.
      const next = this.calls.find((c) => c.result === undefined);
      if (next !== undefined && this.running < this.capacity) this.start(next);
    };
    call.result = this.invoke(call.record.v).finally(settle);
    // Observed when drained; until then a rejection must not count as unhandled.
    call.result.catch(() => undefined);
  }

  private invoke(value: unknown): Promise<Iterable<unknown>> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new FloeError(ErrorCode.UserFunction, `no result within ${this.timeoutMs} ms`, { retryable: true })), this.timeoutMs);
      timer.unref?.();
    });
    let call: Promise<Iterable<unknown>>;
    try {
      call = Promise.resolve(this.fn(value));
    } catch (e) {
      call = Promise.reject(e);
    }
    return Promise.race([call, timeout]).finally(() => clearTimeout(timer));
  }

  /** Waits for every call made so far and emits their results in record order. */
  private async drain(): Promise<void> {
    while (this.calls.length > 0) {
      const call = this.calls[0]!;
      if (call.result === undefined) this.start(call);
      let values: unknown[];
      try {
        const result = await call.result!;
        if (result === null || typeof result !== 'object' || !(Symbol.iterator in result)) throw new TypeError(`the function returned ${result === null ? 'null' : typeof result}, not an array or another iterable of records`);
        values = [...result];
      } catch (e) {
        // The attempt is over: nothing of it may be emitted by a later one.
        this.calls = [];
        this.running = 0;
        this.epoch += 1;
        throw e instanceof UserFunctionError ? e : new UserFunctionError(this.uid, e);
      }
      this.calls.shift();
      const t = call.record.t;
      for (const v of values) this.out.emit(t === undefined ? { v } : { v, t });
    }
  }

  override async advanceWatermark(): Promise<void> {
    await this.drain();
  }

  override async endInput(): Promise<void> {
    await this.drain();
  }

  override async flush(): Promise<void> {
    await this.drain();
  }

  override async prepareSnapshot(): Promise<never[]> {
    await this.drain();
    return [];
  }
}
