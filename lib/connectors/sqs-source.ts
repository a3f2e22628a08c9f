import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SourceConnector, SourceSplit, SourceSubtaskContext, SourceTiming } from '../api/connector.js';
import type { DataStream } from '../api/job.js';
import { valueState } from '../api/state.js';
import { parseDuration } from '../core/duration.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import { awsClients } from '../adapters/aws/clients.js';

/** What `parse` sees of a message besides its body. */
export interface SqsMessageInfo {
  readonly messageId: string;
  /** FIFO queues: the message group. */
  readonly groupId?: string;
  /** When the message was sent (ms since the epoch). */
  readonly sentTimestamp: number;
  /** String message attributes. */
  readonly attributes: Readonly<Record<string, string>>;
}

/** Options of the SQS source. */
export interface SqsSourceOptions<T> {
  /** URL of a standard or FIFO (`.fifo`) queue; every subtask of the source receives from it. */
  readonly queueUrl: string;
  /**
   * What makes two messages copies of one another. @default the message id; a producer that may send one thing
   * twice as two messages (EventBridge, an application's retry) can name its own id, e.g. from the body
   */
  readonly dedupKey?: (body: string, message: SqsMessageInfo) => string;
  /** @internal A queue whose URL is known only when the job runs (a feed queue); standard. */
  readonly resolveQueueUrl?: () => string;
  /** Turns a message into a record; a message it throws on goes to the dead-letter queue with the error. @default the body as a string */
  readonly parse?: (body: string, message: SqsMessageInfo) => T;
  /**
   * How long a received message stays invisible to other receivers; the source extends it while the message waits
   * for its checkpoint. Must be at least twice the longest step (the Lambda timeout when deployed). @default '5m'
   */
  readonly visibilityTimeout?: string | number;
  /**
   * How long a message id is remembered after it was first processed, so that a copy delivered again (SQS's
   * at-least-once delivery, a receipt that expired, a delete that failed) is dropped. Must be at least twice the
   * visibility timeout plus the checkpoint timeout. @default '1h'
   */
  readonly dedupWindow?: string | number;
  /** A message received this many times without its checkpoint completing goes to the dead-letter queue. @default 5 */
  readonly maxReceives?: number;
  /** Where messages that cannot be processed go. @default the queue's redrive policy target */
  readonly deadLetterQueueUrl?: string;
  /**
   * Messages a subtask holds unacknowledged at most; it receives no more until a checkpoint completes. What a subtask
   * holds is in its snapshot's operator state, which on AWS travels in its acknowledgement through the job row (an
   * item of at most 400 KB shared by all subtasks): about 0.5 KB a message. @default 200
   */
  readonly maxInflight?: number;
  /** Bytes of received bodies a subtask holds before it emits them (in its state, as `maxInflight` says); larger batches are handed back at once. @default 32 KiB */
  readonly maxBufferedBytes?: number;
  /** Long-poll wait of each receive (0: short poll). @default 0 */
  readonly waitTime?: string | number;
  /**
   * After a receive that returned nothing, a subtask waits before it receives again, doubling from 50 ms up to this
   * (what an idle source costs in requests: about 3,600 an hour per subtask at 1 s). @default '1s'
   */
  readonly maxIdlePoll?: string | number;
  readonly client?: SQSClient;
}

/** A message received and not yet emitted: it is emitted from the split's state, so a replayed step emits the same ones. */
interface Received {
  /** Message id. */
  readonly i: string;
  /** Receipt handle. */
  readonly r: string;
  /** Body. */
  readonly b: string;
  /** Approximate receive count. */
  readonly n: number;
  /** Invisible until (ms). */
  readonly u: number;
  /** Sent timestamp (ms). */
  readonly t: number;
  /** FIFO: group id and sequence number. */
  readonly g?: string;
  readonly s?: string;
  /** String message attributes. */
  readonly a?: Readonly<Record<string, string>>;
}

/** A message emitted (or dead-lettered) and not yet deleted. */
interface Inflight {
  readonly i: string;
  readonly r: string;
  readonly u: number;
  /** The checkpoint that covers it, once its barrier passed. */
  readonly c?: number;
}

interface SqsPosition {
  readonly queueUrl: string;
  readonly buffer: readonly Received[];
  readonly inflight: readonly Inflight[];
}

