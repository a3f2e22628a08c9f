import { randomUUID } from 'node:crypto';
import {
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SendMessageBatchCommand,
  type SQSClient,
  type Message,
  type SendMessageBatchCommandInput,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { InMemoryQueues } from '../../lib/adapters/local/in-memory-queues.js';
import { decodeEnvelope, deduplicationId, encodedSize, encodeEnvelope, envelopeIdentity } from '../../lib/adapters/aws/envelope-codec.js';
import { failedIds, SqsEventSourcePoller, type SqsEvent, type SqsEventSourcePollerOptions, type SqsRecord } from '../../lib/adapters/aws/sqs-poller.js';
import { SqsQueueSender } from '../../lib/adapters/aws/sqs-queue-sender.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import { channelKey, type ChannelEnd, type Envelope } from '../../lib/core/envelope.js';
import { CONTRACT_VERTICES, describeQueueTransportContract, envelope, wordRecords, type QueueTransportFixture } from '../contract/queue.contract.js';

const sqs = awsClients().sqs;

interface FifoQueue {
  readonly url: string;
  readonly arn: string;
}

/** Creates a FIFO queue with a unique name; `deadLetter` adds a redrive policy to that queue. */
async function createFifoQueue(label: string, deadLetter?: { queue: FifoQueue; maxReceiveCount: number }): Promise<FifoQueue> {
  const name = `floe-${label}-${randomUUID().slice(0, 8)}.fifo`;
  const res = await sqs.send(
    new CreateQueueCommand({
      QueueName: name,
      Attributes: {
        FifoQueue: 'true',
        VisibilityTimeout: '30',
        ...(deadLetter ? { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: deadLetter.queue.arn, maxReceiveCount: deadLetter.maxReceiveCount }) } : {}),
      },
    }),
  );
  const url = res.QueueUrl!;
  const attrs = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
  return { url, arn: attrs.Attributes!.QueueArn! };
}

async function deleteQueues(...queues: FifoQueue[]): Promise<void> {
  await Promise.all(queues.map((q) => sqs.send(new DeleteQueueCommand({ QueueUrl: q.url }))));
}

/** Receives (and deletes) until the queue gives nothing for one long poll. */
async function drain(queue: FifoQueue): Promise<Message[]> {
  const out: Message[] = [];
  for (;;) {
    const res = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageSystemAttributeNames: ['All'] }));
    const messages = res.Messages ?? [];
    if (messages.length === 0) return out;
    out.push(...messages);
    await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queue.url, Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
  }
}

/** Per receiving subtask, envelopes that arrived and readers waiting for them. */
class Inbox {
  private readonly items = new Map<string, Envelope[]>();
  private readonly waiters = new Map<string, () => void>();

  push(e: Envelope): void {
    const key = channelKey(e.to);
    const list = this.items.get(key) ?? [];
    list.push(e);
    this.items.set(key, list);
    const w = this.waiters.get(key);
    this.waiters.delete(key);
    w?.();
  }

  async take(receiver: ChannelEnd, max: number, waitMs: number): Promise<Envelope[]> {
    const key = channelKey(receiver);
    if ((this.items.get(key)?.length ?? 0) === 0 && waitMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.waiters.delete(key);
          resolve();
        }, waitMs);
        this.waiters.set(key, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return (this.items.get(key) ?? []).splice(0, max);
  }
}

describeQueueTransportContract('InMemoryQueues', async () => {
  const queues = new InMemoryQueues(10_000);
  return {
    sender: queues,
    receive: (receiver, max, waitMs) => queues.receive(channelKey(receiver), max, waitMs),
    cleanup: async () => queues.close(),
  };
});

