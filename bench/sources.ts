/**
 * The benchmark's sources section: what a live SQS source (`sqsSource`) and a Kinesis source (`kinesisSource`) cost
 * on AWS, measured in emulator mode on moto server (the deployed handlers, called in process by pollers standing in
 * for Lambda's event source mapping).
 *
 * - drain: N messages sent to a standard queue (N records put into a 2-shard stream) before the start, read by
 *   `source → keyBy(customer) → running total → discarding sink` until every record is committed (SQS: the source
 *   deleted every message, which it does once the checkpoint after its record completed; Kinesis: every record
 *   reached the sink and a checkpoint triggered after that completed): requests per 1,000 records by service and
 *   operation, the source's own SQS or Kinesis calls apart from the runtime's;
 * - idle: the same job over an empty queue (a stream with nothing in it) for a fixed window once it is quiet and its
 *   source backed off (`untilIdle`): requests, handler invocations (each a Lambda invocation when deployed) and their
 *   durations per hour, and what that costs a month. (The idle section, idle.ts, measures the SQS one for longer and
 *   models what emulator mode cannot run.)
 */
import { randomUUID } from 'node:crypto';
import { CreateQueueCommand, GetQueueAttributesCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { SFNClient } from '@aws-sdk/client-sfn';
import { CreateStreamCommand, DescribeStreamSummaryCommand, KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand, PutBucketNotificationConfigurationCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { AwsClients } from '../lib/adapters/aws/clients.js';
import { EmulatorRunner, type EmulatorRunOptions } from '../lib/hosts/emulator/emulator-runner.js';
import { emulatorResourceNames } from '../lib/hosts/emulator/provision.js';
import { Job, kinesisSource, s3Source, sqsSource, valueState, type SourceConnector } from '../lib/index.js';
import startMoto from '../test/support/moto-global-setup.js';
import { AWS_PRICES, AwsUsage, diff, instrumentedClients, instrumentedKinesisClient, itemSize, sqsPayload, stepFunctionsWork, type AwsUsageSnapshot, type StepFunctionsWork } from './aws.js';
import { median, sleep } from './harness.js';
import { discardSink, sinkCounter, type SinkCounter } from './jobs.js';
import type { RunOutcome } from '../lib/coordination/restarts.js';
import { SOURCE_IDLE_MAX_DELAY_MS } from '../lib/hosts/lambda/source-wakes.js';

/** Options of the sources section. */
export interface SourcesConfig {
  /** Messages in the queue (records in the stream) before the drain run starts. */
  readonly messages: number;
  /** Shards of the Kinesis stream. */
  readonly kinesisShards: number;
  /** Length of the idle window, in ms, from the idle job's first completed checkpoint. */
  readonly idleWindowMs: number;
  /** Drain and idle runs, each; medians are reported. */
  readonly runs: number;
  readonly parallelism: number;
  readonly intervalMs: number;
  /** Distinct customers (keys of the running total). */
  readonly customers: number;
  /** Longest a drain run may take before it counts as failed, in ms. */
  readonly drainTimeoutMs: number;
  /** Objects the S3 drain run puts into the bucket once the job runs, and lines (records) in each. */
  readonly s3Objects: number;
  readonly s3LinesPerObject: number;
}

const JOB = 'bench-sources';
const logLine = (m: string) => process.stderr.write(`[bench] sources: ${m}\n`);

interface Order {
  readonly customer: string;
  readonly amount: number;
}

/**
 * `source → keyBy(customer) → running total → discarding sink`; an `sqsSource` adds its `orders.dedup` vertex. The
 * sink is exactly-once in shape but carries nothing in the checkpoint: a collect sink's pending commits hold the
 * records themselves, which travel in the acknowledgements and make the coordinator's job row large to write.
 */
function ordersJob(o: { source: SourceConnector<Order>; counter: SinkCounter; parallelism: number; intervalMs: number }): Job {
  const job = new Job(JOB, { maxParallelism: 128, parallelism: o.parallelism, checkpoint: { interval: o.intervalMs }, restart: { type: 'none' } });
  job
    .source(o.source, { uid: 'orders' })
    .keyBy((v) => v.customer)
    .process(
      {
        state: { total: valueState<number>() },
        processElement(v, ctx, out) {
          const total = (ctx.state.total.value() ?? 0) + v.amount;
          ctx.state.total.update(total);
          out.collect(`${v.customer}\t${total}`);
        },
      },
      { uid: 'totals', name: 'Running total' },
    )
    .sinkTo(discardSink<string>(o.counter), { uid: 'out', name: 'Discard' });
  return job;
}

/** Counts by name, with snapshots. */
class Tally {
  readonly counts: Record<string, number> = {};
  add(name: string, n = 1): void {
    this.counts[name] = (this.counts[name] ?? 0) + n;
  }
  snapshot(): Record<string, number> {
    return { ...this.counts };
  }
}

function tallyDiff(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(b)) if (n - (a[k] ?? 0) !== 0) out[k] = n - (a[k] ?? 0);
  return out;
}

/** One handler invocation: a batch a poller received, from the receive's answer to its first delete or hand-back. */
export interface Invocation {
  /** The function it stands for: a vertex id, or `coordinator`. */
  readonly fn: string;
  /** performance.now() when the batch arrived. */
  readonly startedAt: number;
  readonly ms: number;
  readonly messages: number;
}

/**
 * What the runtime's clients did besides what {@link AwsUsage} counts: SQS requests by purpose, billed requests by
 * queue type (FIFO vertex queues, the standard coordinator-tasks queue), handler invocations timed from outside,
 * and committed steps (control row writes) by vertex.
 */
export class RuntimeProbe {
  readonly sqsByPurpose = new Tally();
  readonly sqsBilled = new Tally();
  readonly steps = new Tally();
  /** Writes of the coordinator's job row (`count`) and the bytes of key and values they sent (`bytes`). */
  readonly jobRow = new Tally();
  readonly invocations: Invocation[] = [];
  private readonly open = new Map<string, { fn: string; startedAt: number; messages: number; ended: boolean }>();
  private readonly queues = new Map<string, { role: 'vertex' | 'dlq' | 'tasks' | 'tasks-dlq'; vertex?: string; source?: boolean }>();
  private readonly pkPrefix: string;

  constructor(runner: EmulatorRunner, namespace: string) {
    const names = emulatorResourceNames(JOB, namespace);
    for (const v of runner.plan.vertices) {
      this.queues.set(names.vertexQueue(v.id), { role: 'vertex', vertex: v.id, source: v.isSource });
      this.queues.set(names.vertexDlq(v.id), { role: 'dlq', vertex: v.id });
    }
    this.queues.set(names.tasksQueue, { role: 'tasks' });
    this.queues.set(names.tasksDlq, { role: 'tasks-dlq' });
    this.pkPrefix = `${encodeURIComponent(JOB)}/`;
  }

  /* eslint-disable @typescript-eslint/no-explicit-any -- the middleware sees each command's own input and output */
  install(clients: AwsClients): void {
    clients.sqs.middlewareStack.add(
      (next: any, context: any) => async (args: any) => {
        const op: string = context.commandName ?? 'unknown';
        const queue = this.queues.get(String(args.input.QueueUrl ?? '').replace(/^.*\//, ''));
        const settling = op === 'DeleteMessageBatchCommand' || op === 'ChangeMessageVisibilityBatchCommand';
        if (settling && (queue?.role === 'vertex' || queue?.role === 'tasks')) this.settle(args.input.Entries ?? []);
        const result = await next(args);
        const fn = queue?.role === 'tasks' ? 'coordinator' : (queue?.vertex ?? '?');
        if (op === 'ReceiveMessageCommand' && (queue?.role === 'vertex' || queue?.role === 'tasks')) {
          const messages = (result.output.Messages ?? []) as { ReceiptHandle?: string }[];
          if (messages.length > 0) {
            const batch = { fn, startedAt: performance.now(), messages: messages.length, ended: false };
            for (const m of messages) if (m.ReceiptHandle) this.open.set(m.ReceiptHandle, batch);
          }
        }
        this.sqsByPurpose.add(purposeOf(op, queue, args.input));
        const billed = Math.max(1, Math.ceil(sqsPayload(op, args.input, result.output) / AWS_PRICES.sqsBillingChunkBytes));
        this.sqsBilled.add(queue?.role === 'tasks' || queue?.role === 'tasks-dlq' ? 'standard' : 'fifo', billed);
        return result;
      },
      { step: 'initialize', name: 'floeBenchSources-sqs' },
    );
    clients.dynamodb.middlewareStack.add(
      (next: any, context: any) => async (args: any) => {
        const result = await next(args);
        const item = args.input.Item as Record<string, AttributeValue> | undefined;
        if (context.commandName === 'PutItemCommand' && item?.sk?.S === 'control' && item.pk?.S?.startsWith(this.pkPrefix)) {
          this.steps.add(decodeURIComponent(item.pk.S.slice(this.pkPrefix.length).replace(/\/\d+$/, '')));
        }
        const key = args.input.Key as Record<string, AttributeValue> | undefined;
        if (context.commandName === 'UpdateItemCommand' && key?.sk === undefined && /^job#[^#]*$/.test(key?.pk?.S ?? '')) {
          this.jobRow.add('count');
          this.jobRow.add('bytes', itemSize(key) + itemSize(args.input.ExpressionAttributeValues));
        }
        return result;
      },
      { step: 'initialize', name: 'floeBenchSources-dynamodb' },
    );
  }
  /* eslint-enable @typescript-eslint/no-explicit-any */

  /** A poller deletes or hands back a batch's messages right after its handler returned: that ends the invocation. */
  private settle(entries: readonly { ReceiptHandle?: string }[]): void {
    const now = performance.now();
    for (const e of entries) {
      const batch = e.ReceiptHandle ? this.open.get(e.ReceiptHandle) : undefined;
      if (!batch) continue;
      this.open.delete(e.ReceiptHandle!);
      if (batch.ended) continue;
      batch.ended = true;
      this.invocations.push({ fn: batch.fn, startedAt: batch.startedAt, ms: now - batch.startedAt, messages: batch.messages });
    }
  }
}

/**
 * What an SQS request of the runtime is for: `ESM` marks the pollers' requests (Lambda's event source mapping when
 * deployed), `*` what emulator mode sends in place of an AWS service (the schedule's ticks) or only in emulator mode
 * (dead-letter checks; an alarm when deployed).
 */
function purposeOf(op: string, queue: { role: string; source?: boolean } | undefined, input: { Entries?: { MessageBody?: string }[]; MessageBody?: string }): string {
  const name = op.replace(/Command$/, '');
  const role = queue?.role;
  const where = role === 'tasks' ? 'tasks queue' : 'vertex queues';
  if (role === 'vertex' || role === 'tasks') {
    if (name === 'ReceiveMessage') return `ESM receive (${where})`;
    if (name === 'DeleteMessageBatch') return `ESM delete (${where})`;
    if (name === 'ChangeMessageVisibilityBatch') return `ESM hand-back (${where})`;
  }
  if (role === 'tasks' && name === 'SendMessage' && input.MessageBody?.includes('"tick"')) return 'ticks*';
  if ((role === 'dlq' || role === 'tasks-dlq') && name === 'GetQueueAttributes') return 'dead-letter checks*';
  if (role === 'vertex' && name === 'GetQueueAttributes') return 'backlog probe';
  if (role === 'vertex' && name === 'SendMessageBatch') {
    const body = input.Entries?.[0]?.MessageBody ?? '';
    if (body.includes('"wake"')) return 'wakes';
    if (body.includes('"$coordinator"')) return 'barriers';
    return 'envelopes';
  }
  return `${name} (${role ?? 'other queue'})`;
}

/** Requests by operation, named without the SDK's `Command` suffix. */
const byOperation = (r: Record<string, number>) => Object.fromEntries(Object.entries(r).map(([op, n]) => [op.replace(/Command$/, ''), n]));
/**
 * The source's own requests: SQS for `sqsSource`, Kinesis for `kinesisSource`, S3 (named `S3 <operation>`) and SQS
 * for `s3Source` (each client counts only its own).
 */
const sourceByOperation = (u: AwsUsageSnapshot) => ({
  ...byOperation(u.requests.sqs),
  ...byOperation(u.requests.kinesis ?? {}),
  ...Object.fromEntries(Object.entries(byOperation(u.requests.s3)).map(([op, n]) => [`S3 ${op}`, n])),
});

const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
const scale = (r: Record<string, number>, k: number) => Object.fromEntries(Object.entries(r).map(([op, n]) => [op, n * k]));
const byService = (u: AwsUsageSnapshot) => ({
  sqs: byOperation(u.requests.sqs),
  dynamodb: byOperation(u.requests.dynamodb),
  s3: byOperation(u.requests.s3),
  sfn: byOperation(u.requests.sfn),
});

/** Handler invocations of one function: count and durations. */
export interface InvocationSummary {
  readonly count: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly totalMs: number;
  readonly messages: number;
}

function summarize(list: readonly Invocation[]): Record<string, InvocationSummary> {
  const out: Record<string, InvocationSummary> = {};
  const fns = [...new Set(list.map((i) => i.fn))];
  for (const fn of [...fns, 'all']) {
    const of = fn === 'all' ? list : list.filter((i) => i.fn === fn);
    const ms = of.map((i) => i.ms).sort((a, b) => a - b);
    const total = ms.reduce((a, b) => a + b, 0);
    out[fn] = {
      count: of.length,
      meanMs: of.length === 0 ? 0 : total / of.length,
      p50Ms: median(ms),
      p90Ms: ms.length === 0 ? NaN : ms[Math.min(ms.length - 1, Math.floor(0.9 * ms.length))]!,
      totalMs: total,
      messages: of.reduce((a, i) => a + i.messages, 0),
    };
  }
  return out;
}

/** USD, by what is billed. */
export interface SourcesCost {
  readonly sqsSourceQueue: number;
  /** `s3Source`'s own S3 requests (its listings, and the GetObject of each object read). */
  readonly s3SourceBucket: number;
  readonly sqsInternal: number;
  readonly dynamodb: number;
  readonly s3: number;
  readonly stepFunctions: number;
  readonly lambdaRequests: number;
  readonly lambdaDuration: number;
  readonly total: number;
}

/** What one measured stretch used, and what it costs at list prices. */
export interface SourcesUsage {
  /**
   * The source's own client, by operation: SQS (the user's standard queue, and a dead-letter queue if used; `billed`
   * its billed requests), or Kinesis (GetRecords, GetShardIterator, ListShards: not billed in provisioned mode).
   */
  readonly source: { readonly requests: Record<string, number>; readonly billed: number };
  /** The runtime's clients (vertex queues, coordinator-tasks queue, state and coordinator tables, checkpoint bucket, Step Functions), by service and operation. */
  readonly runtime: ReturnType<typeof byService>;
  /** Runtime SQS requests by purpose. */
  readonly sqsByPurpose: Record<string, number>;
  /** Billed runtime SQS requests by queue type, Step Functions' own sends to the coordinator-tasks queue included. */
  readonly sqsBilled: { readonly fifo: number; readonly standard: number };
  readonly dynamoDb: { readonly writeUnits: number; readonly readUnits: number; readonly writeUnitsByKind: Record<string, number> };
  readonly s3: { readonly put: number; readonly get: number };
  readonly stepFunctions: StepFunctionsWork;
  /** Committed steps (control row writes) by vertex. */
  readonly steps: Record<string, number>;
  /** The coordinator job row's conditional writes, and their mean size (key and values sent). */
  readonly jobRowWrites: { readonly count: number; readonly meanBytes: number };
  readonly invocations: Record<string, InvocationSummary>;
  readonly cost: SourcesCost;
}

export interface Marks {
  readonly source: AwsUsageSnapshot;
  readonly runtime: AwsUsageSnapshot;
  readonly purpose: Record<string, number>;
  readonly billed: Record<string, number>;
  readonly steps: Record<string, number>;
  readonly jobRow: Record<string, number>;
  readonly checkpoints: number;
  readonly at: number;
}

export function mark(sourceUsage: AwsUsage, usage: AwsUsage, probe: RuntimeProbe, runner: EmulatorRunner): Marks {
  return {
    source: sourceUsage.snapshot(),
    runtime: usage.snapshot(),
    purpose: probe.sqsByPurpose.snapshot(),
    billed: probe.sqsBilled.snapshot(),
    steps: probe.steps.snapshot(),
    jobRow: probe.jobRow.snapshot(),
    checkpoints: completed(runner),
    at: performance.now(),
  };
}

export function usageBetween(a: Marks, b: Marks, probe: RuntimeProbe, sfn: StepFunctionsWork): SourcesUsage {
  const source = diff(a.source, b.source);
  const runtime = diff(a.runtime, b.runtime);
  const billed = tallyDiff(a.billed, b.billed);
  const jobRow = tallyDiff(a.jobRow, b.jobRow);
  const invocations = summarize(probe.invocations.filter((i) => i.startedAt >= a.at && i.startedAt < b.at));
  const p = AWS_PRICES;
  const sqsBilled = { fifo: billed.fifo ?? 0, standard: (billed.standard ?? 0) + sfn.sqsSends };
  const readUnits = runtime.readUnits + sfn.dynamoDbGets;
  const all = invocations.all ?? { count: 0, totalMs: 0 };
  const cost = {
    sqsSourceQueue: (source.sqsBilled / 1e6) * p.sqsStandardPerMillionRequests,
    s3SourceBucket: (source.s3Put / 1000) * p.s3PutPerThousand + (source.s3Get / 1000) * p.s3GetPerThousand,
    sqsInternal: (sqsBilled.fifo / 1e6) * p.sqsFifoPerMillionRequests + (sqsBilled.standard / 1e6) * p.sqsStandardPerMillionRequests,
    dynamodb: (runtime.writeUnits / 1e6) * p.dynamoDbPerMillionWriteUnits + (readUnits / 1e6) * p.dynamoDbPerMillionReadUnits,
    s3: (runtime.s3Put / 1000) * p.s3PutPerThousand + (runtime.s3Get / 1000) * p.s3GetPerThousand,
    stepFunctions: (sfn.transitions / 1000) * p.stepFunctionsPerThousandTransitions,
    lambdaRequests: (all.count / 1e6) * p.lambdaPerMillionRequests,
    lambdaDuration: (all.totalMs / 1000) * (p.lambdaMemoryMb / 1024) * p.lambdaArm64PerGbSecond,
    total: 0,
  };
  cost.total = cost.sqsSourceQueue + cost.s3SourceBucket + cost.sqsInternal + cost.dynamodb + cost.s3 + cost.stepFunctions + cost.lambdaRequests + cost.lambdaDuration;
  return {
    source: { requests: sourceByOperation(source), billed: source.sqsBilled },
    runtime: byService(runtime),
    sqsByPurpose: tallyDiff(a.purpose, b.purpose),
    sqsBilled,
    dynamoDb: { writeUnits: runtime.writeUnits, readUnits, writeUnitsByKind: runtime.writeUnitsByKind },
    s3: { put: runtime.s3Put, get: runtime.s3Get },
    stepFunctions: sfn,
    steps: tallyDiff(a.steps, b.steps),
    jobRowWrites: { count: jobRow.count ?? 0, meanBytes: jobRow.count ? (jobRow.bytes ?? 0) / jobRow.count : 0 },
    invocations,
    cost,
  };
}

/** Multiplies every cost by `k`. */
export function scaleCost(c: SourcesCost, k: number): SourcesCost {
  return Object.fromEntries(Object.entries(c).map(([name, n]) => [name, n * k])) as unknown as SourcesCost;
}

/** Multiplies every count of a usage by `k` (per 1,000 records, per hour); durations stay as they are. */
export function scaleUsage(u: SourcesUsage, k: number): SourcesUsage {
  const s = (r: Record<string, number>) => scale(r, k);
  return {
    source: { requests: s(u.source.requests), billed: u.source.billed * k },
    runtime: { sqs: s(u.runtime.sqs), dynamodb: s(u.runtime.dynamodb), s3: s(u.runtime.s3), sfn: s(u.runtime.sfn) },
    sqsByPurpose: s(u.sqsByPurpose),
    sqsBilled: { fifo: u.sqsBilled.fifo * k, standard: u.sqsBilled.standard * k },
    dynamoDb: { writeUnits: u.dynamoDb.writeUnits * k, readUnits: u.dynamoDb.readUnits * k, writeUnitsByKind: s(u.dynamoDb.writeUnitsByKind) },
    s3: { put: u.s3.put * k, get: u.s3.get * k },
    stepFunctions: { executions: u.stepFunctions.executions * k, transitions: u.stepFunctions.transitions * k, sqsSends: u.stepFunctions.sqsSends * k, dynamoDbGets: u.stepFunctions.dynamoDbGets * k },
    steps: s(u.steps),
    jobRowWrites: { count: u.jobRowWrites.count * k, meanBytes: u.jobRowWrites.meanBytes },
    invocations: Object.fromEntries(Object.entries(u.invocations).map(([fn, i]) => [fn, { ...i, count: i.count * k, totalMs: i.totalMs * k, messages: i.messages * k }])),
    cost: scaleCost(u.cost, k),
  };
}

/** Medians of several usages, field by field (counts, durations and costs alike). */
function medianUsage(list: readonly SourcesUsage[]): SourcesUsage {
  if (list.length === 1) return list[0]!;
  const walk = (values: unknown[]): unknown => {
    const first = values[0];
    if (typeof first === 'number') return median(values.map((v) => (typeof v === 'number' ? v : 0)));
    if (first && typeof first === 'object') {
      const keys = new Set(values.flatMap((v) => Object.keys((v ?? {}) as object)));
      return Object.fromEntries([...keys].map((k) => [k, walk(values.map((v) => ((v ?? {}) as Record<string, unknown>)[k] ?? 0))]));
    }
    return first;
  };
  return walk([...list]) as SourcesUsage;
}

/** A drain run's figures. */
export interface DrainResult {
  readonly messages: number;
  readonly runMs: number;
  readonly checkpoints: number;
  /** Records the sink was handed (a replayed step would hand some twice). */
  readonly sinkRecords: number;
  /** Messages moto still counted in the queue (visible and in flight) once the source had deleted every one. */
  readonly motoDepth: number;
  readonly usage: SourcesUsage;
  readonly per1000: SourcesUsage;
}

/** An idle run's figures. */
export interface IdleResult {
  readonly windowMs: number;
  readonly checkpoints: number;
  readonly usage: SourcesUsage;
  readonly perHour: SourcesUsage;
}

export async function createQueue(client: SQSClient): Promise<string> {
  return (await client.send(new CreateQueueCommand({ QueueName: `bench-orders-${randomUUID().slice(0, 8)}` }))).QueueUrl!;
}

async function queueDepth(client: SQSClient, url: string): Promise<number> {
  const a = (await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }))).Attributes ?? {};
  return Number(a.ApproximateNumberOfMessages ?? 0) + Number(a.ApproximateNumberOfMessagesNotVisible ?? 0);
}

