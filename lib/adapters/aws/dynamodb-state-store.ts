/**
 * Keyed and operator state in DynamoDB, for Floe on AWS.
 *
 * Table (schema constants and `createStateTable` in dynamodb-state-schema.ts, where every attribute is described):
 *   pk `<job>/<vertex>/<subtask>`   sk `control`                         the control row, fenced by `v` and `cn`
 *                                   sk `chain`                           the last snapshot's handle chain
 *                                   sk `s/<inc>/<seg>.<depth>.<bucket>`  a leaf: packed entries of key groups
 *                                                                        [seg, seg + keyGroupsPerItem), one hash bucket
 * The commit protocol (claim, fenced leaf writes with undo, conditional commit) and its invariants are in
 * dynamodb-state-subtask.ts, above `commit`; the packing of entries into leaves is in dynamodb-state-blob.ts.
 */
import {
  BatchGetItemCommand,
  BatchWriteItemCommand,
  DeleteItemCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
  UpdateItemCommand,
  type AttributeValue,
  type DynamoDBClient,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import { ErrorCode, FloeError, ValidationError } from '../../core/errors.js';
import type { StateStore, TaskAddress } from '../../ports/index.js';
import { awsClients } from './clients.js';
import { deflateJson, inflateJson } from './dynamodb-state-blob.js';
import {
  CHAIN_SORT_KEY,
  CONTROL_SORT_KEY,
  StateAttr as A,
  itemBytes,
  jobPartitionPrefix,
  leafSortKey,
  leafSortKeyPrefix,
  readUnitsOf,
  subtaskPartitionKey,
  writeUnitsOf,
} from './dynamodb-state-schema.js';
import {
  PackedSubtaskState,
  StateFencedError,
  type ExistingVersion,
  type HeadBody,
  type LeafWrite,
  type PackedStateTuning,
  type StoredChain,
  type StoredHead,
  type StoredLeaf,
} from './dynamodb-state-subtask.js';

export { createStateTable, STATE_TABLE_SCHEMA, StateAttr } from './dynamodb-state-schema.js';
export { StateFencedError } from './dynamodb-state-subtask.js';

/** Options of {@link DynamoDbStateStore}. */
export interface DynamoDbStateStoreOptions {
  /** Name of the state table (layout in dynamodb-state-schema.ts; `createStateTable` makes one). */
  readonly tableName: string;
  /** Job name: the first part of every partition key, so several jobs can share one table. */
  readonly job: string;
  /**
   * The DynamoDB client to use.
   * @default `awsClients().dynamodb`: SDK defaults, `AWS_ENDPOINT_URL` included
   */
  readonly client?: DynamoDBClient;
  /**
   * Aligned key groups packed into one item (a subtask owning G key groups starts with G / keyGroupsPerItem items).
   * A step rewrites every item it touches, so the write units of a step are about the compressed size of the items
   * holding the keys it changed: few large items suit steps that touch keys everywhere (a word count), more small
   * ones suit steps that touch few keys. Fixed per subtask when its state is first written or restored.
   * @default 16
   */
  readonly keyGroupsPerItem?: number;
  /**
   * Compressed bytes of an item's entries above which it splits in two by record-key hash (DynamoDB items hold
   * 400 KB, and a write is billed per started KB of the item).
   * @default 16384
   */
  readonly maxItemBytes?: number;
  /**
   * Item writes in flight at once during a commit.
   * @default 16
   */
  readonly writeConcurrency?: number;
  /**
   * Items a subtask keeps in memory between steps (valid while no other invocation commits in between).
   * @default 4096
   */
  readonly maxCachedItems?: number;
}

/** {@link DynamoDbStateStoreOptions} with defaults filled in. */
export interface ResolvedDynamoDbStateStoreOptions extends PackedStateTuning {
  readonly tableName: string;
  readonly job: string;
  readonly client: DynamoDBClient | undefined;
}

const TABLE_NAME = /^[A-Za-z0-9_.-]{3,255}$/;

/** Fills the defaults of the store's options and validates them, reporting every problem at once. */
export function resolveDynamoDbStateStoreOptions(options: DynamoDbStateStoreOptions): ResolvedDynamoDbStateStoreOptions {
  const problems: string[] = [];
  const int = (name: string, value: number | undefined, fallback: number, min: number, max: number): number => {
    const v = value ?? fallback;
    if (!Number.isInteger(v) || v < min || v > max) problems.push(`${name} must be an integer from ${min} to ${max}, got ${value}`);
    return v;
  };
  if (!TABLE_NAME.test(options.tableName ?? '')) problems.push(`tableName must be 3-255 letters, digits, '_', '-' or '.', got '${options.tableName}'`);
  if (!options.job) problems.push('job must not be empty');
  const resolved: ResolvedDynamoDbStateStoreOptions = {
    tableName: options.tableName,
    job: options.job,
    client: options.client,
    keyGroupsPerItem: int('keyGroupsPerItem', options.keyGroupsPerItem, 16, 1, 32768),
    maxItemBytes: int('maxItemBytes', options.maxItemBytes, 16384, 1024, 256 * 1024),
    writeConcurrency: int('writeConcurrency', options.writeConcurrency, 16, 1, 256),
    maxCachedItems: int('maxCachedItems', options.maxCachedItems, 4096, 0, 10_000_000),
  };
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'DynamoDbStateStore options', problems);
  return resolved;
}