describeQueueTransportContract('SQS FIFO (SqsQueueSender + SqsEventSourcePoller)', async () => {
  const queues = new Map<string, FifoQueue>();
  for (const vertex of CONTRACT_VERTICES) queues.set(vertex, await createFifoQueue(vertex));
  const sender = new SqsQueueSender(sqs, (vertex) => {
    const q = queues.get(vertex);
    if (!q) throw new Error(`no queue for vertex ${vertex}`);
    return q.url;
  });
  const inbox = new Inbox();
  const problems: string[] = [];
  const pollers = [...queues.values()].map(
    (q) =>
      new SqsEventSourcePoller(sqs, {
        queueUrl: q.url,
        queueArn: q.arn,
        waitTimeSeconds: 1,
        concurrency: 2,
        onError: (e) => problems.push(String(e)),
        handler: async (event) => {
          for (const r of event.Records) {
            const e = decodeEnvelope(r.body, r.messageId);
            if (r.attributes.MessageGroupId !== String(e.to.subtask)) problems.push(`group ${r.attributes.MessageGroupId} carries ${envelopeIdentity(e)}`);
            inbox.push(e);
          }
        },
      }),
  );
  await Promise.all(pollers.map((p) => p.start()));
  const fixture: QueueTransportFixture = {
    sender,
    receive: (receiver, max, waitMs) => inbox.take(receiver, max, waitMs),
    cleanup: async () => {
      await Promise.all(pollers.map((p) => p.stop()));
      await deleteQueues(...queues.values());
      expect(problems).toEqual([]);
      const sentMessages = sender.stats.messages;
      expect(pollers.reduce((n, p) => n + p.stats.deleted, 0)).toBe(sentMessages);
    },
  };
  return fixture;
});

/** Runs a poller until `until` stops throwing, and stops it even when that never happens. */
async function pollUntil(options: SqsEventSourcePollerOptions, until: () => void): Promise<SqsEventSourcePoller> {
  const poller = new SqsEventSourcePoller(sqs, options);
  await poller.start();
  try {
    await vi.waitFor(until, { timeout: 20_000, interval: 50 });
  } finally {
    await poller.stop();
  }
  return poller;
}

/** One ReceiveMessage request an instrumented client made: when it started and ended (in request order), and what it got. */
interface ReceiveCall {
  readonly startedAt: number;
  endedAt?: number;
  /** Envelope ids (`group:seq`) the request returned, once it has ended. */
  got?: string[];
}

/**
 * An SQS client of its own whose ReceiveMessage requests are recorded by a middleware, so a test can wait for a known
 * number of polls and see what each returned, instead of trusting the poller's own counters or a fixed sleep. `tick`
 * orders the recorded requests against the test's own steps.
 */
function instrumentedSqs(): { readonly client: SQSClient; readonly receives: ReceiveCall[]; tick(): number } {
  const client = awsClients().sqs;
  const receives: ReceiveCall[] = [];
  let clock = 0;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== 'ReceiveMessageCommand') return next(args);
      const call: ReceiveCall = { startedAt: ++clock };
      receives.push(call);
      try {
        const result = await next(args);
        const messages = (result.output as { Messages?: Message[] }).Messages ?? [];
        call.got = messages.map((m) => {
          const e = decodeEnvelope(m.Body!);
          return `${e.to.subtask}:${e.seq}`;
        });
        return result;
      } finally {
        call.endedAt = ++clock;
      }
    },
    { step: 'initialize', name: 'floeTestReceiveRecorder' },
  );
  return { client, receives, tick: () => ++clock };
}

/** Envelope sequence number of a record, for handlers that only need to know which message it is. */
const seqOf = (r: SqsRecord): number => decodeEnvelope(r.body).seq;

