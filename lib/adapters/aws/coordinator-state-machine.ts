/**
 * The checkpoint coordinator's state machine (Amazon States Language, JSONPath), generated in one place for CDK and
 * emulator mode alike, and the messages its tasks exchange with the coordinator-tasks queue.
 *
 * One Standard execution per checkpoint, named `<job>-chk-<n>`: starting it twice with the same input while it runs
 * returns the same execution, and a name that was used is refused — so a checkpoint never gets two watchdogs.
 *
 *     Trigger ──▶ Wait ──▶ Check ──▶ Decide ── COMPLETED ──▶ Complete ──▶ Completed (Succeed)
 *                  ▲         (getItem)   │ ─── FAILED ─────▶ Aborted (Fail)
 *                  │                     │ ─── no polls left ─▶ Abort ──▶ AfterAbort ── COMPLETED ─▶ Complete
 *                  │                     │                                  │ ───────── FAILED ────▶ Aborted
 *                  ├──── Countdown ◀─────┘ (default)                        │ ───────── otherwise ─▶ Wait
 *                  └────────────────────────────────────────────────────────┘
 *
 * - Trigger, Abort and Complete need code. Each is `sqs:sendMessage.waitForTaskToken` to the coordinator-tasks
 *   queue; its consumer (a Lambda on AWS, an in-process poller in emulator mode) runs the task and answers with
 *   SendTaskSuccess / SendTaskFailure. No Lambda integration is used, so the same definition runs on moto.
 * - Check reads the checkpoint's status item with a direct `dynamodb:getItem` (no Lambda busy-polling).
 * - The timeout is a countdown, not a clock comparison: Trigger returns `remaining`, one element per poll left
 *   before the checkpoint's deadline, and Countdown drops one per round with a JSONPath slice. (Emulators parse
 *   only whole-second `Z` timestamps, so comparing `$$.State.EnteredTime` is not portable.) When none are left,
 *   Abort applies a `tick` to the reducer, which alone decides: it expires a checkpoint still waiting for acks,
 *   but never one whose manifest is being written; Abort then re-runs a stuck manifest write and rewrites the
 *   status item from the job row.
 * - Trigger also chooses the poll interval (`pollSeconds`, at least the configured one), so that a long checkpoint
 *   timeout stays well inside the 25,000 history events of an execution.
 * - Task errors: `Floe.Retryable` and `States.Timeout` (a task message lost, or its consumer died) are retried
 *   with backoff — every task is idempotent; `Floe.TriggerRefused` ends in NotTriggered; anything else in TaskFailed.
 */
import { z } from 'zod';
import { createHash } from 'node:crypto';
import { ErrorCode, FloeError } from '../../core/errors.js';
import { CoordinatorAttr } from './dynamodb-coordinator-schema.js';

/** Names of the state machine's states. */
export const CoordinatorStateName = {
  Trigger: 'Trigger',
  Wait: 'Wait',
  Check: 'Check',
  Decide: 'Decide',
  Countdown: 'Countdown',
  Abort: 'Abort',
  AfterAbort: 'AfterAbort',
  Complete: 'Complete',
  Completed: 'Completed',
  Aborted: 'Aborted',
  NotTriggered: 'NotTriggered',
  TaskFailed: 'TaskFailed',
} as const;

/** Error names tasks report with SendTaskFailure, and the errors the execution fails with. */
export const CoordinatorError = {
  /** A task failed for a reason that may go away: Step Functions retries it. */
  Retryable: 'Floe.Retryable',
  /** The Trigger task could not start the checkpoint (no free slot, job not running, id not next). */
  TriggerRefused: 'Floe.TriggerRefused',
  /** A task failed for good. */
  TaskFailed: 'Floe.TaskFailed',
  /** The checkpoint was aborted (timeout, decline, failed manifest, subsumed). */
  CheckpointAborted: 'Floe.CheckpointAborted',
} as const;
export type CoordinatorError = (typeof CoordinatorError)[keyof typeof CoordinatorError];

/** Version of the task messages. */
export const COORDINATOR_TASK_MESSAGE_VERSION = 1;

