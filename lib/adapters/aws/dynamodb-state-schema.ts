/**
 * The state table: one table per deployment, shared by every job, vertex and subtask it runs.
 *
 * | item          | pk                          | sk                     | attributes                                                                 |
 * | ------------- | --------------------------- | ---------------------- | -------------------------------------------------------------------------- |
 * | control row   | `<job>/<vertex>/<subtask>`  | `control`              | `v` N committed version · `cn` N claim counter · `o` S owner attempt ·     |
 * |               |                             |                        | `inc` S incarnation · `pend` SS leaves a claimant may have written ·       |
 * |               |                             |                        | `b` B deflated JSON: runtime control row, operator state, capture          |
 * |               |                             |                        | interval, dirty leaves, timer index, leaf layout, orphans                  |
 * | chain         | `<job>/<vertex>/<subtask>`  | `chain`                | `inc` S · `seq` N capture interval · `b` B deflated JSON handle chains     |
 * | state leaf    | `<job>/<vertex>/<subtask>`  | `s/<inc>/<seg>.<depth>.<bucket>` | `d` B deflated rows `[key, g, mark, value?]` · `u` B undo ·      |
 * |               |                             |                        | `v` N version its writer was building · `c` N its writer's claim           |
 *
 * A leaf packs the entries (all operators of the subtask's chain) of `keyGroupsPerItem` aligned key groups starting
 * at `seg`, split by record-key hash (`bucket`, `depth` bits) when large. All of a subtask's items share one
 * partition, so a full snapshot or a restore's cleanup is a Query; key groups are found by sort-key range inside it.
 * Rescaling never reads this table: a restore reads the S3 snapshot and writes fresh leaves for the new key-group
 * range under a new incarnation. `job`, `vertex` are URI-encoded so `/` cannot make two names collide.
 */
import {
  CreateTableCommand,
  DescribeTableCommand,
  UpdateContinuousBackupsCommand,
  type AttributeValue,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import type { TaskAddress } from '../../ports/index.js';

/** Key schema and billing of the state table; CDK defines the same table from these. */
export const STATE_TABLE_SCHEMA = {
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
  billingMode: 'PAY_PER_REQUEST',
} as const;

/** Attribute names of the state table's items (short: every byte of a name is billed on every write). */
export const StateAttr = {
  pk: 'pk',
  sk: 'sk',
  version: 'v',
  claimCounter: 'cn',
  owner: 'o',
  incarnation: 'inc',
  pending: 'pend',
  body: 'b',
  seq: 'seq',
  data: 'd',
  undo: 'u',
  claim: 'c',
} as const;

/** Sort key of a subtask's control row. */
export const CONTROL_SORT_KEY = 'control';
/** Sort key of a subtask's snapshot chain. */
export const CHAIN_SORT_KEY = 'chain';

/** The partition key of a subtask's items. */
export function subtaskPartitionKey(job: string, task: TaskAddress): string {
  return `${vertexPartitionPrefix(job, task.vertex)}${task.subtask}`;
}

/** Prefix of the partition keys of one vertex's subtasks (FloeJob scopes each function's state grants to it). */
export function vertexPartitionPrefix(job: string, vertex: string): string {
  return `${encodeURIComponent(job)}/${encodeURIComponent(vertex)}/`;
}

/** Prefix of every partition key of a job. */
export function jobPartitionPrefix(job: string): string {
  return `${encodeURIComponent(job)}/`;
}

/** Sort-key prefix of an incarnation's leaves. */
export function leafSortKeyPrefix(inc: string): string {
  return `s/${inc}/`;
}

/** Sort key of a leaf. */
export function leafSortKey(inc: string, leaf: string): string {
  return `${leafSortKeyPrefix(inc)}${leaf}`;
}

/** Options of {@link createStateTable}. */
export interface CreateStateTableOptions {
  /**
   * Turn on point-in-time recovery (continuous backups).
   * @default false — the checkpoints in S3 are the recovery path; CDK turns it on for deployed tables
   */
  readonly pointInTimeRecovery?: boolean;
}

/** Creates the state table (on-demand billing) for tests and emulator mode, and waits until it is active; an existing table is left as it is. */
export async function createStateTable(client: DynamoDBClient, tableName: string, options: CreateStateTableOptions = {}): Promise<void> {
  const { partitionKey, sortKey } = STATE_TABLE_SCHEMA;
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: STATE_TABLE_SCHEMA.billingMode,
        AttributeDefinitions: [
          { AttributeName: partitionKey.name, AttributeType: partitionKey.type },
          { AttributeName: sortKey.name, AttributeType: sortKey.type },
        ],
        KeySchema: [
          { AttributeName: partitionKey.name, KeyType: 'HASH' },
          { AttributeName: sortKey.name, KeyType: 'RANGE' },
        ],
      }),
    );
  } catch (e) {
    if ((e as { name?: string }).name !== 'ResourceInUseException') throw e;
  }
  for (let i = 0; ; i++) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    if (Table?.TableStatus === 'ACTIVE') break;
    if (i >= 120) throw new Error(`table ${tableName} is still ${Table?.TableStatus} after 60s`);
    await new Promise((r) => setTimeout(r, 500));
  }
  if (options.pointInTimeRecovery) {
    await client.send(new UpdateContinuousBackupsCommand({ TableName: tableName, PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true } }));
  }
}

/** The billed size of an item: attribute names plus values, as DynamoDB counts them. */
export function itemBytes(item: Readonly<Record<string, AttributeValue>>): number {
  let n = 0;
  for (const [name, value] of Object.entries(item)) n += Buffer.byteLength(name, 'utf8') + valueBytes(value);
  return n;
}

function valueBytes(v: AttributeValue): number {
  if (v.S !== undefined) return Buffer.byteLength(v.S, 'utf8');
  if (v.N !== undefined) return Math.ceil(v.N.replace(/^-/, '').replace(/^0+|\.|0+$/g, '').length / 2) + 1;
  if (v.B !== undefined) return v.B.byteLength;
  if (v.SS !== undefined) return v.SS.reduce((s, x) => s + Buffer.byteLength(x, 'utf8'), 0);
  if (v.BOOL !== undefined || v.NULL !== undefined) return 1;
  return Buffer.byteLength(JSON.stringify(v), 'utf8');
}

/** Write request units of a write of an item of `bytes` bytes (1 per started KB, at least 1). */
export function writeUnitsOf(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / 1024));
}

/** Read request units of a strongly consistent read of an item of `bytes` bytes (1 per started 4 KB, at least 1). */
export function readUnitsOf(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / 4096));
}
