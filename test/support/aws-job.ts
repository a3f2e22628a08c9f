/**
 * Provisions one job's AWS resources on an emulator (moto server by default, through AWS_ENDPOINT_URL) for tests:
 * a FIFO input queue per vertex with a FIFO dead-letter queue (redrive after `maxReceiveCount`), the
 * coordinator-tasks queue with its dead-letter queue, the state table, the coordinator table and the checkpoint
 * bucket. Names carry a random suffix, so tests can run side by side on one emulator. Generic over the plan.
 */
import { randomUUID } from 'node:crypto';
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { DeleteTableCommand } from '@aws-sdk/client-dynamodb';
import {
  ChangeMessageVisibilityBatchCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type Message,
  type QueueAttributeName,
} from '@aws-sdk/client-sqs';
import { awsClients, type AwsClients } from '../../lib/adapters/aws/clients.js';
import { createCoordinatorTable } from '../../lib/adapters/aws/dynamodb-coordinator-store.js';
import { createStateTable } from '../../lib/adapters/aws/dynamodb-state-store.js';
import type { SqsEvent, SqsRecord, SqsRecordAttributes } from '../../lib/adapters/aws/sqs-poller.js';
import type { AwsJobResources } from '../../lib/hosts/lambda/operator-handler.js';
import type { PhysicalPlan } from '../../lib/graph/plan.js';

/** Options of {@link provisionAwsJob}. */
export interface ProvisionAwsJobOptions {
  readonly plan: PhysicalPlan;
  /** @default `awsClients()` */
  readonly clients?: AwsClients;
  /** Visibility timeout of the vertex and tasks queues, in seconds. @default 30 */
  readonly visibilityTimeoutSeconds?: number;
  /** Receives before a message moves to its dead-letter queue. @default 5 */
  readonly maxReceiveCount?: number;
  /** Prefix of every resource name. @default `floe-<8 random hex>` */
  readonly prefix?: string;
  /** The coordinator state machine, when the caller created one. @default '' (none) */
  readonly stateMachineArn?: string;
}

/** What {@link provisionAwsJob} created. */
export interface ProvisionedAwsJob {
  readonly resources: AwsJobResources;
  readonly clients: AwsClients;
  readonly bucket: string;
  /** Deletes the queues, tables and bucket (best effort). */
  destroy(): Promise<void>;
}

/** SQS queue names: letters, digits, `-` and `_`, at most 80 characters including `.fifo`. */
function queueName(prefix: string, part: string, fifo: boolean): string {
  const base = `${prefix}-${part}`.replace(/[^A-Za-z0-9_-]/g, '_');
  return fifo ? `${base.slice(0, 75)}.fifo` : base.slice(0, 80);
}

async function createQueue(clients: AwsClients, name: string, attributes: Record<string, string>): Promise<{ url: string; arn: string }> {
  const { QueueUrl } = await clients.sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
  const { Attributes } = await clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: QueueUrl!, AttributeNames: ['QueueArn'] }));
  return { url: QueueUrl!, arn: Attributes!.QueueArn! };
}

/** Creates the resources of a plan's job and answers them as {@link AwsJobResources}. */
export async function provisionAwsJob(options: ProvisionAwsJobOptions): Promise<ProvisionedAwsJob> {
  const { plan } = options;
  const clients = options.clients ?? awsClients();
  const prefix = options.prefix ?? `floe-${randomUUID().slice(0, 8)}`;
  const visibility = String(options.visibilityTimeoutSeconds ?? 30);
  const maxReceiveCount = options.maxReceiveCount ?? 5;
  const bucket = prefix.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  const stateTable = `${prefix}-state`;
  const coordinatorTable = `${prefix}-coordinator`;

  const withDeadLetters = async (part: string, fifo: boolean) => {
    const fifoAttr: Record<string, string> = fifo ? { FifoQueue: 'true' } : {};
    const dlq = await createQueue(clients, queueName(prefix, `${part}-dlq`, fifo), { ...fifoAttr, MessageRetentionPeriod: '1209600' });
    const queue = await createQueue(clients, queueName(prefix, part, fifo), {
      ...fifoAttr,
      VisibilityTimeout: visibility,
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount }),
    });
    return { queue: queue.url, dlq: dlq.url };
  };

  const queueUrls: Record<string, string> = {};
  const dlqUrls: Record<string, string> = {};
  for (const v of plan.vertices) {
    const q = await withDeadLetters(`v-${v.id}`, true);
    queueUrls[v.id] = q.queue;
    dlqUrls[v.id] = q.dlq;
  }
  const tasks = await withDeadLetters('tasks', false);
  await Promise.all([createStateTable(clients.dynamodb, stateTable), createCoordinatorTable(clients.dynamodb, coordinatorTable)]);
  await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));

  const resources: AwsJobResources = {
    job: plan.job,
    stateTable,
    coordinatorTable,
    checkpointRoot: `s3://${bucket}/checkpoints`,
    savepointRoot: `s3://${bucket}/savepoints`,
    queueUrls,
    dlqUrls,
    tasksQueueUrl: tasks.queue,
    stateMachineArn: options.stateMachineArn ?? '',
  };
  const destroy = async () => {
    const urls = [...Object.values(queueUrls), ...Object.values(dlqUrls), tasks.queue, tasks.dlq];
    await Promise.allSettled(urls.map((QueueUrl) => clients.sqs.send(new DeleteQueueCommand({ QueueUrl }))));
    await Promise.allSettled([stateTable, coordinatorTable].map((TableName) => clients.dynamodb.send(new DeleteTableCommand({ TableName }))));
    try {
      for (;;) {
        const listed = await clients.s3.send(new ListObjectsV2Command({ Bucket: bucket }));
        const keys = (listed.Contents ?? []).map((o) => ({ Key: o.Key! }));
        if (keys.length === 0) break;
        await clients.s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
      }
      await clients.s3.send(new DeleteBucketCommand({ Bucket: bucket }));
    } catch {
      // best effort
    }
  };
  return { resources, clients, bucket, destroy };
}

