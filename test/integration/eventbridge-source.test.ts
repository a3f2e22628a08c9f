import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { GetQueueAttributesCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { EmulatorRunner } from '../../lib/hosts/emulator/emulator-runner.js';
import { Job } from '../../lib/api/job.js';
import { valueState } from '../../lib/api/state.js';
import { feedQueueEnvName } from '../../lib/api/connector-resources.js';
import { eventBridgeSource } from '../../lib/connectors/eventbridge-source.js';
import { Scratch, captureLog, sleep, waitFor } from '../support/jobs.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
const scratch = new Scratch();
afterEach(() => scratch.cleanup());

describe('eventbridge source in emulator mode', () => {
  it('creates its queue and rule, and counts each matching event exactly once, a copy of an event included', async () => {
    const cfg = { endpoint, region: 'us-east-1' };
    const events = new EventBridgeClient(cfg);
    const sqs = new SQSClient(cfg);
    const tag = randomUUID().slice(0, 8);
    const source = `shop-${tag}`;
    const sink = scratch.collector<string>();
    const job = new Job(`events-${tag}`, { parallelism: 2 });
    job
      .source(eventBridgeSource<{ customer: string; amount: number }>({ pattern: { source: [source], 'detail-type': ['order'] }, parse: (e) => e.detail as { customer: string; amount: number } }), { uid: 'orders' })
      .keyBy((o) => o.customer)
      .process(
        {
          state: { total: valueState<number>() },
          processElement(o, ctx, out) {
            const total = (ctx.state.total.value() ?? 0) + o.amount;
            ctx.state.total.update(total);
            out.collect(`${o.customer}\t${total}`);
          },
        },
        { uid: 'totals' },
      )
      .sinkTo(sink, { uid: 'out' });
    const { log, text } = captureLog();
    const runner = new EmulatorRunner(job, { endpoint, namespace: `eb-${tag}`, checkpoint: { interval: '500ms' }, log });
    const done = runner.run();
    try {
      await waitFor('the feed queue', () => process.env[feedQueueEnvName('orders')] !== undefined && /feed queue of source 'orders'/.test(text()), 60_000, 100);
      const queueUrl = process.env[feedQueueEnvName('orders')]!;
      // 40 orders that match, and as many that do not (another source, another detail type).
      const expected = new Map<string, number>();
      for (let i = 0; i < 40; i += 10) {
        const entries = Array.from({ length: 10 }, (_, k) => ({ customer: `c${(i + k) % 3}`, amount: i + k + 1 }));
        for (const e of entries) expected.set(e.customer, (expected.get(e.customer) ?? 0) + e.amount);
        await events.send(new PutEventsCommand({ Entries: entries.map((e) => ({ Source: source, DetailType: 'order', Detail: JSON.stringify(e) })) }));
        await events.send(new PutEventsCommand({ Entries: entries.slice(0, 5).map((e) => ({ Source: `${source}-other`, DetailType: 'order', Detail: JSON.stringify(e) })) }));
        await events.send(new PutEventsCommand({ Entries: entries.slice(5).map((e) => ({ Source: source, DetailType: 'refund', Detail: JSON.stringify(e) })) }));
      }
      // EventBridge delivers at least once: a second copy of an event is another message with the same event id.
      const copy = { id: `copy-${tag}`, 'detail-type': 'order', source, account: '123456789012', time: new Date().toISOString(), region: 'us-east-1', resources: [], detail: { customer: 'c0', amount: 1000 } };
      await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(copy) }));
      await sleep(300);
      await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(copy) }));
      expected.set('c0', expected.get('c0')! + 1000);

      const finals = () => {
        const last = new Map<string, number>();
        for (const line of sink.committed) {
          const [c, t] = line.split('\t');
          last.set(c!, Math.max(last.get(c!) ?? 0, Number(t)));
        }
        return last;
      };
      const depth = async () => {
        const a = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }))).Attributes ?? {};
        return Number(a.ApproximateNumberOfMessages) + Number(a.ApproximateNumberOfMessagesNotVisible);
      };
      await waitFor('the totals and an empty queue', async () => sink.committed.length >= 41 && (await depth()) === 0, 60_000, 300).catch((e: Error) => {
        throw new Error(`${e.message}: ${JSON.stringify(sink.committed)}\n${text()}`);
      });
      expect(Object.fromEntries(finals())).toEqual(Object.fromEntries(expected));
      // One line per matching event: the copy added nothing.
      expect(sink.committed).toHaveLength(41);
    } finally {
      await runner.cancel();
      await done;
    }
  }, 120_000);
});
