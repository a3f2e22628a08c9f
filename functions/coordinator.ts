/**
 * Lambda handler of the coordinator-tasks queue (SQS event source with `ReportBatchItemFailures`): runs the
 * checkpoint state machine's Trigger, Abort and Complete tasks and the schedule's `tick`s, and answers the state
 * machine. It reads its configuration, builds the ports and hands each batch to the shared task handler; the work
 * is in lib/adapters/aws/coordinator-*.
 *
 * Bundling follows lib/hosts/lambda/handler-contract.ts: the bundle re-exports this module's `handler` and the job file's
 * default export, and `FLOE_JOB_MODULE` points at the bundle, so the job loads as `floe run` loads it. The rest comes
 * from the environment (names as in `FloeEnv` there): `FLOE_JOB_ARGS`, `FLOE_PARALLELISM`, `FLOE_JOB`,
 * `FLOE_PLAN_FINGERPRINT`, `FLOE_CHECKPOINT_OPTIONS`, `FLOE_SAVEPOINT_DIR`, `FLOE_COORDINATOR_TABLE`,
 * `FLOE_STATE_MACHINE_ARN`, `FLOE_VERTEX_QUEUE_URLS` (the queues of the source vertices and of the vertices with
 * processing-time timers), `FLOE_STATE_TABLE` (read for those vertices' control rows; without it the watchdog of
 * stalled source chains and overdue timers is off), `FLOE_COORDINATOR_QUEUE_URL` (its own queue, for `timerWake`
 * tasks not yet due; without it timer wakes come back and reach the dead-letter queue). The job row is created on first
 * use when the job has none, and the first tick of a generation sends its sources their first wakes: a deployed job
 * starts by itself.
 *
 * The queue is a standard one and its records are independent, so the batch goes through Powertools'
 * `BatchProcessor` (`processPartialResponse`, records in parallel): a record whose task or answer failed, or that is
 * malformed, is reported in `batchItemFailures`; a batch in which every record failed is answered the same way
 * (`throwOnFullBatchFailure: false`), as emulator mode's handler answers it.
 *
 * Logs go through a Powertools `Logger` (JSON on stdout, keys `job`, the job's `generation`, and the Lambda context);
 * metrics through Powertools `Metrics`, published as CloudWatch EMF once per invocation with dimension `job`: the
 * task counts (functions/metrics.ts `CoordinatorMetric`) and the checkpoint outcomes of the effects it ran
 * (`CheckpointMetric`). See functions/telemetry.ts.
 */
import { randomBytes } from 'node:crypto';
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context } from 'aws-lambda';
import { awsClients } from '../lib/adapters/aws/clients.js';
import { StepFunctionsCheckpointExecutions } from '../lib/adapters/aws/step-functions-executions.js';
import { DynamoDbCoordinatorStore } from '../lib/adapters/aws/dynamodb-coordinator-store.js';
import { createCoordinatorTaskRecordHandler } from '../lib/hosts/lambda/coordinator-task-handler.js';
import { CoordinatorHost } from '../lib/coordination/host.js';
import { QUIET_AFTER_MS } from '../lib/coordination/generation.js';
import { S3CheckpointStorage } from '../lib/adapters/aws/s3-checkpoint-storage.js';
import type { SqsBatchResponse, SqsEvent, SqsRecord } from '../lib/adapters/aws/sqs-poller.js';
import { SqsQueueSender } from '../lib/adapters/aws/sqs-queue-sender.js';
import { DynamoDbStateStore } from '../lib/adapters/aws/dynamodb-state-store.js';
import { SourceChains } from '../lib/hosts/lambda/source-chains.js';
import { WakeForwarder } from '../lib/hosts/lambda/wake-forwarder.js';
import { ErrorCode, FloeError } from '../lib/core/errors.js';
import { FloeEnv } from '../lib/hosts/lambda/handler-contract.js';
import { idleSourceMaxDelayMs, loadDeployedJob, readEnvironment } from './handler-environment.js';
import { DEFAULT_RESTART_OPTIONS, resolveRestartOptions } from '../lib/core/options.js';
import { SqsTickRequester } from '../lib/hosts/lambda/tick-requester.js';
import { COORDINATOR_ALWAYS, CoordinatorMetric, coordinatorMetrics } from './metrics.js';
import { createTelemetry, withInvocation, type HandlerTelemetry } from './telemetry.js';
import { systemClock } from '../lib/adapters/local/system-clock.js';

type RecordHandler = (record: SqsRecord) => Promise<void>;

