import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Duration, Stack, Validations, type CfnElement } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subtaskPartitionKey } from '../../lib/adapters/aws/dynamodb-state-schema.js';
import { SQS_MAX_MESSAGE_BYTES } from '../../lib/adapters/aws/envelope-codec.js';
import { Job } from '../../lib/api/job.js';
import { filesSink } from '../../lib/connectors/files-sink.js';
import { generator } from '../../lib/connectors/generator.js';
import { loadJob } from '../../lib/hosts/load-job.js';
import { buildPlan, hasProcessingTimers, type PhysicalPlan } from '../../lib/graph/plan.js';
import { planCheckpointSchedule, type CheckpointSchedule } from '../../infra/checkpoint-schedule.js';
import { FloeJobErrorId, FloeJobValidationError, type FloeJobProblem } from '../../infra/errors.js';
import { createFloeApp, splitArgs } from '../../infra/floe-app.js';
import { FloeJob, FloeJobOutput, type FloeJobProps } from '../../infra/floe-job.js';
import { FloeEnv } from '../../lib/hosts/lambda/handler-contract.js';
import { cfnLint } from './support/cfn-lint.js';
import { allowedFor, json, stringLike, type Allowed } from './support/iam-policies.js';

const projectRoot = join(import.meta.dirname, '..', '..');
const fixtures = { operatorEntry: 'test/fixtures/handlers/operator.ts', coordinatorEntry: 'test/fixtures/handlers/coordinator.ts' };
const jobFile = 'examples/wordcount.ts';
const args = ['--input', 's3://floe-test-in/words', '--output', 's3://floe-test-out/counts'];

/** The wordcount job as app.ts deploys it (context as on the command line), synthesized once for the whole file. */
let app: App;
let stack: Stack;
let floeJob: FloeJob;
let template: Template;
let plan: PhysicalPlan;
/** The wordcount job built from its file, for variants of the deployed one. */
let wordcount: Job;
let outdir: string;

beforeAll(async () => {
  outdir = mkdtempSync(join(tmpdir(), 'floe-cdk-'));
  app = new App({
    outdir,
    context: { job: jobFile, args: args.join(' '), removalPolicy: 'destroy', deletionProtection: 'false', ...fixtures },
  });
  ({ stack, job: floeJob } = await createFloeApp(app));
  wordcount = await loadJob(join(projectRoot, jobFile), args);
  plan = buildPlan(wordcount);
  // Synthesis runs the app's validation plugins (cdk-nag): an unacknowledged finding fails it here.
  template = Template.fromStack(stack);
});

afterAll(() => rmSync(outdir, { recursive: true, force: true }));

/** Builds a FloeJob in a stack of its own, with the fixture handlers. */
function synthJob(props: Partial<FloeJobProps> & { job: Job }): { stack: Stack; template: Template } {
  const s = new Stack(new App({ outdir }), 'Variant');
  new FloeJob(s, 'Job', { jobFile, args, projectRoot, ...fixtures, ...props });
  return { stack: s, template: Template.fromStack(s) };
}

/** The problems a FloeJob construction reports, or [] when it succeeds. */
function problemsOf(props: Partial<FloeJobProps> & { job: Job }): FloeJobProblem[] {
  try {
    new FloeJob(new Stack(new App(), 'Invalid'), 'Job', { jobFile, projectRoot, ...fixtures, ...props });
    return [];
  } catch (e) {
    if (e instanceof FloeJobValidationError) return [...e.issues];
    throw e;
  }
}

function smallJob(options: ConstructorParameters<typeof Job>[1] = {}): Job {
  const job = new Job('small', { checkpoint: { interval: '1s' }, ...options });
  job.source(generator({ count: 10, generate: (i) => i }), { uid: 'numbers' }).sinkTo(filesSink({ dir: '/tmp/out' }), { uid: 'out' });
  return job;
}

