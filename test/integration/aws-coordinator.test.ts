import { randomUUID } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join as joinPath } from 'node:path';
import { CreateBucketCommand, type BucketLocationConstraint } from '@aws-sdk/client-s3';
import { CreateStateMachineCommand, DescribeExecutionCommand, ListExecutionsCommand, StartExecutionCommand, type DescribeExecutionCommandOutput } from '@aws-sdk/client-sfn';
import { CreateQueueCommand, DeleteMessageBatchCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { StepFunctionsCheckpointExecutions } from '../../lib/adapters/aws/step-functions-executions.js';
import { CoordinatorStoreGateway } from '../../lib/coordination/gateway.js';
import { JobStatus } from '../../lib/core/coordinator/job-row.js';
import { coordinatorStateMachineDefinition } from '../../lib/adapters/aws/coordinator-state-machine.js';
import { DynamoDbCoordinatorStore, createCoordinatorTable } from '../../lib/adapters/aws/dynamodb-coordinator-store.js';
import { createCoordinatorTaskHandler } from '../../lib/hosts/lambda/coordinator-task-handler.js';
import { CoordinatorHost } from '../../lib/coordination/host.js';
import { decodeEnvelope } from '../../lib/adapters/aws/envelope-codec.js';
import { S3CheckpointStorage } from '../../lib/adapters/aws/s3-checkpoint-storage.js';
import { SqsEventSourcePoller } from '../../lib/adapters/aws/sqs-poller.js';
import { SqsQueueSender } from '../../lib/adapters/aws/sqs-queue-sender.js';
import { Job } from '../../lib/api/job.js';
import { collectSink, resetCollector, type CollectSink } from '../../lib/connectors/collect-sink.js';
import { generator } from '../../lib/connectors/generator.js';
import type { AckResult } from '../../lib/core/coordinator/ack-tracker.js';
import { ErrorCode } from '../../lib/core/errors.js';
import { Layout, join } from '../../lib/core/manifest/layout.js';
import type { PendingCommit, SubtaskSnapshot } from '../../lib/core/manifest/model.js';
import { resolveCheckpointOptions, type CheckpointOptions } from '../../lib/core/options.js';
import { buildPlan, type PhysicalPlan } from '../../lib/graph/plan.js';
import type { CheckpointAck } from '../../lib/ports/index.js';
import type { Envelope } from '../../lib/core/envelope.js';
import { parseWake, type WakeMessage } from '../../lib/hosts/lambda/source-wakes.js';
import { listCheckpoints, loadManifest } from '../../lib/runtime/snapshot-catalog.js';
import type { CoordinatorLogEntry } from '../../lib/coordination/observer.js';
import type { AppliedStep, EffectRunner } from '../../lib/ports/coordinator-store.js';
import { checkpointExecutionInput, checkpointExecutionName } from '../../lib/coordination/checkpoint-tasks.js';
import { systemClock } from '../../lib/adapters/local/system-clock.js';

// Runs against the emulator that test/support/moto-global-setup.ts points AWS_ENDPOINT_URL at (moto with Step
// Functions execution on). Emulator mode as Floe runs it: the state machine's tasks go through the tasks queue to an
// in-process SqsEventSourcePoller running the same handler the Lambda runs.

const clients = awsClients();
const run = randomUUID().slice(0, 8);
const bucket = `floe-coord-${run}`;
const tableName = `floe-coordinator-${run}`;
const ROLE = 'arn:aws:iam::123456789012:role/floe-coordinator';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function createQueue(name: string, fifo: boolean): Promise<string> {
  const res = await clients.sqs.send(
    new CreateQueueCommand({ QueueName: `${name}${fifo ? '.fifo' : ''}`, Attributes: { VisibilityTimeout: '30', ...(fifo ? { FifoQueue: 'true' } : {}) } }),
  );
  return res.QueueUrl!;
}

/** Receives (and deletes) envelopes until a long poll brings nothing; wake-up messages go to `wakes` when given. */
async function drainEnvelopes(queueUrl: string, wakes?: WakeMessage[]): Promise<Envelope[]> {
  const out: Envelope[] = [];
  for (;;) {
    const res = await clients.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    const messages = res.Messages ?? [];
    if (messages.length === 0) return out;
    for (const m of messages) {
      const wake = wakes ? parseWake(m.Body!) : undefined;
      if (wake) wakes!.push(wake);
      else out.push(decodeEnvelope(m.Body!, m.MessageId));
    }
    await clients.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
  }
}

/** Receives envelopes until `count` arrived, then makes sure no more come; wake-up messages go to `wakes` when given. */
async function takeEnvelopes(queueUrl: string, count: number, wakes?: WakeMessage[]): Promise<Envelope[]> {
  const got: Envelope[] = [];
  await waitFor(`${count} envelopes on ${queueUrl}`, async () => {
    got.push(...(await drainEnvelopes(queueUrl, wakes)));
    return got.length >= count;
  });
  got.push(...(await drainEnvelopes(queueUrl, wakes)));
  return got;
}

async function executionEnded(executionArn: string): Promise<DescribeExecutionCommandOutput> {
  return waitFor(`execution ${executionArn} to end`, async () => {
    const d = await clients.sfn.send(new DescribeExecutionCommand({ executionArn }));
    return d.status !== 'RUNNING' && d;
  });
}

/** An ack with empty state for every operator of one subtask; the sink's snapshot may carry pending commits. */
function ackOf(plan: PhysicalPlan, vertex: string, subtask: number, checkpointId: number, commits: PendingCommit[] = []): CheckpointAck {
  const v = plan.vertices.find((x) => x.id === vertex)!;
  const lo = Math.floor((subtask * plan.maxParallelism + v.parallelism - 1) / v.parallelism);
  const hi = Math.floor(((subtask + 1) * plan.maxParallelism - 1) / v.parallelism) + 1;
  const snapshot = (uid: string): SubtaskSnapshot => ({
    subtask,
    keyGroups: [lo, hi],
    keyedState: [],
    operatorState: [],
    pendingCommits: uid === 'out' ? commits : [],
    stats: { ackTimestamp: Date.now(), alignmentMs: 0, syncMs: 1, asyncMs: 1, startDelayMs: 0, stateSize: 0, fullSize: 0 },
  });
  return { checkpointId, task: { vertex, subtask }, operators: Object.fromEntries(v.operators.map((op) => [op.uid, snapshot(op.uid)])) };
}

function allAcks(plan: PhysicalPlan, checkpointId: number, commitsOf: (task: string) => PendingCommit[] = () => []): CheckpointAck[] {
  return plan.vertices.flatMap((v) => Array.from({ length: v.parallelism }, (_, i) => ackOf(plan, v.id, i, checkpointId, commitsOf(`${v.id}:${i}`))));
}

/** An effect runner that remembers the steps it was given, to replay one later as a zombie would. */
class RecordingEffects implements EffectRunner {
  constructor(
    private readonly inner: EffectRunner,
    readonly steps: AppliedStep[] = [],
  ) {}
  run(applied: AppliedStep): Promise<void> {
    this.steps.push(applied);
    return this.inner.run(applied);
  }
}

interface Fixture {
  readonly plan: PhysicalPlan;
  readonly sink: CollectSink<string>;
  readonly store: DynamoDbCoordinatorStore;
  readonly tasks: CoordinatorHost;
  readonly effects: RecordingEffects;
  readonly gateway: CoordinatorStoreGateway;
  readonly sourceQueueUrl: string;
  readonly stateMachineArn: string;
  readonly storage: S3CheckpointStorage;
  readonly logs: CoordinatorLogEntry[];
  /** A second, independent gateway with its own clients and tasks, like another Lambda; its steps are recorded in `effects` too. */
  otherGateway(): CoordinatorStoreGateway;
  /** Starts checkpoint `id`'s execution as the REST API or a scheduler would. */
  start(id: number): Promise<string>;
  dir(id: number): string;
}

const pollers: SqsEventSourcePoller[] = [];
const collectors: string[] = [];

/**
 * Given a job `generator source (p) → keyBy → process → collect sink`, its coordinator row, a FIFO queue for its
 * source vertex, a tasks queue served by an in-process poller, and its state machine.
 */
async function fixture(label: string, checkpoint: CheckpointOptions = {}, parallelism = 3): Promise<Fixture> {
  const name = `coord-${label}-${run}`;
  collectors.push(name);
  const sink = collectSink<string>(name);
  const job = new Job(name, { parallelism, checkpoint: { dir: `s3://${bucket}/checkpoints`, ...checkpoint } });
  job
    .source(generator({ generate: (i) => ({ key: `k${i % 5}` }) }), { uid: 'events' })
    .keyBy((e) => e.key)
    .process({ processElement: (e, _ctx, out) => out.collect(e.key) }, { uid: 'count' })
    .sinkTo(sink, { uid: 'out' });
  const plan = buildPlan(job);
  expect(plan.vertices.map((v) => [v.id, v.operators.map((o) => o.uid)])).toEqual([
    ['events', ['events']],
    ['count', ['count', 'out']],
  ]);

  const sourceQueueUrl = await createQueue(`floe-${name}-events`, true);
  const tasksQueueUrl = await createQueue(`floe-${name}-tasks`, false);
  const definition = coordinatorStateMachineDefinition({ job: name, tableName, tasksQueueUrl, pollIntervalSeconds: 1, taskTimeoutSeconds: 60 });
  const { stateMachineArn } = await clients.sfn.send(new CreateStateMachineCommand({ name: `floe-${name}`, definition: JSON.stringify(definition), roleArn: ROLE, type: 'STANDARD' }));

  const logs: CoordinatorLogEntry[] = [];
  const build = (c = clients) => {
    const store = new DynamoDbCoordinatorStore({ client: c.dynamodb, tableName, serializeLocalWrites: true });
    const storage = new S3CheckpointStorage({ client: c.s3 });
    const tasks = new CoordinatorHost({ clock: systemClock,
      plan,
      store,
      storage,
      sender: new SqsQueueSender(c.sqs, () => sourceQueueUrl),
      executions: new StepFunctionsCheckpointExecutions({ client: c.sfn, stateMachineArn: stateMachineArn!, job: name }),
      log: (entry) => logs.push(entry),
    });
    return { store, storage, tasks };
  };
  const { store, storage, tasks } = build();
  await tasks.initialize({ options: resolveCheckpointOptions(job.options.checkpoint), jobId: randomUUID().replace(/-/g, ''), savepointDir: `s3://${bucket}/savepoints` });

  const poller = new SqsEventSourcePoller(clients.sqs, {
    queueUrl: tasksQueueUrl,
    handler: createCoordinatorTaskHandler({ tasks, sfn: clients.sfn, log: (entry) => logs.push(entry) }),
    waitTimeSeconds: 1,
    concurrency: 2,
    onError: (error) => logs.push({ level: 'error', message: `poller: ${(error as Error).message}` }),
  });
  await poller.start();
  pollers.push(poller);

  const effects = new RecordingEffects(tasks);
  return {
    plan,
    sink,
    store,
    tasks,
    effects,
    gateway: new CoordinatorStoreGateway({ clock: systemClock, job: name, store, effects }),
    sourceQueueUrl,
    stateMachineArn: stateMachineArn!,
    storage,
    logs,
    otherGateway() {
      const other = build(awsClients());
      return new CoordinatorStoreGateway({ clock: systemClock, job: name, store: other.store, effects: new RecordingEffects(other.tasks, effects.steps) });
    },
    async start(id: number) {
      const res = await clients.sfn.send(new StartExecutionCommand({ stateMachineArn, name: checkpointExecutionName(name, id), input: checkpointExecutionInput(id) }));
      return res.executionArn!;
    },
    dir: (id: number) => Layout.checkpointDir(`s3://${bucket}/checkpoints`, name, id),
  };
}

beforeAll(async () => {
  const region = await clients.s3.config.region();
  const location = region === 'us-east-1' ? {} : { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } };
  await clients.s3.send(new CreateBucketCommand({ Bucket: bucket, ...location }));
  await createCoordinatorTable(clients.dynamodb, tableName);
});