async function build(telemetry: HandlerTelemetry): Promise<RecordHandler> {
  const config = readEnvironment(process.env, 'coordinator function', () => ({
    stateTable: process.env[FloeEnv.StateTable] || undefined,
    coordinatorQueueUrl: process.env[FloeEnv.CoordinatorQueueUrl] || undefined,
    idleSourceMaxDelayMs: idleSourceMaxDelayMs(process.env, 'coordinator function'),
  }));
  const { job, plan } = await loadDeployedJob(config, 'coordinator function');

  const clients = awsClients();
  const queueUrlOf = (vertex: string): string => {
    const url = config.queueUrls[vertex];
    if (!url) throw new FloeError(ErrorCode.InvalidOptions, `${FloeEnv.VertexQueueUrls} has no queue for vertex '${vertex}'`);
    return url;
  };
  const observer = coordinatorMetrics(telemetry);
  const state = config.stateTable === undefined ? undefined : new DynamoDbStateStore({ tableName: config.stateTable, job: plan.job, client: clients.dynamodb });
  const tasks = new CoordinatorHost({ clock: systemClock,
    plan,
    store: new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: config.coordinatorTable }),
    storage: new S3CheckpointStorage({ client: clients.s3 }),
    sender: new SqsQueueSender(clients.sqs, queueUrlOf),
    executions: new StepFunctionsCheckpointExecutions({ client: clients.sfn, stateMachineArn: config.stateMachineArn, job: plan.job }),
    sources: new SourceChains({
      plan,
      queueUrls: config.queueUrls,
      sqs: clients.sqs,
      ...(state === undefined ? {} : { state }),
      ...(config.idleSourceMaxDelayMs === undefined ? {} : { idleMaxDelayMs: config.idleSourceMaxDelayMs }),
      log: telemetry.log,
    }),
    log: telemetry.log,
    observer,
    // A failed job restarts by its restart strategy, as it does embedded; without the state table it stays FAILING for `floe start`.
    ...(state === undefined
      ? {}
      : {
          restarts: {
            restart: resolveRestartOptions(job.options.restart ?? DEFAULT_RESTART_OPTIONS),
            state,
            ...(config.coordinatorQueueUrl === undefined ? {} : { ticks: new SqsTickRequester(clients.sqs, config.coordinatorQueueUrl, plan.job) }),
          },
        }),
  });
  // A job's first task creates its row; later ones find it (and keep its job id, generation and history).
  const row = await tasks.initialize({ options: config.checkpoint, jobId: randomBytes(16).toString('hex'), savepointDir: config.savepointDir, quietAfterMs: QUIET_AFTER_MS, ...(config.functionTimeoutMs === undefined ? {} : { functionTimeoutMs: config.functionTimeoutMs }) });
  telemetry.logger.appendPersistentKeys({ generation: row.runtime.generation });
  // Timer wakes of vertices with processing-time timers come through the tasks queue, delayed; forwarded when due.
  const wakes =
    config.coordinatorQueueUrl === undefined ? undefined : new WakeForwarder({ job: plan.job, sqs: clients.sqs, queueUrls: config.queueUrls, tasksQueueUrl: config.coordinatorQueueUrl, clock: systemClock });
  return createCoordinatorTaskRecordHandler({ tasks, sfn: clients.sfn, log: telemetry.log, observer, ...(wakes ? { wakes } : {}) });
}

let built: Promise<RecordHandler> | undefined;
let telemetry: HandlerTelemetry | undefined;
const processor = new BatchProcessor(EventType.SQS);

/** The Lambda entry point; the job, clients and ports are built on a container's first batch and reused. */
export async function handler(event: unknown, context?: Context): Promise<SqsBatchResponse> {
  const t = (telemetry ??= createTelemetry({ env: process.env, job: process.env[FloeEnv.JobName] ?? '', always: COORDINATOR_ALWAYS }));
  return withInvocation(t, context, async () => {
    if (typeof event !== 'object' || event === null || !Array.isArray((event as { Records?: unknown }).Records)) {
      throw new FloeError(ErrorCode.MalformedMessage, 'the coordinator function expects an SQS event with Records');
    }
    // A failed build is not kept: the batch comes back, and the next invocation builds again.
    built ??= build(t).catch((e: unknown) => {
      built = undefined;
      t.logger.error(`coordinator function cannot start: ${(e as Error).message}`, e as Error);
      throw e;
    });
    const handle = await built;
    const { Records } = event as SqsEvent;
    const response = await processPartialResponse({ Records: [...Records] }, handle, processor, {
      throwOnFullBatchFailure: false,
      ...(context ? { context } : {}),
    });
    t.metrics.count(CoordinatorMetric.BatchItemFailures, response.batchItemFailures.length);
    return response;
  });
}
