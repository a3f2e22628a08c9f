/**
 * FloeJob: one Floe job on AWS serverless. Per vertex of the job's physical plan one Lambda fed by one SQS FIFO
 * queue (with a FIFO dead-letter queue and an alarm on it); DynamoDB tables for operator state and the
 * coordinator; a versioned S3 bucket for checkpoints and savepoints (and one for its access logs); the coordinator:
 * a Standard state machine (one execution per checkpoint, ASL from lib/adapters/aws/coordinator-state-machine.ts)
 * whose tasks go through the coordinator-tasks queue to the coordinator Lambda; an EventBridge Scheduler schedule
 * that ticks the coordinator for periodic checkpoints, through an Express "ticker" when the interval is below a
 * minute; the control API: a Lambda serving Flink's REST API for the job behind a function URL with IAM auth.
 * Every function, dead-letter queue and state machine has alarms (`alarms`, notifying `alarmActions`).
 * Everything is encrypted, TLS-only and private; permissions are granted with grant* only, each role only the calls
 * its code makes, the AWS resources the job's connectors declare included (its input and output: infra/connector-grants.ts).
 */
import { existsSync } from 'node:fs';
import { relative, resolve, sep } from 'node:path';
import { CfnOutput, Duration, RemovalPolicy, Stack, Tags, Token, type CfnElement } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { vertexPartitionPrefix } from '../lib/adapters/aws/dynamodb-state-schema.js';
import { SQS_MAX_MESSAGE_BYTES } from '../lib/adapters/aws/envelope-codec.js';
import type { Job } from '../lib/api/job.js';
import { ValidationError } from '../lib/core/errors.js';
import { resolveCheckpointOptions, type CheckpointOptions, type ResolvedCheckpointOptions, type SavepointOptions } from '../lib/core/options.js';
import { loadJob } from '../lib/hosts/load-job.js';
import { plannedResourceUses, type PlannedResourceUse } from '../lib/graph/connector-resources.js';
import { buildPlan, hasProcessingTimers, type PhysicalPlan, type Vertex } from '../lib/graph/plan.js';
import { SOURCE_IDLE_MAX_DELAY_MS } from '../lib/hosts/lambda/source-wakes.js';
import { MAX_DELAY_SECONDS } from '../lib/coordination/checkpoint-tasks.js';
import { planCheckpointSchedule, type CheckpointSchedule } from './checkpoint-schedule.js';
import { defaultCoordinatorDefinition, Substitution, tickerDefinition, tickMessage, type CoordinatorDefinitionFactory } from './coordinator-definition.js';
import { FloeJobErrorId, FloeJobValidationError, type FloeJobProblem } from './errors.js';
import { connectorResourceProblems, grantConnectorResources, type ConnectorResourceConstruct } from './connector-grants.js';
import { addFeedQueues } from './feed-queues.js';
import { BUNDLE_MODULE_PATH, FloeEnv, FloeJobOutput } from '../lib/hosts/lambda/handler-contract.js';
import { writeHandlerEntry } from './handler-entry.js';
import { acknowledge, nagRef } from './nag.js';
import { COORDINATOR_TABLE, STATE_TABLE, type TableSchema } from './table-schemas.js';

/** Properties of a {@link FloeJob}. */
export interface FloeJobProps {
  /** The job, built from `jobFile` with `args` (FloeJob.fromJobFile builds it for you); its plan decides the vertices. */
  readonly job: Job;
  /** The job file the Lambdas rebuild the job from (its default export), absolute or relative to `projectRoot`. */
  readonly jobFile: string;
  /** Arguments the job file's factory is called with, in the Lambdas as at synth. @default [] */
  readonly args?: readonly string[];
  /** Parallelism of operators that set none, overriding the job's own (as `floe run --parallelism`). @default the job's `parallelism` */
  readonly parallelism?: number;
  /** Checkpoint options laid over the job's own; checkpoints always go to the bucket, so `dir` is not taken. @default the job's checkpoint options */
  readonly checkpoint?: Omit<CheckpointOptions, 'dir'>;
  /** Savepoint options; a `dir` must be an `s3://` location, and one outside `s3://<bucket>/<job>/` needs grants of your own. @default dir `s3://<bucket>/<job>/savepoints` */
  readonly savepoint?: SavepointOptions;
  /** Handler module of the operator Lambdas (exports `createHandler`, see handler-contract.ts), relative to `projectRoot`. @default 'functions/operator.ts' */
  readonly operatorEntry?: string;
  /** Handler module of the coordinator Lambda (exports `createHandler`), relative to `projectRoot`. @default 'functions/coordinator.ts' */
  readonly coordinatorEntry?: string;
  /**
   * Handler module of the control-API Lambda (exports `handler` for HTTP events), relative to `projectRoot`. It needs no
   * job code, so it is bundled alone, not with the job file. @default 'functions/control-api.ts'
   */
  readonly controlApiEntry?: string;
  /** Project root: holds package-lock.json; the job file and handler entries must lie below it. @default process.cwd() */
  readonly projectRoot?: string;
  /** Lambda runtime of every function; a Node.js runtime. @default lambda.Runtime.NODEJS_24_X */
  readonly runtime?: lambda.Runtime;
  /** Instruction set of every function. @default lambda.Architecture.ARM_64 */
  readonly architecture?: lambda.Architecture;
  /** Memory of every function, in MB (128 – 10,240). @default 1024 */
  readonly memorySize?: number;
  /** Timeout of every function (1 s – 15 min); queues hide a received message for 6× this. @default Duration.minutes(1) */
  readonly timeout?: Duration;
  /**
   * Scale to zero: the longest an idle source waits between two looks at its input (its backed-off wake chain,
   * lib/hosts/lambda/source-wakes.ts), so also how late it notices input after a quiet spell, at most (plus two queue
   * hops). Whole seconds, 0 – 15 minutes; `Duration.seconds(0)` keeps idle sources stepping about once a second.
   * @default Duration.seconds(60)
   */
  readonly idleSourceMaxDelay?: Duration;
  /** Receives of a message before its queue moves it to the dead-letter queue. @default 5 */
  readonly maxReceiveCount?: number;
  /** What happens to the bucket, the access-log bucket and the tables when they leave the stack. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** Turn on DynamoDB deletion protection for the state and coordinator tables. @default true */
  readonly deletionProtection?: boolean;
  /** Level of the functions' Powertools logs (`POWERTOOLS_LOG_LEVEL`): DEBUG adds per-invocation detail, ERROR keeps failures only. @default 'INFO' */
  readonly logLevel?: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** Retention of the functions' and the state machine's logs. @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** How long the bucket's server access logs are kept. @default Duration.days(90) */
  readonly accessLogRetention?: Duration;
  /** How long deleted or overwritten objects under `<job>/checkpoints/` stay recoverable (noncurrent versions). @default Duration.days(1) */
  readonly checkpointNoncurrentRetention?: Duration;
  /**
   * Whether the coordinator's schedule starts enabled. Its ticks trigger periodic checkpoints, start a new
   * generation's sources (a deployed job starts on its first tick) and re-wake stalled source wake chains, so with it
   * disabled the job waits until it is enabled. @default true
   */
  readonly scheduleEnabled?: boolean;
  /** Builds the coordinator state machine's ASL. @default defaultCoordinatorDefinition (lib/adapters/aws/coordinator-state-machine.ts) */
  readonly coordinatorDefinition?: CoordinatorDefinitionFactory;
  /**
   * Actions every alarm of the job runs when it goes into alarm (dead-letter queues, function errors and throttles,
   * failed or timed-out executions), e.g. `[new cloudwatchActions.SnsAction(topic)]`; `job.alarms` takes more. @default [] (the alarms only change state)
   */
  readonly alarmActions?: readonly cloudwatch.IAlarmAction[];
  /**
   * Reserved concurrency of the vertex functions: one number for each, or one per vertex id (the others get none).
   * Each vertex's event source is capped to the same number (its maximum concurrency), so Lambda does not read
   * batches it must throttle, whose messages would count towards `maxReceiveCount`. A vertex runs at most
   * `parallelism` invocations at once (one per message group): more is never used, less makes its subtasks take
   * turns. At least 2 (the event source's least cap), or 1 for a vertex of parallelism 1. @default none (the functions draw on the account's unreserved concurrency)
   */
  readonly reservedConcurrency?: number | Readonly<Record<string, number>>;
  /** Reserved concurrency of the coordinator function, at least 2; its event source is capped to the same number. @default none */
  readonly coordinatorReservedConcurrency?: number;
  /** Reserved concurrency of the control-API function, at least 1; requests beyond it are refused with 429. @default none */
  readonly controlApiReservedConcurrency?: number;
  /**
   * CDK constructs for resources the job's sources and sinks declare (`resources` on a connector), by the name, URL or
   * ARN the connector gives (`'my-bucket'`, a queue's URL or name, a table's name): such a resource is granted through
   * the construct's own grant* methods (`grantRead(fn, 'in/*')`, `grantConsumeMessages`, `grantWriteData`, …), which
   * also cover its KMS key, instead of by name. Every other declared resource is granted by name, with exactly the
   * calls its access needs on its ARN. A source's resources go to its vertex's function; a sink's to its vertex's
   * function and, for an exactly-once sink, to every vertex function and the coordinator (which commit its
   * transactions). A key no connector declares, or a construct of another kind or name, fails the synth.
   * @default {} (every declared resource is granted by name)
   */
  readonly resources?: Readonly<Record<string, ConnectorResourceConstruct>>;
}