/** What the source emits before deduplication: the message's identity and its parsed value. */
export interface SqsRawRecord {
  readonly i: string;
  /** The deduplication key, when it is not the message id. */
  readonly k?: string;
  readonly g?: string;
  readonly s?: string;
  readonly v: unknown;
}

const isFifo = (url: string) => url.endsWith('.fifo');

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function stringAttributes(m: Message): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m.MessageAttributes ?? {})) if (v.StringValue !== undefined) out[k] = v.StringValue;
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * Messages of an SQS queue, acknowledged on checkpoint: a message is deleted only after a checkpoint that covers
 * its effects completed, so a failure before that leaves it in the queue to be received again.
 *
 *   receive ─▶ buffer (state) ─▶ emit, inflight (state) ─▶ barrier n tags it ─▶ checkpoint n completes ─▶ delete
 *
 * - A received message is held in the split's state and emitted at the next read: a step that is replayed after a
 *   crash emits the same messages under the same sequence numbers (a second receive would return others).
 * - Messages waiting for their checkpoint have their visibility extended before it runs out.
 * - Copies are dropped after the source by message id within `dedupWindow`, in keyed state that is checkpointed
 *   with everything else (SQS delivers at least once, and a copy may reach any subtask): keyed by message id on
 *   standard queues, by message group on FIFO queues, so a group's order is kept.
 * - A message that `parse` throws on, that was received `maxReceives` times, or that is larger than the source can
 *   hold in its state, goes to the dead-letter queue with the reason as message attributes, and is deleted with
 *   the next checkpoint.
 *
 * The queue is not replayable: restoring an older snapshot does not bring back messages deleted since.
 */
