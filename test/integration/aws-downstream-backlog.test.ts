import { randomUUID } from 'node:crypto';
import { CreateQueueCommand, DeleteQueueCommand, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { afterAll, describe, expect, it } from 'vitest';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { DownstreamBacklogProbe } from '../../lib/adapters/aws/downstream-backlog.js';
import { ErrorCode } from '../../lib/core/errors.js';
import { FakeClock } from '../support/builders.js';

// The backlog probe of backpressure, over moto (AWS_ENDPOINT_URL from test/support/moto-global-setup.ts).

const clients = awsClients();
const created: string[] = [];

async function fifoQueue(messages: number): Promise<string> {
  const { QueueUrl } = await clients.sqs.send(
    new CreateQueueCommand({ QueueName: `backlog-${randomUUID().slice(0, 8)}.fifo`, Attributes: { FifoQueue: 'true', ContentBasedDeduplication: 'true' } }),
  );
  created.push(QueueUrl!);
  for (let i = 0; i < messages; i += 10) {
    const n = Math.min(10, messages - i);
    await clients.sqs.send(
      new SendMessageBatchCommand({ QueueUrl, Entries: Array.from({ length: n }, (_, j) => ({ Id: String(j), MessageBody: `m${i + j}`, MessageGroupId: String(j % 2) })) }),
    );
  }
  return QueueUrl!;
}

describe('DownstreamBacklogProbe on the emulator', () => {
  afterAll(async () => {
    for (const QueueUrl of created.splice(0)) await clients.sqs.send(new DeleteQueueCommand({ QueueUrl }));
  });

  it('says a queue is backed up once it holds more than the bound per subtask times the parallelism, and reuses a reading for cacheMs', async () => {
    // Given a queue of 2 subtasks holding 5 messages and one holding 4, with a bound of 2 per subtask
    const clock = new FakeClock(1_000);
    const [five, four] = [await fifoQueue(5), await fifoQueue(4)];
    const errors: Error[] = [];
    const probe = (url: string) =>
      new DownstreamBacklogProbe({ sqs: clients.sqs, queues: [{ vertex: 'count', queueUrl: url, parallelism: 2 }], maxBacklogPerSubtask: 2, cacheMs: 1_000, clock, onError: (e) => errors.push(e) });
    const over = probe(five);
    const at = probe(four);

    // Then 5 > 2 × 2 is backed up and 4 is not
    expect(await over.read()).toEqual({ backedUp: true, messages: { count: 5 }, failed: false });
    expect(await at.read()).toEqual({ backedUp: false, messages: { count: 4 }, failed: false });
    // And within cacheMs the reading is reused; after it, the queue is asked again
    await over.read();
    clock.advance(999);
    await over.read();
    expect(over.requests).toBe(1);
    clock.advance(1);
    await over.read();
    expect(over.requests).toBe(2);
    expect(errors).toEqual([]);
  });

  it('reports a failed probe and does not hold the source off; the failure is kept for cacheMs too', async () => {
    const clock = new FakeClock(1_000);
    const errors: Error[] = [];
    const missing = (await fifoQueue(0)).replace(/backlog-[^/]+\.fifo$/, `missing-${randomUUID().slice(0, 8)}.fifo`);
    const probe = new DownstreamBacklogProbe({ sqs: clients.sqs, queues: [{ vertex: 'count', queueUrl: missing, parallelism: 1 }], maxBacklogPerSubtask: 1, clock, onError: (e) => errors.push(e) });
    expect(await probe.read()).toEqual({ backedUp: false, messages: {}, failed: true });
    expect(await probe.read()).toEqual({ backedUp: false, messages: {}, failed: true });
    expect(errors).toHaveLength(1);
    expect(probe.requests).toBe(1);
  });

  it('asks nothing without a bound or without downstream queues, and refuses a bound that is not positive', async () => {
    const clock = new FakeClock(1_000);
    const off = new DownstreamBacklogProbe({ sqs: clients.sqs, queues: [{ vertex: 'count', queueUrl: 'unused', parallelism: 1 }], maxBacklogPerSubtask: Infinity, clock, onError: () => {} });
    expect(off.enabled).toBe(false);
    expect(await off.read()).toEqual({ backedUp: false, messages: {}, failed: false });
    expect(off.requests).toBe(0);
    expect(() => new DownstreamBacklogProbe({ sqs: clients.sqs, queues: [], maxBacklogPerSubtask: 0, clock, onError: () => {} })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidOptions, message: expect.stringContaining('maxDownstreamBacklog must be > 0') }),
    );
  });
});
