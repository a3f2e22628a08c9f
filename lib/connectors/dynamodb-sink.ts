import { DeleteItemCommand, DescribeTableCommand, PutItemCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import type { SinkConnector } from '../api/connector.js';
import { ErrorCode, FloeError, ValidationError } from '../core/errors.js';
import { awsClients } from '../adapters/aws/clients.js';
import { forEachLimit, resolveRetryOptions, utf8Bytes, withRetries, type RetryOptions } from './aws-calls.js';
import { Staging, stagingResource, type StagedTransaction, type StagingOptions } from './staged-transactions.js';

/** What a DynamoDB sink writes for a record: a whole item (a put), or the key of an item to delete. */
export type DynamoDbWrite = Record<string, unknown> | { readonly delete: Record<string, unknown> };

/** Options of the exactly-once DynamoDB sink. */
export interface DynamoDbSinkOptions<T> extends StagingOptions {
  /** Name (or ARN) of the table. */
  readonly table: string;
  /**
   * Maps a record to the item to put, or to `{ delete: key }` (an object whose only property is `delete`).
   * @default the record itself, which must then be an object
   */
  readonly item?: (value: T) => DynamoDbWrite;
  /** The table's key attributes, partition key first. @default read once with DescribeTable */
  readonly key?: readonly string[];
  /**
   * How a delete is applied: `tombstone` puts an item of the key and `_floeDeleted: true` (with the version
   * attributes), so a write of an older checkpoint that lands later cannot bring the value back; `remove` deletes the
   * item, and then an older put that lands after it can (the sink is then not exactly-once for deleted keys).
   * @default 'tombstone'
   */
  readonly deletes?: 'tombstone' | 'remove';
  /** Seconds a tombstone is kept, written to `_floeExpiresAt` (epoch seconds) for a TTL on that attribute. @default no expiry attribute */
  readonly tombstoneTtlSeconds?: number;
  /** The DynamoDB client. @default `awsClients().dynamodb` (the SDK's endpoint resolution, `AWS_ENDPOINT_URL` included) */
  readonly client?: DynamoDBClient;
  /** Writes in flight at once during a commit. @default 16 */
  readonly concurrency?: number;
  /** Retries of throttled and failed calls. */
  readonly retry?: RetryOptions;
}

/** Attributes the sink adds to every item it writes: the version of the write, compared by the commit's condition. */
export const DYNAMODB_SINK_ATTRIBUTES = {
  /** The checkpoint whose transaction wrote the item (a number). */
  checkpoint: '_floeCheckpoint',
  /** The run that pre-committed it (a string). */
  run: '_floeRun',
  /** The sink subtask that pre-committed it (a number), which orders writes of one checkpoint. */
  subtask: '_floeSubtask',
  /** `true` on a tombstone: the key was deleted. */
  deleted: '_floeDeleted',
  /** Epoch seconds after which a tombstone may be removed (with `tombstoneTtlSeconds`). */
  expiresAt: '_floeExpiresAt',
} as const;

/** DynamoDB's largest item, in bytes. */
export const DYNAMODB_MAX_ITEM_BYTES = 400 * 1024;

/** An attribute value as staged: binary values as base64 strings, so a part is plain JSON. */
type JsonAttributeValue = { S: string } | { N: string } | { B: string } | { SS: string[] } | { NS: string[] } | { BS: string[] } | { M: JsonItem } | { L: JsonAttributeValue[] } | { NULL: true } | { BOOL: boolean };
type JsonItem = Record<string, JsonAttributeValue>;

/** A staged write: the item to put, or the key to delete. */
type StagedWrite = { readonly put: JsonItem } | { readonly delete: JsonItem };

interface DynamoDbTransaction extends StagedTransaction {
  readonly sink: 'dynamodb';
  readonly table: string;
  readonly key: readonly string[];
}

/** Room left in an item for the version attributes the sink adds. */
const VERSION_BYTES = 128;

/**
 * Exactly-once upserts and deletes into a DynamoDB table. Records of an epoch are staged (see `StagingOptions`), not
 * written; when the checkpoint completes the commit applies the epoch's writes, the last one per key, each as a full
 * put (or delete) of the final value with a condition on the version the item carries:
 *
 *   put/delete only if  attribute_not_exists(_floeCheckpoint)  OR  _floeRun <> run
 *                       OR _floeCheckpoint < checkpoint  OR  (_floeCheckpoint = checkpoint AND _floeSubtask <= subtask)
 *
 * So applying a transaction again (a crash mid-commit, a restore, a later checkpoint carrying it) rewrites the same
 * values, and a transaction of an older checkpoint applied after a newer one (a late retry, a carried commit, commits of
 * two subtasks) leaves the newer values alone: the table is what applying every transaction once, in checkpoint order,
 * gives. Deletes are tombstones by default (see `deletes`). BatchWriteItem is not used: it takes no conditions.
 */
export function dynamoDbSink<T>(options: DynamoDbSinkOptions<T>): SinkConnector<T> {
  const problems: string[] = [];
  if (typeof options.table !== 'string' || options.table === '') problems.push('table must be a table name or ARN');
  if (options.key !== undefined && (options.key.length < 1 || options.key.length > 2 || options.key.some((k) => typeof k !== 'string' || k === ''))) problems.push('key must name one or two attributes');
  if (options.deletes !== undefined && options.deletes !== 'tombstone' && options.deletes !== 'remove') problems.push(`deletes must be 'tombstone' or 'remove', got ${String(options.deletes)}`);
  if (options.tombstoneTtlSeconds !== undefined && !(Number.isInteger(options.tombstoneTtlSeconds) && options.tombstoneTtlSeconds > 0)) problems.push('tombstoneTtlSeconds must be a positive integer');
  const concurrency = options.concurrency ?? 16;
  if (!Number.isInteger(concurrency) || concurrency < 1) problems.push('concurrency must be an integer >= 1');
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'dynamoDbSink options', problems);
  const retry = resolveRetryOptions('dynamoDbSink', options.retry);
  const staging = new Staging('dynamoDbSink', options);
  const deletes = options.deletes ?? 'tombstone';
  const toWrite = options.item ?? ((v: T) => v as unknown as DynamoDbWrite);
  let client: DynamoDBClient | undefined;
  const dynamodb = () => (client ??= options.client ?? awsClients().dynamodb);
  const keys = new Map<string, Promise<readonly string[]>>();
  const keyOf = (table: string): Promise<readonly string[]> => {
    if (options.key && table === options.table) return Promise.resolve(options.key);
    let known = keys.get(table);
    if (!known) {
      known = withRetries(`dynamoDbSink: describing table ${table}`, retry, async () => {
        const described = await dynamodb().send(new DescribeTableCommand({ TableName: table }));
        const schema = described.Table?.KeySchema ?? [];
        const hash = schema.find((k) => k.KeyType === 'HASH')?.AttributeName;
        const range = schema.find((k) => k.KeyType === 'RANGE')?.AttributeName;
        if (!hash) throw new FloeError(ErrorCode.InvalidOptions, `dynamoDbSink: table ${table} has no partition key in its description`);
        return range ? [hash, range] : [hash];
      });
      known.catch(() => keys.delete(table));
      keys.set(table, known);
    }
    return known;
  };

  const encode = async (values: readonly T[]): Promise<StagedWrite[]> => {
    const key = await keyOf(options.table);
    return values.map((v) => stagedWrite(toWrite(v), key, options.table));
  };

  return {
    type: 'dynamodb',
    resources: [{ service: 'dynamodb', table: options.table, access: 'write' }, ...(options.staging?.startsWith('s3://') ? [stagingResource(options.staging)] : []),],
    exactlyOnce: deletes === 'tombstone',
    createWriter(ctx) {
      return staging.writer<T, StagedWrite>(ctx, 'dynamodb', async () => ({ table: options.table, key: await keyOf(options.table) }), encode);
    },
    async commit(pending) {
      const t = pending as DynamoDbTransaction;
      await staging.commit<StagedWrite>(t, async (records) => {
        // The last write per key wins; a key is written once per transaction, so no two writes of it race.
        const last = new Map<string, StagedWrite>();
        for (const { record } of records) {
          const k = keyString(t.key, 'put' in record ? record.put : record.delete);
          last.delete(k);
          last.set(k, record);
        }
        await forEachLimit([...last.values()], concurrency, (w) => applyWrite(t, w));
      });
    },
  };

  async function applyWrite(t: DynamoDbTransaction, w: StagedWrite): Promise<void> {
    const a = DYNAMODB_SINK_ATTRIBUTES;
    const version: Record<string, AttributeValue> = {
      [a.checkpoint]: { N: String(t.checkpointId) },
      [a.run]: { S: t.run },
      [a.subtask]: { N: String(t.subtask) },
    };
    const condition = {
      ConditionExpression: 'attribute_not_exists(#c) OR #r <> :r OR #c < :c OR (#c = :c AND #s <= :s)',
      ExpressionAttributeNames: { '#c': a.checkpoint, '#r': a.run, '#s': a.subtask },
      ExpressionAttributeValues: { ':c': version[a.checkpoint]!, ':r': version[a.run]!, ':s': version[a.subtask]! },
    };
    const tombstone = (): Record<string, AttributeValue> => ({
      [a.deleted]: { BOOL: true },
      ...(options.tombstoneTtlSeconds !== undefined ? { [a.expiresAt]: { N: String(Math.floor(Date.now() / 1000) + options.tombstoneTtlSeconds) } } : {}),
    });
    const send =
      'put' in w
        ? () => dynamodb().send(new PutItemCommand({ TableName: t.table, Item: { ...fromJson(w.put), ...version }, ...condition }))
        : deletes === 'remove'
          ? () => dynamodb().send(new DeleteItemCommand({ TableName: t.table, Key: fromJson(w.delete), ...condition }))
          : () => dynamodb().send(new PutItemCommand({ TableName: t.table, Item: { ...fromJson(w.delete), ...version, ...tombstone() }, ...condition }));
    const what = `dynamoDbSink: committing checkpoint ${t.checkpointId} of ${t.uid}/${t.subtask} to ${t.table}`;
    await withRetries(what, retry, async () => {
      try {
        await send();
      } catch (e) {
        // The item holds a newer write (a later checkpoint's, or a later subtask's of this one): it stays.
        if ((e as { name?: string }).name === 'ConditionalCheckFailedException') return;
        throw e;
      }
    });
  }
}