function orders(n: number, customers: number): Order[] {
  return Array.from({ length: n }, (_, i) => ({ customer: `c${i % customers}`, amount: 1 + ((i * 7) % 9) }));
}

/** The job's source over its own client, which counts into the usage given. */
export type SourceOf<C> = (endpoint: string, usage: AwsUsage) => { readonly source: SourceConnector<Order>; readonly client: C };

export const sqsOrders =
  (queueUrl: string): SourceOf<SQSClient> =>
  (endpoint, usage) => {
    const client = instrumentedClients(endpoint, usage).sqs;
    return { client, source: sqsSource<Order>({ queueUrl, client, parse: (body) => JSON.parse(body) as Order }) };
  };

const decoder = new TextDecoder();
const encoder = new TextEncoder();

const kinesisOrders =
  (stream: string): SourceOf<KinesisClient> =>
  (endpoint, usage) => {
    const client = instrumentedKinesisClient(endpoint, usage);
    return { client, source: kinesisSource<Order>({ stream, client, start: 'TRIM_HORIZON', parse: (data) => JSON.parse(decoder.decode(data)) as Order }) };
  };

/** Builds a runner over instrumented clients: the source's own client apart from the runtime's. */
export function setUp<C>(cfg: Pick<SourcesConfig, 'parallelism' | 'intervalMs'>, endpoint: string, sourceOf: SourceOf<C>, namespace: string, runnerOptions: Partial<EmulatorRunOptions> = {}) {
  const sourceUsage = new AwsUsage();
  const usage = new AwsUsage();
  const { source, client: sourceClient } = sourceOf(endpoint, sourceUsage);
  const clients = instrumentedClients(endpoint, usage);
  const counter = sinkCounter();
  const job = ordersJob({ source, counter, parallelism: cfg.parallelism, intervalMs: cfg.intervalMs });
  const runner = new EmulatorRunner(job, { endpoint, clients, namespace, log: (m) => logLine(`${namespace}: ${m}`), ...runnerOptions });
  const probe = new RuntimeProbe(runner, namespace);
  probe.install(clients);
  return { sourceUsage, usage, sourceClient, clients, counter, runner, probe };
}

