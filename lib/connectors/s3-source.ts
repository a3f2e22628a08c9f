import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SourceConnector, SourceSplit, SourceTiming } from '../api/connector.js';
import { feedQueueEnvName, type AwsResourceAccess } from '../api/connector-resources.js';
import type { DataStream } from '../api/job.js';
import { valueState } from '../api/state.js';
import { parseDuration } from '../core/duration.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import { awsClients } from '../adapters/aws/clients.js';
import { sqsSource, type SqsSourceOptions } from './sqs-source.js';

/** One version of an object, as a notification or a listing names it. */
export interface S3ObjectInfo {
  readonly bucket: string;
  readonly key: string;
  readonly size: number;
  /** The object's ETag without quotes. */
  readonly etag: string;
  /** Versioned buckets: the version this is. */
  readonly versionId?: string;
  /** When it was created (the notification's event time, or the listing's LastModified), ms since the epoch. */
  readonly time: number;
  /** S3's per-key order of the notification (hexadecimal); absent for a listing. */
  readonly sequencer?: string;
}

/** Options of the S3 source. */
export interface S3SourceOptions<T> {
  /** The bucket's name. */
  readonly bucket: string;
  /** Only keys that start with this. @default '' (the whole bucket) */
  readonly prefix?: string;
  /** Only keys that end with this (`.jsonl`, say). @default '' */
  readonly suffix?: string;
  /**
   * How new objects are announced: `{ queueUrl }`, an SQS queue the bucket's event notifications go to
   * (`s3:ObjectCreated:*`); `'eventbridge'`, the bucket's EventBridge notifications, which the deployment turns on, through
   * a queue and a rule it creates. Without it the source finds new objects by listing alone, as Flink's
   * `FileSource.monitorContinuously` does.
   */
  readonly notifications?: { readonly queueUrl: string } | 'eventbridge';
  /**
   * How often one subtask lists the prefix for objects no notification announced; `false` never. Each listing costs a
   * LIST request per 1,000 keys under the prefix. @default '1m' without notifications, '10m' with them
   */
  readonly listInterval?: string | number | false;
  /**
   * How far back a listing looks (by the objects' LastModified, which for a multipart upload is when it began): an
   * object that no notification announced and that first appears in a listing later than this after it began is not
   * read. What the listing subtask remembers of the objects it found is bounded by this. @default listInterval + 15m
   */
  readonly listHorizon?: string | number;
  /** Read the objects already under the prefix at the first start, too. @default false: objects created after it */
  readonly existing?: boolean;
  /** `'lines'`: each line of each object, through `parse`; `'objects'`: one {@link S3ObjectInfo} per object, without reading it. @default 'lines' */
  readonly emit?: 'lines' | 'objects';
  /** Turns a line into a record; an object one of whose lines it throws on goes to the dead-letter queue whole. @default the line */
  readonly parse?: (line: string, object: S3ObjectInfo) => T;
  /**
   * Objects larger than this are not read but dead-lettered: one object is read in one step, its bytes and records
   * held in the function's memory until the step ends (1,024 MB deployed by default). @default 32 MiB
   */
  readonly maxObjectSize?: number;
  /** Objects read at once per subtask. @default 8 */
  readonly readConcurrency?: number;
  /**
   * Where notifications that are not S3 events and objects that cannot be read go, with the reason (a message
   * attribute `floe-error`). Without it, a notification goes to the notification queue's redrive target, and an
   * object that cannot be read fails the job over (again at each restart, until the restart strategy gives up).
   */
  readonly deadLetterQueueUrl?: string;
  /**
   * How long an object version is remembered after it was first seen, so a second notification of it, or a listing
   * that finds it again, is dropped. @default '2h'
   */
  readonly dedupWindow?: string | number;
  /** The notification queue's visibility timeout, extended while its messages wait for their checkpoint. @default '5m' */
  readonly visibilityTimeout?: SqsSourceOptions<unknown>['visibilityTimeout'];
  /** Longest wait between receives from an idle notification queue. @default '1s' */
  readonly maxIdlePoll?: SqsSourceOptions<unknown>['maxIdlePoll'];
  readonly client?: S3Client;
  readonly sqsClient?: SQSClient;
}

