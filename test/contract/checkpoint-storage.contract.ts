import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import { join } from '../../lib/core/manifest/layout.js';
import type { CheckpointStorage } from '../../lib/ports/index.js';

/** A storage under test, rooted at a fresh, empty location (a temp directory, or `s3://bucket/prefix`). */
export interface CheckpointStorageFixture {
  readonly storage: CheckpointStorage;
  readonly root: string;
  cleanup(): Promise<void>;
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (data: Uint8Array): string => new TextDecoder().decode(data);

/** Awaits a promise that must reject with a FloeError and returns that error. */
async function floeErrorOf(promise: Promise<unknown>): Promise<FloeError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(FloeError);
    return e as FloeError;
  }
  throw new Error('expected a FloeError, but the call succeeded');
}

/** The behaviour every CheckpointStorage adapter must share; locations are built with `join` so URLs work as roots. */
export function describeCheckpointStorageContract(name: string, makeStorage: () => Promise<CheckpointStorageFixture>): void {
  describe(`CheckpointStorage contract: ${name}`, () => {
    let fixture: CheckpointStorageFixture;
    let storage: CheckpointStorage;
    const at = (...parts: string[]): string => join(fixture.root, ...parts);

    beforeEach(async () => {
      fixture = await makeStorage();
      storage = fixture.storage;
    });

    afterEach(async () => {
      await fixture.cleanup();
    });

    it('round-trips binary bytes unchanged', async () => {
      const all = Uint8Array.from({ length: 512 }, (_, i) => (i * 7) % 256);
      await storage.put(at('blob.bin'), all);
      const read = await storage.get(at('blob.bin'));
      expect(read).toBeInstanceOf(Uint8Array);
      expect(Array.from(read)).toEqual(Array.from(all));
    });

    it('round-trips an empty object', async () => {
      await storage.put(at('empty'), new Uint8Array());
      expect((await storage.get(at('empty'))).byteLength).toBe(0);
      expect(await storage.exists(at('empty'))).toBe(true);
    });

    it('writes nested locations without their parents being created first', async () => {
      const deep = at('job', 'checkpoints', 'chk-1', 'state', 'op-1', 'part-0');
      await storage.put(deep, bytes('deep'));
      expect(text(await storage.get(deep))).toBe('deep');
      await storage.putIfAbsent(at('other', 'chk-2', '_metadata'), bytes('m'));
      expect(text(await storage.get(at('other', 'chk-2', '_metadata')))).toBe('m');
    });

    it('put replaces an existing object', async () => {
      await storage.put(at('x'), bytes('first, longer content'));
      await storage.put(at('x'), bytes('second'));
      expect(text(await storage.get(at('x')))).toBe('second');
    });

    it('putIfAbsent creates an object that does not exist', async () => {
      await storage.putIfAbsent(at('chk-1', '_metadata'), bytes('one'));
      expect(text(await storage.get(at('chk-1', '_metadata')))).toBe('one');
    });

    it('putIfAbsent refuses a second write with MANIFEST_EXISTS and keeps the first content', async () => {
      const location = at('chk-1', '_metadata');
      await storage.putIfAbsent(location, bytes('first'));
      const error = await floeErrorOf(storage.putIfAbsent(location, bytes('second')));
      expect(error.code).toBe(ErrorCode.ManifestExists);
      expect(error.retryable).toBe(false);
      expect(error.message).toContain(location);
      expect(text(await storage.get(location))).toBe('first');
    });

    it('putIfAbsent refuses an object that put wrote', async () => {
      await storage.put(at('y'), bytes('put'));
      expect((await floeErrorOf(storage.putIfAbsent(at('y'), bytes('if-absent')))).code).toBe(ErrorCode.ManifestExists);
      expect(text(await storage.get(at('y')))).toBe('put');
    });

    it('lets exactly one of several concurrent putIfAbsent calls win', async () => {
      const location = at('race', '_metadata');
      const results = await Promise.allSettled([0, 1, 2, 3, 4].map((i) => storage.putIfAbsent(location, bytes(`writer-${i}`))));
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(winners).toHaveLength(1);
      for (const r of results) {
        if (r.status === 'rejected') expect((r.reason as FloeError).code).toBe(ErrorCode.ManifestExists);
      }
      expect(text(await storage.get(location))).toBe(`writer-${winners[0]}`);
    });

    it('get of a missing object throws NOT_FOUND naming the location', async () => {
      const location = at('nope', '_metadata');
      const error = await floeErrorOf(storage.get(location));
      expect(error.code).toBe(ErrorCode.NotFound);
      expect(error.message).toContain(location);
    });

    it('exists tells written objects from missing ones', async () => {
      await storage.put(at('dir', 'a'), bytes('a'));
      expect(await storage.exists(at('dir', 'a'))).toBe(true);
      expect(await storage.exists(at('dir', 'b'))).toBe(false);
      expect(await storage.exists(at('missing-dir', 'a'))).toBe(false);
    });

    it('lists every object under a prefix, recursively, as locations get can read', async () => {
      const inside = [at('chk-1', '_metadata'), at('chk-1', 'state', 'a'), at('chk-1', 'state', 'deeper', 'b')];
      for (const location of inside) await storage.put(location, bytes(location));
      await storage.put(at('chk-10', '_metadata'), bytes('sibling with a longer name'));
      await storage.put(at('outside'), bytes('outside'));

      const listed = await storage.list(at('chk-1'));

      expect([...listed].sort()).toEqual([...inside].sort());
      for (const location of listed) expect(text(await storage.get(location))).toBe(location);
    });

    it('lists the whole root', async () => {
      await storage.put(at('a'), bytes('a'));
      await storage.put(at('b', 'c'), bytes('c'));
      expect([...(await storage.list(fixture.root))].sort()).toEqual([at('a'), at('b', 'c')].sort());
    });

    it('lists nothing under a missing prefix', async () => {
      expect(await storage.list(at('never-written'))).toEqual([]);
      await storage.put(at('something'), bytes('x'));
      expect(await storage.list(at('never-written'))).toEqual([]);
    });

    it('deletes existing objects and ignores missing ones', async () => {
      await storage.put(at('chk-1', 'a'), bytes('a'));
      await storage.put(at('chk-1', 'b'), bytes('b'));
      await storage.put(at('chk-2', 'a'), bytes('kept'));

      await storage.delete([at('chk-1', 'a'), at('chk-1', 'missing'), at('no-such-dir', 'x')]);

      expect(await storage.exists(at('chk-1', 'a'))).toBe(false);
      expect((await floeErrorOf(storage.get(at('chk-1', 'a')))).code).toBe(ErrorCode.NotFound);
      expect(await storage.list(at('chk-1'))).toEqual([at('chk-1', 'b')]);
      expect(text(await storage.get(at('chk-2', 'a')))).toBe('kept');
    });

    it('deletes nothing for an empty list, and deleting twice is fine', async () => {
      await storage.put(at('a'), bytes('a'));
      await storage.delete([]);
      expect(await storage.exists(at('a'))).toBe(true);
      await storage.delete([at('a')]);
      await storage.delete([at('a')]);
      expect(await storage.exists(at('a'))).toBe(false);
    });

    it('writes again under a prefix whose objects were all deleted', async () => {
      const files = [at('shared', 'f1'), at('shared', 'sub', 'f2')];
      for (const f of files) await storage.put(f, bytes('old'));
      await storage.delete(await storage.list(at('shared')));
      expect(await storage.list(at('shared'))).toEqual([]);

      await storage.put(at('shared', 'sub', 'f3'), bytes('new'));
      await storage.putIfAbsent(at('shared', 'f4'), bytes('new'));

      expect([...(await storage.list(at('shared')))].sort()).toEqual([at('shared', 'f4'), at('shared', 'sub', 'f3')].sort());
    });
  });
}
