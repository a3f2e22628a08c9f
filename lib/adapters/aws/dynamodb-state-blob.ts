import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { murmur3 } from '../../graph/key-groups.js';
import { TIMER_STATE_PREFIX, type Timer } from '../../ports/index.js';

/**
 * Packed keyed state: many entries of one subtask share one DynamoDB item (a "leaf"), so a step rewrites a handful
 * of items instead of one per entry. A leaf holds the entries of one aligned segment of key groups (`seg` is its first
 * key group) whose record key hashes into `bucket` at `depth` bits; a leaf that grows too large splits in two by the
 * next hash bit (extendible hashing), so items stay far below DynamoDB's 400 KB.
 */

/** One entry in a leaf: key group, the capture interval it last changed in (`m`), and its value; no value is a tombstone. */
export interface PackedRow {
  readonly g: number;
  readonly m: number;
  readonly v?: unknown;
}

/** The committed content of a leaf, relative to what is stored in `d`: `e` = the leaf did not exist; `r` = rows to restore. */
interface Undo {
  readonly e?: 1;
  readonly r?: readonly UndoRow[];
}

/**
 * A committed row that differs from `d`. For a key still in `d`, its index there: `[i]` = absent, `[i, m]` = a
 * tombstone, `[i, m, v]` = a live row (key group as in `d`). For a key gone from `d`, the key itself:
 * `[key, g, m]` = a tombstone, `[key, g, m, v]` = a live row.
 */
type UndoRow =
  | readonly [number]
  | readonly [number, number]
  | readonly [number, number, unknown]
  | readonly [string, number, number]
  | readonly [string, number, number, unknown];
type EncodedRow = readonly [string, number, number] | readonly [string, number, number, unknown];

/** Splits deeper than this are refused: 2^16 leaves per segment is far beyond any sensible item size. */
export const MAX_LEAF_DEPTH = 16;

/** The record key part of a keyed-state entry key (`<uid>\0<name>\0<record key>`). */
export function recordKeyOf(entryKey: string): string {
  const a = entryKey.indexOf('\u0000');
  const b = entryKey.indexOf('\u0000', a + 1);
  return entryKey.slice(b + 1);
}

/** The domain and timestamp of a timer entry key, or undefined for other entries. */
export function timerPartsOf(entryKey: string): { domain: Timer['domain']; timestamp: number } | undefined {
  const a = entryKey.indexOf('\u0000');
  if (!entryKey.startsWith(TIMER_STATE_PREFIX, a + 1)) return undefined;
  const b = entryKey.indexOf('\u0000', a + 1);
  const [, domain, ts] = entryKey.slice(a + 1, b).split(':');
  return { domain: domain as Timer['domain'], timestamp: Number(ts) };
}

/** Hash that picks a record key's bucket; seeded so its bits are independent of the key group's. */
export function bucketHash(recordKey: string): number {
  return murmur3(recordKey, 0x5f3759df);
}

/** A leaf's id, `<seg>.<depth>.<bucket>`: also the tail of its sort key. */
export function leafId(seg: number, depth: number, bucket: number): string {
  return `${seg}.${depth}.${bucket}`;
}

/** Splits a leaf id into its parts. */
export function parseLeafId(id: string): { seg: number; depth: number; bucket: number } {
  const [seg, depth, bucket] = id.split('.').map(Number);
  return { seg: seg!, depth: depth!, bucket: bucket! };
}

/**
 * Which leaves hold each segment: a segment never split is the single leaf `<seg>.0.0`; a split one is listed with its
 * leaves (`<depth>.<bucket>`). The listing is committed with the control row.
 */
export class PackedLayout {
  private readonly split: Map<number, Set<string>>;

  constructor(
    readonly keyGroupsPerItem: number,
    split: Readonly<Record<string, readonly string[]>> = {},
  ) {
    this.split = new Map(Object.entries(split).map(([seg, leaves]) => [Number(seg), new Set(leaves)]));
  }

