/**
 * Job rows with optimistic concurrency, and the checkpoint status items the state machine polls (layout in
 * `coordinator-schema.ts`).
 *
 * Concurrency: acks arrive from many Lambdas at once. Each is applied as load (consistent) → reduce → UpdateItem
 * conditional on `version`. A writer that lost gets `ConditionalCheckFailedException` with the winner's item
 * (`ReturnValuesOnConditionCheckFailure: ALL_OLD`), turned into a `CoordinatorConflictError` carrying it, and
 * re-applies its event to that row — no extra read. Re-applying is safe because the reducer is idempotent for every
 * event the gateway and tasks send: a repeated ack is `duplicate`, one for a finished checkpoint `discarded`, a
 * repeated `manifestWritten`/`manifestFailed` for a checkpoint no longer pending changes nothing.
 *
 *     A: load v7 ──reduce──▶ write v8 if v=7 ✓ ───────────────────────▶ effects of A
 *     B: load v7 ──reduce──▶ write v8 if v=7 ✗ (item v8) ─reduce─▶ write v9 if v=8 ✓ ─▶ effects of B
 *
 * Effects are carried out only after their step was written, so a step that lost its write never acts.
 *
 * Status items are a projection of the row, written after it (idempotently: a final status is never replaced by
 * IN_PROGRESS). If one is lost, the state machine's Abort task rewrites it from the row, which stays the truth.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DescribeTableCommand,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
  UpdateTimeToLiveCommand,
  type AttributeValue,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { CheckpointStatus, type CoordinatorEvent, type CoordinatorState, type CoordinatorStep } from '../../core/coordinator/types.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import {
  JobStatus,
  transitionRow,
  type CheckpointStatusChange,
  type CoordinatorRow,
  type CoordinatorRuntime,
  type JobStatusRecord,
  type RowTransition,
} from '../../core/coordinator/job-row.js';
import { COORDINATOR_TABLE_SCHEMA, CoordinatorAttr, checkpointStatusKey, jobRowKey } from './dynamodb-coordinator-schema.js';

/** Largest encoded job row accepted; DynamoDB's limit is 400 KB including attribute names. */
export const MAX_JOB_ROW_BYTES = 380_000;

/** A conditional write of a job row lost to another writer; `current` is the row that won (absent if it was deleted). */
export class CoordinatorConflictError extends FloeError {
  constructor(
    readonly job: string,
    readonly expectedVersion: number,
    readonly current: CoordinatorRow | undefined,
  ) {
    super(ErrorCode.CommitFenced, `job row of '${job}' is no longer at version ${expectedVersion}${current ? ` (now ${current.version})` : ' (it was deleted)'}`, { retryable: true });
    this.name = 'CoordinatorConflictError';
  }
}

/** A reducer step that was applied to a job row. */
export interface AppliedStep {
  /** The row after the step (the stored row when nothing was written). */
  readonly row: CoordinatorRow;
  readonly step: CoordinatorStep;
  /** True when the step was written; its effects must then be carried out. */
  readonly written: boolean;
  /** True when the `accept` guard turned the step down; nothing was written. */
  readonly refused: boolean;
  readonly statusChanges: readonly CheckpointStatusChange[];
}

/** Carries out what a written reducer step asks for (barriers, manifest, commits, status items). */
export interface EffectRunner {
  run(applied: AppliedStep): Promise<void>;
}

/** Guards of {@link CoordinatorStore.apply}. */
export interface ApplyOptions {
  /** Decides, for each attempt, whether the step may be written; a refused step is returned with `refused: true`. */
  readonly accept?: (transition: RowTransition) => boolean;
}

/** How a store retries lost conditional writes. */
export interface CoordinatorStoreOptions {
  /** Attempts at applying one event before giving up with a retryable error. @default 50 */
  readonly maxAttempts?: number;
  /** Cap of the first backoff after a conflict in milliseconds; each further conflict doubles it (full jitter, at most 250 ms). @default 5 */
  readonly retryBaseDelayMs?: number;
  /** Waits between attempts; tests pass a fake. @default a setTimeout-based sleep */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** What a store has done, for tests and metrics. */
export interface CoordinatorStoreStats {
  loads: number;
  writes: number;
  /** Conditional writes that lost to another writer and were re-applied. */
  conflicts: number;
}

/**
 * Job rows with optimistic concurrency. The base class holds the apply-and-retry protocol; a subclass maps rows to
 * its backend and turns a lost conditional write into a {@link CoordinatorConflictError} carrying the winner.
 */
export abstract class CoordinatorStore {
  readonly stats: CoordinatorStoreStats = { loads: 0, writes: 0, conflicts: 0 };
  private readonly maxAttempts: number;
  private readonly retryBaseDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(options: CoordinatorStoreOptions = {}) {
    this.maxAttempts = options.maxAttempts ?? 50;
    this.retryBaseDelayMs = options.retryBaseDelayMs ?? 5;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    if (!Number.isInteger(this.maxAttempts) || this.maxAttempts < 1) throw new FloeError(ErrorCode.InvalidOptions, `maxAttempts must be an integer >= 1, got ${this.maxAttempts}`);
  }

