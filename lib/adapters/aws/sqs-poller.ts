import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { ErrorCode, FloeError, ValidationError } from '../../core/errors.js';
import { encodedSize, SQS_BILLING_CHUNK_BYTES, SQS_MAX_BATCH_ENTRIES } from './envelope-codec.js';

/** System attributes of an SQS record, as Lambda passes them (all values are strings). */
export interface SqsRecordAttributes {
  readonly ApproximateReceiveCount: string;
  readonly SentTimestamp: string;
  readonly SenderId: string;
  readonly ApproximateFirstReceiveTimestamp: string;
  /** FIFO queues only. */
  readonly MessageGroupId?: string;
  /** FIFO queues only. */
  readonly MessageDeduplicationId?: string;
  /** FIFO queues only. */
  readonly SequenceNumber?: string;
  readonly [name: string]: string | undefined;
}

/** One message of an SQS event, shaped like Lambda's `SQSRecord`. */
export interface SqsRecord {
  readonly messageId: string;
  readonly receiptHandle: string;
  readonly body: string;
  readonly attributes: SqsRecordAttributes;
  readonly messageAttributes: Readonly<Record<string, unknown>>;
  readonly md5OfBody: string;
  readonly eventSource: 'aws:sqs';
  readonly eventSourceARN: string;
  readonly awsRegion: string;
}

/** A batch of messages, shaped like Lambda's `SQSEvent`. */
export interface SqsEvent {
  readonly Records: readonly SqsRecord[];
}

/** What a handler returns with `ReportBatchItemFailures`: the message ids to retry. */
export interface SqsBatchResponse {
  readonly batchItemFailures: readonly { readonly itemIdentifier: string }[];
}

/** A Lambda-style SQS handler; returning nothing means every message succeeded, throwing means none did. */
export type SqsBatchHandler = (event: SqsEvent) => Promise<SqsBatchResponse | void>;

/** How an SqsEventSourcePoller polls. */
export interface SqsEventSourcePollerOptions {
  /** The queue to poll. */
  readonly queueUrl: string;
  /** Processes one batch; see SqsBatchHandler. */
  readonly handler: SqsBatchHandler;
  /** Messages per batch at most (ReceiveMessage `MaxNumberOfMessages`), from 1 to 10. @default 10 */
  readonly batchSize?: number;
  /** Long-poll wait of each ReceiveMessage, from 0 to 20 seconds; `stop()` may wait this long. @default 20 */
  readonly waitTimeSeconds?: number;
  /** Visibility timeout of received messages, in seconds; must exceed the handler's run time. @default the queue's own */
  readonly visibilityTimeoutSeconds?: number;
  /** Visibility given to failed messages, in seconds: 0 retries them at once; Lambda leaves them until their timeout ends. @default 0 */
  readonly retryDelaySeconds?: number;
  /** Batches handled at once; each loop holds one batch, and FIFO hands a busy group to none of the others. Receives are made one at a time. @default 1 */
  readonly concurrency?: number;
  /** The queue's ARN for `eventSourceARN`. @default looked up with GetQueueAttributes on start */
  readonly queueArn?: string;
  /** Receives errors of the loop itself (receive, delete, visibility change) and errors thrown by the handler; polling goes on. @default console.error */
  readonly onError?: (error: unknown) => void;
  /**
   * Pause after a receive that returned nothing, in ms, doubled after each further empty one up to
   * `maxEmptyReceiveDelayMs`, and cut short when one of this poller's own batches is done (on a FIFO queue that is
   * what frees a message group). For short polling (`waitTimeSeconds: 0`): emulators that spin through a long poll
   * while every visible message belongs to a group in flight (moto) then do not burn the CPU the handlers need.
   * @default 0 (no pause: the long poll paces the loop)
   */
  readonly emptyReceiveDelayMs?: number;
  /** Longest pause after empty receives, in ms. @default 1000 */
  readonly maxEmptyReceiveDelayMs?: number;
  /** Waits between retries of a failed receive; tests pass a fake. @default a setTimeout-based sleep */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** SqsEventSourcePollerOptions with every default filled in. */
export type ResolvedSqsEventSourcePollerOptions = Required<Omit<SqsEventSourcePollerOptions, 'visibilityTimeoutSeconds' | 'queueArn'>> &
  Pick<SqsEventSourcePollerOptions, 'visibilityTimeoutSeconds' | 'queueArn'>;

/** Fills in defaults and validates, reporting every problem at once. */
export function resolveSqsEventSourcePollerOptions(options: SqsEventSourcePollerOptions): ResolvedSqsEventSourcePollerOptions {
  const resolved: ResolvedSqsEventSourcePollerOptions = {
    ...options,
    batchSize: options.batchSize ?? SQS_MAX_BATCH_ENTRIES,
    waitTimeSeconds: options.waitTimeSeconds ?? 20,
    retryDelaySeconds: options.retryDelaySeconds ?? 0,
    concurrency: options.concurrency ?? 1,
    emptyReceiveDelayMs: options.emptyReceiveDelayMs ?? 0,
    maxEmptyReceiveDelayMs: options.maxEmptyReceiveDelayMs ?? 1000,
    onError: options.onError ?? ((error) => console.error('SqsEventSourcePoller:', error)),
    sleep: options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
  };
  const problems: string[] = [];
  const intIn = (name: string, value: number | undefined, min: number, max: number) => {
    if (value !== undefined && (!Number.isInteger(value) || value < min || value > max)) problems.push(`${name} must be an integer from ${min} to ${max}, got ${value}`);
  };
  if (!options.queueUrl) problems.push('queueUrl is required');
  intIn('batchSize', resolved.batchSize, 1, SQS_MAX_BATCH_ENTRIES);
  intIn('waitTimeSeconds', resolved.waitTimeSeconds, 0, 20);
  intIn('visibilityTimeoutSeconds', resolved.visibilityTimeoutSeconds, 0, 43_200);
  intIn('retryDelaySeconds', resolved.retryDelaySeconds, 0, 43_200);
  intIn('concurrency', resolved.concurrency, 1, 1000);
  intIn('emptyReceiveDelayMs', resolved.emptyReceiveDelayMs, 0, 60_000);
  intIn('maxEmptyReceiveDelayMs', resolved.maxEmptyReceiveDelayMs, resolved.emptyReceiveDelayMs, 60_000);
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'SqsEventSourcePoller options', problems);
  return resolved;
}

