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
import { COORDINATOR_TASK_MESSAGE_VERSION, CoordinatorError } from '../../coordination/checkpoint-tasks.js';
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