  /** The first key group of the segment holding key group `g`. */
  segmentOf(g: number): number {
    return g - (g % this.keyGroupsPerItem);
  }

  /** The leaf holding a record key of key group `g`. */
  leafFor(g: number, recordKey: string): string {
    const seg = this.segmentOf(g);
    const leaves = this.split.get(seg);
    if (!leaves) return leafId(seg, 0, 0);
    const h = bucketHash(recordKey);
    for (let d = 0; d <= MAX_LEAF_DEPTH; d++) {
      const b = d === 0 ? 0 : h & ((1 << d) - 1);
      if (leaves.has(`${d}.${b}`)) return leafId(seg, d, b >>> 0);
    }
    throw new Error(`leaf layout of segment ${seg} has no leaf for hash ${h}`);
  }

  /** True when `id` is a leaf of the layout (its segment is split that way, or it is an unsplit segment's only leaf). */
  contains(id: string): boolean {
    const { seg, depth, bucket } = parseLeafId(id);
    const leaves = this.split.get(seg);
    return leaves ? leaves.has(`${depth}.${bucket}`) : depth === 0 && bucket === 0;
  }

  /** Replaces leaf `id` by its two halves (by hash bit `depth`) and returns their ids. */
  splitLeaf(id: string): [string, string] {
    const { seg, depth, bucket } = parseLeafId(id);
    let leaves = this.split.get(seg);
    if (!leaves) this.split.set(seg, (leaves = new Set(['0.0'])));
    leaves.delete(`${depth}.${bucket}`);
    const high = (bucket | (1 << depth)) >>> 0;
    leaves.add(`${depth + 1}.${bucket}`);
    leaves.add(`${depth + 1}.${high}`);
    return [leafId(seg, depth + 1, bucket), leafId(seg, depth + 1, high)];
  }

  /** A copy that later splits do not affect. */
  copy(): PackedLayout {
    return new PackedLayout(this.keyGroupsPerItem, this.toJSON());
  }

  /** The split segments and their leaves, as committed. */
  toJSON(): Record<string, string[]> {
    return Object.fromEntries([...this.split].map(([seg, leaves]) => [String(seg), [...leaves].sort()]));
  }
}

const NO_TIMER = null;

/** One leaf's entries in memory, with what it must remember to be written back: its committed rows of changed keys. */
export class PackedBlob {
  /** Committed row (or absence) of every key changed since the blob was loaded or last committed. */
  private base: Map<string, PackedRow | undefined> | undefined;
  /** Earliest live timer per domain; undefined = unknown, recomputed on demand. */
  private minTimer: Record<Timer['domain'], number | null | undefined> = { event: undefined, processing: undefined };

  private constructor(
    readonly id: string,
    readonly rows: Map<string, PackedRow>,
    /** The leaf exists in the committed state (else it is new, and its committed content is "absent"). */
    private existed: boolean,
  ) {}

  /** A leaf that does not exist yet. */
  static absent(id: string): PackedBlob {
    return new PackedBlob(id, new Map(), false);
  }

  /** A leaf with the given rows, as committed. */
  static of(id: string, rows: Map<string, PackedRow>, existed: boolean): PackedBlob {
    return new PackedBlob(id, rows, existed);
  }

  /**
   * The committed content of a stored leaf: `d` when it was committed, or `d` rolled back by its undo `u` when the
   * writer's version is not committed yet (see the timeline in dynamodb-state-subtask.ts).
   */
  static resolve(id: string, d: Uint8Array, u: Uint8Array | undefined, committed: boolean): PackedBlob {
    const encoded = inflateJson(d) as EncodedRow[];
    const rows = rowsOf(encoded);
    if (committed || u === undefined) return new PackedBlob(id, rows, true);
    const undo = inflateJson(u) as Undo;
    if (undo.e) return new PackedBlob(id, new Map(), false);
    for (const r of undo.r ?? []) {
      if (typeof r[0] === 'string') {
        const [key, g, m, v] = r as readonly [string, number, number, unknown?];
        rows.set(key, r.length === 4 ? { g, m, v } : { g, m });
        continue;
      }
      const [key, g] = encoded[r[0]]!;
      if (r.length === 1) rows.delete(key);
      else rows.set(key, r.length === 3 ? { g, m: r[1] as number, v: r[2] } : { g, m: r[1] as number });
    }
    return new PackedBlob(id, rows, true);
  }

