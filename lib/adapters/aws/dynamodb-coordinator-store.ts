/**
 * The coordinator's store in DynamoDB: job rows and checkpoint status items in one table laid out as
 * `dynamodb-coordinator-schema.ts`. A lost conditional write (`ConditionalCheckFailedException`) carries the winner's
 * item (`ReturnValuesOnConditionCheckFailure: ALL_OLD`), turned into a `CoordinatorConflictError`, so the protocol of
 * lib/ports/coordinator-store.ts re-applies its event without another read.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
  UpdateTimeToLiveCommand,
  type AttributeValue,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { CheckpointStatus, type CoordinatorState } from '../../core/coordinator/types.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import { JobStatus, type CheckpointStatusChange, type CoordinatorRow, type CoordinatorRuntime, type JobStatusRecord } from '../../core/coordinator/job-row.js';
import { CoordinatorConflictError, CoordinatorStore, type CoordinatorStoreOptions } from '../../ports/coordinator-store.js';
import { COORDINATOR_TABLE_SCHEMA, CoordinatorAttr, checkpointStatusKey, jobRowKey } from './dynamodb-coordinator-schema.js';

/** Largest encoded job row accepted; DynamoDB's limit is 400 KB including attribute names. */
export const MAX_JOB_ROW_BYTES = 380_000;

/** Options of {@link DynamoDbCoordinatorStore}. */
export interface DynamoDbCoordinatorStoreOptions extends CoordinatorStoreOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** How long a finished checkpoint's status item is kept (DynamoDB TTL), in seconds. @default 604800 (7 days) */
  readonly statusTtlSeconds?: number;
  /**
   * Serialize this process's conditional writes of a job row (every store in the process shares the lock). For
   * emulators whose conditional writes are not atomic under concurrent requests (moto 5 checks and writes without a
   * lock, so two racing writers can both succeed); DynamoDB itself needs no help. Writers in other processes are not
   * covered, which is fine in emulator mode, where all of them run in one process.
   * @default false
   */
  readonly serializeLocalWrites?: boolean;
}

/** Tails of the in-process write chains, by table and key (see `serializeLocalWrites`). */
const localWriteChains = new Map<string, Promise<void>>();

/** Runs `write` after every earlier write of the same key in this process has settled. */
async function serialized<T>(key: string, write: () => Promise<T>): Promise<T> {
  const previous = localWriteChains.get(key) ?? Promise.resolve();
  let release!: () => void;
  const tail = new Promise<void>((resolve) => (release = resolve));
  localWriteChains.set(key, tail);
  try {
    await previous;
    return await write();
  } finally {
    release();
    if (localWriteChains.get(key) === tail) localWriteChains.delete(key);
  }
}

/** Job rows and checkpoint status items in a DynamoDB table laid out as {@link COORDINATOR_TABLE_SCHEMA}. */
export class DynamoDbCoordinatorStore extends CoordinatorStore {
  private readonly client: DynamoDBClient;
  private readonly tableName: string;
  private readonly statusTtlSeconds: number;
  private readonly serializeLocalWrites: boolean;

  constructor(options: DynamoDbCoordinatorStoreOptions) {
    super(options);
    this.client = options.client;
    this.tableName = options.tableName;
    this.statusTtlSeconds = options.statusTtlSeconds ?? 7 * 24 * 3600;
    this.serializeLocalWrites = options.serializeLocalWrites ?? false;
  }

  /** Sends a conditional write of the item `pk`, behind the in-process lock when asked to. */
  private write<T>(pk: string, send: () => Promise<T>): Promise<T> {
    return this.serializeLocalWrites ? serialized(`${this.tableName}\u0000${pk}`, send) : send();
  }

  async load(job: string): Promise<CoordinatorRow | undefined> {
    const res = await this.client.send(new GetItemCommand({ TableName: this.tableName, Key: { pk: { S: jobRowKey(job) } }, ConsistentRead: true }));
    return res.Item ? decodeRow(job, res.Item) : undefined;
  }

