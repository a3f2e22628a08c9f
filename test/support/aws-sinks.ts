// Fixtures for the AWS sink tests on the emulator: tables, queues and buckets with unique names, clients whose calls
// can be made to fail, a staging helper that pre-commits values the way the sink operator does, and readers that
// return what a consumer of the target would see.
import { randomUUID } from 'node:crypto';
import { CreateTableCommand, DynamoDBClient, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, DeleteMessageBatchCommand, ReceiveMessageCommand, type Message } from '@aws-sdk/client-sqs';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import type { SinkConnector, SinkWriterContext } from '../../lib/api/connector.js';
import type { PendingCommit } from '../../lib/core/manifest/model.js';
import type { FailOnce } from './jobs.js';

export const aws = awsClients();

/** A name no other test uses. */
export const unique = (label: string) => `floe-${label}-${randomUUID().slice(0, 8)}`;

/** Creates an on-demand table keyed by `pk` (string), and `sk` (number) when asked. */
export async function createTable(label: string, withSortKey = false): Promise<string> {
  const name = unique(label);
  await aws.dynamodb.send(
    new CreateTableCommand({
      TableName: name,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }, ...(withSortKey ? [{ AttributeName: 'sk', AttributeType: 'N' as const }] : [])],
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }, ...(withSortKey ? [{ AttributeName: 'sk', KeyType: 'RANGE' as const }] : [])],
    }),
  );
  return name;
}

/** Every item of a table, unmarshalled, as DynamoDB holds it (tombstones and the sink's attributes included). */
export async function scanRaw(table: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await aws.dynamodb.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
    for (const item of page.Items ?? []) out.push(unmarshall(item));
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

/** What a reader of the table sees: tombstones left out, the sink's `_floe*` attributes stripped, keyed by `pk`. */
export async function scanTable(table: string): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>();
  for (const item of await scanRaw(table)) {
    if (item._floeDeleted === true) continue;
    out.set(String(item.pk) + (item.sk !== undefined ? `#${String(item.sk)}` : ''), Object.fromEntries(Object.entries(item).filter(([k]) => !k.startsWith('_floe'))));
  }
  return out;
}

/** Creates a bucket and answers an `s3://` staging location in it. */
export async function createStaging(label: string): Promise<{ bucket: string; staging: string }> {
  const bucket = unique(label).toLowerCase();
  await aws.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return { bucket, staging: `s3://${bucket}/staging` };
}

/** Keys of the objects under a prefix. */
export async function listKeys(bucket: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const page = await aws.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) out.push(o.Key!);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/** Decides, before each call a client sends, whether it fails: return an error to throw it instead of sending. */
export type FaultHook = (command: string, input: Record<string, unknown>) => Error | undefined;

/** An S3 client (path-style, as `awsClients` makes it for an emulator) whose calls pass through `hook`. */
export function faultyS3(hook: FaultHook): S3Client {
  const client = new S3Client({ forcePathStyle: true });
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const fault = hook(context.commandName ?? '', args.input as Record<string, unknown>);
      if (fault) throw fault;
      return next(args);
    },
    { step: 'initialize', name: 'floeFaultHook' },
  );
  return client;
}

/** A DynamoDB client whose calls pass through `hook`. */
export function faultyDynamoDb(hook: FaultHook): DynamoDBClient {
  const client = new DynamoDBClient({});
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const fault = hook(context.commandName ?? '', args.input as Record<string, unknown>);
      if (fault) throw fault;
      return next(args);
    },
    { step: 'initialize', name: 'floeFaultHook' },
  );
  return client;
}

/** An error as the SDK raises it for a service error code. */
export function serviceError(name: string, fault: 'client' | 'server' = 'client', retryable = false): Error {
  return Object.assign(new Error(`${name} (injected)`), { name, $fault: fault, $metadata: { httpStatusCode: fault === 'server' ? 500 : 400 }, ...(retryable ? { $retryable: {} } : {}) });
}

/**
 * Runs a sink writer of subtask `subtask` over epochs the way the sink operator does — resume, a write per step, a
 * pre-commit at each barrier — and answers each epoch's pending commits with its checkpoint id.
 */
export async function stageEpochs<T>(
  sink: SinkConnector<T>,
  epochs: ReadonlyArray<{ readonly checkpointId: number; readonly steps: ReadonlyArray<readonly T[]> }>,
  ctx: Partial<SinkWriterContext> = {},
): Promise<Map<number, PendingCommit[]>> {
  const writer = sink.createWriter({ uid: 'out', subtask: 0, runId: 'r1', ...ctx });
  let state = await writer.resume(undefined);
  const out = new Map<number, PendingCommit[]>();
  for (const epoch of epochs) {
    for (const values of epoch.steps) state = await writer.write(values, state);
    const pre = await writer.preCommit(state, epoch.checkpointId);
    state = pre.state;
    out.set(epoch.checkpointId, pre.pendingCommits);
  }
  return out;
}

/** Creates a queue (FIFO when the label ends in `.fifo`) and answers its URL. */
export async function createQueue(label: string, fifo: boolean): Promise<string> {
  const res = await aws.sqs.send(
    new CreateQueueCommand({
      QueueName: `${unique(label)}${fifo ? '.fifo' : ''}`,
      Attributes: fifo ? { FifoQueue: 'true', VisibilityTimeout: '30' } : { VisibilityTimeout: '30' },
    }),
  );
  return res.QueueUrl!;
}

/** Receives and deletes until a receive comes back empty twice; answers the messages in the order received. */
export async function drainQueue(url: string): Promise<Message[]> {
  const out: Message[] = [];
  let empty = 0;
  while (empty < 2) {
    const res = await aws.sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: empty === 0 ? 0 : 1, MessageSystemAttributeNames: ['All'] }));
    const messages = res.Messages ?? [];
    if (messages.length === 0) {
      empty++;
      continue;
    }
    empty = 0;
    out.push(...messages);
    await aws.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
  }
  return out;
}

/** A sink that counts its commits (started, and in progress), so a fault hook can fail calls made by a commit only. */
export function withCommitCount<T>(inner: SinkConnector<T>): SinkConnector<T> & { readonly committing: number; readonly commits: number } {
  let committing = 0;
  let commits = 0;
  return {
    type: inner.type,
    exactlyOnce: inner.exactlyOnce,
    createWriter: (ctx) => inner.createWriter(ctx),
    async commit(c) {
      commits++;
      committing++;
      try {
        await inner.commit(c);
      } finally {
        committing--;
      }
    },
    get committing() {
      return committing;
    },
    get commits() {
      return commits;
    },
  };
}

/**
 * Arms each failure once the one before it has thrown and a checkpoint completed after that (the first once any
 * completed), so every failure has a checkpoint of its own attempt to restore.
 */
export function armInTurn(failures: readonly FailOnce[], latestCompleted: () => number): void {
  const seenAtThrow: number[] = [];
  failures.forEach((f, k) => {
    f.armed = () => {
      const latest = latestCompleted();
      const ready = k === 0 ? latest > 0 : failures[k - 1]!.thrown && latest > seenAtThrow[k - 1]!;
      if (ready) seenAtThrow[k] = latest;
      return ready;
    };
  });
}
