/**
 * Messages to the coordinator-tasks queue (standard, so it takes a per-message `DelaySeconds`, which SQS FIFO queues
 * do not): the one place that sends a coordinator task, delayed or not. The delayed ones: a step's timer wake
 * ({@link SqsTimerWakeScheduler}), an idle source's backed-off wake and a wake sent on with the time left
 * (lib/hosts/lambda/wake-forwarder.ts), the restarter's tick (lib/hosts/lambda/tick-requester.ts); the coordinator
 * forwards a due wake into the vertex's FIFO queue.
 */
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { COORDINATOR_TASK_MESSAGE_VERSION, delaySecondsUntil, type CoordinatorTaskMessage, type TimerWakeTaskMessage } from '../../coordination/checkpoint-tasks.js';
import type { Clock, TimerWakeRequest, TimerWakeScheduler } from '../../ports/index.js';

/** Sends `message` to the coordinator-tasks queue, delivered after `delaySeconds` (0 – 900; see `delaySecondsUntil`). */
export async function sendCoordinatorTask(sqs: SQSClient, queueUrl: string, message: CoordinatorTaskMessage, delaySeconds = 0): Promise<void> {
  await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(message), ...(delaySeconds > 0 ? { DelaySeconds: delaySeconds } : {}) }));
}

/** Options of {@link SqsTimerWakeScheduler}. */
export interface SqsTimerWakeSchedulerOptions {
  readonly sqs: SQSClient;
  /** The coordinator-tasks queue (standard). */
  readonly queueUrl: string;
  readonly job: string;
  readonly clock: Clock;
}

/** The `timerWake` coordinator task of a request. */
export function timerWakeTask(job: string, request: TimerWakeRequest): TimerWakeTaskMessage {
  return {
    v: COORDINATOR_TASK_MESSAGE_VERSION,
    job,
    type: 'timerWake',
    vertex: request.task.vertex,
    subtask: request.task.subtask,
    gen: request.gen,
    dueAt: Math.max(0, Math.round(request.dueAt)),
    id: request.id,
  };
}

/** Schedules timer wakes as delayed `timerWake` messages on the coordinator-tasks queue: one SendMessage per wake. */
export class SqsTimerWakeScheduler implements TimerWakeScheduler {
  constructor(private readonly options: SqsTimerWakeSchedulerOptions) {}

  async schedule(request: TimerWakeRequest): Promise<void> {
    const { sqs, queueUrl, job, clock } = this.options;
    await sendCoordinatorTask(sqs, queueUrl, timerWakeTask(job, request), delaySecondsUntil(request.dueAt, clock.now()));
  }
}
