/**
 * Emulator mode's provisioning: creates (or finds) a job's queues, tables, bucket and state machine on an
 * AWS-compatible endpoint, with the same shapes FloeJob deploys — one FIFO input queue per vertex with a FIFO
 * dead-letter queue and a redrive policy, a standard coordinator-tasks queue with its own dead-letter queue, the state
 * and coordinator tables, the checkpoint bucket, and the coordinator state machine from the shared ASL generator.
 *
 * Names are derived from the job name and a stable suffix (a hash of the job name and the namespace), so a second
 * `floe run … --aws-endpoint` of the same job, e.g. with `--from-checkpoint latest`, finds the same resources. Every
 * step is idempotent and uses only the public AWS APIs, so it works on moto server, LocalStack and fakecloud alike.
 */
import { createHash } from 'node:crypto';
import { CreateBucketCommand, GetBucketNotificationConfigurationCommand, HeadBucketCommand, PutBucketNotificationConfigurationCommand, type BucketLocationConstraint } from '@aws-sdk/client-s3';
import { CreateStateMachineCommand, ListStateMachinesCommand, UpdateStateMachineCommand } from '@aws-sdk/client-sfn';
import { CreateQueueCommand, GetQueueAttributesCommand, GetQueueUrlCommand, PurgeQueueCommand, SetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { EventBridgeClient, PutRuleCommand, PutTargetsCommand } from '@aws-sdk/client-eventbridge';
import type { AwsClients } from '../../adapters/aws/clients.js';
import { feedQueueEnvName, type FeedQueue } from '../../api/connector-resources.js';
import { coordinatorStateMachineDefinition } from '../../adapters/aws/coordinator-state-machine.js';
import { createCoordinatorTable } from '../../adapters/aws/dynamodb-coordinator-store.js';
import { createStateTable } from '../../adapters/aws/dynamodb-state-schema.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import type { ResolvedCheckpointOptions } from '../../core/options.js';
import type { PhysicalPlan } from '../../graph/plan.js';

/** The AWS resources of one job, as the operator handler and the coordinator use them. */
export interface EmulatorJobResources {
  readonly job: string;
  readonly stateTable: string;
  readonly coordinatorTable: string;
  /** `s3://<bucket>`: checkpoints live under `<job>/checkpoints/` in it. */
  readonly checkpointRoot: string;
  /** `s3://<bucket>/<job>/savepoints`. */
  readonly savepointRoot: string;
  readonly bucket: string;
  /** Vertex id → FIFO input queue URL. */
  readonly queueUrls: Readonly<Record<string, string>>;
  /** Vertex id → FIFO dead-letter queue URL. */
  readonly dlqUrls: Readonly<Record<string, string>>;
  readonly tasksQueueUrl: string;
  readonly tasksDlqUrl: string;
  readonly stateMachineArn: string;
}

/** Options of {@link provisionEmulatorJob}. */
export interface ProvisionOptions {
  readonly plan: PhysicalPlan;
  readonly clients: AwsClients;
  /** The job's resolved checkpoint options (the state machine's execution timeout follows `timeout`). */
  readonly checkpoint: ResolvedCheckpointOptions;
  /** Mixed into the names' suffix, so tests can keep runs of the same job apart. @default '' */
  readonly namespace?: string;
  /** Receives of a message before it moves to its dead-letter queue (FloeJob's default). @default 5 */
  readonly maxReceiveCount?: number;
  /**
   * Visibility timeout of the queues, in seconds; must exceed a handler's run time. It is also how long a FIFO group
   * stays blocked by a message a killed run held, when the next run's purge is refused (moto allows one per minute).
   * @default 30
   */
  readonly visibilityTimeoutSeconds?: number;
}

/** The role ARN given to the state machine; emulators accept any well-formed ARN. */
function roleArnFor(account: string, name: string): string {
  return `arn:aws:iam::${account}:role/${name}`;
}

/** Lowercase letters, digits and hyphens, at most `max` characters, with a short hash when anything was changed or cut. */
function safePart(text: string, max: number): string {
  const cleaned = text.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '') || 'x';
  if (cleaned === text && cleaned.length <= max) return cleaned;
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 6);
  return `${cleaned.slice(0, Math.max(1, max - 7))}-${hash}`;
}