describe('SQS FIFO transport on the emulator', () => {
  const toSubtask = (subtask: number, seq: number, extra: Partial<Envelope> = {}) =>
    envelope({ from: { op: 'src', subtask: 0 }, to: { op: 'map', subtask }, seq, records: [{ v: `to ${subtask} #${seq}` }], ...extra });

  let queue: FifoQueue;
  let sender: SqsQueueSender;
  const extraQueues: FifoQueue[] = [];

  beforeAll(async () => {
    queue = await createFifoQueue('map');
    sender = new SqsQueueSender(sqs, () => queue.url);
  });

  afterAll(async () => {
    await deleteQueues(queue, ...extraQueues);
  });

  /** A fresh queue for a test, deleted after the suite. */
  async function freshQueue(label: string, deadLetter?: { queue: FifoQueue; maxReceiveCount: number }): Promise<{ queue: FifoQueue; sender: SqsQueueSender }> {
    const q = await createFifoQueue(label, deadLetter);
    extraQueues.push(q);
    return { queue: q, sender: new SqsQueueSender(sqs, () => q.url) };
  }

  it('sends with MessageGroupId = receiving subtask and the envelope identity as deduplication id', async () => {
    const e = toSubtask(3, 7);
    await sender.send([e]);

    const [message, ...rest] = await drain(queue);
    expect(rest).toEqual([]);
    expect(message!.Attributes).toMatchObject({ MessageGroupId: '3', MessageDeduplicationId: 'contract-job.1.src.0.3.7' });
    expect(decodeEnvelope(message!.Body!)).toStrictEqual(e);
    expect(deduplicationId(e)).toBe('contract-job.1.src.0.3.7');
  });

  it('delivers an envelope sent twice only once while the first is still queued', async () => {
    const e = toSubtask(0, 1);
    await sender.send([e]);
    await sender.send([e, toSubtask(0, 2)]);

    const bodies = (await drain(queue)).map((m) => decodeEnvelope(m.Body!));
    expect(bodies.map((b) => b.seq)).toEqual([1, 2]);
  });

  it('splits a batch by bytes: envelopes of 300 KB go three to a request, and all arrive', async () => {
    const { queue: q, sender: s } = await freshQueue('big');
    const big = (seq: number) => toSubtask(0, seq, { records: [{ v: 'x'.repeat(300_000) }, { v: seq }] });
    const envelopes = [1, 2, 3, 4, 5].map(big);
    await s.send(envelopes);

    expect(s.requests.SendMessageBatch).toBe(2);
    const size = encodedSize(encodeEnvelope(envelopes[0]!));
    expect(s.stats.billedRequests).toBe(Math.ceil((3 * size) / 65_536) + Math.ceil((2 * size) / 65_536));
    expect((await drain(q)).map((m) => decodeEnvelope(m.Body!))).toStrictEqual(envelopes);
  });

  it('refuses an envelope that does not fit in one message, sending nothing of the call', async () => {
    const { queue: q, sender: s } = await freshQueue('huge');
    const huge = toSubtask(0, 2, { records: wordRecords(30_000) });
    const error = await s.send([toSubtask(0, 1), huge]).then(
      () => undefined,
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(FloeError);
    expect((error as FloeError).code).toBe(ErrorCode.LimitExceeded);
    expect((error as FloeError).message).toMatch(/contract-job\.1\.src\.0\.0\.2 \(data with 30000 records\) encodes to \d+ bytes, over the SQS message limit of 1048576 bytes/);
    expect(s.requests.SendMessageBatch).toBe(0);
    expect(await drain(q)).toEqual([]);
  });

  it('redelivers a failed item (receive count 2) before any later item of its group, while other groups go on', async () => {
    const { queue: q, sender: s } = await freshQueue('partial');
    await s.send([toSubtask(0, 1), toSubtask(0, 2), toSubtask(1, 1), toSubtask(0, 3), toSubtask(0, 4), toSubtask(1, 2)]);
    const done: { group: string; seq: number; receiveCount: string }[] = [];
    const reported: string[] = [];

    const poller = await pollUntil(
      {
        queueUrl: q.url,
        waitTimeSeconds: 1,
        handler: async (event) => {
          // Like Powertools' SqsFifoPartialProcessor with skipGroupOnError: once a message of a group fails, so do the
          // group's later messages in the batch; other groups go on.
          const failedGroups = new Set<string>();
          const batchItemFailures: { itemIdentifier: string }[] = [];
          for (const r of event.Records) {
            const group = r.attributes.MessageGroupId!;
            const seq = seqOf(r);
            if (failedGroups.has(group) || (group === '0' && seq === 2 && r.attributes.ApproximateReceiveCount === '1')) {
              failedGroups.add(group);
              batchItemFailures.push({ itemIdentifier: r.messageId });
              reported.push(`${group}:${seq}`);
              continue;
            }
            done.push({ group, seq, receiveCount: r.attributes.ApproximateReceiveCount });
          }
          return { batchItemFailures };
        },
      },
      () => expect(done).toHaveLength(6),
    );

    const group0 = done.filter((d) => d.group === '0');
    expect(group0.map((d) => d.seq)).toEqual([1, 2, 3, 4]);
    expect(group0.find((d) => d.seq === 2)!.receiveCount).toBe('2');
    expect(reported[0]).toBe('0:2');
    expect(done.filter((d) => d.group === '1')).toEqual([
      { group: '1', seq: 1, receiveCount: '1' },
      { group: '1', seq: 2, receiveCount: '1' },
    ]);
    expect(poller.stats.retried).toBe(reported.length);
    expect(poller.stats.deleted).toBe(6);
    expect(await drain(q)).toEqual([]);
  });

  it('redelivers the whole batch when the handler throws', async () => {
    const { queue: q, sender: s } = await freshQueue('throws');
    await s.send([toSubtask(0, 1), toSubtask(0, 2), toSubtask(1, 1)]);
    const thrown: SqsEvent[] = [];
    const done: { group: string; seq: number; receiveCount: string; messageId: string }[] = [];
    const errors: unknown[] = [];

    await pollUntil(
      {
        queueUrl: q.url,
        waitTimeSeconds: 1,
        onError: (e) => errors.push(e),
        handler: async (event) => {
          if (thrown.length === 0) {
            thrown.push(event);
            throw new Error('handler crashed');
          }
          for (const r of event.Records) done.push({ group: r.attributes.MessageGroupId!, seq: seqOf(r), receiveCount: r.attributes.ApproximateReceiveCount, messageId: r.messageId });
        },
      },
      () => expect(done).toHaveLength(3),
    );

    expect(errors).toEqual([new Error('handler crashed')]);
    for (const r of thrown[0]!.Records) expect(done.find((d) => d.messageId === r.messageId)?.receiveCount).toBe('2');
    expect(done.filter((d) => d.group === '0').map((d) => d.seq)).toEqual([1, 2]);
    expect(done.filter((d) => d.group === '1').map((d) => d.seq)).toEqual([1]);
    expect(await drain(q)).toEqual([]);
  });

  it('hands no other message of a group out while one is being handled, but other groups go on', async () => {
    const { queue: q, sender: s } = await freshQueue('busy');
    await s.send([toSubtask(0, 1), toSubtask(0, 2), toSubtask(1, 1), toSubtask(1, 2), toSubtask(1, 3)]);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const seen: string[] = [];

    const { client, receives, tick } = instrumentedSqs();

    const poller = new SqsEventSourcePoller(client, {
      queueUrl: q.url,
      waitTimeSeconds: 1,
      batchSize: 1,
      concurrency: 2,
      handler: async (event) => {
        for (const r of event.Records) {
          const id = `${r.attributes.MessageGroupId}:${seqOf(r)}`;
          seen.push(id);
          if (id === '0:1') await released;
        }
      },
    });
    await poller.start();
    try {
      // While 0:1 is being handled, group 1 drains through the other loop
      await vi.waitFor(() => expect(seen).toEqual(expect.arrayContaining(['0:1', '1:1', '1:2', '1:3'])), { timeout: 20_000, interval: 50 });
      // and goes on with a message of group 1 sent after 0:2 was queued, which must come out while 0:2 stays held
      await s.send([toSubtask(1, 4)]);
      await vi.waitFor(() => expect(seen).toContain('1:4'), { timeout: 20_000, interval: 50 });
      // and the poller receives at least twice more, from start to end after 1:4 came out, while 0:1 is still in hand:
      // each of those receives could have returned 0:2, and none did.
      const from = tick();
      await vi.waitFor(() => expect(receives.filter((c) => c.startedAt > from && c.endedAt !== undefined).length).toBeGreaterThanOrEqual(2), { timeout: 20_000, interval: 50 });
      expect(receives.flatMap((c) => c.got ?? [])).not.toContain('0:2');
      expect(seen).not.toContain('0:2');
      release();
      await vi.waitFor(() => expect(seen).toContain('0:2'), { timeout: 20_000, interval: 50 });
    } finally {
      release();
      await poller.stop();
    }

    expect(seen.filter((id) => id.startsWith('1:'))).toEqual(['1:1', '1:2', '1:3', '1:4']);
    expect(seen.indexOf('0:2')).toBeGreaterThan(seen.indexOf('0:1'));
    expect(seen).toHaveLength(6);
  });

  it('short-polls with a pause after an empty receive that a finished batch of its own cuts short', async () => {
    // Given group 0's first message is being handled, so the queue's only other message cannot be handed out
    const { queue: q, sender: s } = await freshQueue('pause');
    await s.send([toSubtask(0, 1), toSubtask(0, 2)]);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const seen: number[] = [];
    const pauses: number[] = [];
    const { client, receives, tick } = instrumentedSqs();
    const poller = new SqsEventSourcePoller(client, {
      queueUrl: q.url,
      waitTimeSeconds: 0,
      batchSize: 1,
      concurrency: 2,
      emptyReceiveDelayMs: 50,
      // A pause that only a finished batch (or stop) ends: the receive loop cannot spin past it.
      sleep: (ms) => {
        pauses.push(ms);
        return new Promise(() => {});
      },
      handler: async (event) => {
        for (const r of event.Records) {
          seen.push(seqOf(r));
          if (seqOf(r) === 1) await released;
        }
      },
    });
    await poller.start();
    try {
      // When the other loop's receive comes back empty
      await vi.waitFor(() => expect(pauses).toEqual([50]), { timeout: 20_000, interval: 20 });
      // (and the test then lets a timer of its own expire, set after the pause began and due after it would have ended:
      // Node runs timers in the order they are due, so a loop that polled again without pausing, or after a timer of
      // the pause's length instead of the injected sleep, has sent that receive before this timer fires however slow
      // the machine; the requests after it, through the same client, let any such receive reach the recorder)
      await new Promise((r) => setTimeout(r, 4 * 50));
      for (let i = 0; i < 3; i++) await client.send(new GetQueueAttributesCommand({ QueueUrl: q.url, AttributeNames: ['ApproximateNumberOfMessages'] }));

      // Then it pauses instead of polling again: two receives were made, both are over, one got 1 and one nothing
      expect(receives.map((c) => ({ got: c.got, over: c.endedAt !== undefined }))).toEqual(
        expect.arrayContaining([
          { got: ['0:1'], over: true },
          { got: [], over: true },
        ]),
      );
      expect(receives).toHaveLength(2);
      expect(poller.stats.emptyReceives).toBe(1);
      expect(seen).toEqual([1]);
      // until the batch in flight is done; the next message follows, received after the release
      const releasedAt = tick();
      release();
      await vi.waitFor(() => expect(seen).toEqual([1, 2]), { timeout: 20_000, interval: 20 });
      const gotSecond = receives.find((c) => c.got?.includes('0:2'));
      expect(gotSecond?.startedAt).toBeGreaterThan(releasedAt);
    } finally {
      release();
      await poller.stop();
    }
  });

  it('doubles the pause after each empty receive in a row, up to maxEmptyReceiveDelayMs', async () => {
    const { queue: q } = await freshQueue('backoff');
    const pauses: number[] = [];
    const poller = new SqsEventSourcePoller(sqs, {
      queueUrl: q.url,
      waitTimeSeconds: 0,
      emptyReceiveDelayMs: 20,
      maxEmptyReceiveDelayMs: 100,
      sleep: async (ms) => void pauses.push(ms),
      handler: async () => {},
    });
    await poller.start();
    try {
      await vi.waitFor(() => expect(pauses.length).toBeGreaterThanOrEqual(6), { timeout: 20_000, interval: 20 });
    } finally {
      await poller.stop();
    }
    expect(pauses.slice(0, 6)).toEqual([20, 40, 80, 100, 100, 100]);
  });

  // With batches of one, the message behind the poison is not received (and its receive count not raised) until the
  // poison is gone. In bigger batches it would be failed alongside and dead-lettered too: a FIFO queue's redrive takes
  // every message that shared the poison's batches, so handlers should dead-letter terminal failures themselves.
  it('moves a malformed (poison) message to the dead-letter queue after maxReceiveCount, then its group goes on', async () => {
    const dlq = (await freshQueue('dlq')).queue;
    const { queue: q, sender: s } = await freshQueue('poisoned', { queue: dlq, maxReceiveCount: 2 });
    const poison = JSON.stringify({ v: 1, job: 'contract-job', gen: 1, from: { op: 'src', subtask: 0 }, to: { op: 'map', subtask: 0 }, seq: 0, kind: 'data', epoch: 0 });
    await sqs.send(new SendMessageCommand({ QueueUrl: q.url, MessageBody: poison, MessageGroupId: '0', MessageDeduplicationId: 'poison' }));
    const after = toSubtask(0, 1);
    await s.send([after]);
    const rejected: { receiveCount: string; error: FloeError }[] = [];
    const accepted: Envelope[] = [];

    await pollUntil(
      {
        queueUrl: q.url,
        waitTimeSeconds: 1,
        batchSize: 1,
        handler: async (event) => {
          const failedGroups = new Set<string>();
          const batchItemFailures: { itemIdentifier: string }[] = [];
          for (const r of event.Records) {
            const group = r.attributes.MessageGroupId!;
            if (failedGroups.has(group)) {
              batchItemFailures.push({ itemIdentifier: r.messageId });
              continue;
            }
            try {
              accepted.push(decodeEnvelope(r.body, `message ${r.messageId}`));
            } catch (error) {
              rejected.push({ receiveCount: r.attributes.ApproximateReceiveCount, error: error as FloeError });
              failedGroups.add(group);
              batchItemFailures.push({ itemIdentifier: r.messageId });
            }
          }
          return { batchItemFailures };
        },
      },
      () => expect(accepted).toHaveLength(1),
    );

    expect(accepted).toStrictEqual([after]);
    expect(rejected.map((r) => r.receiveCount)).toEqual(['1', '2']);
    const error = rejected[0]!.error;
    expect(error).toBeInstanceOf(FloeError);
    expect(error.code).toBe(ErrorCode.MalformedMessage);
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/^message .+: body is not a valid envelope: /);
    expect(error.message).toContain('seq: ');
    expect(error.message).toContain('records: ');
    const deadLetters = await drain(dlq);
    expect(deadLetters.map((m) => m.Body)).toEqual([poison]);
  });

  it('counts requests per 1000 records for the cost model', async () => {
    const { queue: q, sender: s } = await freshQueue('cost');
    // 10 240 records for 4 receiving subtasks, packed 512 to an envelope, sent 4 envelopes per step
    const envelopes = Array.from({ length: 20 }, (_, i) => toSubtask(i % 4, Math.floor(i / 4) + 1, { records: wordRecords(512, i * 512) }));
    for (let i = 0; i < envelopes.length; i += 4) await s.send(envelopes.slice(i, i + 4));
    let handled = 0;
    const poller = await pollUntil(
      {
        queueUrl: q.url,
        waitTimeSeconds: 1,
        handler: async (event) => {
          handled += event.Records.length;
        },
      },
      () => expect(handled).toBe(20),
    );

    const perThousand = (n: number) => Math.round((n / 10.24) * 100) / 100;
    const cost = {
      bytesPerEnvelope: Math.round(s.stats.bytes / 20),
      SendMessageBatch: perThousand(s.requests.SendMessageBatch),
      billedSend: perThousand(s.stats.billedRequests),
      ReceiveMessage: perThousand(poller.requests.ReceiveMessage - poller.stats.emptyReceives),
      billedReceive: perThousand(poller.stats.billedRequests - poller.stats.emptyReceives - poller.requests.DeleteMessageBatch),
      DeleteMessageBatch: perThousand(poller.requests.DeleteMessageBatch),
    };
    console.info('SQS requests per 1000 records:', cost);
    expect(s.requests.SendMessageBatch).toBe(5);
    expect(poller.stats.deleted).toBe(20);
  });
});

