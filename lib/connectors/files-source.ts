import { open, readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { SourceConnector, SourceSplit } from '../api/connector.js';
import { FloeError, ErrorCode } from '../core/errors.js';
import { s3FilesSource } from './s3-files.js';

/** Options of the files source. */
export interface FilesSourceOptions {
  /** A file, or a directory read recursively (names starting with `.` or `_` are skipped, as uncommitted output), or an `s3://bucket/prefix`. */
  readonly path: string;
}

const READ_BYTES = 1 << 20;

async function listFiles(root: string): Promise<string[]> {
  const info = await stat(root).catch((e: NodeJS.ErrnoException) => {
    throw new FloeError(ErrorCode.InvalidJob, `files source: cannot read '${root}': ${e.code === 'ENOENT' ? 'no such file or directory' : e.message}`);
  });
  if (info.isFile()) return [root];
  const out: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const full = join(entry.parentPath, entry.name);
    if (relative(root, full).split('/').some((seg) => seg.startsWith('.') || seg.startsWith('_'))) continue;
    out.push(full);
  }
  return out.sort();
}

interface FilePosition {
  readonly file: string;
  /** Byte offset of the next unread line. */
  readonly offset: number;
}

/**
 * Lines of a file or of every file in a directory; each file is a split whose byte offset is checkpointed. An
 * `s3://bucket/prefix` path reads objects instead (see `s3FilesSource`).
 */
export function filesSource(options: FilesSourceOptions): SourceConnector<string> {
  if (options.path.startsWith('s3://')) return s3FilesSource({ path: options.path });
  return {
    type: 'files',
    bounded: true,
    async createSplits(): Promise<SourceSplit[]> {
      return (await listFiles(options.path)).map((file) => ({ id: file, position: { file, offset: 0 } satisfies FilePosition, done: false }));
    },
    async read(split: SourceSplit, max: number) {
      const pos = split.position as FilePosition;
      const handle = await open(pos.file, 'r');
      try {
        const size = (await handle.stat()).size;
        const values: string[] = [];
        let offset = pos.offset;
        while (values.length < max && offset < size) {
          const buf = Buffer.allocUnsafe(Math.min(READ_BYTES, size - offset));
          const { bytesRead } = await handle.read(buf, 0, buf.length, offset);
          let start = 0;
          let consumed = 0;
          while (values.length < max) {
            const nl = buf.indexOf(0x0a, start);
            if (nl === -1 || nl >= bytesRead) break;
            values.push(buf.toString('utf8', start, nl > start && buf[nl - 1] === 0x0d ? nl - 1 : nl));
            start = nl + 1;
            consumed = start;
          }
          if (consumed === 0) {
            if (offset + bytesRead < size) {
              if (bytesRead === buf.length && buf.length === READ_BYTES) throw new FloeError(ErrorCode.InvalidJob, `files source: a line of '${pos.file}' is longer than ${READ_BYTES} bytes`);
              continue;
            }
            // The last line has no newline.
            if (values.length < max) {
              values.push(buf.toString('utf8', 0, bytesRead));
              consumed = bytesRead;
            }
          }
          offset += consumed;
          if (consumed === 0) break;
        }
        return { values, split: { id: split.id, position: { file: pos.file, offset }, done: offset >= size } };
      } finally {
        await handle.close();
      }
    },
  };
}
