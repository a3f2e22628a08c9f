/**
 * The coordinator's task protocol: the messages on the coordinator-tasks queue (trigger, abort and complete from a
 * checkpoint's watchdog execution, ticks from a schedule), what each task answers, and the errors tasks report. The
 * watchdog itself is a Step Functions state machine (lib/adapters/aws/coordinator-state-machine.ts); the host
 * (host.ts) carries the tasks out.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ErrorCode, FloeError } from '../core/errors.js';

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
const nonNegativeInt = z.number().int().nonnegative();
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
  /**
   * Sent by an operator's step with a delay (SQS FIFO queues take none per message): wake subtask `subtask` of vertex
   * `vertex` at `dueAt`, when its earliest processing-time timer is due. `id` is the control-row version of the step
   * that scheduled it (see TimerWakeRequest).
   */
  z.object({ ...header, type: z.literal('timerWake'), vertex: z.string().min(1), subtask: nonNegativeInt, gen: nonNegativeInt, dueAt: nonNegativeInt, id: nonNegativeInt }),
  /**
   * Sent by an idle source subtask's step with a delay (the chain backs off, see source-wakes.ts): forward wake `n`
   * (`idle` idle steps in a row so far) of its chain into the vertex's queue at `dueAt`.
   */
  z.object({
    ...header,
    type: z.literal('sourceWake'),
    vertex: z.string().min(1),
    subtask: nonNegativeInt,
    gen: nonNegativeInt,
    n: nonNegativeInt,
    idle: nonNegativeInt,
    dueAt: nonNegativeInt,
  }),
  /** Sent by a step that did work while the job row said the job was quiet: periodic checkpoints resume (quiet.ts). */
  z.object({ ...header, type: z.literal('activity'), vertex: z.string().min(1), subtask: nonNegativeInt, gen: nonNegativeInt }),
]);

/** A message on the coordinator-tasks queue. */
export type CoordinatorTaskMessage = z.infer<typeof taskMessageSchema>;

/** A `timerWake` message on the coordinator-tasks queue. */
export type TimerWakeTaskMessage = Extract<CoordinatorTaskMessage, { type: 'timerWake' }>;

/** A `sourceWake` message on the coordinator-tasks queue. */
export type SourceWakeTaskMessage = Extract<CoordinatorTaskMessage, { type: 'sourceWake' }>;

/** A message on the coordinator-tasks queue that wakes a subtask when due: forwarded into its vertex's queue. */
export type DelayedWakeTaskMessage = TimerWakeTaskMessage | SourceWakeTaskMessage;

/** The longest delay SQS gives a message: 15 minutes. A timer further away is waited for in steps of this. */
export const MAX_DELAY_SECONDS = 900;

/**
 * The DelaySeconds of a message that must not arrive before `dueAt`: the time left, rounded up to a second, at most
 * {@link MAX_DELAY_SECONDS}. Rounding up makes a wake up to a second late, never early.
 */
export function delaySecondsUntil(dueAt: number, now: number): number {
  return Math.min(MAX_DELAY_SECONDS, Math.max(0, Math.ceil((dueAt - now) / 1000)));
}

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

/** Starts the watchdog execution of a checkpoint. */
export interface CheckpointExecutions {
  /** Starts `<job>-chk-<n>`; resolves `started: false` when an execution of that name exists already (running or not). */
  start(checkpointId: number, request?: CheckpointRequestInput): Promise<{ readonly started: boolean; readonly executionArn?: string }>;
}
