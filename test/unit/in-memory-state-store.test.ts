import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InMemoryStateStore, InMemorySubtaskState } from '../../lib/adapters/local/in-memory-state-store.js';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { resolveRelative } from '../../lib/core/manifest/layout.js';
import type { StateHandle } from '../../lib/core/manifest/model.js';
import { CommitFencedError } from '../../lib/core/errors.js';
import { stateEntryKey, type CaptureMode, type CheckpointStorage, type ControlRow, type Timer, type WrittenState } from '../../lib/ports/index.js';
import { makeTempDir, removeTempDir } from '../support/builders.js';

// Chains longer than this are compacted into a full snapshot (MAX_CHAIN_LENGTH in the store; not exported).
const MAX_CHAIN_LENGTH = 10;

/** Local storage whose every write fails. */
class FullDiskStorage extends FileCheckpointStorage {
  override async put(): Promise<void> {
    throw new Error('disk full');
  }
}

let root: string;
const storage = new FileCheckpointStorage();
beforeEach(async () => {
  root = await makeTempDir('floe-state-');
});
afterEach(async () => {
  await removeTempDir(root);
});

const key = (recordKey: string, name = 'count', uid = 'op') => stateEntryKey(uid, name, JSON.stringify(recordKey));
const dirOf = (id: number) => `${root}/checkpoints/chk-${id}`;
const location = (id: number, shared = true) => ({ dir: dirOf(id), checkpointId: id, ...(shared ? { sharedDir: `${root}/checkpoints/shared` } : {}) });

function aSubtaskState(subtask = 0): InMemorySubtaskState {
  return new InMemoryStateStore().forSubtask({ vertex: 'op', subtask });
}

/** Captures `uids` of a subtask owning key groups [0, 8) and writes the snapshot for checkpoint `id`. */
async function snapshot(
  state: InMemorySubtaskState,
  mode: CaptureMode,
  id: number,
  options: { uids?: readonly string[]; keyGroups?: readonly [number, number]; to?: CheckpointStorage } = {},
): Promise<Record<string, WrittenState>> {
  const writer = state.captureSnapshot({ mode, checkpointId: id, uids: options.uids ?? ['op'], keyGroups: options.keyGroups ?? [0, 8] });
  return writer.write(options.to ?? storage, location(id, mode !== 'canonical'));
}

/** The raw lines of one state file: `[keyGroup, key, value]`, or `[keyGroup, key]` for a tombstone. */
async function linesOf(dir: string, handle: StateHandle): Promise<unknown[][]> {
  const text = new TextDecoder().decode(await storage.get(resolveRelative(dir, handle.path)));
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown[]);
}

/** What a restored subtask holds for these record keys. */
function values(state: InMemorySubtaskState, recordKeys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(recordKeys.map((k) => [k, state.get(0, key(k))]));
}