  async create(row: CoordinatorRow): Promise<CoordinatorRow> {
    const created: CoordinatorRow = { ...row, version: 1, jobStatus: { status: JobStatus.Running, at: row.state.startedAt ?? 0 } };
    try {
      await this.write(jobRowKey(row.job), () =>
        this.client.send(
          new PutItemCommand({
            TableName: this.tableName,
            Item: {
              ...encodeRow(created, created.jobStatus!.at),
              [CoordinatorAttr.jobStatus]: { S: JobStatus.Running },
              [CoordinatorAttr.jobStatusAt]: { N: String(created.jobStatus!.at) },
            },
            ConditionExpression: 'attribute_not_exists(#pk)',
            ExpressionAttributeNames: { '#pk': CoordinatorAttr.pk },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException) throw new CoordinatorConflictError(row.job, 0, e.Item ? decodeRow(row.job, e.Item) : undefined);
      throw e;
    }
    return created;
  }

  protected async replace(row: CoordinatorRow, expectedVersion: number, now: number): Promise<void> {
    await this.updateRow(row, expectedVersion, now);
  }

  checkpointStatusKey(job: string, checkpointId: number): string {
    return checkpointStatusKey(job, checkpointId);
  }

  async remove(row: CoordinatorRow): Promise<void> {
    try {
      await this.write(jobRowKey(row.job), () =>
        this.client.send(
          new DeleteItemCommand({
            TableName: this.tableName,
            Key: { [CoordinatorAttr.pk]: { S: jobRowKey(row.job) } },
            ConditionExpression: '#v = :v',
            ExpressionAttributeNames: { '#v': CoordinatorAttr.version },
            ExpressionAttributeValues: { ':v': { N: String(row.version) } },
          }),
        ),
      );
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException) {
        throw new FloeError(ErrorCode.CommitFenced, `the job row of '${row.job}' changed while this run started: is another run of the job still going?`, { cause: e });
      }
      throw e;
    }
  }

  async replaceGeneration(row: CoordinatorRow, expectedVersion: number, now: number): Promise<CoordinatorRow> {
    const next: CoordinatorRow = { ...row, version: expectedVersion + 1, jobStatus: { status: JobStatus.Running, at: now } };
    await this.updateRow(next, expectedVersion, now, {
      set: ', #js = :running, #ja = :now REMOVE #jd',
      names: { '#js': CoordinatorAttr.jobStatus, '#ja': CoordinatorAttr.jobStatusAt, '#jd': CoordinatorAttr.jobStatusDetail },
      values: { ':running': { S: JobStatus.Running }, ':now': { N: String(now) } },
    });
    this.stats.writes++;
    return next;
  }

  /**
   * Writes `row`'s version, state and runtime (and what `extra` adds to the update) if the stored row is at
   * `expectedVersion`; throws a CoordinatorConflictError, with the stored row when there is one, otherwise.
   */
  private async updateRow(
    row: CoordinatorRow,
    expectedVersion: number,
    now: number,
    extra: { set: string; names: Record<string, string>; values: Record<string, AttributeValue> } = { set: '', names: {}, values: {} },
  ): Promise<void> {
    const item = encodeRow(row, now);
    try {
      await this.write(jobRowKey(row.job), () =>
        this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: { pk: { S: jobRowKey(row.job) } },
            UpdateExpression: `SET #version = :next, #state = :state, #runtime = :runtime, #updatedAt = :updatedAt, #quiet = :quiet${extra.set}`,
            ConditionExpression: '#version = :expected',
            ExpressionAttributeNames: {
              '#version': CoordinatorAttr.version,
              '#state': CoordinatorAttr.state,
              '#runtime': CoordinatorAttr.runtime,
              '#updatedAt': CoordinatorAttr.updatedAt,
              '#quiet': CoordinatorAttr.quiet,
              ...extra.names,
            },
            ExpressionAttributeValues: {
              ':next': { N: String(row.version) },
              ':expected': { N: String(expectedVersion) },
              ':state': item[CoordinatorAttr.state]!,
              ':runtime': item[CoordinatorAttr.runtime]!,
              ':updatedAt': item[CoordinatorAttr.updatedAt]!,
              ':quiet': item[CoordinatorAttr.quiet]!,
              ...extra.values,
            },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException) throw new CoordinatorConflictError(row.job, expectedVersion, e.Item ? decodeRow(row.job, e.Item) : undefined);
      throw e;
    }
  }

  async putCheckpointStatus(job: string, change: CheckpointStatusChange): Promise<void> {
    const final = change.status !== CheckpointStatus.InProgress;
    const item: Record<string, AttributeValue> = {
      [CoordinatorAttr.pk]: { S: checkpointStatusKey(job, change.checkpointId) },
      [CoordinatorAttr.checkpointStatus]: { S: change.status },
      [CoordinatorAttr.kind]: { S: change.kind },
      [CoordinatorAttr.at]: { N: String(change.at) },
      ...(change.reason === undefined ? {} : { [CoordinatorAttr.reason]: { S: change.reason } }),
      ...(change.path === undefined ? {} : { [CoordinatorAttr.path]: { S: change.path } }),
      ...(final ? { [CoordinatorAttr.expiresAt]: { N: String(Math.ceil(change.at / 1000) + this.statusTtlSeconds) } } : {}),
    };
    try {
      await this.write(checkpointStatusKey(job, change.checkpointId), () =>
        this.client.send(
          new PutItemCommand({
            TableName: this.tableName,
            Item: item,
            // IN_PROGRESS only creates; a final status only replaces IN_PROGRESS (a status never goes back or changes its mind).
            ConditionExpression: final ? 'attribute_not_exists(#pk) OR #status = :inProgress' : 'attribute_not_exists(#pk)',
            ExpressionAttributeNames: final ? { '#pk': CoordinatorAttr.pk, '#status': CoordinatorAttr.checkpointStatus } : { '#pk': CoordinatorAttr.pk },
            ...(final ? { ExpressionAttributeValues: { ':inProgress': { S: CheckpointStatus.InProgress } } } : {}),
          }),
        ),
      );
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException) return;
      throw e;
    }
  }

  async getCheckpointStatus(job: string, checkpointId: number): Promise<CheckpointStatusChange | undefined> {
    const res = await this.client.send(new GetItemCommand({ TableName: this.tableName, Key: { pk: { S: checkpointStatusKey(job, checkpointId) } }, ConsistentRead: true }));
    const item = res.Item;
    if (!item) return undefined;
    const reason = item[CoordinatorAttr.reason]?.S;
    const path = item[CoordinatorAttr.path]?.S;
    return {
      checkpointId,
      kind: item[CoordinatorAttr.kind]?.S as CheckpointStatusChange['kind'],
      status: item[CoordinatorAttr.checkpointStatus]?.S as CheckpointStatus,
      at: Number(item[CoordinatorAttr.at]?.N ?? 0),
      ...(reason === undefined ? {} : { reason }),
      ...(path === undefined ? {} : { path }),
    };
  }

  async setJobStatus(job: string, record: JobStatusRecord): Promise<void> {
    try {
      await this.write(jobRowKey(job), () =>
        this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: { pk: { S: jobRowKey(job) } },
            UpdateExpression: record.detail === undefined ? 'SET #js = :s, #ja = :a REMOVE #jd' : 'SET #js = :s, #ja = :a, #jd = :d',
            ConditionExpression: 'attribute_exists(#pk) AND (attribute_not_exists(#js) OR (#js <> :finished AND #js <> :canceled AND #js <> :failed))',
            ExpressionAttributeNames: { '#pk': CoordinatorAttr.pk, '#js': CoordinatorAttr.jobStatus, '#ja': CoordinatorAttr.jobStatusAt, '#jd': CoordinatorAttr.jobStatusDetail },
            ExpressionAttributeValues: {
              ':s': { S: record.status },
              ':a': { N: String(record.at) },
              ':finished': { S: JobStatus.Finished },
              ':canceled': { S: JobStatus.Canceled },
              ':failed': { S: JobStatus.Failed },
              ...(record.detail === undefined ? {} : { ':d': { S: record.detail } }),
            },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
    } catch (e) {
      if (!(e instanceof ConditionalCheckFailedException)) throw e;
      // The job already FINISHED, was CANCELED or FAILED: that is final. No row at all is a caller's mistake.
      if (!e.Item) throw new FloeError(ErrorCode.NotFound, `job '${job}' has no coordinator row to record ${record.status} in`, { cause: e });
    }
  }
}

/** Encodes a row's written attributes; `now` is when it is written. */
function encodeRow(row: CoordinatorRow, now: number): Record<string, AttributeValue> {
  const state = deflateRawSync(Buffer.from(JSON.stringify(row.state), 'utf8'));
  const runtime = JSON.stringify(row.runtime);
  const size = state.byteLength + Buffer.byteLength(runtime, 'utf8') + 200;
  if (size > MAX_JOB_ROW_BYTES) {
    throw new FloeError(
      ErrorCode.Storage,
      `the job row of '${row.job}' would take ${size} bytes, over the ${MAX_JOB_ROW_BYTES}-byte budget of a DynamoDB item ` +
        `(${row.state.tasks.length} tasks, ${row.state.history.length} checkpoints of history); lower the history size`,
    );
  }
  return {
    [CoordinatorAttr.pk]: { S: jobRowKey(row.job) },
    [CoordinatorAttr.version]: { N: String(row.version) },
    [CoordinatorAttr.state]: { B: state },
    [CoordinatorAttr.runtime]: { S: runtime },
    [CoordinatorAttr.updatedAt]: { N: String(now) },
    [CoordinatorAttr.quiet]: { BOOL: row.state.quiet?.confirmed === true },
  };
}

/** Decodes a stored job row; a row that cannot be read is a terminal STORAGE error. */
function decodeRow(job: string, item: Record<string, AttributeValue>): CoordinatorRow {
  try {
    const state = JSON.parse(inflateRawSync(item[CoordinatorAttr.state]!.B!).toString('utf8')) as CoordinatorState;
    const runtime = JSON.parse(item[CoordinatorAttr.runtime]!.S!) as CoordinatorRuntime;
    const status = item[CoordinatorAttr.jobStatus]?.S as JobStatus | undefined;
    const detail = item[CoordinatorAttr.jobStatusDetail]?.S;
    return {
      job,
      version: Number(item[CoordinatorAttr.version]!.N),
      state,
      runtime,
      ...(status === undefined ? {} : { jobStatus: { status, at: Number(item[CoordinatorAttr.jobStatusAt]?.N ?? 0), ...(detail === undefined ? {} : { detail }) } }),
    };
  } catch (e) {
    throw new FloeError(ErrorCode.Storage, `the job row of '${job}' cannot be decoded: ${(e as Error).message}`, { cause: e });
  }
}

/** Options of {@link createCoordinatorTable}. */
export interface CreateCoordinatorTableOptions {
  /** Turn on TTL on `expiresAt`, so finished checkpoints' status items expire. @default true */
  readonly timeToLive?: boolean;
}

/** Creates the coordinator table (on-demand billing) for tests and emulator mode and waits until it is active; an existing table is left as it is. */
export async function createCoordinatorTable(client: DynamoDBClient, tableName: string, options: CreateCoordinatorTableOptions = {}): Promise<void> {
  const { partitionKey } = COORDINATOR_TABLE_SCHEMA;
  let created = true;
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: COORDINATOR_TABLE_SCHEMA.billingMode,
        AttributeDefinitions: [{ AttributeName: partitionKey.name, AttributeType: partitionKey.type }],
        KeySchema: [{ AttributeName: partitionKey.name, KeyType: 'HASH' }],
      }),
    );
  } catch (e) {
    if ((e as { name?: string }).name !== 'ResourceInUseException') throw e;
    created = false;
  }
  for (let i = 0; ; i++) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    if (Table?.TableStatus === 'ACTIVE') break;
    if (i >= 120) throw new FloeError(ErrorCode.Storage, `table ${tableName} is still ${Table?.TableStatus} after 60s`, { retryable: true });
    await new Promise((r) => setTimeout(r, 500));
  }
  if (created && (options.timeToLive ?? true)) {
    await client.send(
      new UpdateTimeToLiveCommand({ TableName: tableName, TimeToLiveSpecification: { AttributeName: COORDINATOR_TABLE_SCHEMA.timeToLiveAttribute, Enabled: true } }),
    );
  }
}

// The table's layout lives in coordinator-schema.ts (no SDK imports, for CDK); re-exported for callers of the store.
export { COORDINATOR_TABLE_SCHEMA, CoordinatorAttr, checkpointStatusKey, jobRowKey } from './dynamodb-coordinator-schema.js';