/** Request units and items a subtask's state has consumed, computed from item sizes as DynamoDB bills them. */
export interface DynamoDbStateUsage {
  /** Write request units: per write, 1 per started KB of the larger of the old and new item. */
  writeUnits: number;
  /** Read request units of strongly consistent reads: 1 per started 4 KB per item read (at least 1 per key asked for). */
  readUnits: number;
  /** Items written or deleted. */
  itemWrites: number;
  /** Items asked for. */
  itemReads: number;
  /** Requests sent. */
  requests: number;
}

/** Error names that say "try again later". */
const RETRYABLE = new Set([
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
  'InternalServerError',
  'ServiceUnavailable',
  'TransactionConflictException',
  'TimeoutError',
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
]);

const BATCH_GET = 100;
const BATCH_WRITE = 25;
const MAX_BATCH_ROUNDS = 10;

type Item = Record<string, AttributeValue>;
type Key = { pk: AttributeValue; sk: AttributeValue };

const s = (S: string): AttributeValue => ({ S });
const n = (N: number): AttributeValue => ({ N: String(N) });
const b = (B: Uint8Array): AttributeValue => ({ B });

function isConditionFailure(e: unknown): e is { Item?: Item } {
  return (e as { name?: string }).name === 'ConditionalCheckFailedException';
}

function existingOf(item: Item | undefined): ExistingVersion | undefined {
  if (!item) return undefined;
  const num = (a: AttributeValue | undefined) => (a?.N !== undefined ? Number(a.N) : undefined);
  return { version: num(item[A.version]), claim: num(item[A.claimCounter]) ?? num(item[A.claim]), owner: item[A.owner]?.S };
}

function decodeBody(item: Item): HeadBody {
  const raw = item[A.body]?.B;
  const body = (raw ? inflateJson(raw) : {}) as Partial<HeadBody>;
  return { ops: {}, cap: 0, dirty: [], tmin: {}, layout: {}, orphans: [], ...body };
}

function decodeHead(item: Item): StoredHead {
  return {
    version: Number(item[A.version]?.N ?? 0),
    cn: Number(item[A.claimCounter]?.N ?? 0),
    inc: item[A.incarnation]!.S!,
    owner: item[A.owner]?.S,
    pend: item[A.pending]?.SS ?? [],
    body: decodeBody(item),
  };
}

function decodeLeaf(item: Item): StoredLeaf {
  const u = item[A.undo]?.B;
  return { ver: Number(item[A.version]!.N), c: Number(item[A.claim]!.N), d: item[A.data]!.B!, ...(u ? { u } : {}) };
}

/** The tail of a leaf's sort key: its id. */
function leafIdOf(sk: string): string {
  return sk.slice(sk.lastIndexOf('/') + 1);
}

/**
 * One subtask's state in a DynamoDB table: maps the packed-state protocol of {@link PackedSubtaskState} onto items
 * (layout in dynamodb-state-schema.ts) and turns a failed condition into {@link StateFencedError} with the item found
 * (`ReturnValuesOnConditionCheckFailure: ALL_OLD`).
 */