describe('InMemorySubtaskState: snapshots', () => {
  it('writes the first incremental capture as a full file in the shared directory', async () => {
    const state = aSubtaskState();
    state.put(1, key('a'), 1);
    state.put(2, key('b'), 2);

    const written = await snapshot(state, 'incremental', 1);

    const handles = written['op']!.handles;
    expect(handles).toHaveLength(1);
    expect(handles[0]).toMatchObject({ kind: 'full', entries: 2, keyGroups: [0, 8] });
    expect(handles[0]!.path.startsWith('../shared/')).toBe(true);
    expect(resolveRelative(dirOf(1), handles[0]!.path).startsWith(`${root}/checkpoints/shared/`)).toBe(true);
    expect(await linesOf(dirOf(1), handles[0]!)).toEqual([
      [1, key('a'), 1],
      [2, key('b'), 2],
    ]);
  });

  it('writes only the keys changed since the previous capture as a delta chained onto it', async () => {
    // Given a full snapshot of a, b and c
    const state = aSubtaskState();
    state.put(1, key('a'), 1);
    state.put(2, key('b'), 2);
    state.put(3, key('c'), 3);
    const first = await snapshot(state, 'incremental', 1);

    // When b changes and d appears
    state.put(2, key('b'), 20);
    state.put(4, key('d'), 4);
    const second = await snapshot(state, 'incremental', 2);

    // Then checkpoint 2 references checkpoint 1's file and adds a delta with b and d only
    const handles = second['op']!.handles;
    expect(handles.map((h) => h.kind)).toEqual(['full', 'delta']);
    expect(handles[0]).toEqual(first['op']!.handles[0]);
    expect(await linesOf(dirOf(2), handles[1]!)).toEqual([
      [2, key('b'), 20],
      [4, key('d'), 4],
    ]);
    expect(second['op']!.bytesWritten).toBe(handles[1]!.size);
    expect(second['op']!.fullSize).toBe(handles[0]!.size + handles[1]!.size);
  });

  it('adds no file when nothing changed since the previous capture', async () => {
    const state = aSubtaskState();
    state.put(1, key('a'), 1);
    const first = await snapshot(state, 'incremental', 1);

    const second = await snapshot(state, 'incremental', 2);

    expect(second['op']).toEqual({ handles: first['op']!.handles, bytesWritten: 0, fullSize: first['op']!.fullSize });
  });

  it('records a deleted key as a tombstone (group and key, no value)', async () => {
    const state = aSubtaskState();
    state.put(1, key('a'), 1);
    state.put(2, key('b'), 2);
    await snapshot(state, 'incremental', 1);

    state.put(1, key('a'), undefined);
    const second = await snapshot(state, 'incremental', 2);

    expect(await linesOf(dirOf(2), second['op']!.handles[1]!)).toEqual([[1, key('a')]]);
  });

  it('writes no tombstone for deleting a key that does not exist', async () => {
    const state = aSubtaskState();
    state.put(1, key('a'), 1);
    await snapshot(state, 'incremental', 1);

    state.put(5, key('never'), undefined);
    const second = await snapshot(state, 'incremental', 2);

    expect(second['op']!.handles).toHaveLength(1);
  });

  it(`compacts the chain into a new full file once it is ${MAX_CHAIN_LENGTH} files long`, async () => {
    const state = aSubtaskState();
    const lengths: number[] = [];
    for (let id = 1; id <= MAX_CHAIN_LENGTH + 2; id++) {
      state.put(id % 8, key(`k${id}`), id);
      lengths.push((await snapshot(state, 'incremental', id))['op']!.handles.length);
    }

    expect(lengths).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]);
    const compacted = await snapshot(state, 'incremental', 99);
    expect(compacted['op']!.handles[0]).toMatchObject({ kind: 'full', entries: MAX_CHAIN_LENGTH + 1 });
  });

  it("starts a new chain with mode 'full'", async () => {
    const state = aSubtaskState();
    state.put(1, key('a'), 1);
    await snapshot(state, 'incremental', 1);
    state.put(2, key('b'), 2);

    const full = await snapshot(state, 'full', 2);

    expect(full['op']!.handles.map((h) => [h.kind, h.entries])).toEqual([['full', 2]]);
  });

  it('writes a canonical (savepoint) capture self-contained in its own directory and leaves the chain alone', async () => {
    // Given a chain of one full file, and a change since
    const state = aSubtaskState();
    state.put(1, key('a'), 1);
    state.put(2, key('b'), 2);
    const first = await snapshot(state, 'incremental', 1);
    state.put(2, key('b'), 20);

    // When a savepoint is captured
    const savepoint = await snapshot(state, 'canonical', 2);

    // Then it holds every entry in one full file under its own directory
    const handles = savepoint['op']!.handles;
    expect(handles.map((h) => [h.kind, h.path.startsWith('state/')])).toEqual([['full', true]]);
    expect(await storage.exists(`${dirOf(2)}/${handles[0]!.path}`)).toBe(true);
    expect(await linesOf(dirOf(2), handles[0]!)).toEqual([
      [1, key('a'), 1],
      [2, key('b'), 20],
    ]);
    // And the next checkpoint still chains onto checkpoint 1, with the change made before the savepoint
    const next = await snapshot(state, 'incremental', 3);
    expect(next['op']!.handles[0]).toEqual(first['op']!.handles[0]);
    expect(next['op']!.handles.map((h) => h.kind)).toEqual(['full', 'delta']);
    expect(await linesOf(dirOf(3), next['op']!.handles[1]!)).toEqual([[2, key('b'), 20]]);
  });

  it('captures state at the barrier: writes made before the asynchronous write are not in it', async () => {
    const state = aSubtaskState();
    state.put(1, key('a'), 1);
    const writer = state.captureSnapshot({ mode: 'full', checkpointId: 1, uids: ['op'], keyGroups: [0, 8] });

    state.put(1, key('a'), 2);
    state.put(2, key('b'), 2);
    const written = await writer.write(storage, location(1));

    expect(await linesOf(dirOf(1), written['op']!.handles[0]!)).toEqual([[1, key('a'), 1]]);
  });

  it('captures only the listed operators, and gives a stateless one an empty chain', async () => {
    const state = aSubtaskState();
    state.put(1, key('a', 'count', 'op'), 1);
    state.put(1, key('a', 'count', 'other'), 1);

    const written = await snapshot(state, 'full', 1, { uids: ['op', 'empty'] });

    expect(Object.keys(written).sort()).toEqual(['empty', 'op']);
    expect(written['empty']).toEqual({ handles: [], bytesWritten: 0, fullSize: 0 });
    expect(await linesOf(dirOf(1), written['op']!.handles[0]!)).toEqual([[1, key('a', 'count', 'op'), 1]]);
  });

  it('falls back to a full capture after a write failed (the chain it would extend is unknown)', async () => {
    const state = aSubtaskState();
    state.put(1, key('a'), 1);
    await snapshot(state, 'incremental', 1);
    state.put(2, key('b'), 2);
    await expect(snapshot(state, 'incremental', 2, { to: new FullDiskStorage() })).rejects.toThrow('disk full');

    const after = await snapshot(state, 'incremental', 3);

    expect(after['op']!.handles.map((h) => [h.kind, h.entries])).toEqual([['full', 2]]);
  });
});

