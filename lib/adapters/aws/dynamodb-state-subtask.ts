import { randomBytes } from 'node:crypto';
import type {
  CaptureMode,
  CheckpointStorage,
  ControlRow,
  RestoreInput,
  SnapshotLocation,
  StateKey,
  StateSnapshotWriter,
  SubtaskStateStore,
  TaskAddress,
  Timer,
  WrittenState,
} from '../../ports/index.js';
import { parseTimerEntryKey, timerEntryKey } from '../../ports/index.js';
import type { StateHandle } from '../../core/manifest/model.js';
import { CommitFencedError, ErrorCode, FloeError } from '../../core/errors.js';
import { join, resolveRelative } from '../../core/manifest/layout.js';
import { encodeSnapshotLine, readRestoredEntries } from '../snapshot-file.js';
import { MAX_LEAF_DEPTH, PackedBlob, PackedLayout, parseLeafId, recordKeyOf, bucketHash, timerPartsOf, type PackedRow } from './dynamodb-state-blob.js';

/** What the control row carries besides its fencing attributes; stored as one compressed attribute. */
export interface HeadBody {
  /** The runtime's control row; absent until the first commit (and right after a restore). */
  readonly control?: ControlRow;
  /** Operator (non-keyed) state per uid. */
  readonly ops: Readonly<Record<string, readonly unknown[]>>;
  /** Number of non-canonical captures so far: rows changed now are marked with it. */
  readonly cap: number;
  /** Leaves holding rows marked `cap` (changed since the last non-canonical capture). */
  readonly dirty: readonly string[];
  /** Earliest event and processing timer per leaf that has timers. */
  readonly tmin: Readonly<Record<string, readonly [number | null, number | null]>>;
  /** Split segments and their leaves (see PackedLayout). */
  readonly layout: Readonly<Record<string, readonly string[]>>;
  /** Leaves split away by a committed step, deleted by the next step that writes. */
  readonly orphans: readonly string[];
  /** Key groups per segment, fixed when the incarnation is created (so a changed option cannot misread stored leaves). */
  readonly kgpi?: number;
}

/** The control row as stored. */
export interface StoredHead {
  /** Committed version (0 = never committed). */
  readonly version: number;
  /** Claim counter: bumped by every claim and every commit; a leaf written by claim `c` carries `c`. */
  readonly cn: number;
  /** Incarnation: a random id naming this subtask's leaves; a restore switches to a new one. */
  readonly inc: string;
  /** Attempt that last claimed or committed (recognizes our own write after a lost response). */
  readonly owner?: string;
  /** Leaves the claimant(s) at this version may have written: rolled back or rewritten by whoever commits next. */
  readonly pend: readonly string[];
  readonly body: HeadBody;
}

/** A leaf item as stored. */
export interface StoredLeaf {
  /** `ver` = the version its writer was building (its base + 1). */
  readonly ver: number;
  /** Claim number of its writer. */
  readonly c: number;
  readonly d: Uint8Array;
  readonly u?: Uint8Array;
}

/** The handle chain a subtask's last non-canonical capture wrote, so the next incremental one can extend it. */
export interface StoredChain {
  readonly inc: string;
  /** The capture interval it covers: incremental capture `cap` extends it only when `seq === cap - 1`. */
  readonly seq: number;
  readonly chain: Readonly<Record<string, readonly StateHandle[]>>;
}

/** What a conditional write found in place of what it expected (from `ReturnValuesOnConditionCheckFailure: ALL_OLD`). */
export interface ExistingVersion {
  readonly version?: number;
  readonly claim?: number;
  readonly owner?: string;
}

/** A conditional write lost to a newer attempt (a zombie, or a duplicate invocation): carries what it found instead. */
export class StateFencedError extends CommitFencedError {
  constructor(
    message: string,
    readonly existing: ExistingVersion | undefined,
  ) {
    super(message);
    this.name = 'StateFencedError';
  }
}

/** Tuning of the packed layout, validated by the store's options. */
export interface PackedStateTuning {
  readonly keyGroupsPerItem: number;
  readonly maxItemBytes: number;
  readonly writeConcurrency: number;
  readonly maxCachedItems: number;
}

