import { closeSync, existsSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import type { SinkConnector, SinkWriter, SinkWriterContext } from '../api/connector.js';
import type { PendingCommit } from '../core/manifest/model.js';
import { FloeError, ErrorCode } from '../core/errors.js';
import { s3FilesSink } from './s3-files.js';

/** Options of the exactly-once files sink. */
export interface FilesSinkOptions<T> {
  /** Directory committed files appear in, or an `s3://bucket/prefix` for committed objects (see `s3FilesSink`). */
  readonly dir: string;
  /** Formats a record as one line. @default strings as they are, anything else as JSON */
  readonly format?: (value: T) => string;
}

interface WriterState {
  /** In-progress file name (in `dir`), once something was written this epoch. */
  readonly inProgress?: string;
  /** Bytes of the in-progress file that belong to the state; anything beyond was written after it and is cut off. */
  readonly bytes: number;
  /** Files this writer has started, to name the next one. */
  readonly part: number;
}

interface FilesCommit extends PendingCommit {
  readonly sink: 'files';
  readonly dir: string;
  readonly from: string;
  readonly to: string;
}

const exists = (p: string) => stat(p).then(() => true, () => false);

/**
 * Exactly-once files: lines go to a hidden in-progress file during an epoch; at the barrier the file is synced and
 * recorded as a pending commit; when the checkpoint completes it is renamed to its final name. Only committed
 * files have names that start with neither `.` nor `_`.
 */
export function filesSink<T>(options: FilesSinkOptions<T>): SinkConnector<T> & { cleanup(uid: string, keepRunId?: string): Promise<void> } {
  if (options.dir.startsWith('s3://')) return s3FilesSink(options);
  const format = options.format ?? ((v: T) => (typeof v === 'string' ? v : JSON.stringify(v)));
  const dir = options.dir;
  return {
    type: 'files',
    exactlyOnce: true,
    createWriter(ctx: SinkWriterContext): SinkWriter<T> {
      let ready = false;
      return {
        async resume(state) {
          if (!ready) {
            await mkdir(dir, { recursive: true });
            ready = true;
          }
          const s = (state as WriterState | undefined) ?? { bytes: 0, part: 0 };
          if (s.inProgress) {
            const path = join(dir, s.inProgress);
            const size = (await stat(path).catch(() => undefined))?.size ?? 0;
            if (size > s.bytes) await truncate(path, s.bytes);
          }
          return s;
        },
        async write(values, state) {
          const s = state as WriterState;
          const name = s.inProgress ?? `.inprogress-${ctx.uid}-${ctx.subtask}-${ctx.runId}-${s.part}`;
          const text = values.map((v) => format(v)).join('\n') + '\n';
          // Write at the state's offset and cut anything beyond: a replayed step, or one that follows a zombie's writes
          // to the same file, leaves exactly the bytes its state accounts for. Synchronous: cheaper than the event-loop
          // turns of an asynchronous open, write and close.
          const path = join(dir, name);
          const fd = openSync(path, existsSync(path) ? 'r+' : 'w');
          try {
            const length = s.bytes + writeSync(fd, text, s.bytes);
            ftruncateSync(fd, length);
          } finally {
            closeSync(fd);
          }
          return { inProgress: name, bytes: s.bytes + Buffer.byteLength(text), part: s.part } satisfies WriterState;
        },
        async preCommit(state, checkpointId) {
          const s = state as WriterState;
          if (!s.inProgress || s.bytes === 0) return { state: { bytes: 0, part: s.part } satisfies WriterState, pendingCommits: [] };
          const handle = await open(join(dir, s.inProgress), 'r+');
          try {
            await handle.sync();
          } finally {
            await handle.close();
          }
          const commit: FilesCommit = { sink: 'files', dir, from: s.inProgress, to: `part-${ctx.uid}-${ctx.subtask}-chk${checkpointId}-${ctx.runId}` };
          return { state: { bytes: 0, part: s.part + 1 } satisfies WriterState, pendingCommits: [commit] };
        },
      };
    },
    async commit(pending) {
      const c = pending as FilesCommit;
      const from = join(c.dir, c.from);
      const to = join(c.dir, c.to);
      if (await exists(to)) return;
      try {
        await rename(from, to);
      } catch (e) {
        if (await exists(to)) return;
        throw new FloeError(ErrorCode.Storage, `files sink: cannot commit '${from}' as '${c.to}': ${(e as Error).message}`, { cause: e, retryable: true });
      }
    },
    /**
     * Deletes in-progress files of `uid` that no checkpoint committed: they hold records that will be replayed.
     * Files of run `keepRunId` (the run being started, which may be writing already) are kept.
     */
    async cleanup(uid: string, keepRunId?: string) {
      const names = await readdir(dir).catch(() => [] as string[]);
      const stale = (n: string) => n.startsWith(`.inprogress-${uid}-`) && (keepRunId === undefined || !n.includes(`-${keepRunId}-`));
      await Promise.all(names.filter(stale).map((n) => rm(join(dir, n), { force: true })));
    },
  };
}
