import { resolve } from 'node:path';
import { App, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ErrorCode, FloeError, ValidationError } from '../lib/core/errors.js';
import { loadJob } from '../lib/hosts/load-job.js';
import { parseDuration } from '../lib/core/duration.js';
import { FloeJob } from './floe-job.js';

/**
 * CDK context keys `infra/app.ts` reads (`cdk synth -c job=examples/wordcount.ts -c args="--input s3://… --output s3://…"`).
 * Values given with `-c` are strings; in cdk.json `args` may also be a JSON array.
 */
export const FloeContext = {
  /** The job file (required). */
  Job: 'job',
  /** The job arguments, split like a shell does (quotes group words). */
  Args: 'args',
  /** Parallelism override. */
  Parallelism: 'parallelism',
  /** Stack name. @default `Floe-<job name>` */
  StackName: 'stackName',
  /** `retain` (default) or `destroy`: what happens to the bucket and tables when the stack goes. */
  RemovalPolicy: 'removalPolicy',
  /** `true` (default) or `false`: DynamoDB deletion protection. */
  DeletionProtection: 'deletionProtection',
  /** Operator handler module. @default functions/operator.ts */
  OperatorEntry: 'operatorEntry',
  /** Coordinator handler module. @default functions/coordinator.ts */
  CoordinatorEntry: 'coordinatorEntry',
  /** ARN of an SNS topic every alarm notifies (FloeJob `alarmActions`). @default none */
  AlarmTopicArn: 'alarmTopicArn',
  /** FloeJob `reservedConcurrency`: a number, or JSON of vertex id → number. @default none */
  ReservedConcurrency: 'reservedConcurrency',
  /** FloeJob `idleSourceMaxDelay`, a duration (`30s`, `2m`; `0` keeps idle sources stepping about once a second). @default 60s */
  IdleSourceMaxDelay: 'idleSourceMaxDelay',
} as const;

/** Splits a command line into words: whitespace separates, single or double quotes group, backslash escapes. */
export function splitArgs(text: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) word += text[++i]!;
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      word ??= '';
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === '\\' && i + 1 < text.length) {
      word = (word ?? '') + text[++i]!;
    } else {
      word = (word ?? '') + c;
    }
  }
  if (quote) throw new ValidationError(ErrorCode.InvalidOptions, `context '${FloeContext.Args}'`, [`unterminated ${quote} quote in '${text}'`]);
  if (word !== undefined) words.push(word);
  return words;
}

/** The `reservedConcurrency` context: a number, or a JSON object of numbers (`-c` gives strings; cdk.json may give either as is). FloeJob checks the values. */
function parseReservedConcurrency(raw: unknown, problems: string[]): number | Record<string, number> | undefined {
  if (raw === undefined) return undefined;
  let value: unknown = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw);
    } catch {
      value = undefined;
    }
  }
  if (typeof value === 'number') return value;
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every((v) => typeof v === 'number')) return value as Record<string, number>;
  problems.push(`${FloeContext.ReservedConcurrency} must be a number or a JSON object of vertex id → number, got '${typeof raw === 'string' ? raw : JSON.stringify(raw)}'`);
  return undefined;
}

/** The stack and job `createFloeApp` made. */
export interface FloeApp {
  readonly app: App;
  readonly stack: Stack;
  readonly job: FloeJob;
}

/** Builds the Floe CDK app from context: one stack with one FloeJob, checked by cdk-nag's AwsSolutions pack. */
export async function createFloeApp(app: App = new App()): Promise<FloeApp> {
  const ctx = (key: string): unknown => app.node.tryGetContext(key);
  const problems: string[] = [];
  const jobFile = ctx(FloeContext.Job);
  if (typeof jobFile !== 'string' || jobFile === '') problems.push(`the job file is required: cdk synth -c ${FloeContext.Job}=examples/wordcount.ts`);
  const rawArgs = ctx(FloeContext.Args) ?? [];
  const args = Array.isArray(rawArgs) ? rawArgs.map(String) : splitArgs(String(rawArgs));
  const rawParallelism = ctx(FloeContext.Parallelism);
  const parallelism = rawParallelism === undefined ? undefined : Number(rawParallelism);
  const removal = String(ctx(FloeContext.RemovalPolicy) ?? 'retain');
  if (removal !== 'retain' && removal !== 'destroy') problems.push(`${FloeContext.RemovalPolicy} must be 'retain' or 'destroy', got '${removal}'`);
  const protection = String(ctx(FloeContext.DeletionProtection) ?? 'true');
  if (protection !== 'true' && protection !== 'false') problems.push(`${FloeContext.DeletionProtection} must be 'true' or 'false', got '${protection}'`);
  const alarmTopicArn = ctx(FloeContext.AlarmTopicArn);
  if (alarmTopicArn !== undefined && !(typeof alarmTopicArn === 'string' && /^arn:[^:]+:sns:[^:]+:\d{12}:[^:]+$/.test(alarmTopicArn))) {
    problems.push(`${FloeContext.AlarmTopicArn} must be an SNS topic ARN, got '${String(alarmTopicArn)}'`);
  }
  const reservedConcurrency = parseReservedConcurrency(ctx(FloeContext.ReservedConcurrency), problems);
  const rawIdleDelay = ctx(FloeContext.IdleSourceMaxDelay);
  let idleSourceMaxDelayMs: number | undefined;
  if (rawIdleDelay !== undefined) {
    try {
      idleSourceMaxDelayMs = parseDuration(rawIdleDelay as string | number, FloeContext.IdleSourceMaxDelay);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'Floe CDK context', problems);

  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
  // The job is built before the stack, whose default name comes from the job's name.
  const job = await loadJob(resolve(jobFile as string), args).catch((e: unknown) => {
    if (e instanceof FloeError) throw e;
    const reason = e instanceof Error ? e.message : String(e);
    throw new FloeError(ErrorCode.InvalidJob, `job file '${jobFile as string}' did not build its job from args ${JSON.stringify(args)} (-c ${FloeContext.Args}="..."): ${reason}`, { cause: e });
  });
  const stackName = String(ctx(FloeContext.StackName) ?? `Floe-${job.name.replace(/[^A-Za-z0-9-]/g, '-')}`);
  const stack = new Stack(app, stackName, { description: `Floe job '${job.name}' (${jobFile as string})` });
  const floeJob = new FloeJob(stack, 'Job', {
    job,
    jobFile: jobFile as string,
    args,
    ...(parallelism !== undefined ? { parallelism } : {}),
    removalPolicy: removal === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
    deletionProtection: protection === 'true',
    ...(ctx(FloeContext.OperatorEntry) !== undefined ? { operatorEntry: String(ctx(FloeContext.OperatorEntry)) } : {}),
    ...(ctx(FloeContext.CoordinatorEntry) !== undefined ? { coordinatorEntry: String(ctx(FloeContext.CoordinatorEntry)) } : {}),
    ...(typeof alarmTopicArn === 'string' ? { alarmActions: [new cloudwatchActions.SnsAction(sns.Topic.fromTopicArn(stack, 'AlarmTopic', alarmTopicArn))] } : {}),
    ...(reservedConcurrency !== undefined ? { reservedConcurrency } : {}),
    ...(idleSourceMaxDelayMs !== undefined ? { idleSourceMaxDelay: Duration.millis(idleSourceMaxDelayMs) } : {}),
  });
  return { app, stack, job: floeJob };
}
