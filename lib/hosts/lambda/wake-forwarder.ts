/**
 * The coordinator's side of delayed wakes. A subtask steps only when a message reaches its FIFO queue, and FIFO
 * queues take no per-message delay; so a step that wants a wake later sends a task to the coordinator-tasks queue
 * (standard) with `DelaySeconds`, and the coordinator forwards it into the vertex's FIFO queue when it is due, or
 * sends it again with the time left when it is further away than SQS delays (15 minutes). Two kinds:
 *
 * - `timerWake` (timer-wakes.ts): a quiet keyed subtask's earliest processing-time timer is due;
 * - `sourceWake` (source-wakes.ts): an idle source chain's next wake, backed off so an idle source costs an
 *   invocation every minute or so rather than one a second.
 *
 *     step ─▶ tasks queue, delay ⌈due − now⌉ s ─▶ coordinator ─▶ vertex FIFO queue (group = subtask) ─▶ step
 */
import type { SQSClient } from '@aws-sdk/client-sqs';
import { sendCoordinatorTask } from '../../adapters/aws/sqs-coordinator-tasks.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import { COORDINATOR_TASK_MESSAGE_VERSION, delaySecondsUntil, type DelayedWakeTaskMessage } from '../../coordination/checkpoint-tasks.js';
import type { Clock } from '../../ports/index.js';
import { sendTimerWakes, TIMER_WAKE_EARLY_MS } from './timer-wakes.js';
import { sendWakes } from './source-wakes.js';

/** Options of {@link WakeForwarder}. */
export interface WakeForwarderOptions {
  readonly job: string;
  readonly sqs: SQSClient;
  /** Vertex id → its FIFO input queue URL, for every vertex with processing-time timers and every source vertex. */
  readonly queueUrls: Readonly<Record<string, string>>;
  /** The coordinator-tasks queue, where a wake not yet due is sent again with the time left. */
  readonly tasksQueueUrl: string;
  readonly clock: Clock;
  /**
   * A wake due within this long is forwarded now rather than delayed again (a delay costs a whole second at least);
   * the operator handler waits out the rest of a timer wake before its step.
   * @default 1000
   */
  readonly earlyMs?: number;
}

/** Forwards due `timerWake` and `sourceWake` tasks into their vertices' FIFO queues. */
export class WakeForwarder {
  private readonly earlyMs: number;

  constructor(private readonly options: WakeForwarderOptions) {
    this.earlyMs = options.earlyMs ?? TIMER_WAKE_EARLY_MS;
  }

  /** Forwards the wake (`forwarded`), or sends the task again with the time left when it is not due yet (`delayed`). */
  async forward(message: DelayedWakeTaskMessage): Promise<'forwarded' | 'delayed'> {
    const { sqs, job, queueUrls, tasksQueueUrl, clock } = this.options;
    const now = clock.now();
    if (message.dueAt - now > this.earlyMs) {
      await sendCoordinatorTask(sqs, tasksQueueUrl, message, delaySecondsUntil(message.dueAt, now));
      return 'delayed';
    }
    const url = queueUrls[message.vertex];
    if (!url) throw new FloeError(ErrorCode.InvalidOptions, `${message.type} for vertex '${message.vertex}' of job '${job}': no queue URL for it`);
    if (message.type === 'timerWake') await sendTimerWakes(sqs, url, job, [{ gen: message.gen, subtask: message.subtask, due: message.dueAt, id: message.id }]);
    else await sendWakes(sqs, url, job, [{ gen: message.gen, subtask: message.subtask, n: message.n, idle: message.idle }]);
    return 'forwarded';
  }
}

/** Sends a source chain's next wake through the coordinator-tasks queue, to arrive `delayMs` from now (at most 15 minutes). */
export async function sendDelayedWake(
  sqs: SQSClient,
  tasksQueueUrl: string,
  wake: { readonly job: string; readonly vertex: string; readonly gen: number; readonly subtask: number; readonly n: number; readonly idle: number },
  now: number,
  delayMs: number,
): Promise<void> {
  const dueAt = now + delayMs;
  const message: DelayedWakeTaskMessage = { v: COORDINATOR_TASK_MESSAGE_VERSION, type: 'sourceWake', ...wake, dueAt };
  await sendCoordinatorTask(sqs, tasksQueueUrl, message, delaySecondsUntil(dueAt, now));
}

/** Tells the coordinator that a subtask did work while the job looked quiet (lib/core/coordinator/quiet.ts). */
export async function reportActivity(sqs: SQSClient, tasksQueueUrl: string, from: { readonly job: string; readonly vertex: string; readonly subtask: number; readonly gen: number }): Promise<void> {
  await sendCoordinatorTask(sqs, tasksQueueUrl, { v: COORDINATOR_TASK_MESSAGE_VERSION, type: 'activity', ...from });
}
