import { COORDINATOR_TABLE_SCHEMA } from '../lib/adapters/aws/dynamodb-coordinator-schema.js';
import { STATE_TABLE_SCHEMA } from '../lib/adapters/aws/dynamodb-state-schema.js';

/** A DynamoDB key attribute: its name and scalar type. */
export interface KeyAttribute {
  readonly name: string;
  readonly type: 'S' | 'N' | 'B';
}

/** The key schema of a table FloeJob creates; the adapters that read and write the table export theirs. */
export interface TableSchema {
  /** The partition (hash) key. */
  readonly partitionKey: KeyAttribute;
  /** The sort (range) key. @default none */
  readonly sortKey?: KeyAttribute;
  /** Attribute holding an epoch-seconds expiry, turned on as the table's TTL. @default no TTL */
  readonly timeToLiveAttribute?: string;
}

/** The state table's schema, as the DynamoDB state store defines it. */
export const STATE_TABLE: TableSchema = {
  partitionKey: STATE_TABLE_SCHEMA.partitionKey,
  sortKey: STATE_TABLE_SCHEMA.sortKey,
};

/** The coordinator table's schema, as the coordinator store defines it (a `pk` string key and an `expiresAt` TTL). */
export const COORDINATOR_TABLE: TableSchema = {
  partitionKey: COORDINATOR_TABLE_SCHEMA.partitionKey,
  timeToLiveAttribute: COORDINATOR_TABLE_SCHEMA.timeToLiveAttribute,
};
