import { randomUUID } from 'node:crypto';
import { DeleteMessageBatchCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand, type Message } from '@aws-sdk/client-sqs';
import { DeleteItemCommand, ScanCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { awsClients, type AwsClients } from '../../lib/adapters/aws/clients.js';
import { CoordinatorAttr, DynamoDbCoordinatorStore, jobRowKey } from '../../lib/adapters/aws/dynamodb-coordinator-store.js';
import { SinkCommitRegistry } from '../../lib/coordination/commits.js';
import { DynamoDbStateStore } from '../../lib/adapters/aws/dynamodb-state-store.js';
import { CoordinatorHost } from '../../lib/coordination/host.js';
import { JobStatus } from '../../lib/core/coordinator/job-row.js';
import { S3CheckpointStorage } from '../../lib/adapters/aws/s3-checkpoint-storage.js';
import type { SqsBatchResponse, SqsEvent } from '../../lib/adapters/aws/sqs-poller.js';
import { SqsQueueSender } from '../../lib/adapters/aws/sqs-queue-sender.js';
import { decodeEnvelope, deduplicationId, encodeEnvelope, messageGroupId } from '../../lib/adapters/aws/envelope-codec.js';
import { EnvelopeKind } from '../../lib/core/envelope.js';
import { DeadLetterAttr, createOperatorHandler, startSources, type AwsJobResources, type OperatorHandlerOptions } from '../../lib/hosts/lambda/operator-handler.js';
import { encodeWake, parseWake } from '../../lib/hosts/lambda/source-wakes.js';
import { SourceChains } from '../../lib/hosts/lambda/source-chains.js';
import { CheckpointStatus } from '../../lib/core/coordinator/types.js';
import { cancelJob } from '../../lib/coordination/cancel.js';
import { checkpointStatusKey } from '../../lib/adapters/aws/dynamodb-coordinator-schema.js';
import { Job, valueState, type SinkConnector } from '../../lib/index.js';
import type { CollectSink } from '../../lib/connectors/collect-sink.js';
import { filesSink } from '../../lib/connectors/files-sink.js';
import { generator } from '../../lib/connectors/generator.js';
import { ErrorCode } from '../../lib/core/errors.js';
import { resolveCheckpointOptions, type ResolvedCheckpointOptions } from '../../lib/core/options.js';
import { buildPlan, type PhysicalPlan } from '../../lib/graph/plan.js';
import { findLatestCheckpoint, listCheckpoints } from '../../lib/runtime/snapshot-catalog.js';
import { planRestore } from '../../lib/core/restore-planner.js';
import { keyGroupRange } from '../../lib/graph/key-groups.js';
import { deleteMessages, expectQueueEmpty, handBack, provisionAwsJob, receiveMessages, sqsEventOf, type ProvisionedAwsJob } from '../support/aws-job.js';
import { Scratch, readCommittedLines, sleep, sorted } from '../support/jobs.js';
import { generatedSequence } from '../support/reference-generator.js';
import { systemClock } from '../../lib/adapters/local/system-clock.js';

// The operator handler over moto (AWS_ENDPOINT_URL from test/support/moto-global-setup.ts), driven by a tiny loop
// that receives from the real vertex queues and calls the handlers with Lambda-shaped events, as Lambda's event
// source mapping would: successes are deleted, failures come back (handed back at once: see `handBack`). The
// coordinator's tasks run in-process (CoordinatorHost). Outputs are compared with a plain-loop oracle.

const EVENTS = 20_000;
const VOCABULARY = 40;
const VISIBILITY_SECONDS = 2;

interface Line {
  readonly i: number;
  readonly text: string;
}

/** The lines' definition: `source()` generates them, the oracle re-derives them (test/support/reference-generator.ts). */
const inputLines = {
  count: EVENTS,
  seed: 7,
  generate: (i: number, random: () => number): Line => ({ i, text: Array.from({ length: 1 + Math.floor(random() * 3) }, () => `w${Math.floor(random() * VOCABULARY)}`).join(' ') }),
};

const source = () => generator<Line>({ ...inputLines, splits: 2 });

/** Messages in a queue (visible, in flight or delayed). */
async function approximateMessages(url: string): Promise<number> {
  const { Attributes } = await clients.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'] }),
  );
  return Object.values(Attributes ?? {}).reduce((n, v) => n + Number(v), 0);
}

/** Faults a test injects into the job's own functions. */
interface Faults {
  /** `count` throws on this word, on every delivery. */
  readonly throwOn?: string;
  /** `words` emits one record too large for an SQS message after line `i`. */
  readonly hugeRecordAt?: number;
}

/** lines → flatMap words → keyBy word → running count (`word<TAB>n` per word) → exactly-once files. */
function wordRunningCounts(name: string, sink: SinkConnector<string>, faults: Faults = {}): Job {
  const job = new Job(name, { parallelism: 2, maxParallelism: 64 });
  job
    .source(source(), { uid: 'lines' })
    .flatMap<string>((l, out) => {
      for (const w of l.text.split(' ')) out.collect(w);
      if (l.i === faults.hugeRecordAt) out.collect('x'.repeat(1_100_000));
    }, { uid: 'words' })
    .keyBy((w) => w)
    .process(
      {
        state: { n: valueState<number>() },
        processElement(w, ctx, out) {
          if (w === faults.throwOn) throw new Error(`poisoned word ${w}`);
          const n = (ctx.state.n.value() ?? 0) + 1;
          ctx.state.n.update(n);
          out.collect(`${w}\t${n}`);
        },
      },
      { uid: 'count' },
    )
    .sinkTo(sink, { uid: 'out' });
  return job;
}

/**
 * The collect sink, but resuming with the state it is given. collectSink's `resume` starts from an empty pending list,
 * which is right after a restore (a checkpoint's writer state has none) but drops the lines a live subtask committed
 * since its last checkpoint whenever a new executor opens it, as a Lambda cold start does.
 */
function statefulCollectSink(): CollectSink<string> {
  const base = scratch.collector<string>();
  return {
    ...base,
    createWriter(ctx) {
      const writer = base.createWriter(ctx);
      return { ...writer, resume: async (state) => state ?? writer.resume(state) };
    },
  };
}