describe('FloeJob per vertex', () => {
  it('plans the wordcount into several vertices', () => {
    expect(plan.vertices.length).toBeGreaterThan(1);
    expect([...floeJob.vertices.keys()]).toEqual(plan.vertices.map((v) => v.id));
  });

  it('creates one function, one FIFO queue, one FIFO dead-letter queue, one alarm and one event source per vertex, plus the coordinator and the control API', () => {
    const n = plan.vertices.length;
    template.resourceCountIs('AWS::Lambda::Function', n + 2);
    template.resourceCountIs('AWS::Lambda::EventSourceMapping', n + 1);
    // per vertex a queue and its DLQ; the coordinator's queue and DLQ; the schedule's DLQ
    template.resourceCountIs('AWS::SQS::Queue', 2 * n + 3);
    expect(Object.keys(template.findResources('AWS::SQS::Queue', { Properties: { FifoQueue: true } }))).toHaveLength(2 * n);
    // a dead-letter alarm per vertex, the coordinator, and the schedule; Errors and Throttles per function; failed and
    // timed-out executions of the state machine and the ticker
    template.resourceCountIs('AWS::CloudWatch::Alarm', n + 2 + 2 * (n + 2) + 4);
  });

  it('configures each vertex queue as high-throughput FIFO with sender-set dedup ids, 1 MiB messages and 6× the function timeout', () => {
    const queues = template.findResources('AWS::SQS::Queue', {
      Properties: {
        FifoQueue: true,
        ContentBasedDeduplication: false,
        DeduplicationScope: 'messageGroup',
        FifoThroughputLimit: 'perMessageGroupId',
        MaximumMessageSize: SQS_MAX_MESSAGE_BYTES,
        VisibilityTimeout: 6 * 60,
        SqsManagedSseEnabled: true,
        RedrivePolicy: { deadLetterTargetArn: Match.anyValue(), maxReceiveCount: 5 },
      },
    });
    expect(Object.keys(queues)).toHaveLength(plan.vertices.length);
    for (const { queue, deadLetterQueue } of floeJob.vertices.values()) {
      expect(stack.resolve(queue.deadLetterQueue?.queue.queueArn)).toEqual(stack.resolve(deadLetterQueue.queueArn));
      expect(deadLetterQueue.fifo).toBe(true);
    }
  });

  it('gives every queue a TLS-only policy', () => {
    const policies = template.findResources('AWS::SQS::QueuePolicy', {
      Properties: {
        PolicyDocument: {
          Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Action: 'sqs:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
        },
      },
    });
    expect(Object.keys(policies)).toHaveLength(2 * plan.vertices.length + 3);
  });

  it('alarms as soon as a dead-letter queue holds a message', () => {
    for (const { deadLetterQueue } of floeJob.vertices.values()) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Namespace: 'AWS/SQS',
        Dimensions: [{ Name: 'QueueName', Value: stack.resolve(deadLetterQueue.queueName) }],
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'notBreaching',
      });
    }
  });

  it('alarms on any failed or throttled invocation of every function, not on an idle one', () => {
    const functions = [...floeJob.vertices.values()].map((v) => v.function).concat(floeJob.coordinatorFunction, floeJob.controlApiFunction);
    for (const fn of functions) {
      for (const metric of ['Errors', 'Throttles']) {
        template.hasResourceProperties('AWS::CloudWatch::Alarm', {
          MetricName: metric,
          Namespace: 'AWS/Lambda',
          Dimensions: [{ Name: 'FunctionName', Value: stack.resolve(fn.functionName) }],
          Statistic: 'Sum',
          Period: 300,
          Threshold: 0,
          ComparisonOperator: 'GreaterThanThreshold',
          EvaluationPeriods: 1,
          TreatMissingData: 'notBreaching',
        });
      }
    }
    for (const v of floeJob.vertices.values()) {
      expect(floeJob.alarms).toContain(v.errorsAlarm);
      expect(floeJob.alarms).toContain(v.throttlesAlarm);
    }
  });

  it('alarms on failed and timed-out executions of the checkpoint state machine and the ticker', () => {
    for (const machine of [floeJob.stateMachine, floeJob.ticker!]) {
      for (const metric of ['ExecutionsFailed', 'ExecutionsTimedOut']) {
        template.hasResourceProperties('AWS::CloudWatch::Alarm', {
          MetricName: metric,
          Namespace: 'AWS/States',
          Dimensions: [{ Name: 'StateMachineArn', Value: stack.resolve(machine.stateMachineArn) }],
          Statistic: 'Sum',
          Threshold: 0,
          ComparisonOperator: 'GreaterThanThreshold',
          TreatMissingData: 'notBreaching',
        });
      }
    }
  });

  it('exposes every alarm it creates, and runs alarmActions on each (none by default)', () => {
    expect(floeJob.alarms).toHaveLength(Object.keys(template.findResources('AWS::CloudWatch::Alarm')).length);
    expect(Object.keys(template.findResources('AWS::CloudWatch::Alarm', { Properties: { AlarmActions: Match.anyValue() } }))).toEqual([]);

    const s = new Stack(new App({ outdir }), 'Notified');
    const topic = new sns.Topic(s, 'Topic');
    const job = new FloeJob(s, 'Job', { jobFile, args, projectRoot, ...fixtures, job: smallJob(), alarmActions: [new cloudwatchActions.SnsAction(topic)] });
    const alarms = Template.fromStack(s).findResources('AWS::CloudWatch::Alarm');
    expect(Object.keys(alarms)).toHaveLength(job.alarms.length);
    for (const alarm of Object.values(alarms) as { Properties: { AlarmActions?: unknown } }[]) expect(alarm.Properties.AlarmActions).toEqual([s.resolve(topic.topicArn)]);
  });

  it('feeds each function from its queue in batches of 10 with per-message failures', () => {
    for (const { function: fn, queue } of floeJob.vertices.values()) {
      template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        FunctionName: stack.resolve(fn.functionName),
        EventSourceArn: stack.resolve(queue.queueArn),
        BatchSize: 10,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
      });
    }
  });

  it('runs each vertex on Node.js 24 arm64 with its vertex, the job arguments and the resource names in the environment', () => {
    for (const v of plan.vertices) {
      template.hasResourceProperties('AWS::Lambda::Function', {
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        MemorySize: 1024,
        Timeout: 60,
        Environment: {
          Variables: Match.objectLike({
            [FloeEnv.Vertex]: v.id,
            [FloeEnv.JobName]: 'wordcount',
            [FloeEnv.JobArgs]: JSON.stringify(args),
            [FloeEnv.PlanFingerprint]: plan.fingerprint,
            [FloeEnv.FunctionTimeoutMs]: '60000',
            [FloeEnv.StateTable]: stack.resolve(floeJob.stateTable.tableName),
            [FloeEnv.CoordinatorTable]: stack.resolve(floeJob.coordinatorTable.tableName),
            [FloeEnv.CheckpointBucket]: stack.resolve(floeJob.bucket.bucketName),
            [FloeEnv.StateMachineArn]: stack.resolve(floeJob.stateMachine.stateMachineArn),
            [FloeEnv.JobModule]: '/var/task/index.mjs',
            [FloeEnv.DeadLetterQueueUrl]: stack.resolve(floeJob.vertices.get(v.id)!.deadLetterQueue.queueUrl),
          }),
        },
      });
    }
  });

  it('tells the coordinator function the functions\' timeout, which it records for floe start', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ [FloeEnv.FunctionTimeoutMs]: '60000', [FloeEnv.Vertex]: Match.absent(), [FloeEnv.JobModule]: '/var/task/index.mjs' }) },
    });
  });

  it('configures Powertools on every function: service, metrics namespace and log level, DEBUG when asked', () => {
    const powertools = (level: string) => ({ POWERTOOLS_SERVICE_NAME: 'floe', POWERTOOLS_METRICS_NAMESPACE: 'Floe', POWERTOOLS_LOG_LEVEL: level });
    const floeFunctions = [...plan.vertices.map((v) => floeJob.vertices.get(v.id)!.function), floeJob.coordinatorFunction, floeJob.controlApiFunction];
    const resources = template.toJSON().Resources as Record<string, { Properties: { Environment: { Variables: Record<string, unknown> } } }>;
    for (const fn of floeFunctions) {
      expect(resources[stack.getLogicalId(fn.node.defaultChild as CfnElement)]!.Properties.Environment.Variables).toMatchObject(powertools('INFO'));
    }
    const debug = synthJob({ job: smallJob(), logLevel: 'DEBUG' }).template;
    const withDebug = debug.findResources('AWS::Lambda::Function', { Properties: { Environment: { Variables: Match.objectLike(powertools('DEBUG')) } } });
    // Every Floe function of the variant: one per vertex, the coordinator and the control API.
    expect(Object.keys(withDebug)).toHaveLength(buildPlan(smallJob()).vertices.length + 2);
  });

  it('lets a vertex send to its outputs and (for barriers) the sources, not to other vertices', () => {
    const sendTo = (fn: lambda.IFunction, queueArn: string) => allowedFor(stack, template, fn.role!).some((a) => a.action === 'sqs:SendMessage' && a.resource === json(stack, queueArn));
    for (const v of plan.vertices) {
      const fn = floeJob.vertices.get(v.id)!.function;
      const allowed = new Set([...plan.vertices.filter((x) => x.isSource).map((x) => x.id), ...v.outputs.map((e) => e.to)]);
      for (const other of plan.vertices) expect(sendTo(fn, floeJob.vertices.get(other.id)!.queue.queueArn), `${v.id} → ${other.id}`).toBe(allowed.has(other.id));
    }
  });

  it('lets a source, and only a source, read the attributes of its downstream queues, for the backlog probe of backpressure', () => {
    const probes = (fn: lambda.IFunction, queueArn: string) => allowedFor(stack, template, fn.role!).some((a) => a.action === 'sqs:GetQueueAttributes' && a.resource === json(stack, queueArn));
    const sources = plan.vertices.filter((v) => v.isSource && v.outputs.length > 0);
    expect(sources.length).toBeGreaterThan(0);
    expect(plan.vertices.some((v) => !v.isSource && v.outputs.length > 0)).toBe(true);
    for (const v of plan.vertices) {
      const fn = floeJob.vertices.get(v.id)!.function;
      const downstream = new Set(v.isSource ? v.outputs.map((e) => e.to) : []);
      // Its own queue's attributes are the event source's (Lambda reads them to poll).
      for (const other of plan.vertices) {
        expect(probes(fn, floeJob.vertices.get(other.id)!.queue.queueArn), `${v.id} probes ${other.id}`).toBe(downstream.has(other.id) || other.id === v.id);
      }
    }
  });

  it('bundles the job with each handler so that loadJob(FLOE_JOB_MODULE) rebuilds the deployed plan', () => {
    const resources = template.toJSON().Resources as Record<string, { Properties: { Code: { S3Key: string }; Environment: { Variables: Record<string, unknown> } } }>;
    const run = (fn: lambda.IFunction) => {
      const { Code, Environment } = resources[stack.getLogicalId(fn.node.defaultChild as CfnElement)]!.Properties;
      const bundle = join(outdir, `asset.${Code.S3Key.replace(/\.zip$/, '')}`, 'index.mjs');
      const plain = Object.fromEntries(Object.entries(Environment.Variables).filter((e): e is [string, string] => typeof e[1] === 'string'));
      const script = 'const m = await import(process.env.FLOE_JOB_MODULE); console.log(JSON.stringify(await m.handler({ Records: [] })));';
      const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, ...plain, [FloeEnv.JobModule]: bundle },
      });
      expect(result.stderr).toBe('');
      return JSON.parse(result.stdout) as Record<string, unknown>;
    };
    for (const v of plan.vertices) {
      expect(run(floeJob.vertices.get(v.id)!.function)).toEqual({ batchItemFailures: [], job: 'wordcount', vertex: v.id, fingerprint: plan.fingerprint });
    }
    expect(run(floeJob.coordinatorFunction)).toEqual({ batchItemFailures: [], job: 'wordcount' });
  });
});

