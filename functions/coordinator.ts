/**
 * Lambda handler of the coordinator-tasks queue (SQS event source with `ReportBatchItemFailures`): runs the
 * checkpoint state machine's Trigger, Abort and Complete tasks and the schedule's `tick`s, and answers the state
 * machine. It reads its configuration, builds the ports and hands each batch to the shared task handler; the work
 * is in lib/adapters/aws/coordinator-*.
 *
 * Bundling follows infra/handler-contract.ts: the bundle re-exports this module's `handler` and the job file's
 * default export, and `FLOE_JOB_MODULE` points at the bundle, so the job loads as `floe run` loads it. The rest comes
 * from the environment (names as in `FloeEnv` there): `FLOE_JOB_ARGS`, `FLOE_PARALLELISM`, `FLOE_JOB`,
 * `FLOE_PLAN_FINGERPRINT`, `FLOE_CHECKPOINT_OPTIONS`, `FLOE_SAVEPOINT_DIR`, `FLOE_COORDINATOR_TABLE`,
 * `FLOE_STATE_MACHINE_ARN`, `FLOE_VERTEX_QUEUE_URLS` (the source vertices' queues), `FLOE_STATE_TABLE` (read for the
 * sources' control rows; without it the watchdog of stalled source chains is off). The job row is created on first
 * use when the job has none, and the first tick of a generation sends its sources their first wakes: a deployed job
 * starts by itself.
 *
 * Logs are JSON lines on stdout, which Lambda ships to CloudWatch Logs as they are (Powertools is not a dependency).
 */
import { randomBytes } from 'node:crypto';
import { awsClients } from '../lib/adapters/aws/clients.js';
import { StepFunctionsCheckpointExecutions } from '../lib/adapters/aws/coordinator-executions.js';
import { DynamoDbCoordinatorStore } from '../lib/adapters/aws/coordinator-store.js';
import { createCoordinatorTaskHandler } from '../lib/adapters/aws/coordinator-task-handler.js';
import { CoordinatorTasks, jsonLineLog } from '../lib/adapters/aws/coordinator-tasks.js';
import { S3CheckpointStorage } from '../lib/adapters/aws/s3-checkpoint-storage.js';
import type { SqsBatchHandler, SqsBatchResponse, SqsEvent } from '../lib/adapters/aws/sqs-poller.js';
import { SqsQueueSender } from '../lib/adapters/aws/sqs-queue-sender.js';
import { DynamoDbStateStore } from '../lib/adapters/aws/dynamodb-state-store.js';
import { SourceChains } from '../lib/aws/source-chains.js';
import { ErrorCode, FloeError } from '../lib/core/errors.js';
import { FloeEnv } from '../infra/handler-contract.js';
import { loadDeployedPlan, readEnvironment } from './handler-environment.js';

async function build(): Promise<SqsBatchHandler> {
  const config = readEnvironment(process.env, 'coordinator function', () => ({ stateTable: process.env[FloeEnv.StateTable] || undefined }));
  const plan = await loadDeployedPlan(config, 'coordinator function');

  const clients = awsClients();
  const queueUrlOf = (vertex: string): string => {
    const url = config.queueUrls[vertex];
    if (!url) throw new FloeError(ErrorCode.InvalidOptions, `${FloeEnv.VertexQueueUrls} has no queue for vertex '${vertex}'`);
    return url;
  };
  const tasks = new CoordinatorTasks({
    plan,
    store: new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: config.coordinatorTable }),
    storage: new S3CheckpointStorage({ client: clients.s3 }),
    sender: new SqsQueueSender(clients.sqs, queueUrlOf),
    executions: new StepFunctionsCheckpointExecutions({ client: clients.sfn, stateMachineArn: config.stateMachineArn, job: plan.job }),
    sources: new SourceChains({
      plan,
      queueUrls: config.queueUrls,
      sqs: clients.sqs,
      ...(config.stateTable === undefined ? {} : { state: new DynamoDbStateStore({ tableName: config.stateTable, job: plan.job, client: clients.dynamodb }) }),
      log: jsonLineLog,
    }),
    log: jsonLineLog,
  });
  // A job's first task creates its row; later ones find it (and keep its job id, generation and history).
  await tasks.initialize({ options: config.checkpoint, jobId: randomBytes(16).toString('hex'), savepointDir: config.savepointDir });
  return createCoordinatorTaskHandler({ tasks, sfn: clients.sfn, log: jsonLineLog });
}

let built: Promise<SqsBatchHandler> | undefined;

/** The Lambda entry point; the job, clients and ports are built on a container's first batch and reused. */
export async function handler(event: unknown): Promise<SqsBatchResponse | void> {
  if (typeof event !== 'object' || event === null || !Array.isArray((event as { Records?: unknown }).Records)) {
    throw new FloeError(ErrorCode.MalformedMessage, 'the coordinator function expects an SQS event with Records');
  }
  // A failed build is not kept: the batch comes back, and the next invocation builds again.
  built ??= build().catch((e: unknown) => {
    built = undefined;
    jsonLineLog({ level: 'error', message: `coordinator function cannot start: ${(e as Error).message}` });
    throw e;
  });
  return (await built)(event as SqsEvent);
}
