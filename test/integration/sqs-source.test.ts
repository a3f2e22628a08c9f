import { afterEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageBatchCommand, SQSClient, type ReceiveMessageCommandOutput } from '@aws-sdk/client-sqs';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { EmulatorRunner } from '../../lib/hosts/emulator/emulator-runner.js';
import { Job } from '../../lib/api/job.js';
import { valueState } from '../../lib/api/state.js';
import { sqsSource } from '../../lib/connectors/sqs-source.js';
import type { CollectSink } from '../../lib/connectors/collect-sink.js';
import { Scratch, captureLog, runOptions, sleep, startRunner, waitFor, FailOnce } from '../support/jobs.js';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { buildPlan } from '../../lib/graph/plan.js';
import { ValidationError } from '../../lib/core/errors.js';

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

const sqs = () => new SQSClient({ endpoint: process.env.AWS_ENDPOINT_URL, region: 'us-east-1' });

interface Order {
  readonly customer: string;
  readonly amount: number;
}

async function createQueue(client: SQSClient, fifo: boolean, attributes: Record<string, string> = {}): Promise<string> {
  const name = `orders-${randomUUID().slice(0, 8)}${fifo ? '.fifo' : ''}`;
  const res = await client.send(new CreateQueueCommand({ QueueName: name, Attributes: { ...(fifo ? { FifoQueue: 'true' } : {}), ...attributes } }));
  return res.QueueUrl!;
}

/** Orders for `customers` customers, amounts 1..9, deterministic. */
function orders(count: number, customers: number): Order[] {
  return Array.from({ length: count }, (_, i) => ({ customer: `c${i % customers}`, amount: 1 + ((i * 7) % 9) }));
}

async function sendAll(client: SQSClient, url: string, bodies: readonly string[], fifo: boolean): Promise<void> {
  for (let i = 0; i < bodies.length; i += 10) {
    const batch = bodies.slice(i, i + 10);
    await client.send(
      new SendMessageBatchCommand({
        QueueUrl: url,
        Entries: batch.map((b, k) => ({ Id: String(k), MessageBody: b, ...(fifo ? { MessageGroupId: `g${(i + k) % 4}`, MessageDeduplicationId: `m${i + k}` } : {}) })),
      }),
    );
  }
}

async function queueDepth(client: SQSClient, url: string): Promise<number> {
  const a = (await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }))).Attributes ?? {};
  return Number(a.ApproximateNumberOfMessages ?? 0) + Number(a.ApproximateNumberOfMessagesNotVisible ?? 0);
}

/** Waits until `expected` records are committed and the queue is empty; the failure says how far it got, with the job's log. */
async function drained(o: { sink: CollectSink<string>; expected: number; client: SQSClient; queueUrl: string; log: () => string }, timeoutMs: number, everyMs: number): Promise<void> {
  await waitFor('every order committed and the queue empty', async () => o.sink.committed.length >= o.expected && (await queueDepth(o.client, o.queueUrl)) === 0, timeoutMs, everyMs).catch(async (e: Error) => {
    throw new Error(`${e.message}: ${o.sink.committed.length} of ${o.expected} committed, ${await queueDepth(o.client, o.queueUrl)} in the queue\n${o.log()}`);
  });
}

/** Per customer: the running count and total, one committed line per order. */
function totalsJob(o: { queueUrl: string; sink: CollectSink<string>; sourceParallelism?: number; client?: SQSClient; fail?: FailOnce; deadLetterQueueUrl?: string; visibilityTimeout?: string; stall?: { at: number; ms: number; done?: boolean } }): Job {
  const job = new Job('orders-it', { parallelism: 2 });
  let seen = 0;
  job
    .source(
      sqsSource<Order>({
        queueUrl: o.queueUrl,
        parse: (body) => {
          const v = JSON.parse(body) as Order;
          if (typeof v.customer !== 'string' || typeof v.amount !== 'number') throw new Error('not an order');
          return v;
        },
        ...(o.client ? { client: o.client } : {}),
        ...(o.deadLetterQueueUrl ? { deadLetterQueueUrl: o.deadLetterQueueUrl } : {}),
        visibilityTimeout: o.visibilityTimeout ?? '30s',
        dedupWindow: '1h',
      }),
      { uid: 'orders', ...(o.sourceParallelism ? { parallelism: o.sourceParallelism } : {}) },
    )
    .map((v) => {
      seen++;
      o.fail?.check(seen);
      if (o.stall && !o.stall.done && seen >= o.stall.at) {
        // Blocks the whole process, as a stuck invocation would: visibility runs out meanwhile.
        o.stall.done = true;
        const until = Date.now() + o.stall.ms;
        while (Date.now() < until);
      }
      return v;
    })
    .keyBy((v) => v.customer)
    .process(
      {
        state: { n: valueState<number>(), total: valueState<number>() },
        processElement(v, ctx, out) {
          const n = (ctx.state.n.value() ?? 0) + 1;
          const total = (ctx.state.total.value() ?? 0) + v.amount;
          ctx.state.n.update(n);
          ctx.state.total.update(total);
          out.collect(`${v.customer}\t${n}\t${total}`);
        },
      },
      { uid: 'totals' },
    )
    .sinkTo(o.sink, { uid: 'out' });
  return job;
}

