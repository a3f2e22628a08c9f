import { SendTaskFailureCommand, SendTaskSuccessCommand, type SFNClient } from '@aws-sdk/client-sfn';
import { ErrorCode, FloeError } from '../../core/errors.js';
import type { SqsBatchHandler, SqsBatchResponse, SqsRecord } from '../../adapters/aws/sqs-poller.js';
import { isRetryable } from '../../adapters/aws/sqs-queue-sender.js';
import { TriggerRefusedError, type CoordinatorHost } from '../../coordination/host.js';
import { guardedObserver, type CoordinatorObserver, jsonLineLog, type CoordinatorLog } from '../../coordination/observer.js';
import { CoordinatorError, parseCoordinatorTaskMessage, type CoordinatorTaskMessage } from '../../coordination/checkpoint-tasks.js';
import type { WakeForwarder } from './wake-forwarder.js';

/** Options of {@link createCoordinatorTaskHandler}. */
export interface CoordinatorTaskHandlerOptions {
  /** Runs the tasks of the one job this handler serves. */
  readonly tasks: CoordinatorHost;
  /** Answers the state machine (SendTaskSuccess / SendTaskFailure). */
  readonly sfn: SFNClient;
  /** @default JSON lines on stdout */
  readonly log?: CoordinatorLog;
  /** Told of every task message handled (`coordinatorTask`), for metrics. @default none */
  readonly observer?: CoordinatorObserver;
  /**
   * Forwards `timerWake` and `sourceWake` tasks into their vertex's FIFO queue when due (wake-forwarder.ts). @default
   * none: such a wake comes back and, after its receives, reaches the dead-letter queue
   */
  readonly wakes?: Pick<WakeForwarder, 'forward'>;
}

/** A coordinator-tasks message that must come back (its task or its answer failed, or it is malformed); the reason is logged. */
export class TaskMessageFailedError extends FloeError {
  constructor(messageId: string, task: string) {
    const malformed = task === 'malformed';
    super(malformed ? ErrorCode.MalformedMessage : ErrorCode.Storage, `coordinator-tasks message ${messageId} (${task}) comes back`, { retryable: !malformed });
    this.name = 'TaskMessageFailedError';
  }
}

/** Longest `cause` SendTaskFailure accepts. */
const MAX_CAUSE = 32_768;

/** Errors of SendTask* that say the execution no longer waits for this token: nothing to retry. */
const GONE = new Set(['TaskTimedOut', 'InvalidToken', 'TaskDoesNotExist']);

/** The error name a task failure is reported with, which decides between Retry and Catch in the state machine. */
export function taskErrorName(error: unknown): string {
  if (error instanceof TriggerRefusedError) return CoordinatorError.TriggerRefused;
  if (error instanceof FloeError) return error.retryable ? CoordinatorError.Retryable : CoordinatorError.TaskFailed;
  return isRetryable(error) ? CoordinatorError.Retryable : CoordinatorError.TaskFailed;
}

/**
 * The coordinator-tasks queue's consumer, shaped as a Lambda SQS handler with `ReportBatchItemFailures`, so the
 * Lambda and emulator mode's in-process poller run the same code. A task from the state machine is answered with
 * SendTaskSuccess or SendTaskFailure (its message is then done, whatever the outcome); a message whose answer
 * could not be delivered, a `tick` that failed, or a malformed message is reported as failed, to come back or to
 * reach the dead-letter queue. Records are independent (a standard queue): they run concurrently.
 */
export function createCoordinatorTaskHandler(options: CoordinatorTaskHandlerOptions): SqsBatchHandler {
  const handle = createCoordinatorTaskRecordHandler(options);
  return async (event): Promise<SqsBatchResponse> => {
    const done = await Promise.allSettled(event.Records.map((r) => handle(r)));
    return { batchItemFailures: event.Records.filter((_, i) => done[i]!.status === 'rejected').map((r) => ({ itemIdentifier: r.messageId })) };
  };
}

