import { SendMessageBatchCommand, type BatchResultErrorEntry, type SQSClient } from '@aws-sdk/client-sqs';
import { ErrorCode, FloeError, ValidationError } from '../../core/errors.js';
import type { QueueSender } from '../../ports/index.js';
import type { Envelope } from '../../core/envelope.js';
import {
  assertFitsInMessage,
  deduplicationId,
  encodedSize,
  encodeEnvelope,
  envelopeIdentity,
  messageGroupId,
  SQS_BILLING_CHUNK_BYTES,
  SQS_MAX_BATCH_BYTES,
  SQS_MAX_BATCH_ENTRIES,
  SQS_MAX_MESSAGE_BYTES,
} from './envelope-codec.js';

/** How an SqsQueueSender batches and retries. */
export interface SqsQueueSenderOptions {
  /** Largest message body in bytes; a larger envelope is refused before anything is sent. @default 1048576 (SQS_MAX_MESSAGE_BYTES) */
  readonly maxMessageBytes?: number;
  /** Largest total body size of one SendMessageBatch request in bytes. @default 1048576 (SQS_MAX_BATCH_BYTES) */
  readonly maxBatchBytes?: number;
  /** Attempts at a batch (the first try and the retries after a failed request or failed entries) before `send` fails. @default 5 */
  readonly maxAttempts?: number;
  /** Delay before the first retry in milliseconds; each further retry doubles it, with full jitter. @default 50 */
  readonly retryBaseDelayMs?: number;
  /** Waits between retries; tests pass a fake. @default a setTimeout-based sleep */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** SqsQueueSenderOptions with every default filled in. */
export type ResolvedSqsQueueSenderOptions = Required<SqsQueueSenderOptions>;

/** Fills in defaults and validates, reporting every problem at once. */
export function resolveSqsQueueSenderOptions(options: SqsQueueSenderOptions = {}): ResolvedSqsQueueSenderOptions {
  const resolved: ResolvedSqsQueueSenderOptions = {
    maxMessageBytes: options.maxMessageBytes ?? SQS_MAX_MESSAGE_BYTES,
    maxBatchBytes: options.maxBatchBytes ?? SQS_MAX_BATCH_BYTES,
    maxAttempts: options.maxAttempts ?? 5,
    retryBaseDelayMs: options.retryBaseDelayMs ?? 50,
    sleep: options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
  };
  const problems: string[] = [];
  const { maxMessageBytes, maxBatchBytes, maxAttempts, retryBaseDelayMs } = resolved;
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1024 || maxMessageBytes > SQS_MAX_MESSAGE_BYTES) {
    problems.push(`maxMessageBytes must be an integer from 1024 to ${SQS_MAX_MESSAGE_BYTES}, got ${maxMessageBytes}`);
  }
  if (!Number.isInteger(maxBatchBytes) || maxBatchBytes < maxMessageBytes || maxBatchBytes > SQS_MAX_BATCH_BYTES) {
    problems.push(`maxBatchBytes must be an integer from maxMessageBytes to ${SQS_MAX_BATCH_BYTES}, got ${maxBatchBytes}`);
  }
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) problems.push(`maxAttempts must be an integer >= 1, got ${maxAttempts}`);
  if (!(retryBaseDelayMs >= 0)) problems.push(`retryBaseDelayMs must be >= 0, got ${retryBaseDelayMs}`);
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'SqsQueueSender options', problems);
  return resolved;
}

/** What a sender has done, for the cost benchmark. */
export interface SqsQueueSenderStats {
  /** API calls made, by operation. */
  readonly requests: { SendMessageBatch: number };
  /** Requests as SQS bills them: each started 64 KiB of a request's payload counts as one. */
  billedRequests: number;
  /** Messages SQS accepted. */
  messages: number;
  /** Body bytes SQS accepted. */
  bytes: number;
  /** Entries sent again after a failed request or a failed entry. */
  retriedEntries: number;
}

interface OutgoingMessage {
  readonly envelope: Envelope;
  readonly body: string;
  readonly size: number;
  readonly group: string;
}