/** What the committed lines must be: per customer, counts 1..N exactly once each, with the running totals of the input in some order of its orders. */
function expectExactlyOnce(committed: readonly string[], input: readonly Order[]): void {
  const byCustomer = new Map<string, { n: number; total: number }[]>();
  for (const line of committed) {
    const [c, n, t] = line.split('\t');
    (byCustomer.get(c!) ?? byCustomer.set(c!, []).get(c!)!).push({ n: Number(n), total: Number(t) });
  }
  const expected = new Map<string, { count: number; total: number }>();
  for (const o of input) {
    const e = expected.get(o.customer) ?? { count: 0, total: 0 };
    expected.set(o.customer, { count: e.count + 1, total: e.total + o.amount });
  }
  expect([...byCustomer.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [c, e] of expected) {
    const lines = byCustomer.get(c)!.sort((a, b) => a.n - b.n);
    expect(lines.map((l) => l.n), `counts of ${c}`).toEqual(Array.from({ length: e.count }, (_, i) => i + 1));
    expect(lines.at(-1)!.total, `total of ${c}`).toBe(e.total);
  }
}

/** Wraps a real client: every `every`-th receive also hands back, again, a message of the previous receive (a standard queue's duplicate delivery). */
function duplicatingClient(inner: SQSClient, every: number): SQSClient & { duplicated: number } {
  let receives = 0;
  let last: NonNullable<ReceiveMessageCommandOutput['Messages']> = [];
  const proxy = Object.create(inner) as SQSClient & { duplicated: number };
  proxy.duplicated = 0;
  proxy.send = (async (command: unknown) => {
    const out = await inner.send(command as never);
    if (command instanceof ReceiveMessageCommand) {
      const res = out as ReceiveMessageCommandOutput;
      const got = res.Messages ?? [];
      if (got.length > 0 && last.length > 0 && ++receives % every === 0) {
        proxy.duplicated++;
        const copy = { ...last[0]! };
        last = got;
        return { ...res, Messages: [...got, copy] };
      }
      if (got.length > 0) last = got;
    }
    return out;
  }) as SQSClient['send'];
  return proxy;
}

describe('sqs source, embedded over an SQS endpoint', () => {
  it('processes every message exactly once across a failover, a stall past the visibility timeout, duplicate deliveries and a poison message, and empties the queue', async () => {
    const client = sqs();
    const queueUrl = await createQueue(client, false);
    const dlq = await createQueue(client, false);
    const input = orders(400, 7);
    const bodies = input.map((o) => JSON.stringify(o));
    bodies.splice(123, 0, '{"customer": 42}', 'garbage{{{');
    await sendAll(client, queueUrl, bodies, false);

    const sink = scratch.collector<string>();
    const fail = new FailOnce(150);
    const dup = duplicatingClient(client, 3);
    const stall: { at: number; ms: number; done?: boolean } = { at: 260, ms: 3_000 };
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(totalsJob({ queueUrl, sink, client: dup, fail, deadLetterQueueUrl: dlq, visibilityTimeout: '2s', stall }), {
      ...runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }),
    });
    const { done } = await startRunner(runner);
    try {
      await drained({ sink, expected: input.length, client, queueUrl, log: text }, 60_000, 200);
    } finally {
      await runner.cancel();
    }
    await done;
    expect(fail.thrown, text()).toBe(true);
    expect(stall.done).toBe(true);
    expect(dup.duplicated).toBeGreaterThan(0);
    expectExactlyOnce(sink.committed, input);
    expect(sink.committed).toHaveLength(input.length);
    // The two malformed messages are in the dead-letter queue with their reasons.
    const dead = await client.send(new ReceiveMessageCommand({ QueueUrl: dlq, MaxNumberOfMessages: 10, MessageAttributeNames: ['All'], WaitTimeSeconds: 1 }));
    // (A dead-letter queue is written at least once: a send the failover undid is sent again.)
    expect([...new Set((dead.Messages ?? []).map((m) => m.Body))].sort()).toEqual(['garbage{{{', '{"customer": 42}']);
    for (const m of dead.Messages ?? []) {
      expect(m.MessageAttributes?.['floe-error']?.StringValue).toMatch(/^parse failed: /);
      expect(m.MessageAttributes?.['floe-source-queue']?.StringValue).toBe(queueUrl);
    }
  }, 90_000);

  async function runFifo(fail: FailOnce | undefined, sourceParallelism?: number): Promise<{ input: Order[]; committed: string[] }> {
    const client = sqs();
    const queueUrl = await createQueue(client, true);
    const dlq = await createQueue(client, false);
    // Each message group is one customer here, so each customer's running totals follow the group's order.
    const input = Array.from({ length: 160 }, (_, i) => ({ customer: `g${i % 4}`, amount: i }));
    await sendAll(client, queueUrl, input.map((o) => JSON.stringify(o)), true);
    const sink = scratch.collector<string>();
    const { log, text } = captureLog();
    // A failover leaves what the failed attempt received invisible, and so its groups blocked, until the visibility timeout.
    const runner = new EmbeddedRunner(totalsJob({ queueUrl, sink, ...(fail ? { fail } : {}), deadLetterQueueUrl: dlq, visibilityTimeout: '3s', ...(sourceParallelism ? { sourceParallelism } : {}) }), runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }));
    const { done } = await startRunner(runner);
    try {
      await drained({ sink, expected: input.length, client, queueUrl, log: text }, 60_000, 200);
    } finally {
      await runner.cancel();
    }
    await done;
    if (fail) expect(fail.thrown, text()).toBe(true);
    return { input, committed: [...sink.committed] };
  }

  it('keeps the order of each message group from the queue to the keyed state', async () => {
    // One receiver: across several, a group's order rests on SQS handing out no more of a group while some of it is
    // unacknowledged, which moto does not do.
    const { input, committed } = await runFifo(undefined, 1);
    expectExactlyOnce(committed, input);
    // The running total after the n-th order of a group is the sum of its first n amounts.
    for (const line of committed) {
      const [c, n, total] = line.split('\t');
      const amounts = input.filter((o) => o.customer === c).slice(0, Number(n)).map((o) => o.amount);
      expect(Number(total), line).toBe(amounts.reduce((a, b) => a + b, 0));
    }
  }, 90_000);

  it('reads a FIFO queue exactly once across a failover', async () => {
    // (Not in order here: moto hands messages whose visibility ran out back newest first, which SQS does not.)
    const { input, committed } = await runFifo(new FailOnce(70));
    expectExactlyOnce(committed, input);
    expect(committed).toHaveLength(input.length);
  }, 90_000);

  it('in emulator mode, where each step commits to DynamoDB and is redelivered after a failure, processes every message exactly once', async () => {
    const client = sqs();
    const queueUrl = await createQueue(client, false);
    const dlq = await createQueue(client, false);
    const input = orders(150, 5);
    const bodies = input.map((o) => JSON.stringify(o));
    bodies.splice(40, 0, 'not json');
    await sendAll(client, queueUrl, bodies, false);
    const sink = scratch.collector<string>();
    const fail = new FailOnce(60);
    const dup = duplicatingClient(client, 4);
    const { log, text } = captureLog();
    const job = totalsJob({ queueUrl, sink, client: dup, fail, deadLetterQueueUrl: dlq });
    const runner = new EmulatorRunner(job, { endpoint: process.env.AWS_ENDPOINT_URL!, namespace: `sqs-${randomUUID().slice(0, 8)}`, checkpoint: { interval: '500ms' }, log });
    const done = runner.run();
    try {
      await drained({ sink, expected: input.length, client, queueUrl, log: text }, 80_000, 500);
    } finally {
      await runner.cancel();
    }
    await done;
    expect(fail.thrown, text()).toBe(true);
    expect(dup.duplicated).toBeGreaterThan(0);
    expectExactlyOnce(sink.committed, input);
    expect(sink.committed).toHaveLength(input.length);
    const dead = await client.send(new ReceiveMessageCommand({ QueueUrl: dlq, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    expect([...new Set((dead.Messages ?? []).map((m) => m.Body))]).toEqual(['not json']);
  }, 120_000);

  it('in emulator mode, an idle job backs its source off and stops checkpointing (scale to zero), and input that comes later is committed exactly once', async () => {
    const client = sqs();
    const queueUrl = await createQueue(client, false);
    const first = orders(30, 3);
    const later = orders(40, 4).map((o) => ({ ...o, amount: o.amount + 10 }));
    await sendAll(client, queueUrl, first.map((o) => JSON.stringify(o)), false);
    const sink = scratch.collector<string>();
    const { log, text } = captureLog();
    // What the runtime sends to the coordinator-tasks queue: backed-off source wakes and reports of work while quiet.
    const clients = awsClients({ endpoint: process.env.AWS_ENDPOINT_URL!, region: 'us-east-1' });
    const sent = { sourceWake: 0, activity: 0 };
    clients.sqs.middlewareStack.add(
      (next) => async (args) => {
        const body = (args.input as { MessageBody?: string }).MessageBody ?? '';
        if (body.includes('"sourceWake"')) sent.sourceWake++;
        if (body.includes('"activity"')) sent.activity++;
        return next(args);
      },
      { step: 'initialize' },
    );
    const job = totalsJob({ queueUrl, sink, client, sourceParallelism: 1 });
    const runner = new EmulatorRunner(job, {
      endpoint: process.env.AWS_ENDPOINT_URL!,
      namespace: `sqs-idle-${randomUUID().slice(0, 8)}`,
      checkpoint: { interval: '1s' },
      clients,
      // Backoff sooner and capped lower than deployed (10 steps, 60 s), so the test is short.
      sourceIdleStepsBeforeBackoff: 2,
      sourceIdleMaxDelayMs: 4000,
      log,
    });
    const done = runner.run();
    let quietAt: number | undefined;
    try {
      await drained({ sink, expected: first.length, client, queueUrl, log: text }, 60_000, 250);
      // Quiet: two checkpoints without work, the second triggered QUIET_AFTER_MS after the first completed.
      await waitFor('the job to go quiet', () => runner.coordinatorState().quiet?.confirmed === true, 60_000, 250).catch((e: Error) => {
        throw new Error(`${e.message}: ${JSON.stringify(runner.coordinatorState().quiet)}\n${text()}`);
      });
      quietAt = runner.coordinatorState().counts.completed;
      const backedOff = sent.sourceWake;
      await sleep(8000);
      // No periodic checkpoint while quiet, and the source's wakes went through the tasks queue, delayed.
      expect(runner.coordinatorState().counts.completed, text()).toBe(quietAt);
      expect(runner.coordinatorState().pending).toEqual([]);
      expect(sent.sourceWake, 'backed-off wakes').toBeGreaterThan(0);
      // Capped at 4 s, 8 s bring about 2 more; far fewer than the 8 a one-second chain would take.
      expect(sent.sourceWake - backedOff).toBeLessThanOrEqual(4);
      expect(sent.activity).toBe(0);
      // The REST overview (and `floe status`) say so.
      expect(runner.overview().quietSince).toBe(runner.coordinatorState().quiet!.since);

      await sendAll(client, queueUrl, later.map((o) => JSON.stringify(o)), false);
      await drained({ sink, expected: first.length + later.length, client, queueUrl, log: text }, 60_000, 250);
    } finally {
      await runner.cancel();
    }
    await done;
    // The source read the later input while the row said quiet, and said so; checkpoints resumed and committed it.
    expect(sent.activity, text()).toBeGreaterThan(0);
    expect(runner.coordinatorState().counts.completed).toBeGreaterThan(quietAt!);
    expectExactlyOnce(sink.committed, [...first, ...later]);
    expect(sink.committed).toHaveLength(first.length + later.length);
  }, 150_000);

  it('refuses a job whose timing cannot hold messages until their checkpoint, saying what to change', () => {
    const job = new Job('timing');
    job
      .source(sqsSource({ queueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/q', visibilityTimeout: '30s', dedupWindow: '1m' }), { uid: 'in' })
      .sinkTo(scratch.collector<string>(), { uid: 'out' });
    let error: unknown;
    try {
      buildPlan(job, { stepTimeoutMs: 60_000 });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    const problems = (error as ValidationError).problems;
    expect(problems).toContainEqual(expect.stringMatching(/checkpoints must be on: set checkpoint.interval/));
    expect(problems).toContainEqual(expect.stringMatching(/visibilityTimeout 30s is less than twice the longest step \(60s.*raise visibilityTimeout to at least 120s/));
    expect(problems).toContainEqual(expect.stringMatching(/dedupWindow 60s is shorter than .*raise dedupWindow/));
  });
});
