/**
 * The handler side of processing-time timer wakes on moto (AWS_ENDPOINT_URL from test/support/moto-global-setup.ts):
 * the operator handler of a keyed vertex, fed envelopes through its real FIFO queue, schedules a delayed `timerWake`
 * task on the coordinator-tasks queue when a step leaves a timer; the coordinator's task handler forwards it into the
 * vertex's queue when due; the wake's step fires the timer once. Duplicates, stale generations and wakes whose timers
 * already fired take no step.
 */
import { randomUUID } from 'node:crypto';
import { DeleteMessageBatchCommand, SendMessageCommand, type Message } from '@aws-sdk/client-sqs';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { awsClients, type AwsClients } from '../../lib/adapters/aws/clients.js';
import { DynamoDbCoordinatorStore } from '../../lib/adapters/aws/dynamodb-coordinator-store.js';
import { DynamoDbStateStore } from '../../lib/adapters/aws/dynamodb-state-store.js';
import { S3CheckpointStorage } from '../../lib/adapters/aws/s3-checkpoint-storage.js';
import { SqsQueueSender } from '../../lib/adapters/aws/sqs-queue-sender.js';
import type { SqsBatchResponse } from '../../lib/adapters/aws/sqs-poller.js';
import { systemClock } from '../../lib/adapters/local/system-clock.js';
import { Job, valueState } from '../../lib/index.js';
import { collectSink } from '../../lib/connectors/collect-sink.js';
import { generator } from '../../lib/connectors/generator.js';
import { parseCoordinatorTaskMessage, type TimerWakeTaskMessage } from '../../lib/coordination/checkpoint-tasks.js';
import { CoordinatorHost } from '../../lib/coordination/host.js';
import { ENVELOPE_VERSION, EnvelopeKind, type Envelope } from '../../lib/core/envelope.js';
import { resolveCheckpointOptions } from '../../lib/core/options.js';
import { keyGroupOf, serializeKey } from '../../lib/graph/key-groups.js';
import { buildPlan } from '../../lib/graph/plan.js';
import { createCoordinatorTaskHandler } from '../../lib/hosts/lambda/coordinator-task-handler.js';
import { createOperatorHandler } from '../../lib/hosts/lambda/operator-handler.js';
import { encodeTimerWake, parseTimerWake } from '../../lib/hosts/lambda/timer-wakes.js';
import { WakeForwarder } from '../../lib/hosts/lambda/wake-forwarder.js';
import { provisionAwsJob, receiveMessages, sqsEventOf, type ProvisionedAwsJob } from '../support/aws-job.js';

const M = 16;
const DELAY_MS = 1_500;
const LATER_MS = 20_000;
const clients = awsClients();
const provisioned: ProvisionedAwsJob[] = [];

/** Timers the keyed function fired, in this process. */
const fired: { key: string; due: number; at: number }[] = [];

/** gen → keyBy → a function that registers a processing-time timer DELAY_MS ahead per record ('b': LATER_MS more) → collect. */
function timerPlan(name: string) {
  const job = new Job(name, { parallelism: 1, maxParallelism: M });
  job
    .source(generator<string>({ count: 0, generate: () => 'x' }), { uid: 'gen' })
    .keyBy((k) => k)
    .process(
      {
        state: { seen: valueState<number>() },
        processElement(k, ctx) {
          // 'b' comes due well after 'a', so the wake of 'a' fires 'a' alone
          ctx.timerService().registerProcessingTimeTimer(ctx.timerService().currentProcessingTime() + DELAY_MS + (k === 'b' ? LATER_MS : 0));
        },
        onTimer(ts, ctx) {
          fired.push({ key: String(ctx.key), due: ts, at: Date.now() });
        },
      },
      { uid: 'timers' },
    )
    .sinkTo(collectSink<string>(`${name}-out`), { uid: 'out' });
  return buildPlan(job);
}

/** The test's clients, but recording every SendMessage to `queueUrl`. */
function recordingSends(queueUrl: string, sent: { body: string; delay: number }[]): AwsClients {
  const sqs = new Proxy(clients.sqs, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return (command: { input: { QueueUrl?: string; MessageBody?: string; DelaySeconds?: number } }, ...rest: unknown[]) => {
        if (command instanceof SendMessageCommand && command.input.QueueUrl === queueUrl) sent.push({ body: command.input.MessageBody!, delay: command.input.DelaySeconds ?? 0 });
        return (target.send as (...a: unknown[]) => Promise<unknown>).call(target, command, ...rest);
      };
    },
  });
  return { ...clients, sqs, s3: clients.s3, dynamodb: clients.dynamodb, doc: clients.doc, sfn: clients.sfn };
}