describe('FloeJob least privilege', () => {
  const bucketObjects = (pattern: string) => json(stack, floeJob.bucket.arnForObjects(pattern));
  /** Whether an entry is on the checkpoint bucket (the job's input and output buckets are granted too: test/infra/connector-grants.test.ts). */
  const onCheckpointBucket = (a: Allowed) => a.resource.includes(JSON.stringify(stack.getLogicalId(floeJob.bucket.node.defaultChild as CfnElement)));
  const notLogs = (a: Allowed) => !/^(logs|xray):/.test(a.action);
  /** The state-table partition-key patterns of an entry's LeadingKeys condition. */
  const leadingKeys = (a: Allowed) => a.condition?.['ForAllValues:StringLike']?.['dynamodb:LeadingKeys'] as string[] | undefined;
  /** Every partition key of a vertex's subtasks, as the state store writes them. */
  const partitionsOf = (vertexId: string) => Array.from({ length: plan.vertices.find((v) => v.id === vertexId)!.parallelism }, (_, subtask) => subtaskPartitionKey(plan.job, { vertex: vertexId, subtask }));

  it('grants a vertex function only the calls its code makes, no wildcard actions', () => {
    for (const v of plan.vertices) {
      const actions = [...new Set(allowedFor(stack, template, floeJob.vertices.get(v.id)!.function.role!).filter(notLogs).map((a) => a.action))].sort();
      expect(actions, v.id).toEqual(
        [
          // its state, its job row and status items
          'dynamodb:BatchGetItem',
          'dynamodb:BatchWriteItem',
          'dynamodb:DeleteItem',
          'dynamodb:GetItem',
          'dynamodb:PutItem',
          'dynamodb:Query',
          'dynamodb:UpdateItem',
          // snapshots and manifests; deletes of old checkpoints
          's3:DeleteObject',
          's3:GetObject',
          's3:ListBucket',
          's3:PutObject',
          // its event source, its sends
          'sqs:ChangeMessageVisibility',
          'sqs:DeleteMessage',
          'sqs:GetQueueAttributes',
          'sqs:GetQueueUrl',
          'sqs:ReceiveMessage',
          'sqs:SendMessage',
          // the watchdog execution of a checkpoint its step starts
          'states:StartExecution',
        ].sort(),
      );
    }
  });

  it('lets no vertex function delete savepoints, delete object versions, or delete, scan or batch-write coordinator items', () => {
    for (const v of floeJob.vertices.values()) {
      const allowed = allowedFor(stack, template, v.function.role!);
      expect(allowed.filter((a) => a.action.startsWith('s3:Delete') && onCheckpointBucket(a)).map((a) => [a.action, a.resource])).toEqual([['s3:DeleteObject', bucketObjects('wordcount/checkpoints/*')]]);
      expect(allowed.filter((a) => a.action === 's3:DeleteObjectVersion')).toEqual([]);
      expect(allowed.filter((a) => a.action.startsWith('s3:') && a.action !== 's3:ListBucket').map((a) => a.resource)).not.toContain(json(stack, floeJob.bucket.arnForObjects('*')));
      const coordinatorTable = json(stack, floeJob.coordinatorTable.tableArn);
      expect(allowed.filter((a) => a.resource === coordinatorTable).map((a) => a.action).sort()).toEqual(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem']);
      expect(allowed.filter((a) => a.action.startsWith('states:')).map((a) => [a.action, a.resource])).toEqual([['states:StartExecution', json(stack, floeJob.stateMachine.stateMachineArn)]]);
    }
  });

  it('keeps each vertex function to its own subtasks\' state partitions', () => {
    const stateTable = json(stack, floeJob.stateTable.tableArn);
    for (const v of plan.vertices) {
      const grants = allowedFor(stack, template, floeJob.vertices.get(v.id)!.function.role!).filter((a) => a.resource === stateTable);
      expect(grants.length, v.id).toBeGreaterThan(0);
      for (const grant of grants) {
        const patterns = leadingKeys(grant);
        expect(patterns, `${v.id} ${grant.action}`).toBeDefined();
        for (const other of plan.vertices) {
          for (const key of partitionsOf(other.id)) expect(patterns!.some((p) => stringLike(p, key)), `${v.id} → ${key}`).toBe(other.id === v.id);
        }
      }
    }
  });

  it('lets the coordinator write every vertex\'s state (a restart restores it), answer its tasks, ask for its own ticks and carry out its steps\' effects', () => {
    const allowed = allowedFor(stack, template, floeJob.coordinatorFunction.role!);
    const state = allowed.filter((a) => a.resource === json(stack, floeJob.stateTable.tableArn));
    expect(state.map((a) => a.action).sort()).toEqual(
      ['dynamodb:BatchGetItem', 'dynamodb:BatchWriteItem', 'dynamodb:DeleteItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:Scan', 'dynamodb:UpdateItem'].sort(),
    );
    // Every keyed action is held to the job's partitions, all of its vertices'; the Scan (clearing the job's state) names no keys.
    for (const a of state.filter((x) => x.action !== 'dynamodb:Scan')) {
      for (const other of plan.vertices) for (const key of partitionsOf(other.id)) expect(leadingKeys(a)!.some((p) => stringLike(p, key)), `${a.action} ${key}`).toBe(true);
    }
    expect(allowed).toContainEqual({ action: 'sqs:SendMessage', resource: json(stack, floeJob.coordinatorQueue.queueArn) });
    expect([...new Set(allowed.filter((a) => a.action.startsWith('states:')).map((a) => a.action))].sort()).toEqual(['states:SendTaskFailure', 'states:SendTaskHeartbeat', 'states:SendTaskSuccess', 'states:StartExecution']);
    expect(allowed.filter((a) => a.action.startsWith('s3:Delete') && onCheckpointBucket(a)).map((a) => a.resource)).toEqual([bucketObjects('wordcount/checkpoints/*')]);
  });

  it('lets every vertex send delayed wakes and activity reports to the coordinator-tasks queue, and the coordinator forward wakes into the timer vertex queue', () => {
    // (the word count's `count` is a keyed process function; its source and sink vertices have no timers)
    expect(plan.vertices.filter(hasProcessingTimers).map((v) => v.id)).toEqual(['count']);
    const tasksQueue = json(stack, floeJob.coordinatorQueue.queueArn);
    const resources = template.toJSON().Resources as Record<string, { Properties: { Environment?: { Variables?: Record<string, unknown> } } }>;
    const variables = (fn: lambda.IFunction) => resources[stack.getLogicalId(fn.node.defaultChild as CfnElement)]!.Properties.Environment!.Variables!;
    for (const v of plan.vertices) {
      const fn = floeJob.vertices.get(v.id)!.function;
      const sends = allowedFor(stack, template, fn.role!).filter((a) => a.action === 'sqs:SendMessage' && a.resource === tasksQueue);
      // Timer wakes (a vertex with timers), an idle source's backed-off wakes, and any vertex's activity reports.
      expect(sends.length > 0, v.id).toBe(true);
      expect(FloeEnv.CoordinatorQueueUrl in variables(fn), v.id).toBe(true);
      expect(variables(fn)[FloeEnv.IdleSourceMaxDelayMs], v.id).toBe('60000');
    }
    const coordinator = allowedFor(stack, template, floeJob.coordinatorFunction.role!);
    const countQueue = json(stack, floeJob.vertices.get('count')!.queue.queueArn);
    expect(coordinator).toEqual(expect.arrayContaining([{ action: 'sqs:SendMessage', resource: countQueue }, { action: 'sqs:SendMessage', resource: tasksQueue }]));
    const env = variables(floeJob.coordinatorFunction);
    expect(env[FloeEnv.CoordinatorQueueUrl]).toBeDefined();
    // The watchdog allows an idle chain its backoff.
    expect(env[FloeEnv.IdleSourceMaxDelayMs]).toBe('60000');
    // (its vertex queue URLs, a CloudFormation join, name the timer vertex besides the sources)
    expect(JSON.stringify(env[FloeEnv.VertexQueueUrls])).toContain('\\"count\\":');
  });

  it('lets the state machines send to the coordinator-tasks queue and read the coordinator table (status items; the ticker the job row), nothing more', () => {
    const queue = json(stack, floeJob.coordinatorQueue.queueArn);
    expect(allowedFor(stack, template, floeJob.stateMachine.role).filter(notLogs)).toEqual(
      expect.arrayContaining([
        { action: 'sqs:SendMessage', resource: queue },
        { action: 'dynamodb:GetItem', resource: json(stack, floeJob.coordinatorTable.tableArn) },
      ]),
    );
    expect(allowedFor(stack, template, floeJob.stateMachine.role).filter(notLogs)).toHaveLength(2);
    expect(allowedFor(stack, template, floeJob.ticker!.role).filter(notLogs)).toEqual([
      { action: 'sqs:SendMessage', resource: queue },
      { action: 'dynamodb:GetItem', resource: json(stack, floeJob.coordinatorTable.tableArn) },
    ]);
  });

  it('matches IAM StringLike as IAM does, for the partition checks above', () => {
    expect(stringLike('wordcount/count/*', 'wordcount/count/0')).toBe(true);
    expect(stringLike('wordcount/count/*', 'wordcount/counter/0')).toBe(false);
    expect(stringLike('wordcount/flatMap-1/*', 'wordcount/flatMap-1/1')).toBe(true);
    expect(stringLike('a.b/?', 'axb/1')).toBe(false);
    expect(stringLike('a.b/?', 'a.b/1')).toBe(true);
  });
});

describe('FloeJob reserved concurrency', () => {
  /** Per function: its reserved concurrency and the cap of its event source (undefined: none). */
  const concurrencyOf = (s: Stack, t: Template, fn: lambda.IFunction) => {
    const resources = t.toJSON().Resources as Record<string, { Type: string; Properties: Record<string, unknown> }>;
    const reserved = resources[s.getLogicalId(fn.node.defaultChild as CfnElement)]!.Properties.ReservedConcurrentExecutions;
    const mappings = Object.values(resources).filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping' && JSON.stringify(r.Properties.FunctionName) === JSON.stringify(s.resolve(fn.functionName)));
    const caps = mappings.map((m) => (m.Properties.ScalingConfig as { MaximumConcurrency?: number } | undefined)?.MaximumConcurrency);
    return { reserved, cap: caps[0] };
  };

  it('reserves none by default', () => {
    for (const fn of [...floeJob.vertices.values()].map((v) => v.function).concat(floeJob.coordinatorFunction, floeJob.controlApiFunction)) {
      expect(concurrencyOf(stack, template, fn)).toEqual({ reserved: undefined, cap: undefined });
    }
  });

  it('reserves one number for every vertex and caps each event source to it', () => {
    const { stack: s, template: t } = synthJob({ job: wordcount, reservedConcurrency: 4 });
    const job = s.node.findChild('Job') as FloeJob;
    for (const v of job.vertices.values()) expect(concurrencyOf(s, t, v.function), v.vertex.id).toEqual({ reserved: 4, cap: 4 });
    expect(concurrencyOf(s, t, job.coordinatorFunction)).toEqual({ reserved: undefined, cap: undefined });
  });

  it('reserves per vertex id, for the coordinator and for the control API; a reserve of 1 on a vertex of parallelism 1 gets no cap (Lambda\'s least is 2)', () => {
    const { stack: s, template: t } = synthJob({
      job: wordcount,
      reservedConcurrency: { lines: 1, count: 2000 },
      coordinatorReservedConcurrency: 3,
      controlApiReservedConcurrency: 1,
    });
    const job = s.node.findChild('Job') as FloeJob;
    expect(concurrencyOf(s, t, job.vertices.get('lines')!.function)).toEqual({ reserved: 1, cap: undefined });
    expect(concurrencyOf(s, t, job.vertices.get('flatMap-1')!.function)).toEqual({ reserved: undefined, cap: undefined });
    // The cap stops at the event source's most, 1000.
    expect(concurrencyOf(s, t, job.vertices.get('count')!.function)).toEqual({ reserved: 2000, cap: 1000 });
    expect(concurrencyOf(s, t, job.coordinatorFunction)).toEqual({ reserved: 3, cap: 3 });
    expect(concurrencyOf(s, t, job.controlApiFunction)).toEqual({ reserved: 1, cap: undefined });
  });

  it('refuses a vertex id the plan does not have, listing the ones it has', () => {
    const problems = problemsOf({ job: wordcount, args, reservedConcurrency: { lines: 2, tokenize: 3 } });
    expect(problems.map((p) => p.id)).toEqual([FloeJobErrorId.UnknownVertex]);
    expect(problems[0]!.message).toContain("'tokenize'");
    for (const v of plan.vertices) expect(problems[0]!.message).toContain(`'${v.id}'`);
  });

  it.each<[string, Partial<FloeJobProps>, string[]]>([
    ['0 for every vertex', { reservedConcurrency: 0 }, ['lines', 'flatMap-1', 'count']],
    ['a fraction', { reservedConcurrency: { count: 2.5 } }, ['count']],
    ['1 for a vertex of parallelism 2', { reservedConcurrency: { 'flatMap-1': 1 } }, ['flatMap-1']],
    ['1 for the coordinator', { coordinatorReservedConcurrency: 1 }, ['coordinatorReservedConcurrency']],
    ['0 for the control API', { controlApiReservedConcurrency: 0 }, ['controlApiReservedConcurrency']],
  ])('refuses %s', (_what, props, named) => {
    const problems = problemsOf({ job: wordcount, args, ...props });
    expect(problems.map((p) => p.id)).toEqual(named.map(() => FloeJobErrorId.ReservedConcurrencyOutOfRange));
    named.forEach((n, i) => expect(problems[i]!.message).toContain(n));
  });
});

describe('FloeJob storage', () => {
  it('creates on-demand state and coordinator tables with point-in-time recovery and AWS-managed encryption', () => {
    template.resourceCountIs('AWS::DynamoDB::Table', 2);
    const common = {
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true },
      DeletionProtectionEnabled: false,
    };
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      ...common,
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
    });
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      ...common,
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
    });
  });

  it('keeps the checkpoint bucket private, TLS-only, encrypted, versioned and access-logged', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      VersioningConfiguration: { Status: 'Enabled' },
      LoggingConfiguration: { DestinationBucketName: stack.resolve(floeJob.accessLogBucket.bucketName), LogFilePrefix: Match.anyValue() },
    });
    for (const bucket of [floeJob.bucket, floeJob.accessLogBucket]) {
      template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: stack.resolve(bucket.bucketName),
        PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
      });
    }
  });

  it('expires only noncurrent checkpoint data, never current objects or savepoints', () => {
    const rules = (template.toJSON().Resources as Record<string, { Type: string; Properties: { LifecycleConfiguration?: { Rules: Record<string, unknown>[] } } }>)[
      stack.getLogicalId(floeJob.bucket.node.defaultChild as CfnElement)
    ]!.Properties.LifecycleConfiguration!.Rules;
    expect(rules).toContainEqual(expect.objectContaining({ Prefix: 'wordcount/checkpoints/', NoncurrentVersionExpiration: { NoncurrentDays: 1 }, Status: 'Enabled' }));
    for (const rule of rules) {
      expect(rule).not.toHaveProperty('ExpirationInDays');
      expect(rule).not.toHaveProperty('ExpirationDate');
      expect(String(rule.Prefix ?? '')).not.toContain('savepoints');
    }
  });

  it('writes the outputs the CLI reads', () => {
    template.hasOutput(FloeJobOutput.JobName, { Value: 'wordcount' });
    template.hasOutput(FloeJobOutput.PlanFingerprint, { Value: plan.fingerprint });
    template.hasOutput(FloeJobOutput.CheckpointBucket, { Value: stack.resolve(floeJob.bucket.bucketName) });
    template.hasOutput(FloeJobOutput.StateTable, { Value: stack.resolve(floeJob.stateTable.tableName) });
    template.hasOutput(FloeJobOutput.CoordinatorTable, { Value: stack.resolve(floeJob.coordinatorTable.tableName) });
    template.hasOutput(FloeJobOutput.StateMachineArn, { Value: stack.resolve(floeJob.stateMachine.stateMachineArn) });
    template.hasOutput(FloeJobOutput.CoordinatorQueueUrl, { Value: stack.resolve(floeJob.coordinatorQueue.queueUrl) });
    const urls = JSON.stringify(template.toJSON().Outputs[FloeJobOutput.QueueUrls].Value);
    for (const v of plan.vertices) expect(urls).toContain(`\\"${v.id}\\":\\"`);
  });
});

