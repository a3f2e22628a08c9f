import type {
  CaptureMode,
  CheckpointStorage,
  ControlRow,
  RestoreInput,
  SnapshotLocation,
  StateKey,
  StateSnapshotWriter,
  StateStore,
  SubtaskStateStore,
  TaskAddress,
  Timer,
  WrittenState,
} from '../../ports/index.js';
import { TIMER_STATE_PREFIX, parseTimerEntryKey, timerEntryKey } from '../../ports/index.js';
import type { StateHandle } from '../../core/manifest/model.js';
import { CommitFencedError } from '../../core/errors.js';
import { encodeSnapshotLine, readRestoredEntries } from '../snapshot-file.js';
import { join, resolveRelative } from '../../core/manifest/layout.js';
import { randomBytes } from 'node:crypto';

interface Entry {
  g: number;
  v: unknown;
}

/** A min-heap of timers by timestamp; deleted timers are skipped lazily when popped. */
class TimerHeap {
  private items: { ts: number; key: string; g: number }[] = [];
  push(ts: number, key: string, g: number): void {
    const a = this.items;
    a.push({ ts, key, g });
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.ts <= a[i]!.ts) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  peek(): { ts: number; key: string; g: number } | undefined {
    return this.items[0];
  }
  pop(): { ts: number; key: string; g: number } | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.ts < a[m]!.ts) m = l;
        if (r < a.length && a[r]!.ts < a[m]!.ts) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
  clear(): void {
    this.items = [];
  }
}

/** Chains longer than this are compacted into a full snapshot. */
const MAX_CHAIN_LENGTH = 10;

/**
 * One subtask's state in memory. Writes apply at once (the embedded runtime recovers by rolling every subtask back
 * to a checkpoint, so there is no partial batch to undo); the control row's version still fences commits.
 * Changed keys are tracked so an incremental snapshot writes only those.
 */
export class InMemorySubtaskState implements SubtaskStateStore {
  readonly prefetchRequired = false;
  private entries = new Map<string, Entry>();
  private operatorState = new Map<string, readonly unknown[]>();
  private control: ControlRow | undefined;
  /** Keys changed since the last non-canonical capture, with their key group. */
  private dirty = new Map<string, number>();
  /** Handle chain per uid written by the last non-canonical capture, or undefined when the next must be full. */
  private chain: Map<string, StateHandle[]> | undefined;
  private timers = { event: new TimerHeap(), processing: new TimerHeap() };

  constructor(private readonly task: TaskAddress) {}

  async readControl(): Promise<ControlRow | undefined> {
    return this.control;
  }

  async prefetch(_keys: readonly StateKey[]): Promise<void> {}

  get(_keyGroup: number, key: string): unknown {
    return this.entries.get(key)?.v;
  }

  put(keyGroup: number, key: string, value: unknown): void {
    if (value === undefined) {
      if (!this.entries.delete(key)) return;
    } else {
      const e = this.entries.get(key);
      if (e) e.v = value;
      else this.entries.set(key, { g: keyGroup, v: value });
    }
    this.dirty.set(key, keyGroup);
  }

  getOperatorState(uid: string): readonly unknown[] {
    return this.operatorState.get(uid) ?? [];
  }

  setOperatorState(uid: string, items: readonly unknown[]): void {
    this.operatorState.set(uid, items);
  }

  registerTimer(timer: Timer): void {
    const key = timerEntryKey(timer);
    if (this.entries.has(key)) return;
    this.put(timer.keyGroup, key, 1);
    this.timers[timer.domain].push(timer.timestamp, key, timer.keyGroup);
  }

  deleteTimer(timer: Timer): void {
    this.put(timer.keyGroup, timerEntryKey(timer), undefined);
  }

  async popDueTimers(domain: Timer['domain'], upTo: number): Promise<readonly Timer[]> {
    const heap = this.timers[domain];
    const due: Timer[] = [];
    for (let top = heap.peek(); top && top.ts <= upTo; top = heap.peek()) {
      heap.pop();
      if (!this.entries.has(top.key)) continue;
      this.put(top.g, top.key, undefined);
      due.push(parseTimerEntryKey(top.key, top.g)!);
    }
    return due;
  }

  nextTimer(domain: Timer['domain']): number | undefined {
    const heap = this.timers[domain];
    // The heap is an index: a deleted (or fired) timer's entry stays in it until it comes to the top.
    for (let top = heap.peek(); top; top = heap.peek()) {
      if (this.entries.has(top.key)) return top.ts;
      heap.pop();
    }
    return undefined;
  }