  /** True when some key changed since the last commit. */
  get changed(): boolean {
    return this.base !== undefined && this.base.size > 0;
  }

  /** Sets (or with `undefined`, removes) a row, remembering the committed row the first time a key changes. */
  set(key: string, row: PackedRow | undefined): void {
    const before = this.rows.get(key);
    if (!this.base) this.base = new Map();
    if (!this.base.has(key)) this.base.set(key, before);
    if (row === undefined) this.rows.delete(key);
    else this.rows.set(key, row);
    const timer = timerPartsOf(key);
    if (!timer) return;
    const known = this.minTimer[timer.domain];
    if (row?.v !== undefined) {
      if (known !== undefined && (known === null || timer.timestamp < known)) this.minTimer[timer.domain] = timer.timestamp;
    } else if (before?.v !== undefined && known === timer.timestamp) {
      this.minTimer[timer.domain] = undefined;
    }
  }

  /** The earliest live timer of a domain in this leaf, or null. */
  earliestTimer(domain: Timer['domain']): number | null {
    let known = this.minTimer[domain];
    if (known === undefined) {
      known = NO_TIMER;
      for (const [key, row] of this.rows) {
        if (row.v === undefined) continue;
        const t = timerPartsOf(key);
        if (t && t.domain === domain && (known === null || t.timestamp < known)) known = t.timestamp;
      }
      this.minTimer[domain] = known;
    }
    return known;
  }

  /** A copy of the rows as they are now (rows are immutable, so a shallow copy is a snapshot). */
  snapshot(): Map<string, PackedRow> {
    return new Map(this.rows);
  }

  /** Stored form: `d` = the rows; `u` = how to get the committed rows back (absent when they are `d`). */
  encode(): { d: Uint8Array; u: Uint8Array | undefined } {
    const index = new Map<string, number>();
    const d = deflateJson(
      [...this.rows].map(([key, r], i) => {
        index.set(key, i);
        return encodeRow(key, r);
      }),
    );
    if (!this.existed) return { d, u: deflateJson({ e: 1 } satisfies Undo) };
    const undo: UndoRow[] = [];
    for (const [key, committed] of this.base ?? []) {
      if (this.rows.get(key) === committed) continue;
      const i = index.get(key);
      if (i === undefined) undo.push(encodeRow(key, committed!));
      else undo.push(committed === undefined ? [i] : committed.v === undefined ? [i, committed.m] : [i, committed.m, committed.v]);
    }
    return { d, u: undo.length === 0 ? undefined : deflateJson({ r: undo } satisfies Undo) };
  }

  /** The current rows are now the committed ones. */
  committed(): void {
    this.base = undefined;
    this.existed = true;
  }
}

function encodeRow(key: string, r: PackedRow): EncodedRow {
  return r.v === undefined ? [key, r.g, r.m] : [key, r.g, r.m, r.v];
}

function rowsOf(encoded: readonly EncodedRow[]): Map<string, PackedRow> {
  const rows = new Map<string, PackedRow>();
  for (const r of encoded) rows.set(r[0], r.length === 4 ? { g: r[1], m: r[2], v: r[3] } : { g: r[1], m: r[2] });
  return rows;
}

/** JSON, deflated (raw deflate: no header, no checksum; DynamoDB already guards integrity). */
export function deflateJson(value: unknown): Uint8Array {
  return deflateRawSync(Buffer.from(JSON.stringify(value), 'utf8'));
}

/** The inverse of {@link deflateJson}. */
export function inflateJson(bytes: Uint8Array): unknown {
  return JSON.parse(inflateRawSync(bytes).toString('utf8'));
}