/** An item write: a leaf's rows and undo, or a delete. */
export type LeafWrite = { readonly id: string; readonly d: Uint8Array; readonly u: Uint8Array | undefined } | { readonly id: string; readonly delete: true };

/** Chains longer than this are compacted into a full snapshot (as in the in-memory store). */
const MAX_CHAIN_LENGTH = 10;

/** DynamoDB's item limit, minus room for keys and attribute names. */
const HARD_ITEM_BYTES = 390 * 1024;

interface MutableBody {
  control?: ControlRow;
  ops: Record<string, readonly unknown[]>;
  cap: number;
  dirty: Set<string>;
  tmin: Record<string, readonly [number | null, number | null]>;
  orphans: string[];
}

interface Head extends StoredHead {
  /** False when no control row is stored: nothing of this subtask exists yet. */
  readonly exists: boolean;
}

/** A capture taken at a barrier whose leaves are not all read yet: leaves changed after the barrier are pinned first. */
interface PendingCapture {
  readonly needs: (id: string) => boolean;
  readonly pins: Map<string, Map<string, PackedRow>>;
}

const newId = (): string => randomBytes(6).toString('base64url');

function emptyBody(): HeadBody {
  return { ops: {}, cap: 0, dirty: [], tmin: {}, layout: {}, orphans: [] };
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function inParallel<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Keyed state packed into a few items per subtask, committed exactly once under crashes, retries and zombies. The
 * protocol lives here; a subclass maps it to a table (template method, as Powertools' idempotency persistence layer):
 * it reads and writes the control row, leaf items and the chain item, and turns a failed condition into
 * {@link StateFencedError}.
 *
 * A step is: `readControl` (read the committed control row: version v, claim counter r) → `prefetch` (read the leaves
 * of the batch's keys) → synchronous get/put → `commit`. Nothing is written before `commit`.
 */
export abstract class PackedSubtaskState implements SubtaskStateStore {
  private head: Head | undefined;
  private body!: MutableBody;
  private layout!: PackedLayout;
  /** Loaded leaves: the committed content plus this step's changes; kept across steps while nobody else commits. */
  private readonly blobs = new Map<string, PackedBlob>();
  /** Leaves to write at commit. */
  private readonly touched = new Set<string>();
  /** The claim counter and incarnation our last commit left, for which the cached leaves are the committed ones. */
  private cachedAt: { cn: number; inc: string } | undefined;
  private chain: StoredChain | undefined;
  private attempt = newId();
  private readonly captures = new Set<PendingCapture>();

  constructor(
    protected readonly task: TaskAddress,
    protected readonly tuning: PackedStateTuning,
  ) {}

  // ---- storage primitives (implemented by the table mapping) ----

  /** Reads the control row and the chain item (strongly consistent). */
  protected abstract readHead(): Promise<{ head: StoredHead | undefined; chain: StoredChain | undefined }>;
  /** Reads leaf items of an incarnation (strongly consistent); missing ones are absent from the result. */
  protected abstract readLeaves(inc: string, ids: readonly string[]): Promise<Map<string, StoredLeaf>>;
  /** Reads every leaf item of an incarnation (strongly consistent). */
  protected abstract readAllLeaves(inc: string): Promise<Map<string, StoredLeaf>>;
  /** Claims the control row: sets `cn = claim`, `owner`, `pend`, if `cn` is still `expectedCn` (or no row exists, when `exists` is false). */
  protected abstract claimHead(request: { exists: boolean; expectedCn: number; claim: number; owner: string; inc: string; pend: readonly string[] }): Promise<void>;
  /** Writes (or deletes) a leaf item tagged `ver`, `c = claim`, if absent or its `c <= claim`. */
  protected abstract writeLeaf(inc: string, write: LeafWrite, ver: number, claim: number): Promise<void>;
  /** Replaces the control row with `head` if its `cn` is still `expectedCn` (or no row exists, when `exists` is false). */
  protected abstract commitHead(request: { exists: boolean; expectedCn: number; head: StoredHead }): Promise<void>;
  /** Stores the chain item (last writer wins; a stale one only makes the next capture full). */
  protected abstract writeChain(chain: StoredChain): Promise<void>;
  /** Writes the leaves of a new incarnation unconditionally (nothing references it yet). */
  protected abstract writeFreshLeaves(inc: string, writes: readonly LeafWrite[]): Promise<void>;
  /** Deletes every item of an incarnation no control row references any more. */
  protected abstract dropIncarnation(inc: string): Promise<void>;

  // ---- the step ----

  async readControl(): Promise<ControlRow | undefined> {
    const { head, chain } = await this.readHead();
    const h: Head = head ? { ...head, exists: true } : { exists: false, version: 0, cn: 0, inc: newId(), pend: [], body: emptyBody() };
    if (!head || this.cachedAt?.cn !== head.cn || this.cachedAt.inc !== head.inc) this.blobs.clear();
    else for (const id of this.touched) this.blobs.delete(id); // changes of a step that never committed
    this.touched.clear();
    this.begin(h);
    this.attempt = newId();
    const known = this.chain?.inc === h.inc ? this.chain : undefined;
    const stored = chain?.inc === h.inc ? chain : undefined;
    this.chain = known && (!stored || known.seq > stored.seq) ? known : stored;
    return h.body.control;
  }

  private begin(h: Head): void {
    this.head = h;
    const b = h.body;
    this.body = { ...(b.control ? { control: b.control } : {}), ops: { ...b.ops }, cap: b.cap, dirty: new Set(b.dirty), tmin: { ...b.tmin }, orphans: [...b.orphans] };
    this.layout = new PackedLayout(b.kgpi ?? this.tuning.keyGroupsPerItem, b.layout);
  }

  private requireHead(): Head {
    if (!this.head) throw new FloeError(ErrorCode.Storage, `state of ${this.name()} used before readControl() began a step`);
    return this.head;
  }

  private async ensureHead(): Promise<Head> {
    if (!this.head) await this.readControl();
    return this.head!;
  }

  private name(): string {
    return `${this.task.vertex}:${this.task.subtask}`;
  }

  async prefetch(keys: readonly StateKey[]): Promise<void> {
    await this.ensureHead();
    const ids = new Set<string>();
    for (const k of keys) ids.add(this.layout.leafFor(k.keyGroup, k.key));
    await this.load([...ids]);
  }

  /**
   * Loads leaves resolved to the committed state of version v. A leaf whose claim is above the counter read at step
   * start was written by an attempt that claimed after us: we are stale, and reading on would mix states, so fence now.
   */
  private async load(ids: readonly string[]): Promise<void> {
    const h = this.requireHead();
    const need = ids.filter((id) => !this.blobs.has(id));
    if (need.length === 0) return;
    const stored = h.exists ? await this.readLeaves(h.inc, need) : new Map<string, StoredLeaf>();
    for (const id of need) {
      const item = stored.get(id);
      if (!item) {
        this.blobs.set(id, PackedBlob.absent(id));
        continue;
      }
      if (item.c > h.cn || item.ver > h.version + 1) {
        throw new StateFencedError(`state of ${this.name()} was written by claim ${item.c} at version ${item.ver}, after this step read version ${h.version} (claim ${h.cn})`, {
          version: item.ver,
          claim: item.c,
        });
      }
      this.blobs.set(id, PackedBlob.resolve(id, item.d, item.u, item.ver <= h.version));
    }
  }

  private blobFor(keyGroup: number, key: string): PackedBlob {
    const h = this.requireHead();
    const id = this.layout.leafFor(keyGroup, recordKeyOf(key));
    let blob = this.blobs.get(id);
    if (!blob) {
      if (h.exists) throw new FloeError(ErrorCode.Storage, `state of ${this.name()} for key group ${keyGroup} was used without prefetch()`);
      this.blobs.set(id, (blob = PackedBlob.absent(id)));
    }
    return blob;
  }

  /** Every change to a leaf goes through here: pending captures get the leaf as it was first. */
  private modify(blob: PackedBlob, key: string, row: PackedRow | undefined, dirty = true): void {
    if (this.captures.size > 0) this.pin(blob);
    this.touched.add(blob.id);
    blob.set(key, row);
    if (dirty) this.body.dirty.add(blob.id);
  }

  private pin(blob: PackedBlob): void {
    for (const c of this.captures) if (c.needs(blob.id) && !c.pins.has(blob.id)) c.pins.set(blob.id, blob.snapshot());
  }

  get(keyGroup: number, key: string): unknown {
    return this.blobFor(keyGroup, key).rows.get(key)?.v;
  }

  put(keyGroup: number, key: string, value: unknown): void {
    const blob = this.blobFor(keyGroup, key);
    if (value === undefined) {
      // A deletion stays as a tombstone until a capture has recorded it; deleting what is not there changes nothing.
      if (blob.rows.get(key)?.v === undefined) return;
      this.modify(blob, key, { g: keyGroup, m: this.body.cap });
    } else {
      this.modify(blob, key, { g: keyGroup, m: this.body.cap, v: value });
    }
  }

  getOperatorState(uid: string): readonly unknown[] {
    this.requireHead();
    return this.body.ops[uid] ?? [];
  }

  setOperatorState(uid: string, items: readonly unknown[]): void {
    this.requireHead();
    this.body.ops[uid] = [...items];
  }

  registerTimer(timer: Timer): void {
    const key = timerEntryKey(timer);
    if (this.get(timer.keyGroup, key) !== undefined) return;
    this.put(timer.keyGroup, key, 1);
  }

  deleteTimer(timer: Timer): void {
    this.put(timer.keyGroup, timerEntryKey(timer), undefined);
  }

  async popDueTimers(domain: Timer['domain'], upTo: number): Promise<readonly Timer[]> {
    await this.ensureHead();
    const slot = domain === 'event' ? 0 : 1;
    const unloaded = Object.entries(this.body.tmin)
      .filter(([id, mins]) => !this.blobs.has(id) && mins[slot] !== null && mins[slot]! <= upTo)
      .map(([id]) => id);
    await this.load(unloaded);
    const due: { timer: Timer; key: string; blob: PackedBlob }[] = [];
    for (const blob of this.blobs.values()) {
      const earliest = blob.earliestTimer(domain);
      if (earliest === null || earliest > upTo) continue;
      for (const [key, row] of blob.rows) {
        if (row.v === undefined) continue;
        const t = timerPartsOf(key);
        if (t && t.domain === domain && t.timestamp <= upTo) due.push({ timer: parseTimerEntryKey(key, row.g)!, key, blob });
      }
    }
    due.sort((a, b) => a.timer.timestamp - b.timer.timestamp || a.timer.keyGroup - b.timer.keyGroup || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const d of due) this.modify(d.blob, d.key, { g: d.timer.keyGroup, m: this.body.cap });
    return due.map((d) => d.timer);
  }

  nextTimer(domain: Timer['domain']): number | undefined {
    this.requireHead();
    const slot = domain === 'event' ? 0 : 1;
    let next: number | undefined;
    const consider = (t: number | null | undefined) => {
      if (t !== null && t !== undefined && (next === undefined || t < next)) next = t;
    };
    // The head's index is the committed earliest timer per leaf; leaves this step changed answer for themselves.
    for (const [id, mins] of Object.entries(this.body.tmin)) if (!this.touched.has(id)) consider(mins[slot]);
    for (const id of this.touched) consider(this.blobs.get(id)?.earliestTimer(domain));
    return next;
  }

  /*
   * Commit protocol. v = committed version read at step start, r = its claim counter, m = r + 1 our claim.
   * Leaf items carry cur rows `d`, `ver` (version being built by their writer), `c` (writer's claim) and undo `u`
   * (how to get the rows committed before that write back). Readers at version v take `d` when ver <= v, else `d`
   * rolled back by `u` (ver = v + 1: a claimant of v wrote it and did not commit, or has not yet). P = leaves already
   * pending from attempts at v that died earlier, W = the leaves A writes, W' = those B writes.
   *
   *   attempt A (base v, read r)                     control row                          successor B (base v)
   *   ─────────────────────────                      ───────────                          ────────────────────
   *   1 claim: cn = m, pend ∪= W     if cn = r  ──▶  v, cn=m, owner A, pend P∪W
   *   2 put leaves of W, tagged                                                            read: v, cn=m, pend P∪W
   *     (ver v+1, c m) if c <= m     ──▶ leaves                                            loads leaves: ver v+1 ⇒ undo
   *     ╳ A dies, or stalls (zombie)                                                      1 claim: cn = m'=m+1, pend
   *                                                                                          ∪= its W' ∪ P ∪ W   if cn = m
   *   2' A wakes: put leaf X          ✗ if B already wrote X (c = m' > m)                 2 put W' and rewrite every leaf
   *      (or lands first; B's put then overwrites it: c = m <= m')                           of P∪W to its committed rows
   *   3 commit: v+1, cn = m+1         ✗ cn is m' now: StateFencedError                     3 commit: ver v+1, cn m'+1,
   *     if cn = m                                                                            pend removed   if cn = m'
   *
   * Invariants that make this exactly-once:
   *  - every mutation of the control row (claim or commit) bumps cn, and each is conditioned on the cn the attempt
   *    read or set, so at most one attempt per version commits, and only on the state it read;
   *  - a leaf is written only by a claimant that first listed it in `pend`, so after a crash anywhere the committed
   *    version plus `pend` tells the next attempt every leaf that may hold uncommitted rows; the next committer
   *    rewrites (or deletes, when no longer in the layout) all of them before its commit, so after any commit every
   *    leaf with ver <= version holds committed rows, and `ver <= v` stays a sound test;
   *  - claims only grow, and a leaf write requires c <= own claim, so once the newest claimant has written a leaf,
   *    no older (zombie) attempt can overwrite it, before or after the commit;
   *  - the undo always leads back to version v's rows: a writer computes it from the rows it resolved at v, whether
   *    the leaf's `d` was committed or a dead attempt's garbage;
   *  - a reader that sees a leaf with c above the counter it read knows somebody claimed after it started: it fences
   *    itself before computing anything from mixed versions (its commit would fail anyway);
   *  - a claim or commit that failed its condition because our own earlier attempt succeeded (lost response, SDK
   *    retry) is recognized by `owner`; leaf writes are idempotent under `c <= m`.
   * Leaves are written with plain conditional PutItem (1 write unit per KB), not TransactWriteItems (2 per KB, and at
   * most 100 items / 4 MB): the claim makes the writes fenced, and `pend` makes them undoable.
   */
  async commit(control: ControlRow): Promise<void> {
    const h = await this.ensureHead();
    if (control.version !== h.version + 1) {
      throw new CommitFencedError(`commit of ${this.name()} with version ${control.version} fenced: expected ${h.version + 1}`);
    }
    // Leaves a failed attempt at this version may have written: rewrite them as committed, or delete them.
    const deletes = new Set(this.body.orphans);
    const rewrite = h.pend.filter((id) => this.layout.contains(id));
    for (const id of h.pend) if (!this.layout.contains(id)) deletes.add(id);
    await this.load(rewrite);
    for (const id of rewrite) this.touched.add(id);
    this.purgeTombstones();

    const writes = this.encodeTouched();
    const orphans = writes.orphans;
    for (const id of writes.items.keys()) deletes.delete(id);
    const leafWrites: LeafWrite[] = [...writes.items.values(), ...[...deletes].map((id) => ({ id, delete: true as const }))];

    let claim: number | undefined;
    if (leafWrites.length > 0) {
      claim = h.cn + 1;
      const pend = [...new Set([...h.pend, ...leafWrites.map((w) => w.id)])].sort();
      await this.claimHead({ exists: h.exists, expectedCn: h.cn, claim, owner: this.attempt, inc: h.inc, pend });
      const c = claim;
      await inParallel(leafWrites, this.tuning.writeConcurrency, (w) => this.writeLeaf(h.inc, w, h.version + 1, c));
    }

    for (const id of writes.items.keys()) this.updateTimerIndex(id);
    for (const id of deletes) delete this.body.tmin[id];
    const b = this.body;
    const body: HeadBody = {
      control,
      ops: b.ops,
      cap: b.cap,
      dirty: [...b.dirty].sort(),
      tmin: b.tmin,
      layout: this.layout.toJSON(),
      orphans,
      kgpi: this.layout.keyGroupsPerItem,
    };
    const next: Head = { exists: true, version: h.version + 1, cn: (claim ?? h.cn) + 1, inc: h.inc, owner: this.attempt, pend: [], body };
    await this.commitHead({ exists: h.exists || claim !== undefined, expectedCn: claim ?? h.cn, head: next });

    for (const id of writes.items.keys()) this.blobs.get(id)!.committed();
    this.touched.clear();
    this.begin(next);
    this.cachedAt = { cn: next.cn, inc: next.inc };
    this.evict();
  }

  /** Drops tombstones of intervals already captured (a capture still reading them has pinned them first). */
  private purgeTombstones(): void {
    for (const id of this.touched) {
      const blob = this.blobs.get(id)!;
      for (const [key, row] of blob.rows) if (row.v === undefined && row.m < this.body.cap) this.modify(blob, key, undefined, false);
    }
  }

  /** Encodes the touched leaves, splitting those whose rows grew beyond `maxItemBytes` until they fit. */
  private encodeTouched(): { items: Map<string, LeafWrite>; orphans: string[] } {
    const items = new Map<string, LeafWrite>();
    const orphans: string[] = [];
    const queue = [...this.touched];
    while (queue.length > 0) {
      const id = queue.pop()!;
      const blob = this.blobs.get(id)!;
      const { d, u } = blob.encode();
      const bytes = d.byteLength + (u?.byteLength ?? 0);
      if (d.byteLength > this.tuning.maxItemBytes && blob.rows.size > 1 && parseLeafId(id).depth < MAX_LEAF_DEPTH) {
        queue.push(...this.split(blob));
        orphans.push(id);
        continue;
      }
      if (bytes > HARD_ITEM_BYTES) {
        throw new FloeError(
          ErrorCode.LimitExceeded,
          `state of ${this.name()} in leaf ${id} needs ${bytes} bytes, more than a DynamoDB item holds (${HARD_ITEM_BYTES} bytes allowed); a single value is too large`,
        );
      }
      items.set(id, { id, d, u });
    }
    return { items, orphans };
  }

  /** Splits a leaf in two by the next hash bit; the halves are new items, the old one becomes an orphan. */
  private split(blob: PackedBlob): string[] {
    if (this.captures.size > 0) this.pin(blob);
    const { depth } = parseLeafId(blob.id);
    const [low, high] = this.layout.splitLeaf(blob.id);
    const halves = [new Map<string, PackedRow>(), new Map<string, PackedRow>()];
    for (const [key, row] of blob.rows) halves[(bucketHash(recordKeyOf(key)) >>> depth) & 1]!.set(key, row);
    const ids = [low, high];
    this.blobs.delete(blob.id);
    this.touched.delete(blob.id);
    delete this.body.tmin[blob.id];
    const dirty = this.body.dirty.delete(blob.id);
    ids.forEach((id, i) => {
      this.blobs.set(id, PackedBlob.of(id, halves[i]!, false));
      this.touched.add(id);
      if (dirty) this.body.dirty.add(id);
    });
    return ids;
  }

  private updateTimerIndex(id: string): void {
    const blob = this.blobs.get(id)!;
    const ev = blob.earliestTimer('event');
    const proc = blob.earliestTimer('processing');
    if (ev === null && proc === null) delete this.body.tmin[id];
    else this.body.tmin[id] = [ev, proc];
  }

  private evict(): void {
    const excess = this.blobs.size - this.tuning.maxCachedItems;
    if (excess <= 0) return;
    let n = 0;
    for (const id of this.blobs.keys()) {
      if (n++ >= excess) break;
      this.blobs.delete(id);
    }
  }

  // ---- snapshots ----

  captureSnapshot(options: { mode: CaptureMode; checkpointId: number; uids: readonly string[]; keyGroups: readonly [number, number] }): StateSnapshotWriter {
    const h = this.requireHead();
    const { checkpointId, uids, keyGroups } = options;
    const k = this.body.cap;
    const previous = this.chain;
    let mode = options.mode;
    if (mode === 'incremental' && (!previous || previous.seq !== k - 1 || Object.values(previous.chain).some((c) => c.length >= MAX_CHAIN_LENGTH))) mode = 'full';

    // The leaves this capture needs, as they are at the barrier: loaded ones are copied now; the others are read
    // later at version v (they have not changed in this step, or a change pins them first).
    const dirty = new Set(this.body.dirty);
    const layout = this.layout.copy();
    const needs = mode === 'incremental' ? (id: string) => dirty.has(id) : (id: string) => layout.contains(id);
    const pending: PendingCapture = { needs, pins: new Map() };
    for (const blob of this.blobs.values()) if (needs(blob.id)) pending.pins.set(blob.id, blob.snapshot());
    this.captures.add(pending);
    if (mode !== 'canonical') {
      this.body.cap = k + 1;
      this.body.dirty = new Set();
      this.chain = undefined; // set again once the files are written
    }
    const inc = h.inc;
    const version = h.version;
    const exists = h.exists;
    const nonce = newId();

    return {
      write: async (storage: CheckpointStorage, location: SnapshotLocation): Promise<Record<string, WrittenState>> => {
        try {
          let contents: Map<string, Map<string, PackedRow>>;
          try {
            contents = await this.readAtBarrier(pending, mode === 'incremental' ? [...dirty] : undefined, inc, version, exists);
          } finally {
            this.captures.delete(pending);
          }
          const result = await this.writeFiles(contents, { mode, k, uids, keyGroups, checkpointId, nonce, previous }, storage, location);
          if (mode !== 'canonical') {
            const chain: StoredChain = { inc, seq: k, chain: Object.fromEntries(Object.entries(result).map(([uid, w]) => [uid, w.handles])) };
            await this.writeChain(chain);
            if (!this.chain || this.chain.seq <= k) this.chain = chain;
          }
          return result;
        } catch (e) {
          // The chain this capture would extend is unknown now: the next non-canonical capture is full.
          if (mode !== 'canonical' && (this.chain === undefined || this.chain.seq <= k)) this.chain = undefined;
          throw e;
        }
      },
    };
  }

  /** The rows of the leaves a capture needs, as of the barrier: pinned copies, else stored leaves resolved to version v. */
  private async readAtBarrier(
    pending: PendingCapture,
    ids: readonly string[] | undefined,
    inc: string,
    version: number,
    exists: boolean,
  ): Promise<Map<string, Map<string, PackedRow>>> {
    const contents = new Map(pending.pins);
    if (!exists) return contents;
    const stored = ids ? await this.readLeaves(inc, ids.filter((id) => !pending.pins.has(id))) : await this.readAllLeaves(inc);
    for (const [id, item] of stored) {
      if (pending.pins.has(id) || !pending.needs(id)) continue;
      if (item.ver > version + 1) {
        throw new FloeError(ErrorCode.Storage, `state of ${this.name()} changed twice before its snapshot at version ${version} was read; the checkpoint is declined`, {
          retryable: true,
        });
      }
      contents.set(id, PackedBlob.resolve(id, item.d, item.u, item.ver <= version).rows);
    }
    for (const [id, pinned] of pending.pins) contents.set(id, pinned);
    return contents;
  }

  /** Writes one JSONL file per uid (`[g, key, value]`, `[g, key]` for a tombstone), as the in-memory store does. */
  private async writeFiles(
    contents: Map<string, Map<string, PackedRow>>,
    c: { mode: CaptureMode; k: number; uids: readonly string[]; keyGroups: readonly [number, number]; checkpointId: number; nonce: string; previous: StoredChain | undefined },
    storage: CheckpointStorage,
    location: SnapshotLocation,
  ): Promise<Record<string, WrittenState>> {
    const lines = new Map<string, { g: number; key: string; line: string }[]>(c.uids.map((uid) => [uid, []]));
    for (const rows of contents.values()) {
      for (const [key, row] of rows) {
        const list = lines.get(key.slice(0, key.indexOf('\u0000')));
        if (!list) continue;
        if (c.mode === 'incremental' ? row.m !== c.k : row.v === undefined) continue;
        list.push({ g: row.g, key, line: encodeSnapshotLine(row.g, key, row.v) });
      }
    }
    const result: Record<string, WrittenState> = {};
    for (const uid of c.uids) {
      const entries = lines.get(uid)!;
      const chain = c.mode === 'incremental' ? [...(c.previous?.chain[uid] ?? [])] : [];
      let written = 0;
      if (entries.length > 0) {
        entries.sort((a, b) => a.g - b.g || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
        const bytes = new TextEncoder().encode(entries.map((e) => e.line).join('\n') + '\n');
        const file = `${uid}-${this.task.subtask}-chk${c.checkpointId}-${c.nonce}.jsonl`;
        let path: string;
        if (c.mode === 'canonical' || !location.sharedDir) {
          path = `state/${file}`;
          await storage.put(join(location.dir, path), bytes);
        } else {
          path = `../${location.sharedDir.split('/').pop()}/${file}`;
          await storage.put(resolveRelative(location.dir, path), bytes);
        }
        written = bytes.length;
        chain.push({ path, kind: c.mode === 'incremental' ? 'delta' : 'full', size: bytes.length, entries: entries.length, keyGroups: [c.keyGroups[0], c.keyGroups[1]] });
      }
      result[uid] = { handles: chain, bytesWritten: written, fullSize: chain.reduce((s, h) => s + h.size, 0) };
    }
    return result;
  }

  // ---- restore ----

  /**
   * Replaces all state of this subtask: the entries of the given handles in key groups `keyGroups` go into the leaves
   * of a new incarnation, then one conditional write of the control row (version 0, no runtime control row) switches
   * to it, and the old incarnation is deleted. A crash before the switch leaves only unreferenced items.
   */
  async restore(input: RestoreInput): Promise<void> {
    const { head } = await this.readHead();
    const entries = await readRestoredEntries(input);

    this.blobs.clear();
    this.touched.clear();
    this.captures.clear();
    this.chain = undefined;
    this.cachedAt = undefined;
    const fresh: Head = { exists: false, version: 0, cn: head?.cn ?? 0, inc: newId(), pend: [], body: emptyBody() };
    this.begin(fresh);
    for (const [key, e] of entries) {
      const blob = this.blobFor(e.g, key);
      this.modify(blob, key, { g: e.g, m: 0, v: e.v }, false);
    }
    const { items } = this.encodeTouched();
    await this.writeFreshLeaves(fresh.inc, [...items.values()].map((w) => ({ id: w.id, d: (w as { d: Uint8Array }).d, u: undefined })));
    for (const id of items.keys()) this.updateTimerIndex(id);

    const body: HeadBody = {
      ops: Object.fromEntries(Object.entries(input.operators).map(([uid, op]) => [uid, [...op.operatorState]])),
      cap: 0,
      dirty: [],
      tmin: this.body.tmin,
      layout: this.layout.toJSON(),
      orphans: [],
      kgpi: this.layout.keyGroupsPerItem,
    };
    const next: StoredHead = { version: 0, cn: (head?.cn ?? 0) + 1, inc: fresh.inc, owner: this.attempt, pend: [], body };
    try {
      await this.commitHead({ exists: head !== undefined, expectedCn: head?.cn ?? 0, head: next });
    } finally {
      this.blobs.clear();
      this.touched.clear();
      this.head = undefined;
    }
    if (head) await this.dropIncarnation(head.inc);
  }
}