/** What the listing split holds: its window, what it found in it, and what it found but has not emitted. */
interface ListPosition {
  /** Objects last modified before this are not considered. */
  readonly since: number;
  /** When the next listing is due. */
  readonly next: number;
  /** Objects found in the window, as `<hash of key and etag>:<LastModified in s>`. */
  readonly found: readonly string[];
  /** Found by the last page listed, emitted at the next read (so a replayed step emits the same). */
  readonly buffer: readonly S3ObjectInfo[];
  /** While a pass is on: the last key listed, and when the pass began. */
  readonly after?: string;
  readonly passStart?: number;
}

/** What the source emits before its own operators: the objects a notification or a listing named. */
interface Announced {
  readonly o: readonly S3ObjectInfo[];
}

const LIST_SPLIT = 's3-list';
const SKEW_MS = 60_000;

const unquote = (etag: string | undefined) => (etag ?? '').replace(/^"|"$/g, '');
const foundId = (key: string, etag: string) => createHash('sha1').update(key).update('\0').update(etag).digest('base64url').slice(0, 12);

/** Orders S3 sequencers: hexadecimal strings of varying length, compared once the shorter is right-padded with zeros (as S3 says). */
export function compareSequencers(a: string, b: string): number {
  const n = Math.max(a.length, b.length);
  const pa = a.toUpperCase().padEnd(n, '0');
  const pb = b.toUpperCase().padEnd(n, '0');
  return pa < pb ? -1 : pa > pb ? 1 : 0;
}

/**
 * The objects an SQS message says were created: an S3 event notification (`Records`), an EventBridge "Object
 * Created" event, or S3's test event (none). Throws on anything else, which sends the message to the dead-letter queue.
 */
/** The fields of a notification's object this source reads, as S3 (`eTag`, `versionId`) and EventBridge (`etag`, `version-id`) spell them. */
interface NotifiedObject {
  readonly key?: unknown;
  readonly size?: unknown;
  readonly eTag?: string;
  readonly etag?: string;
  readonly versionId?: unknown;
  readonly 'version-id'?: unknown;
  readonly sequencer?: unknown;
}

/** An S3 event notification's record, or an EventBridge S3 event's detail, as far as this source reads it. */
interface NotifiedRecord {
  readonly eventName?: unknown;
  readonly eventTime?: unknown;
  readonly s3?: { readonly bucket?: { readonly name?: unknown }; readonly object?: NotifiedObject };
  readonly bucket?: { readonly name?: unknown };
  readonly object?: NotifiedObject;
}

export function objectsInNotification(body: string): S3ObjectInfo[] {
  const n = JSON.parse(body) as Record<string, unknown>;
  if (n.Event === 's3:TestEvent') return [];
  if (Array.isArray(n.Records)) {
    return (n.Records as NotifiedRecord[]).filter((r) => typeof r.eventName === 'string' && r.eventName.startsWith('ObjectCreated:')).map((r) => {
      const object: NotifiedObject = r.s3?.object ?? {};
      const bucketName = r.s3?.bucket?.name;
      if (typeof bucketName !== 'string' || typeof object.key !== 'string') throw new Error('an S3 event record without s3.bucket.name or s3.object.key');
      return {
        bucket: bucketName,
        // Keys arrive URL-encoded, with '+' for a space.
        key: decodeURIComponent(String(object.key).replace(/\+/g, ' ')),
        size: Number(object.size ?? 0),
        etag: unquote(object.eTag ?? object.etag),
        ...(object.versionId ? { versionId: String(object.versionId) } : {}),
        time: Date.parse(String(r.eventTime)) || 0,
        ...(object.sequencer ? { sequencer: String(object.sequencer) } : {}),
      };
    });
  }
  if (n.source === 'aws.s3' && typeof n['detail-type'] === 'string') {
    if (n['detail-type'] !== 'Object Created') return [];
    const d = n.detail as NotifiedRecord | undefined;
    const bucketName = d?.bucket?.name;
    if (d?.object === undefined || typeof bucketName !== 'string' || typeof d.object.key !== 'string') throw new Error('an EventBridge S3 event without detail.bucket.name or detail.object.key');
    return [
      {
        bucket: bucketName,
        key: String(d.object.key),
        size: Number(d.object.size ?? 0),
        // (AWS writes `etag`; some emulators `eTag`.) An unversioned bucket's version id is the string "null".
        etag: unquote(d.object.etag ?? d.object.eTag),
        ...(d.object['version-id'] && d.object['version-id'] !== 'null' ? { versionId: String(d.object['version-id']) } : {}),
        time: Date.parse(String(n.time)) || 0,
        ...(d.object.sequencer ? { sequencer: String(d.object.sequencer) } : {}),
      },
    ];
  }
  throw new Error('neither an S3 event notification nor an EventBridge S3 event');
}