/** Turns what `item` returned into a staged write, checking what DynamoDB would refuse. */
function stagedWrite(write: DynamoDbWrite, key: readonly string[], table: string): StagedWrite {
  if (typeof write !== 'object' || write === null || Array.isArray(write)) {
    throw new FloeError(ErrorCode.InvalidJob, `dynamoDbSink(${table}): a record must map to an item object or { delete: key }, got ${JSON.stringify(write)}`);
  }
  const isDelete = Object.keys(write).length === 1 && 'delete' in write && typeof write.delete === 'object' && write.delete !== null;
  const source = isDelete ? (write as { delete: Record<string, unknown> }).delete : (write as Record<string, unknown>);
  let item: Record<string, AttributeValue>;
  try {
    item = marshall(source, { removeUndefinedValues: true });
  } catch (e) {
    throw new FloeError(ErrorCode.InvalidJob, `dynamoDbSink(${table}): cannot convert ${isDelete ? 'a key' : 'an item'} to DynamoDB attributes: ${(e as Error).message}`, { cause: e });
  }
  for (const k of key) {
    const v = item[k];
    if (!v || (v.S === undefined && v.N === undefined && v.B === undefined)) {
      throw new FloeError(ErrorCode.InvalidJob, `dynamoDbSink(${table}): ${isDelete ? 'a delete key' : 'an item'} lacks key attribute '${k}' as a string, number or binary: ${JSON.stringify(source)}`);
    }
  }
  if (isDelete) {
    const extra = Object.keys(item).filter((k) => !key.includes(k));
    if (extra.length > 0) throw new FloeError(ErrorCode.InvalidJob, `dynamoDbSink(${table}): a delete key has attributes other than the table's key (${key.join(', ')}): ${extra.join(', ')}`);
    return { delete: toJson(item) };
  }
  const size = itemBytes(item) + VERSION_BYTES;
  if (size > DYNAMODB_MAX_ITEM_BYTES) {
    const id = key.map((k) => JSON.stringify(source[k])).join('/');
    throw new FloeError(ErrorCode.LimitExceeded, `dynamoDbSink(${table}): the item of key ${id} is about ${size} bytes, over DynamoDB's item limit of ${DYNAMODB_MAX_ITEM_BYTES} bytes`);
  }
  return { put: toJson(item) };
}