/** The stable names of a job's resources (no I/O). */
export function emulatorResourceNames(job: string, namespace = ''): {
  base: string;
  bucket: string;
  stateTable: string;
  coordinatorTable: string;
  stateMachine: string;
  tasksQueue: string;
  tasksDlq: string;
  vertexQueue: (vertex: string) => string;
  vertexDlq: (vertex: string) => string;
} {
  const suffix = createHash('sha256').update(`${namespace}\u0000${job}`).digest('hex').slice(0, 8);
  // "floe-" + 24 + "-" + 8 = 38 characters; queue names leave room for a vertex part and ".fifo" within SQS's 80.
  const base = `floe-${safePart(job, 24)}-${suffix}`;
  return {
    base,
    bucket: base,
    stateTable: `${base}-state`,
    coordinatorTable: `${base}-coordinator`,
    stateMachine: `${base}-coordinator`,
    tasksQueue: `${base}-tasks`,
    tasksDlq: `${base}-tasks-dlq`,
    vertexQueue: (vertex) => `${base}-v-${safePart(vertex, 24)}.fifo`,
    vertexDlq: (vertex) => `${base}-v-${safePart(vertex, 24)}-dlq.fifo`,
  };
}

/** Creates a queue, or finds the existing one of that name (whatever its attributes). */
async function ensureQueue(clients: AwsClients, name: string, attributes: Record<string, string>): Promise<{ url: string; arn: string }> {
  let url: string | undefined;
  try {
    url = (await clients.sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }))).QueueUrl;
  } catch (e) {
    // Same name, other attributes (made by an older Floe): bring the mutable ones up to date.
    if ((e as { name?: string }).name !== 'QueueAlreadyExists' && (e as { name?: string }).name !== 'QueueNameExists') throw e;
    url = (await clients.sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
    const { FifoQueue: _immutable, ...mutable } = attributes;
    if (url && Object.keys(mutable).length > 0) await clients.sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: mutable }));
  }
  if (!url) throw new FloeError(ErrorCode.Storage, `creating queue ${name} returned no URL`);
  const arn = (await clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
  if (!arn) throw new FloeError(ErrorCode.Storage, `queue ${name} has no QueueArn attribute`);
  return { url, arn };
}

/** Creates a queue with a dead-letter queue of the same kind and a redrive policy to it. */
async function ensureQueueWithDlq(
  clients: AwsClients,
  names: { queue: string; dlq: string },
  fifo: boolean,
  options: { maxReceiveCount: number; visibilityTimeoutSeconds: number },
): Promise<{ url: string; arn: string; dlqUrl: string }> {
  const kind: Record<string, string> = fifo ? { FifoQueue: 'true' } : {};
  const dlq = await ensureQueue(clients, names.dlq, { ...kind, MessageRetentionPeriod: String(14 * 24 * 3600) });
  const queue = await ensureQueue(clients, names.queue, {
    ...kind,
    // Deduplication ids are the envelopes' own (channel, seq), set by the sender; no content-based deduplication.
    VisibilityTimeout: String(options.visibilityTimeoutSeconds),
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: options.maxReceiveCount }),
  });
  return { ...queue, dlqUrl: dlq.url };
}

async function ensureBucket(clients: AwsClients, bucket: string): Promise<void> {
  try {
    await clients.s3.send(new HeadBucketCommand({ Bucket: bucket }));
    return;
  } catch {
    // absent (or not ours to head): create it below
  }
  const region = await clients.s3.config.region();
  const location = region === 'us-east-1' ? {} : { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } };
  try {
    await clients.s3.send(new CreateBucketCommand({ Bucket: bucket, ...location }));
  } catch (e) {
    const name = (e as { name?: string }).name;
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw e;
  }
}