/** What a poller has done, for the cost benchmark and tests. */
export interface SqsEventSourcePollerStats {
  /** API calls made, by operation. */
  readonly requests: { ReceiveMessage: number; DeleteMessageBatch: number; ChangeMessageVisibilityBatch: number; GetQueueAttributes: number };
  /** Requests as SQS bills them: each started 64 KiB of a request's payload counts as one. */
  billedRequests: number;
  /** ReceiveMessage calls that returned nothing. */
  emptyReceives: number;
  /** Handler invocations. */
  invocations: number;
  /** Messages received (a redelivered message counts again). */
  received: number;
  /** Messages deleted after their handler succeeded. */
  deleted: number;
  /** Messages handed back for a retry. */
  retried: number;
}

/**
 * Polls an SQS queue and invokes a handler with Lambda-shaped batches, as Lambda's SQS event source mapping with
 * `ReportBatchItemFailures` does: successful messages are deleted, failed ones (or the whole batch when the handler
 * throws or answers with an unknown message id) are handed back. For emulator mode, where no Lambda runs.
 *
 * Like Lambda, the poller trusts the handler's answer: on a FIFO queue the handler must also report every later
 * message of a group whose message failed, or those are deleted and the group is reordered.
 */
export class SqsEventSourcePoller {
  /** Counters for the cost benchmark and tests. */
  readonly stats: SqsEventSourcePollerStats = {
    requests: { ReceiveMessage: 0, DeleteMessageBatch: 0, ChangeMessageVisibilityBatch: 0, GetQueueAttributes: 0 },
    billedRequests: 0,
    emptyReceives: 0,
    invocations: 0,
    received: 0,
    deleted: 0,
    retried: 0,
  };
  private readonly options: ResolvedSqsEventSourcePollerOptions;
  private loops: Promise<void>[] = [];
  private stopping = false;
  private receiving: Promise<void> = Promise.resolve();
  /** Empty receives in a row, for the pause after them. */
  private emptyInARow = 0;
  /** Resolves the pause after an empty receive early: called when a batch of this poller is done. */
  private batchDone: () => void = () => {};
  private arn = '';
  private region = '';

  constructor(
    private readonly sqs: SQSClient,
    options: SqsEventSourcePollerOptions,
  ) {
    this.options = resolveSqsEventSourcePollerOptions(options);
  }

  /** API calls made so far, by operation. */
  get requests(): SqsEventSourcePollerStats['requests'] {
    return this.stats.requests;
  }