describe('FloeJob coordinator', () => {
  it('runs the generated ASL as a Standard state machine with substitutions, full logging and tracing', () => {
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      DefinitionString: Match.stringLikeRegexp('sqs:sendMessage\\.waitForTaskToken.*\\$\\{CoordinatorQueueUrl\\}'),
      DefinitionSubstitutions: {
        CoordinatorQueueUrl: stack.resolve(floeJob.coordinatorQueue.queueUrl),
        CoordinatorTableName: stack.resolve(floeJob.coordinatorTable.tableName),
      },
      LoggingConfiguration: Match.objectLike({ Level: 'ALL' }),
      TracingConfiguration: { Enabled: true },
    });
  });

  it('logs no execution data of either state machine, so no task token reaches CloudWatch Logs', () => {
    const machines = Object.values(template.findResources('AWS::StepFunctions::StateMachine')) as { Properties: { LoggingConfiguration: Record<string, unknown> } }[];
    expect(machines).toHaveLength(2);
    for (const m of machines) expect(m.Properties.LoggingConfiguration).toMatchObject({ Level: 'ALL', IncludeExecutionData: false });
  });

  it('consumes the coordinator-tasks queue and may answer the state machine and start its executions', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: stack.resolve(floeJob.coordinatorFunction.functionName),
      EventSourceArn: stack.resolve(floeJob.coordinatorQueue.queueArn),
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [stack.resolve(floeJob.coordinatorFunction.role!.roleName)],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Action: 'states:StartExecution', Resource: stack.resolve(floeJob.stateMachine.stateMachineArn) }),
          Match.objectLike({ Action: Match.arrayWith(['states:SendTaskSuccess', 'states:SendTaskFailure']) }),
        ]),
      },
    });
  });

  it('ticks a sub-minute interval from an Express ticker started every minute', () => {
    expect(floeJob.ticker).toBeDefined();
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineType: 'EXPRESS', DefinitionString: Match.stringLikeRegexp('"Seconds":1,') });
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      Target: Match.objectLike({ Arn: stack.resolve(floeJob.ticker!.stateMachineArn), DeadLetterConfig: Match.anyValue() }),
    });
  });

  it('sends ticks straight to the coordinator-tasks queue once a minute for an interval of whole minutes, and for 0 (start and watchdog)', () => {
    const minutes = synthJob({ job: smallJob(), checkpoint: { interval: '5m' } });
    const job = minutes.stack.node.findChild('Job') as FloeJob;
    expect(job.ticker).toBeUndefined();
    minutes.template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 minute)',
      Target: Match.objectLike({
        Arn: minutes.stack.resolve(job.coordinatorQueue.queueArn),
        Input: Match.stringLikeRegexp('"type":"tick".*<aws.scheduler.scheduled-time>'),
      }),
    });
    minutes.template.resourceCountIs('AWS::StepFunctions::StateMachine', 1);

    const off = synthJob({ job: smallJob(), checkpoint: { interval: 0 } });
    off.template.resourceCountIs('AWS::Scheduler::Schedule', 1);
    off.template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(1 minute)', Target: Match.objectLike({ Input: Match.stringLikeRegexp('"type":"tick"') }) });
  });
});

