/**
 * The AWS timer-wake scheduler: a delayed message on the coordinator-tasks queue (standard, so it takes a per-message
 * DelaySeconds, which SQS FIFO queues do not). The coordinator forwards it into the vertex's FIFO queue when it is due
 * (lib/hosts/lambda/timer-wakes.ts).
 */
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { COORDINATOR_TASK_MESSAGE_VERSION, delaySecondsUntil, type TimerWakeTaskMessage } from '../../coordination/checkpoint-tasks.js';
import type { Clock, TimerWakeRequest, TimerWakeScheduler } from '../../ports/index.js';

/** Options of {@link SqsTimerWakeScheduler}. */
export interface SqsTimerWakeSchedulerOptions {
  readonly sqs: SQSClient;
  /** The coordinator-tasks queue (standard). */
  readonly queueUrl: string;
  readonly job: string;
  readonly clock: Clock;
}

/** The body of a `timerWake` coordinator task. */
export function encodeTimerWakeTask(job: string, request: TimerWakeRequest): string {
  const message: TimerWakeTaskMessage = {
    v: COORDINATOR_TASK_MESSAGE_VERSION,
    job,
    type: 'timerWake',
    vertex: request.task.vertex,
    subtask: request.task.subtask,
    gen: request.gen,
    dueAt: Math.max(0, Math.round(request.dueAt)),
    id: request.id,
  };
  return JSON.stringify(message);
}

/** Schedules timer wakes as delayed `timerWake` messages on the coordinator-tasks queue: one SendMessage per wake. */
export class SqsTimerWakeScheduler implements TimerWakeScheduler {
  constructor(private readonly options: SqsTimerWakeSchedulerOptions) {}

  async schedule(request: TimerWakeRequest): Promise<void> {
    const { sqs, queueUrl, job, clock } = this.options;
    await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: encodeTimerWakeTask(job, request), DelaySeconds: delaySecondsUntil(request.dueAt, clock.now()) }));
  }
}