afterAll(async () => {
  await Promise.all(pollers.map((p) => p.stop()));
  for (const c of collectors) resetCollector(c);
});

describe('checkpoint coordinator on Step Functions, DynamoDB, SQS and S3 (emulator mode)', () => {
  it('triggers a checkpoint, injects barriers, counts concurrent acks, writes the manifest and succeeds', async () => {
    const f = await fixture('complete');
    const tasks = f.plan.vertices.flatMap((v) => Array.from({ length: v.parallelism }, (_, i) => `${v.id}:${i}`));

    // When checkpoint 1's execution is started
    const executionArn = await f.start(1);

    // Then its Trigger task, run by the in-process poller, sends one barrier to each source subtask
    const barriers = await takeEnvelopes(f.sourceQueueUrl, 3);
    expect(barriers.map((e) => e.to).sort((a, b) => a.subtask - b.subtask)).toEqual([0, 1, 2].map((subtask) => ({ op: 'events', subtask })));
    for (const e of barriers) {
      expect(e).toMatchObject({ job: f.plan.job, gen: 1, from: { op: '$coordinator', subtask: 0 }, seq: 1, kind: 'barrier', epoch: 1 });
      expect(e.barrier).toMatchObject({ checkpointId: 1, kind: 'checkpoint', location: f.dir(1), sharedLocation: join(`s3://${bucket}/checkpoints`, f.plan.job, 'checkpoints', 'shared') });
    }
    expect(await f.store.getCheckpointStatus(f.plan.job, 1)).toMatchObject({ status: 'IN_PROGRESS' });

    // When every subtask acks at once, the sink's subtasks with a pre-committed transaction each
    const results = await Promise.all(
      allAcks(f.plan, 1, (task) => (task.startsWith('count:') ? [{ sink: 'collect', collector: f.plan.job, id: `chk1-${task}`, values: [task] }] : [])).map((a) =>
        f.gateway.receiveAcknowledge(a),
      ),
    );

    // Then every ack counts, and the acks that arrived while the first one's write was in flight shared one write
    expect(results).toEqual(tasks.map(() => 'accepted'));
    const row = await f.store.require(f.plan.job);
    expect(row.state).toMatchObject({ latestCompletedId: 1, latestCommittedId: 1, counts: { completed: 1, failed: 0 }, pending: [] });
    expect(row.state.history[0]).toMatchObject({ id: 1, status: 'COMPLETED', acknowledged: tasks.length, total: tasks.length, externalPath: f.dir(1) });
    expect(row.version).toBe(1 + 1 + 2 + 1 + 1); // created, triggered, the first ack, the other acks together, manifest written, committed
    expect(f.effects.steps.filter((s) => s.step.effects.some((e) => e.type === 'writeManifest'))).toHaveLength(1);

    // And the manifest exists and loads
    const { manifest } = await loadManifest(f.storage, f.dir(1));
    expect(manifest).toMatchObject({ job: f.plan.job, checkpointId: 1, kind: 'checkpoint', generation: 1, jobId: row.runtime.jobId });
    expect(manifest.operators.map((o) => [o.uid, o.subtasks.length])).toEqual([
      ['events', 3],
      ['count', 3],
      ['out', 3],
    ]);

    // And the execution succeeds, once the sink's transactions were committed (once each, though both the effect and the Complete task commit)
    const ended = await executionEnded(executionArn);
    expect(ended.status, JSON.stringify(f.logs)).toBe('SUCCEEDED');
    expect([...f.sink.committed].sort()).toEqual(['count:0', 'count:1', 'count:2']);
    expect(await f.store.getCheckpointStatus(f.plan.job, 1)).toMatchObject({ status: 'COMPLETED', path: f.dir(1) });
    expect(f.logs.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('aborts a checkpoint whose acks never come when it times out, and fails the execution', async () => {
    const f = await fixture('timeout', { timeout: '2s' });

    // When checkpoint 1 starts and only one subtask acks
    const executionArn = await f.start(1);
    await takeEnvelopes(f.sourceQueueUrl, 3);
    expect(await f.gateway.receiveAcknowledge(ackOf(f.plan, 'events', 0, 1))).toBe('accepted');

    // Then the execution fails once the timeout passed
    const ended = await executionEnded(executionArn);
    expect(ended.status).toBe('FAILED');
    expect(ended.error).toBe('Floe.CheckpointAborted');

    // And the job row records the failed checkpoint; with no tolerated failures the job fails over
    const row = await f.store.require(f.plan.job);
    expect(row.state).toMatchObject({ pending: [], counts: { completed: 0, failed: 1 }, consecutiveFailures: 1, status: 'FAILING' });
    expect(row.state.history[0]).toMatchObject({ id: 1, status: 'FAILED', acknowledged: 1, failureReason: expect.stringContaining('expired after 2000ms') });
    expect(row.jobStatus).toMatchObject({ status: JobStatus.Failing, detail: expect.stringContaining('tolerable failure threshold') });
    expect(await f.store.getCheckpointStatus(f.plan.job, 1)).toMatchObject({ status: 'FAILED', reason: expect.stringContaining('expired') });
    expect(await f.storage.exists(join(f.dir(1), Layout.METADATA))).toBe(false);

    // And a late ack is discarded
    expect(await f.gateway.receiveAcknowledge(ackOf(f.plan, 'events', 1, 1))).toBe('discarded');
  });

  it('treats starting the same checkpoint execution twice, or triggering it twice, as one', async () => {
    const f = await fixture('twice', {}, 2);

    // When checkpoint 1's execution is started twice at once, and its Trigger task is run once more by hand
    const [first, second] = await Promise.all([f.start(1), f.start(1)]);
    expect(second).toBe(first);
    await waitFor('checkpoint 1 to be triggered', async () => (await f.store.getCheckpointStatus(f.plan.job, 1))?.status === 'IN_PROGRESS');
    // Re-sent while the first barriers are still queued: moto deduplicates only against messages in the queue, SQS
    // for five minutes after the first send (and receivers drop a repeated seq in any case).
    const again = await f.tasks.trigger({ checkpointId: 1 }, 1);
    const barriers = await takeEnvelopes(f.sourceQueueUrl, 2);
    const executions = new StepFunctionsCheckpointExecutions({ client: clients.sfn, stateMachineArn: f.stateMachineArn, job: f.plan.job });
    expect(await executions.start(1)).toEqual({ started: true, executionArn: first });

    // Then there is one checkpoint, and each source subtask got its barrier once (the re-sent one is the same envelope)
    expect(again).toMatchObject({ checkpointId: 1, pollSeconds: 1 });
    expect(barriers).toHaveLength(2);
    expect(await drainEnvelopes(f.sourceQueueUrl)).toEqual([]);
    const row = await f.store.require(f.plan.job);
    expect(row.state.pending.map((p) => p.id)).toEqual([1]);
    expect(row.state.nextCheckpointId).toBe(2);

    // When it completes
    await Promise.all(allAcks(f.plan, 1).map((a) => f.gateway.acknowledge(a)));
    expect((await executionEnded(first)).status).toBe('SUCCEEDED');

    // Then starting it again is refused by name, and triggering it again changes nothing
    expect(await executions.start(1)).toEqual({ started: false });
    const before = await f.store.require(f.plan.job);
    expect(await f.tasks.trigger({ checkpointId: 1 }, 1)).toMatchObject({ checkpointId: 1, remaining: [] });
    expect((await f.store.require(f.plan.job)).version).toBe(before.version);
    expect(await drainEnvelopes(f.sourceQueueUrl)).toEqual([]);

    // And an execution for an id that is not next is refused
    const skipped = await clients.sfn.send(new StartExecutionCommand({ stateMachineArn: f.stateMachineArn, name: checkpointExecutionName(f.plan.job, 5), input: checkpointExecutionInput(5) }));
    const refused = await executionEnded(skipped.executionArn!);
    expect(refused).toMatchObject({ status: 'FAILED', error: 'Floe.TriggerRefused' });
    expect((await f.store.require(f.plan.job)).state.nextCheckpointId).toBe(2);
  });

  it('decides periodic checkpoints on the time a scheduled tick was scheduled for, so a 1-minute interval is exactly a minute', async () => {
    const f = await fixture('scheduled', { interval: '1m' }, 1);
    const iso = (ms: number) => new Date(ms).toISOString();
    // Given the coordinator's start, taken from a first tick when the row has none yet
    await f.tasks.tick();
    const startedAt = (await f.store.require(f.plan.job)).state.startedAt!;
    expect(startedAt).toBeGreaterThan(0);

    // When ticks arrive scheduled just under, then exactly, one interval after the start (delivered now, within a minute)
    await f.tasks.tick(iso(startedAt + 59_999));
    const before = await f.store.require(f.plan.job);
    await f.tasks.tick(iso(startedAt + 60_000));
    const after = await f.store.require(f.plan.job);

    // Then the first does not start a checkpoint and the second does, triggered at its scheduled time
    expect(before.state.nextCheckpointId).toBe(1);
    expect(after.state.nextCheckpointId).toBe(2);
    expect(after.state.pending.map((p) => [p.id, p.triggeredAt])).toEqual([[1, startedAt + 60_000]]);
    // And a scheduled time more than a minute from the clock (a tick delivered late) is not trusted: the clock decides
    await f.tasks.tick(iso(startedAt + 600_000));
    expect((await f.store.require(f.plan.job)).state.nextCheckpointId).toBe(2);
  });

  it('answers a repeated ack with duplicate and one after completion with discarded, writing no second manifest', async () => {
    const f = await fixture('zombie', {}, 2);
    const executionArn = await f.start(1);
    await takeEnvelopes(f.sourceQueueUrl, 2);
    const [head, ...rest] = allAcks(f.plan, 1);

    // When one subtask's ack is delivered twice while the checkpoint is pending
    expect(await f.gateway.receiveAcknowledge(head!)).toBe('accepted');
    const version = (await f.store.require(f.plan.job)).version;
    expect(await f.gateway.receiveAcknowledge(head!)).toBe('duplicate');

    // Then the repeat writes nothing
    expect((await f.store.require(f.plan.job)).version).toBe(version);

    // When the others ack, and a zombie acks again after completion
    for (const a of rest) expect(await f.gateway.receiveAcknowledge(a)).toBe('accepted');
    const metadata = join(f.dir(1), Layout.METADATA);
    const written = await f.storage.get(metadata);
    const completed = await f.store.require(f.plan.job);
    expect(await f.gateway.receiveAcknowledge(rest[0]!)).toBe('discarded');

    // Then nothing changes: one manifest, the same bytes, the same row
    expect(await f.storage.get(metadata)).toEqual(written);
    expect((await listCheckpoints(f.storage, `s3://${bucket}/checkpoints`, f.plan.job)).map((c) => [c.id, c.complete])).toEqual([[1, true]]);
    expect((await f.store.require(f.plan.job)).version).toBe(completed.version);
    expect((await executionEnded(executionArn)).status).toBe('SUCCEEDED');
  });

  it('completes a checkpoint exactly once when two gateways deliver every ack at once; a replayed manifest write is refused', async () => {
    const f = await fixture('racing', {}, 3);
    const executionArn = await f.start(1);
    await takeEnvelopes(f.sourceQueueUrl, 3);
    const other = f.otherGateway();

    // When two gateways (own clients, own stores) each deliver every subtask's ack, all at once
    const acks = allAcks(f.plan, 1, (task) => (task.startsWith('count:') ? [{ sink: 'collect', collector: f.plan.job, id: `chk1-${task}`, values: [task] }] : []));
    const results: AckResult[][] = await Promise.all(acks.map((a) => Promise.all([f.gateway.receiveAcknowledge(a), other.receiveAcknowledge(a)])));

    // Then each ack was accepted once; the other delivery was a duplicate, or discarded if the checkpoint had completed
    for (const pair of results) {
      expect(pair.filter((r) => r === 'accepted')).toHaveLength(1);
      expect(pair.filter((r) => r !== 'accepted').every((r) => r === 'duplicate' || r === 'discarded')).toBe(true);
    }
    const row = await f.store.require(f.plan.job);
    expect(row.state.counts).toMatchObject({ completed: 1, failed: 0 });
    expect(row.state.history.filter((h) => h.id === 1)).toHaveLength(1);
    expect((await executionEnded(executionArn)).status).toBe('SUCCEEDED');
    expect([...f.sink.committed].sort()).toEqual(['count:0', 'count:1', 'count:2']);

    // When a zombie replays the manifest write of the step that had every ack (as if it had woken up late)
    const metadata = join(f.dir(1), Layout.METADATA);
    const written = await f.storage.get(metadata);
    const finalAck = f.effects.steps.find((s) => s.step.effects.some((e) => e.type === 'writeManifest'))!;
    expect(finalAck).toBeDefined();
    const zombieClients = awsClients();
    const puts: { ifNoneMatch?: string; status?: number }[] = [];
    zombieClients.s3.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName !== 'PutObjectCommand') return next(args);
        const entry: { ifNoneMatch?: string; status?: number } = { ifNoneMatch: (args.input as { IfNoneMatch?: string }).IfNoneMatch };
        puts.push(entry);
        try {
          return await next(args);
        } catch (e) {
          entry.status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
          throw e;
        }
      },
      { step: 'initialize', name: 'floeZombieRecorder' },
    );
    const zombie = new CoordinatorHost({ clock: systemClock,
      plan: f.plan,
      store: new DynamoDbCoordinatorStore({ client: zombieClients.dynamodb, tableName, serializeLocalWrites: true }),
      storage: new S3CheckpointStorage({ client: zombieClients.s3 }),
      sender: new SqsQueueSender(zombieClients.sqs, () => f.sourceQueueUrl),
      log: () => {},
    });
    await zombie.run(finalAck);

    // Then its create-only PUT is refused, the manifest keeps its bytes, and the job row does not regress
    expect(puts).toEqual([{ ifNoneMatch: '*', status: 412 }]);
    expect(await f.storage.get(metadata)).toEqual(written);
    const after = await f.store.require(f.plan.job);
    expect(after.version).toBe(row.version);
    expect(after.state).toEqual(row.state);
    await expect(f.storage.putIfAbsent(metadata, new TextEncoder().encode('{}'))).rejects.toMatchObject({ code: ErrorCode.ManifestExists });
  });

  it('aborts a declined checkpoint without waiting for its timeout; a tolerated failure keeps the job running', async () => {
    const f = await fixture('declined', { tolerableFailures: 1 }, 2);
    const executionArn = await f.start(1);
    await takeEnvelopes(f.sourceQueueUrl, 2);

    // When a subtask declines
    expect(await f.gateway.receiveDecline(1, { vertex: 'count', subtask: 1 }, 'state backend unavailable')).toBe('accepted');

    // Then the execution fails at its next status check, the failure is counted, and the job keeps running
    const ended = await executionEnded(executionArn);
    expect(ended).toMatchObject({ status: 'FAILED', error: 'Floe.CheckpointAborted' });
    const row = await f.store.require(f.plan.job);
    expect(row.state).toMatchObject({ status: 'RUNNING', consecutiveFailures: 1, counts: { failed: 1 } });
    expect(row.state.history[0]!.failureReason).toContain('declined by count:1: state backend unavailable');
    expect(row.jobStatus?.status).toBe(JobStatus.Running);
    expect(await f.gateway.receiveDecline(1, { vertex: 'count', subtask: 0 }, 'late')).toBe('discarded');
  });

  it("fails the job over when a subtask of its generation reports a failed task, and ignores one of another generation (a zombie after a restart)", async () => {
    const f = await fixture('task-failed', {}, 2);
    const generation = (await f.store.require(f.plan.job)).runtime.generation;

    // When a step of an older generation reports a failure, nothing changes
    await f.gateway.failTask({ vertex: 'count', subtask: 1 }, 'poisoned record', generation - 1);
    expect((await f.store.require(f.plan.job)).state.status).toBe('RUNNING');

    // When one of the row's generation does, the job fails over, naming the task and the error
    await f.gateway.failTask({ vertex: 'count', subtask: 1 }, 'poisoned record', generation);
    const row = await f.store.require(f.plan.job);
    expect(row.state.status).toBe('FAILING');
    expect(row.jobStatus).toMatchObject({ status: JobStatus.Failing, detail: 'task count:1 failed: poisoned record' });
  });

  it('starts the final checkpoint and its execution once every source finished, and records the job FINISHED', async () => {
    const f = await fixture('finished', {}, 2);

    // When both source subtasks report the end of their input
    await Promise.all([0, 1].map((subtask) => f.gateway.sourceFinished({ vertex: 'events', subtask })));

    // Then the reducer starts checkpoint 1 with end-of-input barriers, and the effect starts its execution
    const ends = await takeEnvelopes(f.sourceQueueUrl, 2);
    for (const e of ends) expect(e).toMatchObject({ kind: 'end', seq: 1, barrier: { checkpointId: 1, location: f.dir(1) } });
    const { executions } = await clients.sfn.send(new ListExecutionsCommand({ stateMachineArn: f.stateMachineArn }));
    expect(executions?.map((e) => e.name)).toEqual([checkpointExecutionName(f.plan.job, 1)]);

    // When every subtask acks it
    await Promise.all(allAcks(f.plan, 1).map((a) => f.gateway.acknowledge(a)));

    // Then the job is finished, its execution succeeded, and the manifest marks the end of input
    const row = await f.store.require(f.plan.job);
    expect(row.state.status).toBe('FINISHED');
    expect(row.jobStatus).toMatchObject({ status: JobStatus.Finished, detail: f.dir(1) });
    expect((await loadManifest(f.storage, f.dir(1))).manifest.endOfInput).toBe(true);
    expect((await executionEnded(executions![0]!.executionArn!)).status).toBe('SUCCEEDED');
  });

  it('runs as the Lambda handler from its environment: the first tick starts the sources once and a periodic checkpoint with its execution', async () => {
    // Given a job module on disk and the environment FloeJob gives the coordinator function
    const name = `coord-lambda-${run}`;
    const moduleDir = joinPath(import.meta.dirname, '..', '..', '.floe', `coordinator-it-${run}`);
    await mkdir(moduleDir, { recursive: true });
    const jobModule = joinPath(moduleDir, 'job.ts');
    await writeFile(
      jobModule,
      [
        `import { Job } from '../../lib/api/job.js';`,
        `import { generator } from '../../lib/connectors/generator.js';`,
        `import { collectSink } from '../../lib/connectors/collect-sink.js';`,
        `export default (args: readonly string[]) => {`,
        `  const job = new Job(${JSON.stringify(name)}, { parallelism: Number(args[0]) });`,
        `  job.source(generator({ generate: (i) => ({ key: 'k' + (i % 5) }) }), { uid: 'events' }).keyBy((e) => e.key)`,
        `    .process({ processElement: (e, _ctx, out) => out.collect(e.key) }, { uid: 'count' }).sinkTo(collectSink<string>(${JSON.stringify(name)}), { uid: 'out' });`,
        `  return job;`,
        `};`,
      ].join('\n'),
    );
    const sourceQueueUrl = await createQueue(`floe-${name}-events`, true);
    const tasksQueueUrl = await createQueue(`floe-${name}-tasks`, false);
    const definition = coordinatorStateMachineDefinition({ job: name, tableName, tasksQueueUrl });
    const { stateMachineArn } = await clients.sfn.send(new CreateStateMachineCommand({ name: `floe-${name}`, definition: JSON.stringify(definition), roleArn: ROLE, type: 'STANDARD' }));
    const env = {
      FLOE_JOB_MODULE: jobModule,
      FLOE_JOB_ARGS: JSON.stringify(['2']),
      FLOE_JOB: name,
      FLOE_CHECKPOINT_OPTIONS: JSON.stringify(resolveCheckpointOptions({ interval: 1, dir: `s3://${bucket}/checkpoints` })),
      FLOE_SAVEPOINT_DIR: `s3://${bucket}/savepoints`,
      FLOE_COORDINATOR_TABLE: tableName,
      FLOE_STATE_MACHINE_ARN: stateMachineArn!,
      FLOE_VERTEX_QUEUE_URLS: JSON.stringify({ events: sourceQueueUrl }),
    };
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    try {
      const { handler } = await import('../../functions/coordinator.js');
      const record = (messageId: string, body: string) => ({
        messageId,
        receiptHandle: messageId,
        body,
        attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 'x', ApproximateFirstReceiveTimestamp: '0' },
        messageAttributes: {},
        md5OfBody: '',
        eventSource: 'aws:sqs' as const,
        eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:tasks',
        awsRegion: 'us-east-1',
      });

      // When the schedule's tick arrives (after the 1ms interval), with a malformed message beside it
      await sleep(5);
      const response = await handler({ Records: [record('tick-1', JSON.stringify({ v: 1, type: 'tick', job: name })), record('junk-1', '{"v":1,"type":"explode"}')] });

      // Then only the malformed message comes back, the job row exists, checkpoint 1 started, and its execution runs
      expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'junk-1' }] });
      const store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName });
      const row = await store.require(name);
      expect(row.state.pending.map((p) => [p.id, p.requestId])).toEqual([[1, undefined]]);
      expect(row.state.tasks).toEqual(['events:0', 'events:1', 'count:0', 'count:1']);
      // And the job started by itself: each source subtask got wake 0 of generation 1, and the row records when
      expect(row.runtime.sourcesStartedAt).toEqual(expect.any(Number));
      const wakes: WakeMessage[] = [];
      const barriers = await takeEnvelopes(sourceQueueUrl, 2, wakes);
      expect(barriers.map((e) => [e.to.subtask, e.seq, e.barrier?.checkpointId]).sort()).toEqual([
        [0, 1, 1],
        [1, 1, 1],
      ]);
      expect(wakes.map((w) => [w.gen, w.subtask, w.n]).sort()).toEqual([
        [1, 0, 0],
        [1, 1, 0],
      ]);
      const { executions } = await clients.sfn.send(new ListExecutionsCommand({ stateMachineArn }));
      expect(executions?.map((e) => e.name)).toEqual([checkpointExecutionName(name, 1)]);

      // When more ticks come (another container would build and initialize again): the sources are not started twice
      const again = await handler({ Records: [record('tick-2', JSON.stringify({ v: 1, type: 'tick', job: name }))] });
      expect(again).toEqual({ batchItemFailures: [] });
      expect((await store.require(name)).runtime.sourcesStartedAt).toBe(row.runtime.sourcesStartedAt);
      const more: WakeMessage[] = [];
      expect(await drainEnvelopes(sourceQueueUrl, more)).toEqual([]);
      expect(more).toEqual([]);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      await rm(moduleDir, { recursive: true, force: true });
    }
  });
});