/** Props of {@link FloeJob.fromJobFile}: FloeJobProps without the built job. */
export type FloeJobFromFileProps = Omit<FloeJobProps, 'job'>;

export { FloeJobOutput };

/** What FloeJob creates for one vertex. */
export interface VertexResources {
  readonly vertex: Vertex;
  readonly function: nodejs.NodejsFunction;
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  /** In alarm while the dead-letter queue holds a message. */
  readonly deadLetterAlarm: cloudwatch.Alarm;
  /** In alarm after a five-minute period in which an invocation of the function failed (a crash or a timeout, not a failed step: those come back as batch item failures). */
  readonly errorsAlarm: cloudwatch.Alarm;
  /** In alarm after a five-minute period in which an invocation of the function was throttled. */
  readonly throttlesAlarm: cloudwatch.Alarm;
}

/** Lambda's limit on a function's environment (keys and values). */
const LAMBDA_ENV_LIMIT_BYTES = 4096;
/** Longest value a deploy-time reference resolves to, for the environment size check. */
const REF_ESTIMATE = { queueUrl: 160, tableName: 100, bucketName: 63, arn: 160 } as const;

/** Everything validation works out before any resource is created. */
interface Resolved {
  readonly plan: PhysicalPlan;
  readonly checkpoint: ResolvedCheckpointOptions;
  readonly schedule: CheckpointSchedule | undefined;
  readonly projectRoot: string;
  readonly jobFile: string;
  readonly operatorEntry: string;
  readonly coordinatorEntry: string;
  readonly controlApiEntry: string;
  readonly timeout: Duration;
  readonly memorySize: number;
  readonly maxReceiveCount: number;
  /** `idleSourceMaxDelay` in ms. */
  readonly idleSourceMaxDelayMs: number;
  readonly runtime: lambda.Runtime;
  /** Reserved concurrency per vertex id, of the vertices that have one. */
  readonly reservedConcurrency: ReadonlyMap<string, number>;
  /** The AWS resources the plan's sources and sinks declare. */
  readonly resourceUses: readonly PlannedResourceUse[];
}

/** The least maximum concurrency of an SQS event source, and the most. */
const EVENT_SOURCE_CONCURRENCY = { min: 2, max: 1000 } as const;

/** The event-source cap that matches a function's reserved concurrency: no more than the reserve, never below Lambda's least. */
function eventSourceCap(reserved: number | undefined): { maxConcurrency?: number } {
  return reserved !== undefined && reserved >= EVENT_SOURCE_CONCURRENCY.min ? { maxConcurrency: Math.min(reserved, EVENT_SOURCE_CONCURRENCY.max) } : {};
}

/** A deployment of one Floe job; see the file comment for what it creates. One FloeJob per stack. */
export class FloeJob extends Construct {
  /** Imports the job file, builds its job from `args`, and creates a FloeJob for it. */
  static async fromJobFile(scope: Construct, id: string, props: FloeJobFromFileProps): Promise<FloeJob> {
    const jobFile = resolve(props.projectRoot ?? process.cwd(), props.jobFile);
    if (!existsSync(jobFile)) {
      throw new FloeJobValidationError(`${scope.node.path}/${id}`, [{ id: FloeJobErrorId.JobFileNotFound, message: `job file '${props.jobFile}' does not exist` }]);
    }
    const job = await loadJob(jobFile, props.args ?? []);
    return new FloeJob(scope, id, { ...props, job });
  }

  /** The physical plan the vertices were created from. */
  readonly plan: PhysicalPlan;
  /** Checkpoint options in force: the job's, overlaid with the props', `dir` being the bucket. */
  readonly checkpointOptions: ResolvedCheckpointOptions;
  /** Checkpoints (`<job>/checkpoints/`) and, by default, savepoints (`<job>/savepoints/`). */
  readonly bucket: s3.Bucket;
  /** Receives the checkpoint bucket's server access logs. */
  readonly accessLogBucket: s3.Bucket;
  /** Operator state (see lib/adapters/aws/dynamodb-state-schema.ts). */
  readonly stateTable: dynamodb.Table;
  /** Coordinator state: the job row, pending checkpoints, history. */
  readonly coordinatorTable: dynamodb.Table;
  /** Per vertex id: its function, queue, dead-letter queue and alarm. */
  readonly vertices: ReadonlyMap<string, VertexResources>;
  /** The state machine's tasks (trigger, abort, complete) and the schedule's ticks, consumed by the coordinator function. */
  readonly coordinatorQueue: sqs.Queue;
  /** Runs the coordinator reducer. */
  readonly coordinatorFunction: nodejs.NodejsFunction;
  /** Serves Flink's REST API for the job (lib/rest/router.ts) from its job row and coordinator executions. */
  readonly controlApiFunction: nodejs.NodejsFunction;
  /**
   * The control API's function URL, IAM-authenticated: a caller signs with SigV4 (service `lambda`) and needs
   * `lambda:InvokeFunctionUrl` and `lambda:InvokeFunction` on the function (`controlApiUrl.grantInvokeUrl(principal)`
   * grants them).
   */
  readonly controlApiUrl: lambda.FunctionUrl;
  /** The checkpoint coordinator: one Standard execution per checkpoint, started by whoever triggers it. */
  readonly stateMachine: sfn.StateMachine;
  /** Sends the coordinator its periodic ticks (directly, or through the ticker); once a minute when `checkpoint.interval` is 0 (sources start and are watched on ticks). */
  readonly schedule?: scheduler.Schedule;
  /** Express state machine ticking the coordinator every `checkpoint.interval` when that is below a minute. */
  readonly ticker?: sfn.StateMachine;
  /**
   * Every alarm of the job: one per dead-letter queue (a message visible), an Errors and a Throttles alarm per
   * function, and a failed- and a timed-out-executions alarm per state machine (a failed checkpoint execution is an
   * aborted checkpoint, a refused trigger or a task that failed for good). No data (an idle job) is not an alarm.
   * Each runs `alarmActions`; add others (OK actions, say) here.
   */
  readonly alarms: readonly cloudwatch.Alarm[];