/** Checkpoints completed so far (the row's history keeps only the last few). */
export const completed = (runner: EmulatorRunner) => runner.coordinatorState().counts.completed;

/**
 * Message ids the source deleted, from its client's successful DeleteMessageBatch entries. The queue's own counters
 * are not used to see it empty: moto 5.2.5 rebuilds a queue's message list on every delete without a lock, and two
 * concurrent deletes (two subtasks acknowledging at once) can leave messages that were deleted counted as in flight.
 */
export function trackDeletes(client: SQSClient): Set<string> {
  const deleted = new Set<string>();
  const idOf = new Map<string, string>();
  /* eslint-disable @typescript-eslint/no-explicit-any -- the middleware sees each command's own input and output */
  client.middlewareStack.add(
    (next: any, context: any) => async (args: any) => {
      const result = await next(args);
      if (context.commandName === 'ReceiveMessageCommand') for (const m of result.output.Messages ?? []) idOf.set(m.ReceiptHandle, m.MessageId);
      if (context.commandName === 'DeleteMessageBatchCommand') {
        const failed = new Set((result.output.Failed ?? []).map((f: any) => f.Id));
        for (const e of args.input.Entries ?? []) if (!failed.has(e.Id) && idOf.has(e.ReceiptHandle)) deleted.add(idOf.get(e.ReceiptHandle)!);
      }
      return result;
    },
    { step: 'initialize', name: 'floeBenchSources-deletes' },
  );
  /* eslint-enable @typescript-eslint/no-explicit-any */
  return deleted;
}

