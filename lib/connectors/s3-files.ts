import { CopyObjectCommand, DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SinkConnector, SinkWriter, SourceConnector, SourceSplit } from '../api/connector.js';
import type { S3ResourceAccess } from '../api/connector-resources.js';
import type { PendingCommit } from '../core/manifest/model.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import { awsClients } from '../adapters/aws/clients.js';
import { parseS3Location } from '../adapters/aws/s3-checkpoint-storage.js';

const READ_BYTES = 1 << 20;

async function listKeys(client: S3Client, bucket: string, prefix: string): Promise<{ key: string; size: number }[]> {
  const out: { key: string; size: number }[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) if (o.Key !== undefined) out.push({ key: o.Key, size: o.Size ?? 0 });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

const hidden = (relative: string) => relative.split('/').some((seg) => seg.startsWith('.') || seg.startsWith('_'));

interface S3Position {
  readonly bucket: string;
  readonly key: string;
  /** Byte offset of the next unread line. */
  readonly offset: number;
  readonly size: number;
}

/**
 * Lines of the objects under an `s3://bucket/prefix` (or of one object); each object is a split whose byte offset is
 * checkpointed. Keys with a path segment starting with `.` or `_` (uncommitted output) are skipped.
 */
export function s3FilesSource(options: { path: string; client?: S3Client }): SourceConnector<string> {
  const client = () => options.client ?? awsClients().s3;
  const { bucket, key } = parseS3Location(options.path, 'prefix');
  // A path names one object or the objects under it as a directory: both are read, nothing beside them.
  const resources: S3ResourceAccess[] =
    key === '' ? [{ service: 's3', bucket, access: 'read' }] : key.endsWith('/') ? [{ service: 's3', bucket, prefix: key, access: 'read' }] : [
      { service: 's3', bucket, key, access: 'read' },
      { service: 's3', bucket, prefix: `${key}/`, access: 'read' },
    ];
  return {
    type: 'files',
    bounded: true,
    resources,
    async createSplits(): Promise<SourceSplit[]> {
      const exact = key === '' || key.endsWith('/') ? [] : (await listKeys(client(), bucket, key)).filter((o) => o.key === key);
      const prefix = key === '' || key.endsWith('/') ? key : `${key}/`;
      const objects = exact.length > 0 ? exact : (await listKeys(client(), bucket, prefix)).filter((o) => !hidden(o.key.slice(prefix.length)));
      if (objects.length === 0) throw new FloeError(ErrorCode.InvalidJob, `files source: no objects under '${options.path}'`);
      return objects
        .sort((a, b) => (a.key < b.key ? -1 : 1))
        .map((o) => ({ id: `s3://${bucket}/${o.key}`, position: { bucket, key: o.key, offset: 0, size: o.size } satisfies S3Position, done: o.size === 0 }));
    },
    async read(split: SourceSplit, max: number) {
      const pos = split.position as S3Position;
      const values: string[] = [];
      let offset = pos.offset;
      let want = READ_BYTES;
      while (values.length < max && offset < pos.size) {
        const end = Math.min(pos.size, offset + want) - 1;
        const res = await client().send(new GetObjectCommand({ Bucket: pos.bucket, Key: pos.key, Range: `bytes=${offset}-${end}` }));
        const buf = Buffer.from(await res.Body!.transformToByteArray());
        const atEnd = offset + buf.length >= pos.size;
        let start = 0;
        while (values.length < max) {
          const nl = buf.indexOf(0x0a, start);
          if (nl === -1) break;
          values.push(buf.toString('utf8', start, nl > start && buf[nl - 1] === 0x0d ? nl - 1 : nl));
          start = nl + 1;
        }
        if (start === 0 && !atEnd) {
          want *= 2; // a line longer than the range: read more
          continue;
        }
        if (atEnd && values.length < max && start < buf.length) {
          values.push(buf.toString('utf8', start));
          start = buf.length;
        }
        offset += start;
        want = READ_BYTES;
      }
      return { values, split: { id: split.id, position: { ...pos, offset }, done: offset >= pos.size } };
    },
  };
}

interface S3WriterState {
  /** Keys of this epoch's in-progress objects, one per step that wrote. */
  readonly parts: readonly string[];
  /** Number of the next in-progress object. */
  readonly next: number;
}

interface S3FilesCommit extends PendingCommit {
  readonly sink: 's3-files';
  readonly bucket: string;
  readonly moves: ReadonlyArray<{ readonly from: string; readonly to: string }>;
}

/**
 * Whether an object exists, asked by listing its key as a prefix: a HeadObject of a missing key answers 404 only to a
 * principal that may list the whole bucket (else 403), while a listing needs s3:ListBucket for this prefix only.
 */
async function exists(client: S3Client, bucket: string, key: string): Promise<boolean> {
  const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key, MaxKeys: 1 }));
  return (page.Contents ?? []).some((o) => o.Key === key);
}

