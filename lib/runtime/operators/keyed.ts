import type { StreamRecord } from '../../core/envelope.js';
import type { Timer } from '../../ports/index.js';
import { stateEntryKey } from '../../ports/index.js';
import type { BoundState, ListState, MapState, StateSpec, ValueState } from '../../api/state.js';
import type { TimerService } from '../../api/functions.js';
import { Operator } from './operator.js';
import { FloeError, ErrorCode } from '../../core/errors.js';

/** The key a keyed operator is working on: serialized key and key group. */
export interface KeyContext {
  k: string;
  g: number;
}

/** Base of operators on a keyed stream: tracks the current key and binds state and timers to it. */
export abstract class KeyedOperator extends Operator {
  protected readonly key: KeyContext = { k: '', g: 0 };
  private decodedFor: string | undefined;
  private decoded: unknown;

  /** Sets the current key from a record; records on a keyed edge always carry `k` and `g`. */
  protected setKeyFrom(record: StreamRecord): void {
    if (record.k === undefined || record.g === undefined) {
      throw new FloeError(ErrorCode.MalformedMessage, `operator '${this.uid}' received a record without a key; its input must come through keyBy`);
    }
    this.key.k = record.k;
    this.key.g = record.g;
  }

  /** Sets the current key from a timer. */
  protected setKeyFromTimer(timer: Timer): void {
    this.key.k = timer.recordKey;
    this.key.g = timer.keyGroup;
  }

  /** The current key, deserialized. */
  protected currentKey(): unknown {
    if (this.decodedFor !== this.key.k) {
      this.decoded = JSON.parse(this.key.k);
      this.decodedFor = this.key.k;
    }
    return this.decoded;
  }

  /** The last entry key built per state name: a record's read and write of the same state build it once. */
  private readonly entryKeys = new Map<string, { k: string; key: string }>();

  private entryKey(name: string): string {
    let cached = this.entryKeys.get(name);
    if (!cached) this.entryKeys.set(name, (cached = { k: '', key: '' }));
    if (cached.k !== this.key.k || cached.key === '') {
      cached.k = this.key.k;
      cached.key = stateEntryKey(this.uid, name, this.key.k);
    }
    return cached.key;
  }

  protected getEntry(name: string): unknown {
    return this.rt.store.get(this.key.g, this.entryKey(name));
  }

  protected putEntry(name: string, value: unknown): void {
    this.rt.store.put(this.key.g, this.entryKey(name), value);
  }

  /** Binds declared state to the current key; the returned handles always act on the key current at call time. */
  protected bindState<S extends StateSpec>(spec: S): BoundState<S> {
    const bound: Record<string, unknown> = {};
    for (const [name, descriptor] of Object.entries(spec)) {
      if (descriptor.kind === 'value') bound[name] = this.valueState(name);
      else if (descriptor.kind === 'list') bound[name] = this.listState(name);
      else bound[name] = this.mapState(name);
    }
    return bound as BoundState<S>;
  }

  private valueState(name: string): ValueState<unknown> {
    return {
      value: () => this.getEntry(name),
      update: (v) => this.putEntry(name, v),
      clear: () => this.putEntry(name, undefined),
    };
  }

  private listState(name: string): ListState<unknown> {
    const get = () => (this.getEntry(name) as unknown[] | undefined) ?? [];
    return {
      get,
      add: (v) => this.putEntry(name, [...get(), v]),
      update: (vs) => this.putEntry(name, vs.length === 0 ? undefined : [...vs]),
      clear: () => this.putEntry(name, undefined),
    };
  }

  private mapState(name: string): MapState<string | number, unknown> {
    const get = () => (this.getEntry(name) as Record<string, unknown> | undefined) ?? {};
    return {
      get: (k) => get()[String(k)],
      put: (k, v) => this.putEntry(name, { ...get(), [String(k)]: v }),
      remove: (k) => {
        const { [String(k)]: _removed, ...rest } = get();
        this.putEntry(name, Object.keys(rest).length === 0 ? undefined : rest);
      },
      contains: (k) => String(k) in get(),
      entries: () => Object.entries(get()),
      keys: () => Object.keys(get()),
      isEmpty: () => Object.keys(get()).length === 0,
      clear: () => this.putEntry(name, undefined),
    };
  }

  /** Timers for the current key. */
  protected timerService(): TimerService {
    const timer = (domain: Timer['domain'], timestamp: number): Timer => ({ uid: this.uid, domain, timestamp, keyGroup: this.key.g, recordKey: this.key.k });
    return {
      currentProcessingTime: () => this.rt.clock.now(),
      currentWatermark: () => this.rt.currentWatermark(),
      registerEventTimeTimer: (t) => this.rt.store.registerTimer(timer('event', t)),
      registerProcessingTimeTimer: (t) => this.rt.store.registerTimer(timer('processing', t)),
      deleteEventTimeTimer: (t) => this.rt.store.deleteTimer(timer('event', t)),
      deleteProcessingTimeTimer: (t) => this.rt.store.deleteTimer(timer('processing', t)),
    };
  }

  /** Fires this operator's due timers of a domain, one key at a time. */
  protected async fireTimers(domain: Timer['domain'], upTo: number, onTimer: (timer: Timer) => void): Promise<void> {
    const due = await this.rt.store.popDueTimers(domain, upTo);
    // Timers of other operators in the chain go back for them to pop when their turn comes.
    for (const t of due) if (t.uid !== this.uid) this.rt.store.registerTimer(t);
    const mine = due.filter((t) => t.uid === this.uid);
    if (mine.length === 0) return;
    await this.rt.store.prefetch(mine.map((t) => ({ keyGroup: t.keyGroup, key: t.recordKey })));
    for (const t of mine) {
      this.setKeyFromTimer(t);
      onTimer(t);
    }
  }
}
