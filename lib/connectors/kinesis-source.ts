import {
  GetRecordsCommand,
  GetShardIteratorCommand,
  KinesisClient,
  ListShardsCommand,
  type GetRecordsCommandOutput,
  type GetShardIteratorCommandInput,
  type Shard,
  type _Record,
} from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { SourceConnector, SourceReadContext, SourceReadResult, SourceSplit, SourceSubtaskContext } from '../api/connector.js';
import { parseDuration } from '../core/duration.js';
import { ErrorCode, FloeError } from '../core/errors.js';

/** What `parse` sees of a record besides its data. */
export interface KinesisRecordInfo {
  readonly shardId: string;
  readonly sequenceNumber: string;
  readonly partitionKey: string;
  /** When Kinesis received the record (ms since the epoch): the event time of choice when the data carries none. */
  readonly approximateArrivalTimestamp: number;
}

/** Where a Kinesis source starts reading the shards it finds at first start. */
export type KinesisStart = 'TRIM_HORIZON' | 'LATEST' | { readonly atTimestamp: number };

/** Options of the Kinesis source. */
export interface KinesisSourceOptions<T> {
  /** Name or ARN (`arn:aws:kinesis:…:stream/<name>`) of the data stream. */
  readonly stream: string;
  /**
   * Where the first start reads from: the oldest record kept (`TRIM_HORIZON`), records that arrive after the job
   * started (`LATEST`, resolved to the time of the first start, which restarts and replays do not move), or records
   * that arrived at or after `atTimestamp` (ms since the epoch). Shards created by resharding after that point are
   * read from their beginning. A restore reads on from the checkpointed positions whatever this says.
   * @default 'LATEST'
   */
  readonly start?: KinesisStart;
  /** Turns a record into a value; an error it throws fails the job over (the record is read again after the restore). @default the data as a UTF-8 string */
  readonly parse?: (data: Uint8Array, record: KinesisRecordInfo) => T;
  /** How often each subtask lists the shards to find the children of shards it finished. @default '10s' */
  readonly discoveryInterval?: string | number;
  /** The shortest time between two GetRecords calls on a shard that had nothing new (Kinesis allows 5 per second per shard). @default '200ms' */
  readonly pollInterval?: string | number;
  /** @default a client over HTTP/1.1 with the SDK's usual endpoint, region and credential resolution */
  readonly client?: KinesisClient;
}

/** Where a shard's reading is: the checkpointed position of its split. */
interface ShardPosition {
  /** Where reading starts while nothing was emitted: the shard's oldest record, or the first at or after `at` (ms). */
  readonly start: 'TRIM_HORIZON' | { readonly at: number };
  /** Sequence number of the last record emitted. */
  readonly after?: string;
  /**
   * The records the next read emits: the `n` records after `after` up to and including `through`, fixed by the read
   * before it (which read them ahead). A shard's records never change, so a read from this position emits the same ones.
   */
  readonly next?: { readonly through: string; readonly n: number };
  /** The shard is closed and has nothing after `next` (or after `after`). */
  readonly end?: true;
}

/** Records read ahead of a position and the iterator after them, kept in memory so a read need not fetch them again. */
interface ReadAhead {
  /** The position (positionKey) these records and this iterator belong to. */
  readonly key: string;
  readonly records: readonly _Record[];
  /** Continues after the last record read; undefined when unknown. */
  readonly iterator?: string;
  /** When the read-ahead was fetched and found nothing new (ms), for pacing idle shards. */
  readonly idleSince?: number;
}

/** Bounds the GetRecords calls one read makes while fetching a range again (empty responses included). */
const MAX_RANGE_CALLS = 100;
/** GetRecords returns at most 10,000 records. */
const MAX_LIMIT = 10_000;

const positionKey = (p: ShardPosition): string => JSON.stringify([p.start, p.after ?? null, p.next ?? null, p.end ?? null]);

const decoder = new TextDecoder();

