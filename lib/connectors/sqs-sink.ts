import { createHash } from 'node:crypto';
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SinkConnector } from '../api/connector.js';
import { ErrorCode, FloeError, ValidationError } from '../core/errors.js';
import { awsClients } from '../adapters/aws/clients.js';
import { SQS_MAX_BATCH_ENTRIES, SQS_MAX_MESSAGE_BYTES } from '../adapters/aws/envelope-codec.js';
import { resolveRetryOptions, sendInBatches, utf8Bytes, type RetryOptions } from './aws-calls.js';
import { Staging, stagingResource, type StagedTransaction, type StagingOptions } from './staged-transactions.js';

/** Options of the SQS sink. */
export interface SqsSinkOptions<T> extends StagingOptions {
  /** URL of the queue; one whose name ends in `.fifo` is a FIFO queue (exactly-once), any other a standard queue (at-least-once). */
  readonly queueUrl: string;
  /** The message body of a record. @default strings as they are, anything else as JSON */
  readonly body?: (value: T) => string;
  /** FIFO queues: the message group of a record, within which SQS keeps order. @default `<sink uid>-<subtask>` */
  readonly groupId?: (value: T) => string;
  /** The SQS client. @default `awsClients().sqs` (the SDK's endpoint resolution, `AWS_ENDPOINT_URL` included) */
  readonly client?: SQSClient;
  /** Largest message body in bytes; a larger one fails its step (LIMIT_EXCEEDED). @default 262144 (256 KiB, what every queue and emulator takes) */
  readonly maxMessageBytes?: number;
  /** Largest total body size of one SendMessageBatch request in bytes. @default `maxMessageBytes` */
  readonly maxBatchBytes?: number;
  /** Retries of throttled and failed calls and entries. */
  readonly retry?: RetryOptions;
}

/** How long SQS FIFO queues drop a message whose deduplication id they have seen, in milliseconds. */
export const SQS_FIFO_DEDUPLICATION_WINDOW_MS = 5 * 60_000;

interface StagedMessage {
  /** Body. */
  readonly b: string;
  /** Message group (FIFO queues). */
  readonly g?: string;
}

interface SqsTransaction extends StagedTransaction {
  readonly sink: 'sqs';
  readonly queueUrl: string;
}

interface OutgoingMessage {
  readonly body: string;
  readonly group?: string;
  readonly dedup?: string;
  readonly size: number;
}

/** Characters SQS accepts in a message body (XML 1.0's). */
const SQS_BODY = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;

/** A message group id: 1–128 ASCII letters, digits and punctuation. */
const GROUP_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * Messages to an SQS queue, sent when the checkpoint that covers them completes. Records of an epoch are staged (see
 * `StagingOptions`); the commit sends them with SendMessageBatch (10 entries and `maxBatchBytes` a request, failed
 * entries retried before what follows them) and then deletes the staged parts, so a commit that completed is never
 * sent again.
 *
 * On a FIFO queue every message carries a deduplication id derived from where it was staged (run, sink uid, subtask,
 * part, index): a commit that is run again — it died half-way, or a restore repeats it — sends identical ids, which
 * SQS drops for five minutes after the first send. A commit re-run later than that (a job that stays down longer
 * after dying mid-commit) sends again what the first attempt had sent: exactly-once holds within that window.
 * A standard queue has no deduplication: the sink is at-least-once there.
 */