/** The oracle: a plain loop over the lines the generator is defined to yield. */
async function oracle(): Promise<string[]> {
  const counts = new Map<string, number>();
  const lines: string[] = [];
  for (const l of generatedSequence(inputLines)) {
    for (const w of l.text.split(' ')) {
      const n = (counts.get(w) ?? 0) + 1;
      counts.set(w, n);
      lines.push(`${w}\t${n}`);
    }
  }
  return sorted(lines);
}

type Handler = (event: SqsEvent) => Promise<SqsBatchResponse>;

/** A job on the emulator with its coordinator, and handlers per vertex (one "container" each, replaceable). */
interface Harness {
  readonly plan: PhysicalPlan;
  readonly job: ProvisionedAwsJob;
  readonly resources: AwsJobResources;
  readonly checkpoint: ResolvedCheckpointOptions;
  readonly tasks: CoordinatorHost;
  readonly store: DynamoDbCoordinatorStore;
  /** The committed output lines. */
  readonly output: () => Promise<string[]>;
  readonly logs: Record<string, unknown>[];
  handlers: Record<string, Handler>;
  newHandler(vertex: string, clients?: AwsClients, options?: HarnessTuning['handler']): Handler;
}

const clients = awsClients();
const scratch = new Scratch();
const provisioned: ProvisionedAwsJob[] = [];

/**
 * A fresh job with its resources. `files` (the default) writes to a local directory; `collect` keeps pending lines in
 * operator state, for tests where two containers run the same subtask: the files sink's in-progress file is shared
 * by every writer of a subtask, and an executor that resumed long ago appends after a zombie's lines.
 */
async function harness(sinkKind: 'files' | 'collect' = 'files', tuning: HarnessTuning = {}): Promise<Harness> {
  const outDir = await scratch.dir('floe-aws-op-');
  const collector = sinkKind === 'collect' ? statefulCollectSink() : undefined;
  const output = async () => (collector ? [...collector.committed] : readCommittedLines(outDir));
  const plan = buildPlan(wordRunningCounts(`wc-${randomUUID().slice(0, 8)}`, collector ?? filesSink<string>({ dir: outDir }), tuning.faults));
  const job = await provisionAwsJob({ plan, clients, visibilityTimeoutSeconds: VISIBILITY_SECONDS });
  provisioned.push(job);
  const { resources } = job;
  const checkpoint = resolveCheckpointOptions({ dir: resources.checkpointRoot, timeout: '5m', retained: 3 });
  const storage = new S3CheckpointStorage({ client: clients.s3 });
  const store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: resources.coordinatorTable, serializeLocalWrites: true });
  const logs: Record<string, unknown>[] = [];
  const state = new DynamoDbStateStore({ tableName: resources.stateTable, job: plan.job, client: clients.dynamodb });
  const tasks = new CoordinatorHost({ clock: systemClock,
    plan,
    store,
    storage,
    sender: new SqsQueueSender(clients.sqs, (v) => resources.queueUrls[v]!),
    // The coordinator starts the sources and watches their chains, as on AWS.
    sources: new SourceChains({ plan, queueUrls: resources.queueUrls, sqs: clients.sqs, state, stallMs: tuning.stallMs ?? 600_000, idleMaxDelayMs: 0, watchEveryMs: 0, log: (entry) => logs.push({ ...entry }) }),
    log: (entry) => logs.push({ ...entry }),
  });
  await tasks.initialize({ options: checkpoint, jobId: randomUUID(), savepointDir: resources.savepointRoot! });
  await tasks.startSources();
  const newHandler = (vertex: string, c: AwsClients = clients, options: HarnessTuning['handler'] = {}) =>
    createOperatorHandler({
      plan,
      vertex,
      resources,
      clients: c,
      checkpoint,
      serializeLocalWrites: true,
      sourceChunkSize: 1000,
      // This harness delivers the vertex queues' messages itself, not the coordinator-tasks queue's: no backoff.
      sourceIdleMaxDelayMs: 0,
      ...(tuning.runRefreshMs === undefined ? {} : { runRefreshMs: tuning.runRefreshMs }),
      ...tuning.handler,
      ...options,
      log: (l) => logs.push(l),
    });
  const handlers = Object.fromEntries(plan.vertices.map((v) => [v.id, newHandler(v.id)]));
  return { plan, job, resources, checkpoint, tasks, store, output, logs, handlers, newHandler };
}

/** Knobs of a harness beyond the defaults. */
interface HarnessTuning {
  /** The handlers' `runRefreshMs`. @default the handler's default */
  readonly runRefreshMs?: number;
  /** The coordinator's watchdog: a chain without progress for this long is woken again. @default 600000 (never, in a test) */
  readonly stallMs?: number;
  /** Faults in the job's functions. @default none */
  readonly faults?: Faults;
  /** Backpressure and pacing options of every handler. @default the handler's defaults */
  readonly handler?: Pick<OperatorHandlerOptions, 'maxDownstreamBacklog' | 'backlogProbeMs' | 'sourceIdleWaitMs' | 'maxEnvelopesAhead'>;
}

/** What one delivery did. */
interface Delivery {
  readonly vertex: string;
  readonly messages: readonly Message[];
  readonly response: SqsBatchResponse;
}

/** Receives one batch from a vertex queue, calls its handler, deletes what succeeded and hands failures back (see `handBack`). */
async function deliver(h: Harness, vertex: string, handler: Handler = h.handlers[vertex]!, waitSeconds = 0): Promise<Delivery | undefined> {
  const url = h.resources.queueUrls[vertex]!;
  const messages = await receiveMessages(clients, url, { waitSeconds });
  if (messages.length === 0) return undefined;
  const response = await handler(sqsEventOf(messages));
  const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
  await deleteMessages(clients, url, messages.filter((m) => !failed.has(m.MessageId!)));
  await handBack(clients, url, messages.filter((m) => failed.has(m.MessageId!)));
  return { vertex, messages, response };
}