/** A scripted stand-in for SQSClient: answers each SendMessageBatch with `script(input, call)`. */
function scriptedSqs(script: (input: SendMessageBatchCommandInput, call: number) => { failed?: number[]; senderFault?: boolean; throws?: unknown }) {
  const calls: SendMessageBatchCommandInput[] = [];
  const client = {
    send: async (command: SendMessageBatchCommand) => {
      const input = command.input;
      calls.push(input);
      const answer = script(input, calls.length);
      if (answer.throws) throw answer.throws;
      const failed = new Set(answer.failed ?? []);
      const entries = input.Entries ?? [];
      return {
        Successful: entries.filter((_, i) => !failed.has(i)).map((e) => ({ Id: e.Id, MessageId: randomUUID(), MD5OfMessageBody: '' })),
        Failed: entries
          .map((e, i) => ({ e, i }))
          .filter(({ i }) => failed.has(i))
          .map(({ e }) => ({ Id: e.Id, SenderFault: answer.senderFault ?? false, Code: answer.senderFault ? 'InvalidMessageContents' : 'InternalError', Message: 'scripted' })),
      };
    },
  };
  return { client: client as unknown as SQSClient, calls };
}

/** The `<group>:<seq>` of every entry of a request, in order. */
const entriesOf = (input: SendMessageBatchCommandInput): string[] => (input.Entries ?? []).map((e) => `${e.MessageGroupId}:${decodeEnvelope(e.MessageBody!).seq}`);

