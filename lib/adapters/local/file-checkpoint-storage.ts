import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as fsSync from 'node:fs';
import * as path from 'node:path';
import { ErrorCode, FloeError } from '../../core/errors.js';
import { join } from '../../core/manifest/layout.js';
import type { CheckpointStorage } from '../../ports/index.js';

/** Names of in-flight temp files start with this; `list` never returns them. */
export const TEMP_FILE_PREFIX = '.tmp-';

/** How often a write retries when a concurrent `delete` removed its freshly created, still empty parent directory. */
const MAX_VANISHED_PARENT_RETRIES = 5;

const IGNORED_RMDIR_ERRORS = new Set(['ENOTEMPTY', 'EEXIST', 'ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'EBUSY', 'EINVAL']);

/** Checkpoint storage in a directory on the local file system; locations are plain file paths, relative or absolute. */
export class FileCheckpointStorage implements CheckpointStorage {
  /** Writes atomically (temp file, fsync, rename), replacing any existing file; readers see the old or the new bytes, never a mix. */
  async put(location: string, bytes: Uint8Array): Promise<void> {
    this.writeVia(location, bytes, (temp) => fsSync.renameSync(temp, location));
  }

  /** Creates the file only if it does not exist, atomically; throws FloeError MANIFEST_EXISTS when it does. */
  async putIfAbsent(location: string, bytes: Uint8Array): Promise<void> {
    this.writeVia(location, bytes, (temp) => {
      // link(2) fails with EEXIST instead of replacing, and the target appears with its full content at once:
      // the create-only, all-or-nothing write that `_metadata` needs (S3's `If-None-Match: *`).
      try {
        fsSync.linkSync(temp, location);
      } catch (e) {
        if (errnoOf(e) === 'EEXIST') {
          throw new FloeError(ErrorCode.ManifestExists, `${location} already exists; refusing to overwrite it`, { cause: e });
        }
        throw e;
      } finally {
        unlinkIfPresent(temp);
      }
    });
  }

  /** Reads a file; throws FloeError NOT_FOUND when it does not exist. */
  async get(location: string): Promise<Uint8Array> {
    try {
      const buf = await fs.readFile(location);
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (e) {
      const code = errnoOf(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        throw new FloeError(ErrorCode.NotFound, `${location} does not exist`, { cause: e });
      }
      throw storageError(`cannot read ${location}`, e);
    }
  }

  /** True when a file (not a directory) exists at the location. */
  async exists(location: string): Promise<boolean> {
    try {
      return (await fs.stat(location)).isFile();
    } catch (e) {
      const code = errnoOf(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw storageError(`cannot stat ${location}`, e);
    }
  }

  /** Files under the directory `prefix`, recursively, sorted, as `prefix`-joined locations; a missing directory has none. */
  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (e) {
        const code = errnoOf(e);
        // Missing, not a directory, or removed by a concurrent delete while walking: nothing under it.
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw storageError(`cannot list ${dir}`, e);
      }
      for (const entry of entries) {
        const child = join(dir, entry.name);
        if (entry.isDirectory()) await walk(child);
        else if (entry.isFile() && !entry.name.startsWith(TEMP_FILE_PREFIX)) out.push(child);
      }
    };
    await walk(prefix);
    return out.sort();
  }

  /** Deletes files (missing ones are ignored), then removes the directories that held them if that left them empty. */
  async delete(locations: readonly string[]): Promise<void> {
    await Promise.all(
      locations.map(async (location) => {
        try {
          await fs.unlink(location);
        } catch (e) {
          const code = errnoOf(e);
          if (code === 'ENOENT' || code === 'ENOTDIR') return;
          throw storageError(`cannot delete ${location}`, e);
        }
      }),
    );
    // Deepest first, so `chk-3/state` goes before `chk-3`. Only the files' own parents are tried, never the root above them.
    const parents = [...new Set(locations.map((l) => path.dirname(l)))]
      .filter((dir) => path.basename(dir) !== '' && path.basename(dir) !== '.' && path.basename(dir) !== '..')
      .sort((a, b) => depth(b) - depth(a) || (a < b ? -1 : 1));
    for (const dir of parents) {
      try {
        await fs.rmdir(dir);
      } catch (e) {
        // Tidying empty directories is best effort: the objects are gone, which is all `delete` promises. A directory
        // still in use (ENOTEMPTY/EEXIST), already gone, or one we may not remove (EACCES/EPERM/EBUSY/EINVAL) stays.
        if (IGNORED_RMDIR_ERRORS.has(errnoOf(e) ?? '')) continue;
        throw storageError(`cannot remove directory ${dir}`, e);
      }
    }
  }

  /**
   * Writes `bytes` to a durable temp file next to `location`, then lets `publish` move it into place. The writes are
   * synchronous on purpose: the embedded runtime shares one thread with the subtasks, and each asynchronous file
   * operation waits for a turn of the event loop, which under load is a round of every subtask's step — a checkpoint
   * file took a second that way instead of milliseconds.
   */
  private writeVia(location: string, bytes: Uint8Array, publish: (temp: string) => void): void {
    const dir = path.dirname(location);
    const temp = path.join(dir, `${TEMP_FILE_PREFIX}${path.basename(location)}-${randomUUID()}`);
    for (let attempt = 0; ; attempt++) {
      try {
        if (!this.knownDirs.has(dir) || attempt > 0) {
          fsSync.mkdirSync(dir, { recursive: true });
          this.knownDirs.add(dir);
        }
        writeDurably(temp, bytes);
        publish(temp);
        syncDirectory(dir);
        return;
      } catch (e) {
        try {
          unlinkIfPresent(temp);
        } catch {
          // the write's own error is the one to report
        }
        if (e instanceof FloeError) throw e;
        // `delete` removes directories it leaves empty; a writer that just created one (the shared directory, say)
        // may lose it between mkdir and open. The directory is recreated and the write repeated.
        if (errnoOf(e) === 'ENOENT' && attempt < MAX_VANISHED_PARENT_RETRIES) continue;
        throw storageError(`cannot write ${location}`, e);
      }
    }
  }

  /** Directories this instance created, so a write does not stat them again. */
  private readonly knownDirs = new Set<string>();
}

/** Removes a directory and everything under it; a missing directory is fine. */
export async function deleteDirectory(dir: string): Promise<void> {
  try {
    await fs.rm(dir, { recursive: true, force: true });
  } catch (e) {
    throw storageError(`cannot delete directory ${dir}`, e);
  }
}

/** Writes a new file and fsyncs it, so a rename or link publishes bytes that are on disk. */
function writeDurably(file: string, bytes: Uint8Array): void {
  const fd = fsSync.openSync(file, 'wx');
  try {
    fsSync.writeFileSync(fd, bytes);
    fsSync.fsyncSync(fd);
  } finally {
    fsSync.closeSync(fd);
  }
}

/** Fsyncs a directory so a rename or link in it survives a crash. */
function syncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = fsSync.openSync(dir, 'r');
  } catch (e) {
    // Some platforms (Windows) cannot open a directory; the file itself is already synced.
    if (errnoOf(e) === 'EISDIR' || errnoOf(e) === 'EPERM' || errnoOf(e) === 'EACCES') return;
    throw e;
  }
  try {
    fsSync.fsyncSync(fd);
  } catch (e) {
    // File systems that do not support fsync on directories report EINVAL; nothing more can be done there.
    if (errnoOf(e) !== 'EINVAL') throw e;
  } finally {
    fsSync.closeSync(fd);
  }
}

function unlinkIfPresent(file: string): void {
  try {
    fsSync.unlinkSync(file);
  } catch (e) {
    if (errnoOf(e) !== 'ENOENT') throw e;
  }
}

function storageError(message: string, cause: unknown): FloeError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new FloeError(ErrorCode.Storage, `${message}: ${detail}`, { cause, retryable: true });
}

function errnoOf(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

function depth(dir: string): number {
  return dir.split(/[\\/]+/).length;
}
