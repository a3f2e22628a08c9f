/**
 * The configuration every Floe Lambda reads from its environment (names in lib/hosts/lambda/handler-contract.ts `FloeEnv`),
 * and the plan it rebuilds from the bundled job, checked against the one that was deployed.
 */
import { FloeEnv } from '../lib/hosts/lambda/handler-contract.js';
import { ErrorCode, FloeError, ValidationError } from '../lib/core/errors.js';
import { MAX_DELAY_SECONDS } from '../lib/coordination/checkpoint-tasks.js';
import { resolveCheckpointOptions, type ResolvedCheckpointOptions } from '../lib/core/options.js';
import { loadJob } from '../lib/hosts/load-job.js';
import { buildPlan, type PhysicalPlan } from '../lib/graph/plan.js';
import type { Job } from '../lib/api/job.js';

/** What every function knows of its job. */
/** `FLOE_SOURCE_IDLE_MAX_DELAY_MS` (FloeJob `idleSourceMaxDelay`): the longest delay of an idle source's wake, in ms; undefined when unset. */
export function idleSourceMaxDelayMs(env: NodeJS.ProcessEnv, subject: string): number | undefined {
  const raw = env[FloeEnv.IdleSourceMaxDelayMs];
  if (raw === undefined || raw === '') return undefined;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_DELAY_SECONDS * 1000) {
    throw new FloeError(ErrorCode.InvalidOptions, `${subject}: ${FloeEnv.IdleSourceMaxDelayMs} must be an integer from 0 to ${MAX_DELAY_SECONDS * 1000}, got '${raw}'`);
  }
  return ms;
}

export interface JobEnvironment {
  readonly jobModule: string;
  readonly jobName: string;
  readonly jobArgs: string[];
  readonly parallelism: number | undefined;
  readonly planFingerprint: string | undefined;
  readonly checkpoint: ResolvedCheckpointOptions;
  readonly savepointDir: string;
  /** The function's timeout in ms, when FloeJob set it (emulator mode does not: its steps have no time limit). */
  readonly functionTimeoutMs: number | undefined;
  readonly coordinatorTable: string;
  readonly stateMachineArn: string;
  readonly queueUrls: Record<string, string>;
}

/** Reads a function's environment: the common variables plus `extra(required)`; every problem is reported at once. */
export function readEnvironment<X>(env: NodeJS.ProcessEnv, subject: string, extra: (required: (name: string) => string) => X): JobEnvironment & X {
  const E = FloeEnv;
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
  const functionTimeoutMs = env[E.FunctionTimeoutMs] ? Number(env[E.FunctionTimeoutMs]) : undefined;
  if (functionTimeoutMs !== undefined && !(Number.isInteger(functionTimeoutMs) && functionTimeoutMs > 0)) problems.push(`${E.FunctionTimeoutMs} must be a positive integer (ms)`);
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
    functionTimeoutMs,
    coordinatorTable: required(E.CoordinatorTable),
    stateMachineArn: required(E.StateMachineArn),
    queueUrls: (queueUrls ?? {}) as Record<string, string>,
    ...extra(required),
  };
  if (problems.length > 0 || checkpoint === undefined) throw new ValidationError(ErrorCode.InvalidOptions, `${subject} environment`, problems);
  return { ...config, checkpoint };
}

/** Builds the job's plan from the bundled job module and refuses to run a plan other than the deployed one. */
export async function loadDeployedPlan(config: JobEnvironment, subject: string, check: (plan: PhysicalPlan, problems: string[]) => void = () => {}): Promise<PhysicalPlan> {
  return (await loadDeployedJob(config, subject, check)).plan;
}

/** Loads the bundled job module and builds its plan, refusing to run a plan other than the deployed one. */
export async function loadDeployedJob(config: JobEnvironment, subject: string, check: (plan: PhysicalPlan, problems: string[]) => void = () => {}): Promise<{ job: Job; plan: PhysicalPlan }> {
  const job = await loadJob(config.jobModule, config.jobArgs);
  const plan = buildPlan(job, { parallelism: config.parallelism, checkTiming: false });
  const problems: string[] = [];
  if (plan.job !== config.jobName) problems.push(`the job module builds job '${plan.job}', but this function was deployed for '${config.jobName}'`);
  if (config.planFingerprint !== undefined && plan.fingerprint !== config.planFingerprint) {
    problems.push(`the job module builds plan ${plan.fingerprint}, but plan ${config.planFingerprint} was deployed; deploy again`);
  }
  check(plan, problems);
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidJob, subject, problems);
  return { job, plan };
}