  constructor(scope: Construct, id: string, props: FloeJobProps) {
    super(scope, id);
    // The log bucket receives access logs through a bucket policy, not an ACL (ACLs are off on new buckets), whatever
    // the app's feature flags say; context must be set before the first child is added.
    this.node.setContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy', true);

    const r = resolveFloeJob(this, props);
    this.plan = r.plan;
    this.checkpointOptions = r.checkpoint;
    const jobName = r.plan.job;
    const stack = Stack.of(this);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    Tags.of(this).add('floe:job', jobName);

    // ---- storage: bucket, access logs, tables ------------------------------------------------------------------
    this.accessLogBucket = new s3.Bucket(this, 'AccessLogBucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: props.accessLogRetention ?? Duration.days(90) }],
      removalPolicy,
    });
    const checkpointsPrefix = `${jobName}/checkpoints/`;
    this.bucket = new s3.Bucket(this, 'CheckpointBucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      // Versioned: a savepoint or manifest deleted or overwritten by mistake stays recoverable. Floe deletes old
      // checkpoints itself (checkpoint.retained), so under <job>/checkpoints/ only the noncurrent versions that
      // leaves behind expire; current objects never do (an incremental chain may reference an old file), and
      // savepoints (never deleted by Floe) have no expiry at all.
      versioned: true,
      lifecycleRules: [
        {
          id: 'expire-deleted-checkpoint-data',
          prefix: checkpointsPrefix,
          noncurrentVersionExpiration: props.checkpointNoncurrentRetention ?? Duration.days(1),
          expiredObjectDeleteMarker: true,
        },
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
      serverAccessLogsBucket: this.accessLogBucket,
      serverAccessLogsPrefix: 'checkpoint-bucket/',
      removalPolicy,
    });
    const { checkpointDir, savepointDir } = snapshotDirs(props, jobName, this.bucket.bucketName);

    this.stateTable = this.table('StateTable', STATE_TABLE, removalPolicy, props.deletionProtection ?? true);
    this.coordinatorTable = this.table('CoordinatorTable', COORDINATOR_TABLE, removalPolicy, props.deletionProtection ?? true);