async function waitRunning(runner: EmulatorRunner, run: Promise<unknown>): Promise<void> {
  let ended = false;
  void run.finally(() => (ended = true));
  // Provisioning, purging and restoring are per run, not per record or per hour: count from the moment the job runs.
  while (!ended && runner.overview().state !== 'RUNNING') await sleep(20);
}

async function drainRun(cfg: SourcesConfig, endpoint: string, plain: SQSClient, sfn: SFNClient, seen: Set<string>, n: number): Promise<DrainResult> {
  const queueUrl = await createQueue(plain);
  const input = orders(cfg.messages, cfg.customers);
  const sent: string[] = [];
  for (let i = 0; i < input.length; i += 10) {
    const res = await plain.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: input.slice(i, i + 10).map((o, k) => ({ Id: String(k), MessageBody: JSON.stringify(o) })) }));
    if ((res.Failed ?? []).length > 0) throw new Error(`sources drain: sending the input failed: ${JSON.stringify(res.Failed)}`);
    for (const m of res.Successful ?? []) sent.push(m.MessageId!);
  }
  const namespace = `sources-drain-${n}`;
  const { sourceUsage, usage, sourceClient, counter, runner, probe } = setUp(cfg, endpoint, sqsOrders(queueUrl), namespace);
  const deleted = trackDeletes(sourceClient);
  // A message is deleted only once the checkpoint after its record completed: by then the sink has had the record.
  const drained = () => sent.every((id) => deleted.has(id));
  // Executions of the runs before (started after their last read) are theirs, not this run's.
  await stepFunctionsWork(sfn, seen);
  const run = runner.run();
  try {
    await waitRunning(runner, run);
    const start = mark(sourceUsage, usage, probe, runner);
    // Every record committed (its checkpoint completed), and every message deleted (the source acknowledged it).
    await awaitDrained({ what: 'drain', namespace, runner, run, timeoutMs: cfg.drainTimeoutMs, done: drained, progress: () => `${deleted.size} of ${input.length} messages deleted, ${counter.records} records at the sink, ${completed(runner)} checkpoints` });
    const end = mark(sourceUsage, usage, probe, runner);
    const checkpoints = completed(runner) - start.checkpoints;
    const motoDepth = await queueDepth(plain, queueUrl);
    if (motoDepth > 0) logLine(`${namespace}: every message deleted, but moto counts ${motoDepth} in the queue (see trackDeletes)`);
    // Settle invocations in flight at the end (they started before it), then read what Step Functions did.
    await sleep(1500);
    const work = await stepFunctionsWork(sfn, seen);
    const used = usageBetween(start, end, probe, work);
    return { messages: input.length, runMs: end.at - start.at, checkpoints, sinkRecords: counter.records, motoDepth, usage: used, per1000: scaleUsage(used, 1000 / input.length) };
  } finally {
    await runner.cancel();
    await run;
  }
}