/** Receives up to 10 messages (all attributes), leaving them in flight; `waitSeconds` is the long-poll wait. */
/** A queue's message counts: visible, in flight (received, not yet deleted or timed out), and delayed. */
export async function queueDepth(clients: AwsClients, queueUrl: string): Promise<{ visible: number; inFlight: number; delayed: number }> {
  const { Attributes: a } = await clients.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'] }),
  );
  const n = (name: QueueAttributeName) => {
    const v = a?.[name];
    if (v === undefined || !/^\d+$/.test(v)) throw new Error(`queue ${queueUrl} has no ${name} attribute (got ${JSON.stringify(a)})`);
    return Number(v);
  };
  return { visible: n('ApproximateNumberOfMessages'), inFlight: n('ApproximateNumberOfMessagesNotVisible'), delayed: n('ApproximateNumberOfMessagesDelayed') };
}

/**
 * Checks a queue holds nothing: no visible, in-flight or delayed message by its attributes (an empty receive alone
 * cannot tell an empty queue from one whose messages are in flight), and a receive then gets nothing either.
 */
export async function expectQueueEmpty(clients: AwsClients, queueUrl: string): Promise<void> {
  const depth = await queueDepth(clients, queueUrl);
  if (depth.visible + depth.inFlight + depth.delayed !== 0) throw new Error(`queue ${queueUrl} is not empty: ${JSON.stringify(depth)}`);
  const got = await receiveMessages(clients, queueUrl, { waitSeconds: 1 });
  if (got.length > 0) throw new Error(`queue ${queueUrl} is not empty: a receive got ${got.map((m) => m.Body).join(', ')}`);
}

export async function receiveMessages(clients: AwsClients, queueUrl: string, options: { waitSeconds?: number; visibilityTimeoutSeconds?: number } = {}): Promise<Message[]> {
  const res = await clients.sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: queueUrl,
      MaxNumberOfMessages: 10,
      WaitTimeSeconds: options.waitSeconds ?? 0,
      ...(options.visibilityTimeoutSeconds === undefined ? {} : { VisibilityTimeout: options.visibilityTimeoutSeconds }),
      MessageSystemAttributeNames: ['All'],
      MessageAttributeNames: ['All'],
    }),
  );
  return res.Messages ?? [];
}

/** Deletes received messages by receipt handle. */
export async function deleteMessages(clients: AwsClients, queueUrl: string, messages: readonly Message[]): Promise<void> {
  for (let i = 0; i < messages.length; i += 10) {
    const chunk = messages.slice(i, i + 10);
    await clients.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((m, j) => ({ Id: String(j), ReceiptHandle: m.ReceiptHandle! })) }));
  }
}

/**
 * Makes received messages visible again after `delaySeconds` (what the end of a visibility timeout does). Tests hand
 * failed FIFO messages back this way rather than waiting for the timeout: moto 5.2.5 loses the order of a FIFO group
 * when in-flight messages expire (of m1..m3 in flight, only m3 comes back with the later ones), which real SQS keeps.
 */
export async function handBack(clients: AwsClients, queueUrl: string, messages: readonly Message[], delaySeconds = 0): Promise<void> {
  for (let i = 0; i < messages.length; i += 10) {
    const chunk = messages.slice(i, i + 10);
    await clients.sqs.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: queueUrl,
        Entries: chunk.map((m, j) => ({ Id: String(j), ReceiptHandle: m.ReceiptHandle!, VisibilityTimeout: delaySeconds })),
      }),
    );
  }
}

/** A Lambda-shaped SQS event of received messages. */
export function sqsEventOf(messages: readonly Message[], queueArn = 'arn:aws:sqs:us-east-1:123456789012:test'): SqsEvent {
  return {
    Records: messages.map(
      (m): SqsRecord => ({
        messageId: m.MessageId ?? '',
        receiptHandle: m.ReceiptHandle ?? '',
        body: m.Body ?? '',
        attributes: { ...(m.Attributes ?? {}) } as unknown as SqsRecordAttributes,
        messageAttributes: m.MessageAttributes ?? {},
        md5OfBody: m.MD5OfBody ?? '',
        eventSource: 'aws:sqs',
        eventSourceARN: queueArn,
        awsRegion: 'us-east-1',
      }),
    ),
  };
}