describe('SqsQueueSender against a scripted SQS', () => {
  const noSleep = async () => {};
  const to = (subtask: number, seq: number, op = 'map') => envelope({ to: { op, subtask }, seq });

  it('routes by vertex, batches ten to a request and keeps the order of the call', async () => {
    const { client, calls } = scriptedSqs(() => ({}));
    const sender = new SqsQueueSender(client, (vertex) => `https://sqs/${vertex}.fifo`);
    const envelopes = [...Array.from({ length: 23 }, (_, i) => to(i % 2, Math.floor(i / 2) + 1)), to(0, 1, 'sink')];
    await sender.send(envelopes);

    const mapCalls = calls.filter((c) => c.QueueUrl === 'https://sqs/map.fifo');
    expect(mapCalls.map((c) => c.Entries!.length)).toEqual([10, 10, 3]);
    expect(mapCalls.flatMap(entriesOf)).toEqual(envelopes.slice(0, 23).map((e) => `${e.to.subtask}:${e.seq}`));
    expect(calls.filter((c) => c.QueueUrl === 'https://sqs/sink.fifo').flatMap(entriesOf)).toEqual(['0:1']);
    expect(calls.flatMap((c) => c.Entries!.map((e) => e.MessageDeduplicationId))).toContain(deduplicationId(envelopes[5]!));
    expect(sender.requests.SendMessageBatch).toBe(4);
    expect(sender.stats.messages).toBe(24);
  });

  it('retries failed entries in order, ahead of everything after them', async () => {
    // Entries 3 and 4 of the first request (group 1, seqs 2 and 3 — a group fails from its first refused entry on) are refused once.
    const { client, calls } = scriptedSqs((_, call) => (call === 1 ? { failed: [3, 4] } : {}));
    const sleeps: number[] = [];
    const sender = new SqsQueueSender(client, () => 'q', { sleep: async (ms) => void sleeps.push(ms) });
    const envelopes = [to(0, 1), to(1, 1), to(0, 2), to(1, 2), to(1, 3), to(0, 3), to(0, 4), to(0, 5), to(0, 6), to(0, 7), to(0, 8), to(1, 4)];
    await sender.send(envelopes);

    expect(calls.map(entriesOf)).toEqual([
      ['0:1', '1:1', '0:2', '1:2', '1:3', '0:3', '0:4', '0:5', '0:6', '0:7'],
      ['1:2', '1:3', '0:8', '1:4'],
    ]);
    expect(sleeps).toHaveLength(1);
    expect(sender.stats.retriedEntries).toBe(2);
    expect(sender.stats.messages).toBe(12);
  });

  it('fails the job over when SQS stored a later envelope of a group whose earlier one it refused', async () => {
    const { client } = scriptedSqs(() => ({ failed: [1] }));
    const sender = new SqsQueueSender(client, () => 'q', { sleep: noSleep });
    const error = await sender.send([to(0, 1), to(0, 2), to(0, 3)]).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(FloeError);
    expect((error as FloeError).code).toBe(ErrorCode.JobFailed);
    expect((error as FloeError).message).toContain('out of order');
  });

  it('does not retry an entry SQS refused as the sender’s fault', async () => {
    const { client, calls } = scriptedSqs(() => ({ failed: [0], senderFault: true }));
    const sender = new SqsQueueSender(client, () => 'q', { sleep: noSleep });
    const error = (await sender.send([to(0, 1)]).catch((e: unknown) => e)) as FloeError;

    expect(error.code).toBe(ErrorCode.Storage);
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('InvalidMessageContents');
    expect(calls).toHaveLength(1);
  });

  it('retries a failed request and gives up with a retryable error after maxAttempts', async () => {
    const serverError = Object.assign(new Error('service unavailable'), { name: 'ServiceUnavailable', $fault: 'server', $metadata: { httpStatusCode: 503 } });
    const flaky = scriptedSqs((_, call) => (call === 1 ? { throws: serverError } : {}));
    await new SqsQueueSender(flaky.client, () => 'q', { sleep: noSleep }).send([to(0, 1), to(0, 2)]);
    expect(flaky.calls.map(entriesOf)).toEqual([
      ['0:1', '0:2'],
      ['0:1', '0:2'],
    ]);

    const down = scriptedSqs(() => ({ throws: serverError }));
    const error = (await new SqsQueueSender(down.client, () => 'q', { sleep: noSleep, maxAttempts: 3 }).send([to(0, 1)]).catch((e: unknown) => e)) as FloeError;
    expect(error.code).toBe(ErrorCode.Storage);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/failed 3 times: ServiceUnavailable: service unavailable/);
    expect(down.calls).toHaveLength(3);

    const missing = scriptedSqs(() => ({ throws: Object.assign(new Error('no queue'), { name: 'QueueDoesNotExist', $fault: 'client', $metadata: { httpStatusCode: 400 } }) }));
    const terminal = (await new SqsQueueSender(missing.client, () => 'q', { sleep: noSleep }).send([to(0, 1)]).catch((e: unknown) => e)) as FloeError;
    expect(terminal.retryable).toBe(false);
    expect(missing.calls).toHaveLength(1);
  });

  it('validates its options, reporting every problem', () => {
    expect(() => new SqsQueueSender(sqs, () => 'q', { maxMessageBytes: 10, maxAttempts: 0 })).toThrow(
      /maxMessageBytes must be an integer from 1024 to 1048576, got 10[\s\S]*maxAttempts must be an integer >= 1, got 0/,
    );
  });

  it('encodes bodies the same way the codec does', async () => {
    const { client, calls } = scriptedSqs(() => ({}));
    const e = to(0, 1);
    await new SqsQueueSender(client, () => 'q').send([e]);
    expect(calls[0]!.Entries![0]!.MessageBody).toBe(encodeEnvelope(e));
  });
});