async function setUp() {
  const plan = timerPlan(`tw-${randomUUID().slice(0, 8)}`);
  const job = await provisionAwsJob({ plan, clients, visibilityTimeoutSeconds: 2 });
  provisioned.push(job);
  const { resources } = job;
  const checkpoint = resolveCheckpointOptions({ dir: resources.checkpointRoot, timeout: '5m' });
  const store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: resources.coordinatorTable, serializeLocalWrites: true });
  const tasks = new CoordinatorHost({ clock: systemClock, plan, store, storage: new S3CheckpointStorage({ client: clients.s3 }), sender: new SqsQueueSender(clients.sqs, (v) => resources.queueUrls[v]!), log: () => {} });
  const row = await tasks.initialize({ options: checkpoint, jobId: randomUUID(), savepointDir: resources.savepointRoot! });
  const generation = row.runtime.generation;
  const scheduled: { body: string; delay: number }[] = [];
  const logs: Record<string, unknown>[] = [];
  const handler = createOperatorHandler({ plan, vertex: 'timers', resources, clients: recordingSends(resources.tasksQueueUrl, scheduled), checkpoint, serializeLocalWrites: true, log: (l) => logs.push(l) });
  const forwarder = new WakeForwarder({ job: plan.job, sqs: clients.sqs, queueUrls: resources.queueUrls, tasksQueueUrl: resources.tasksQueueUrl, clock: systemClock });
  const coordinator = createCoordinatorTaskHandler({ tasks, sfn: clients.sfn, wakes: forwarder, log: () => {} });
  const control = () => new DynamoDbStateStore({ tableName: resources.stateTable, job: plan.job, client: clients.dynamodb }).forSubtask({ vertex: 'timers', subtask: 0 }).readControl();
  const vertexQueue = resources.queueUrls.timers!;
  let seq = 0;
  /** Sends a data envelope from `gen:0` with one record of `key`, as the source vertex would. */
  const sendRecord = (key: string) => {
    const k = serializeKey(key);
    const envelope: Envelope = { v: ENVELOPE_VERSION, job: plan.job, gen: generation, from: { op: 'gen', subtask: 0 }, to: { op: 'timers', subtask: 0 }, seq: ++seq, kind: EnvelopeKind.Data, epoch: 0, records: [{ v: key, k, g: keyGroupOf(k, M) }] };
    return new SqsQueueSender(clients.sqs, (v) => resources.queueUrls[v]!).send([envelope]);
  };
  /** Receives what the vertex queue holds and hands it to the handler, deleting what succeeded. */
  const deliver = async (): Promise<Message[]> => {
    const messages = await receiveMessages(clients, vertexQueue);
    if (messages.length === 0) return [];
    const response = await handler(sqsEventOf(messages));
    expect(response.batchItemFailures).toEqual([]);
    await clients.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: vertexQueue, Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
    return messages;
  };
  const timerWakes = () => scheduled.map((s) => ({ ...(parseCoordinatorTaskMessage(s.body) as TimerWakeTaskMessage), delay: s.delay }));
  return { plan, resources, generation, scheduled, timerWakes, logs, coordinator, control, vertexQueue, sendRecord, deliver };
}

