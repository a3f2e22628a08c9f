/**
 * Lambda handler of one vertex's SQS FIFO queue (event source with `ReportBatchItemFailures`): runs the vertex's
 * subtasks over each batch. It reads its configuration, builds the handler once per container and hands it every
 * batch; the work is in lib/hosts/lambda/operator-handler.ts.
 *
 * Bundling follows lib/hosts/lambda/handler-contract.ts: the bundle re-exports this module's `handler` and the job file's
 * default export, and `FLOE_JOB_MODULE` points at the bundle, so the job loads as `floe run` loads it. The rest comes
 * from the environment (names as in `FloeEnv` there): `FLOE_JOB_ARGS`, `FLOE_PARALLELISM`, `FLOE_JOB`,
 * `FLOE_PLAN_FINGERPRINT`, `FLOE_CHECKPOINT_OPTIONS` (its `dir` is the checkpoint root), `FLOE_SAVEPOINT_DIR`,
 * `FLOE_COORDINATOR_TABLE`, `FLOE_STATE_MACHINE_ARN`, `FLOE_VERTEX_QUEUE_URLS` (the queues this vertex sends to: its
 * outputs and every source), `FLOE_STATE_TABLE` and `FLOE_VERTEX`. `FLOE_DEAD_LETTER_QUEUE_URL` (the vertex queue's
 * own dead-letter queue; without it a malformed message is reported as failed and reaches the dead-letter queue by
 * the redrive policy, without its reason.
 *
 * Logs go through a Powertools `Logger` (JSON on stdout, keys `job`, `vertex`, the `generation` once a step ran, and
 * the Lambda context); metrics through Powertools `Metrics`, published as CloudWatch EMF once per invocation with
 * dimensions `job` and `vertex` (the names are in functions/metrics.ts `OperatorMetric`), and the job's checkpoint
 * metrics that this vertex's acks complete with dimension `job` (`CheckpointMetric`). See functions/telemetry.ts.
 *
 * The batch is not handed to Powertools' `SqsFifoPartialProcessorAsync`: that processor calls a handler once per
 * record, in order, one record at a time across all groups, and with `skipGroupOnError` fails the rest of a group
 * after a failed record. Floe runs ONE task step per message group (subtask) over all of the group's envelopes, and
 * the groups concurrently: that is what keeps DynamoDB commits and acks per batch rather than per message, and lets
 * several wakes of a source collapse into one step. A per-record handler could only express that by buffering
 * records and stepping on the last one of a group, which would still report the group's failures from one record.
 * So lib/hosts/lambda/operator-handler.ts slices the batch by `MessageGroupId` itself and answers the partial batch response
 * (a failed step returns every message of its group that was not dead-lettered, in order; other groups go on, as
 * they would with `skipGroupOnError`).
 */
import type { Context } from 'aws-lambda';
import type { SqsBatchResponse, SqsEvent } from '../lib/adapters/aws/sqs-poller.js';
import { createOperatorHandler, type AwsJobResources } from '../lib/hosts/lambda/operator-handler.js';
import { ErrorCode, FloeError } from '../lib/core/errors.js';
import { FloeEnv } from '../lib/hosts/lambda/handler-contract.js';
import { idleSourceMaxDelayMs, loadDeployedPlan, readEnvironment } from './handler-environment.js';
import { OPERATOR_ALWAYS, operatorMetrics } from './metrics.js';
import { createTelemetry, withInvocation, type HandlerTelemetry } from './telemetry.js';

type Handler = (event: SqsEvent) => Promise<SqsBatchResponse>;

async function build(telemetry: HandlerTelemetry): Promise<Handler> {
  const config = readEnvironment(process.env, 'operator function', (required) => ({
    stateTable: required(FloeEnv.StateTable),
    vertex: required(FloeEnv.Vertex),
    deadLetterQueueUrl: process.env[FloeEnv.DeadLetterQueueUrl] || undefined,
    maxReceiveCount: process.env[FloeEnv.MaxReceiveCount] ? Number(process.env[FloeEnv.MaxReceiveCount]) : undefined,
    idleSourceMaxDelayMs: idleSourceMaxDelayMs(process.env, 'operator function'),
  }));
  if (config.maxReceiveCount !== undefined && !(Number.isInteger(config.maxReceiveCount) && config.maxReceiveCount >= 1)) {
    throw new FloeError(ErrorCode.InvalidOptions, `operator function: ${FloeEnv.MaxReceiveCount} must be a positive integer, got '${process.env[FloeEnv.MaxReceiveCount]}'`);
  }
  const plan = await loadDeployedPlan(config, 'operator function', (p, problems) => {
    if (!p.vertices.some((v) => v.id === config.vertex)) problems.push(`the plan of job '${p.job}' has no vertex '${config.vertex}'`);
  });

  const resources: AwsJobResources = {
    job: plan.job,
    stateTable: config.stateTable,
    coordinatorTable: config.coordinatorTable,
    checkpointRoot: config.checkpoint.dir,
    savepointRoot: config.savepointDir,
    queueUrls: config.queueUrls,
    dlqUrls: config.deadLetterQueueUrl ? { [config.vertex]: config.deadLetterQueueUrl } : {},
    // Acks are applied to the job row, whose effects need no tasks queue; timer wakes, an idle source's backed-off
    // wakes and reports of work while the job is quiet go there.
    tasksQueueUrl: process.env[FloeEnv.CoordinatorQueueUrl] ?? '',
    stateMachineArn: config.stateMachineArn,
  };
  return createOperatorHandler({
    plan,
    vertex: config.vertex,
    resources,
    checkpoint: config.checkpoint,
    ...(config.maxReceiveCount === undefined ? {} : { maxReceiveCount: config.maxReceiveCount }),
    ...(config.idleSourceMaxDelayMs === undefined ? {} : { sourceIdleMaxDelayMs: config.idleSourceMaxDelayMs }),
    log: telemetry.log,
    observer: operatorMetrics(telemetry),
  });
}

let built: Promise<Handler> | undefined;
let telemetry: HandlerTelemetry | undefined;

/** The Lambda entry point; the job, clients, ports and subtask executors are built on a container's first batch and reused. */
export async function handler(event: unknown, context?: Context): Promise<SqsBatchResponse> {
  const t = (telemetry ??= createTelemetry({ env: process.env, job: process.env[FloeEnv.JobName] ?? '', vertex: process.env[FloeEnv.Vertex] ?? '', always: OPERATOR_ALWAYS }));
  return withInvocation(t, context, async () => {
    if (typeof event !== 'object' || event === null || !Array.isArray((event as { Records?: unknown }).Records)) {
      throw new FloeError(ErrorCode.MalformedMessage, 'the operator function expects an SQS event with Records');
    }
    // A failed build is not kept: the batch comes back, and the next invocation builds again.
    built ??= build(t).catch((e: unknown) => {
      built = undefined;
      t.logger.error(`operator function cannot start: ${(e as Error).message}`, e as Error);
      throw e;
    });
    return (await built)(event as SqsEvent);
  });
}