describe('SqsEventSourcePoller: reading a handler’s answer as Lambda does', () => {
  const record = (messageId: string) => ({ messageId }) as SqsRecord;
  const event: SqsEvent = { Records: [record('a'), record('b'), record('c')] };

  it.each<[string, unknown, string[]]>([
    ['no answer', undefined, []],
    ['null', null, []],
    ['an empty object', {}, []],
    ['null batchItemFailures', { batchItemFailures: null }, []],
    ['an empty list', { batchItemFailures: [] }, []],
    ['two known ids', { batchItemFailures: [{ itemIdentifier: 'b' }, { itemIdentifier: 'c' }] }, ['b', 'c']],
    ['an unknown id', { batchItemFailures: [{ itemIdentifier: 'b' }, { itemIdentifier: 'zzz' }] }, ['a', 'b', 'c']],
    ['an empty id', { batchItemFailures: [{ itemIdentifier: '' }] }, ['a', 'b', 'c']],
    ['a null id', { batchItemFailures: [{ itemIdentifier: null }] }, ['a', 'b', 'c']],
    ['a misspelt key', { batchItemFailures: [{ itemIdentfier: 'a' }] }, ['a', 'b', 'c']],
    ['batchItemFailures that is not a list', { batchItemFailures: 'a' }, ['a', 'b', 'c']],
    ['a string', 'ok', ['a', 'b', 'c']],
  ])('%s → retries %j', (_, answer, expected) => {
    expect([...failedIds(answer, event)].sort()).toEqual(expected);
  });

  it('validates its options, reporting every problem', () => {
    expect(() => new SqsEventSourcePoller(sqs, { queueUrl: '', handler: async () => {}, batchSize: 11, waitTimeSeconds: 21, concurrency: 0 })).toThrow(
      /queueUrl is required[\s\S]*batchSize must be an integer from 1 to 10, got 11[\s\S]*waitTimeSeconds must be an integer from 0 to 20, got 21[\s\S]*concurrency must be an integer from 1 to 1000, got 0/,
    );
  });
});