interface DriveOptions {
  /** Called for every delivery; may call the handler again, and so on. */
  readonly onDelivery?: (d: Delivery) => Promise<void>;
  /** Trigger a checkpoint after this many deliveries. @default 6 */
  readonly checkpointAfter?: number;
  readonly timeoutMs?: number;
  /** Stop as soon as this holds (checked after every round). @default the job row says FINISHED */
  readonly until?: () => Promise<boolean>;
  /** Called after every round (the coordinator's schedule, say). */
  readonly onRound?: () => Promise<void>;
}

/** Runs the job to its end: delivers batches round-robin over the vertex queues until the job row says FINISHED. */
async function drive(h: Harness, o: DriveOptions = {}): Promise<void> {
  const deadline = Date.now() + (o.timeoutMs ?? 150_000);
  let deliveries = 0;
  let triggered = false;
  for (;;) {
    let any = false;
    for (const v of h.plan.vertices) {
      const d = await deliver(h, v.id);
      if (!d) continue;
      any = true;
      deliveries++;
      await o.onDelivery?.(d);
    }
    if (!triggered && deliveries >= (o.checkpointAfter ?? 6)) {
      triggered = true;
      await h.tasks.dispatch({ type: 'trigger', now: Date.now(), request: { requestId: 'mid-run', kind: 'checkpoint' } });
    }
    await o.onRound?.();
    if (o.until && (await o.until())) return;
    const row = await h.store.require(h.plan.job);
    if (!o.until && row.jobStatus?.status === JobStatus.Finished) return;
    if (row.jobStatus?.status === JobStatus.Failing) throw new Error(`job failing: ${row.jobStatus.detail}`);
    if (Date.now() > deadline) throw new Error(`job did not finish in time; row ${JSON.stringify(row.state.pending.map((p) => p.id))}`);
    if (!any) await sleep(100);
  }
}

async function expectExactOutput(h: Harness, completedCheckpoints = 2): Promise<void> {
  const committed = sorted(await h.output());
  const expected = await oracle();
  expect(committed.length).toBe(expected.length);
  expect(committed).toEqual(expected);
  const completed = await listCheckpoints(new S3CheckpointStorage({ client: clients.s3 }), h.checkpoint.dir, h.plan.job);
  expect(completed.length).toBeGreaterThanOrEqual(1);
  const row = await h.store.require(h.plan.job);
  // The mid-run checkpoint and the final one both completed (this run's row counts only its own).
  expect(row.state.counts.completed).toBeGreaterThanOrEqual(completedCheckpoints);
}

/** Writes to the state table through a client wrapper: `onWrite` may throw or wait before a write is sent. */
function interceptStateWrites(stateTable: string, onWrite: (command: { constructor: { name: string }; input: unknown }) => Promise<void>): AwsClients {
  const writes = new Set(['PutItemCommand', 'UpdateItemCommand', 'DeleteItemCommand', 'BatchWriteItemCommand', 'TransactWriteItemsCommand']);
  const dynamodb = new Proxy(clients.dynamodb, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: { constructor: { name: string }; input: { TableName?: string } }, ...rest: unknown[]) => {
        if (writes.has(command.constructor.name) && command.input.TableName === stateTable) await onWrite(command);
        return (target.send as (...a: unknown[]) => Promise<unknown>).call(target, command, ...rest);
      };
    },
  }) as DynamoDBClient;
  return {
    get s3() {
      return clients.s3;
    },
    get sqs() {
      return clients.sqs;
    },
    dynamodb,
    get doc() {
      return clients.doc;
    },
    get sfn() {
      return clients.sfn;
    },
  };
}

const groupOf = (m: Message) => m.Attributes?.MessageGroupId ?? '';

/** The test's clients, but counting every SQS request in `counter` (only the commands of class `only`, if given). */
function countingSqs(counter: { count: number }, only?: string): AwsClients {
  const sqs = new Proxy(clients.sqs, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return (...args: unknown[]) => {
        if (only === undefined || (args[0] as { constructor: { name: string } }).constructor.name === only) counter.count++;
        return (target.send as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      };
    },
  });
  return {
    get s3() {
      return clients.s3;
    },
    sqs,
    get dynamodb() {
      return clients.dynamodb;
    },
    get doc() {
      return clients.doc;
    },
    get sfn() {
      return clients.sfn;
    },
  };
}

/** Every item of a table, as sorted JSON lines: equal before and after means nothing was written. */
async function scanTable(TableName: string): Promise<string[]> {
  const items: string[] = [];
  let ExclusiveStartKey: Record<string, unknown> | undefined;
  do {
    const res = await clients.dynamodb.send(new ScanCommand({ TableName, ConsistentRead: true, ...(ExclusiveStartKey ? { ExclusiveStartKey: ExclusiveStartKey as never } : {}) }));
    for (const item of res.Items ?? []) items.push(JSON.stringify(item, (_, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v)));
    ExclusiveStartKey = res.LastEvaluatedKey;
  } while (ExclusiveStartKey);
  return items.sort();
}