/** Options of {@link coordinatorStateMachineDefinition}. */
export interface CoordinatorStateMachineOptions {
  /** The job the state machine coordinates; one state machine per job. */
  readonly job: string;
  /** Name of the coordinator table. */
  readonly tableName: string;
  /** URL of the coordinator-tasks queue. */
  readonly tasksQueueUrl: string;
  /** Seconds between two status checks; Trigger may choose more for long checkpoint timeouts. @default 1 */
  readonly pollIntervalSeconds?: number;
  /** Seconds a task may take before Step Functions sends it again. @default 300 */
  readonly taskTimeoutSeconds?: number;
  /** Retries of a task that timed out or failed retryably. @default 5 */
  readonly taskRetries?: number;
  /** Upper bound of an execution's run time in seconds, a backstop behind the countdown. @default 86400 */
  readonly executionTimeoutSeconds?: number;
}

/** One state of an ASL definition (the fields this state machine uses). */
export interface AslState {
  readonly Type: 'Task' | 'Wait' | 'Choice' | 'Pass' | 'Succeed' | 'Fail';
  readonly Comment?: string;
  readonly Next?: string;
  readonly End?: boolean;
  readonly Resource?: string;
  readonly Parameters?: Readonly<Record<string, unknown>>;
  readonly InputPath?: string;
  readonly ResultPath?: string;
  readonly TimeoutSeconds?: number;
  readonly Seconds?: number;
  readonly SecondsPath?: string;
  readonly Retry?: readonly AslRetrier[];
  readonly Catch?: readonly AslCatcher[];
  readonly Choices?: readonly AslChoiceRule[];
  readonly Default?: string;
  readonly Error?: string;
  readonly Cause?: string;
}

/** A Retry entry. */
export interface AslRetrier {
  readonly ErrorEquals: readonly string[];
  readonly IntervalSeconds?: number;
  readonly MaxAttempts?: number;
  readonly BackoffRate?: number;
}

/** A Catch entry. */
export interface AslCatcher {
  readonly ErrorEquals: readonly string[];
  readonly ResultPath?: string;
  readonly Next: string;
}

/** A Choice rule (JSONPath comparison operators). */
export interface AslChoiceRule {
  readonly Variable?: string;
  readonly And?: readonly AslChoiceRule[];
  readonly StringEquals?: string;
  readonly IsPresent?: boolean;
  readonly Next?: string;
}

/** An ASL state machine definition. */
export interface AslDefinition {
  readonly Comment: string;
  readonly QueryLanguage: 'JSONPath';
  readonly StartAt: string;
  readonly TimeoutSeconds: number;
  readonly States: Readonly<Record<string, AslState>>;
}

/** The execution input: the checkpoint to trigger and, for one the user asked for, what to take. */
export interface CheckpointExecutionInput {
  readonly checkpointId: number;
  readonly request?: CheckpointRequestInput;
}

/** A user's request carried by an execution input (a savepoint, a stop-with-savepoint). */
export interface CheckpointRequestInput {
  readonly requestId?: string;
  readonly kind: 'checkpoint' | 'savepoint';
  readonly dir?: string;
  readonly termination?: 'stop' | 'drain' | 'end';
}

/** What the Trigger task answers (`$.checkpoint` in the execution). */
export interface TriggerTaskOutput {
  readonly checkpointId: number;
  /** Partition key of the checkpoint's status item. */
  readonly statusKey: string;
  /** Seconds between status checks. */
  readonly pollSeconds: number;
  /** One element per status check left before the checkpoint's deadline. */
  readonly remaining: readonly number[];
}

/** What the Abort task answers (`$.abort`): the checkpoint's status once the reducer had its say. */
export interface AbortTaskOutput {
  readonly status: 'IN_PROGRESS' | 'COMPLETED' | 'FAILED';
  readonly reason?: string;
}

/** What the Complete task answers (`$.completion`). */
export interface CompleteTaskOutput {
  /** Sink transactions committed (again: commits are idempotent). */
  readonly committed: number;
}