    // ---- queues --------------------------------------------------------------------------------------------------
    const alarms: cloudwatch.Alarm[] = [];
    /** An alarm on any datapoint above 0; missing data (nothing ran, nothing failed) is not breaching. */
    const alarmAboveZero = (scope: Construct, id: string, metric: cloudwatch.IMetric, what: string) => {
      const alarm = new cloudwatch.Alarm(scope, id, {
        alarmDescription: `Floe job '${jobName}': ${what}`,
        metric,
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      alarms.push(alarm);
      return alarm;
    };
    const deadLetterAlarm = (scope: Construct, id: string, queue: sqs.IQueue, what: string) =>
      alarmAboveZero(scope, id, queue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: cloudwatch.Stats.MAXIMUM }), what);
    const fiveMinuteSum = { period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM };
    const functionAlarms = (scope: Construct, fn: lambda.IFunction, who: string) => ({
      errorsAlarm: alarmAboveZero(scope, 'ErrorsAlarm', fn.metricErrors(fiveMinuteSum), `an invocation of ${who} failed (crashed or timed out)`),
      throttlesAlarm: alarmAboveZero(scope, 'ThrottlesAlarm', fn.metricThrottles(fiveMinuteSum), `an invocation of ${who} was throttled (reserved or account concurrency exhausted)`),
    });
    const executionAlarms = (machine: sfn.StateMachine, id: string, what: string) => {
      alarmAboveZero(this, `${id}FailedAlarm`, machine.metricFailed(fiveMinuteSum), `an execution of ${what} failed`);
      alarmAboveZero(this, `${id}TimedOutAlarm`, machine.metricTimedOut(fiveMinuteSum), `an execution of ${what} timed out`);
    };
    const queueWithDeadLetters = (scopeId: string, description: string, fifo: boolean) => {
      const holder = new Construct(this, scopeId);
      const secure = { encryption: sqs.QueueEncryption.SQS_MANAGED, enforceSSL: true, maxMessageSizeBytes: SQS_MAX_MESSAGE_BYTES } as const;
      const deadLetterQueue = new sqs.Queue(holder, 'DeadLetterQueue', { ...secure, ...(fifo ? { fifo: true } : {}), retentionPeriod: Duration.days(14) });
      const queue = new sqs.Queue(holder, 'Queue', {
        ...secure,
        ...(fifo
          ? {
              fifo: true,
              // Senders set deterministic deduplication ids (envelope identity), so content-based dedup stays off;
              // high-throughput FIFO: dedup and throughput quotas per message group (= receiving subtask).
              contentBasedDeduplication: false,
              deduplicationScope: sqs.DeduplicationScope.MESSAGE_GROUP,
              fifoThroughputLimit: sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
            }
          : {}),
        // AWS's advice for Lambda event sources: at least 6× the function timeout, so retries do not overlap.
        visibilityTimeout: Duration.seconds(r.timeout.toSeconds() * 6),
        retentionPeriod: Duration.days(4),
        deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: r.maxReceiveCount },
      });
      const alarm = deadLetterAlarm(holder, 'DeadLetterAlarm', deadLetterQueue, `messages in the dead-letter queue of ${description}`);
      return { holder, queue, deadLetterQueue, alarm };
    };
    const sources = r.plan.vertices.filter((v) => v.isSource).map((v) => v.id);
    const vertexQueues = new Map(r.plan.vertices.map((v) => [v.id, queueWithDeadLetters(`Vertex-${v.id}`, `vertex '${v.id}'; the job cannot make progress past them`, true)]));
    // The coordinator-tasks queue is a standard queue: the state machine's waitForTaskToken tasks and the schedule's
    // ticks send without a message group, every task is idempotent, and the job row is written with optimistic
    // concurrency, so nothing needs FIFO order, and a failing task must not hold back the ones behind it.
    const coordinatorQueues = queueWithDeadLetters('Coordinator', 'the coordinator-tasks queue; checkpoints stall until they are redriven', false);
    this.coordinatorQueue = coordinatorQueues.queue;

    // ---- coordinator state machine -------------------------------------------------------------------------------
    const substitutions = {
      [Substitution.CoordinatorQueueUrl]: this.coordinatorQueue.queueUrl,
      [Substitution.CoordinatorTableName]: this.coordinatorTable.tableName,
    };
    const stateMachineLogging = (id: string, includeExecutionData: boolean): sfn.LogOptions => ({
      destination: new logs.LogGroup(this, id, { retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY }),
      level: sfn.LogLevel.ALL,
      includeExecutionData,
    });
    const logsAndTracingFinding = {
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Added by StateMachine for logging and tracing: CloudWatch Logs delivery (logs:CreateLogDelivery, logs:DescribeResourcePolicies, …) and X-Ray (xray:PutTraceSegments, …) do not support resource-level permissions.',
    };
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromString((props.coordinatorDefinition ?? defaultCoordinatorDefinition)({ jobName, checkpointTimeoutMs: r.checkpoint.timeout })),
      definitionSubstitutions: substitutions,
      tracingEnabled: true,
      // Every state's input and output would carry the waitForTaskToken tokens ($$.Task.Token in the task messages),
      // and anyone who can read the log group could answer a task with one: the logs record events, not data.
      logs: stateMachineLogging('StateMachineLogs', false),
    });
    // Trigger, Abort and Complete are sqs:sendMessage.waitForTaskToken tasks; Check is a dynamodb:getItem.
    this.coordinatorQueue.grant(this.stateMachine, 'sqs:SendMessage');
    this.coordinatorTable.grant(this.stateMachine, 'dynamodb:GetItem');
    acknowledge(this.stateMachine.role, [logsAndTracingFinding]);
    executionAlarms(this.stateMachine, 'StateMachine', 'the checkpoint state machine (an aborted checkpoint, a refused trigger or a coordinator task that failed for good)');

    // ---- functions -----------------------------------------------------------------------------------------------
    const env = functionEnvironments(r, props, {
      bucketName: this.bucket.bucketName,
      stateTable: this.stateTable.tableName,
      coordinatorTable: this.coordinatorTable.tableName,
      stateMachineArn: this.stateMachine.stateMachineArn,
      coordinatorQueueUrl: this.coordinatorQueue.queueUrl,
      queueUrl: (id) => vertexQueues.get(id)!.queue.queueUrl,
      deadLetterQueueUrl: (id) => vertexQueues.get(id)!.deadLetterQueue.queueUrl,
    });
    const operatorEntry = writeHandlerEntry({ projectRoot: r.projectRoot, kind: 'operator', jobFile: r.jobFile, handlerEntry: r.operatorEntry });
    const coordinatorEntry = writeHandlerEntry({ projectRoot: r.projectRoot, kind: 'coordinator', jobFile: r.jobFile, handlerEntry: r.coordinatorEntry });
    // ---- grants: each role gets the calls its code makes (see the comments), on the resources it makes them on -------
    // Checkpoints (<job>/checkpoints/) and default savepoints (<job>/savepoints/) are all under the job's prefix, and so
    // is a savepoint whose target directory a request names inside it.
    const jobObjects = `${jobName}/*`;
    const checkpointObjects = `${checkpointsPrefix}*`;
    const objectsReason = (who: string, what: string) =>
      `${who} ${what}, whose keys are not known in advance (one directory per checkpoint or savepoint, one file per subtask and operator).`;
    const grantObjects = (fn: iam.IGrantable, actions: string[], pattern: string) =>
      iam.Grant.addToPrincipal({ grantee: fn, actions, resourceArns: [this.bucket.arnForObjects(pattern)] });
    // s3:ListBucket on the bucket without an s3:prefix condition: a HeadObject of a missing manifest (is a checkpoint
    // complete? has another writer won?) answers 404 only to a principal that may list the bucket, else 403, which
    // S3CheckpointStorage.exists must not take for "absent". The bucket holds this job's objects only.
    const grantList = (fn: iam.IGrantable) => iam.Grant.addToPrincipal({ grantee: fn, actions: ['s3:ListBucket'], resourceArns: [this.bucket.bucketArn] });
    /**
     * The snapshot calls of a reducer step's effects and of a subtask's snapshot: Get/Head and conditional Put of
     * manifests and state files anywhere under the job's prefix (savepoints included), and deletes of old checkpoints
     * (checkpoint.retained, discardOldCheckpoints). Savepoints are never deleted by Floe, so deletes stop at
     * <job>/checkpoints/; and s3:DeleteObject only, not s3:DeleteObjectVersion: a delete leaves a noncurrent version,
     * which the bucket keeps for `checkpointNoncurrentRetention`.
     */
    const grantSnapshots = (fn: nodejs.NodejsFunction, who: string) => {
      grantList(fn);
      grantObjects(fn, ['s3:GetObject', 's3:PutObject'], jobObjects);
      grantObjects(fn, ['s3:DeleteObject'], checkpointObjects);
      acknowledge(fn.role!, [
        { id: `AwsSolutions-IAM5[Resource::${nagRef(this.bucket)}/${jobObjects}]`, reason: objectsReason(who, 'reads and writes the checkpoint and savepoint objects of its job (<bucket>/<job>/*)') },
        { id: `AwsSolutions-IAM5[Resource::${nagRef(this.bucket)}/${checkpointObjects}]`, reason: objectsReason(who, 'deletes the objects of checkpoints no longer retained (<bucket>/<job>/checkpoints/*)') },
      ]);
    };
    // The job row, pending checkpoints and status items: ConsistentRead GetItem and conditional PutItem / UpdateItem
    // (DynamoDbCoordinatorStore); nothing is deleted, scanned or queried.
    const grantCoordinatorRow = (fn: iam.IGrantable) => this.coordinatorTable.grant(fn, 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem');
    // Operator state is keyed `<job>/<vertex>/<subtask>` (dynamodb-state-schema.ts): dynamodb:LeadingKeys keeps a role
    // to the partitions of the vertices named. Every action granted with it names its partition keys (no Scan, which
    // ForAllValues would let through with no keys at all).
    const grantStatePartitions = (fn: iam.IGrantable, actions: string[], vertexIds: readonly string[]) =>
      iam.Grant.addToPrincipal({
        grantee: fn,
        actions: actions.map((a) => `dynamodb:${a}`),
        resourceArns: [this.stateTable.tableArn],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': vertexIds.map((id) => `${vertexPartitionPrefix(jobName, id)}*`) } },
      });
    /**
     * Whoever writes a reducer step to the job row (the coordinator for its tasks and ticks, every operator for its
     * acks, a source for its end of input) carries out the step's effects, so these cannot be narrowed per vertex:
     * any vertex's ack may be the last one, whose step writes the manifest, completes the checkpoint (deleting old
     * ones) and may start the next, queued one — barriers into the sources' queues, StartExecution of its watchdog.
     */
    const coordinatorGrants = (fn: nodejs.NodejsFunction, who: string) => {
      for (const id of sources) vertexQueues.get(id)!.queue.grant(fn, 'sqs:SendMessage');
      grantCoordinatorRow(fn);
      grantSnapshots(fn, who);
      this.stateMachine.grantStartExecution(fn);
    };

    const vertices = new Map<string, VertexResources>();
    for (const vertex of r.plan.vertices) {
      const { holder, queue, deadLetterQueue, alarm } = vertexQueues.get(vertex.id)!;
      const fn = this.handlerFunction(holder, r, props, {
        entry: operatorEntry,
        description: `Floe job '${jobName}', vertex '${vertex.id}': ${vertex.name}`,
        environment: env.operator(vertex),
        reservedConcurrency: r.reservedConcurrency.get(vertex.id),
      });
      fn.addEventSource(new SqsEventSource(queue, { batchSize: 10, reportBatchItemFailures: true, ...eventSourceCap(r.reservedConcurrency.get(vertex.id)) }));
      // Envelopes to its outputs (SendMessageBatch); a source also probes their backlog (GetQueueAttributes,
      // downstream-backlog.ts) and sends its own next wake (its queue is one of the sources').
      for (const to of new Set(vertex.outputs.map((e) => e.to))) {
        const output = vertexQueues.get(to)!.queue;
        output.grant(fn, 'sqs:SendMessage');
        if (vertex.isSource) output.grant(fn, 'sqs:GetQueueAttributes');
      }
      // A malformed message is moved to the dead-letter queue by the handler itself, with its reason attached.
      deadLetterQueue.grant(fn, 'sqs:SendMessage');
      // Delayed messages to the coordinator-tasks queue (FIFO queues take no per-message delay): a step schedules its
      // processing-time timer's wake there (lib/hosts/lambda/timer-wakes.ts), an idle source its backed-off next wake
      // (source-wakes.ts); and any step that did work while the job row says quiet reports it there (quiet checkpoints).
      this.coordinatorQueue.grant(fn, 'sqs:SendMessage');
      coordinatorGrants(fn, `The function of vertex '${vertex.id}'`);
      // Its own subtasks' state only: batched reads and writes of leaves, the conditional control-row commit (PutItem,
      // UpdateItem), deletes of a replaced incarnation's leaves, and a Query of an incarnation's leaves.
      grantStatePartitions(fn, ['BatchGetItem', 'Query', 'BatchWriteItem', 'PutItem', 'UpdateItem', 'DeleteItem'], [vertex.id]);
      vertices.set(vertex.id, { vertex, function: fn, queue, deadLetterQueue, deadLetterAlarm: alarm, ...functionAlarms(holder, fn, `the function of vertex '${vertex.id}'`) });
    }
    this.vertices = vertices;

    this.coordinatorFunction = this.handlerFunction(coordinatorQueues.holder, r, props, {
      entry: coordinatorEntry,
      description: `Floe job '${jobName}': checkpoint coordinator tasks`,
      environment: env.coordinator,
      reservedConcurrency: props.coordinatorReservedConcurrency,
    });
    this.coordinatorFunction.addEventSource(
      new SqsEventSource(this.coordinatorQueue, { batchSize: 10, reportBatchItemFailures: true, ...eventSourceCap(props.coordinatorReservedConcurrency) }),
    );
    functionAlarms(coordinatorQueues.holder, this.coordinatorFunction, 'the coordinator function');
    coordinatorGrants(this.coordinatorFunction, 'The coordinator');
    // Timer wakes: the coordinator forwards a due one into its vertex's queue, sends one not yet due back to its own
    // queue with the time left, and wakes those vertices when a generation starts.
    const timerVertices = r.plan.vertices.filter(hasProcessingTimers).map((v) => v.id);
    for (const id of timerVertices) vertexQueues.get(id)!.queue.grant(this.coordinatorFunction, 'sqs:SendMessage');
    // The control rows of the sources and of the vertices with timers tell the coordinator's watchdog how far each wake
    // chain got and which timer is overdue (a BatchGetItem each). A restart by the job's restart strategy
    // (lib/coordination/restarter.ts) clears the job's state (a Scan of its keys, BatchWriteItem deletes) and writes
    // every subtask's share of the checkpoint restored, so the coordinator writes every vertex's partitions.
    grantStatePartitions(this.coordinatorFunction, ['BatchGetItem', 'Query', 'BatchWriteItem', 'PutItem', 'UpdateItem', 'DeleteItem'], r.plan.vertices.map((v) => v.id));
    this.stateTable.grant(this.coordinatorFunction, 'dynamodb:Scan');
    // It asks for its own next tick, delayed, when a restart is due, and sends timer wakes not yet due back
    // (SendMessage with DelaySeconds).
    this.coordinatorQueue.grant(this.coordinatorFunction, 'sqs:SendMessage');
    this.stateMachine.grantTaskResponse(this.coordinatorFunction);

    // ---- the connectors' own resources: a job's input and output (see infra/connector-grants.ts) ------------------
    grantConnectorResources(
      r.resourceUses,
      {
        vertices: new Map([...vertices].map(([id, v]) => [id, { function: v.function, who: `The function of vertex '${id}'` }])),
        coordinator: { function: this.coordinatorFunction, who: 'The coordinator' },
      },
      props.resources,
    );

    // ---- feed queues: the queues sources ask for, and what fills them (see infra/feed-queues.ts) ------------------
    addFeedQueues(this, r.plan, (id) => vertices.get(id)!.function as lambda.Function, (scopeId, description) => queueWithDeadLetters(scopeId, description, false));

    // ---- control API: Flink's REST API behind an IAM-authenticated function URL ------------------------------------
    // A function URL rather than an API Gateway HTTP API: both take payload format 2.0 and SigV4 (AWS_IAM), but the
    // URL adds no resource, stage or access-log group to run, and its timeout is the function's (an HTTP API's is 30 s).
    const controlApi = new Construct(this, 'ControlApi');
    this.controlApiFunction = this.handlerFunction(controlApi, r, props, {
      entry: r.controlApiEntry,
      description: `Floe job '${jobName}': control API (Flink's REST API: jobs, checkpoints, savepoints, stop, cancel)`,
      environment: env.controlApi,
      reservedConcurrency: props.controlApiReservedConcurrency,
    });
    this.controlApiUrl = this.controlApiFunction.addFunctionUrl({ authType: lambda.FunctionUrlAuthType.AWS_IAM });
    functionAlarms(controlApi, this.controlApiFunction, 'the control API function');
    // Reads the job row (and, to cancel, writes it); triggers start a checkpoint's execution and read it back for its status.
    grantCoordinatorRow(this.controlApiFunction);
    this.stateMachine.grantStartExecution(this.controlApiFunction);
    this.stateMachine.grantExecution(this.controlApiFunction, 'states:DescribeExecution');
    // grantExecution names the executions `execution:<machine name>:*`, the name cut from the machine's ARN.
    const machineName = JSON.stringify({ 'Fn::Select': [6, { 'Fn::Split': [':', { Ref: stack.resolve((this.stateMachine.node.defaultChild as CfnElement).logicalId) as string }] }] });
    if (!r.checkpoint.retainOnCancel) {
      // A cancel lists the job's checkpoints and deletes them when they are not retained on cancel; it reads none.
      grantList(this.controlApiFunction);
      grantObjects(this.controlApiFunction, ['s3:DeleteObject'], checkpointObjects);
      acknowledge(this.controlApiFunction.role!, [
        {
          id: `AwsSolutions-IAM5[Resource::${nagRef(this.bucket)}/${checkpointObjects}]`,
          reason: objectsReason('The control API (cancel with checkpoint.retainOnCancel false)', 'deletes the objects of the job\'s checkpoints (<bucket>/<job>/checkpoints/*)'),
        },
      ]);
    }
    acknowledge(this.controlApiFunction.role!, [
      {
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:${machineName}:*]`,
        reason:
          'The control API describes the execution of the checkpoint a trigger id names (<job>-chk-<n>), so it needs DescribeExecution on the executions of this state machine only, whose names are not known in advance. Granted by stateMachine.grantExecution.',
      },
    ]);

    // ---- periodic checkpoints: ticks on the coordinator-tasks queue ----------------------------------------------
    if (r.schedule !== undefined) {
      const scheduleDeadLetterQueue = new sqs.Queue(this, 'ScheduleDeadLetterQueue', {
        retentionPeriod: Duration.days(14),
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
      });
      acknowledge(scheduleDeadLetterQueue, [
        { id: 'AwsSolutions-SQS3', reason: "This queue is the checkpoint schedule's dead-letter queue (EventBridge Scheduler needs a standard queue there); it has an alarm." },
      ]);
      deadLetterAlarm(this, 'ScheduleDeadLetterAlarm', scheduleDeadLetterQueue, 'the checkpoint schedule could not deliver a tick; periodic checkpoints stall');
      const rate = Duration.minutes(r.schedule.rateMinutes);
      const delivery = {
        deadLetterQueue: scheduleDeadLetterQueue,
        retryAttempts: 2,
        // A tick older than the rate is superseded by the next one.
        maxEventAge: Duration.seconds(Math.min(rate.toSeconds(), 86_400)),
      };
      let target: scheduler.IScheduleTarget;
      if (r.schedule.tickSeconds > 0) {
        this.ticker = new sfn.StateMachine(this, 'Ticker', {
          stateMachineType: sfn.StateMachineType.EXPRESS,
          definitionBody: sfn.DefinitionBody.fromString(tickerDefinition(jobName, r.schedule)),
          definitionSubstitutions: { [Substitution.CoordinatorQueueUrl]: this.coordinatorQueue.queueUrl, [Substitution.CoordinatorTableName]: this.coordinatorTable.tableName },
          timeout: Duration.seconds(90),
          tracingEnabled: true,
          logs: stateMachineLogging('TickerLogs', false),
        });
        this.coordinatorQueue.grant(this.ticker, 'sqs:SendMessage');
        // The job row's `quiet` attribute: a quiet job gets one tick a minute.
        this.coordinatorTable.grant(this.ticker, 'dynamodb:GetItem');
        acknowledge(this.ticker.role, [logsAndTracingFinding]);
        executionAlarms(this.ticker, 'Ticker', 'the ticker (periodic checkpoints and the coordinator watchdog may stall)');
        target = new schedulerTargets.StepFunctionsStartExecution(this.ticker, { ...delivery, input: scheduler.ScheduleTargetInput.fromObject({}) });
      } else {
        target = new schedulerTargets.SqsSendMessage(this.coordinatorQueue, {
          ...delivery,
          input: scheduler.ScheduleTargetInput.fromObject(tickMessage(jobName, { scheduledTime: scheduler.ContextAttribute.scheduledTime })),
        });
      }
      this.schedule = new scheduler.Schedule(this, 'CheckpointSchedule', {
        description:
          r.checkpoint.interval > 0
            ? `Floe job '${jobName}': coordinator ticks for periodic checkpoints every ${r.checkpoint.interval}ms`
            : `Floe job '${jobName}': coordinator ticks every minute (source start and watchdog; periodic checkpoints are off)`,
        schedule: scheduler.ScheduleExpression.rate(rate),
        enabled: props.scheduleEnabled ?? true,
        target,
      });
    }
    for (const alarm of alarms) alarm.addAlarmAction(...(props.alarmActions ?? []));
    this.alarms = alarms;

    // ---- outputs the CLI reads -----------------------------------------------------------------------------------
    const output = (key: string, value: string, description: string) => new CfnOutput(this, key, { value, description }).overrideLogicalId(key);
    output(FloeJobOutput.JobName, jobName, 'Floe job name');
    output(FloeJobOutput.PlanFingerprint, r.plan.fingerprint, 'Fingerprint of the deployed physical plan');
    output(FloeJobOutput.CheckpointBucket, this.bucket.bucketName, 'Bucket of checkpoints and savepoints');
    output(FloeJobOutput.CheckpointDir, checkpointDir, 'Checkpoint root; checkpoints are under <job>/checkpoints/');
    output(FloeJobOutput.SavepointDir, savepointDir, 'Default savepoint directory');
    output(FloeJobOutput.StateTable, this.stateTable.tableName, 'DynamoDB table of operator state');
    output(FloeJobOutput.CoordinatorTable, this.coordinatorTable.tableName, 'DynamoDB table of the coordinator');
    output(FloeJobOutput.StateMachineArn, this.stateMachine.stateMachineArn, 'Coordinator state machine');
    output(FloeJobOutput.CoordinatorQueueUrl, this.coordinatorQueue.queueUrl, 'Coordinator-tasks queue (state machine tasks and schedule ticks)');
    output(FloeJobOutput.ControlApiUrl, this.controlApiUrl.url, "Control API (Flink's REST API) function URL; IAM auth, sign requests with SigV4 for service lambda");
    output(FloeJobOutput.QueueUrls, stack.toJsonString(Object.fromEntries([...vertices].map(([id, v]) => [id, v.queue.queueUrl]))), 'Input queue URL per vertex, as JSON');
  }

  private table(id: string, schema: TableSchema, removalPolicy: RemovalPolicy, deletionProtection: boolean): dynamodb.Table {
    const attr = (k: TableSchema['partitionKey']) => ({ name: k.name, type: k.type as dynamodb.AttributeType });
    return new dynamodb.Table(this, id, {
      partitionKey: attr(schema.partitionKey),
      ...(schema.sortKey ? { sortKey: attr(schema.sortKey) } : {}),
      ...(schema.timeToLiveAttribute ? { timeToLiveAttribute: schema.timeToLiveAttribute } : {}),
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      deletionProtection,
      removalPolicy,
    });
  }

  /** A bundled function with its own role (no managed policies) and log group, granted everything else by the caller. */
  private handlerFunction(
    scope: Construct,
    r: Resolved,
    props: FloeJobProps,
    options: { entry: string; description: string; environment: Record<string, string>; reservedConcurrency: number | undefined },
  ): nodejs.NodejsFunction {
    const logGroup = new logs.LogGroup(scope, 'Logs', { retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY });
    const role = new iam.Role(scope, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'), description: options.description.slice(0, 1000) });
    logGroup.grantWrite(role);
    return new nodejs.NodejsFunction(scope, 'Function', {
      entry: options.entry,
      handler: 'handler',
      projectRoot: r.projectRoot,
      depsLockFilePath: resolve(r.projectRoot, 'package-lock.json'),
      runtime: r.runtime,
      architecture: props.architecture ?? lambda.Architecture.ARM_64,
      memorySize: r.memorySize,
      timeout: r.timeout,
      description: options.description.slice(0, 256),
      environment: options.environment,
      ...(options.reservedConcurrency === undefined ? {} : { reservedConcurrentExecutions: options.reservedConcurrency }),
      role,
      logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      bundling: {
        format: nodejs.OutputFormat.ESM,
        target: 'node24',
        mainFields: ['module', 'main'],
        bundleAwsSDK: true,
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        // Bundled CommonJS dependencies may call require(); ESM output has none unless given one.
        banner: "import { createRequire as __floeCreateRequire } from 'node:module'; const require = __floeCreateRequire(import.meta.url);",
        logLevel: nodejs.LogLevel.WARNING,
      },
    });
  }
}

/** The vertices whose queues a vertex's function sends to: its outputs, and the sources (barriers, as its coordinator gateway carries out effects). */
function vertexSendsTo(plan: PhysicalPlan, vertex: Vertex): string[] {
  return [...new Set([...vertex.outputs.map((e) => e.to), ...plan.vertices.filter((v) => v.isSource).map((v) => v.id)])];
}

/** Checks everything that can be checked before creating resources, collecting every problem; throws one FloeJobValidationError. */
function resolveFloeJob(scope: Construct, props: FloeJobProps): Resolved {
  const problems: FloeJobProblem[] = [];
  const projectRoot = resolve(props.projectRoot ?? process.cwd());
  const stack = Stack.of(scope);
  if (stack.node.findAll().some((c) => c !== scope && c instanceof FloeJob)) {
    problems.push({ id: FloeJobErrorId.OnePerStack, message: `stack '${stack.stackName}' already holds a FloeJob; its outputs (read by the CLI) would collide, so use one stack per job` });
  }

  const jobFile = resolve(projectRoot, props.jobFile);
  if (!existsSync(jobFile)) problems.push({ id: FloeJobErrorId.JobFileNotFound, message: `job file '${props.jobFile}' does not exist (resolved against ${projectRoot})` });
  const entries = {
    operator: props.operatorEntry ?? 'functions/operator.ts',
    coordinator: props.coordinatorEntry ?? 'functions/coordinator.ts',
    'control-API': props.controlApiEntry ?? 'functions/control-api.ts',
  };
  const operatorEntry = resolve(projectRoot, entries.operator);
  const coordinatorEntry = resolve(projectRoot, entries.coordinator);
  const controlApiEntry = resolve(projectRoot, entries['control-API']);
  const entryFiles = [
    ['operator', operatorEntry, entries.operator],
    ['coordinator', coordinatorEntry, entries.coordinator],
    ['control-API', controlApiEntry, entries['control-API']],
  ] as const;
  for (const [kind, file, given] of entryFiles) {
    if (!existsSync(file)) problems.push({ id: FloeJobErrorId.HandlerEntryNotFound, message: `${kind} handler entry '${given}' does not exist (resolved against ${projectRoot})` });
  }
  for (const [what, file] of [['job file', jobFile], ...entryFiles.map(([kind, f]) => [`${kind} handler entry`, f] as const)] as const) {
    if (relative(projectRoot, file).startsWith('..')) problems.push({ id: FloeJobErrorId.PathOutsideProjectRoot, message: `${what} '${file}' is outside the project root ${projectRoot}; bundling reads only files below it` });
  }

  // The job and its parallelism.
  const parallelism = props.parallelism;
  const overrideValid = parallelism === undefined || (Number.isInteger(parallelism) && parallelism >= 1);
  if (!overrideValid) problems.push({ id: FloeJobErrorId.InvalidParallelism, message: `parallelism must be a positive integer, got ${parallelism}` });
  let plan: PhysicalPlan | undefined;
  try {
    plan = buildPlan(props.job, {
      ...(overrideValid && parallelism !== undefined ? { parallelism } : {}),
      ...(props.checkpoint ? { checkpoint: props.checkpoint } : {}),
      stepTimeoutMs: (props.timeout ?? Duration.minutes(1)).toMilliseconds(),
    });
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    for (const p of e.problems) {
      const id = /parallelism \d+ is above maxParallelism/.test(p) ? FloeJobErrorId.ParallelismAboveMaxParallelism : FloeJobErrorId.InvalidJob;
      problems.push({ id, message: `job '${props.job.name}': ${p}` });
    }
  }

  // Checkpoints and savepoints.
  let checkpoint: ResolvedCheckpointOptions | undefined;
  try {
    checkpoint = resolveCheckpointOptions({ ...props.job.options.checkpoint, ...props.checkpoint });
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    for (const p of e.problems) problems.push({ id: FloeJobErrorId.InvalidCheckpointOptions, message: p });
  }
  const schedule = checkpoint ? planCheckpointSchedule(checkpoint.interval, problems) : undefined;
  if (props.savepoint?.dir !== undefined && !props.savepoint.dir.startsWith('s3://')) {
    problems.push({ id: FloeJobErrorId.SavepointDirNotS3, message: `savepoint.dir must be an s3:// location on AWS, got '${props.savepoint.dir}'` });
  }

  // Lambda and SQS limits.
  const timeout = props.timeout ?? Duration.minutes(1);
  const memorySize = props.memorySize ?? 1024;
  const maxReceiveCount = props.maxReceiveCount ?? 5;
  const runtime = props.runtime ?? lambda.Runtime.NODEJS_24_X;
  if (!Token.isUnresolved(timeout.toMilliseconds()) && (timeout.toMilliseconds() < 1000 || timeout.toSeconds() > 900 || timeout.toMilliseconds() % 1000 !== 0)) {
    problems.push({ id: FloeJobErrorId.FunctionTimeoutOutOfRange, message: `timeout must be a whole number of seconds from 1s to 15 minutes (Lambda's limits), got ${timeout.toHumanString()}` });
  }
  if (!Number.isInteger(memorySize) || memorySize < 128 || memorySize > 10_240) {
    problems.push({ id: FloeJobErrorId.MemorySizeOutOfRange, message: `memorySize must be an integer from 128 to 10240 MB (Lambda's limits), got ${memorySize}` });
  }
  if (!Number.isInteger(maxReceiveCount) || maxReceiveCount < 1) {
    problems.push({ id: FloeJobErrorId.MaxReceiveCountOutOfRange, message: `maxReceiveCount must be a positive integer, got ${maxReceiveCount}` });
  }
  const idleSourceMaxDelayMs = (props.idleSourceMaxDelay ?? Duration.seconds(SOURCE_IDLE_MAX_DELAY_MS / 1000)).toMilliseconds();
  if (!Token.isUnresolved(idleSourceMaxDelayMs) && (idleSourceMaxDelayMs < 0 || idleSourceMaxDelayMs > MAX_DELAY_SECONDS * 1000 || idleSourceMaxDelayMs % 1000 !== 0)) {
    problems.push({
      id: FloeJobErrorId.IdleSourceMaxDelayOutOfRange,
      message: `idleSourceMaxDelay must be a whole number of seconds from 0 to 15 minutes (SQS's longest message delay), got ${props.idleSourceMaxDelay!.toHumanString()}`,
    });
  }
  if (runtime.family !== lambda.RuntimeFamily.NODEJS) problems.push({ id: FloeJobErrorId.UnsupportedRuntime, message: `runtime must be a Node.js runtime, got ${runtime.name}` });
  const reservedConcurrency = plan ? resolveReservedConcurrency(plan, props, problems) : new Map<string, number>();
  // The connectors' own AWS resources, and the constructs given for them.
  const resourceUses = plan ? plannedResourceUses(plan) : [];
  if (plan) problems.push(...connectorResourceProblems(plan.job, resourceUses, props.resources));

  if (problems.length > 0 || !plan || !checkpoint) throw new FloeJobValidationError(scope.node.path, problems);
  const resolved: Resolved = {
    plan,
    checkpoint,
    schedule,
    projectRoot,
    jobFile,
    operatorEntry,
    coordinatorEntry,
    controlApiEntry,
    timeout,
    memorySize,
    maxReceiveCount,
    idleSourceMaxDelayMs,
    runtime,
    reservedConcurrency,
    resourceUses,
  };
  // Last, since it needs a plan: a job with other problems reports those first.
  const environment = environmentProblems(resolved, props);
  if (environment.length > 0) throw new FloeJobValidationError(scope.node.path, environment);
  return resolved;
}

/** Each vertex's reserved concurrency from `reservedConcurrency`, and the problems of all three concurrency props. */
function resolveReservedConcurrency(plan: PhysicalPlan, props: FloeJobProps, problems: FloeJobProblem[]): Map<string, number> {
  const out = new Map<string, number>();
  const given = props.reservedConcurrency;
  const ids = plan.vertices.map((v) => v.id);
  const perVertex: [string, number][] = given === undefined ? [] : typeof given === 'number' ? ids.map((id) => [id, given]) : Object.entries(given);
  const outOfRange = (what: string, value: number, least: number, why: string) =>
    problems.push({ id: FloeJobErrorId.ReservedConcurrencyOutOfRange, message: `${what} must be an integer of at least ${least} (${why}), got ${value}` });
  for (const [id, value] of perVertex) {
    const vertex = plan.vertices.find((v) => v.id === id);
    if (!vertex) {
      problems.push({ id: FloeJobErrorId.UnknownVertex, message: `reservedConcurrency names vertex '${id}', which job '${plan.job}' does not have; its vertices are ${ids.map((v) => `'${v}'`).join(', ')}` });
      continue;
    }
    // One message group (subtask) is never handed to two invocations at once; more groups may be, up to the cap.
    const least = vertex.parallelism === 1 ? 1 : EVENT_SOURCE_CONCURRENCY.min;
    const why = vertex.parallelism === 1 ? 'a reserve of 0 stops the function' : `an SQS event source is capped at 2 or more, and the vertex has parallelism ${vertex.parallelism}`;
    if (!Number.isInteger(value) || value < least) outOfRange(`reservedConcurrency of vertex '${id}'`, value, least, why);
    else out.set(id, value);
  }
  const coordinator = props.coordinatorReservedConcurrency;
  if (coordinator !== undefined && !(Number.isInteger(coordinator) && coordinator >= EVENT_SOURCE_CONCURRENCY.min)) {
    outOfRange('coordinatorReservedConcurrency', coordinator, EVENT_SOURCE_CONCURRENCY.min, 'an SQS event source is capped at 2 or more');
  }
  const controlApi = props.controlApiReservedConcurrency;
  if (controlApi !== undefined && !(Number.isInteger(controlApi) && controlApi >= 1)) outOfRange('controlApiReservedConcurrency', controlApi, 1, 'a reserve of 0 stops the function');
  return out;
}

/** Deploy-time values a function environment refers to. */
interface EnvironmentRefs {
  readonly bucketName: string;
  readonly stateTable: string;
  readonly coordinatorTable: string;
  readonly stateMachineArn: string;
  readonly coordinatorQueueUrl: string;
  readonly queueUrl: (vertex: string) => string;
  readonly deadLetterQueueUrl: (vertex: string) => string;
}

/** Where checkpoints and, by default, savepoints go in the bucket. */
function snapshotDirs(props: FloeJobProps, jobName: string, bucketName: string): { checkpointDir: string; savepointDir: string } {
  const checkpointDir = `s3://${bucketName}`;
  const jobDir = props.job.options.savepoint?.dir;
  return { checkpointDir, savepointDir: props.savepoint?.dir ?? (jobDir?.startsWith('s3://') ? jobDir : `${checkpointDir}/${jobName}/savepoints`) };
}

/** The environment of each function (see FloeEnv in handler-contract.ts). */
function functionEnvironments(
  r: Resolved,
  props: FloeJobProps,
  refs: EnvironmentRefs,
): { operator: (v: Vertex) => Record<string, string>; coordinator: Record<string, string>; controlApi: Record<string, string> } {
  const jobName = r.plan.job;
  const { checkpointDir, savepointDir } = snapshotDirs(props, jobName, refs.bucketName);
  // Powertools for AWS Lambda (functions/telemetry.ts): the logs' service, the EMF metrics' namespace, the log level.
  const powertools: Record<string, string> = {
    POWERTOOLS_SERVICE_NAME: 'floe',
    POWERTOOLS_METRICS_NAMESPACE: 'Floe',
    POWERTOOLS_LOG_LEVEL: props.logLevel ?? 'INFO',
  };
  const common: Record<string, string> = {
    [FloeEnv.JobModule]: BUNDLE_MODULE_PATH,
    [FloeEnv.JobArgs]: JSON.stringify(props.args ?? []),
    ...(props.parallelism !== undefined ? { [FloeEnv.Parallelism]: String(props.parallelism) } : {}),
    [FloeEnv.JobName]: jobName,
    [FloeEnv.JobFile]: relative(r.projectRoot, r.jobFile).split(sep).join('/'),
    [FloeEnv.PlanFingerprint]: r.plan.fingerprint,
    [FloeEnv.FunctionTimeoutMs]: String(r.timeout.toMilliseconds()),
    [FloeEnv.CheckpointOptions]: JSON.stringify({ ...r.checkpoint, dir: checkpointDir }),
    [FloeEnv.CheckpointDir]: checkpointDir,
    [FloeEnv.SavepointDir]: savepointDir,
    [FloeEnv.CheckpointBucket]: refs.bucketName,
    [FloeEnv.CoordinatorTable]: refs.coordinatorTable,
    [FloeEnv.StateMachineArn]: refs.stateMachineArn,
    NODE_OPTIONS: '--enable-source-maps',
    ...powertools,
  };
  const queueUrls = (ids: readonly string[]) => JSON.stringify(Object.fromEntries(ids.map((id) => [id, refs.queueUrl(id)])));
  const sources = r.plan.vertices.filter((v) => v.isSource).map((v) => v.id);
  const timerVertices = r.plan.vertices.filter(hasProcessingTimers).map((v) => v.id);
  const tasksQueue = { [FloeEnv.CoordinatorQueueUrl]: refs.coordinatorQueueUrl, [FloeEnv.IdleSourceMaxDelayMs]: String(r.idleSourceMaxDelayMs) };
  return {
    operator: (v) => ({
      ...common,
      [FloeEnv.StateTable]: refs.stateTable,
      [FloeEnv.Vertex]: v.id,
      [FloeEnv.VertexQueueUrls]: queueUrls(vertexSendsTo(r.plan, v)),
      [FloeEnv.DeadLetterQueueUrl]: refs.deadLetterQueueUrl(v.id),
      [FloeEnv.MaxReceiveCount]: String(r.maxReceiveCount),
      ...tasksQueue,
    }),
    // The coordinator always knows its own queue: it asks for delayed ticks of its own (restarts).
    coordinator: {
      ...common,
      [FloeEnv.StateTable]: refs.stateTable,
      [FloeEnv.VertexQueueUrls]: queueUrls([...new Set([...sources, ...timerVertices])]),
      ...tasksQueue,
    },
    // The control API runs no job code: it needs the job's name and resources, not its module, plan or options.
    controlApi: {
      [FloeEnv.JobName]: jobName,
      [FloeEnv.CheckpointDir]: checkpointDir,
      [FloeEnv.SavepointDir]: savepointDir,
      [FloeEnv.CheckpointBucket]: refs.bucketName,
      [FloeEnv.CoordinatorTable]: refs.coordinatorTable,
      [FloeEnv.StateMachineArn]: refs.stateMachineArn,
      NODE_OPTIONS: '--enable-source-maps',
      ...powertools,
    },
  };
}

/**
 * Sizes each function's environment with deploy-time references at their longest (a queue URL, say), so a job
 * whose fan-out would overflow Lambda's 4 KB fails at synth rather than at deploy.
 */
function environmentProblems(r: Resolved, props: FloeJobProps): FloeJobProblem[] {
  const x = (n: number) => 'x'.repeat(n);
  const env = functionEnvironments(r, props, {
    bucketName: x(REF_ESTIMATE.bucketName),
    stateTable: x(REF_ESTIMATE.tableName),
    coordinatorTable: x(REF_ESTIMATE.tableName),
    stateMachineArn: x(REF_ESTIMATE.arn),
    coordinatorQueueUrl: x(REF_ESTIMATE.queueUrl),
    queueUrl: () => x(REF_ESTIMATE.queueUrl),
    deadLetterQueueUrl: () => x(REF_ESTIMATE.queueUrl),
  });
  const size = (vars: Record<string, string>) => Object.entries(vars).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
  const problems: FloeJobProblem[] = [];
  const check = (who: string, vars: Record<string, string>) => {
    const bytes = size(vars);
    if (bytes > LAMBDA_ENV_LIMIT_BYTES) {
      problems.push({ id: FloeJobErrorId.EnvironmentTooLarge, message: `${who}: its environment would be about ${bytes} bytes, above Lambda's ${LAMBDA_ENV_LIMIT_BYTES} (too many queues to send to, or long arguments)` });
    }
  };
  for (const v of r.plan.vertices) check(`vertex '${v.id}'`, env.operator(v));
  check('the coordinator', env.coordinator);
  check('the control API', env.controlApi);
  return problems;
}