export class DynamoDbSubtaskState extends PackedSubtaskState {
  private readonly pk: string;
  /** Last known stored size of each item by sort key, for billing the larger of old and new image. */
  private readonly sizes = new Map<string, number>();
  private headItem: Item | undefined;
  private readonly counters: DynamoDbStateUsage = { writeUnits: 0, readUnits: 0, itemWrites: 0, itemReads: 0, requests: 0 };

  constructor(
    task: TaskAddress,
    private readonly client: DynamoDBClient,
    private readonly options: ResolvedDynamoDbStateStoreOptions,
  ) {
    super(task, options);
    this.pk = subtaskPartitionKey(options.job, task);
  }

  /** Request units and items consumed so far (cumulative; subtract two readings to measure a step). */
  usage(): Readonly<DynamoDbStateUsage> {
    return { ...this.counters };
  }

  private key(sk: string): Key {
    return { pk: s(this.pk), sk: s(sk) };
  }

  private async send<T>(what: string, run: () => Promise<T>): Promise<T> {
    this.counters.requests++;
    try {
      return await run();
    } catch (e) {
      if (isConditionFailure(e)) throw e;
      throw storageError(`DynamoDB ${what} on table ${this.options.tableName} for ${this.task.vertex}:${this.task.subtask} failed`, e);
    }
  }

  private billWrite(sk: string, newBytes: number | undefined): void {
    const old = this.sizes.get(sk) ?? 0;
    this.counters.writeUnits += writeUnitsOf(Math.max(old, newBytes ?? 0));
    this.counters.itemWrites++;
    if (newBytes === undefined) this.sizes.delete(sk);
    else this.sizes.set(sk, newBytes);
  }

  /** BatchGetItem, strongly consistent, 100 keys per request, retrying unprocessed keys with backoff. */
  private async batchGet(sks: readonly string[]): Promise<Item[]> {
    const out: Item[] = [];
    const table = this.options.tableName;
    for (let i = 0; i < sks.length; i += BATCH_GET) {
      let keys: Key[] | undefined = sks.slice(i, i + BATCH_GET).map((sk) => this.key(sk));
      this.counters.itemReads += keys.length;
      for (let round = 0; keys && keys.length > 0; round++) {
        if (round > 0) await backoff(round, `BatchGetItem on table ${table} left keys unprocessed`);
        const asked: Key[] = keys;
        const res = await this.send('BatchGetItem', () => this.client.send(new BatchGetItemCommand({ RequestItems: { [table]: { Keys: asked, ConsistentRead: true } } })));
        for (const item of res.Responses?.[table] ?? []) {
          const bytes = itemBytes(item);
          this.sizes.set(item[A.sk]!.S!, bytes);
          this.counters.readUnits += readUnitsOf(bytes);
          out.push(item);
        }
        keys = res.UnprocessedKeys?.[table]?.Keys as Key[] | undefined;
        const found = res.Responses?.[table]?.length ?? 0;
        this.counters.readUnits += Math.max(0, asked.length - found - (keys?.length ?? 0)); // a missing item still costs a unit
      }
    }
    return out;
  }

  /** Query of this subtask's partition by sort-key prefix, strongly consistent, all pages. */
  private async query(prefix: string, keysOnly: boolean): Promise<Item[]> {
    const out: Item[] = [];
    let start: Item | undefined;
    do {
      const res = await this.send('Query', () =>
        this.client.send(
          new QueryCommand({
            TableName: this.options.tableName,
            KeyConditionExpression: '#pk = :pk AND begins_with(#sk, :p)',
            ExpressionAttributeNames: { '#pk': A.pk, '#sk': A.sk },
            ExpressionAttributeValues: { ':pk': s(this.pk), ':p': s(prefix) },
            ConsistentRead: true,
            ...(keysOnly ? { ProjectionExpression: '#pk, #sk' } : {}),
            ExclusiveStartKey: start,
          }),
        ),
      );
      let bytes = 0;
      for (const item of res.Items ?? []) {
        if (!keysOnly) this.sizes.set(item[A.sk]!.S!, itemBytes(item));
        bytes += itemBytes(item);
        out.push(item);
      }
      this.counters.readUnits += readUnitsOf(bytes);
      start = res.LastEvaluatedKey;
    } while (start);
    return out;
  }