const positiveInt = z.number().int().positive();
const requestSchema = z.object({
  requestId: z.string().min(1).optional(),
  kind: z.enum(['checkpoint', 'savepoint']),
  dir: z.string().min(1).optional(),
  termination: z.enum(['stop', 'drain', 'end']).optional(),
});
const header = { v: z.literal(COORDINATOR_TASK_MESSAGE_VERSION), job: z.string().min(1) };
const taskMessageSchema = z.discriminatedUnion('type', [
  z.object({
    ...header,
    type: z.literal('trigger'),
    input: z.object({ checkpointId: positiveInt, request: requestSchema.optional() }),
    pollIntervalSeconds: positiveInt,
    taskToken: z.string().min(1),
  }),
  z.object({ ...header, type: z.literal('abort'), checkpointId: positiveInt, taskToken: z.string().min(1) }),
  z.object({ ...header, type: z.literal('complete'), checkpointId: positiveInt, taskToken: z.string().min(1) }),
  /** Sent by a schedule, not by the state machine: the coordinator's periodic heartbeat; EventBridge Scheduler's carry the time they were scheduled for. */
  z.object({ ...header, type: z.literal('tick'), scheduledTime: z.string().optional() }),
]);

/** A message on the coordinator-tasks queue. */
export type CoordinatorTaskMessage = z.infer<typeof taskMessageSchema>;

/** Parses a coordinator-tasks message body; anything else is a terminal MALFORMED_MESSAGE naming every problem. */
export function parseCoordinatorTaskMessage(body: string, source = 'message'): CoordinatorTaskMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    // Not JSON.parse's message, nor the error as cause: V8 quotes the body in it, and a task message's body holds
    // its task token, which must not reach the logs.
    throw new FloeError(ErrorCode.MalformedMessage, `${source}: body is not JSON (${body.length} characters)`);
  }
  const parsed = taskMessageSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(body)'}: ${i.message}`);
    throw new FloeError(ErrorCode.MalformedMessage, `${source}: body is not a coordinator task: ${problems.join('; ')}`, { cause: parsed.error });
  }
  return parsed.data;
}

/** Step Functions execution names: 1–80 characters of letters, digits, `-` and `_`. */
const EXECUTION_NAME_MAX = 80;

/** The execution name of checkpoint `id`: `<job>-chk-<n>`, the job name made safe (and shortened with a hash when too long). */
export function checkpointExecutionName(job: string, checkpointId: number): string {
  const suffix = `-chk-${checkpointId}`;
  const safe = job.replace(/[^A-Za-z0-9_-]/g, '_');
  const room = EXECUTION_NAME_MAX - suffix.length;
  if (safe === job && safe.length <= room) return `${safe}${suffix}`;
  // Changed or cut names get a hash of the real name, so two jobs cannot end up with one name.
  const hash = createHash('sha256').update(job).digest('hex').slice(0, 8);
  return `${safe.slice(0, room - hash.length - 1)}_${hash}${suffix}`;
}

/** The execution input of checkpoint `id`, with a fixed key order so that two starters send identical input. */
export function checkpointExecutionInput(checkpointId: number, request?: CheckpointRequestInput): string {
  if (request === undefined) return JSON.stringify({ checkpointId });
  const { requestId, kind, dir, termination } = request;
  return JSON.stringify({ checkpointId, request: { requestId, kind, dir, termination } });
}

