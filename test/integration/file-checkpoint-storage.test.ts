import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileCheckpointStorage, TEMP_FILE_PREFIX, deleteDirectory } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import { join } from '../../lib/core/manifest/layout.js';
import { describeCheckpointStorageContract } from '../contract/checkpoint-storage.contract.js';

async function freshDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'floe-file-storage-'));
}

describeCheckpointStorageContract('FileCheckpointStorage (absolute paths)', async () => {
  const root = await freshDir();
  return { storage: new FileCheckpointStorage(), root, cleanup: () => deleteDirectory(root) };
});

describeCheckpointStorageContract('FileCheckpointStorage (relative paths)', async () => {
  const dir = await freshDir();
  return { storage: new FileCheckpointStorage(), root: path.relative(process.cwd(), dir), cleanup: () => deleteDirectory(dir) };
});

describe('FileCheckpointStorage on disk', () => {
  const storage = new FileCheckpointStorage();
  let root: string;

  beforeEach(async () => {
    root = await freshDir();
  });

  afterEach(async () => {
    await deleteDirectory(root);
  });

  it('leaves no temp files behind after put, putIfAbsent and a refused putIfAbsent', async () => {
    await storage.put(join(root, 'chk-1', 'a'), new Uint8Array([1]));
    await storage.put(join(root, 'chk-1', 'a'), new Uint8Array([2]));
    await storage.putIfAbsent(join(root, 'chk-1', '_metadata'), new Uint8Array([3]));
    await expect(storage.putIfAbsent(join(root, 'chk-1', '_metadata'), new Uint8Array([4]))).rejects.toBeInstanceOf(FloeError);

    expect((await fs.readdir(join(root, 'chk-1'))).sort()).toEqual(['_metadata', 'a']);
  });

  it('does not list temp files of writes in flight', async () => {
    await storage.put(join(root, 'chk-1', 'a'), new Uint8Array([1]));
    await fs.writeFile(join(root, 'chk-1', `${TEMP_FILE_PREFIX}_metadata-123`), 'partial');

    expect(await storage.list(join(root, 'chk-1'))).toEqual([join(root, 'chk-1', 'a')]);
  });

  it('removes the directories a delete leaves empty, but not the prefix above them', async () => {
    const files = [join(root, 'job', 'chk-1', '_metadata'), join(root, 'job', 'chk-1', 'state', 'p0')];
    for (const f of files) await storage.put(f, new Uint8Array([1]));

    await storage.delete(files);

    expect(await fs.readdir(join(root, 'job'))).toEqual([]);
  });

  it('keeps directories that still hold files', async () => {
    await storage.put(join(root, 'shared', 'a'), new Uint8Array([1]));
    await storage.put(join(root, 'shared', 'b'), new Uint8Array([1]));

    await storage.delete([join(root, 'shared', 'a')]);

    expect(await fs.readdir(join(root, 'shared'))).toEqual(['b']);
  });

  it('lists a file given as the prefix as nothing, and a file in place of a directory as missing', async () => {
    await storage.put(join(root, 'file'), new Uint8Array([1]));

    expect(await storage.list(join(root, 'file'))).toEqual([]);
    expect(await storage.exists(join(root, 'file', 'child'))).toBe(false);
    await expect(storage.get(join(root, 'file', 'child'))).rejects.toMatchObject({ code: ErrorCode.NotFound });
  });

  it('reports reading a directory as a retryable STORAGE error', async () => {
    await storage.put(join(root, 'dir', 'x'), new Uint8Array([1]));

    const error = await storage.get(join(root, 'dir')).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(FloeError);
    expect(error).toMatchObject({ code: ErrorCode.Storage, retryable: true });
    expect((error as FloeError).cause).toBeDefined();
  });

  it('reports a write that cannot create its directory as a STORAGE error naming the location', async () => {
    await storage.put(join(root, 'file'), new Uint8Array([1]));
    const location = join(root, 'file', 'child');

    await expect(storage.put(location, new Uint8Array([1]))).rejects.toMatchObject({ code: ErrorCode.Storage, message: expect.stringContaining(location) });
  });

  it('survives a concurrent delete emptying the directory a put writes into', async () => {
    // Given a shared directory whose last file is being deleted while new files are written into it
    const dir = join(root, 'shared');
    const rounds = 50;
    for (let i = 0; i < rounds; i++) {
      await storage.put(join(dir, `old-${i}`), new Uint8Array([1]));
      // When the delete (which removes the emptied directory) races a put into the same directory
      await Promise.all([storage.delete([join(dir, `old-${i}`)]), storage.put(join(dir, `new-${i}`), new Uint8Array([2]))]);
      // Then the put's file is there
      expect(await storage.exists(join(dir, `new-${i}`))).toBe(true);
      await storage.delete([join(dir, `new-${i}`)]);
    }
  });
});