/** Finds a state machine by name (paging through the list). */
async function findStateMachine(clients: AwsClients, name: string): Promise<string | undefined> {
  let nextToken: string | undefined;
  do {
    const res = await clients.sfn.send(new ListStateMachinesCommand({ ...(nextToken ? { nextToken } : {}) }));
    const found = res.stateMachines?.find((m) => m.name === name);
    if (found?.stateMachineArn) return found.stateMachineArn;
    nextToken = res.nextToken;
  } while (nextToken);
  return undefined;
}

async function ensureStateMachine(clients: AwsClients, name: string, definition: string, roleArn: string): Promise<string> {
  const existing = await findStateMachine(clients, name);
  if (existing) {
    await clients.sfn.send(new UpdateStateMachineCommand({ stateMachineArn: existing, definition, roleArn }));
    return existing;
  }
  try {
    const res = await clients.sfn.send(new CreateStateMachineCommand({ name, definition, roleArn, type: 'STANDARD' }));
    if (res.stateMachineArn) return res.stateMachineArn;
  } catch (e) {
    if ((e as { name?: string }).name !== 'StateMachineAlreadyExists') throw e;
  }
  const arn = await findStateMachine(clients, name);
  if (!arn) throw new FloeError(ErrorCode.Storage, `state machine ${name} was neither created nor found`);
  return arn;
}

/**
 * Turns on Step Functions execution when the endpoint is moto server. Moto only records executions unless asked to
 * run them (`POST /moto-api/config`), and the coordinator needs its executions to run; the ask must come before the
 * state machine is created. Other emulators have no `/moto-api/` (GET answers 404 or fails), so nothing is sent.
 */