describe('InMemorySubtaskState: restore', () => {
  const restoreFrom = async (target: InMemorySubtaskState, dir: string, chains: StateHandle[][], keyGroups: [number, number] = [0, 8], operatorState: unknown[] = []) =>
    target.restore({ storage, manifestDir: dir, keyGroups, operators: { op: { keyedState: chains, operatorState } } });

  it('applies the full file and then each delta in order (updates and tombstones)', async () => {
    // Given a chain: full {a:1, b:2, c:3} → delta {b:20, a deleted} → delta {c:30}
    const state = aSubtaskState();
    state.put(1, key('a'), 1);
    state.put(2, key('b'), 2);
    state.put(3, key('c'), 3);
    await snapshot(state, 'incremental', 1);
    state.put(2, key('b'), 20);
    state.put(1, key('a'), undefined);
    await snapshot(state, 'incremental', 2);
    state.put(3, key('c'), 30);
    const last = await snapshot(state, 'incremental', 3);
    expect(last['op']!.handles.map((h) => h.kind)).toEqual(['full', 'delta', 'delta']);

    // When a fresh subtask restores checkpoint 3
    const restored = aSubtaskState();
    await restoreFrom(restored, dirOf(3), [last['op']!.handles]);

    // Then it holds exactly the live state
    expect(values(restored, ['a', 'b', 'c'])).toEqual({ a: undefined, b: 20, c: 30 });
    expect(restored.size()).toBe(2);
  });

  it('keeps only the key groups of its range, and skips files whose range does not overlap it', async () => {
    const state = aSubtaskState();
    for (let g = 0; g < 8; g++) state.put(g, key(`g${g}`), g);
    const written = await snapshot(state, 'full', 1);
    const elsewhere: StateHandle = { path: 'state/does-not-exist.jsonl', kind: 'full', size: 1, entries: 1, keyGroups: [8, 16] };

    const restored = aSubtaskState();
    await restoreFrom(restored, dirOf(1), [written['op']!.handles, [elsewhere]], [2, 5]);

    expect(restored.size()).toBe(3);
    for (let g = 0; g < 8; g++) expect(restored.get(g, key(`g${g}`))).toBe(g >= 2 && g < 5 ? g : undefined);
  });

  it('merges the chains of several old subtasks when scaling down', async () => {
    // Given two old subtasks owning [0, 4) and [4, 8)
    const left = aSubtaskState(0);
    left.put(1, key('x'), 'left');
    const right = aSubtaskState(1);
    right.put(6, key('y'), 'right');
    const l = await snapshot(left, 'full', 1, { keyGroups: [0, 4] });
    const r = await snapshot(right, 'full', 1, { keyGroups: [4, 8] });

    // When one new subtask owning [0, 8) restores both
    const merged = aSubtaskState();
    await restoreFrom(merged, dirOf(1), [l['op']!.handles, r['op']!.handles], [0, 8], ['split-1', 'split-2']);

    // Then it has the keyed state of both and the operator state it was given
    expect(values(merged, ['x', 'y'])).toEqual({ x: 'left', y: 'right' });
    expect(merged.getOperatorState('op')).toEqual(['split-1', 'split-2']);
  });

  it('rebuilds timers of its key groups, so they fire after the restore', async () => {
    const state = aSubtaskState();
    const timer = (keyGroup: number, timestamp: number, domain: Timer['domain'] = 'event'): Timer => ({ uid: 'op', domain, timestamp, keyGroup, recordKey: `"k${keyGroup}"` });
    state.registerTimer(timer(1, 30));
    state.registerTimer(timer(2, 10));
    state.registerTimer(timer(6, 20));
    state.registerTimer(timer(3, 5, 'processing'));
    const written = await snapshot(state, 'full', 1);

    const restored = aSubtaskState();
    await restoreFrom(restored, dirOf(1), [written['op']!.handles], [0, 4]);

    expect(await restored.popDueTimers('event', 100)).toEqual([timer(2, 10), timer(1, 30)]);
    expect(await restored.popDueTimers('processing', 100)).toEqual([timer(3, 5, 'processing')]);
  });

  it('drops every previous entry, timer, operator state and the control row', async () => {
    const state = aSubtaskState();
    state.put(1, key('stale'), 1);
    state.setOperatorState('op', ['old']);
    state.registerTimer({ uid: 'op', domain: 'event', timestamp: 1, keyGroup: 1, recordKey: '"stale"' });
    await state.commit(control(1));

    await restoreFrom(state, dirOf(1), [], [0, 8], ['new']);

    expect(state.size()).toBe(0);
    expect(state.getOperatorState('op')).toEqual(['new']);
    expect(await state.popDueTimers('event', 100)).toEqual([]);
    expect(await state.readControl()).toBeUndefined();
  });

  it('starts a new chain after a restore: the first capture is full', async () => {
    const state = aSubtaskState();
    state.put(1, key('a'), 1);
    const written = await snapshot(state, 'incremental', 1);
    const restored = aSubtaskState();
    await restoreFrom(restored, dirOf(1), [written['op']!.handles]);

    const next = await snapshot(restored, 'incremental', 2);

    expect(next['op']!.handles.map((h) => [h.kind, h.entries])).toEqual([['full', 1]]);
  });
});