describe('FloeJob control API', () => {
  /** The statements of the IAM policies attached to a function's role. */
  const statementsOf = (fn: lambda.IFunction) =>
    Object.values(template.findResources('AWS::IAM::Policy', { Properties: { Roles: [stack.resolve(fn.role!.roleName)] } })).flatMap(
      (p) => (p as { Properties: { PolicyDocument: { Statement: { Action: string | string[]; Resource: unknown }[] } } }).Properties.PolicyDocument.Statement,
    );

  it('runs on Node.js 24 arm64 with the job name and resource names, and no job code', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Architectures: ['arm64'],
      Description: Match.stringLikeRegexp('control API'),
      Environment: {
        Variables: {
          [FloeEnv.JobName]: 'wordcount',
          [FloeEnv.CoordinatorTable]: stack.resolve(floeJob.coordinatorTable.tableName),
          [FloeEnv.StateMachineArn]: stack.resolve(floeJob.stateMachine.stateMachineArn),
          [FloeEnv.CheckpointBucket]: stack.resolve(floeJob.bucket.bucketName),
          [FloeEnv.CheckpointDir]: Match.anyValue(),
          [FloeEnv.SavepointDir]: Match.anyValue(),
          NODE_OPTIONS: '--enable-source-maps',
        },
      },
    });
  });

  it('is reached through a function URL with IAM auth only, whose address is a stack output', () => {
    template.resourceCountIs('AWS::Lambda::Url', 1);
    template.hasResourceProperties('AWS::Lambda::Url', { AuthType: 'AWS_IAM', TargetFunctionArn: stack.resolve(floeJob.controlApiFunction.functionArn) });
    // No resource policy opens the function to anyone.
    template.resourcePropertiesCountIs('AWS::Lambda::Permission', { Principal: '*' }, 0);
    template.hasOutput(FloeJobOutput.ControlApiUrl, { Value: stack.resolve(floeJob.controlApiUrl.url) });
  });

  it('may read and write the job row and start and describe coordinator executions, and nothing else', () => {
    const statements = statementsOf(floeJob.controlApiFunction);
    const actions = statements.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));
    expect(actions.filter((a) => !/^(logs|dynamodb|states):/.test(a))).toEqual([]);
    expect(actions.filter((a) => a.startsWith('states:')).sort()).toEqual(['states:DescribeExecution', 'states:StartExecution']);
    for (const s of statements.filter((x) => JSON.stringify(x.Action).includes('dynamodb:'))) {
      expect(s.Resource).toEqual([stack.resolve(floeJob.coordinatorTable.tableArn)]);
    }
    expect(statements).toContainEqual(expect.objectContaining({ Action: 'states:StartExecution', Resource: stack.resolve(floeJob.stateMachine.stateMachineArn) }));
    expect(JSON.stringify(statements.find((s) => s.Action === 'states:DescribeExecution')!.Resource)).toMatch(/:execution:.*JobStateMachine.*:\*/);
  });

  it('bundles a handler that answers HTTP events, and names missing settings in a 500', async () => {
    const resources = template.toJSON().Resources as Record<string, { Properties: { Code: { S3Key: string }; Environment: { Variables: Record<string, unknown> } } }>;
    const { Code, Environment } = resources[stack.getLogicalId(floeJob.controlApiFunction.node.defaultChild as CfnElement)]!.Properties;
    const bundle = join(outdir, `asset.${Code.S3Key.replace(/\.zip$/, '')}`, 'index.mjs');
    // Deploy-time references are left out: the handler must report them missing rather than reach AWS.
    const plain = Object.fromEntries(Object.entries(Environment.Variables).filter((e): e is [string, string] => typeof e[1] === 'string'));
    const script = [
      'const { handler } = await import(process.argv[1]);',
      "const event = (method, path) => ({ version: '2.0', rawPath: path, rawQueryString: '', requestContext: { http: { method, path } } });",
      "const answers = [await handler(event('GET', '/nope')), await handler(event('GET', '/jobs'))];",
      "process.stderr.write('ANSWERS ' + JSON.stringify(answers));",
    ].join('\n');
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script, bundle], { encoding: 'utf8', env: { PATH: process.env.PATH, ...plain } });
    expect(result.status).toBe(0);
    // Powertools writes WARN and ERROR lines to stderr, INFO lines and metrics to stdout.
    const [logged, answers] = result.stderr.split('ANSWERS ');
    const [unknown, jobs] = JSON.parse(answers!) as { statusCode: number; body: string }[];
    expect(unknown!.statusCode).toBe(404);
    expect(JSON.parse(unknown!.body)).toEqual({ errors: ['Not found: /nope'] });
    expect(jobs!.statusCode).toBe(500);
    const message = (JSON.parse(jobs!.body) as { errors: string[] }).errors[0]!;
    expect(message).toMatch(/misconfigured.*\n.*FLOE_COORDINATOR_TABLE is required\n.*FLOE_STATE_MACHINE_ARN is required/s);
    expect(message).not.toMatch(/FLOE_JOB is required/);
    // Per request, one Powertools JSON log line and one EMF metrics object on stdout.
    const lines = [...result.stdout.trim().split('\n'), ...logged!.trim().split('\n')].map((l) => JSON.parse(l) as Record<string, unknown>);
    const logs = lines.filter((l) => !('_aws' in l));
    expect(logs.map((l) => [l.status, l.service, l.job])).toEqual([
      [404, 'floe', plan.job],
      [500, 'floe', plan.job],
    ]);
    const metrics = lines.filter((l) => '_aws' in l);
    expect(metrics.map((m) => [m.job, m.controlApiRequests, m.controlApiClientErrors, m.controlApiServerErrors])).toEqual([
      [plan.job, 1, 1, 0],
      [plan.job, 1, 0, 1],
    ]);
  });

  it('may delete the job\'s checkpoints only when they are not retained on cancel', () => {
    const variant = new Stack(new App({ outdir }), 'NotRetained');
    const job = new FloeJob(variant, 'Job', { jobFile, args, projectRoot, ...fixtures, job: smallJob(), checkpoint: { retainOnCancel: false } });
    const policies = Template.fromStack(variant).findResources('AWS::IAM::Policy', { Properties: { Roles: [variant.resolve(job.controlApiFunction.role!.roleName)] } });
    expect(Object.keys(policies).length).toBeGreaterThan(0);
    const s3 = allowedFor(variant, Template.fromStack(variant), job.controlApiFunction.role!).filter((a) => a.action.startsWith('s3:'));
    // It lists the checkpoints and deletes them: no reads, no writes, nothing outside <job>/checkpoints/.
    expect(s3).toEqual(
      expect.arrayContaining([
        { action: 's3:ListBucket', resource: json(variant, job.bucket.bucketArn) },
        { action: 's3:DeleteObject', resource: json(variant, job.bucket.arnForObjects('small/checkpoints/*')) },
      ]),
    );
    expect(s3).toHaveLength(2);
    // The default (retained on cancel) grants no bucket access at all.
    expect(JSON.stringify(statementsOf(floeJob.controlApiFunction))).not.toMatch(/s3:/);
  });

  it('refuses a control-API entry that does not exist', () => {
    expect(problemsOf({ job: smallJob(), controlApiEntry: 'functions/missing-control-api.ts' }).map((p) => p.id)).toEqual([FloeJobErrorId.HandlerEntryNotFound]);
  });
});