/**
 * Records of a Kinesis data stream, replayable: each shard is a split whose position (the last sequence number
 * emitted, and the range the next read emits) is checkpointed, so a restore reads on from there and nothing needs
 * acknowledging.
 *
 * **Replay.** A read emits the records the previous read fixed (read ahead) in the split, then reads ahead the next
 * range: what a step emits is a function of its committed position alone, never of what has arrived since or of how
 * many records a GetRecords call happened to return. A step replayed after a crash therefore emits the same records
 * under the same sequence numbers, and a receiver drops them. (Reading "whatever comes after the last sequence
 * number" would not: a replay could return more records than the first attempt, and the receiver would drop the
 * difference with the envelope.)
 *
 * **Ownership and resharding.** At first start the splits are the *root* shards — those whose parent is not listed
 * (expired, or none) — dealt out by the runtime. A shard created later (a split's two children, a merge's child) is
 * taken by the subtask that holds its parent (`ParentShardId`; for a merge that is the shard `MergeShards` was given
 * as `ShardToMerge`), and only once it has read that parent to its end; when the same subtask also holds the merge's
 * other parent (`AdjacentParentShardId`) it waits for that one too. Every shard is so held by exactly one subtask:
 * splits are operator state, each in one subtask, and a rescale deals them out again without copies. Done splits stay
 * in the state (a few hundred bytes each) as the record of who owns their children.
 *
 * **Order.** Records of a partition key leave the source in sequence order within a shard and across a split or a
 * merge whose parents one subtask holds: the child is read after its parents by the same subtask, and what a source
 * subtask emits reaches each downstream subtask over one ordered channel. A merge of two shards held by different
 * subtasks keeps exactly-once but not order for the keys of the adjacent parent: the child's reader cannot see how
 * far the other subtask has read, so the child's records of those keys may arrive before their last records from
 * the adjacent parent.
 *
 * Records that expire (past the stream's retention) before they are read are lost, as for any Kinesis consumer.
 */
