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
 * `FLOE_STATE_MACHINE_ARN`, `FLOE_VERTEX_QUEUE_URLS` (the source vertices' queues). The job row is created on first
 * use when the job has none.
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
import { ErrorCode, FloeError, ValidationError } from '../lib/core/errors.js';
import { resolveCheckpointOptions, type ResolvedCheckpointOptions } from '../lib/core/options.js';
import { loadJob } from '../lib/embedded/load-job.js';
import { buildPlan } from '../lib/graph/plan.js';

/** The environment variables this handler reads (the values of infra/handler-contract.ts `FloeEnv`). */
export const CoordinatorEnv = {
  JobModule: 'FLOE_JOB_MODULE',
  JobName: 'FLOE_JOB',
  JobArgs: 'FLOE_JOB_ARGS',
  Parallelism: 'FLOE_PARALLELISM',
  PlanFingerprint: 'FLOE_PLAN_FINGERPRINT',
  CheckpointOptions: 'FLOE_CHECKPOINT_OPTIONS',
  SavepointDir: 'FLOE_SAVEPOINT_DIR',
  CoordinatorTable: 'FLOE_COORDINATOR_TABLE',
  StateMachineArn: 'FLOE_STATE_MACHINE_ARN',
  VertexQueueUrls: 'FLOE_VERTEX_QUEUE_URLS',
} as const;

interface CoordinatorConfig {
  readonly jobModule: string;
  readonly jobName: string;
  readonly jobArgs: string[];
  readonly parallelism: number | undefined;
  readonly planFingerprint: string | undefined;
  readonly checkpoint: ResolvedCheckpointOptions;
  readonly savepointDir: string;
  readonly tableName: string;
  readonly stateMachineArn: string;
  readonly queueUrls: Record<string, string>;
}

/** Reads the handler's configuration, reporting every missing or malformed variable at once. */
function readEnvironment(env: NodeJS.ProcessEnv): CoordinatorConfig {
  const E = CoordinatorEnv;
  const problems: string[] = [];
  const required = (name: string): string => {
    const value = env[name];
    if (!value) problems.push(`${name} is required`);
    return value ?? '';
  };
  const json = (name: string, shape: string, valid: (v: unknown) => boolean): unknown => {
    const text = required(name);
    if (!text) return undefined;
    try {
      const value: unknown = JSON.parse(text);
      if (valid(value)) return value;
    } catch {
      // reported below
    }
    problems.push(`${name} must be JSON: ${shape}`);
    return undefined;
  };
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const jobArgs = env[E.JobArgs] ? json(E.JobArgs, 'an array of strings', (v) => Array.isArray(v) && v.every((a) => typeof a === 'string')) : [];
  const parallelism = env[E.Parallelism] ? Number(env[E.Parallelism]) : undefined;
  if (parallelism !== undefined && !(Number.isInteger(parallelism) && parallelism > 0)) problems.push(`${E.Parallelism} must be a positive integer`);
  const queueUrls = json(E.VertexQueueUrls, 'an object of vertex id → queue URL', (v) => isObject(v) && Object.values(v).every((u) => typeof u === 'string'));
  const checkpointJson = json(E.CheckpointOptions, 'the resolved checkpoint options', isObject);
  let checkpoint: ResolvedCheckpointOptions | undefined;
  if (checkpointJson !== undefined) {
    try {
      checkpoint = resolveCheckpointOptions(checkpointJson as Record<string, never>);
    } catch (e) {
      problems.push(`${E.CheckpointOptions}: ${(e as Error).message}`);
    }
  }
  const config = {
    jobModule: required(E.JobModule),
    jobName: required(E.JobName),
    jobArgs: (jobArgs ?? []) as string[],
    parallelism,
    planFingerprint: env[E.PlanFingerprint] || undefined,
    savepointDir: required(E.SavepointDir),
    tableName: required(E.CoordinatorTable),
    stateMachineArn: required(E.StateMachineArn),
    queueUrls: (queueUrls ?? {}) as Record<string, string>,
  };
  if (problems.length > 0 || checkpoint === undefined) throw new ValidationError(ErrorCode.InvalidOptions, 'coordinator function environment', problems);
  return { ...config, checkpoint };
}

async function build(): Promise<SqsBatchHandler> {
  const config = readEnvironment(process.env);
  const plan = buildPlan(await loadJob(config.jobModule, config.jobArgs), { parallelism: config.parallelism });
  const problems: string[] = [];
  if (plan.job !== config.jobName) problems.push(`the job module builds job '${plan.job}', but this function was deployed for '${config.jobName}'`);
  if (config.planFingerprint !== undefined && plan.fingerprint !== config.planFingerprint) {
    problems.push(`the job module builds plan ${plan.fingerprint}, but plan ${config.planFingerprint} was deployed; deploy again`);
  }
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidJob, 'coordinator function', problems);

  const clients = awsClients();
  const queueUrlOf = (vertex: string): string => {
    const url = config.queueUrls[vertex];
    if (!url) throw new FloeError(ErrorCode.InvalidOptions, `${CoordinatorEnv.VertexQueueUrls} has no queue for vertex '${vertex}'`);
    return url;
  };
  const tasks = new CoordinatorTasks({
    plan,
    store: new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: config.tableName }),
    storage: new S3CheckpointStorage({ client: clients.s3 }),
    sender: new SqsQueueSender(clients.sqs, queueUrlOf),
    executions: new StepFunctionsCheckpointExecutions({ client: clients.sfn, stateMachineArn: config.stateMachineArn, job: plan.job }),
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