async function idleRun<C>(cfg: SourcesConfig, endpoint: string, sourceOf: SourceOf<C>, sfn: SFNClient, seen: Set<string>, namespace: string): Promise<IdleResult> {
  const { sourceUsage, usage, runner, probe } = setUp(cfg, endpoint, sourceOf, namespace);
  const run = runner.run();
  try {
    await waitRunning(runner, run);
    await untilIdle(runner, 180_000, (m) => logLine(`${namespace}: ${m}`));
    await stepFunctionsWork(sfn, seen);
    const start = mark(sourceUsage, usage, probe, runner);
    await sleep(cfg.idleWindowMs);
    const end = mark(sourceUsage, usage, probe, runner);
    const checkpoints = end.checkpoints - start.checkpoints;
    const work = await stepFunctionsWork(sfn, seen);
    await sleep(1500);
    const used = usageBetween(start, end, probe, work);
    const windowMs = end.at - start.at;
    return { windowMs, checkpoints, usage: used, perHour: scaleUsage(used, 3_600_000 / windowMs) };
  } finally {
    await runner.cancel();
    await run;
  }
}

/** Backoff of an idle source chain: ten idle steps, then 1, 2 … 32 s, then the cap; about 75 s from the first idle step. */
const BACKOFF_SETTLE_MS = SOURCE_IDLE_MAX_DELAY_MS + 60_000;

/**
 * Waits until an idle job is in its steady state: quiet (periodic checkpoints paused, lib/core/coordinator/quiet.ts)
 * and its source chains backed off to their longest delay. Answers how long the job took to go quiet, in ms.
 */
export async function untilIdle(runner: EmulatorRunner, timeoutMs: number, log: (m: string) => void): Promise<number> {
  const started = performance.now();
  while (runner.coordinatorState().quiet?.confirmed !== true) {
    if (performance.now() - started > timeoutMs) throw new Error(`idle: the job was not quiet within ${timeoutMs} ms (${completed(runner)} checkpoints)`);
    await sleep(250);
  }
  const quietAfterMs = performance.now() - started;
  log(`quiet after ${Math.round(quietAfterMs / 1000)} s and ${completed(runner)} checkpoints; waiting ${Math.round(BACKOFF_SETTLE_MS / 1000)} s for the source chains to back off fully`);
  await sleep(BACKOFF_SETTLE_MS);
  return quietAfterMs;
}