describe('FloeJob checks', () => {
  it('is clean under cdk-nag AwsSolutions: no unacknowledged findings, no error annotations', () => {
    const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(app);
    expect(report.violations.map((v) => `${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
    expect(Annotations.fromStack(stack).findError('*', Match.anyValue())).toEqual([]);
  });

  it('justifies every acknowledgement, each for one specific finding', () => {
    const acknowledged = stack.node
      .findAll()
      .flatMap((c) => c.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY))
      .flatMap((m) => Object.entries(m.data as Record<string, string>));
    expect(acknowledged.length).toBeGreaterThan(0);
    for (const [id, reason] of acknowledged) {
      expect(id).toMatch(/AwsSolutions-[A-Z]+\d+/);
      if (id.includes('IAM5')) expect(id).toMatch(/\[(Action|Resource)::.+\]$/);
      expect(reason.length).toBeGreaterThan(40);
    }
  });

  it('passes cfn-lint (pinned, project venv) with only W3005 ignored', { timeout: 300_000 }, () => {
    const file = join(outdir, 'lint.template.json');
    writeFileSync(file, JSON.stringify(template.toJSON(), null, 1));
    const result = cfnLint(file);
    expect(result.output).toBe('');
    expect(result.status).toBe(0);
  });
});

describe('FloeJob validation', () => {
  it('reports every problem at once, each with its stable id', () => {
    const job = new Job('bad-job', { maxParallelism: 8, checkpoint: { interval: '500ms' } });
    job.source(generator({ count: 1, generate: (i) => i }), { uid: 'numbers', parallelism: 16 }).sinkTo(filesSink({ dir: '/tmp/out' }), { uid: 'out' });
    const problems = problemsOf({
      job,
      timeout: Duration.minutes(20),
      memorySize: 64,
      maxReceiveCount: 0,
      idleSourceMaxDelay: Duration.minutes(16),
      operatorEntry: 'functions/missing-operator.ts',
      savepoint: { dir: '/local/savepoints' },
    });
    expect(problems.map((p) => p.id).sort()).toEqual(
      [
        FloeJobErrorId.ParallelismAboveMaxParallelism,
        FloeJobErrorId.CheckpointIntervalBelowMinimum,
        FloeJobErrorId.FunctionTimeoutOutOfRange,
        FloeJobErrorId.MemorySizeOutOfRange,
        FloeJobErrorId.MaxReceiveCountOutOfRange,
        FloeJobErrorId.IdleSourceMaxDelayOutOfRange,
        FloeJobErrorId.HandlerEntryNotFound,
        FloeJobErrorId.SavepointDirNotS3,
      ].sort(),
    );
    expect(problems.find((p) => p.id === FloeJobErrorId.ParallelismAboveMaxParallelism)!.message).toMatch(/parallelism 16 is above maxParallelism 8/);
    expect(problems.find((p) => p.id === FloeJobErrorId.IdleSourceMaxDelayOutOfRange)!.message).toMatch(/from 0 to 15 minutes .* got 16 minutes/);
  });

  it('formats the error with one line per problem, prefixed by its id', () => {
    let error: unknown;
    try {
      new FloeJob(new Stack(new App(), 'Invalid'), 'Job', { job: smallJob(), jobFile, projectRoot, ...fixtures, parallelism: 0, memorySize: 20_000 });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FloeJobValidationError);
    expect((error as Error).message).toMatch(/\n {2}- \[FloeJob\.InvalidParallelism\] .*\n {2}- \[FloeJob\.MemorySizeOutOfRange\] /);
  });

  it('reports the parallelism override above maxParallelism and the job’s own problems', () => {
    const job = new Job('unnamed-state', { maxParallelism: 4 });
    job.source(generator({ count: 1, generate: (i) => i })).sinkTo(filesSink({ dir: '/tmp/out' }), { uid: 'out' });
    const ids = problemsOf({ job, parallelism: 5 }).map((p) => p.id);
    expect(ids).toContain(FloeJobErrorId.ParallelismAboveMaxParallelism);
    expect(ids).toContain(FloeJobErrorId.InvalidJob);
  });

  it('refuses files outside the project root, which bundling cannot read', () => {
    expect(problemsOf({ job: smallJob(), coordinatorEntry: join(tmpdir(), 'coordinator.ts') }).map((p) => p.id)).toEqual([
      FloeJobErrorId.HandlerEntryNotFound,
      FloeJobErrorId.PathOutsideProjectRoot,
    ]);
  });

  it('refuses a non-Node runtime', () => {
    expect(problemsOf({ job: smallJob(), runtime: lambda.Runtime.PYTHON_3_13 }).map((p) => p.id)).toEqual([FloeJobErrorId.UnsupportedRuntime]);
  });

  it('refuses a second FloeJob in one stack, whose outputs would collide', () => {
    const s = new Stack(new App({ outdir }), 'Two');
    const props = { job: smallJob(), jobFile, projectRoot, ...fixtures };
    new FloeJob(s, 'First', props);
    expect(() => new FloeJob(s, 'Again', props)).toThrow(/\[FloeJob\.OnePerStack\]/);
  });

  it('refuses an environment beyond Lambda’s 4 KB', () => {
    const job = new Job('fan-out', { checkpoint: { interval: 0 } });
    const src = job.source(generator({ count: 1, generate: (i) => i }), { uid: 'numbers' });
    for (let i = 0; i < 30; i++) src.rebalance().sinkTo(filesSink({ dir: `/tmp/out-${i}` }), { uid: `out-${i}` });
    expect(problemsOf({ job }).map((p) => p.id)).toEqual([FloeJobErrorId.EnvironmentTooLarge]);
  });
});

describe('checkpoint schedule', () => {
  it.each<[string, number, CheckpointSchedule | undefined, FloeJobErrorId | undefined]>([
    ['off: a tick a minute', 0, { rateMinutes: 1, tickSeconds: 0, ticksPerExecution: 1 }, undefined],
    ['1s', 1000, { rateMinutes: 1, tickSeconds: 1, ticksPerExecution: 60 }, undefined],
    ['15s', 15_000, { rateMinutes: 1, tickSeconds: 15, ticksPerExecution: 4 }, undefined],
    ['1m', 60_000, { rateMinutes: 1, tickSeconds: 0, ticksPerExecution: 1 }, undefined],
    ['10m: a tick a minute, the decider waits out the interval', 600_000, { rateMinutes: 1, tickSeconds: 0, ticksPerExecution: 1 }, undefined],
    ['500ms', 500, undefined, FloeJobErrorId.CheckpointIntervalBelowMinimum],
    ['7s', 7000, undefined, FloeJobErrorId.CheckpointIntervalNotSchedulable],
    ['1500ms', 1500, undefined, FloeJobErrorId.CheckpointIntervalNotSchedulable],
    ['90s', 90_000, undefined, FloeJobErrorId.CheckpointIntervalNotSchedulable],
  ])('%s', (_, intervalMs, schedule, problem) => {
    const problems: FloeJobProblem[] = [];
    expect(planCheckpointSchedule(intervalMs, problems)).toEqual(schedule);
    expect(problems.map((p) => p.id)).toEqual(problem ? [problem] : []);
  });
});

describe('app context', () => {
  it.each<[string, string[]]>([
    ['--input s3://a/b --output s3://c/d', ['--input', 's3://a/b', '--output', 's3://c/d']],
    ['  --name "two words"  --x \'single quoted\' ', ['--name', 'two words', '--x', 'single quoted']],
    ['--empty "" --escaped a\\ b', ['--empty', '', '--escaped', 'a b']],
    ['', []],
  ])('splits %j', (text, words) => {
    expect(splitArgs(text)).toEqual(words);
  });

  it('notifies an SNS topic from alarmTopicArn and reserves concurrency from reservedConcurrency', async () => {
    const topicArn = 'arn:aws:sns:eu-west-1:123456789012:floe-alarms';
    const variant = new App({
      outdir,
      context: { job: jobFile, args: args.join(' '), stackName: 'FromContext', alarmTopicArn: topicArn, reservedConcurrency: '{"count":3}', ...fixtures },
    });
    const { stack: s, job } = await createFloeApp(variant);
    const t = Template.fromStack(s);
    const alarms = Object.values(t.findResources('AWS::CloudWatch::Alarm')) as { Properties: { AlarmActions?: unknown } }[];
    expect(alarms).toHaveLength(job.alarms.length);
    for (const alarm of alarms) expect(alarm.Properties.AlarmActions).toEqual([topicArn]);
    t.hasResourceProperties('AWS::Lambda::Function', { FunctionName: Match.absent(), ReservedConcurrentExecutions: 3, Environment: { Variables: Match.objectLike({ [FloeEnv.Vertex]: 'count' }) } });
    t.resourcePropertiesCountIs('AWS::Lambda::Function', { ReservedConcurrentExecutions: Match.anyValue() }, 1);
  });

  it.each([
    [{ alarmTopicArn: 'my-topic' }, /alarmTopicArn must be an SNS topic ARN/],
    [{ reservedConcurrency: 'lots' }, /reservedConcurrency must be a number or a JSON object/],
    [{ reservedConcurrency: '{"count":"3"}' }, /reservedConcurrency must be a number or a JSON object/],
  ])('refuses the context %j', async (context, message) => {
    await expect(createFloeApp(new App({ outdir, context: { job: jobFile, args: args.join(' '), ...fixtures, ...context } }))).rejects.toThrow(message);
  });

  it('names the stack after the job and checks it with cdk-nag', () => {
    expect(stack.stackName).toBe('Floe-wordcount');
    expect(app.node.tryGetContext('job')).toBe(jobFile);
  });
});