describe('timer wakes on the emulator', () => {
  afterAll(async () => {
    for (const p of provisioned.splice(0)) await p.destroy();
  });

  it('schedules one delayed wake for a step that leaves a timer and none for the next, fires the timer once when the forwarded wake arrives, and drops stale and repeated wakes', async () => {
    const h = await setUp();

    // When a step registers a timer 1.5 s ahead
    await h.sendRecord('a');
    const before = Date.now();
    await h.deliver();

    // Then it scheduled one timer wake on the coordinator-tasks queue, delayed until the timer is due, and the
    // control row records the timer and the wake
    expect(h.timerWakes()).toHaveLength(1);
    const [first] = h.timerWakes();
    expect(first).toMatchObject({ type: 'timerWake', job: h.plan.job, vertex: 'timers', subtask: 0, gen: h.generation });
    expect(first!.dueAt).toBeGreaterThanOrEqual(before + DELAY_MS);
    expect(first!.delay).toBe(Math.ceil((first!.dueAt - before) / 1000));
    expect(await h.control()).toMatchObject({ timerAt: first!.dueAt, timerWake: first!.dueAt });

    // When another step registers a later timer (another key)
    await h.sendRecord('b');
    await h.deliver();

    // Then it scheduled no second wake: the first one comes before its timer
    expect(h.timerWakes()).toHaveLength(1);
    expect((await h.control())?.timerAt).toBe(first!.dueAt);
    expect(fired).toEqual([]);

    // When the delayed task becomes visible on the tasks queue and the coordinator handles it
    const tasks = await vi.waitFor(
      async () => {
        const m = await receiveMessages(clients, h.resources.tasksQueueUrl);
        if (m.length === 0) throw new Error('no timer wake on the tasks queue yet');
        return m;
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(Date.now()).toBeGreaterThanOrEqual(first!.dueAt);
    expect(((await h.coordinator(sqsEventOf(tasks))) as SqsBatchResponse).batchItemFailures).toEqual([]);

    // Then a timer wake sits in the vertex's FIFO queue, and its step fires the due timer once and schedules the next
    const delivered = await h.deliver();
    expect(delivered.map((m) => parseTimerWake(m.Body!))).toEqual([{ floe: 'timer', gen: h.generation, subtask: 0, due: first!.dueAt, id: first!.id }]);
    expect(fired.map((f) => f.key)).toEqual(['a']);
    expect(fired[0]!.at).toBeGreaterThanOrEqual(first!.dueAt);
    expect(h.timerWakes()).toHaveLength(2);
    const second = h.timerWakes()[1]!;
    expect(second.dueAt).toBeGreaterThan(first!.dueAt);
    const afterFire = await h.control();
    expect(afterFire).toMatchObject({ timerAt: second.dueAt, timerWake: second.dueAt });

    // When the same wake arrives again (a duplicate after the deduplication window: another message id), and a wake
    // of an older generation arrives
    const again = encodeTimerWake({ gen: h.generation, subtask: 0, due: first!.dueAt, id: first!.id });
    await clients.sqs.send(new SendMessageCommand({ QueueUrl: h.vertexQueue, MessageBody: again, MessageGroupId: '0', MessageDeduplicationId: `again-${randomUUID()}` }));
    await h.deliver();
    const stale = encodeTimerWake({ gen: h.generation - 1, subtask: 0, due: second.dueAt, id: 1 });
    await clients.sqs.send(new SendMessageCommand({ QueueUrl: h.vertexQueue, MessageBody: stale, MessageGroupId: '0', MessageDeduplicationId: `stale-${randomUUID()}` }));
    await h.deliver();

    // Then neither took a step: nothing fired again, nothing was committed, no wake was scheduled
    expect(fired.map((f) => f.key)).toEqual(['a']);
    expect((await h.control())?.version).toBe(afterFire!.version);
    expect(h.timerWakes()).toHaveLength(2);
    expect(h.logs.filter((l) => l.message === 'step').map((l) => l.timer).slice(-1)).toEqual(['nothing-due']);
    expect(h.logs.some((l) => l.message === 'stale wakes dropped' && l.dropped === 1)).toBe(true);
  }, 60_000);

  it('forwards a wake due more than a second away back to the tasks queue with the time left, not into the vertex queue', async () => {
    const h = await setUp();
    const sent: { body: string; delay: number }[] = [];
    const forwarder = new WakeForwarder({ job: h.plan.job, sqs: recordingSends(h.resources.tasksQueueUrl, sent).sqs, queueUrls: h.resources.queueUrls, tasksQueueUrl: h.resources.tasksQueueUrl, clock: { now: () => 1_000_000 } });
    const message: TimerWakeTaskMessage = { v: 1, job: h.plan.job, type: 'timerWake', vertex: 'timers', subtask: 0, gen: h.generation, dueAt: 1_000_000 + 3_600_000, id: 4 };

    expect(await forwarder.forward(message)).toBe('delayed');
    expect(sent).toEqual([{ body: JSON.stringify(message), delay: 900 }]);
    expect(await forwarder.forward({ ...message, dueAt: 1_000_000 + 2_500 })).toBe('delayed');
    expect(sent[1]!.delay).toBe(3);
    expect(await forwarder.forward({ ...message, dueAt: 1_000_000 + 400 })).toBe('forwarded');
    expect(sent).toHaveLength(2);
    const inQueue = await receiveMessages(clients, h.vertexQueue);
    expect(inQueue.map((m) => parseTimerWake(m.Body!))).toEqual([{ floe: 'timer', gen: h.generation, subtask: 0, due: 1_000_400, id: 4 }]);
  }, 30_000);
});