/**
 * Exactly-once objects under `s3://bucket/prefix`: each step's lines go to a hidden in-progress object named
 * deterministically (a replayed step overwrites it with the same bytes); at the barrier the epoch's objects become a
 * pending commit; when the checkpoint completes each is copied to its final `part-…` key and the in-progress one
 * deleted. Committing again (on restore) finds the final key and does nothing.
 */
export function s3FilesSink<T>(options: { dir: string; format?: (value: T) => string; client?: S3Client }): SinkConnector<T> & { cleanup(uid: string, keepRunId?: string): Promise<void> } {
  const format = options.format ?? ((v: T) => (typeof v === 'string' ? v : JSON.stringify(v)));
  const { bucket, key } = parseS3Location(options.dir, 'prefix');
  const prefix = key === '' || key.endsWith('/') ? key : `${key}/`;
  const client = () => options.client ?? awsClients().s3;
  return {
    type: 's3-files',
    exactlyOnce: true,
    // Writes in-progress objects; commits list, copy and delete them; all under the prefix.
    resources: [{ service: 's3', bucket, prefix, access: 'readwrite' }],
    createWriter(ctx): SinkWriter<T> {
      return {
        async resume(state) {
          return (state as S3WriterState | undefined) ?? ({ parts: [], next: 0 } satisfies S3WriterState);
        },
        async write(values, state) {
          const s = state as S3WriterState;
          const part = `${prefix}.inprogress-${ctx.uid}-${ctx.subtask}-${ctx.runId}-${s.next}`;
          await client().send(new PutObjectCommand({ Bucket: bucket, Key: part, Body: values.map((v) => format(v)).join('\n') + '\n' }));
          return { parts: [...s.parts, part], next: s.next + 1 } satisfies S3WriterState;
        },
        async preCommit(state, checkpointId) {
          const s = state as S3WriterState;
          const next: S3WriterState = { parts: [], next: s.next };
          if (s.parts.length === 0) return { state: next, pendingCommits: [] };
          const moves = s.parts.map((from, i) => ({ from, to: `${prefix}part-${ctx.uid}-${ctx.subtask}-chk${checkpointId}-${ctx.runId}-${i}` }));
          const commit: S3FilesCommit = { sink: 's3-files', bucket, moves };
          return { state: next, pendingCommits: [commit] };
        },
      };
    },
    async commit(pending) {
      const c = pending as S3FilesCommit;
      for (const { from, to } of c.moves) {
        if (await exists(client(), c.bucket, to)) continue;
        try {
          await client().send(new CopyObjectCommand({ Bucket: c.bucket, Key: to, CopySource: `${c.bucket}/${encodeURIComponent(from).replace(/%2F/g, '/')}` }));
        } catch (e) {
          throw new FloeError(ErrorCode.Storage, `s3 files sink: cannot commit s3://${c.bucket}/${from} as ${to}: ${(e as Error).message}`, { cause: e, retryable: true });
        }
        await client().send(new DeleteObjectCommand({ Bucket: c.bucket, Key: from }));
      }
    },
    /**
     * Deletes in-progress objects of `uid` that no completed checkpoint committed: their records will be replayed.
     * Objects of run `keepRunId` (the run being started, which may be writing already) are kept.
     */
    async cleanup(uid: string, keepRunId?: string) {
      for (const o of await listKeys(client(), bucket, `${prefix}.inprogress-${uid}-`)) {
        if (keepRunId !== undefined && o.key.includes(`-${keepRunId}-`)) continue;
        await client().send(new DeleteObjectCommand({ Bucket: bucket, Key: o.key }));
      }
    },
  };
}
