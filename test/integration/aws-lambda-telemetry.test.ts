import { randomUUID } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join as joinPath } from 'node:path';
import { CreateStateMachineCommand } from '@aws-sdk/client-sfn';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { JobStatus } from '../../lib/core/coordinator/job-row.js';
import { coordinatorStateMachineDefinition } from '../../lib/adapters/aws/coordinator-state-machine.js';
import { DynamoDbCoordinatorStore } from '../../lib/adapters/aws/dynamodb-coordinator-store.js';
import { CoordinatorHost } from '../../lib/coordination/host.js';
import { S3CheckpointStorage } from '../../lib/adapters/aws/s3-checkpoint-storage.js';
import type { SqsBatchResponse, SqsRecord } from '../../lib/adapters/aws/sqs-poller.js';
import { SqsQueueSender } from '../../lib/adapters/aws/sqs-queue-sender.js';
import { DeadLetterAttr } from '../../lib/hosts/lambda/operator-handler.js';
import { encodeWake } from '../../lib/hosts/lambda/source-wakes.js';
import { ErrorCode } from '../../lib/core/errors.js';
import { resolveCheckpointOptions } from '../../lib/core/options.js';
import { loadJob } from '../../lib/hosts/load-job.js';
import { buildPlan, type PhysicalPlan } from '../../lib/graph/plan.js';
import { CheckpointMetric, CoordinatorMetric, OperatorMetric } from '../../functions/metrics.js';
import { deleteMessages, provisionAwsJob, receiveMessages, sqsEventOf, type ProvisionedAwsJob } from '../support/aws-job.js';
import { Scratch, readCommittedLines, sleep, sorted } from '../support/jobs.js';
import { systemClock } from '../../lib/adapters/local/system-clock.js';

// The Lambda handlers (functions/operator.ts, functions/coordinator.ts) over moto, configured from their environment
// as FloeJob configures them, with stdout captured: every line they print must be Powertools JSON (logs with the
// job's keys and the Lambda context) or CloudWatch EMF (metrics with the job's dimensions), and the metrics of a
// known batch must carry its numbers. Each handler module is imported fresh, as one Lambda container.

const RECORDS = 30;
const NAMESPACE = 'FloeTest';
const SERVICE = 'floe-test';
const ROLE = 'arn:aws:iam::123456789012:role/floe-telemetry';

type Line = Record<string, unknown>;
type Handler = (event: unknown, context?: Context) => Promise<SqsBatchResponse>;

interface Emf {
  readonly _aws: { readonly Timestamp: number; readonly CloudWatchMetrics: readonly { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[] };
  readonly [key: string]: unknown;
}

const clients = awsClients();
const scratch = new Scratch();
const run = randomUUID().slice(0, 8);
const moduleDir = joinPath(import.meta.dirname, '..', '..', '.floe', `telemetry-it-${run}`);
const jobName = `tel-${run}`;
const savedEnv = { ...process.env };
let plan: PhysicalPlan;
let provisioned: ProvisionedAwsJob;
let store: DynamoDbCoordinatorStore;
let outDir: string;

/** A Lambda context as the runtime passes it. */
function lambdaContext(functionName: string, awsRequestId: string): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:123456789012:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: '2026/01/01/[$LATEST]0',
    getRemainingTimeInMillis: () => 60_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/**
 * Runs `invoke` with stdout and stderr captured (Powertools writes WARN and ERROR lines to stderr; Lambda ships both);
 * answers its result and every line it printed, parsed (a line that is not JSON fails the test).
 */
async function captured<T>(invoke: () => Promise<T>): Promise<{ result: T; logs: Line[]; emf: Emf[] }> {
  const chunks: string[] = [];
  const capture = (chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  };
  const spies = [vi.spyOn(process.stdout, 'write').mockImplementation(capture), vi.spyOn(process.stderr, 'write').mockImplementation(capture)];
  let result: T;
  try {
    result = await invoke();
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
  const lines = chunks
    .join('')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Line);
  return { result, logs: lines.filter((l) => !('_aws' in l)), emf: lines.filter((l): l is Emf => '_aws' in l) };
}

/** Imports a handler module as a new container would: its own logger, metrics, clients and executors. */
async function freshHandler(module: 'operator' | 'coordinator', env: Record<string, string>): Promise<Handler> {
  Object.assign(process.env, env);
  vi.resetModules();
  const m = (await import(module === 'operator' ? '../../functions/operator.js' : '../../functions/coordinator.js')) as { handler: Handler };
  return m.handler;
}

/** One SQS record of a FIFO queue as Lambda delivers it. */
function fifoRecord(messageId: string, body: string, group: string): SqsRecord {
  return {
    messageId,
    receiptHandle: messageId,
    body,
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 'x', ApproximateFirstReceiveTimestamp: '0', MessageGroupId: group },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:test.fifo',
    awsRegion: 'us-east-1',
  };
}