/**
 * Sends envelopes to one SQS FIFO queue per vertex, with `MessageGroupId` = receiving subtask and a deduplication id
 * derived from the envelope's identity. Order is kept per receiving subtask: a queue's envelopes go out in batches,
 * one request at a time; failed entries are sent again, in order, before anything that follows them.
 */
export class SqsQueueSender implements QueueSender {
  /** Counters for the cost benchmark. */
  readonly stats: SqsQueueSenderStats = { requests: { SendMessageBatch: 0 }, billedRequests: 0, messages: 0, bytes: 0, retriedEntries: 0 };
  private readonly options: ResolvedSqsQueueSenderOptions;

  /**
   * @param sqs the client to send with
   * @param queueUrlOf the URL of a vertex's FIFO input queue
   */
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrlOf: (vertex: string) => string,
    options: SqsQueueSenderOptions = {},
  ) {
    this.options = resolveSqsQueueSenderOptions(options);
  }

  /** API calls made so far, by operation. */
  get requests(): SqsQueueSenderStats['requests'] {
    return this.stats.requests;
  }

  /**
   * Sends envelopes, in order per receiving subtask, and resolves once SQS has stored all of them. Every envelope is
   * encoded and size-checked before the first request, so an oversized one fails the call without sending anything.
   * Queues are sent to concurrently; order between separate calls holds when the caller awaits each one.
   */
  async send(envelopes: readonly Envelope[]): Promise<void> {
    const byQueue = new Map<string, OutgoingMessage[]>();
    for (const envelope of envelopes) {
      const body = encodeEnvelope(envelope);
      assertFitsInMessage(envelope, body, this.options.maxMessageBytes);
      const url = this.queueUrlOf(envelope.to.op);
      let list = byQueue.get(url);
      if (!list) byQueue.set(url, (list = []));
      list.push({ envelope, body, size: encodedSize(body), group: messageGroupId(envelope) });
    }
    const results = await Promise.allSettled([...byQueue].map(([url, messages]) => this.sendToQueue(url, messages)));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
  }

  private async sendToQueue(url: string, messages: readonly OutgoingMessage[]): Promise<void> {
    let pending = messages;
    let attempt = 1;
    while (pending.length > 0) {
      const batch = this.takeBatch(pending);
      const rest = pending.slice(batch.length);
      const failed = await this.trySendBatch(url, batch, attempt);
      if (failed.length === 0) {
        pending = rest;
        attempt = 1;
        continue;
      }
      // Failed entries go first in the next try, in their original order, so no group is reordered.
      this.stats.retriedEntries += failed.length;
      pending = [...failed, ...rest];
      await this.backoff(attempt);
      attempt++;
    }
  }

  /** The longest prefix of `pending` that fits one request. */
  private takeBatch(pending: readonly OutgoingMessage[]): OutgoingMessage[] {
    const batch: OutgoingMessage[] = [];
    let bytes = 0;
    for (const m of pending) {
      if (batch.length === SQS_MAX_BATCH_ENTRIES || (batch.length > 0 && bytes + m.size > this.options.maxBatchBytes)) break;
      batch.push(m);
      bytes += m.size;
    }
    return batch;
  }

  /** Sends one batch; returns the entries SQS did not store (to retry) or throws when retrying cannot help or attempts are used up. */
  private async trySendBatch(url: string, batch: readonly OutgoingMessage[], attempt: number): Promise<OutgoingMessage[]> {
    const { maxAttempts } = this.options;
    const bytes = batch.reduce((n, m) => n + m.size, 0);
    this.stats.requests.SendMessageBatch++;
    this.stats.billedRequests += Math.max(1, Math.ceil(bytes / SQS_BILLING_CHUNK_BYTES));
    let response;
    try {
      response = await this.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: url,
          Entries: batch.map((m, i) => ({
            Id: String(i),
            MessageBody: m.body,
            MessageGroupId: m.group,
            MessageDeduplicationId: deduplicationId(m.envelope),
          })),
        }),
      );
    } catch (cause) {
      const what = `sending ${batch.length} envelopes to ${url}`;
      if (!isRetryable(cause)) throw new FloeError(ErrorCode.Storage, `${what} failed: ${describe(cause)}`, { cause });
      if (attempt >= maxAttempts) throw new FloeError(ErrorCode.Storage, `${what} failed ${attempt} times: ${describe(cause)}`, { cause, retryable: true });
      this.stats.retriedEntries += batch.length;
      await this.backoff(attempt);
      return this.trySendBatch(url, batch, attempt + 1);
    }

    const failedById = new Map<string, BatchResultErrorEntry>();
    for (const f of response.Failed ?? []) failedById.set(f.Id ?? '', f);
    const accepted = batch.filter((_, i) => !failedById.has(String(i)));
    this.stats.messages += accepted.length;
    this.stats.bytes += accepted.reduce((n, m) => n + m.size, 0);
    if (failedById.size === 0) return [];

    const failed: OutgoingMessage[] = [];
    const failedGroups = new Map<string, OutgoingMessage>();
    for (const [i, m] of batch.entries()) {
      const error = failedById.get(String(i));
      if (error) {
        if (error.SenderFault) {
          throw new FloeError(ErrorCode.Storage, `SQS refused envelope ${envelopeIdentity(m.envelope)} for ${url}: ${error.Code ?? 'error'} ${error.Message ?? ''}`.trim());
        }
        failed.push(m);
        if (!failedGroups.has(m.group)) failedGroups.set(m.group, m);
        continue;
      }
      const earlier = failedGroups.get(m.group);
      if (earlier) {
        // SQS stored a later envelope of a group whose earlier one it refused. The receiver would accept the later
        // seq first and then drop the earlier one as already seen: only a failover to a new generation recovers.
        throw new FloeError(
          ErrorCode.JobFailed,
          `SQS stored envelope ${envelopeIdentity(m.envelope)} but refused the earlier ${envelopeIdentity(earlier.envelope)} of the same ` +
            `message group ${m.group} in ${url}; the group is out of order and the job must fail over`,
        );
      }
    }
    if (attempt >= maxAttempts) {
      const first = failed[0]!;
      const error = failedById.get(String(batch.indexOf(first)));
      throw new FloeError(
        ErrorCode.Storage,
        `SQS refused ${failed.length} of ${batch.length} envelopes for ${url} ${attempt} times, last ${error?.Code ?? 'error'} for ${envelopeIdentity(first.envelope)}: ${error?.Message ?? ''}`.trim(),
        { retryable: true },
      );
    }
    return failed;
  }

  private backoff(attempt: number): Promise<void> {
    const cap = this.options.retryBaseDelayMs * 2 ** (attempt - 1);
    return this.options.sleep(Math.random() * cap);
  }
}