/**
 * The same consumer, one record at a time: resolves when the record is done (delete it), rejects with
 * {@link TaskMessageFailedError} when it must come back. For batch processors that build the partial batch response
 * themselves (the Lambda uses Powertools' `BatchProcessor`).
 */
export function createCoordinatorTaskRecordHandler(options: CoordinatorTaskHandlerOptions): (record: SqsRecord) => Promise<void> {
  const log = options.log ?? jsonLineLog;
  const observe = guardedObserver(options.observer, log);
  const { tasks, sfn } = options;

  const runTask = async (message: CoordinatorTaskMessage): Promise<unknown> => {
    if (message.job !== tasks.job) throw new FloeError(ErrorCode.BadRequest, `task for job '${message.job}' reached the coordinator of '${tasks.job}'`);
    switch (message.type) {
      case 'trigger':
        return tasks.trigger(message.input, message.pollIntervalSeconds);
      case 'abort':
        return tasks.abort(message.checkpointId);
      case 'complete':
        return tasks.complete(message.checkpointId);
      case 'tick':
        await tasks.tick(message.scheduledTime);
        return {};
      case 'timerWake':
      case 'sourceWake':
        if (!options.wakes) throw new FloeError(ErrorCode.InvalidOptions, `the coordinator of '${tasks.job}' has no wake forwarder`);
        return { [message.type]: await options.wakes.forward(message) };
      case 'activity':
        await tasks.activity(`${message.vertex}:${message.subtask}`);
        return {};
    }
  };

  /** Handles one record; `done` when it is done (delete it), not when it must come back; `failed` when its task failed. */
  const handle = async (record: SqsRecord): Promise<{ task: CoordinatorTaskMessage['type'] | 'malformed'; done: boolean; failed: boolean }> => {
    let message: CoordinatorTaskMessage;
    try {
      message = parseCoordinatorTaskMessage(record.body, `message ${record.messageId}`);
    } catch (e) {
      log({ level: 'error', message: (e as Error).message, messageId: record.messageId });
      return { task: 'malformed', done: false, failed: true };
    }
    const task = message.type;
    const token = 'taskToken' in message ? message.taskToken : undefined;
    const context = { messageId: record.messageId, job: message.job, task: message.type, ...('checkpointId' in message ? { checkpointId: message.checkpointId } : {}) };
    let answer: { output: unknown } | { error: string; cause: string };
    let failed = false;
    try {
      answer = { output: await runTask(message) };
    } catch (e) {
      const error = taskErrorName(e);
      const cause = `${(e as Error).name ?? 'Error'}: ${(e as Error).message ?? String(e)}`.slice(0, MAX_CAUSE);
      log({ level: error === CoordinatorError.Retryable ? 'warn' : 'error', message: `coordinator task ${message.type} failed: ${cause}`, error, ...context });
      if (token === undefined) return { task, done: false, failed: true };
      failed = true;
      answer = { error, cause };
    }
    if (token === undefined) return { task, done: true, failed };
    try {
      if ('output' in answer) await sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(answer.output) }));
      else await sfn.send(new SendTaskFailureCommand({ taskToken: token, error: answer.error, cause: answer.cause }));
      return { task, done: true, failed };
    } catch (e) {
      const name = (e as Error).name;
      if (GONE.has(name)) {
        log({ level: 'warn', message: `the execution no longer waits for this ${message.type} task (${name})`, ...context });
        return { task, done: true, failed };
      }
      log({ level: 'error', message: `answering the ${message.type} task failed: ${name}: ${(e as Error).message}`, ...context });
      return { task, done: false, failed: true };
    }
  };

  return async (record) => {
    const started = Date.now();
    const outcome = await handle(record);
    observe({ type: 'coordinatorTask', task: outcome.task, failed: outcome.failed, durationMs: Date.now() - started });
    if (!outcome.done) throw new TaskMessageFailedError(record.messageId, outcome.task);
  };
}