/** Why an object is not read, for the dead-letter queue. */
class Unreadable extends Error {}

/**
 * Every new object under a bucket and prefix, read exactly once (as lines, or named as an {@link S3ObjectInfo}):
 *
 * - **Notifications** (`notifications`) are received as `sqsSource` receives messages, so a message is deleted only
 *   after the checkpoint that covers the objects it announced; what it announced is then in the job's state.
 * - **Listing** (`listInterval`): one subtask lists the prefix, keeps what it found within `listHorizon` in its split,
 *   and announces what it had not found before — a notification lost, a bucket whose notifications were not set up yet.
 * - **Once**: everything announced is keyed by the object's key (`<uid>.dedup`), where an object version (its ETag or
 *   version id) is remembered for `dedupWindow`, and an announcement whose S3 sequencer is older than one already seen
 *   is dropped (a late notification of an overwritten version); the rest is read with `GetObject` conditioned on the
 *   ETag (`<uid>.read`, `flatMapAsync`), so a replayed step reads the same bytes. A version overwritten or deleted
 *   before it is read is skipped: its successor has an announcement of its own.
 */
export function s3Source(options: S3SourceOptions<S3ObjectInfo> & { readonly emit: 'objects' }): SourceConnector<S3ObjectInfo>;
export function s3Source<T = string>(options: S3SourceOptions<T> & { readonly emit?: 'lines' }): SourceConnector<T>;
export function s3Source<T>(options: S3SourceOptions<T>): SourceConnector<T> {
  const { bucket, prefix = '', suffix = '', notifications, emit = 'lines' } = options;
  const problems: string[] = [];
  if (typeof bucket !== 'string' || bucket === '' || bucket.includes('/')) problems.push(`s3Source.bucket must be a bucket name, got ${JSON.stringify(bucket)}`);
  if (emit !== 'lines' && emit !== 'objects') problems.push(`s3Source.emit must be 'lines' or 'objects', got ${JSON.stringify(emit)}`);
  const listIntervalMs = options.listInterval === false ? undefined : parseDuration(options.listInterval ?? (notifications ? '10m' : '1m'), 's3Source.listInterval');
  if (listIntervalMs !== undefined && listIntervalMs <= 0) problems.push('s3Source.listInterval must be > 0, or false');
  if (listIntervalMs === undefined && notifications === undefined) problems.push('s3Source needs notifications, a listInterval, or both: with neither it finds nothing');
  const horizonMs = parseDuration(options.listHorizon ?? (listIntervalMs ?? 0) + 15 * 60_000, 's3Source.listHorizon');
  if (listIntervalMs !== undefined && horizonMs <= listIntervalMs) problems.push(`s3Source.listHorizon (${horizonMs / 1000}s) must be longer than listInterval (${listIntervalMs / 1000}s), or objects are missed between listings`);
  const dedupWindowMs = parseDuration(options.dedupWindow ?? '2h', 's3Source.dedupWindow');
  const maxObjectSize = options.maxObjectSize ?? 32 * 1024 * 1024;
  const readConcurrency = options.readConcurrency ?? 8;
  if (!Number.isInteger(readConcurrency) || readConcurrency < 1) problems.push(`s3Source.readConcurrency must be a whole number ≥ 1, got ${String(options.readConcurrency)}`);
  if (problems.length > 0) throw new FloeError(ErrorCode.InvalidOptions, problems.join('; '));

  const where = `s3://${bucket}/${prefix}`;
  const s3 = () => options.client ?? awsClients().s3;
  const sqs = () => options.sqsClient ?? awsClients().sqs;
  const parse = options.parse ?? ((line: string) => line as unknown as T);
  const wanted = (o: S3ObjectInfo) => o.bucket === bucket && o.key.startsWith(prefix) && o.key.endsWith(suffix) && !o.key.endsWith('/');

  let uid: string | undefined;
  const resolveFeedQueue = () => {
    const name = feedQueueEnvName(uid ?? '');
    const url = process.env[name];
    if (!url) throw new FloeError(ErrorCode.InvalidJob, `s3 source '${uid}': no notification queue: a deployment (FloeJob) or emulator mode (floe run --aws-endpoint) creates it and sets ${name}; elsewhere give notifications: { queueUrl }`);
    return url;
  };
  const inner =
    notifications === undefined
      ? undefined
      : sqsSource<readonly S3ObjectInfo[]>({
          queueUrl: notifications === 'eventbridge' ? `(the queue of the S3 source on ${bucket})` : notifications.queueUrl,
          ...(notifications === 'eventbridge' ? { resolveQueueUrl: resolveFeedQueue } : {}),
          parse: (body) => objectsInNotification(body),
          ...(options.visibilityTimeout !== undefined ? { visibilityTimeout: options.visibilityTimeout } : {}),
          ...(options.maxIdlePoll !== undefined ? { maxIdlePoll: options.maxIdlePoll } : {}),
          ...(options.deadLetterQueueUrl !== undefined ? { deadLetterQueueUrl: options.deadLetterQueueUrl } : {}),
          // Copies of a message are dropped by object, after the source: see below.
          dedupWindow: dedupWindowMs,
          ...(options.sqsClient ? { client: options.sqsClient } : {}),
        });

  /** One page (up to 1,000 keys) of the prefix after `after`, and the key to list after next, if there are more. */
  const listPage = async (after: string | undefined): Promise<{ objects: S3ObjectInfo[]; last?: string }> => {
    const res = await s3().send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix || undefined, ...(after !== undefined ? { StartAfter: after } : {}) }));
    const objects: S3ObjectInfo[] = [];
    for (const o of res.Contents ?? []) {
      if (o.Key !== undefined) objects.push({ bucket, key: o.Key, size: Number(o.Size ?? 0), etag: unquote(o.ETag), time: o.LastModified?.getTime() ?? 0 });
    }
    const lastKey = res.Contents?.[res.Contents.length - 1]?.Key;
    return { objects: objects.filter(wanted), ...(res.IsTruncated && lastKey !== undefined ? { last: lastKey } : {}) };
  };

  const foundEntry = (o: S3ObjectInfo) => `${foundId(o.key, o.etag)}:${Math.floor(o.time / 1000)}`;
  const foundTime = (f: string) => Number(f.slice(f.lastIndexOf(':') + 1)) * 1000;

  /**
   * Emits what the last page found; lists one page per read while a pass is on (so a step lists at most 1,000 keys,
   * and the split holds at most a page's objects), starting a pass when one is due. What it found is remembered only
   * for objects the next pass could consider (last modified within the horizon), so the split stays small.
   */
  const readList = async (split: SourceSplit, max: number, now: number) => {
    const pos = split.position as ListPosition;
    const emitted = pos.buffer.slice(0, max);
    const rest = pos.buffer.slice(emitted.length);
    // One record per object, so a watermark strategy sees each object's time.
    const values: Announced[] = emitted.map((o) => ({ o: [o] }));
    const passOn = pos.after !== undefined || pos.passStart !== undefined;
    if (rest.length > 0 || (!passOn && pos.next !== -1 && now < pos.next)) return { values, split: { ...split, position: { ...pos, buffer: rest } satisfies ListPosition }, pending: rest.length > 0 };
    const passStart = pos.passStart ?? now;
    const keep = passStart - horizonMs - SKEW_MS;
    const known = new Set(pos.found.map((f) => f.slice(0, f.lastIndexOf(':'))));
    const page = await listPage(pos.after);
    const recordOnly = pos.next === -1;
    const fresh = page.objects.filter((o) => o.time >= pos.since && !known.has(foundId(o.key, o.etag)));
    const found = [...pos.found, ...fresh.filter((o) => o.time >= keep).map(foundEntry)];
    const buffer = recordOnly ? [] : fresh;
    if (page.last !== undefined) {
      const position: ListPosition = { ...pos, found, buffer, after: page.last, passStart };
      return { values, split: { ...split, position }, pending: true };
    }
    // The pass is complete: the next looks back from its own start by the horizon, and what is older is forgotten.
    const since = Math.max(pos.since, keep);
    const position: ListPosition = { since, next: now + listIntervalMs!, found: found.filter((f) => foundTime(f) >= since - 1_000), buffer };
    return { values, split: { ...split, position }, pending: buffer.length > 0 };
  };

  const deadLetter = async (o: S3ObjectInfo, reason: string): Promise<void> => {
    if (options.deadLetterQueueUrl === undefined) throw new FloeError(ErrorCode.UserFunction, `s3 source: cannot read s3://${o.bucket}/${o.key} (${o.etag}): ${reason}; give deadLetterQueueUrl to set such objects aside`);
    await sqs().send(
      new SendMessageCommand({
        QueueUrl: options.deadLetterQueueUrl,
        MessageBody: JSON.stringify(o),
        ...(options.deadLetterQueueUrl.endsWith('.fifo') ? { MessageGroupId: o.key.slice(0, 128), MessageDeduplicationId: foundId(o.key, o.etag) } : {}),
        MessageAttributes: {
          'floe-error': { DataType: 'String', StringValue: reason.slice(0, 1_000) },
          'floe-source-bucket': { DataType: 'String', StringValue: o.bucket },
          'floe-object-key': { DataType: 'String', StringValue: o.key.slice(0, 1_000) },
        },
      }),
    );
  };

  /** Whether the object is still under its key with the same ETag. */
  const stillThere = async (o: S3ObjectInfo): Promise<boolean> => {
    const res = await s3().send(new ListObjectsV2Command({ Bucket: o.bucket, Prefix: o.key, MaxKeys: 1 }));
    const hit = res.Contents?.[0];
    return hit?.Key === o.key && unquote(hit.ETag) === o.etag;
  };

  /** The lines of one object version, or nothing when that version is gone. */
  const readLines = async (o: S3ObjectInfo): Promise<T[]> => {
    if (o.size > maxObjectSize) {
      await deadLetter(o, `${o.size} bytes is more than maxObjectSize (${maxObjectSize}): one object is read in one step; raise maxObjectSize, or read it with filesSource`);
      return [];
    }
    let bytes: Uint8Array;
    let encoding: string | undefined;
    try {
      // Conditioned on the ETag, so a replay reads the same bytes or nothing (a version id would need
      // s3:GetObjectVersion, and would read versions since overwritten).
      const res = await s3().send(new GetObjectCommand({ Bucket: o.bucket, Key: o.key, ...(o.etag ? { IfMatch: `"${o.etag}"` } : {}) }));
      bytes = await res.Body!.transformToByteArray();
      encoding = res.ContentEncoding;
    } catch (e) {
      const name = (e as { name?: string }).name ?? '';
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 0;
      // Overwritten since (its successor is announced on its own) or deleted: this version is no longer there to read.
      if (name === 'PreconditionFailed' || name === 'NoSuchKey' || status === 412) return [];
      // Without s3:ListBucket on the key, S3 answers a missing key with 403: ask the listing, which the grant allows.
      if (status === 403 && !(await stillThere(o))) return [];
      // Throttling and server errors are retried by the job's restart strategy; the rest is this object's (archived,
      // encrypted with a key the job may not use, refused): set it aside.
      if (status >= 500 || status === 429 || status === 0 || /Throttl|SlowDown|RequestTimeout|NoSuchBucket/.test(name)) throw e;
      await deadLetter(o, `GetObject failed: ${name || status}: ${e instanceof Error ? e.message : String(e)}`);
      return [];
    }
    if (bytes.length > maxObjectSize) {
      await deadLetter(o, `${bytes.length} bytes is more than maxObjectSize (${maxObjectSize})`);
      return [];
    }
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(encoding === 'gzip' || o.key.endsWith('.gz') ? gunzipSync(bytes) : bytes);
      const lines = text.split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      return lines.map((line, i) => {
        try {
          return parse(line.endsWith('\r') ? line.slice(0, -1) : line, o);
        } catch (e) {
          throw new Unreadable(`parse threw on line ${i + 1}: ${e instanceof Error ? e.message : String(e)}`);
        }
      });
    } catch (e) {
      await deadLetter(o, e instanceof Unreadable ? e.message : `not UTF-8 text${o.key.endsWith('.gz') ? ' after gunzip' : ''}: ${e instanceof Error ? e.message : String(e)}`);
      return [];
    }
  };

  const dlq: AwsResourceAccess[] = options.deadLetterQueueUrl !== undefined ? [{ service: 'sqs', queue: options.deadLetterQueueUrl, access: 'send' }] : [];
  const read: AwsResourceAccess = { service: 's3', bucket, prefix, access: 'read' };
  // The source lists and receives; the operators after it read objects (and set aside those they cannot).
  const resources: AwsResourceAccess[] = [read, ...(inner?.resources ?? dlq)];
  const expandedResources: AwsResourceAccess[] = emit === 'lines' ? [read, ...dlq] : [];

  return {
    type: 's3',
    bounded: false,
    resources,
    expandedResources,
    ...(notifications === 'eventbridge'
      ? {
          feed: {
            kind: 'eventbridge' as const,
            bus: 'default',
            bucket,
            pattern: { source: ['aws.s3'], 'detail-type': ['Object Created'], detail: { bucket: { name: [bucket] }, ...(prefix ? { object: { key: [{ prefix }] } } : {}) } },
          },
        }
      : {}),

    async createSplits(parallelism: number): Promise<SourceSplit[]> {
      const splits = inner ? await inner.createSplits(parallelism) : [];
      if (listIntervalMs !== undefined) {
        // `next: -1`: the first listing only remembers what is there (objects created before the first start), unless
        // `existing`, when the first listing, due at once, announces everything under the prefix.
        const position: ListPosition = options.existing ? { since: 0, next: 0, found: [], buffer: [] } : { since: Date.now() - SKEW_MS, next: -1, found: [], buffer: [] };
        splits.push({ id: LIST_SPLIT, position, done: false });
      }
      return splits;
    },

    async read(split, max, ctx) {
      if (split.id === LIST_SPLIT) {
        const r = await readList(split, max, ctx.now());
        return { ...r, values: r.values as unknown as T[] };
      }
      const r = await inner!.read(split, max, ctx);
      // One record per object, so a watermark strategy sees each object's time; a message that announces none (S3's
      // test event) emits nothing, and is deleted with the checkpoint after it as any other.
      const announced: Announced[] = r.values.flatMap((raw) => (inner!.recordValue!(raw) as readonly S3ObjectInfo[]).map((o) => ({ o: [o] })));
      return { ...r, values: announced as unknown as T[] };
    },

    ...(inner?.snapshotSplit ? { snapshotSplit: (split: SourceSplit, checkpointId: number) => (split.id === LIST_SPLIT ? split : inner.snapshotSplit!(split, checkpointId)) } : {}),
    ...(inner?.notifyCheckpointComplete
      ? { notifyCheckpointComplete: async (split: SourceSplit, checkpointId: number, ctx: Parameters<NonNullable<SourceConnector<T>['notifyCheckpointComplete']>>[2]) => (split.id === LIST_SPLIT ? split : inner.notifyCheckpointComplete!(split, checkpointId, ctx)) }
      : {}),

    // Beside notifications, the listing repairs: what it finds is late, and its silence must not hold event time back.
    holdsWatermark: (split: SourceSplit) => split.id !== LIST_SPLIT || inner === undefined,

    checkTiming(t: SourceTiming): string[] {
      const problems = inner?.checkTiming?.(t) ?? [];
      const needed = horizonMs + (listIntervalMs ?? 0) + t.checkpointTimeoutMs;
      if (listIntervalMs !== undefined && dedupWindowMs < needed) {
        problems.push(`s3 source ${where}: dedupWindow ${dedupWindowMs / 1000}s is shorter than listHorizon + listInterval + the checkpoint timeout (${needed / 1000}s): a listing could announce an object again after it is forgotten; raise dedupWindow`);
      }
      return problems;
    },

    /** What a watermark strategy's timestamp function gets: the object (its `time` for event time), in either mode. */
    recordValue(raw: unknown): T {
      return (raw as Announced).o[0] as unknown as T;
    },

    expand(raw: unknown, sourceUid: string | undefined): DataStream<unknown> {
      uid = sourceUid;
      const placement = (part: string, name: string) => ({ ...(sourceUid !== undefined ? { uid: `${sourceUid}.${part}` } : {}), name });
      const objects = (raw as DataStream<Announced>)
        .flatMap<S3ObjectInfo>((a, out) => {
          for (const o of a.o) if (wanted(o)) out.collect(o);
        }, { name: 'Objects: s3' })
        .keyBy((o) => o.key)
        .process<S3ObjectInfo, { seen: ReturnType<typeof valueState<{ readonly v: readonly string[]; readonly s?: string; readonly at: number }>> }>(
          {
            state: { seen: valueState<{ readonly v: readonly string[]; readonly s?: string; readonly at: number }>() },
            processElement(o, ctx, out) {
              const now = ctx.timerService().currentProcessingTime();
              const seen = ctx.state.seen.value();
              // By ETag, which notifications and listings both carry (a listing has no version id): an object
              // overwritten with the same bytes is not read again.
              const version = o.etag;
              if (seen !== undefined) {
                if (seen.v.includes(version)) return;
                if (o.sequencer !== undefined && seen.s !== undefined && compareSequencers(o.sequencer, seen.s) <= 0) return;
              }
              const s = o.sequencer === undefined ? seen?.s : seen?.s === undefined || compareSequencers(o.sequencer, seen.s) > 0 ? o.sequencer : seen.s;
              ctx.state.seen.update({ v: [...(seen?.v ?? []), version].slice(-8), ...(s !== undefined ? { s } : {}), at: now });
              ctx.timerService().registerProcessingTimeTimer(now + dedupWindowMs);
              out.collect(o);
            },
            onTimer(ts, ctx) {
              const seen = ctx.state.seen.value();
              if (seen !== undefined && seen.at + dedupWindowMs <= ts) ctx.state.seen.clear();
            },
          },
          placement('dedup', 'Deduplicate: s3 (per object version)'),
        );
      if (emit === 'objects') return objects as DataStream<unknown>;
      return objects.flatMapAsync<T>((o) => readLines(o), { ...placement('read', 'Read: s3 objects'), capacity: readConcurrency, timeout: '10m' }) as DataStream<unknown>;
    },
  };
}
