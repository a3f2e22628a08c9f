import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ErrorCode, FloeError } from '../../core/errors.js';

/** Kernel file systems a savepoint must never be written into: writing there changes the system or never ends. */
export const SPECIAL_FILESYSTEMS: readonly string[] = ['/proc', '/sys', '/dev'];

/** Options of {@link checkLocalSavepointTarget}. */
export interface LocalSavepointTargetOptions {
  /** Directory a relative target resolves against. @default process.cwd() */
  readonly cwd?: string;
}

function refuse(target: string, why: string, cause?: unknown): FloeError {
  return new FloeError(ErrorCode.BadRequest, `savepoint target '${target}' ${why}`, { cause });
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.stat(p);
    return true;
  } catch {
    return false;
  }
}

function special(p: string): string | undefined {
  return SPECIAL_FILESYSTEMS.find((root) => p === root || p.startsWith(`${root}/`));
}

/**
 * Checks a savepoint directory on local disk before a savepoint is triggered, and returns its canonical absolute path
 * (symlinks resolved) for the savepoint to be written to. A relative target resolves against the working directory,
 * and `..` is allowed (the paths are the user's own); the checks apply to where the path really leads:
 *
 * - not into /proc, /sys or /dev, neither by name nor through a symlink;
 * - every component that exists is a directory (a path through a regular file fails only when the snapshot is
 *   written, after the job took the savepoint's barrier);
 * - the directory, or the nearest existing ancestor it would be created in, is writable (`access(W_OK | X_OK)`).
 *
 * Throws a BAD_REQUEST FloeError saying what is wrong. Nothing is created.
 */
export async function checkLocalSavepointTarget(target: string, options: LocalSavepointTargetOptions = {}): Promise<string> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) throw refuse(target, 'is a URL; this job writes savepoints to local disk: give a directory path');
  if (target.includes('\0')) throw refuse(target, 'contains a NUL character');
  const cwd = options.cwd ?? process.cwd();
  const lexical = path.resolve(cwd, target);
  const named = special(lexical);
  if (named) throw refuse(target, `resolves to ${lexical}, inside ${named}: savepoints are not written into ${SPECIAL_FILESYSTEMS.join(', ')}`);
  // Walk the path as the kernel does: a component is followed (symlinks too) before the `..` after it applies.
  const raw = path.isAbsolute(target) ? target : `${cwd}/${target}`;
  let real = '/';
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      real = path.dirname(real);
      continue;
    }
    const next = path.join(real, part);
    let isDirectory: boolean;
    try {
      isDirectory = (await fs.stat(next)).isDirectory();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        // To be created; a later `..` may lead back into existing directories, which are checked again.
        real = next;
        continue;
      }
      throw refuse(target, `cannot be checked: ${next}: ${code ?? (e as Error).message}`, e);
    }
    if (!isDirectory) throw refuse(target, `runs through ${next}, which is not a directory`);
    real = await fs.realpath(next);
    const into = special(real);
    if (into) throw refuse(target, `leads into ${into} (${next} resolves to ${real}): savepoints are not written into ${SPECIAL_FILESYSTEMS.join(', ')}`);
  }
  const into = special(real);
  if (into) throw refuse(target, `leads into ${into} (${real}): savepoints are not written into ${SPECIAL_FILESYSTEMS.join(', ')}`);
  // The directory itself, or the nearest existing ancestor it would be created in.
  let probe = real;
  while (probe !== '/' && !(await exists(probe))) probe = path.dirname(probe);
  try {
    await fs.access(probe, constants.W_OK | constants.X_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw refuse(target, probe === real ? `is not writable (${real}: ${code})` : `cannot be created: ${probe} is not writable (${code})`, e);
  }
  return real;
}