/** Builds the coordinator's ASL definition; serialize it with `JSON.stringify` (CDK tokens in the options survive). */
export function coordinatorStateMachineDefinition(options: CoordinatorStateMachineOptions): AslDefinition {
  const pollIntervalSeconds = options.pollIntervalSeconds ?? 1;
  const taskTimeoutSeconds = options.taskTimeoutSeconds ?? 300;
  const taskRetries = options.taskRetries ?? 5;
  const executionTimeoutSeconds = options.executionTimeoutSeconds ?? 86_400;
  const problems: string[] = [];
  const positive = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 1) problems.push(`${name} must be an integer >= 1, got ${v}`);
  };
  positive('pollIntervalSeconds', pollIntervalSeconds);
  positive('taskTimeoutSeconds', taskTimeoutSeconds);
  positive('executionTimeoutSeconds', executionTimeoutSeconds);
  if (!Number.isInteger(taskRetries) || taskRetries < 0) problems.push(`taskRetries must be an integer >= 0, got ${taskRetries}`);
  if (!options.job) problems.push('job is required');
  if (!options.tableName) problems.push('tableName is required');
  if (!options.tasksQueueUrl) problems.push('tasksQueueUrl is required');
  if (problems.length > 0) throw new FloeError(ErrorCode.InvalidOptions, `coordinator state machine options are invalid: ${problems.join('; ')}`);

  const S = CoordinatorStateName;
  const status = `$.status.Item.${CoordinatorAttr.checkpointStatus}.S`;
  const statusIs = (value: string, next: string): AslChoiceRule => ({ And: [{ Variable: status, IsPresent: true }, { Variable: status, StringEquals: value }], Next: next });
  const task = (type: 'trigger' | 'abort' | 'complete', body: Record<string, unknown>, resultPath: string, next: string, catchers: AslCatcher[] = []): AslState => ({
    Type: 'Task',
    Resource: 'arn:aws:states:::sqs:sendMessage.waitForTaskToken',
    Parameters: {
      QueueUrl: options.tasksQueueUrl,
      MessageBody: { v: COORDINATOR_TASK_MESSAGE_VERSION, type, job: options.job, ...body, 'taskToken.$': '$$.Task.Token' },
    },
    ResultPath: resultPath,
    TimeoutSeconds: taskTimeoutSeconds,
    Retry: taskRetries === 0 ? [] : [{ ErrorEquals: [CoordinatorError.Retryable, 'States.Timeout'], IntervalSeconds: 1, MaxAttempts: taskRetries, BackoffRate: 2 }],
    Catch: [...catchers, { ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: S.TaskFailed }],
    Next: next,
  });

  return {
    Comment: `Floe checkpoint coordinator of job '${options.job}': one execution per checkpoint`,
    QueryLanguage: 'JSONPath',
    StartAt: S.Trigger,
    TimeoutSeconds: executionTimeoutSeconds,
    States: {
      [S.Trigger]: task('trigger', { 'input.$': '$', pollIntervalSeconds }, '$.checkpoint', S.Wait, [
        { ErrorEquals: [CoordinatorError.TriggerRefused], ResultPath: '$.error', Next: S.NotTriggered },
      ]),
      [S.Wait]: { Type: 'Wait', SecondsPath: '$.checkpoint.pollSeconds', Next: S.Check },
      [S.Check]: {
        Type: 'Task',
        Resource: 'arn:aws:states:::dynamodb:getItem',
        Parameters: {
          TableName: options.tableName,
          Key: { [CoordinatorAttr.pk]: { 'S.$': '$.checkpoint.statusKey' } },
          ConsistentRead: true,
          ProjectionExpression: '#status',
          ExpressionAttributeNames: { '#status': CoordinatorAttr.checkpointStatus },
        },
        ResultPath: '$.status',
        TimeoutSeconds: 30,
        Retry: [{ ErrorEquals: ['States.ALL'], IntervalSeconds: 1, MaxAttempts: 5, BackoffRate: 2 }],
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: S.TaskFailed }],
        Next: S.Decide,
      },
      [S.Decide]: {
        Type: 'Choice',
        Choices: [statusIs('COMPLETED', S.Complete), statusIs('FAILED', S.Aborted), { Variable: '$.checkpoint.remaining[0]', IsPresent: false, Next: S.Abort }],
        Default: S.Countdown,
      },
      [S.Countdown]: { Type: 'Pass', Comment: 'One status check fewer before the deadline', InputPath: '$.checkpoint.remaining[1:]', ResultPath: '$.checkpoint.remaining', Next: S.Wait },
      [S.Abort]: task('abort', { 'checkpointId.$': '$.checkpoint.checkpointId' }, '$.abort', S.AfterAbort),
      [S.AfterAbort]: {
        Type: 'Choice',
        Choices: [
          { Variable: '$.abort.status', StringEquals: 'COMPLETED', Next: S.Complete },
          { Variable: '$.abort.status', StringEquals: 'FAILED', Next: S.Aborted },
        ],
        Default: S.Wait,
      },
      [S.Complete]: task('complete', { 'checkpointId.$': '$.checkpoint.checkpointId' }, '$.completion', S.Completed),
      [S.Completed]: { Type: 'Succeed' },
      [S.Aborted]: { Type: 'Fail', Error: CoordinatorError.CheckpointAborted, Cause: 'The checkpoint was aborted; its failure reason is in the job history and its status item.' },
      [S.NotTriggered]: { Type: 'Fail', Error: CoordinatorError.TriggerRefused, Cause: 'The checkpoint could not be started; the Trigger task reported why.' },
      [S.TaskFailed]: { Type: 'Fail', Error: CoordinatorError.TaskFailed, Cause: 'A coordinator task failed for good; see the task failure in the execution history.' },
    },
  };
}
