import type { SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { count, parseTaggedMessage } from './tagged-message.js';
import { fifoDeduplicationId } from '../../adapters/aws/envelope-codec.js';
import { sendGroupedMessages } from '../../adapters/aws/sqs-queue-sender.js';

/**
 * A wake-up message on a source vertex's queue: not an Envelope, it only asks source subtask `subtask` of generation
 * `gen` to take a step (read a chunk). `n` numbers the wakes of one subtask's chain, so that re-sending the same
 * next wake (a redelivered wake, a retried start) has the same deduplication id and SQS drops it, and so that the
 * subtask's control row, which records the last `n` a step ran for, can refuse a wake that is not newer.
 */
export interface WakeMessage {
  readonly floe: 'wake';
  readonly gen: number;
  readonly subtask: number;
  readonly n: number;
  /** Steps in a row before this wake that read nothing: how far an idle chain has backed off (see {@link idleWakeDelayMs}). @default 0 */
  readonly idle?: number;
}

/** Default of the operator handler's `sourceIdleStepsBeforeBackoff`. */
export const IDLE_STEPS_BEFORE_BACKOFF = 10;

/** Default of the operator handler's `sourceIdleMaxDelayMs`. */
export const SOURCE_IDLE_MAX_DELAY_MS = 60_000;

/**
 * How long an idle source chain waits before wake `idle` steps in (the wake after `idle` steps in a row read
 * nothing): nothing extra for the first `before` (the step's own short wait applies), then 1 s, 2 s, 4 s … doubling
 * up to `maxMs`. Such a wait is not spent in the invocation: the wake goes to the coordinator-tasks queue with a delay
 * (FIFO queues take none per message), and the coordinator forwards it when due (wake-forwarder.ts). The watchdog
 * allows for `maxMs` (source-chains.ts). 0 turns the backoff off.
 */
export function idleWakeDelayMs(idle: number, before: number, maxMs: number): number {
  if (maxMs <= 0 || idle <= before) return 0;
  return Math.min(maxMs, 1000 * 2 ** Math.min(30, idle - before - 1));
}

const WakeSchema = z.object({ floe: z.literal('wake'), gen: count, subtask: count, n: count, idle: count.optional() });

/** Reads a wake message from a body, or undefined when the body is not one (it may then be an envelope). */
export function parseWake(body: string): WakeMessage | undefined {
  const wake = parseTaggedMessage(body, 'wake', WakeSchema, 'wake message');
  if (wake === undefined) return undefined;
  const { idle, ...rest } = wake;
  return { ...rest, ...(idle === undefined || idle === 0 ? {} : { idle }) };
}

/** The body of a wake message. */
export function encodeWake(wake: Omit<WakeMessage, 'floe'>): string {
  return JSON.stringify({ floe: 'wake', gen: wake.gen, subtask: wake.subtask, n: wake.n, ...(wake.idle ? { idle: wake.idle } : {}) });
}


/**
 * The FIFO deduplication id of a wake: deterministic from job, generation, subtask and chain position, so the same
 * next wake sent twice is one message. A watchdog re-sending a wake that may sit in the dead-letter queue adds a
 * `retry` tag, or SQS would drop the re-send as a duplicate for five minutes.
 */
export function wakeDeduplicationId(job: string, wake: Omit<WakeMessage, 'floe'>, retry?: string): string {
  return fifoDeduplicationId(`wake.${job}.${wake.gen}.${wake.subtask}.${wake.n}${retry === undefined ? '' : `.${retry}`}`);
}

/**
 * Sends wake messages to one source vertex's FIFO queue, 10 per request, `MessageGroupId` = subtask; throws if any is
 * refused. `retry` tags the deduplication ids (see {@link wakeDeduplicationId}).
 */
export async function sendWakes(sqs: SQSClient, queueUrl: string, job: string, wakes: readonly Omit<WakeMessage, 'floe'>[], retry?: string): Promise<void> {
  const messages = wakes.map((w) => ({ body: encodeWake(w), groupId: String(w.subtask), deduplicationId: wakeDeduplicationId(job, w, retry) }));
  await sendGroupedMessages(sqs, queueUrl, messages, 'wake messages');
}