export function sqsSource<T = string>(options: SqsSourceOptions<T>): SourceConnector<T> {
  const client = () => options.client ?? awsClients().sqs;
  // A feed queue's URL is known only when the job runs; `queueUrl` is then its label in messages.
  let resolved = options.resolveQueueUrl ? undefined : options.queueUrl;
  const url = () => (resolved ??= options.resolveQueueUrl!());
  const queueUrl = options.queueUrl;
  const fifo = isFifo(queueUrl);
  const visibilityMs = parseDuration(options.visibilityTimeout ?? '5m', 'sqsSource.visibilityTimeout');
  const dedupWindowMs = parseDuration(options.dedupWindow ?? '1h', 'sqsSource.dedupWindow');
  const waitSeconds = Math.round(parseDuration(options.waitTime ?? 0, 'sqsSource.waitTime') / 1000);
  const maxReceives = options.maxReceives ?? 5;
  const maxInflight = options.maxInflight ?? 200;
  const maxBufferedBytes = options.maxBufferedBytes ?? 32 * 1024;
  const parse = options.parse ?? ((body: string) => body as unknown as T);
  const maxIdlePollMs = parseDuration(options.maxIdlePoll ?? '1s', 'sqsSource.maxIdlePoll');
  /** Per split, in this process: when it may receive again after empty receives. Skipping a receive changes no output (what is emitted comes from the split), so a replay may skip or not. */
  const idle = new Map<string, { next: number; empties: number }>();
  let deadLetterUrl: Promise<string | undefined> | undefined;

  const resolveDeadLetterQueue = async (): Promise<string | undefined> => {
    if (options.deadLetterQueueUrl !== undefined) return options.deadLetterQueueUrl;
    const attrs = await client().send(new GetQueueAttributesCommand({ QueueUrl: url(), AttributeNames: ['RedrivePolicy'] }));
    const policy = attrs.Attributes?.RedrivePolicy;
    if (!policy) return undefined;
    const arn = (JSON.parse(policy) as { deadLetterTargetArn?: string }).deadLetterTargetArn;
    if (!arn) return undefined;
    const [, , , , account, name] = arn.split(':');
    return (await client().send(new GetQueueUrlCommand({ QueueName: name, QueueOwnerAWSAccountId: account }))).QueueUrl;
  };

  const deadLetter = async (messages: ReadonlyArray<{ m: Received; reason: string }>): Promise<void> => {
    if (messages.length === 0) return;
    const dlqUrl = await (deadLetterUrl ??= resolveDeadLetterQueue());
    if (dlqUrl === undefined) {
      const first = messages[0]!;
      throw new FloeError(
        ErrorCode.MalformedMessage,
        `sqs source: message ${first.m.i} of ${queueUrl} cannot be processed (${first.reason}) and there is no dead-letter queue for it: pass sqsSource({ deadLetterQueueUrl }) or give the queue a redrive policy`,
      );
    }
    const dlqFifo = isFifo(dlqUrl);
    for (const batch of chunks(messages, 10)) {
      const res = await client().send(
        new SendMessageBatchCommand({
          QueueUrl: dlqUrl,
          Entries: batch.map(({ m, reason }, k) => ({
            Id: String(k),
            MessageBody: m.b,
            MessageAttributes: {
              'floe-error': { DataType: 'String', StringValue: reason.slice(0, 1000) },
              'floe-source-queue': { DataType: 'String', StringValue: url() },
              'floe-message-id': { DataType: 'String', StringValue: m.i },
              'floe-receive-count': { DataType: 'Number', StringValue: String(m.n) },
            },
            ...(dlqFifo ? { MessageGroupId: m.g ?? 'floe-dead-letters', MessageDeduplicationId: m.i } : {}),
          })),
        }),
      );
      if ((res.Failed ?? []).length > 0) {
        const f = res.Failed![0]!;
        throw new FloeError(ErrorCode.Storage, `sqs source: cannot send to the dead-letter queue ${dlqUrl}: ${f.Code}: ${f.Message ?? ''}`, { retryable: true });
      }
    }
  };

  /** Extends the visibility of held messages that would become visible within half the timeout; returns the ids that could not be extended. */
  const extend = async (held: ReadonlyArray<{ i: string; r: string; u: number }>, now: number): Promise<{ lost: Set<string>; until: number }> => {
    const until = now + visibilityMs;
    const lost = new Set<string>();
    const due = held.filter((m) => m.u - now < visibilityMs / 2);
    for (const batch of chunks(due, 10)) {
      const res = await client().send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: url(),
          Entries: batch.map((m, k) => ({ Id: String(k), ReceiptHandle: m.r, VisibilityTimeout: Math.ceil(visibilityMs / 1000) })),
        }),
      );
      // A receipt that no longer works means another receiver may have the message now: let it go (copies are
      // dropped after the source, and whoever received it last deletes it).
      for (const f of res.Failed ?? []) lost.add(batch[Number(f.Id)]!.i);
    }
    return { lost, until: due.length > 0 ? until : -1 };
  };

  return {
    type: 'sqs',
    bounded: false,
    // (A dead-letter queue found through the queue's redrive policy is not known before the job runs: give it as
    // deadLetterQueueUrl, or grant it, for a deployment.)
    resources: [
      ...(options.resolveQueueUrl ? [] : [{ service: 'sqs' as const, queue: queueUrl, access: 'consume' as const }]),
      ...(options.deadLetterQueueUrl !== undefined ? [{ service: 'sqs' as const, queue: options.deadLetterQueueUrl, access: 'send' as const }] : []),
    ],
    async createSplits(parallelism: number): Promise<SourceSplit[]> {
      return Array.from({ length: parallelism }, (_, i) => ({ id: `sqs-${i}`, position: { queueUrl: url(), buffer: [], inflight: [] } satisfies SqsPosition, done: false }));
    },

    async read(split, max, ctx) {
      const pos = split.position as SqsPosition;
      const now = ctx.now();
      const values: SqsRawRecord[] = [];
      const inflight: Inflight[] = [...pos.inflight];
      const rejected: { m: Received; reason: string }[] = [];
      const emit = pos.buffer.slice(0, max);
      let buffer = pos.buffer.slice(emit.length);
      for (const m of emit) {
        inflight.push({ i: m.i, r: m.r, u: m.u });
        if (m.n > maxReceives) {
          rejected.push({ m, reason: `received ${m.n} times without a checkpoint that covers it completing (maxReceives ${maxReceives})` });
          continue;
        }
        try {
          const info = { messageId: m.i, ...(m.g !== undefined ? { groupId: m.g } : {}), sentTimestamp: m.t, attributes: m.a ?? {} };
          const v = parse(m.b, info);
          const k = options.dedupKey?.(m.b, info);
          values.push({ i: m.i, ...(k !== undefined && k !== m.i ? { k } : {}), ...(m.g !== undefined ? { g: m.g, s: m.s } : {}), v });
        } catch (e) {
          rejected.push({ m, reason: `parse failed: ${e instanceof Error ? e.message : String(e)}` });
        }
      }
      await deadLetter(rejected);

      // Keep what waits invisible.
      const { lost, until } = await extend([...buffer, ...inflight], now);
      const refresh = <M extends { i: string; u: number }>(m: M): M => (m.u - now < visibilityMs / 2 && until > 0 ? { ...m, u: until } : m);
      let held = inflight.filter((m) => !lost.has(m.i)).map(refresh);
      buffer = buffer.filter((m) => !lost.has(m.i)).map(refresh);

      // Receive the next batch into the state; it is emitted by the next read.
      const backoff = idle.get(split.id);
      if (buffer.length === 0 && held.length < maxInflight && (backoff === undefined || now >= backoff.next)) {
        const res = await client().send(
          new ReceiveMessageCommand({
            QueueUrl: url(),
            MaxNumberOfMessages: Math.max(1, Math.min(10, max, maxInflight - held.length)),
            VisibilityTimeout: Math.ceil(visibilityMs / 1000),
            WaitTimeSeconds: waitSeconds,
            MessageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp', 'MessageGroupId', 'SequenceNumber'],
            MessageAttributeNames: ['All'],
          }),
        );
        const receivedAt = ctx.now();
        if ((res.Messages ?? []).length === 0) {
          const empties = (backoff?.empties ?? 0) + 1;
          idle.set(split.id, { empties, next: receivedAt + Math.min(maxIdlePollMs, 50 * 2 ** Math.min(empties - 1, 20)) });
        } else idle.delete(split.id);
        const known = new Map(held.map((m, k) => [m.i, k]));
        const fresh: Received[] = [];
        const handBack: Message[] = [];
        const tooLarge: { m: Received; reason: string }[] = [];
        let bytes = 0;
        for (const msg of res.Messages ?? []) {
          if (!msg.MessageId || !msg.ReceiptHandle) continue;
          const at = known.get(msg.MessageId);
          if (at !== undefined) {
            // A copy of one this subtask emitted: keep its newest receipt, which is the one a delete needs.
            held[at] = { ...held[at]!, r: msg.ReceiptHandle, u: receivedAt + visibilityMs };
            continue;
          }
          if (fresh.some((m) => m.i === msg.MessageId)) continue;
          const a = msg.Attributes ?? {};
          const attributes = stringAttributes(msg);
          const m: Received = {
            i: msg.MessageId,
            r: msg.ReceiptHandle,
            b: msg.Body ?? '',
            n: Number(a.ApproximateReceiveCount ?? 1),
            u: receivedAt + visibilityMs,
            t: Number(a.SentTimestamp ?? receivedAt),
            ...(a.MessageGroupId !== undefined ? { g: a.MessageGroupId, s: a.SequenceNumber ?? '0' } : {}),
            ...(attributes ? { a: attributes } : {}),
          };
          const size = Buffer.byteLength(m.b);
          if (size > maxBufferedBytes) {
            tooLarge.push({ m, reason: `body of ${size} bytes is larger than the source holds in its state (maxBufferedBytes ${maxBufferedBytes})` });
            held.push({ i: m.i, r: m.r, u: m.u });
            continue;
          }
          if (bytes + size > maxBufferedBytes) {
            handBack.push(msg);
            continue;
          }
          bytes += size;
          fresh.push(m);
        }
        await deadLetter(tooLarge);
        // What does not fit in the state goes back to the queue at once (its receive count grows by one).
        for (const batch of chunks(handBack, 10)) {
          await client().send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: url(), Entries: batch.map((m, k) => ({ Id: String(k), ReceiptHandle: m.ReceiptHandle!, VisibilityTimeout: 0 })) }));
        }
        buffer = fresh;
      }
      held = held.slice();
      return { values: values as unknown as T[], split: { id: split.id, position: { queueUrl: pos.queueUrl, buffer, inflight: held } satisfies SqsPosition, done: false }, pending: buffer.length > 0 };
    },

    snapshotSplit(split, checkpointId) {
      const pos = split.position as SqsPosition;
      if (!pos.inflight.some((m) => m.c === undefined)) return split;
      return { ...split, position: { ...pos, inflight: pos.inflight.map((m) => (m.c === undefined ? { ...m, c: checkpointId } : m)) } satisfies SqsPosition };
    },

    async notifyCheckpointComplete(split, checkpointId, _ctx: SourceSubtaskContext) {
      const pos = split.position as SqsPosition;
      const due = pos.inflight.filter((m) => m.c !== undefined && m.c <= checkpointId);
      if (due.length === 0) return split;
      const kept = new Set<string>();
      for (const batch of chunks(due, 10)) {
        const res = await client().send(new DeleteMessageBatchCommand({ QueueUrl: url(), Entries: batch.map((m, k) => ({ Id: String(k), ReceiptHandle: m.r })) }));
        // An invalid receipt: the message was received again since (by this subtask, which then holds the newer
        // receipt, or by another, whose copy is dropped and deleted there), or it is gone. Anything else is tried
        // again at the next completed checkpoint.
        for (const f of res.Failed ?? []) if (!/ReceiptHandleIsInvalid|InvalidParameterValue/i.test(f.Code ?? '')) kept.add(batch[Number(f.Id)]!.i);
      }
      const deleted = new Set(due.filter((m) => !kept.has(m.i)).map((m) => m.i));
      return { ...split, position: { ...pos, inflight: pos.inflight.filter((m) => !deleted.has(m.i)) } satisfies SqsPosition };
    },

    checkTiming(t: SourceTiming): string[] {
      const problems: string[] = [];
      if (t.checkpointIntervalMs <= 0) problems.push(`sqs source ${queueUrl}: messages are deleted when a checkpoint completes, so checkpoints must be on: set checkpoint.interval`);
      if (visibilityMs < 2_000 || visibilityMs > 12 * 3_600_000) problems.push(`sqs source ${queueUrl}: visibilityTimeout must be from 2s to 12h (SQS's limits), got ${visibilityMs}ms`);
      if (t.stepTimeoutMs !== undefined && visibilityMs < 2 * t.stepTimeoutMs) {
        problems.push(`sqs source ${queueUrl}: visibilityTimeout ${visibilityMs / 1000}s is less than twice the longest step (${t.stepTimeoutMs / 1000}s, the function timeout): a message could reappear before its visibility is extended; raise visibilityTimeout to at least ${(2 * t.stepTimeoutMs) / 1000}s or lower the function timeout`);
      }
      const needed = 2 * visibilityMs + t.checkpointTimeoutMs;
      if (dedupWindowMs < needed) {
        problems.push(`sqs source ${queueUrl}: dedupWindow ${dedupWindowMs / 1000}s is shorter than twice the visibility timeout plus the checkpoint timeout (${needed / 1000}s): a copy could arrive after its id is forgotten; raise dedupWindow or lower visibilityTimeout / checkpoint.timeout`);
      }
      return problems;
    },

    recordValue(raw: unknown): T {
      return (raw as SqsRawRecord).v as T;
    },

    expand(raw: unknown, uid: string | undefined): DataStream<unknown> {
      const placement = { ...(uid !== undefined ? { uid: `${uid}.dedup` } : {}), name: fifo ? 'Deduplicate: sqs (per group)' : 'Deduplicate: sqs (per message id)' };
      const records = raw as DataStream<SqsRawRecord>;
      if (fifo) {
        // Keyed by group so a group's order is kept; the ids it processed within the window are remembered. A group
        // holds few: SQS hands out no more of a group while some of it is unacknowledged, that is until the
        // checkpoint after it completes. (Sequence numbers are not relied on: not every SQS implementation makes them
        // increase.)
        return records.keyBy((r) => r.g!).process<unknown, { recent: ReturnType<typeof valueState<ReadonlyArray<readonly [string, number]>>> }>(
          {
            state: { recent: valueState<ReadonlyArray<readonly [string, number]>>() },
            processElement(r, ctx, out) {
              const now = ctx.timerService().currentProcessingTime();
              const recent = (ctx.state.recent.value() ?? []).filter(([, at]) => at + dedupWindowMs > now);
              const id = r.k ?? r.i;
              if (recent.some(([seen]) => seen === id)) return;
              ctx.state.recent.update([...recent, [id, now]]);
              out.collect(r.v);
            },
          },
          placement,
        );
      }
      return records.keyBy((r) => r.k ?? r.i).process<unknown, { seen: ReturnType<typeof valueState<number>> }>(
        {
          state: { seen: valueState<number>() },
          processElement(r, ctx, out) {
            if (ctx.state.seen.value() !== undefined) return;
            const now = ctx.timerService().currentProcessingTime();
            ctx.state.seen.update(now);
            ctx.timerService().registerProcessingTimeTimer(now + dedupWindowMs);
            out.collect(r.v);
          },
          onTimer(_ts, ctx) {
            ctx.state.seen.clear();
          },
        },
        placement,
      );
    },
  };
}
