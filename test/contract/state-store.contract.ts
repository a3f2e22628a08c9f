import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { resolveRelative } from '../../lib/core/manifest/layout.js';
import type { StateHandle } from '../../lib/core/manifest/model.js';
import { CommitFencedError } from '../../lib/core/errors.js';
import {
  stateEntryKey,
  type CaptureMode,
  type ControlRow,
  type StateStore,
  type SubtaskStateStore,
  type Timer,
  type WrittenState,
} from '../../lib/ports/index.js';
import { makeTempDir, removeTempDir } from '../support/builders.js';

// The behaviour every StateStore must share, run against the in-memory store and the DynamoDB store on the emulator.
// Tests follow the task step's protocol: readControl() begins a step, prefetch() loads the keys a batch touches,
// get/put are synchronous, commit() ends the step with the next version.

/** Makes an empty store; each call may return a new store over fresh (or shared, but unused) storage. */
export type StateStoreFactory = () => StateStore | Promise<StateStore>;

/** Serialized record key, as records carry it. */
const rk = (recordKey: string): string => JSON.stringify(recordKey);
/** An entry key of operator `uid`'s state `name` for a record key. */
const key = (recordKey: string, name = 'count', uid = 'op'): string => stateEntryKey(uid, name, rk(recordKey));

/** A control row with safe defaults. */
export function aControlRow(version: number, overrides: Partial<ControlRow> = {}): ControlRow {
  return { version, gen: 1, epoch: 0, inputs: {}, outputs: {}, held: [], watermark: 0, roundRobin: 0, finished: false, ...overrides };
}

/** Begins a step and prefetches the given `[keyGroup, recordKey]`s; returns the committed control row's version. */
export async function beginStep(state: SubtaskStateStore, keys: readonly (readonly [number, string])[] = []): Promise<number> {
  const control = await state.readControl();
  if (keys.length > 0) await state.prefetch(keys.map(([keyGroup, k]) => ({ keyGroup, key: rk(k) })));
  return control?.version ?? 0;
}

/** One whole step: begin, prefetch, run `body`, commit the next version. */
export async function runStep(state: SubtaskStateStore, keys: readonly (readonly [number, string])[], body: () => void | Promise<void>): Promise<void> {
  const version = await beginStep(state, keys);
  await body();
  await state.commit(aControlRow(version + 1));
}

/** The values a subtask holds for `[keyGroup, recordKey]`s, read in a step of their own. */
async function valuesOf(state: SubtaskStateStore, keys: readonly (readonly [number, string])[], name = 'count', uid = 'op'): Promise<Record<string, unknown>> {
  await beginStep(state, keys);
  return Object.fromEntries(keys.map(([g, k]) => [k, state.get(g, key(k, name, uid))]));
}