  /** True between `start()` and the end of `stop()`. */
  get running(): boolean {
    return this.loops.length > 0;
  }

  /** Looks up the queue ARN if needed and starts the receive loops; resolves once they run. */
  async start(): Promise<void> {
    if (this.loops.length > 0) throw new FloeError(ErrorCode.BadRequest, `poller for ${this.options.queueUrl} is already running`);
    this.arn = this.options.queueArn ?? (await this.lookUpArn());
    this.region = this.arn.split(':')[3] ?? '';
    this.stopping = false;
    this.loops = Array.from({ length: this.options.concurrency }, () => this.loop());
  }

  /** Stops receiving and resolves once every batch in flight has been handled, deleted or handed back. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.batchDone();
    await Promise.all(this.loops);
    this.loops = [];
  }

  private async lookUpArn(): Promise<string> {
    this.stats.requests.GetQueueAttributes++;
    this.stats.billedRequests++;
    const res = await this.sqs.send(new GetQueueAttributesCommand({ QueueUrl: this.options.queueUrl, AttributeNames: ['QueueArn'] }));
    const arn = res.Attributes?.QueueArn;
    if (!arn) throw new FloeError(ErrorCode.NotFound, `queue ${this.options.queueUrl} has no QueueArn attribute`);
    return arn;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      let messages: Message[];
      try {
        messages = await this.receive();
        failures = 0;
      } catch (error) {
        this.options.onError(new FloeError(ErrorCode.Storage, `receiving from ${this.options.queueUrl} failed: ${(error as Error).message}`, { cause: error, retryable: true }));
        failures++;
        await this.options.sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)));
        continue;
      }
      // Messages received while stopping are handled too, or they would stay invisible until their timeout ends.
      if (messages.length > 0) await this.handle(messages);
    }
  }

  /**
   * Receives one batch. Receives are made one at a time, and only handlers run concurrently: a long poll returns as
   * soon as messages arrive, so little throughput is lost, fewer empty receives are paid for, and an emulator whose
   * receive is not atomic (moto hands one group to two concurrent receives) cannot break a group's order.
   */
  private async receive(): Promise<Message[]> {
    const previous = this.receiving;
    let done!: () => void;
    this.receiving = new Promise<void>((resolve) => (done = resolve));
    try {
      await previous;
      if (this.stopping) return [];
      const messages = await this.receiveNow();
      this.emptyInARow = messages.length === 0 ? this.emptyInARow + 1 : 0;
      // The pause holds the next receive of every loop, as the long poll it stands in for would.
      if (messages.length === 0 && this.options.emptyReceiveDelayMs > 0 && !this.stopping) await this.pauseAfterEmpty();
      return messages;
    } finally {
      done();
    }
  }

  private async pauseAfterEmpty(): Promise<void> {
    const { emptyReceiveDelayMs, maxEmptyReceiveDelayMs } = this.options;
    const ms = Math.min(maxEmptyReceiveDelayMs, emptyReceiveDelayMs * 2 ** Math.min(this.emptyInARow - 1, 20));
    await Promise.race([this.options.sleep(ms), new Promise<void>((resolve) => (this.batchDone = resolve))]);
    this.batchDone = () => {};
  }