  /** Reads a job row (strongly consistent), or undefined when the job has none. */
  abstract load(job: string): Promise<CoordinatorRow | undefined>;

  /** Stores a new row at version 1; throws a CoordinatorConflictError carrying the existing row if the job has one. */
  abstract create(row: CoordinatorRow): Promise<CoordinatorRow>;

  /** Replaces the row if the stored one is at `expectedVersion`; throws a CoordinatorConflictError otherwise. `now` is the event's time. */
  protected abstract replace(row: CoordinatorRow, expectedVersion: number, now: number): Promise<void>;

  /** Writes a checkpoint's status item; a final status is never replaced by IN_PROGRESS, nor by another final status. */
  abstract putCheckpointStatus(job: string, change: CheckpointStatusChange): Promise<void>;

  /** Reads a checkpoint's status item (strongly consistent). */
  abstract getCheckpointStatus(job: string, checkpointId: number): Promise<CheckpointStatusChange | undefined>;

  /** Records the job's lifecycle status; FINISHED and CANCELED are final. */
  abstract setJobStatus(job: string, record: JobStatusRecord): Promise<void>;

  /** Reads a job row, throwing NOT_FOUND when the job has none. */
  async require(job: string): Promise<CoordinatorRow> {
    const row = await this.load(job);
    if (!row) throw new FloeError(ErrorCode.NotFound, `job '${job}' has no coordinator row`);
    return row;
  }

  /**
   * Changes a job row's runtime outside the reducer (what only the AWS substrate keeps, such as when the sources of
   * the generation were started): `change` answers the new runtime, or undefined for no write; re-applied to the
   * winner's row on a lost write. Answers the stored row.
   */
  async updateRuntime(job: string, change: (row: CoordinatorRow) => CoordinatorRuntime | undefined, now: number): Promise<CoordinatorRow> {
    let row = await this.require(job);
    for (let attempt = 1; ; attempt++) {
      const runtime = change(row);
      if (runtime === undefined) return row;
      const next: CoordinatorRow = { ...row, runtime, version: row.version + 1 };
      try {
        await this.replace(next, row.version, now);
        this.stats.writes++;
        return next;
      } catch (e) {
        if (!(e instanceof CoordinatorConflictError)) throw e;
        this.stats.conflicts++;
        if (attempt >= this.maxAttempts) throw new FloeError(ErrorCode.Storage, `updating the job row of '${job}' lost ${attempt} conditional writes in a row`, { cause: e, retryable: true });
        if (!e.current) throw new FloeError(ErrorCode.NotFound, `job '${job}' lost its coordinator row`, { cause: e });
        row = e.current;
        await this.sleep(Math.random() * Math.min(250, this.retryBaseDelayMs * 2 ** (attempt - 1)));
      }
    }
  }

  /**
   * Applies one event to a job's row: load, reduce, write conditionally on the version, and on a lost write reduce
   * again on the winner's row. A step that changes nothing is not written. Carry out `effects` only when `written`.
   */
  async apply(job: string, event: CoordinatorEvent, options: ApplyOptions = {}): Promise<AppliedStep> {
    const { applied } = await this.applyEach(job, [event], options);
    return applied;
  }

  /**
   * Applies several events to a job's row in order with ONE conditional write (group commit): the acks that arrive
   * while a write is in flight go into the next one, so a checkpoint's N acks cost a few writes, not N. The events
   * are reduced one after the other as separate applies would reduce them; on a lost write all of them are reduced
   * again on the winner's row. `applied` merges the steps (the last state, every effect and status change in order)
   * and is what to carry out; `steps` holds each event's own step, for its result.
   */
  async applyAll(job: string, events: readonly CoordinatorEvent[]): Promise<{ applied: AppliedStep; steps: readonly CoordinatorStep[] }> {
    if (events.length === 0) throw new FloeError(ErrorCode.InvalidOptions, 'applyAll needs at least one event');
    return this.applyEach(job, events, {});
  }