export function describeStateStoreContract(name: string, makeStore: StateStoreFactory): void {
  describe(`StateStore contract: ${name}`, () => {
    let root: string;
    const storage = new FileCheckpointStorage();
    let store: StateStore;
    let state: SubtaskStateStore;

    beforeEach(async () => {
      root = await makeTempDir('floe-state-contract-');
      store = await makeStore();
      state = store.forSubtask({ vertex: 'v', subtask: 0 });
    });
    afterEach(async () => {
      await removeTempDir(root);
    });

    const dirOf = (id: number) => `${root}/checkpoints/chk-${id}`;
    const location = (id: number, shared = true) => ({ dir: dirOf(id), checkpointId: id, ...(shared ? { sharedDir: `${root}/checkpoints/shared` } : {}) });

    /** Captures `uids` (default `op`) of a subtask owning key groups [0, 8) at checkpoint `id` and writes it. */
    const capture = (s: SubtaskStateStore, mode: CaptureMode, id: number, options: { uids?: readonly string[]; keyGroups?: readonly [number, number] } = {}) =>
      s.captureSnapshot({ mode, checkpointId: id, uids: options.uids ?? ['op'], keyGroups: options.keyGroups ?? [0, 8] });
    const write = (w: ReturnType<typeof capture>, mode: CaptureMode, id: number) => w.write(storage, location(id, mode !== 'canonical'));
    /** A step that captures at its end (after `body`), commits, then writes the snapshot. */
    const snapshotStep = async (
      s: SubtaskStateStore,
      keys: readonly (readonly [number, string])[],
      body: () => void,
      mode: CaptureMode,
      id: number,
      options: { uids?: readonly string[]; keyGroups?: readonly [number, number] } = {},
    ): Promise<Record<string, WrittenState>> => {
      const version = await beginStep(s, keys);
      body();
      const writer = capture(s, mode, id, options);
      await s.commit(aControlRow(version + 1));
      return write(writer, mode, id);
    };

    /** The lines of a state file, sorted: `[keyGroup, key, value]`, or `[keyGroup, key]` for a tombstone. */
    const linesOf = async (dir: string, handle: StateHandle): Promise<unknown[][]> => {
      const text = new TextDecoder().decode(await storage.get(resolveRelative(dir, handle.path)));
      return text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as unknown[])
        .sort((a, b) => (a[0] as number) - (b[0] as number) || String(a[1]).localeCompare(String(b[1])));
    };

    const restoreInto = async (target: SubtaskStateStore, dir: string, chains: readonly StateHandle[][], keyGroups: [number, number] = [0, 8], operatorState: unknown[] = []) =>
      target.restore({ storage, manifestDir: dir, keyGroups, operators: { op: { keyedState: chains, operatorState } } });

    /** A subtask of a store that has never seen this one's data: a new process, or a new Lambda. */
    const elsewhere = async (subtask = 0): Promise<SubtaskStateStore> => (await makeStore()).forSubtask({ vertex: 'w', subtask });

    describe('keyed entries', () => {
      it('reads its own writes and deletions within a step, and the committed values in the next one', async () => {
        await runStep(
          state,
          [
            [1, 'a'],
            [2, 'b'],
            [3, 'c'],
          ],
          () => {
            state.put(1, key('a'), 1);
            state.put(2, key('b'), 2);
            expect(state.get(1, key('a'))).toBe(1);
            state.put(1, key('a'), undefined);
            state.put(3, key('c'), 3);
            state.put(3, key('c'), 30);
            expect(state.get(1, key('a'))).toBeUndefined();
            expect(state.get(3, key('c'))).toBe(30);
          },
        );

        expect(
          await valuesOf(state, [
            [1, 'a'],
            [2, 'b'],
            [3, 'c'],
          ]),
        ).toEqual({ a: undefined, b: 2, c: 30 });
      });

      it.each<[string, unknown]>([
        ['a number', 42],
        ['a string', 'x\u0000y'],
        ['null (a value, not a deletion)', null],
        ['an object', { n: 1, nested: { list: [1, 'two', null] } }],
        ['a list', [1, 2, 3]],
        ['false', false],
      ])('round-trips %s through a commit', async (_case, value) => {
        await runStep(state, [[5, 'k']], () => state.put(5, key('k'), value));

        expect(await valuesOf(state, [[5, 'k']])).toEqual({ k: value });
      });

      it('keeps the entries of different operators and state names apart', async () => {
        await runStep(state, [[1, 'k']], () => {
          state.put(1, key('k', 'count', 'op'), 1);
          state.put(1, key('k', 'sum', 'op'), 2);
          state.put(1, key('k', 'count', 'other'), 3);
        });

        await beginStep(state, [[1, 'k']]);
        expect([state.get(1, key('k', 'count', 'op')), state.get(1, key('k', 'sum', 'op')), state.get(1, key('k', 'count', 'other'))]).toEqual([1, 2, 3]);
      });

      it('gives each subtask its own state', async () => {
        const other = store.forSubtask({ vertex: 'v', subtask: 1 });
        await runStep(state, [[1, 'a']], () => state.put(1, key('a'), 'mine'));

        expect(await valuesOf(other, [[1, 'a']])).toEqual({ a: undefined });
        expect(await valuesOf(state, [[1, 'a']])).toEqual({ a: 'mine' });
      });

      it('forgets every subtask on clear', async () => {
        await runStep(state, [[1, 'a']], () => state.put(1, key('a'), 1));

        await store.clear();

        const again = store.forSubtask({ vertex: 'v', subtask: 0 });
        expect(await again.readControl()).toBeUndefined();
        expect(await valuesOf(again, [[1, 'a']])).toEqual({ a: undefined });
      });
    });

    describe('commit fencing', () => {
      it.each([
        ['the same version twice', [1, 1]],
        ['a version that skips one', [1, 3]],
        ['a first commit that is not version 1', [2]],
      ])('refuses %s with CommitFencedError', async (_case, versions) => {
        const last = versions.pop()!;
        for (const v of versions) {
          await state.readControl();
          await state.commit(aControlRow(v));
        }

        await state.readControl();
        await expect(state.commit(aControlRow(last))).rejects.toBeInstanceOf(CommitFencedError);
        expect((await state.readControl())?.version).toBe(versions.at(-1));
      });

      it('accepts versions 1, 2, 3 in turn and reads back the last control row', async () => {
        for (const v of [1, 2, 3]) {
          await state.readControl();
          await state.commit(aControlRow(v, { epoch: v * 10, outputs: { 'next:0': v }, inputs: { 'src:0': { seq: v, watermark: 5, ended: false } } }));
        }

        expect(await state.readControl()).toEqual(aControlRow(3, { epoch: 30, outputs: { 'next:0': 3 }, inputs: { 'src:0': { seq: 3, watermark: 5, ended: false } } }));
      });
    });

    describe('operator state', () => {
      it('round-trips through a commit, per uid', async () => {
        await runStep(state, [], () => {
          state.setOperatorState('source', [{ split: 's1', offset: 10 }, { split: 's2', offset: 0 }]);
          state.setOperatorState('sink', ['pending']);
        });

        await beginStep(state);
        expect(state.getOperatorState('source')).toEqual([{ split: 's1', offset: 10 }, { split: 's2', offset: 0 }]);
        expect(state.getOperatorState('sink')).toEqual(['pending']);
        expect(state.getOperatorState('unknown')).toEqual([]);
      });

      it('replaces the list on every set', async () => {
        await runStep(state, [], () => state.setOperatorState('source', [1, 2]));
        await runStep(state, [], () => state.setOperatorState('source', [3]));

        await beginStep(state);
        expect(state.getOperatorState('source')).toEqual([3]);
      });
    });

    describe('timers', () => {
      const t = (timestamp: number, recordKey = 'k', domain: Timer['domain'] = 'event', keyGroup = 1): Timer => ({ uid: 'op', domain, timestamp, keyGroup, recordKey: rk(recordKey) });
      const keysOf = (timers: readonly Timer[]) => [...new Set(timers.map((x) => `${x.keyGroup}|${x.recordKey}`))].map((s) => [Number(s.split('|')[0]), JSON.parse(s.split('|')[1]!) as string] as const);

      it.each<[string, Timer[], Timer[], number, number[]]>([
        ['in timestamp order', [t(30), t(10), t(20)], [], 100, [10, 20, 30]],
        ['up to and including upTo', [t(10), t(20), t(21)], [], 20, [10, 20]],
        ['once when registered twice', [t(10), t(10), t(5)], [], 100, [5, 10]],
        ['without deleted ones', [t(10), t(20)], [t(10)], 100, [20]],
        ['of the asked domain only', [t(10), t(5, 'k', 'processing')], [], 100, [10]],
        ['none before any is due', [t(10)], [], 9, []],
        ['across keys and key groups in timestamp order', [t(30, 'a', 'event', 1), t(10, 'b', 'event', 7), t(20, 'c', 'event', 4)], [], 100, [10, 20, 30]],
      ])('pops due timers %s', async (_case, registered, deleted, upTo, expected) => {
        await beginStep(state, keysOf([...registered, ...deleted]));
        for (const timer of registered) state.registerTimer(timer);
        for (const timer of deleted) state.deleteTimer(timer);

        const due = await state.popDueTimers('event', upTo);

        expect(due.map((d) => d.timestamp)).toEqual(expected);
      });

      it('returns the timers as registered', async () => {
        const timer: Timer = { uid: 'win', domain: 'processing', timestamp: 7, keyGroup: 3, recordKey: rk('user-1') };
        await beginStep(state, [[3, 'user-1']]);
        state.registerTimer(timer);

        expect(await state.popDueTimers('processing', 7)).toEqual([timer]);
      });

      it('keeps timers across commits, and removes popped ones for good', async () => {
        await runStep(
          state,
          [
            [1, 'a'],
            [2, 'b'],
            [3, 'c'],
          ],
          () => {
            state.registerTimer(t(10, 'a', 'event', 1));
            state.registerTimer(t(10, 'b', 'event', 2));
            state.registerTimer(t(50, 'c', 'event', 3));
          },
        );

        await beginStep(state);
        const first = await state.popDueTimers('event', 10);
        await state.commit(aControlRow(2));
        await beginStep(state);
        const second = await state.popDueTimers('event', 10);
        const later = await state.popDueTimers('event', 100);
        await state.commit(aControlRow(3));

        expect(first.map((d) => d.recordKey).sort()).toEqual([rk('a'), rk('b')]);
        expect(second).toEqual([]);
        expect(later.map((d) => d.recordKey)).toEqual([rk('c')]);
        await beginStep(state);
        expect(await state.popDueTimers('event', 1000)).toEqual([]);
      });

      it('fires a timer registered again after it fired', async () => {
        await beginStep(state, [[1, 'k']]);
        state.registerTimer(t(10));
        await state.popDueTimers('event', 10);

        state.registerTimer(t(10));

        expect((await state.popDueTimers('event', 10)).map((d) => d.timestamp)).toEqual([10]);
      });
    });

    describe('snapshots and restore', () => {
      const abc = [
        [1, 'a'],
        [2, 'b'],
        [3, 'c'],
        [4, 'd'],
      ] as const;

      it('round-trips a full capture through restore: entries, timers and operator state', async () => {
        const timer: Timer = { uid: 'op', domain: 'event', timestamp: 20, keyGroup: 2, recordKey: rk('b') };
        const written = await snapshotStep(
          state,
          abc,
          () => {
            state.put(1, key('a'), { n: 1 });
            state.put(2, key('b'), [2]);
            state.put(3, key('c'), 'three');
            state.registerTimer(timer);
          },
          'full',
          1,
        );
        expect(written['op']!.handles.map((h) => [h.kind, h.entries, h.keyGroups])).toEqual([['full', 4, [0, 8]]]);

        const restored = await elsewhere();
        await restoreInto(restored, dirOf(1), [written['op']!.handles], [0, 8], ['op-state']);

        expect(await restored.readControl()).toBeUndefined();
        expect(await valuesOf(restored, abc)).toEqual({ a: { n: 1 }, b: [2], c: 'three', d: undefined });
        expect(restored.getOperatorState('op')).toEqual(['op-state']);
        expect(await restored.popDueTimers('event', 100)).toEqual([timer]);
        await restored.commit(aControlRow(1));
      });

      it('writes the first incremental capture as a full file in the shared directory', async () => {
        const written = await snapshotStep(state, abc, () => state.put(1, key('a'), 1), 'incremental', 1);

        const handles = written['op']!.handles;
        expect(handles.map((h) => h.kind)).toEqual(['full']);
        expect(resolveRelative(dirOf(1), handles[0]!.path).startsWith(`${root}/checkpoints/shared/`)).toBe(true);
        expect(written['op']!.bytesWritten).toBe(handles[0]!.size);
      });

      it('writes only the entries changed since the previous capture as a delta, deletions as tombstones', async () => {
        // Given a full capture of a, b, c
        const first = await snapshotStep(
          state,
          abc,
          () => {
            state.put(1, key('a'), 1);
            state.put(2, key('b'), 2);
            state.put(3, key('c'), 3);
          },
          'incremental',
          1,
        );
        // When, over two steps, b changes, a is deleted and d appears (c is untouched)
        await runStep(state, abc, () => state.put(2, key('b'), 20));
        const second = await snapshotStep(
          state,
          [...abc, [7, 'never-there']],
          () => {
            state.put(1, key('a'), undefined);
            state.put(4, key('d'), 4);
            state.put(7, key('never-there'), undefined);
          },
          'incremental',
          2,
        );

        // Then checkpoint 2 references checkpoint 1's file and adds a delta of b, d and a's tombstone only
        const handles = second['op']!.handles;
        expect(handles.map((h) => h.kind)).toEqual(['full', 'delta']);
        expect(handles[0]).toEqual(first['op']!.handles[0]);
        expect(await linesOf(dirOf(2), handles[1]!)).toEqual([
          [1, key('a')],
          [2, key('b'), 20],
          [4, key('d'), 4],
        ]);
        expect(second['op']!.fullSize).toBe(handles[0]!.size + handles[1]!.size);
        // And restoring the chain gives the live state
        const restored = await elsewhere();
        await restoreInto(restored, dirOf(2), [handles]);
        expect(await valuesOf(restored, abc)).toEqual({ a: undefined, b: 20, c: 3, d: 4 });
      });

      it('adds no file when nothing changed since the previous capture', async () => {
        const first = await snapshotStep(state, abc, () => state.put(1, key('a'), 1), 'incremental', 1);

        const second = await snapshotStep(state, abc, () => {}, 'incremental', 2);

        expect(second['op']).toEqual({ handles: first['op']!.handles, bytesWritten: 0, fullSize: first['op']!.fullSize });
      });

      it("starts a new chain with mode 'full'", async () => {
        await snapshotStep(state, abc, () => state.put(1, key('a'), 1), 'incremental', 1);

        const full = await snapshotStep(state, abc, () => state.put(2, key('b'), 2), 'full', 2);

        expect(full['op']!.handles.map((h) => [h.kind, h.entries])).toEqual([['full', 2]]);
      });

      it('writes a canonical capture self-contained in its own directory and leaves the chain alone', async () => {
        // Given a chain of one full file, and a change since
        const first = await snapshotStep(
          state,
          abc,
          () => {
            state.put(1, key('a'), 1);
            state.put(2, key('b'), 2);
          },
          'incremental',
          1,
        );
        // When a savepoint is captured in the step that changes b
        const savepoint = await snapshotStep(state, abc, () => state.put(2, key('b'), 20), 'canonical', 2);

        // Then it holds every entry in one full file under its own directory
        const handles = savepoint['op']!.handles;
        expect(handles.map((h) => [h.kind, h.path.startsWith('state/')])).toEqual([['full', true]]);
        expect(await linesOf(dirOf(2), handles[0]!)).toEqual([
          [1, key('a'), 1],
          [2, key('b'), 20],
        ]);
        // And the next checkpoint still chains onto checkpoint 1, with the change made before the savepoint
        const next = await snapshotStep(state, abc, () => {}, 'incremental', 3);
        expect(next['op']!.handles[0]).toEqual(first['op']!.handles[0]);
        expect(next['op']!.handles.map((h) => h.kind)).toEqual(['full', 'delta']);
        expect(await linesOf(dirOf(3), next['op']!.handles[1]!)).toEqual([[2, key('b'), 20]]);
      });

      it('captures state at the barrier: writes after the capture are not in it, but are in the next one', async () => {
        await beginStep(state, abc);
        state.put(1, key('a'), 1);
        const writer = capture(state, 'incremental', 1);
        state.put(1, key('a'), 2);
        state.put(2, key('b'), 2);
        await state.commit(aControlRow(1));
        const written = await write(writer, 'incremental', 1);

        expect(await linesOf(dirOf(1), written['op']!.handles[0]!)).toEqual([[1, key('a'), 1]]);
        const next = await snapshotStep(state, abc, () => {}, 'incremental', 2);
        expect(await linesOf(dirOf(2), next['op']!.handles[1]!)).toEqual([
          [1, key('a'), 2],
          [2, key('b'), 2],
        ]);
      });

      it('writes a snapshot whose files are written before the step commits', async () => {
        await beginStep(state, abc);
        state.put(1, key('a'), 1);
        const written = await write(capture(state, 'full', 1), 'full', 1);
        await state.commit(aControlRow(1));

        expect(await linesOf(dirOf(1), written['op']!.handles[0]!)).toEqual([[1, key('a'), 1]]);
      });

      it('captures only the listed operators, and gives a stateless one an empty chain', async () => {
        const written = await snapshotStep(
          state,
          [[1, 'a']],
          () => {
            state.put(1, key('a', 'count', 'op'), 1);
            state.put(1, key('a', 'count', 'other'), 1);
          },
          'full',
          1,
          { uids: ['op', 'empty'] },
        );

        expect(Object.keys(written).sort()).toEqual(['empty', 'op']);
        expect(written['empty']).toEqual({ handles: [], bytesWritten: 0, fullSize: 0 });
        expect(await linesOf(dirOf(1), written['op']!.handles[0]!)).toEqual([[1, key('a', 'count', 'op'), 1]]);
      });

      it('keeps only the key groups of its range when restoring, and skips files whose range does not overlap it', async () => {
        const all = Array.from({ length: 8 }, (_, g) => [g, `g${g}`] as const);
        const written = await snapshotStep(state, all, () => all.forEach(([g, k]) => state.put(g, key(k), g)), 'full', 1);
        const missing: StateHandle = { path: 'state/does-not-exist.jsonl', kind: 'full', size: 1, entries: 1, keyGroups: [8, 16] };

        const restored = await elsewhere();
        await restoreInto(restored, dirOf(1), [written['op']!.handles, [missing]], [2, 5]);

        expect(await valuesOf(restored, all)).toEqual(Object.fromEntries(all.map(([g, k]) => [k, g >= 2 && g < 5 ? g : undefined])));
      });

      it('merges the chains of several old subtasks when scaling down, timers included', async () => {
        // Given two old subtasks owning [0, 4) and [4, 8), each with an entry and a timer
        const left = store.forSubtask({ vertex: 'v', subtask: 0 });
        const right = store.forSubtask({ vertex: 'v', subtask: 1 });
        const tl: Timer = { uid: 'op', domain: 'event', timestamp: 30, keyGroup: 1, recordKey: rk('x') };
        const tr: Timer = { uid: 'op', domain: 'event', timestamp: 10, keyGroup: 6, recordKey: rk('y') };
        const l = await snapshotStep(
          left,
          [[1, 'x']],
          () => {
            left.put(1, key('x'), 'left');
            left.registerTimer(tl);
          },
          'full',
          1,
          { keyGroups: [0, 4] },
        );
        const r = await snapshotStep(
          right,
          [[6, 'y']],
          () => {
            right.put(6, key('y'), 'right');
            right.registerTimer(tr);
          },
          'full',
          1,
          { keyGroups: [4, 8] },
        );

        // When one new subtask owning [0, 8) restores both
        const merged = await elsewhere();
        await restoreInto(merged, dirOf(1), [l['op']!.handles, r['op']!.handles], [0, 8], ['split-1', 'split-2']);

        // Then it has the keyed state and timers of both, and the operator state it was given
        expect(
          await valuesOf(merged, [
            [1, 'x'],
            [6, 'y'],
          ]),
        ).toEqual({ x: 'left', y: 'right' });
        expect(merged.getOperatorState('op')).toEqual(['split-1', 'split-2']);
        expect(await merged.popDueTimers('event', 100)).toEqual([tr, tl]);
      });

      it('drops every previous entry, timer, operator state and the control row on restore', async () => {
        await runStep(state, [[1, 'stale']], () => {
          state.put(1, key('stale'), 1);
          state.setOperatorState('op', ['old']);
          state.registerTimer({ uid: 'op', domain: 'event', timestamp: 1, keyGroup: 1, recordKey: rk('stale') });
        });

        await restoreInto(state, dirOf(1), [], [0, 8], ['new']);

        expect(await state.readControl()).toBeUndefined();
        expect(await valuesOf(state, [[1, 'stale']])).toEqual({ stale: undefined });
        expect(state.getOperatorState('op')).toEqual(['new']);
        expect(await state.popDueTimers('event', 100)).toEqual([]);
        await state.commit(aControlRow(1));
      });

      it('starts a new chain after a restore: the first incremental capture is full', async () => {
        const written = await snapshotStep(state, abc, () => state.put(1, key('a'), 1), 'incremental', 1);
        const restored = await elsewhere();
        await restoreInto(restored, dirOf(1), [written['op']!.handles]);

        const next = await snapshotStep(restored, abc, () => restored.put(2, key('b'), 2), 'incremental', 2);

        expect(next['op']!.handles.map((h) => [h.kind, h.entries])).toEqual([['full', 2]]);
      });
    });
  });
}