describe('operator handler on the emulator', () => {
  afterEach(async () => {
    for (const p of provisioned.splice(0)) await p.destroy();
  });
  afterAll(() => scratch.cleanup());

  it('runs generator → flatMap → keyBy → running count → files exactly once, with a checkpoint triggered mid-run', async () => {
    const h = await harness();
    await drive(h);
    await expectExactOutput(h);
    const steps = h.logs.filter((l) => l.message === 'step');
    expect(steps.length).toBeGreaterThan(0);
    expect(steps.every((l) => typeof l.durationMs === 'number' && typeof l.recordsIn === 'number' && typeof l.dropped === 'number')).toBe(true);
    expect(h.logs.filter((l) => l.level === 'error')).toEqual([]);
    // The sources were driven by wake chains (10,000 lines per subtask, at most 1,000 per step; barrier steps read too).
    const wakes = steps.filter((l) => l.vertex === 'lines' && typeof l.nextWake === 'number');
    expect(wakes.length).toBeGreaterThanOrEqual(2 * 5);
  });

  it('stays exact when every batch is delivered twice', async () => {
    const h = await harness();
    let again = 0;
    await drive(h, {
      onDelivery: async (d) => {
        // Given the same SqsEvent a second time (a duplicate delivery), the handler drops what it already committed.
        const second = await h.handlers[d.vertex]!(sqsEventOf(d.messages));
        expect(second.batchItemFailures).toEqual([]);
        again++;
      },
    });
    expect(again).toBeGreaterThan(10);
    await expectExactOutput(h);
    const dropped = h.logs.filter((l) => l.message === 'step' && l.vertex === 'count').reduce((n, l) => n + (l.dropped as number), 0);
    expect(dropped).toBeGreaterThan(0);
  });

  it('stays exact when a step crashes after sending its outputs, before its commit completes, and its batch comes back', async () => {
    const h = await harness();
    // Given a "container" for `count` whose second state write of an armed step throws (the claim went through).
    let armed = false;
    let writes = 0;
    let crashed = 0;
    h.handlers.count = h.newHandler(
      'count',
      interceptStateWrites(h.resources.stateTable, async () => {
        if (!armed) return;
        if (++writes === 2) {
          armed = false;
          crashed++;
          throw new Error('injected crash during commit');
        }
      }),
    );
    let checked = false;
    await drive(h, {
      onDelivery: async (d) => {
        if (d.vertex === 'count' && !checked && crashed === 1) {
          // Then the failed group comes back whole (every message of it), and no other group is reported.
          checked = true;
          const failed = new Set(d.response.batchItemFailures.map((f) => f.itemIdentifier));
          const groups = new Set(d.messages.filter((m) => failed.has(m.MessageId!)).map(groupOf));
          expect(groups.size).toBe(1);
          const [group] = [...groups];
          expect(d.messages.filter((m) => groupOf(m) === group).every((m) => failed.has(m.MessageId!))).toBe(true);
        }
        if (d.vertex === 'count' && crashed === 0 && !armed) {
          armed = true;
          writes = 0;
        }
      },
    });
    expect(crashed).toBe(1);
    expect(checked).toBe(true);
    expect(h.logs.some((l) => l.level === 'error' && String(l.message).includes('injected crash'))).toBe(true);
    await expectExactOutput(h);
  });

  it('fences a zombie invocation that commits after its successor, and stays exact', async () => {
    const h = await harness('collect');
    // Given container A, whose first state write of an armed step waits for a gate (it stalls after sending outputs).
    let armedA = false;
    let reachedGate!: () => void;
    const atGate = new Promise<void>((r) => (reachedGate = r));
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    const containerA = h.newHandler(
      'count',
      interceptStateWrites(h.resources.stateTable, async (command) => {
        if (!armedA) return;
        armedA = false;
        gatedSubtask = /\/count\/(\d+)/.exec(JSON.stringify(command.input))?.[1];
        reachedGate();
        await gate;
      }),
    );
    let gatedSubtask: string | undefined;
    let zombie: { messages: Message[]; response: Promise<SqsBatchResponse> } | undefined;
    await drive(h, {
      onDelivery: async (d) => {
        if (zombie || d.vertex !== 'lines') return;
        // When A takes a batch from `count` and stalls in its commit...
        const url = h.resources.queueUrls.count!;
        let messages: Message[] = [];
        for (let i = 0; i < 20 && messages.length === 0; i++) messages = await receiveMessages(clients, url, { waitSeconds: 1 });
        if (messages.length === 0) return;
        armedA = true;
        zombie = { messages, response: containerA(sqsEventOf(messages)) };
        await atGate;
        // ...its batch comes back (its visibility timeout ends), and container B (the default handler) processes and commits it.
        await handBack(clients, url, messages);
        const ids = new Set(messages.filter((m) => groupOf(m) === gatedSubtask).map((m) => m.MessageId!));
        expect(ids.size).toBeGreaterThan(0);
        const deadline = Date.now() + 30_000;
        let redelivered = false;
        while (!redelivered && Date.now() < deadline) {
          const again = await deliver(h, 'count', h.handlers.count, 1);
          if (!again) continue;
          for (const m of again.messages) if (ids.has(m.MessageId!)) redelivered = true;
          expect(again.response.batchItemFailures).toEqual([]);
        }
        expect(redelivered).toBe(true);
        // Then A wakes up: its commit is fenced, and it reports the messages of that group as failed (its other groups committed).
        openGate();
        const response = await zombie.response;
        expect(new Set(response.batchItemFailures.map((f) => f.itemIdentifier))).toEqual(ids);
      },
    });
    expect(zombie).toBeDefined();
    expect(h.logs.some((l) => l.level === 'error' && l.code === ErrorCode.CommitFenced)).toBe(true);
    await expectExactOutput(h);
  });

  it('fails the job over, naming the operator and its error, when user code throws on every delivery of a record, before its envelope is dead-lettered', async () => {
    // Given a count function that throws on one word every time
    const h = await harness('files', { faults: { throwOn: 'w7' } });

    // When the job runs, it fails over instead of retrying for ever or dead-lettering the envelope (a gap downstream)
    const failure = await drive(h).then(() => undefined, (e: Error) => e);
    const [first, ...stack] = failure!.message.split('\n');
    expect(first).toMatch(/^job failing: task count:\d failed: operator 'count' threw: poisoned word w7 \(failed on all 5 deliveries its queue allows\)$/);
    // The cause in the job row carries the user code's stack trace
    expect(stack.length).toBeGreaterThan(0);
    expect(stack.every((line) => /^\s+at /.test(line) || line.trim() === '…')).toBe(true);
    expect((await h.store.require(h.plan.job)).state.status).toBe('FAILING');
    expect(await approximateMessages(h.resources.dlqUrls.count!)).toBe(0);
    expect(h.logs.some((l) => l.level === 'error' && String(l.message).startsWith('failing the job over: subtask count:'))).toBe(true);
  });

  it('fails the job over at once, naming the limit and the size, when a record is too large for an SQS message', async () => {
    const h = await harness('files', { faults: { hugeRecordAt: 100 } });

    const failure = await drive(h).then(() => undefined, (e: Error) => e);

    expect(failure?.message).toMatch(
      /^job failing: task lines:\d failed: envelope \S+ \(data with 1 records\) encodes to \d+ bytes, over the SQS message limit of 1048576 bytes; a single record vertex 'lines' sends to 'count' is too large for SQS; make it smaller$/,
    );
    // Terminal: it failed on its first delivery, without waiting for the queue's redeliveries
    const failed = h.logs.filter((l) => l.message === `failing the job over: subtask ${/task (lines:\d)/.exec(failure!.message)![1]} cannot get past its input: ${failure!.message.replace(/^job failing: task \S+ failed: /, '')}`);
    expect(failed).toHaveLength(1);
  });

  /** Envelope of a record, or undefined for a wake or anything else. */
  const envelopeOf = (body: string) => {
    try {
      return decodeEnvelope(body);
    } catch {
      return undefined;
    }
  };

  it('takes envelopes that a FIFO queue hands over out of order (a group reversed) in seq order, and stays exact', async () => {
    // Given a count queue whose batches reach the handler reversed, as moto hands failed messages back newest first
    const h = await harness();
    const inOrder = h.handlers.count!;
    let reversed = 0;
    h.handlers.count = async (event) => {
      const data = event.Records.filter((r) => envelopeOf(r.body)?.kind === EnvelopeKind.Data);
      if (data.length > 1) reversed++;
      return inOrder({ Records: [...event.Records].reverse() });
    };

    // When the job runs, Then the output is exact: nothing skipped by a seq seen too early
    await drive(h);
    expect(reversed).toBeGreaterThan(0);
    await expectExactOutput(h);
  });

  it('fails the job over with CHANNEL_GAP naming the channel when an envelope is lost, instead of finishing with its records missing', async () => {
    // Given one data envelope of the count queue that vanishes (deleted unprocessed, as a dead-lettered one would be),
    // and receivers that keep one envelope behind a gap at most
    const h = await harness('files', { handler: { maxEnvelopesAhead: 1 } });
    const real = h.handlers.count!;
    let lost: string | undefined;
    h.handlers.count = async (event) => {
      const victim = lost === undefined ? event.Records.find((r) => envelopeOf(r.body)?.kind === EnvelopeKind.Data && envelopeOf(r.body)!.seq === 2) : undefined;
      if (victim) {
        const e = envelopeOf(victim.body)!;
        lost = `${e.from.op}:${e.from.subtask} → ${e.to.op}:${e.to.subtask}`;
      }
      return real({ Records: event.Records.filter((r) => r !== victim) });
    };

    const failure = await drive(h).then(() => undefined, (e: Error) => e);

    expect(lost).toBeDefined();
    expect(failure?.message).toContain(`channel ${lost} has a gap that cannot fill: envelope 2 never arrived and more than 1 envelopes arrived after it`);
    expect(h.logs.some((l) => l.code === ErrorCode.ChannelGap)).toBe(true);
  });

  it('fails the job over with CHANNEL_GAP when a forged envelope with a high seq sits behind its channel, instead of skipping to it', async () => {
    // Given an envelope of the job's generation from lines:0 to count:0 with a seq far ahead, among the real ones
    const h = await harness();
    const row = await h.store.require(h.plan.job);
    const forged = {
      v: 1 as const,
      job: h.plan.job,
      gen: row.runtime.generation,
      from: { op: 'lines', subtask: 0 },
      to: { op: 'count', subtask: 0 },
      seq: 1_000_000,
      epoch: 0,
      kind: EnvelopeKind.Data,
      records: [{ v: 'w1', k: '"w1"', g: 0 }],
    };
    await clients.sqs.send(new SendMessageCommand({ QueueUrl: h.resources.queueUrls.count!, MessageBody: encodeEnvelope(forged), MessageGroupId: messageGroupId(forged), MessageDeduplicationId: deduplicationId(forged) }));

    const failure = await drive(h).then(() => undefined, (e: Error) => e);

    expect(failure?.message).toMatch(/channel lines:0 → count:0 has a gap that cannot fill: envelope \d+ never arrived and the channel ended at envelope \d+ \(seq 1000000\)/);
  });

  it('sends a malformed message to the dead-letter queue with its reason, and its group goes on', async () => {
    const h = await harness();
    // Given garbage in the middle of group 0 of `count`.
    await clients.sqs.send(
      new SendMessageCommand({ QueueUrl: h.resources.queueUrls.count!, MessageBody: '{"not":"an envelope"}', MessageGroupId: '0', MessageDeduplicationId: 'garbage-1' }),
    );
    let garbageResponse: SqsBatchResponse | undefined;
    let garbageId: string | undefined;
    await drive(h, {
      onDelivery: async (d) => {
        const garbage = d.messages.find((m) => m.Body === '{"not":"an envelope"}');
        if (garbage) {
          garbageId = garbage.MessageId!;
          garbageResponse = d.response;
        }
      },
    });
    // Then it was handled (not retried), and the dead-letter queue holds it with the reason.
    expect(garbageResponse?.batchItemFailures.map((f) => f.itemIdentifier)).not.toContain(garbageId);
    const dead = await receiveMessages(clients, h.resources.dlqUrls.count!, { waitSeconds: 1 });
    expect(dead).toHaveLength(1);
    expect(dead[0]!.Body).toBe('{"not":"an envelope"}');
    const attrs = dead[0]!.MessageAttributes!;
    expect(attrs[DeadLetterAttr.Code]?.StringValue).toBe(ErrorCode.MalformedMessage);
    expect(attrs[DeadLetterAttr.Reason]?.StringValue).toMatch(/not a valid envelope/);
    expect(attrs[DeadLetterAttr.MessageId]?.StringValue).toBe(garbageId);
    await expectExactOutput(h);
  });

  it('restores a checkpoint into a new generation: older messages and wakes are dropped, restored sources keep their splits, output is exact', async () => {
    const h = await harness();
    const job = h.plan.job;
    // Given a run that completed checkpoint 1, went on for a while, and then stopped (its Lambdas all died).
    await drive(h, { checkpointAfter: 4, until: async () => (await h.store.require(job)).state.counts.completed >= 1 });
    for (let round = 0; round < 3; round++) for (const v of h.plan.vertices) await deliver(h, v.id);
    const before = await h.store.require(job);
    expect(before.jobStatus?.status).not.toBe(JobStatus.Finished);

    // When the job is restored from it as emulator mode does: state from the manifest, pending commits committed,
    // uncommitted output removed, a new job row at the next generation, and the sources woken in that generation.
    const storage = new S3CheckpointStorage({ client: clients.s3 });
    const latest = (await findLatestCheckpoint(storage, h.checkpoint.dir, job))!;
    expect(latest.manifest.checkpointId).toBe(1);
    const restorePlan = planRestore(latest.manifest, h.plan, { allowNonRestoredState: false, source: latest.dir });
    const state = new DynamoDbStateStore({ tableName: h.resources.stateTable, job, client: clients.dynamodb });
    await state.clear();
    await new SinkCommitRegistry(h.plan).commitAll(restorePlan.pendingCommits);
    for (const [key, operators] of restorePlan.subtasks) {
      const [vertex, subtask] = [key.slice(0, key.lastIndexOf(':')), Number(key.slice(key.lastIndexOf(':') + 1))];
      const v = h.plan.vertices.find((x) => x.id === vertex)!;
      await state.forSubtask({ vertex, subtask }).restore({ storage, manifestDir: latest.dir, keyGroups: keyGroupRange(subtask, v.parallelism, h.plan.maxParallelism), operators });
    }
    const sink = h.plan.vertices.flatMap((v) => v.operators).find((o) => o.uid === 'out')!.node.spec as unknown as { connector: { cleanup(uid: string): Promise<void> } };
    await sink.connector.cleanup('out');
    await clients.dynamodb.send(new DeleteItemCommand({ TableName: h.resources.coordinatorTable, Key: { [CoordinatorAttr.pk]: { S: jobRowKey(job) } } }));
    const generation = before.runtime.generation + 1;
    await h.tasks.initialize({ options: h.checkpoint, jobId: randomUUID(), savepointDir: h.resources.savepointRoot!, generation, latestCompletedId: 1, restored: true });
    await startSources({ plan: h.plan, resources: h.resources, clients, generation });
    // The same containers go on (their cached generation is reloaded), with older messages still in the queues.
    await drive(h, { checkpointAfter: 1_000_000 });

    // Then the output is exact, and what the older generation left in the queues was dropped.
    await expectExactOutput(h, 1);
    expect(h.logs.some((l) => l.message === 'stale wakes dropped' || (l.message === 'step' && l.gen === generation && (l.dropped as number) > 0))).toBe(true);
  });
  it('after a cancel drops every message of the generation: no step, no state change, no output; the source chains end and nothing starts', async () => {
    // Given a run that completed a checkpoint, went on, and has another snapshot pending or queued; handlers that re-read the row every slice
    const h = await harness('files', { runRefreshMs: 0 });
    const job = h.plan.job;
    await drive(h, { checkpointAfter: 4, until: async () => (await h.store.require(job)).state.counts.completed >= 1 });
    for (let round = 0; round < 2; round++) for (const v of h.plan.vertices) await deliver(h, v.id);
    await h.tasks.dispatch({ type: 'trigger', now: Date.now(), request: { requestId: 'pending-at-cancel', kind: 'checkpoint' } });
    const before = await h.store.require(job);
    expect(before.state.status).toBe('RUNNING');
    expect(before.state.pending.length).toBeGreaterThanOrEqual(1);
    const outputBefore = sorted(await h.output());
    const stateBefore = await scanTable(h.resources.stateTable);

    // When the job is cancelled
    const { row, aborted } = await cancelJob(h.store, job, Date.now());
    expect(row.state.status).toBe('CANCELED');
    expect(row.jobStatus?.status).toBe(JobStatus.Canceled);
    expect(aborted).toEqual(before.state.pending.map((p) => p.id));
    expect(row.state.history.filter((c) => aborted.includes(c.id)).map((c) => [c.status, c.failureReason])).toEqual(aborted.map(() => ['FAILED', 'the job was cancelled']));
    for (const id of aborted) expect((await h.store.getCheckpointStatus(job, id))?.status).toBe('FAILED');
    // And a repeated cancel finishes what a first one that died after the row write left: status items still in progress
    const first = aborted[0]!;
    // (a final status never goes back, so the item is made anew as it was before the cancel)
    await clients.dynamodb.send(new DeleteItemCommand({ TableName: h.resources.coordinatorTable, Key: { [CoordinatorAttr.pk]: { S: checkpointStatusKey(job, first) } } }));
    await h.store.putCheckpointStatus(job, { checkpointId: first, kind: 'checkpoint', status: CheckpointStatus.InProgress, at: Date.now() });
    expect((await h.store.getCheckpointStatus(job, first))?.status).toBe('IN_PROGRESS');
    const again = await cancelJob(h.store, job, Date.now());
    expect(again.changed).toBe(false);
    expect(await h.store.getCheckpointStatus(job, first)).toMatchObject({ status: 'FAILED', reason: 'the job was cancelled' });
    const logsAt = h.logs.length;

    // Then the handlers delete what is still queued without processing it, and send nothing (the wake chains end)
    let delivered = 0;
    for (let round = 0; round < 4; round++) {
      for (const v of h.plan.vertices) {
        const d = await deliver(h, v.id, h.handlers[v.id], 1);
        if (!d) continue;
        delivered += d.messages.length;
        expect(d.response.batchItemFailures).toEqual([]);
      }
    }
    expect(delivered).toBeGreaterThan(0);
    const after = h.logs.slice(logsAt);
    expect(after.filter((l) => l.message === 'step')).toEqual([]);
    expect(after.some((l) => l.message === 'messages of a cancelled job dropped')).toBe(true);
    for (const v of h.plan.vertices) await expectQueueEmpty(clients, h.resources.queueUrls[v.id]!);
    // And neither a tick nor a trigger starts a checkpoint; no state changed and no output was committed
    await h.tasks.tick();
    await h.tasks.dispatch({ type: 'trigger', now: Date.now(), request: { requestId: 'after-cancel', kind: 'savepoint' } });
    const final = await h.store.require(job);
    expect(final.state.nextCheckpointId).toBe(row.state.nextCheckpointId);
    expect(final.state.pending).toEqual([]);
    expect(await scanTable(h.resources.stateTable)).toEqual(stateBefore);
    expect(sorted(await h.output())).toEqual(outputBefore);
    // The committed output is the oracle's, up to the checkpoint it completed: every line in it is one of the oracle's.
    const expected = new Set(await oracle());
    expect(outputBefore.length).toBeGreaterThan(0);
    expect(outputBefore.filter((l) => !expected.has(l))).toEqual([]);
  });

  it('a wake delivered again with another deduplication id (as after the 5-minute window) takes no step and starts no second chain; output is exact', async () => {
    const h = await harness();
    let injected = 0;
    await drive(h, {
      onDelivery: async (d) => {
        if (d.vertex !== 'lines' || injected >= 3) return;
        // When a wake that a step just ran for arrives once more, with a deduplication id SQS has not seen
        for (const m of d.messages) {
          const w = parseWake(m.Body!);
          if (!w || injected >= 3) continue;
          await clients.sqs.send(
            new SendMessageCommand({ QueueUrl: h.resources.queueUrls.lines!, MessageBody: encodeWake(w), MessageGroupId: String(w.subtask), MessageDeduplicationId: `late-${randomUUID()}` }),
          );
          injected++;
        }
      },
    });
    expect(injected).toBe(3);
    await expectExactOutput(h);
    // Then the copies took no step of their own (refused by the control row's fence, or folded into the newer wake
    // they arrived with), and each subtask's chain sent every next wake number exactly once: there was one chain
    const sourceSteps = h.logs.filter((l) => l.message === 'step' && l.vertex === 'lines' && l.wake !== undefined);
    const newSteps = sourceSteps.filter((l) => l.wake === 'new');
    const wakesHandled = sourceSteps.reduce((n, l) => n + (l.wakes as number), 0);
    expect(wakesHandled).toBeGreaterThanOrEqual(newSteps.length + 3);
    for (const subtask of ['0', '1']) {
      const sent = sourceSteps.filter((l) => l.subtask === subtask && l.nextWake !== undefined && l.wake === 'new').map((l) => l.nextWake as number);
      expect([...sent].sort((a, b) => a - b)).toEqual(Array.from({ length: sent.length }, (_, i) => i + 1));
    }

    // And, with the job finished, a copy of an old wake is dropped on its own: no records read, no next wake
    const logsAt = h.logs.length;
    await clients.sqs.send(
      new SendMessageCommand({ QueueUrl: h.resources.queueUrls.lines!, MessageBody: encodeWake({ gen: 1, subtask: 0, n: 1 }), MessageGroupId: '0', MessageDeduplicationId: `late-${randomUUID()}` }),
    );
    const d = await deliver(h, 'lines', h.handlers.lines, 1);
    expect(d?.response.batchItemFailures).toEqual([]);
    expect(h.logs.slice(logsAt).filter((l) => l.message === 'step').map((l) => [l.wake, l.recordsIn, l.nextWake])).toEqual([['stale', 0, undefined]]);
    await expectQueueEmpty(clients, h.resources.queueUrls.lines!);
  });

  it('the coordinator re-wakes a source chain whose wake went to the dead-letter queue, and the output stays exact', async () => {
    const h = await harness('files', { stallMs: 1500 });
    // Given a "container" of the source vertex whose wake 2 of subtask 0 is moved to the dead-letter queue instead of handled
    let lost: string | undefined;
    const inner = h.handlers.lines!;
    h.handlers.lines = async (event) => {
      let records = event.Records;
      if (lost === undefined) {
        const rec = records.find((r) => {
          const w = parseWake(r.body);
          return w !== undefined && w.subtask === 0 && w.n === 2;
        });
        if (rec) {
          lost = rec.body;
          await clients.sqs.send(new SendMessageCommand({ QueueUrl: h.resources.dlqUrls.lines!, MessageBody: rec.body, MessageGroupId: '0', MessageDeduplicationId: `lost-${randomUUID()}` }));
          records = records.filter((r) => r !== rec);
        }
      }
      return records.length > 0 ? inner({ Records: records }) : { batchItemFailures: [] };
    };
    // When the coordinator ticks after every round (its watchdog gives up on a chain after 1.5s without progress)
    await drive(h, { onRound: async () => void (await h.tasks.tick()) });
    // Then the chain was woken again, the job finished, and the output is exact
    expect(lost).toBeDefined();
    expect(h.logs.some((l) => l.level === 'warn' && l.task === 'lines:0' && /made no progress/.test(String(l.message)))).toBe(true);
    const dead = await receiveMessages(clients, h.resources.dlqUrls.lines!, { waitSeconds: 1 });
    expect(dead.map((m) => m.Body)).toEqual([lost]);
    await expectExactOutput(h);
  });
  it('paces an idle rate-limited source: a wake step waits until the source may read again instead of spinning', async () => {
    // Given an unbounded source limited to 4 records a second, whose chain is driven as Lambda would drive it
    const RATE = 4;
    const SECONDS = 5;
    const measure = async (sourceIdleWaitMs: number) => {
      const job = new Job(`paced-${randomUUID().slice(0, 8)}`, { parallelism: 1 });
      job.source(generator({ generate: (i) => i, ratePerSecond: RATE }), { uid: 'ticks' }).map((i) => i * 2, { uid: 'double' }).sinkTo(scratch.collector<number>(), { uid: 'out' });
      const plan = buildPlan(job);
      const source = plan.vertices.find((v) => v.isSource)!.id;
      const provisionedJob = await provisionAwsJob({ plan, clients, visibilityTimeoutSeconds: VISIBILITY_SECONDS });
      provisioned.push(provisionedJob);
      const { resources } = provisionedJob;
      const checkpoint = resolveCheckpointOptions({ dir: resources.checkpointRoot });
      const store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: resources.coordinatorTable, serializeLocalWrites: true });
      const tasks = new CoordinatorHost({ clock: systemClock,
        plan,
        store,
        storage: new S3CheckpointStorage({ client: clients.s3 }),
        sender: new SqsQueueSender(clients.sqs, (v) => resources.queueUrls[v]!),
        sources: new SourceChains({ plan, queueUrls: resources.queueUrls, sqs: clients.sqs }),
        log: () => {},
      });
      await tasks.initialize({ options: checkpoint, jobId: randomUUID(), savepointDir: resources.savepointRoot! });
      await tasks.startSources();
      const sqsRequests = { count: 0 };
      const counted = countingSqs(sqsRequests);
      const logs: Record<string, unknown>[] = [];
      const handler = createOperatorHandler({ plan, vertex: source, resources, clients: counted, checkpoint, serializeLocalWrites: true, sourceIdleWaitMs, log: (l) => logs.push(l) });
      // When it runs for a few seconds: receive (long poll), handle, delete, as the event source mapping does
      const url = resources.queueUrls[source]!;
      let invocations = 0;
      const started = Date.now();
      while (Date.now() - started < SECONDS * 1000) {
        const res = await counted.sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageSystemAttributeNames: ['All'] }));
        const messages = res.Messages ?? [];
        if (messages.length === 0) continue;
        invocations++;
        const response = await handler(sqsEventOf(messages));
        expect(response.batchItemFailures).toEqual([]);
        await counted.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
      }
      const elapsed = (Date.now() - started) / 1000;
      const records = logs.filter((l) => l.message === 'step').reduce((n, l) => n + (l.recordsIn as number), 0);
      return { invocationsPerSecond: invocations / elapsed, sqsRequestsPerSecond: sqsRequests.count / elapsed, recordsPerSecond: records / elapsed };
    };
    const spinning = await measure(0);
    const paced = await measure(1000);
    console.log(`idle rate-limited source (${RATE}/s) on moto: without pacing ${JSON.stringify(spinning)}; paced ${JSON.stringify(paced)}`);
    // Then both read at the source's rate, but the paced chain takes about one step per record, the spinning one many more
    for (const m of [spinning, paced]) expect(m.recordsPerSecond).toBeGreaterThan(RATE / 2);
    expect(paced.invocationsPerSecond).toBeLessThanOrEqual(RATE + 1);
    expect(paced.sqsRequestsPerSecond).toBeLessThanOrEqual(3 * (RATE + 1) + 1);
    expect(spinning.invocationsPerSecond).toBeGreaterThan(paced.invocationsPerSecond);
  });
  it('holds a source off while its downstream queue is backed up, resumes as it drains, stays exact, and probes the queue at most once per backlogProbeMs', async () => {
    // Given a job whose sources hold off above 2 messages per Count subtask, probing the Count queue before every step
    const BOUND = 2;
    const PROBE_MS = 250;
    const h = await harness('files', { handler: { maxDownstreamBacklog: BOUND, backlogProbeMs: 0, sourceIdleWaitMs: 100 } });
    const source = h.plan.vertices.find((v) => v.isSource)!;
    const count = h.plan.vertices.find((v) => v.id === source.outputs[0]!.to)!;
    const queued = async () => {
      const { Attributes } = await clients.sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: h.resources.queueUrls[count.id]!, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
      );
      return Number(Attributes?.ApproximateNumberOfMessages) + Number(Attributes?.ApproximateNumberOfMessagesNotVisible);
    };
    const sourceSteps = () => h.logs.filter((l) => l.message === 'step' && l.vertex === source.id);
    const readIn = () => sourceSteps().reduce((n, l) => n + (l.recordsIn as number), 0);

    // When only the sources run, 12 batches (enough to read all 20 chunks without backpressure), the Count queue undrained
    for (let i = 0; i < 12; i++) await deliver(h, source.id);

    // Then they backed the queue up, held off once it exceeded the bound (reading nothing in those steps), and stopped
    // with the queue above the bound by no more than one batch of source steps sent (2 subtasks, probing at once,
    // each sending one envelope to each of the 2 Count subtasks)
    const backlog = await queued();
    const held = sourceSteps().filter((l) => l.heldOff === true);
    console.log(`backpressure: Count queue ${backlog} messages (bound ${BOUND * count.parallelism}), ${held.length} of ${sourceSteps().length} source steps held off, ${readIn()} of ${EVENTS} lines read`);
    expect(backlog).toBeGreaterThan(BOUND * count.parallelism);
    expect(backlog).toBeLessThanOrEqual(BOUND * count.parallelism + 2 * count.parallelism);
    expect(held.length).toBeGreaterThan(0);
    expect(held.every((l) => l.recordsIn === 0 && (l.pausedMs as number) >= 100)).toBe(true);
    expect(readIn()).toBeLessThan(EVENTS / 2);

    // When the whole job runs, with a checkpoint mid-run, in a new source container that probes at most every 250 ms
    const phaseOneSteps = sourceSteps().length;
    const probes = { count: 0 };
    h.handlers[source.id] = h.newHandler(source.id, countingSqs(probes, 'GetQueueAttributesCommand'), { backlogProbeMs: PROBE_MS });
    const started = Date.now();
    await drive(h);

    // Then the new container held off too at first (the queue was still backed up), the sources resumed and read
    // every line once, the output equals the oracle, and the probe cost at most one request per PROBE_MS
    const steps = sourceSteps();
    const lastHeld = steps.findLastIndex((l) => l.heldOff === true);
    expect(steps.slice(lastHeld + 1).some((l) => (l.recordsIn as number) > 0)).toBe(true);
    expect(readIn()).toBe(EVENTS);
    await expectExactOutput(h);
    const elapsed = Date.now() - started;
    console.log(`backpressure: ${probes.count} GetQueueAttributes in ${elapsed} ms, ${steps.length} source steps`);
    expect(probes.count).toBeGreaterThan(0);
    expect(probes.count).toBeLessThanOrEqual(Math.ceil(elapsed / PROBE_MS) + 1);
    expect(probes.count).toBeLessThanOrEqual(steps.length);
    expect(steps.slice(phaseOneSteps).some((l) => l.heldOff === true)).toBe(true);
  });
});