  private async applyEach(job: string, events: readonly CoordinatorEvent[], options: ApplyOptions): Promise<{ applied: AppliedStep; steps: readonly CoordinatorStep[] }> {
    this.stats.loads++;
    const what = events.length === 1 ? events[0]!.type : `${events.length} events`;
    const now = events[events.length - 1]!.now;
    let row = await this.require(job);
    for (let attempt = 1; ; attempt++) {
      let current = row;
      let changed = false;
      const steps: CoordinatorStep[] = [];
      const statusChanges: CheckpointStatusChange[] = [];
      const effects: CoordinatorStep['effects'][number][] = [];
      for (const event of events) {
        const transition = transitionRow(current, event);
        if (options.accept && !options.accept(transition)) {
          return { applied: { row, step: transition.step, written: false, refused: true, statusChanges: [] }, steps: [transition.step] };
        }
        steps.push(transition.step);
        if (!transition.changed) continue;
        changed = true;
        current = transition.row;
        effects.push(...transition.step.effects);
        statusChanges.push(...transition.statusChanges);
      }
      const step: CoordinatorStep = steps.length === 1 ? steps[0]! : { state: current.state, effects };
      if (!changed) return { applied: { row, step, written: false, refused: false, statusChanges: [] }, steps };
      const next: CoordinatorRow = { ...current, version: row.version + 1 };
      try {
        await this.replace(next, row.version, now);
        this.stats.writes++;
        return { applied: { row: next, step, written: true, refused: false, statusChanges }, steps };
      } catch (e) {
        if (!(e instanceof CoordinatorConflictError)) throw e;
        this.stats.conflicts++;
        if (attempt >= this.maxAttempts) {
          throw new FloeError(ErrorCode.Storage, `applying ${what} to the job row of '${job}' lost ${attempt} conditional writes in a row`, { cause: e, retryable: true });
        }
        if (!e.current) throw new FloeError(ErrorCode.NotFound, `job '${job}' lost its coordinator row while applying ${what}`, { cause: e });
        row = e.current;
        await this.sleep(Math.random() * Math.min(250, this.retryBaseDelayMs * 2 ** (attempt - 1)));
      }
    }
  }
}

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

  /**
   * Replaces the whole row with a new generation's (state, runtime, and a RUNNING job status, the only write that
   * takes a FINISHED or CANCELED row back to RUNNING) if the stored row is at `expectedVersion`; throws a
   * CoordinatorConflictError otherwise. Used by `floe start` (lib/hosts/lambda/job-start.ts). Answers the stored row.
   */
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
            UpdateExpression: `SET #version = :next, #state = :state, #runtime = :runtime, #updatedAt = :updatedAt${extra.set}`,
            ConditionExpression: '#version = :expected',
            ExpressionAttributeNames: {
              '#version': CoordinatorAttr.version,
              '#state': CoordinatorAttr.state,
              '#runtime': CoordinatorAttr.runtime,
              '#updatedAt': CoordinatorAttr.updatedAt,
              ...extra.names,
            },
            ExpressionAttributeValues: {
              ':next': { N: String(row.version) },
              ':expected': { N: String(expectedVersion) },
              ':state': item[CoordinatorAttr.state]!,
              ':runtime': item[CoordinatorAttr.runtime]!,
              ':updatedAt': item[CoordinatorAttr.updatedAt]!,
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
            ConditionExpression: 'attribute_exists(#pk) AND (attribute_not_exists(#js) OR (#js <> :finished AND #js <> :canceled))',
            ExpressionAttributeNames: { '#pk': CoordinatorAttr.pk, '#js': CoordinatorAttr.jobStatus, '#ja': CoordinatorAttr.jobStatusAt, '#jd': CoordinatorAttr.jobStatusDetail },
            ExpressionAttributeValues: {
              ':s': { S: record.status },
              ':a': { N: String(record.at) },
              ':finished': { S: JobStatus.Finished },
              ':canceled': { S: JobStatus.Canceled },
              ...(record.detail === undefined ? {} : { ':d': { S: record.detail } }),
            },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
    } catch (e) {
      if (!(e instanceof ConditionalCheckFailedException)) throw e;
      // The job already FINISHED or was CANCELED: that is final. No row at all is a caller's mistake.
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