/** The key attributes of an item, as one string. */
function keyString(key: readonly string[], item: JsonItem): string {
  return JSON.stringify(key.map((k) => item[k]));
}

/** An item's size as DynamoDB counts it, near enough to refuse what it would refuse: names and values in UTF-8. */
function itemBytes(item: Record<string, AttributeValue>): number {
  let n = 0;
  for (const [name, value] of Object.entries(item)) n += utf8Bytes(name) + valueBytes(value);
  return n;
}

function valueBytes(v: AttributeValue): number {
  if (v.S !== undefined) return utf8Bytes(v.S);
  if (v.N !== undefined) return Math.ceil(v.N.length / 2) + 1;
  if (v.B !== undefined) return v.B.byteLength;
  if (v.SS !== undefined) return v.SS.reduce((s, x) => s + utf8Bytes(x), 0);
  if (v.NS !== undefined) return v.NS.reduce((s, x) => s + Math.ceil(x.length / 2) + 1, 0);
  if (v.BS !== undefined) return v.BS.reduce((s, x) => s + x.byteLength, 0);
  if (v.M !== undefined) return 3 + Object.entries(v.M).reduce((s, [k, x]) => s + 1 + utf8Bytes(k) + valueBytes(x), 0);
  if (v.L !== undefined) return 3 + v.L.reduce((s, x) => s + 1 + valueBytes(x), 0);
  return 1;
}

const base64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');

function toJson(item: Record<string, AttributeValue>): JsonItem {
  const out: JsonItem = {};
  for (const [k, v] of Object.entries(item)) out[k] = toJsonValue(v);
  return out;
}

function toJsonValue(v: AttributeValue): JsonAttributeValue {
  if (v.B !== undefined) return { B: base64(v.B) };
  if (v.BS !== undefined) return { BS: v.BS.map(base64) };
  if (v.M !== undefined) return { M: toJson(v.M) };
  if (v.L !== undefined) return { L: v.L.map(toJsonValue) };
  return v as JsonAttributeValue;
}

function fromJson(item: JsonItem): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const [k, v] of Object.entries(item)) out[k] = fromJsonValue(v);
  return out;
}

function fromJsonValue(v: JsonAttributeValue): AttributeValue {
  if ('B' in v) return { B: Buffer.from(v.B, 'base64') };
  if ('BS' in v) return { BS: v.BS.map((x) => Buffer.from(x, 'base64')) };
  if ('M' in v) return { M: fromJson(v.M) };
  if ('L' in v) return { L: v.L.map(fromJsonValue) };
  return v as AttributeValue;
}
