/**
 * Lambda handler of one vertex's SQS FIFO queue (event source with `ReportBatchItemFailures`): runs the vertex's
 * subtasks over each batch. It reads its configuration, builds the handler once per container and hands it every
 * batch; the work is in lib/aws/operator-handler.ts.
 *
 * Bundling follows infra/handler-contract.ts: the bundle re-exports this module's `handler` and the job file's
 * default export, and `FLOE_JOB_MODULE` points at the bundle, so the job loads as `floe run` loads it. The rest comes
 * from the environment (names as in `FloeEnv` there): `FLOE_JOB_ARGS`, `FLOE_PARALLELISM`, `FLOE_JOB`,
 * `FLOE_PLAN_FINGERPRINT`, `FLOE_CHECKPOINT_OPTIONS` (its `dir` is the checkpoint root), `FLOE_SAVEPOINT_DIR`,
 * `FLOE_COORDINATOR_TABLE`, `FLOE_STATE_MACHINE_ARN`, `FLOE_VERTEX_QUEUE_URLS` (the queues this vertex sends to: its
 * outputs and every source), `FLOE_STATE_TABLE` and `FLOE_VERTEX`. `FLOE_DEAD_LETTER_QUEUE_URL` (the vertex queue's
 * own dead-letter queue) is not in the contract yet: without it a malformed message is reported as failed and
 * reaches the dead-letter queue by the redrive policy, without its reason.
 *
 * Logs are JSON lines on stdout, which Lambda ships to CloudWatch Logs as they are.
 */
import { jsonLineLog } from '../lib/adapters/aws/coordinator-tasks.js';
import type { SqsBatchResponse, SqsEvent } from '../lib/adapters/aws/sqs-poller.js';
import { createOperatorHandler, type AwsJobResources } from '../lib/aws/operator-handler.js';
import { ErrorCode, FloeError, ValidationError } from '../lib/core/errors.js';
import { resolveCheckpointOptions, type ResolvedCheckpointOptions } from '../lib/core/options.js';
import { loadJob } from '../lib/embedded/load-job.js';
import { buildPlan } from '../lib/graph/plan.js';

/** The environment variables this handler reads (the values of infra/handler-contract.ts `FloeEnv`, plus the dead-letter queue). */
export const OperatorEnv = {
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
  StateTable: 'FLOE_STATE_TABLE',
  Vertex: 'FLOE_VERTEX',
  /** Not in handler-contract.ts yet. */
  DeadLetterQueueUrl: 'FLOE_DEAD_LETTER_QUEUE_URL',
} as const;

interface OperatorConfig {
  readonly jobModule: string;
  readonly jobName: string;
  readonly jobArgs: string[];
  readonly parallelism: number | undefined;
  readonly planFingerprint: string | undefined;
  readonly checkpoint: ResolvedCheckpointOptions;
  readonly savepointDir: string;
  readonly coordinatorTable: string;
  readonly stateTable: string;
  readonly stateMachineArn: string;
  readonly vertex: string;
  readonly queueUrls: Record<string, string>;
  readonly deadLetterQueueUrl: string | undefined;
}

/** Reads the handler's configuration, reporting every missing or malformed variable at once. */
function readEnvironment(env: NodeJS.ProcessEnv): OperatorConfig {
  const E = OperatorEnv;
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
    coordinatorTable: required(E.CoordinatorTable),
    stateTable: required(E.StateTable),
    stateMachineArn: required(E.StateMachineArn),
    vertex: required(E.Vertex),
    queueUrls: (queueUrls ?? {}) as Record<string, string>,
    deadLetterQueueUrl: env[E.DeadLetterQueueUrl] || undefined,
  };
  if (problems.length > 0 || checkpoint === undefined) throw new ValidationError(ErrorCode.InvalidOptions, 'operator function environment', problems);
  return { ...config, checkpoint };
}

type Handler = (event: SqsEvent) => Promise<SqsBatchResponse>;

async function build(): Promise<Handler> {
  const config = readEnvironment(process.env);
  const plan = buildPlan(await loadJob(config.jobModule, config.jobArgs), { parallelism: config.parallelism });
  const problems: string[] = [];
  if (plan.job !== config.jobName) problems.push(`the job module builds job '${plan.job}', but this function was deployed for '${config.jobName}'`);
  if (config.planFingerprint !== undefined && plan.fingerprint !== config.planFingerprint) {
    problems.push(`the job module builds plan ${plan.fingerprint}, but plan ${config.planFingerprint} was deployed; deploy again`);
  }
  if (!plan.vertices.some((v) => v.id === config.vertex)) problems.push(`the plan of job '${plan.job}' has no vertex '${config.vertex}'`);
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidJob, 'operator function', problems);

  const resources: AwsJobResources = {
    job: plan.job,
    stateTable: config.stateTable,
    coordinatorTable: config.coordinatorTable,
    checkpointRoot: config.checkpoint.dir,
    savepointRoot: config.savepointDir,
    queueUrls: config.queueUrls,
    dlqUrls: config.deadLetterQueueUrl ? { [config.vertex]: config.deadLetterQueueUrl } : {},
    // Operators never send coordinator tasks: acks are applied to the job row, whose effects need no tasks queue.
    tasksQueueUrl: '',
    stateMachineArn: config.stateMachineArn,
  };
  return createOperatorHandler({
    plan,
    vertex: config.vertex,
    resources,
    checkpoint: config.checkpoint,
    log: (line) => jsonLineLog({ level: 'info', message: '', ...line }),
  });
}

let built: Promise<Handler> | undefined;

/** The Lambda entry point; the job, clients, ports and subtask executors are built on a container's first batch and reused. */
export async function handler(event: unknown): Promise<SqsBatchResponse> {
  if (typeof event !== 'object' || event === null || !Array.isArray((event as { Records?: unknown }).Records)) {
    throw new FloeError(ErrorCode.MalformedMessage, 'the operator function expects an SQS event with Records');
  }
  // A failed build is not kept: the batch comes back, and the next invocation builds again.
  built ??= build().catch((e: unknown) => {
    built = undefined;
    jsonLineLog({ level: 'error', message: `operator function cannot start: ${(e as Error).message}` });
    throw e;
  });
  return (await built)(event as SqsEvent);
}