export function sqsSink<T>(options: SqsSinkOptions<T>): SinkConnector<T> {
  const problems: string[] = [];
  if (typeof options.queueUrl !== 'string' || !/^https?:\/\/.+\/.+/.test(options.queueUrl)) problems.push(`queueUrl must be a queue URL, got ${String(options.queueUrl)}`);
  const maxMessageBytes = options.maxMessageBytes ?? 262_144;
  const maxBatchBytes = options.maxBatchBytes ?? maxMessageBytes;
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1024 || maxMessageBytes > SQS_MAX_MESSAGE_BYTES) problems.push(`maxMessageBytes must be an integer from 1024 to ${SQS_MAX_MESSAGE_BYTES}, got ${maxMessageBytes}`);
  if (!Number.isInteger(maxBatchBytes) || maxBatchBytes < maxMessageBytes || maxBatchBytes > SQS_MAX_MESSAGE_BYTES) problems.push(`maxBatchBytes must be an integer from maxMessageBytes to ${SQS_MAX_MESSAGE_BYTES}, got ${maxBatchBytes}`);
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'sqsSink options', problems);
  const retry = resolveRetryOptions('sqsSink', options.retry);
  const staging = new Staging('sqsSink', options);
  const fifo = options.queueUrl.endsWith('.fifo');
  const bodyOf = options.body ?? ((v: T) => (typeof v === 'string' ? v : JSON.stringify(v)));
  let client: SQSClient | undefined;
  const sqs = () => (client ??= options.client ?? awsClients().sqs);

  return {
    type: 'sqs',
    resources: [{ service: 'sqs', queue: options.queueUrl, access: 'send' }, ...(options.staging?.startsWith('s3://') ? [stagingResource(options.staging)] : []),],
    exactlyOnce: fifo,
    createWriter(ctx) {
      const defaultGroup = `${ctx.uid}-${ctx.subtask}`.replace(/[^\x21-\x7e]/g, '_').slice(0, 128);
      const encode = (values: readonly T[]): StagedMessage[] =>
        values.map((v) => {
          const b = bodyOf(v);
          if (typeof b !== 'string') throw new FloeError(ErrorCode.InvalidJob, `sqsSink(${options.queueUrl}): body must return a string, got ${typeof b}`);
          const size = utf8Bytes(b);
          if (size > maxMessageBytes) throw new FloeError(ErrorCode.LimitExceeded, `sqsSink(${options.queueUrl}): a message body of ${size} bytes is over the limit of ${maxMessageBytes} bytes (maxMessageBytes)`);
          if (size === 0) throw new FloeError(ErrorCode.LimitExceeded, `sqsSink(${options.queueUrl}): SQS takes no empty message body`);
          if (!SQS_BODY.test(b)) throw new FloeError(ErrorCode.LimitExceeded, `sqsSink(${options.queueUrl}): a message body holds characters SQS does not accept (outside XML 1.0's)`);
          if (!fifo) return { b };
          const g = options.groupId ? options.groupId(v) : defaultGroup;
          if (typeof g !== 'string' || !GROUP_ID.test(g)) throw new FloeError(ErrorCode.InvalidJob, `sqsSink(${options.queueUrl}): groupId must return 1 to 128 ASCII letters, digits or punctuation, got ${JSON.stringify(g)}`);
          return { b, g };
        });
      return staging.writer<T, StagedMessage>(ctx, 'sqs', () => ({ queueUrl: options.queueUrl }), encode);
    },
    async commit(pending) {
      const t = pending as SqsTransaction;
      const isFifo = t.queueUrl.endsWith('.fifo');
      await staging.commit<StagedMessage>(t, async (records) => {
        const messages: OutgoingMessage[] = records.map(({ record, part, index }) => ({
          body: record.b,
          size: utf8Bytes(record.b),
          ...(isFifo ? { group: record.g, dedup: deduplicationId(t, part, index) } : {}),
        }));
        await sendInBatches(
          `sqsSink: sending checkpoint ${t.checkpointId} of ${t.uid}/${t.subtask} to ${t.queueUrl}`,
          retry,
          messages,
          (pendingMessages) => {
            let n = 0;
            let bytes = 0;
            for (const m of pendingMessages) {
              if (n === SQS_MAX_BATCH_ENTRIES || (n > 0 && bytes + m.size > maxBatchBytes)) break;
              n++;
              bytes += m.size;
            }
            return n;
          },
          async (batch) => {
            const response = await sqs().send(
              new SendMessageBatchCommand({
                QueueUrl: t.queueUrl,
                Entries: batch.map((m, i) => ({
                  Id: String(i),
                  MessageBody: m.body,
                  ...(m.group !== undefined ? { MessageGroupId: m.group } : {}),
                  ...(m.dedup !== undefined ? { MessageDeduplicationId: m.dedup } : {}),
                })),
              }),
            );
            const failed = new Map((response.Failed ?? []).map((f) => [f.Id ?? '', f]));
            // A sender fault (a refused body, say) will not pass on retry; anything else (throttling, a server error) may.
            return batch.map((_, i) => {
              const f = failed.get(String(i));
              if (!f) return undefined;
              return { code: f.Code ?? 'error', message: f.Message, retryable: !f.SenderFault };
            });
          },
        );
      });
    },
  };
}

/** The deduplication id of a staged message: the same on every commit of its transaction, unique across them. */
function deduplicationId(t: SqsTransaction, part: string, index: number): string {
  return createHash('sha256').update(`${t.run}\n${t.uid}\n${t.subtask}\n${part}\n${index}`).digest('hex');
}
