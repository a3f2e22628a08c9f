import type { QueueSender } from '../../ports/index.js';
import type { Envelope } from '../../core/envelope.js';
import { channelKey } from '../../core/envelope.js';

interface Slot {
  items: Envelope[];
  head: number;
  spaceWaiters: (() => void)[];
  dataWaiter: (() => void) | undefined;
}

/**
 * Bounded in-process queues, one per receiving subtask. A full queue makes `send` wait (backpressure), as a Flink
 * network buffer pool does.
 */
export class InMemoryQueues implements QueueSender {
  private slots = new Map<string, Slot>();
  private closed = false;

  /** @param capacity envelopes a queue holds before senders wait */
  constructor(private readonly capacity = 64) {}

  private slot(key: string): Slot {
    let s = this.slots.get(key);
    if (!s) this.slots.set(key, (s = { items: [], head: 0, spaceWaiters: [], dataWaiter: undefined }));
    return s;
  }

  async send(envelopes: readonly Envelope[]): Promise<void> {
    for (const e of envelopes) {
      const s = this.slot(channelKey(e.to));
      while (s.items.length - s.head >= this.capacity && !this.closed) await new Promise<void>((r) => s.spaceWaiters.push(r));
      if (this.closed) return;
      s.items.push(e);
      const w = s.dataWaiter;
      s.dataWaiter = undefined;
      w?.();
    }
  }

  /** Takes up to `max` envelopes for a subtask, waiting up to `waitMs` for the first. */
  async receive(receiver: string, max: number, waitMs: number): Promise<Envelope[]> {
    const s = this.slot(receiver);
    if (s.items.length - s.head === 0 && !this.closed && waitMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          s.dataWaiter = undefined;
          resolve();
        }, waitMs);
        s.dataWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const n = Math.min(max, s.items.length - s.head);
    const out = s.items.slice(s.head, s.head + n);
    s.head += n;
    if (s.head > 1024 && s.head * 2 > s.items.length) {
      s.items = s.items.slice(s.head);
      s.head = 0;
    }
    const waiters = s.spaceWaiters.splice(0, n);
    for (const w of waiters) w();
    return out;
  }

  /** Envelopes waiting for a subtask. */
  depth(receiver: string): number {
    const s = this.slots.get(receiver);
    return s ? s.items.length - s.head : 0;
  }

  /** Releases every waiting sender and receiver; later sends are dropped. */
  close(): void {
    this.closed = true;
    for (const s of this.slots.values()) {
      for (const w of s.spaceWaiters.splice(0)) w();
      const d = s.dataWaiter;
      s.dataWaiter = undefined;
      d?.();
    }
  }
}
