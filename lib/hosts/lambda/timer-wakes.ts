/**
 * Timer wakes: how a quiet keyed subtask on AWS gets a step when a processing-time timer is due.
 *
 * A subtask steps only when a message reaches its FIFO queue, and FIFO queues take no per-message delay. So the step
 * that leaves a processing-time timer behind asks for a wake before it commits (`Ports.timerWakes`,
 * lib/adapters/aws/sqs-coordinator-tasks.ts): a `timerWake` message on the coordinator-tasks queue (standard) with
 * DelaySeconds = the time left, rounded up, at most 900. The coordinator receives it when it is due and forwards a
 * {@link TimerWakeMessage} into the vertex's FIFO queue (group = subtask), or, for a timer more than 15 minutes away,
 * sends the task again with the time still left. The operator handler takes a timer wake as a step without envelopes,
 * in which the task step fires the due timers and commits like any step; a wake of a generation the job moved past is
 * dropped, one whose timers already fired (a data step fired them first) takes no step.
 *
 *     step (timer at T) ─▶ tasks queue, delay ⌈T − now⌉ s ─▶ coordinator ─▶ vertex FIFO {"floe":"timer",…,"due":T} ─▶ step fires T
 *
 * One wake per subtask per due time: the control row records the due time of the wake scheduled (`timerWake`), and a
 * step schedules none while that one is still to come and no earlier timer needs one. The FIFO deduplication id is
 * job, generation, subtask, due time and the scheduling step's control version, so a standard queue's duplicate, a
 * re-sent long delay and a replayed step's repeated request forward one message.
 */
import type { SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { count, parseTaggedMessage } from './tagged-message.js';
import { fifoDeduplicationId } from '../../adapters/aws/envelope-codec.js';
import { sendGroupedMessages } from '../../adapters/aws/sqs-queue-sender.js';

/** A timer wake on a vertex's FIFO queue: step subtask `subtask` of generation `gen`, whose timer at `due` is due. */
export interface TimerWakeMessage {
  readonly floe: 'timer';
  readonly gen: number;
  readonly subtask: number;
  /** The due time the wake was scheduled for (ms since the epoch); 0 for a generation's first wake. */
  readonly due: number;
  /** The control version of the step that scheduled it (see TimerWakeRequest.id). */
  readonly id: number;
}

const TimerWakeSchema = z.object({ floe: z.literal('timer'), gen: count, subtask: count, due: count, id: count });

/** Reads a timer wake from a body, or undefined when the body is not one (it may then be an envelope or a source wake). */
export function parseTimerWake(body: string): TimerWakeMessage | undefined {
  return parseTaggedMessage(body, 'timer', TimerWakeSchema, 'timer wake');
}

/** The body of a timer wake. */
export function encodeTimerWake(wake: Omit<TimerWakeMessage, 'floe'>): string {
  return JSON.stringify({ floe: 'timer', gen: wake.gen, subtask: wake.subtask, due: wake.due, id: wake.id });
}

/** The FIFO deduplication id of a timer wake; `retry` tags a watchdog's re-send, which must not be dropped as a duplicate. */
export function timerWakeDeduplicationId(job: string, wake: Omit<TimerWakeMessage, 'floe'>, retry?: string): string {
  return fifoDeduplicationId(`timer.${job}.${wake.gen}.${wake.subtask}.${wake.due}.${wake.id}${retry === undefined ? '' : `.${retry}`}`);
}

/** Sends timer wakes to one vertex's FIFO queue, 10 per request, `MessageGroupId` = subtask; throws if any is refused. */
export async function sendTimerWakes(sqs: SQSClient, queueUrl: string, job: string, wakes: readonly Omit<TimerWakeMessage, 'floe'>[], retry?: string): Promise<void> {
  const messages = wakes.map((w) => ({ body: encodeTimerWake(w), groupId: String(w.subtask), deduplicationId: timerWakeDeduplicationId(job, w, retry) }));
  await sendGroupedMessages(sqs, queueUrl, messages, 'timer wakes');
}

/**
 * A timer wake due within this long is forwarded at once rather than delayed again (a delay costs a whole second at
 * least); the operator handler waits out the rest before its step.
 */
export const TIMER_WAKE_EARLY_MS = 1000;