export async function enableMotoStepFunctionsExecution(endpoint: string): Promise<boolean> {
  const base = endpoint.replace(/\/+$/, '');
  try {
    const probe = await fetch(`${base}/moto-api/`);
    await probe.body?.cancel();
    if (probe.status !== 200) return false;
    const res = await fetch(`${base}/moto-api/config`, { method: 'POST', body: JSON.stringify({ stepfunctions: { execute_state_machine: true } }) });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

/** Creates or finds every resource of a job on the emulator; safe to call again for the same job. */
export async function provisionEmulatorJob(options: ProvisionOptions): Promise<EmulatorJobResources> {
  const { plan, clients } = options;
  const names = emulatorResourceNames(plan.job, options.namespace);
  const queueOptions = { maxReceiveCount: options.maxReceiveCount ?? 5, visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 30 };
  if (!Number.isInteger(queueOptions.maxReceiveCount) || queueOptions.maxReceiveCount < 1) {
    throw new FloeError(ErrorCode.InvalidOptions, `maxReceiveCount must be a positive integer, got ${queueOptions.maxReceiveCount}`);
  }

  const [vertexQueues, tasks] = await Promise.all([
    Promise.all(plan.vertices.map(async (v) => [v.id, await ensureQueueWithDlq(clients, { queue: names.vertexQueue(v.id), dlq: names.vertexDlq(v.id) }, true, queueOptions)] as const)),
    ensureQueueWithDlq(clients, { queue: names.tasksQueue, dlq: names.tasksDlq }, false, queueOptions),
    createStateTable(clients.dynamodb, names.stateTable),
    createCoordinatorTable(clients.dynamodb, names.coordinatorTable),
    ensureBucket(clients, names.bucket),
  ]);

  const definition = coordinatorStateMachineDefinition({
    job: plan.job,
    tableName: names.coordinatorTable,
    tasksQueueUrl: tasks.url,
    pollIntervalSeconds: 1,
    // As FloeJob: a backstop behind the countdown Trigger sets up from checkpoint.timeout, twice the timeout, at least an hour.
    executionTimeoutSeconds: Math.max(3600, Math.ceil((2 * options.checkpoint.timeout) / 1000)),
  });
  const account = tasks.arn.split(':')[4] || '123456789012';
  const stateMachineArn = await ensureStateMachine(clients, names.stateMachine, JSON.stringify(definition), roleArnFor(account, `${names.base}-coordinator`));

  return {
    job: plan.job,
    stateTable: names.stateTable,
    coordinatorTable: names.coordinatorTable,
    bucket: names.bucket,
    checkpointRoot: `s3://${names.bucket}`,
    savepointRoot: `s3://${names.bucket}/${plan.job}/savepoints`,
    queueUrls: Object.fromEntries(vertexQueues.map(([id, q]) => [id, q.url])),
    dlqUrls: Object.fromEntries(vertexQueues.map(([id, q]) => [id, q.dlqUrl])),
    tasksQueueUrl: tasks.url,
    tasksDlqUrl: tasks.dlqUrl,
    stateMachineArn,
  };
}

/**
 * Empties a job's input and tasks queues before a run: what a previous run left there belongs to an older generation
 * (receivers drop it anyway), and a message a killed poller held in flight would block its FIFO group until its
 * visibility timeout ends. A purge may be refused (AWS and moto allow one a minute per queue); the run then goes on,
 * and what is left comes back after its visibility timeout and is dropped by generation.
 */
export async function purgeJobQueues(clients: AwsClients, resources: Pick<EmulatorJobResources, 'queueUrls' | 'tasksQueueUrl'>): Promise<void> {
  await Promise.all(
    [...Object.values(resources.queueUrls), resources.tasksQueueUrl].map(async (url) => {
      try {
        await clients.sqs.send(new PurgeQueueCommand({ QueueUrl: url }));
      } catch (e) {
        if ((e as { name?: string }).name !== 'PurgeQueueInProgress') throw e;
      }
    }),
  );
}

/** A source's feed queue as provisioned: its URL, and the variable the source reads it from. */
export interface ProvisionedFeed {
  readonly uid: string;
  readonly env: string;
  readonly url: string;
}

/**
 * Creates the feed queues the plan's sources ask for (`feed` on a source connector), as FloeJob deploys them: a
 * standard queue with a dead-letter queue, and an EventBridge rule with the source's pattern on its bus targeting
 * the queue (which the queue's policy lets EventBridge send to). Idempotent; `eventBridge` defaults to a client at
 * the same endpoint as `clients`.
 */
export async function provisionFeedQueues(
  plan: PhysicalPlan,
  clients: AwsClients,
  options: { namespace?: string; eventBridge: EventBridgeClient },
): Promise<ProvisionedFeed[]> {
  const names = emulatorResourceNames(plan.job, options.namespace);
  const out: ProvisionedFeed[] = [];
  for (const v of plan.vertices) {
    for (const op of v.operators) {
      const spec = op.node.spec;
      if (spec.kind !== 'source' || spec.connector.feed === undefined) continue;
      const feed: FeedQueue = spec.connector.feed;
      const part = safePart(op.uid, 24);
      const queue = await ensureQueueWithDlq(clients, { queue: `${names.base}-feed-${part}`, dlq: `${names.base}-feed-${part}-dlq` }, false, { maxReceiveCount: 1000, visibilityTimeoutSeconds: 300 });
      const rule = `${names.base}-${part}`;
      await clients.sqs.send(
        new SetQueueAttributesCommand({
          QueueUrl: queue.url,
          Attributes: {
            Policy: JSON.stringify({
              Version: '2012-10-17',
              Statement: [{ Effect: 'Allow', Principal: { Service: 'events.amazonaws.com' }, Action: 'sqs:SendMessage', Resource: queue.arn }],
            }),
          },
        }),
      );
      await options.eventBridge.send(new PutRuleCommand({ Name: rule, EventBusName: feed.bus, EventPattern: JSON.stringify(feed.pattern), State: 'ENABLED' }));
      await options.eventBridge.send(new PutTargetsCommand({ Rule: rule, EventBusName: feed.bus, Targets: [{ Id: 'floe-feed', Arn: queue.arn }] }));
      if (feed.bucket !== undefined) {
        // The bucket sends its events to EventBridge too, its other notifications kept.
        const current = await clients.s3.send(new GetBucketNotificationConfigurationCommand({ Bucket: feed.bucket }));
        const { $metadata: _, ...configuration } = current;
        await clients.s3.send(new PutBucketNotificationConfigurationCommand({ Bucket: feed.bucket, NotificationConfiguration: { ...configuration, EventBridgeConfiguration: {} } }));
      }
      out.push({ uid: op.uid, env: feedQueueEnvName(op.uid), url: queue.url });
    }
  }
  return out;
}