  async commit(control: ControlRow): Promise<void> {
    const expected = (this.control?.version ?? 0) + 1;
    if (control.version !== expected) {
      throw new CommitFencedError(`commit of ${this.task.vertex}:${this.task.subtask} with version ${control.version} fenced: expected ${expected}`);
    }
    this.control = control;
  }

  captureSnapshot(options: { mode: CaptureMode; checkpointId: number; uids: readonly string[]; keyGroups: readonly [number, number] }): StateSnapshotWriter {
    const { checkpointId, uids, keyGroups } = options;
    const uidSet = new Set(uids);
    let mode = options.mode;
    if (mode === 'incremental' && (!this.chain || [...this.chain.values()].some((c) => c.length >= MAX_CHAIN_LENGTH))) mode = 'full';
    // Serialize now, at the barrier; only the file writes happen asynchronously.
    const lines = new Map<string, string[]>();
    const add = (key: string, g: number, value: unknown) => {
      const uid = key.slice(0, key.indexOf('\u0000'));
      if (!uidSet.has(uid)) return;
      let list = lines.get(uid);
      if (!list) lines.set(uid, (list = []));
      list.push(encodeSnapshotLine(g, key, value));
    };
    if (mode === 'incremental') {
      for (const [key, g] of this.dirty) add(key, g, this.entries.get(key)?.v);
    } else {
      for (const [key, e] of this.entries) add(key, e.g, e.v);
    }
    const previous = mode === 'incremental' ? this.chain! : new Map<string, StateHandle[]>();
    if (mode !== 'canonical') {
      this.dirty = new Map();
      this.chain = undefined; // set again once the files are written
    }
    const task = this.task;
    const nonce = randomBytes(4).toString('hex');
    return {
      write: async (storage: CheckpointStorage, location: SnapshotLocation): Promise<Record<string, WrittenState>> => {
        const result: Record<string, WrittenState> = {};
        const nextChain = new Map<string, StateHandle[]>();
        try {
          for (const uid of uids) {
            const entries = lines.get(uid) ?? [];
            const chain = [...(previous.get(uid) ?? [])];
            let written = 0;
            if (entries.length > 0) {
              const bytes = Buffer.from(entries.join('\n') + '\n');
              const file = `${uid}-${task.subtask}-chk${checkpointId}-${nonce}.jsonl`;
              let path: string;
              if (mode === 'canonical' || !location.sharedDir) {
                path = `state/${file}`;
                await storage.put(join(location.dir, path), bytes);
              } else {
                path = `../${location.sharedDir.split('/').pop()}/${file}`;
                await storage.put(resolveRelative(location.dir, path), bytes);
              }
              written = bytes.length;
              chain.push({ path, kind: mode === 'incremental' ? 'delta' : 'full', size: bytes.length, entries: entries.length, keyGroups: [keyGroups[0], keyGroups[1]] });
            }
            nextChain.set(uid, chain);
            result[uid] = { handles: chain, bytesWritten: written, fullSize: chain.reduce((s, h) => s + h.size, 0) };
          }
        } catch (e) {
          if (mode !== 'canonical') this.chain = undefined;
          throw e;
        }
        if (mode !== 'canonical') this.chain = nextChain;
        return result;
      },
    };
  }

  async restore(input: RestoreInput): Promise<void> {
    this.entries.clear();
    this.operatorState.clear();
    this.dirty = new Map();
    this.chain = undefined;
    this.timers.event.clear();
    this.timers.processing.clear();
    this.control = undefined;
    for (const [uid, op] of Object.entries(input.operators)) this.operatorState.set(uid, op.operatorState);
    this.entries = await readRestoredEntries(input);
    for (const [key, e] of this.entries) {
      if (!key.includes(TIMER_STATE_PREFIX)) continue;
      const timer = parseTimerEntryKey(key, e.g);
      if (timer) this.timers[timer.domain].push(timer.timestamp, key, e.g);
    }
  }

  /** Number of keyed entries held, timers included. */
  size(): number {
    return this.entries.size;
  }
}

/** Keyed and operator state of every subtask, in memory. */
export class InMemoryStateStore implements StateStore {
  private subtasks = new Map<string, InMemorySubtaskState>();

  forSubtask(task: TaskAddress): InMemorySubtaskState {
    const id = `${task.vertex}:${task.subtask}`;
    let s = this.subtasks.get(id);
    if (!s) this.subtasks.set(id, (s = new InMemorySubtaskState(task)));
    return s;
  }

  async clear(): Promise<void> {
    this.subtasks.clear();
  }
}