describe('InMemorySubtaskState: timers', () => {
  const t = (timestamp: number, recordKey = '"k"', domain: Timer['domain'] = 'event'): Timer => ({ uid: 'op', domain, timestamp, keyGroup: 1, recordKey });

  it.each<[string, Timer[], Timer[], number, number[]]>([
    ['in timestamp order', [t(30), t(10), t(20)], [], 100, [10, 20, 30]],
    ['up to and including upTo', [t(10), t(20), t(21)], [], 20, [10, 20]],
    ['once when registered twice', [t(10), t(10), t(5)], [], 100, [5, 10]],
    ['without deleted ones', [t(10), t(20)], [t(10)], 100, [20]],
    ['of the asked domain only', [t(10), t(5, '"k"', 'processing')], [], 100, [10]],
    ['none before any is due', [t(10)], [], 9, []],
  ])('pops due timers %s', async (_case, registered, deleted, upTo, expected) => {
    const state = aSubtaskState();
    for (const timer of registered) state.registerTimer(timer);
    for (const timer of deleted) state.deleteTimer(timer);

    const due = await state.popDueTimers('event', upTo);

    expect(due.map((d) => d.timestamp)).toEqual(expected);
  });

  it('removes popped timers: they do not fire twice and are not in the next snapshot', async () => {
    const state = aSubtaskState();
    state.registerTimer(t(10, '"a"'));
    state.registerTimer(t(10, '"b"'));
    state.registerTimer(t(50, '"c"'));

    const first = await state.popDueTimers('event', 10);
    const second = await state.popDueTimers('event', 10);

    expect(first.map((d) => d.recordKey).sort()).toEqual(['"a"', '"b"']);
    expect(second).toEqual([]);
    expect(state.size()).toBe(1);
  });

  it('fires a timer registered again after it fired', async () => {
    const state = aSubtaskState();
    state.registerTimer(t(10));
    await state.popDueTimers('event', 10);

    state.registerTimer(t(10));

    expect((await state.popDueTimers('event', 10)).map((d) => d.timestamp)).toEqual([10]);
  });
});

function control(version: number): ControlRow {
  return { version, gen: 1, epoch: 0, inputs: {}, outputs: {}, held: [], watermark: 0, roundRobin: 0, finished: false };
}

describe('InMemorySubtaskState: commit fencing', () => {
  it.each([
    ['the same version twice', [1, 1]],
    ['a version that skips one', [1, 3]],
    ['a first commit that is not version 1', [2]],
  ])('refuses %s with CommitFencedError', async (_case, versions) => {
    const state = aSubtaskState();
    const last = versions.pop()!;
    for (const v of versions) await state.commit(control(v));

    await expect(state.commit(control(last))).rejects.toBeInstanceOf(CommitFencedError);
    expect((await state.readControl())?.version).toBe(versions.at(-1));
  });

  it('accepts versions 1, 2, 3 in turn', async () => {
    const state = aSubtaskState();
    for (const v of [1, 2, 3]) await state.commit(control(v));
    expect((await state.readControl())?.version).toBe(3);
  });
});

describe('InMemoryStateStore', () => {
  it('gives each subtask its own state, the same instance on every call, and forgets all on clear', async () => {
    const store = new InMemoryStateStore();
    store.forSubtask({ vertex: 'v', subtask: 0 }).put(1, key('a'), 1);

    expect(store.forSubtask({ vertex: 'v', subtask: 0 }).get(1, key('a'))).toBe(1);
    expect(store.forSubtask({ vertex: 'v', subtask: 1 }).get(1, key('a'))).toBeUndefined();
    await store.clear();
    expect(store.forSubtask({ vertex: 'v', subtask: 0 }).get(1, key('a'))).toBeUndefined();
  });
});