  private async batchWrite(requests: WriteRequest[]): Promise<void> {
    const table = this.options.tableName;
    for (let i = 0; i < requests.length; i += BATCH_WRITE) {
      let batch: WriteRequest[] | undefined = requests.slice(i, i + BATCH_WRITE);
      for (const r of batch) {
        const sk = (r.PutRequest?.Item ?? r.DeleteRequest?.Key)![A.sk]!.S!;
        this.billWrite(sk, r.PutRequest ? itemBytes(r.PutRequest.Item!) : undefined);
      }
      for (let round = 0; batch && batch.length > 0; round++) {
        if (round > 0) await backoff(round, `BatchWriteItem on table ${table} left items unprocessed`);
        const asked: WriteRequest[] = batch;
        const res = await this.send('BatchWriteItem', () => this.client.send(new BatchWriteItemCommand({ RequestItems: { [table]: asked } })));
        batch = res.UnprocessedItems?.[table];
      }
    }
  }

  protected async readHead(): Promise<{ head: StoredHead | undefined; chain: StoredChain | undefined }> {
    const items = await this.batchGet([CONTROL_SORT_KEY, CHAIN_SORT_KEY]);
    const control = items.find((i) => i[A.sk]!.S === CONTROL_SORT_KEY);
    const chainItem = items.find((i) => i[A.sk]!.S === CHAIN_SORT_KEY);
    this.headItem = control;
    if (!control) this.sizes.delete(CONTROL_SORT_KEY);
    const chain: StoredChain | undefined = chainItem
      ? { inc: chainItem[A.incarnation]!.S!, seq: Number(chainItem[A.seq]!.N), chain: inflateJson(chainItem[A.body]!.B!) as StoredChain['chain'] }
      : undefined;
    return { head: control ? decodeHead(control) : undefined, chain };
  }

  protected async readLeaves(inc: string, ids: readonly string[]): Promise<Map<string, StoredLeaf>> {
    const items = await this.batchGet(ids.map((id) => leafSortKey(inc, id)));
    return new Map(items.map((item) => [leafIdOf(item[A.sk]!.S!), decodeLeaf(item)]));
  }

  protected async readAllLeaves(inc: string): Promise<Map<string, StoredLeaf>> {
    const items = await this.query(leafSortKeyPrefix(inc), false);
    return new Map(items.map((item) => [leafIdOf(item[A.sk]!.S!), decodeLeaf(item)]));
  }