export function kinesisSource<T = string>(options: KinesisSourceOptions<T>): SourceConnector<T> {
  const { stream } = options;
  const problems: string[] = [];
  if (typeof stream !== 'string' || stream === '') problems.push('kinesisSource.stream must be a stream name or ARN');
  const start = options.start ?? 'LATEST';
  if (typeof start === 'object' ? !Number.isFinite(start.atTimestamp) : start !== 'TRIM_HORIZON' && start !== 'LATEST') {
    problems.push(`kinesisSource.start must be 'TRIM_HORIZON', 'LATEST' or { atTimestamp: <ms since the epoch> }, got ${JSON.stringify(start)}`);
  }
  const discoveryIntervalMs = parseDuration(options.discoveryInterval ?? '10s', 'kinesisSource.discoveryInterval');
  const pollMs = parseDuration(options.pollInterval ?? '200ms', 'kinesisSource.pollInterval');
  if (discoveryIntervalMs <= 0) problems.push('kinesisSource.discoveryInterval must be > 0');
  if (problems.length > 0) throw new FloeError(ErrorCode.InvalidOptions, problems.join('; '));
  const parse = options.parse ?? ((data: Uint8Array) => decoder.decode(data) as unknown as T);
  const byArn = stream.startsWith('arn:');
  const streamParam = byArn ? { StreamARN: stream } : { StreamName: stream };
  let ownClient: KinesisClient | undefined;
  // The SDK's default handler for Kinesis is HTTP/2 (for SubscribeToShard, which this source does not use); emulators speak HTTP/1.1.
  const client = () => options.client ?? (ownClient ??= new KinesisClient({ requestHandler: new NodeHttpHandler() }));
  const readAhead = new Map<string, ReadAhead>();

  const listShards = async (): Promise<Shard[]> => {
    const shards: Shard[] = [];
    let token: string | undefined;
    do {
      // Kinesis takes either the stream or a NextToken, not both.
      const page = await client().send(new ListShardsCommand(token === undefined ? { ...streamParam } : { NextToken: token }));
      shards.push(...(page.Shards ?? []));
      token = page.NextToken;
    } while (token);
    return shards.filter((s) => s.ShardId !== undefined);
  };

  const iterator = async (shardId: string, pos: ShardPosition): Promise<string> => {
    const input: GetShardIteratorCommandInput =
      pos.after !== undefined
        ? { ...streamParam, ShardId: shardId, ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: pos.after }
        : pos.start === 'TRIM_HORIZON'
          ? { ...streamParam, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON' }
          : { ...streamParam, ShardId: shardId, ShardIteratorType: 'AT_TIMESTAMP', Timestamp: new Date(pos.start.at) };
    const it = (await client().send(new GetShardIteratorCommand(input))).ShardIterator;
    if (it === undefined) throw new FloeError(ErrorCode.Storage, `kinesis source: GetShardIterator returned no iterator for shard ${shardId} of ${stream}`, { retryable: true });
    return it;
  };

  const getRecords = (it: string, limit: number): Promise<GetRecordsCommandOutput> =>
    client().send(new GetRecordsCommand({ ShardIterator: it, Limit: Math.max(1, Math.min(MAX_LIMIT, limit)), ...(byArn ? { StreamARN: stream } : {}) }));

  /** Fetches again the records a position says the next read emits: those after `after` up to `through`. */
  const fetchRange = async (shardId: string, pos: ShardPosition): Promise<{ records: _Record[]; iterator?: string; ended: boolean }> => {
    const { through: last, n } = pos.next!;
    const through = BigInt(last);
    const records: _Record[] = [];
    let it = await iterator(shardId, pos);
    for (let calls = 1; ; calls++) {
      const res = await getRecords(it, n - records.length);
      let past = false;
      for (const r of res.Records ?? []) {
        if (BigInt(r.SequenceNumber!) > through) {
          past = true;
          break;
        }
        records.push(r);
      }
      const reached = records.length > 0 && records.at(-1)!.SequenceNumber === last;
      if (reached && !past) return { records, ...(res.NextShardIterator ? { iterator: res.NextShardIterator } : {}), ended: !res.NextShardIterator };
      // Fewer than `n` up to `through`: records expired before they were read again (a restore from an old checkpoint).
      if (reached || past || records.length >= n) return { records, ended: false };
      if (!res.NextShardIterator) return { records, ended: true };
      if ((res.Records ?? []).length === 0 && (res.MillisBehindLatest ?? 0) === 0) return { records, ended: false };
      if (calls >= MAX_RANGE_CALLS) {
        throw new FloeError(ErrorCode.Storage, `kinesis source: shard ${shardId} of ${stream}: found ${records.length} of the ${n} records up to ${last} in ${calls} GetRecords calls`, { retryable: true });
      }
      it = res.NextShardIterator;
    }
  };

  const info = (shardId: string, r: _Record): KinesisRecordInfo => ({
    shardId,
    sequenceNumber: r.SequenceNumber!,
    partitionKey: r.PartitionKey ?? '',
    approximateArrivalTimestamp: r.ApproximateArrivalTimestamp?.getTime() ?? 0,
  });

  const parseAll = (shardId: string, records: readonly _Record[]): T[] =>
    records.map((r) => {
      try {
        return parse(r.Data ?? new Uint8Array(), info(shardId, r));
      } catch (e) {
        throw new FloeError(ErrorCode.UserFunction, `kinesis source: parse threw on record ${r.SequenceNumber} of shard ${shardId} of ${stream}: ${e instanceof Error ? e.message : String(e)}`, { cause: e, retryable: true });
      }
    });

  const resolveStart = (): ShardPosition['start'] => (start === 'TRIM_HORIZON' ? 'TRIM_HORIZON' : start === 'LATEST' ? { at: Date.now() } : { at: start.atTimestamp });

  return {
    type: 'kinesis',
    bounded: false,
    discoveryIntervalMs,
    resources: [{ service: 'kinesis', stream, access: 'read' }],

    async createSplits(): Promise<SourceSplit[]> {
      const shards = await listShards();
      const listed = new Set(shards.map((s) => s.ShardId!));
      const at = resolveStart();
      return shards
        .filter((s) => s.ParentShardId === undefined || !listed.has(s.ParentShardId))
        .sort((a, b) => (a.ShardId! < b.ShardId! ? -1 : 1))
        .map((s) => ({ id: s.ShardId!, position: { start: at } satisfies ShardPosition, done: false }));
    },

    async read(split: SourceSplit, max: number, ctx: SourceReadContext): Promise<SourceReadResult<T>> {
      if (split.done) return { values: [], split };
      const shardId = split.id;
      const pos = split.position as ShardPosition;
      const cached = readAhead.get(shardId);
      const hit = cached?.key === positionKey(pos) ? cached : undefined;

      // Emit what the position fixed.
      let range: readonly _Record[] = [];
      let it = hit?.iterator;
      let ended = false;
      if (pos.next !== undefined) {
        if (hit) range = hit.records;
        else ({ records: range, iterator: it, ended } = await fetchRange(shardId, pos));
      }
      const values = parseAll(shardId, range);
      const after = pos.next?.through ?? pos.after;
      const base: ShardPosition = { start: pos.start, ...(after !== undefined ? { after } : {}) };
      if (pos.end || ended) {
        readAhead.delete(shardId);
        return { values, split: { id: shardId, position: { ...base, end: true } satisfies ShardPosition, done: true } };
      }

      // A shard that had nothing new a moment ago is not asked again yet (its position, and so the replay, is unchanged).
      const now = ctx.now();
      if (pos.next === undefined && hit?.idleSince !== undefined && now - hit.idleSince < pollMs) return { values, split };

      // Read the next range ahead; the next read emits it.
      let res: GetRecordsCommandOutput;
      try {
        res = await getRecords(it ?? (await iterator(shardId, base)), max);
      } catch (e) {
        if (it === undefined || (e as { name?: string }).name !== 'ExpiredIteratorException') throw e;
        res = await getRecords(await iterator(shardId, base), max);
      }
      const ahead = res.Records ?? [];
      const more = res.NextShardIterator;
      if (ahead.length === 0 && !more) {
        readAhead.delete(shardId);
        return { values, split: { id: shardId, position: { ...base, end: true } satisfies ShardPosition, done: true } };
      }
      const position: ShardPosition = {
        ...base,
        ...(ahead.length > 0 ? { next: { through: ahead.at(-1)!.SequenceNumber!, n: ahead.length } } : {}),
        ...(more ? {} : { end: true as const }),
      };
      const behind = (res.MillisBehindLatest ?? 0) > 0;
      readAhead.set(shardId, { key: positionKey(position), records: ahead, ...(more ? { iterator: more } : {}), ...(ahead.length === 0 && !behind ? { idleSince: now } : {}) });
      return { values, split: { id: shardId, position, done: false }, pending: ahead.length > 0 || behind };
    },

    async discoverSplits(known: readonly SourceSplit[], _ctx: SourceSubtaskContext): Promise<readonly SourceSplit[]> {
      // Only a finished parent hands over children, so a subtask that finished none has nothing to look for.
      if (!known.some((s) => s.done)) return [];
      const held = new Map(known.map((s) => [s.id, s]));
      const found: SourceSplit[] = [];
      for (const s of await listShards()) {
        if (held.has(s.ShardId!) || s.ParentShardId === undefined) continue;
        const parent = held.get(s.ParentShardId);
        if (!parent?.done) continue;
        const adjacent = s.AdjacentParentShardId === undefined ? undefined : held.get(s.AdjacentParentShardId);
        if (adjacent && !adjacent.done) continue;
        found.push({ id: s.ShardId!, position: { start: childStart(parent, adjacent) } satisfies ShardPosition, done: false });
      }
      return found.sort((a, b) => (a.id < b.id ? -1 : 1));
    },
  };
}

/**
 * Where a child shard starts: at its beginning when a parent emitted a record (the parent then closed after the
 * start point, so all of the child came after it), else where its parent started (a parent that ended before the
 * start point, e.g. one read from LATEST, may have a child with older records).
 */
function childStart(parent: SourceSplit, adjacent: SourceSplit | undefined): ShardPosition['start'] {
  const parents = [parent, ...(adjacent ? [adjacent] : [])].map((s) => s.position as ShardPosition);
  if (parents.some((p) => p.after !== undefined)) return 'TRIM_HORIZON';
  return parents[0]!.start;
}