/** A Kinesis drain run's figures. */
export interface KinesisDrainResult {
  readonly records: number;
  readonly shards: number;
  readonly runMs: number;
  readonly checkpoints: number;
  /** Records the sink was handed (a replayed step would hand some twice). */
  readonly sinkRecords: number;
  /** PUT payload units (25 KB each, started) of the records put before the start: the producer's, billed by Kinesis. */
  readonly putPayloadUnits: number;
  readonly usage: SourcesUsage;
  readonly per1000: SourcesUsage;
}

async function createStream(client: KinesisClient, shards: number): Promise<string> {
  const name = `bench-orders-${randomUUID().slice(0, 8)}`;
  await client.send(new CreateStreamCommand({ StreamName: name, ShardCount: shards }));
  for (let i = 0; ; i++) {
    const status = (await client.send(new DescribeStreamSummaryCommand({ StreamName: name }))).StreamDescriptionSummary?.StreamStatus;
    if (status === 'ACTIVE') return name;
    if (i >= 100) throw new Error(`sources: stream ${name} still ${status} after 10 s`);
    await sleep(100);
  }
}

/** Puts the records (partition key: the customer); returns their PUT payload units. */
async function putOrders(client: KinesisClient, stream: string, input: readonly Order[]): Promise<number> {
  let units = 0;
  for (let i = 0; i < input.length; i += 500) {
    const records = input.slice(i, i + 500).map((o) => ({ PartitionKey: o.customer, Data: encoder.encode(JSON.stringify(o)) }));
    const res = await client.send(new PutRecordsCommand({ StreamName: stream, Records: records }));
    if ((res.FailedRecordCount ?? 0) > 0) throw new Error(`sources kinesis drain: putting the input failed for ${res.FailedRecordCount} records`);
    for (const r of records) units += Math.max(1, Math.ceil((r.Data.byteLength + Buffer.byteLength(r.PartitionKey)) / AWS_PRICES.kinesisPutPayloadUnitBytes));
  }
  return units;
}

/**
 * N records put into the stream before the start, read until the sink had every one and a checkpoint triggered after
 * that completed (the source acknowledges nothing: its checkpointed shard positions are what commits the records).
 */
async function kinesisDrainRun(cfg: SourcesConfig, endpoint: string, plain: KinesisClient, sfn: SFNClient, seen: Set<string>, n: number): Promise<KinesisDrainResult> {
  const stream = await createStream(plain, cfg.kinesisShards);
  const input = orders(cfg.messages, cfg.customers);
  const putPayloadUnits = await putOrders(plain, stream, input);
  const namespace = `sources-kinesis-drain-${n}`;
  const { sourceUsage, usage, counter, runner, probe } = setUp(cfg, endpoint, kinesisOrders(stream), namespace);
  await stepFunctionsWork(sfn, seen);
  const run = runner.run();
  try {
    await waitRunning(runner, run);
    const start = mark(sourceUsage, usage, probe, runner);
    await awaitDrained({ what: 'kinesis drain', namespace, runner, run, timeoutMs: cfg.drainTimeoutMs, thenCheckpoint: true, done: () => counter.records >= input.length, progress: () => `${counter.records} of ${input.length} records at the sink, ${completed(runner)} checkpoints` });
    const end = mark(sourceUsage, usage, probe, runner);
    const checkpoints = completed(runner) - start.checkpoints;
    await sleep(1500);
    const work = await stepFunctionsWork(sfn, seen);
    const used = usageBetween(start, end, probe, work);
    return { records: input.length, shards: cfg.kinesisShards, runMs: end.at - start.at, checkpoints, sinkRecords: counter.records, putPayloadUnits, usage: used, per1000: scaleUsage(used, 1000 / input.length) };
  } finally {
    await runner.cancel();
    await run;
  }
}

/** A bucket, and a standard queue its `s3:ObjectCreated:*` notifications go to (as test/integration/s3-source.test.ts sets up). */
async function bucketWithQueue(s3: S3Client, sqs: SQSClient): Promise<{ bucket: string; queueUrl: string }> {
  const tag = randomUUID().slice(0, 8);
  const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `bench-uploads-${tag}` }))).QueueUrl!;
  const queueArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
  const bucket = `bench-uploads-${tag}`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  await s3.send(new PutBucketNotificationConfigurationCommand({ Bucket: bucket, NotificationConfiguration: { QueueConfigurations: [{ QueueArn: queueArn, Events: ['s3:ObjectCreated:*'] }] } }));
  return { bucket, queueUrl };
}

/** `s3Source` over the bucket's notifications and a listing every minute, both its clients (S3 and SQS) counting into the source's usage. */
const s3Orders =
  (bucket: string, queueUrl: string): SourceOf<AwsClients> =>
  (endpoint, usage) => {
    const client = instrumentedClients(endpoint, usage);
    return { client, source: s3Source<Order>({ bucket, notifications: { queueUrl }, listInterval: '1m', client: client.s3, sqsClient: client.sqs, parse: (line) => JSON.parse(line) as Order }) };
  };

/** An S3 drain run's figures. */
export interface S3DrainResult {
  readonly objects: number;
  readonly lines: number;
  readonly runMs: number;
  readonly checkpoints: number;
  /** Lines the sink was handed (a replayed step would hand some twice). */
  readonly sinkRecords: number;
  readonly usage: SourcesUsage;
  readonly perThousandObjects: SourcesUsage;
  readonly perThousandLines: SourcesUsage;
}

/**
 * N objects of L lines each put into the bucket once the job runs (each announced by a notification to the queue),
 * read until every line reached the sink and a checkpoint triggered after that completed (which deletes the
 * notifications that announced them).
 */