  protected async claimHead(r: { exists: boolean; expectedCn: number; claim: number; owner: string; inc: string; pend: readonly string[] }): Promise<void> {
    const values: Item = { ':m': n(r.claim), ':o': s(r.owner), ':p': { SS: [...r.pend] } };
    let update = 'SET #cn = :m, #o = :o, #pend = :p';
    let condition: string;
    if (r.exists) {
      condition = '#cn = :r';
      values[':r'] = n(r.expectedCn);
    } else {
      update += ', #v = :zero, #inc = :inc';
      condition = 'attribute_not_exists(#pk)';
      values[':zero'] = n(0);
      values[':inc'] = s(r.inc);
    }
    const after: Item = { ...(this.headItem ?? { pk: s(this.pk), sk: s(CONTROL_SORT_KEY), [A.version]: n(0), [A.incarnation]: s(r.inc) }) };
    after[A.claimCounter] = values[':m']!;
    after[A.owner] = values[':o']!;
    after[A.pending] = values[':p']!;
    try {
      await this.send('UpdateItem (claim)', () =>
        this.client.send(
          new UpdateItemCommand({
            TableName: this.options.tableName,
            Key: this.key(CONTROL_SORT_KEY),
            UpdateExpression: update,
            ConditionExpression: condition,
            ExpressionAttributeNames: { '#cn': A.claimCounter, '#o': A.owner, '#pend': A.pending, ...(r.exists ? {} : { '#v': A.version, '#inc': A.incarnation, '#pk': A.pk }) },
            ExpressionAttributeValues: values,
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
    } catch (e) {
      if (!isConditionFailure(e)) throw e;
      const existing = existingOf(e.Item);
      // Our own claim, whose response was lost and which the SDK sent again.
      if (existing?.claim === r.claim && existing.owner === r.owner) return this.afterHeadWrite(after);
      throw new StateFencedError(`claim ${r.claim} of ${this.task.vertex}:${this.task.subtask} fenced: the control row moved on (claim ${existing?.claim ?? 'none'}, version ${existing?.version ?? 'none'})`, existing);
    }
    this.afterHeadWrite(after);
  }

  private afterHeadWrite(after: Item): void {
    this.billWrite(CONTROL_SORT_KEY, itemBytes(after));
    this.headItem = after;
  }

  protected async writeLeaf(inc: string, w: LeafWrite, ver: number, claim: number): Promise<void> {
    const sk = leafSortKey(inc, w.id);
    const guard = {
      TableName: this.options.tableName,
      ConditionExpression: 'attribute_not_exists(#pk) OR #c <= :m',
      ExpressionAttributeNames: { '#pk': A.pk, '#c': A.claim },
      ExpressionAttributeValues: { ':m': n(claim) },
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
    };
    try {
      if ('delete' in w) {
        await this.send('DeleteItem', () => this.client.send(new DeleteItemCommand({ ...guard, Key: this.key(sk) })));
        this.billWrite(sk, undefined);
      } else {
        const item: Item = { pk: s(this.pk), sk: s(sk), [A.data]: b(w.d), [A.version]: n(ver), [A.claim]: n(claim) };
        if (w.u) item[A.undo] = b(w.u);
        await this.send('PutItem', () => this.client.send(new PutItemCommand({ ...guard, Item: item })));
        this.billWrite(sk, itemBytes(item));
      }
    } catch (e) {
      if (!isConditionFailure(e)) throw e;
      const existing = existingOf(e.Item);
      throw new StateFencedError(
        `write of state leaf ${w.id} of ${this.task.vertex}:${this.task.subtask} by claim ${claim} fenced: a newer attempt (claim ${existing?.claim}) wrote it`,
        existing,
      );
    }
  }

  protected async commitHead(r: { exists: boolean; expectedCn: number; head: StoredHead }): Promise<void> {
    const h = r.head;
    const item: Item = {
      pk: s(this.pk),
      sk: s(CONTROL_SORT_KEY),
      [A.version]: n(h.version),
      [A.claimCounter]: n(h.cn),
      [A.incarnation]: s(h.inc),
      [A.body]: b(deflateJson(h.body)),
    };
    if (h.owner) item[A.owner] = s(h.owner);
    if (h.pend.length > 0) item[A.pending] = { SS: [...h.pend] };
    try {
      await this.send('PutItem (commit)', () =>
        this.client.send(
          new PutItemCommand({
            TableName: this.options.tableName,
            Item: item,
            ConditionExpression: r.exists ? '#cn = :e' : 'attribute_not_exists(#pk)',
            ExpressionAttributeNames: r.exists ? { '#cn': A.claimCounter } : { '#pk': A.pk },
            ...(r.exists ? { ExpressionAttributeValues: { ':e': n(r.expectedCn) } } : {}),
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
    } catch (e) {
      if (!isConditionFailure(e)) throw e;
      const existing = existingOf(e.Item);
      // Our own commit, whose response was lost and which the SDK sent again.
      if (existing?.claim === h.cn && existing.owner === h.owner && existing.version === h.version) return this.afterHeadWrite(item);
      throw new StateFencedError(
        `commit of ${this.task.vertex}:${this.task.subtask} at version ${h.version} fenced: the control row moved on (claim ${existing?.claim ?? 'none'}, version ${existing?.version ?? 'none'})`,
        existing,
      );
    }
    this.afterHeadWrite(item);
  }

  protected async writeChain(chain: StoredChain): Promise<void> {
    const item: Item = { pk: s(this.pk), sk: s(CHAIN_SORT_KEY), [A.incarnation]: s(chain.inc), [A.seq]: n(chain.seq), [A.body]: b(deflateJson(chain.chain)) };
    await this.send('PutItem (chain)', () => this.client.send(new PutItemCommand({ TableName: this.options.tableName, Item: item })));
    this.billWrite(CHAIN_SORT_KEY, itemBytes(item));
  }

  protected async writeFreshLeaves(inc: string, writes: readonly LeafWrite[]): Promise<void> {
    const requests: WriteRequest[] = writes.map((w) => {
      if ('delete' in w) return { DeleteRequest: { Key: this.key(leafSortKey(inc, w.id)) } };
      return { PutRequest: { Item: { pk: s(this.pk), sk: s(leafSortKey(inc, w.id)), [A.data]: b(w.d), [A.version]: n(0), [A.claim]: n(0) } } };
    });
    await this.batchWrite(requests);
  }

  protected async dropIncarnation(inc: string): Promise<void> {
    const items = await this.query(leafSortKeyPrefix(inc), true);
    await this.batchWrite(items.map((i) => ({ DeleteRequest: { Key: { pk: i[A.pk]!, sk: i[A.sk]! } } })));
  }
}

/**
 * Keyed and operator state of every subtask of one job in a DynamoDB table. Commits are exactly-once under crashes,
 * retries and zombie invocations; each step writes one item per touched group of key groups, not one per entry.
 */
export class DynamoDbStateStore implements StateStore {
  private readonly options: ResolvedDynamoDbStateStoreOptions;
  private readonly client: DynamoDBClient;
  private readonly subtasks = new Map<string, DynamoDbSubtaskState>();

  constructor(options: DynamoDbStateStoreOptions) {
    this.options = resolveDynamoDbStateStoreOptions(options);
    this.client = this.options.client ?? awsClients().dynamodb;
  }

  /** The state of one subtask; the same instance on every call, so its cache lives as long as the store. */
  forSubtask(task: TaskAddress): DynamoDbSubtaskState {
    const id = `${task.vertex}:${task.subtask}`;
    let state = this.subtasks.get(id);
    if (!state) this.subtasks.set(id, (state = new DynamoDbSubtaskState(task, this.client, this.options)));
    return state;
  }

  /** Deletes every item of the job (a Scan of the table: for restores and tests, not for the data path). */
  async clear(): Promise<void> {
    const table = this.options.tableName;
    let start: Item | undefined;
    do {
      let res;
      try {
        res = await this.client.send(
          new ScanCommand({
            TableName: table,
            FilterExpression: 'begins_with(#pk, :p)',
            ExpressionAttributeNames: { '#pk': A.pk, '#sk': A.sk },
            ExpressionAttributeValues: { ':p': s(jobPartitionPrefix(this.options.job)) },
            ProjectionExpression: '#pk, #sk',
            ConsistentRead: true,
            ExclusiveStartKey: start,
          }),
        );
      } catch (e) {
        throw storageError(`DynamoDB Scan of table ${table} failed`, e);
      }
      const keys = (res.Items ?? []).map((i) => ({ DeleteRequest: { Key: { pk: i[A.pk]!, sk: i[A.sk]! } } }));
      for (let i = 0; i < keys.length; i += BATCH_WRITE) {
        let batch: WriteRequest[] | undefined = keys.slice(i, i + BATCH_WRITE);
        for (let round = 0; batch && batch.length > 0; round++) {
          if (round > 0) await backoff(round, `BatchWriteItem on table ${table} left items unprocessed`);
          const asked: WriteRequest[] = batch;
          try {
            batch = (await this.client.send(new BatchWriteItemCommand({ RequestItems: { [table]: asked } }))).UnprocessedItems?.[table];
          } catch (e) {
            throw storageError(`DynamoDB BatchWriteItem on table ${table} failed`, e);
          }
        }
      }
      start = res.LastEvaluatedKey;
    } while (start);
    this.subtasks.clear();
  }
}

async function backoff(round: number, what: string): Promise<void> {
  if (round >= MAX_BATCH_ROUNDS) throw new FloeError(ErrorCode.Storage, `${what} ${round} times in a row`, { retryable: true });
  await new Promise((r) => setTimeout(r, Math.min(2000, 25 * 2 ** round)));
}

function storageError(message: string, e: unknown): FloeError {
  const err = e as { name?: string; code?: string; message?: string; $retryable?: unknown; $metadata?: { httpStatusCode?: number } };
  const status = err.$metadata?.httpStatusCode ?? 0;
  const retryable = Boolean(err.$retryable) || RETRYABLE.has(err.name ?? '') || RETRYABLE.has(err.code ?? '') || status >= 500;
  return new FloeError(ErrorCode.Storage, `${message}: ${err.name ?? 'Error'}: ${err.message ?? String(e)}`, { cause: e, retryable });
}