/** The EMF line with exactly these dimensions. */
function emfWith(emf: readonly Emf[], dimensions: string[]): Emf[] {
  return emf.filter((e) => JSON.stringify(e._aws.CloudWatchMetrics[0]!.Dimensions) === JSON.stringify([dimensions]));
}

/** What CloudWatch's Sum statistic would give for `name` over these EMF lines (a value may be an array of samples). */
function sum(emf: readonly Emf[], name: string, where: (e: Emf) => boolean = () => true): number {
  return emf.filter(where).reduce((n, e) => n + [e[name] ?? []].flat().reduce((a: number, v) => a + (v as number), 0), 0);
}

const environment = (): Record<string, string> => ({
  FLOE_JOB_MODULE: joinPath(moduleDir, 'job.ts'),
  FLOE_JOB_ARGS: JSON.stringify([String(RECORDS), outDir]),
  FLOE_JOB: jobName,
  FLOE_PLAN_FINGERPRINT: plan.fingerprint,
  FLOE_CHECKPOINT_OPTIONS: JSON.stringify(resolveCheckpointOptions({ dir: provisioned.resources.checkpointRoot, interval: 0 })),
  FLOE_SAVEPOINT_DIR: provisioned.resources.savepointRoot!,
  FLOE_COORDINATOR_TABLE: provisioned.resources.coordinatorTable,
  FLOE_STATE_MACHINE_ARN: provisioned.resources.stateMachineArn,
  FLOE_VERTEX_QUEUE_URLS: JSON.stringify(provisioned.resources.queueUrls),
  FLOE_STATE_TABLE: provisioned.resources.stateTable,
  POWERTOOLS_SERVICE_NAME: SERVICE,
  POWERTOOLS_METRICS_NAMESPACE: NAMESPACE,
  POWERTOOLS_LOG_LEVEL: 'INFO',
  // Lambda sets this; Powertools reports a cold start only for on-demand environments.
  AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
});

beforeAll(async () => {
  // Given a job module on disk: generator (30 records) → keyBy → running count per key → files sink, two vertices.
  outDir = await scratch.dir('floe-telemetry-out-');
  await mkdir(moduleDir, { recursive: true });
  await writeFile(
    joinPath(moduleDir, 'job.ts'),
    [
      `import { Job, valueState } from '../../lib/index.js';`,
      `import { generator } from '../../lib/connectors/generator.js';`,
      `import { filesSink } from '../../lib/connectors/files-sink.js';`,
      `export default (args: readonly string[]) => {`,
      `  const job = new Job(${JSON.stringify(jobName)}, { parallelism: 1 });`,
      `  job.source(generator({ count: Number(args[0]), generate: (i) => ({ i, key: 'k' + (i % 5) }) }), { uid: 'events' }).keyBy((e) => e.key)`,
      `    .process({`,
      `      state: { n: valueState<number>() },`,
      `      processElement(e, ctx, out) { const n = (ctx.state.n.value() ?? 0) + 1; ctx.state.n.update(n); out.collect(e.key + ':' + n); },`,
      `    }, { uid: 'count' }).sinkTo(filesSink<string>({ dir: args[1]! }), { uid: 'out' });`,
      `  return job;`,
      `};`,
    ].join('\n'),
  );
  plan = buildPlan(await loadJob(joinPath(moduleDir, 'job.ts'), [String(RECORDS), outDir]));
  // And its queues, tables, bucket and coordinator state machine on the emulator, and its job row.
  const base = await provisionAwsJob({ plan, clients });
  const definition = coordinatorStateMachineDefinition({ job: jobName, tableName: base.resources.coordinatorTable, tasksQueueUrl: base.resources.tasksQueueUrl });
  const { stateMachineArn } = await clients.sfn.send(new CreateStateMachineCommand({ name: `floe-${jobName}`, definition: JSON.stringify(definition), roleArn: ROLE, type: 'STANDARD' }));
  provisioned = { ...base, resources: { ...base.resources, stateMachineArn: stateMachineArn! } };
  store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: base.resources.coordinatorTable });
  const tasks = new CoordinatorHost({ clock: systemClock,
    plan,
    store,
    storage: new S3CheckpointStorage({ client: clients.s3 }),
    sender: new SqsQueueSender(clients.sqs, (v) => base.resources.queueUrls[v]!),
    log: () => undefined,
  });
  await tasks.initialize({ options: resolveCheckpointOptions({ dir: base.resources.checkpointRoot, interval: 0 }), jobId: randomUUID(), savepointDir: base.resources.savepointRoot! });
});

afterAll(async () => {
  for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
  Object.assign(process.env, savedEnv);
  await provisioned?.destroy();
  await rm(moduleDir, { recursive: true, force: true });
  await scratch.cleanup();
});