async function s3DrainRun(cfg: SourcesConfig, endpoint: string, plainS3: S3Client, plain: SQSClient, sfn: SFNClient, seen: Set<string>, n: number): Promise<S3DrainResult> {
  const { bucket, queueUrl } = await bucketWithQueue(plainS3, plain);
  const input = orders(cfg.s3Objects * cfg.s3LinesPerObject, cfg.customers);
  const namespace = `sources-s3-drain-${n}`;
  const { sourceUsage, usage, counter, runner, probe } = setUp(cfg, endpoint, s3Orders(bucket, queueUrl), namespace);
  await stepFunctionsWork(sfn, seen);
  const run = runner.run();
  try {
    await waitRunning(runner, run);
    const start = mark(sourceUsage, usage, probe, runner);
    for (let i = 0; i < cfg.s3Objects; i++) {
      const lines = input.slice(i * cfg.s3LinesPerObject, (i + 1) * cfg.s3LinesPerObject).map((o) => JSON.stringify(o));
      await plainS3.send(new PutObjectCommand({ Bucket: bucket, Key: `in/${String(i).padStart(5, '0')}.jsonl`, Body: lines.join('\n') + '\n' }));
    }
    await awaitDrained({ what: 's3 drain', namespace, runner, run, timeoutMs: cfg.drainTimeoutMs, thenCheckpoint: true, done: () => counter.records >= input.length, progress: () => `${counter.records} of ${input.length} lines at the sink, ${completed(runner)} checkpoints` });
    const end = mark(sourceUsage, usage, probe, runner);
    const checkpoints = completed(runner) - start.checkpoints;
    await sleep(1500);
    const work = await stepFunctionsWork(sfn, seen);
    const used = usageBetween(start, end, probe, work);
    return {
      objects: cfg.s3Objects,
      lines: input.length,
      runMs: end.at - start.at,
      checkpoints,
      sinkRecords: counter.records,
      usage: used,
      perThousandObjects: scaleUsage(used, 1000 / cfg.s3Objects),
      perThousandLines: scaleUsage(used, 1000 / input.length),
    };
  } finally {
    await runner.cancel();
    await run;
  }
}

/** Medians of the idle runs, per hour and per month. */
function idleMedians(idles: readonly IdleResult[]) {
  const perHour = medianUsage(idles.map((r) => r.perHour));
  return { windowMs: median(idles.map((r) => r.windowMs)), checkpoints: median(idles.map((r) => r.checkpoints)), perHour, perMonth: scaleCost(perHour.cost, AWS_PRICES.hoursPerMonth) };
}

/** The section's results: every run, and medians. */
export interface SourcesResult {
  readonly drains: readonly DrainResult[];
  readonly idles: readonly IdleResult[];
  readonly drain: DrainSummary & { readonly per1000: SourcesUsage };
  readonly idle: IdleSummary;
  /** The same for `kinesisSource` over a stream of `shards` shards (provisioned mode). */
  readonly kinesis: {
    readonly shards: number;
    readonly drains: readonly KinesisDrainResult[];
    readonly idles: readonly IdleResult[];
    readonly drain: DrainSummary & {
      readonly per1000: SourcesUsage;
      /** PUT payload units per 1,000 records put, and their $ per million records (the producer's). */
      readonly putPayloadUnitsPer1000: number;
      readonly putCostPerMillion: number;
    };
    readonly idle: IdleSummary & {
      /** The stream's shard-hours a month in $: the user's whether or not Floe reads it, so apart from `perMonth`. */
      readonly shardHoursPerMonth: number;
    };
  };
  /** The same for `s3Source` over a bucket whose notifications go to a standard queue (listing every minute besides). */
  readonly s3: {
    readonly objects: number;
    readonly linesPerObject: number;
    readonly drains: readonly S3DrainResult[];
    readonly idles: readonly IdleResult[];
    readonly drain: DrainSummary & { readonly perThousandObjects: SourcesUsage; readonly perThousandLines: SourcesUsage };
    readonly idle: IdleSummary;
  };
}

/** Medians of a source's drain runs. */
interface DrainSummary {
  readonly runMs: number;
  readonly checkpoints: number;
  /** Every run's sink had every record (at least once; a replay would hand some twice). */
  readonly complete: boolean;
}

/** Medians of a source's idle runs. */
interface IdleSummary {
  readonly windowMs: number;
  readonly checkpoints: number;
  readonly perHour: SourcesUsage;
  readonly perMonth: SourcesCost;
}