  private async receiveNow(): Promise<Message[]> {
    const { queueUrl, batchSize, waitTimeSeconds, visibilityTimeoutSeconds } = this.options;
    this.stats.requests.ReceiveMessage++;
    const res = await this.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: batchSize,
        WaitTimeSeconds: waitTimeSeconds,
        ...(visibilityTimeoutSeconds !== undefined ? { VisibilityTimeout: visibilityTimeoutSeconds } : {}),
        MessageSystemAttributeNames: ['All'],
        MessageAttributeNames: ['All'],
      }),
    );
    const messages = res.Messages ?? [];
    const bytes = messages.reduce((n, m) => n + encodedSize(m.Body ?? ''), 0);
    this.stats.billedRequests += Math.max(1, Math.ceil(bytes / SQS_BILLING_CHUNK_BYTES));
    if (messages.length === 0) this.stats.emptyReceives++;
    this.stats.received += messages.length;
    return messages;
  }

  /** Invokes the handler with one batch, then deletes what succeeded and hands back what failed. */
  private async handle(messages: readonly Message[]): Promise<void> {
    const event: SqsEvent = { Records: messages.map((m) => this.toRecord(m)) };
    let failed: ReadonlySet<string>;
    this.stats.invocations++;
    try {
      failed = failedIds(await this.options.handler(event), event);
    } catch (error) {
      this.options.onError(error);
      failed = new Set(event.Records.map((r) => r.messageId));
    }
    const succeeded = event.Records.filter((r) => !failed.has(r.messageId));
    const retry = event.Records.filter((r) => failed.has(r.messageId));
    await this.deleteMessages(succeeded);
    await this.handBack(retry);
    this.emptyInARow = 0;
    this.batchDone();
  }

  private toRecord(m: Message): SqsRecord {
    const attributes = { ...(m.Attributes ?? {}) } as Record<string, string>;
    return {
      messageId: m.MessageId ?? '',
      receiptHandle: m.ReceiptHandle ?? '',
      body: m.Body ?? '',
      attributes: attributes as unknown as SqsRecordAttributes,
      messageAttributes: m.MessageAttributes ?? {},
      md5OfBody: m.MD5OfBody ?? '',
      eventSource: 'aws:sqs',
      eventSourceARN: this.arn,
      awsRegion: this.region,
    };
  }

  private async deleteMessages(records: readonly SqsRecord[]): Promise<void> {
    for (let i = 0; i < records.length; i += SQS_MAX_BATCH_ENTRIES) {
      const chunk = records.slice(i, i + SQS_MAX_BATCH_ENTRIES);
      this.stats.requests.DeleteMessageBatch++;
      this.stats.billedRequests++;
      try {
        const res = await this.sqs.send(
          new DeleteMessageBatchCommand({ QueueUrl: this.options.queueUrl, Entries: chunk.map((r, j) => ({ Id: String(j), ReceiptHandle: r.receiptHandle })) }),
        );
        this.stats.deleted += chunk.length - (res.Failed?.length ?? 0);
        for (const f of res.Failed ?? []) {
          // The message comes back after its visibility timeout and is handled again; receivers drop it by seq.
          const record = chunk[Number(f.Id)];
          this.options.onError(new FloeError(ErrorCode.Storage, `deleting message ${record?.messageId} from ${this.options.queueUrl} failed: ${f.Code} ${f.Message ?? ''}`.trim(), { retryable: true }));
        }
      } catch (error) {
        this.options.onError(new FloeError(ErrorCode.Storage, `deleting ${chunk.length} messages from ${this.options.queueUrl} failed: ${(error as Error).message}`, { cause: error, retryable: true }));
      }
    }
  }

  private async handBack(records: readonly SqsRecord[]): Promise<void> {
    this.stats.retried += records.length;
    for (let i = 0; i < records.length; i += SQS_MAX_BATCH_ENTRIES) {
      const chunk = records.slice(i, i + SQS_MAX_BATCH_ENTRIES);
      this.stats.requests.ChangeMessageVisibilityBatch++;
      this.stats.billedRequests++;
      try {
        const res = await this.sqs.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: this.options.queueUrl,
            Entries: chunk.map((r, j) => ({ Id: String(j), ReceiptHandle: r.receiptHandle, VisibilityTimeout: this.options.retryDelaySeconds })),
          }),
        );
        for (const f of res.Failed ?? []) {
          // The message still comes back, only later: when its visibility timeout ends.
          const record = chunk[Number(f.Id)];
          this.options.onError(new FloeError(ErrorCode.Storage, `handing back message ${record?.messageId} on ${this.options.queueUrl} failed: ${f.Code} ${f.Message ?? ''}`.trim(), { retryable: true }));
        }
      } catch (error) {
        this.options.onError(new FloeError(ErrorCode.Storage, `handing back ${chunk.length} messages on ${this.options.queueUrl} failed: ${(error as Error).message}`, { cause: error, retryable: true }));
      }
    }
  }
}

/**
 * The message ids to retry, by Lambda's rules: no response, or no or an empty `batchItemFailures`, is full success;
 * an entry without a valid `itemIdentifier` of this batch, or a response of the wrong shape, fails the whole batch.
 */
export function failedIds(response: unknown, event: SqsEvent): ReadonlySet<string> {
  const all = new Set(event.Records.map((r) => r.messageId));
  if (response === undefined || response === null) return new Set();
  if (typeof response !== 'object') return all;
  const failures = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (failures === undefined || failures === null) return new Set();
  if (!Array.isArray(failures)) return all;
  const failed = new Set<string>();
  for (const f of failures) {
    const id = (f as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || !all.has(id)) return all;
    failed.add(id);
  }
  return failed;
}