describe('Lambda handlers log and measure through Powertools', () => {
  it('operator: Powertools JSON logs with job, vertex, generation and context; EMF metrics per vertex and per job that add up to the job', async () => {
    const vertexOf = (uid: string) => plan.vertices.find((v) => v.operators.some((o) => o.uid === uid))!.id;
    const [events, count] = [vertexOf('events'), vertexOf('count')];
    expect(events).not.toBe(count);
    const { resources } = provisioned;
    const handlers: Record<string, Handler> = {};
    handlers[events] = await freshHandler('operator', { ...environment(), FLOE_VERTEX: events, FLOE_DEAD_LETTER_QUEUE_URL: resources.dlqUrls[events]! });

    // When the source's container takes a known batch: wake 0 of subtask 0 and a malformed message, both in group 0
    const batch = { Records: [fifoRecord('wake-0', encodeWake({ gen: 1, subtask: 0, n: 0 }), '0'), fifoRecord('junk-1', '{"not":"an envelope"}', '0')] };
    const first = await captured(() => handlers[events]!(batch, lambdaContext('floe-events', 'req-1')));

    // Then nothing comes back: the wake's step read every record, and the junk went to the dead-letter queue with its reason
    expect(first.result).toEqual({ batchItemFailures: [] });
    const dead = await clients.sqs.send(new ReceiveMessageCommand({ QueueUrl: resources.dlqUrls[events]!, MessageAttributeNames: ['All'], WaitTimeSeconds: 1 }));
    expect(dead.Messages?.map((m) => [m.Body, m.MessageAttributes?.[DeadLetterAttr.Code]?.StringValue])).toEqual([['{"not":"an envelope"}', ErrorCode.MalformedMessage]]);

    // And every log line is Powertools JSON with the service, the job's keys and the Lambda context
    expect(first.logs.length).toBeGreaterThanOrEqual(2);
    for (const line of first.logs) {
      expect(line).toMatchObject({
        service: SERVICE,
        job: jobName,
        vertex: events,
        function_name: 'floe-events',
        function_request_id: 'req-1',
        cold_start: true,
        level: expect.stringMatching(/^(INFO|WARN|ERROR)$/),
        message: expect.any(String),
        timestamp: expect.any(String),
      });
    }
    expect(first.logs.find((l) => l.level === 'WARN' && String(l.message).includes('dead-letter queue'))).toMatchObject({ messageId: 'junk-1', code: ErrorCode.MalformedMessage });
    expect(first.logs.find((l) => l.message === 'step')).toMatchObject({ level: 'INFO', generation: 1, recordsIn: RECORDS, recordsOut: RECORDS });

    // And one EMF object per dimension set: the vertex's batch in numbers, and the final checkpoint its source's end triggered
    expect(first.emf).toHaveLength(2);
    const [vertexEmf] = emfWith(first.emf, ['job', 'vertex']);
    expect(vertexEmf).toMatchObject({
      job: jobName,
      vertex: events,
      [OperatorMetric.MessagesIn]: 2,
      [OperatorMetric.BatchItemFailures]: 0,
      [OperatorMetric.Steps]: 1,
      [OperatorMetric.StepFailures]: 0,
      [OperatorMetric.NumRecordsIn]: RECORDS,
      [OperatorMetric.NumRecordsOut]: RECORDS,
      [OperatorMetric.DeadLetteredMessages]: 1,
      [OperatorMetric.StepDuration]: expect.any(Number),
    });
    expect(vertexEmf!._aws.CloudWatchMetrics[0]!.Namespace).toBe(NAMESPACE);
    expect(vertexEmf!._aws.CloudWatchMetrics[0]!.Metrics).toEqual(
      expect.arrayContaining([
        { Name: OperatorMetric.NumRecordsIn, Unit: 'Count' },
        { Name: OperatorMetric.StepDuration, Unit: 'Milliseconds' },
      ]),
    );
    const [jobEmf] = emfWith(first.emf, ['job']);
    expect(jobEmf).toMatchObject({ job: jobName, [CheckpointMetric.Triggered]: 1 });
    expect(jobEmf).not.toHaveProperty('vertex');

    // When both vertices' containers take what their queues hold until the final checkpoint completes the job
    handlers[count] = await freshHandler('operator', { ...environment(), FLOE_VERTEX: count, FLOE_DEAD_LETTER_QUEUE_URL: resources.dlqUrls[count]! });
    const later: { vertex: string; logs: Line[]; emf: Emf[] }[] = [];
    const deadline = Date.now() + 60_000;
    let request = 1;
    while ((await store.require(jobName)).jobStatus?.status !== JobStatus.Finished) {
      if (Date.now() > deadline) throw new Error('the job did not finish');
      let any = false;
      for (const vertex of [events, count]) {
        const url = resources.queueUrls[vertex]!;
        const messages = await receiveMessages(clients, url);
        if (messages.length === 0) continue;
        any = true;
        const out = await captured(() => handlers[vertex]!(sqsEventOf(messages), lambdaContext(`floe-${vertex}`, `req-${++request}`)));
        expect(out.result).toEqual({ batchItemFailures: [] });
        await deleteMessages(clients, url, messages);
        later.push({ vertex, logs: out.logs, emf: out.emf });
      }
      if (!any) await sleep(100);
    }

    // Then the output is every record once, and the metrics add up to the same job
    const oracle = Array.from({ length: RECORDS }, (_, i) => `k${i % 5}:${Math.floor(i / 5) + 1}`);
    expect(sorted(await readCommittedLines(outDir))).toEqual(sorted(oracle));
    const all = [...first.emf, ...later.flatMap((l) => l.emf)];
    const ofVertex = (v: string) => (e: Emf) => e.vertex === v;
    expect(sum(all, OperatorMetric.NumRecordsOut, ofVertex(events))).toBe(RECORDS);
    expect(sum(all, OperatorMetric.NumRecordsIn, ofVertex(count))).toBe(RECORDS);
    expect(sum(all, OperatorMetric.BatchItemFailures)).toBe(0);
    // One barrier and one accepted ack per subtask (events:0 and count:0) for the one checkpoint
    for (const v of [events, count]) {
      expect(sum(all, OperatorMetric.CheckpointBarriers, ofVertex(v))).toBe(1);
      expect(sum(all, OperatorMetric.CheckpointAcks, ofVertex(v))).toBe(1);
    }
    expect(sum(all, OperatorMetric.CheckpointAcksRejected)).toBe(0);
    // The checkpoint completed once, with the duration and sizes the job row's history records
    const jobLines = emfWith(all, ['job']);
    expect(sum(jobLines, CheckpointMetric.Triggered)).toBe(1);
    expect(sum(jobLines, CheckpointMetric.Completed)).toBe(1);
    expect(sum(jobLines, CheckpointMetric.Failed)).toBe(0);
    const [record] = (await store.require(jobName)).state.history;
    expect(record).toMatchObject({ id: 1, status: 'COMPLETED' });
    const completed = jobLines.find((e) => e[CheckpointMetric.Completed] !== undefined)!;
    expect(completed).toMatchObject({
      [CheckpointMetric.Duration]: record!.finishedAt! - record!.triggeredAt,
      [CheckpointMetric.Size]: record!.stateSize,
      [CheckpointMetric.FullSize]: record!.fullSize,
    });
    expect(record!.stateSize).toBeGreaterThan(0);
    // And a warm container's logs say so, with the generation the job row holds
    const warm = later.find((l) => l.vertex === events)!;
    expect(warm.logs.length).toBeGreaterThan(0);
    for (const line of warm.logs) expect(line).toMatchObject({ service: SERVICE, job: jobName, vertex: events, cold_start: false, generation: 1 });
  });

  it('coordinator: Powertools batch reports only the malformed message; task counts as one EMF object with the job dimension', async () => {
    // Given the coordinator's container, and a job whose row is FINISHED (the first test ran it to its end) or RUNNING
    const handler = await freshHandler('coordinator', environment());

    // When a batch of a tick and a malformed message arrives
    const record = (messageId: string, body: string) => ({ ...fifoRecord(messageId, body, ''), attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 'x', ApproximateFirstReceiveTimestamp: '0' } });
    const out = await captured(() => handler({ Records: [record('tick-1', JSON.stringify({ v: 1, type: 'tick', job: jobName })), record('junk-1', '{"v":1,"type":"explode"}')] }, lambdaContext('floe-coordinator', 'req-c')));

    // Then only the malformed message comes back
    expect(out.result).toEqual({ batchItemFailures: [{ itemIdentifier: 'junk-1' }] });
    // And the logs are Powertools JSON with the job, its generation and the context
    const junk = out.logs.find((l) => l.messageId === 'junk-1');
    expect(junk).toMatchObject({ level: 'ERROR', service: SERVICE, job: jobName, generation: 1, function_request_id: 'req-c', cold_start: true });
    for (const line of out.logs) expect(line).toMatchObject({ service: SERVICE, job: jobName, function_name: 'floe-coordinator' });
    // And one EMF object, dimension job: two tasks, one failed, one batch item failure
    expect(out.emf).toHaveLength(1);
    expect(out.emf[0]!._aws.CloudWatchMetrics[0]).toMatchObject({ Namespace: NAMESPACE, Dimensions: [['job']] });
    expect(out.emf[0]).toMatchObject({ job: jobName, [CoordinatorMetric.Tasks]: 2, [CoordinatorMetric.TaskFailures]: 1, [CoordinatorMetric.BatchItemFailures]: 1 });
  });
});
