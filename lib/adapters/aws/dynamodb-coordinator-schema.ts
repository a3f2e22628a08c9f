/**
 * The coordinator table: one job row per job, read consistently and written with optimistic concurrency, plus one
 * small status item per checkpoint that the state machine polls with a direct `dynamodb:getItem`.
 *
 * | item              | pk                      | attributes                                                                  |
 * | ----------------- | ----------------------- | --------------------------------------------------------------------------- |
 * | job row           | `job#<job>`             | `version` N · `state` B deflated JSON `CoordinatorState` ·                  |
 * |                   |                         | `runtime` S JSON `CoordinatorRuntime` · `updatedAt` N ·                     |
 * |                   |                         | `jobStatus` S · `jobStatusDetail` S · `jobStatusAt` N (written by effects)  |
 * |                   |                         | · `quiet` BOOL: periodic checkpoints paused (the ticker reads it)          |
 * | checkpoint status | `job#<job>#chk#<n>`     | `status` S IN_PROGRESS/COMPLETED/FAILED · `kind` S · `at` N · `reason` S ·  |
 * |                   |                         | `path` S · `expiresAt` N (TTL, set once the checkpoint finished)            |
 *
 * `<job>` is URI-encoded, so no job name can produce another job's keys. The reducer's state is deflated because
 * the history keeps every subtask's ack of the last `historySize` checkpoints, which as JSON outgrows DynamoDB's
 * 400 KB item limit for wide jobs long before it does deflated.
 *
 * Nothing here talks to AWS, so CDK and the state machine generator import it freely.
 */

/** Key schema, billing and TTL attribute of the coordinator table; CDK defines the same table from these. */
export const COORDINATOR_TABLE_SCHEMA = {
  partitionKey: { name: 'pk', type: 'S' },
  billingMode: 'PAY_PER_REQUEST',
  timeToLiveAttribute: 'expiresAt',
} as const;

/** Attribute names of the coordinator table's items; the state machine's getItem reads `checkpointStatus`. */
export const CoordinatorAttr = {
  pk: 'pk',
  version: 'version',
  state: 'state',
  runtime: 'runtime',
  updatedAt: 'updatedAt',
  jobStatus: 'jobStatus',
  jobStatusDetail: 'jobStatusDetail',
  jobStatusAt: 'jobStatusAt',
  /** True while the job is quiet and periodic checkpoints are paused (lib/core/coordinator/quiet.ts): the ticker's Choice reads it. */
  quiet: 'quiet',
  checkpointStatus: 'status',
  kind: 'kind',
  at: 'at',
  reason: 'reason',
  path: 'path',
  expiresAt: 'expiresAt',
} as const;

/** Partition key of a job's row. */
export function jobRowKey(job: string): string {
  return `job#${encodeURIComponent(job)}`;
}

/** Partition key of a checkpoint's status item. */
export function checkpointStatusKey(job: string, checkpointId: number): string {
  return `${jobRowKey(job)}#chk#${checkpointId}`;
}