/** Starts moto, runs the drain and idle measurements `runs` times each, stops moto. */
export async function sourcesSection(cfg: SourcesConfig): Promise<SourcesResult> {
  const savedEndpoint = process.env.AWS_ENDPOINT_URL;
  const stopMoto = await startMoto();
  const endpoint = process.env.AWS_ENDPOINT_URL!;
  const plain = new SQSClient({ endpoint, region: AWS_PRICES.region });
  const plainKinesis = new KinesisClient({ endpoint, region: AWS_PRICES.region, requestHandler: new NodeHttpHandler() });
  const plainS3 = new S3Client({ endpoint, region: AWS_PRICES.region, forcePathStyle: true });
  const sfn = new SFNClient({ endpoint, region: AWS_PRICES.region });
  const seen = new Set<string>();
  const idleLog = (what: string, idle: IdleResult) => {
    const h = idle.perHour;
    logLine(
      `${what}: ${Math.round(idle.windowMs)} ms, ${idle.checkpoints} checkpoints; per hour: source ${Math.round(sum(h.source.requests))} (${JSON.stringify(h.source.requests, (_k, v: unknown) => (typeof v === 'number' ? Math.round(v) : v))}), runtime SQS ${Math.round(sum(h.runtime.sqs))}, DynamoDB ${Math.round(sum(h.runtime.dynamodb))}, invocations ${Math.round(h.invocations.all?.count ?? 0)} (mean ${Math.round(h.invocations.all?.meanMs ?? 0)} ms); $${(h.cost.total * AWS_PRICES.hoursPerMonth).toFixed(2)} a month`,
    );
    logLine(`${what}: runtime SQS per hour by purpose ${JSON.stringify(h.sqsByPurpose, (_k, v: unknown) => (typeof v === 'number' ? Math.round(v) : v))}`);
  };
  try {
    const drains: DrainResult[] = [];
    const idles: IdleResult[] = [];
    const kDrains: KinesisDrainResult[] = [];
    const kIdles: IdleResult[] = [];
    const sDrains: S3DrainResult[] = [];
    const sIdles: IdleResult[] = [];
    for (let i = 0; i < cfg.runs; i++) {
      const d = await drainRun(cfg, endpoint, plain, sfn, seen, i);
      logLine(`drain ${i + 1}/${cfg.runs}: ${d.messages} messages in ${Math.round(d.runMs)} ms, ${d.checkpoints} checkpoints, ${d.sinkRecords} records at the sink; per 1,000 records: source SQS ${sum(d.per1000.source.requests).toFixed(1)}, runtime SQS ${sum(d.per1000.runtime.sqs).toFixed(1)}, DynamoDB ${sum(d.per1000.runtime.dynamodb).toFixed(1)}, invocations ${d.per1000.invocations.all?.count.toFixed(1)}`);
      drains.push(d);
      const idle = await idleRun(cfg, endpoint, sqsOrders(await createQueue(plain)), sfn, seen, `sources-idle-${i}`);
      idleLog(`idle ${i + 1}/${cfg.runs}`, idle);
      idles.push(idle);
      const kd = await kinesisDrainRun(cfg, endpoint, plainKinesis, sfn, seen, i);
      logLine(
        `kinesis drain ${i + 1}/${cfg.runs}: ${kd.records} records over ${kd.shards} shards in ${Math.round(kd.runMs)} ms, ${kd.checkpoints} checkpoints, ${kd.sinkRecords} records at the sink; per 1,000 records: source Kinesis ${sum(kd.per1000.source.requests).toFixed(1)} ${JSON.stringify(kd.per1000.source.requests, (_k, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(1)) : v))}, runtime SQS ${sum(kd.per1000.runtime.sqs).toFixed(1)}, DynamoDB ${sum(kd.per1000.runtime.dynamodb).toFixed(1)}, invocations ${kd.per1000.invocations.all?.count.toFixed(1)}`,
      );
      kDrains.push(kd);
      const kIdle = await idleRun(cfg, endpoint, kinesisOrders(await createStream(plainKinesis, cfg.kinesisShards)), sfn, seen, `sources-kinesis-idle-${i}`);
      idleLog(`kinesis idle ${i + 1}/${cfg.runs}`, kIdle);
      kIdles.push(kIdle);
      const sd = await s3DrainRun(cfg, endpoint, plainS3, plain, sfn, seen, i);
      const po = sd.perThousandObjects;
      logLine(
        `s3 drain ${i + 1}/${cfg.runs}: ${sd.objects} objects (${sd.lines} lines) in ${Math.round(sd.runMs)} ms, ${sd.checkpoints} checkpoints, ${sd.sinkRecords} lines at the sink; per 1,000 objects: source ${sum(po.source.requests).toFixed(1)} ${JSON.stringify(po.source.requests, (_k, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(1)) : v))}, runtime SQS ${sum(po.runtime.sqs).toFixed(1)}, DynamoDB ${sum(po.runtime.dynamodb).toFixed(1)}, invocations ${po.invocations.all?.count.toFixed(1)}`,
      );
      sDrains.push(sd);
      const empty = await bucketWithQueue(plainS3, plain);
      const sIdle = await idleRun(cfg, endpoint, s3Orders(empty.bucket, empty.queueUrl), sfn, seen, `sources-s3-idle-${i}`);
      idleLog(`s3 idle ${i + 1}/${cfg.runs}`, sIdle);
      sIdles.push(sIdle);
    }
    const idle = idleMedians(idles);
    const kIdle = idleMedians(kIdles);
    const putPayloadUnitsPer1000 = median(kDrains.map((d) => (d.putPayloadUnits * 1000) / d.records));
    return {
      drains,
      idles,
      drain: {
        ...drainMedians(drains, (d) => d.messages),
        per1000: medianUsage(drains.map((d) => d.per1000)),
      },
      idle,
      kinesis: {
        shards: cfg.kinesisShards,
        drains: kDrains,
        idles: kIdles,
        drain: {
          ...drainMedians(kDrains, (d) => d.records),
          per1000: medianUsage(kDrains.map((d) => d.per1000)),
          putPayloadUnitsPer1000,
          putCostPerMillion: putPayloadUnitsPer1000 * 1000 * (AWS_PRICES.kinesisPerMillionPutPayloadUnits / 1e6),
        },
        idle: { ...kIdle, shardHoursPerMonth: cfg.kinesisShards * AWS_PRICES.hoursPerMonth * AWS_PRICES.kinesisPerShardHour },
      },
      s3: {
        objects: cfg.s3Objects,
        linesPerObject: cfg.s3LinesPerObject,
        drains: sDrains,
        idles: sIdles,
        drain: {
          ...drainMedians(sDrains, (d) => d.lines),
          perThousandObjects: medianUsage(sDrains.map((d) => d.perThousandObjects)),
          perThousandLines: medianUsage(sDrains.map((d) => d.perThousandLines)),
        },
        idle: idleMedians(sIdles),
      },
    };
  } finally {
    plain.destroy();
    plainKinesis.destroy();
    plainS3.destroy();
    sfn.destroy();
    await stopMoto();
    if (savedEndpoint === undefined) delete process.env.AWS_ENDPOINT_URL;
    else process.env.AWS_ENDPOINT_URL = savedEndpoint;
  }
}

/**
 * Waits until `done()` holds, logging `progress()` every 10 s; throws when the job ends first or `timeoutMs` passes.
 * With `thenCheckpoint`, `done()` only says the records arrived: the wait goes on until a checkpoint triggered after
 * that completed (what commits them when nothing is acknowledged).
 */
async function awaitDrained(o: { what: string; namespace: string; runner: EmulatorRunner; run: Promise<RunOutcome>; timeoutMs: number; done: () => boolean; progress: () => string; thenCheckpoint?: boolean }): Promise<void> {
  const deadline = performance.now() + o.timeoutMs;
  let ended = false;
  void o.run.finally(() => (ended = true));
  let lastLog = performance.now();
  // Date.now(), as the checkpoint history's trigger times.
  let reachedAt: number | undefined;
  const finished = () => {
    if (!o.thenCheckpoint) return o.done();
    if (reachedAt === undefined && o.done()) reachedAt = Date.now();
    return reachedAt !== undefined && o.runner.coordinatorState().history.some((h) => h.status === 'COMPLETED' && h.kind === 'checkpoint' && h.triggeredAt >= reachedAt!);
  };
  while (!ended && !finished()) {
    if (performance.now() > deadline) throw new Error(`sources ${o.what}: ${o.progress()} after ${o.timeoutMs} ms`);
    if (performance.now() - lastLog > 10_000) {
      lastLog = performance.now();
      logLine(`${o.namespace}: ${o.progress()}`);
    }
    await sleep(100);
  }
  if (ended) throw new Error(`sources ${o.what}: the job ended early: ${(await o.run).state} ${(await o.run).error?.message ?? ''}`);
}

/** Median time and checkpoints of drain runs, and whether every run brought all its records to the sink. */
function drainMedians<D extends { runMs: number; checkpoints: number; sinkRecords: number }>(runs: readonly D[], expected: (d: D) => number): { runMs: number; checkpoints: number; complete: boolean } {
  return { runMs: median(runs.map((d) => d.runMs)), checkpoints: median(runs.map((d) => d.checkpoints)), complete: runs.every((d) => d.sinkRecords >= expected(d)) };
}