/** Whether an SDK error may go away on retry: throttling, a server fault, or no response at all. */
export function isRetryable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { $retryable?: unknown; $fault?: unknown; $metadata?: { httpStatusCode?: number } };
  if (e.$retryable) return true;
  if (e.$fault === 'server') return true;
  if (e.$fault === 'client') return false;
  return e.$metadata !== undefined && e.$metadata.httpStatusCode === undefined;
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

/** A message for one FIFO message group, with its deduplication id. */
export interface GroupedMessage {
  readonly body: string;
  readonly groupId: string;
  readonly deduplicationId: string;
}

/**
 * Sends messages to a FIFO queue, 10 per SendMessageBatch, in order; throws if SQS refuses any (retryable unless the
 * sender was at fault). `what` names the messages in the error.
 */
export async function sendGroupedMessages(sqs: SQSClient, queueUrl: string, messages: readonly GroupedMessage[], what: string): Promise<void> {
  for (let i = 0; i < messages.length; i += 10) {
    const chunk = messages.slice(i, i + 10);
    const res = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: chunk.map((m, j) => ({ Id: String(j), MessageBody: m.body, MessageGroupId: m.groupId, MessageDeduplicationId: m.deduplicationId })),
      }),
    );
    const failed = res.Failed ?? [];
    if (failed.length > 0) {
      const f = failed[0]!;
      throw new FloeError(ErrorCode.Storage, `SQS refused ${failed.length} ${what} for ${queueUrl}: ${f.Code ?? 'error'} ${f.Message ?? ''}`.trim(), { retryable: !f.SenderFault });
    }
  }
}
