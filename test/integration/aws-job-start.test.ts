/**
 * `startDeployedJob` (floe start) over moto, with the coordinator's tick called directly: what it refuses before
 * writing anything, how it ends a failing generation, and how the coordinator starts (or refuses to start) the
 * generation it prepared. The full restart with output checked against an oracle is test/e2e/cli-stack-start.test.ts.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { cancelJob } from '../../lib/coordination/cancel.js';
import { JobStatus, StartPhase } from '../../lib/core/coordinator/job-row.js';
import { DynamoDbCoordinatorStore } from '../../lib/adapters/aws/dynamodb-coordinator-store.js';
import { CoordinatorHost, TriggerRefusedError } from '../../lib/coordination/host.js';
import { S3CheckpointStorage } from '../../lib/adapters/aws/s3-checkpoint-storage.js';
import { SqsQueueSender } from '../../lib/adapters/aws/sqs-queue-sender.js';
import { provisionEmulatorJob } from '../../lib/hosts/emulator/provision.js';
import { startDeployedJob, type StartFrom } from '../../lib/hosts/lambda/job-start.js';
import { SourceChains } from '../../lib/hosts/lambda/source-chains.js';
import type { FloeStackOutputs } from '../../lib/hosts/lambda/stack-outputs.js';
import { ErrorCode } from '../../lib/core/errors.js';
import { MANIFEST_FORMAT_VERSION, type Manifest } from '../../lib/core/manifest/model.js';
import { ManifestSerializer } from '../../lib/core/manifest/serializer.js';
import { resolveCheckpointOptions } from '../../lib/core/options.js';
import { loadJob } from '../../lib/hosts/load-job.js';
import { keyGroupRange } from '../../lib/graph/key-groups.js';
import { buildPlan, type PhysicalPlan } from '../../lib/graph/plan.js';
import type { Clock } from '../../lib/ports/index.js';
import { REPO_ROOT } from '../support/floe-process.js';
import { deployedPlanOf, RUN_REFRESH_MS, settleMsOf } from '../../lib/coordination/generation.js';
import { systemClock } from '../../lib/adapters/local/system-clock.js';

const clients = awsClients();
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'floe-job-start-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function wordCountPlan(parallelism: number): Promise<PhysicalPlan> {
  const job = await loadJob(join(REPO_ROOT, 'examples/wordcount.ts'), ['--input', work, '--output', join(work, 'out'), '--parallelism', String(parallelism)]);
  return buildPlan(job);
}

/** Word count "deployed" at parallelism 2 (its row created as the coordinator function creates it), without functions running. */
/** Counts the calls of the job's sink cleanup (each delayed by `delayMs`, so that overlapping ticks overlap in it). */
function countCleanups(plan: PhysicalPlan, delayMs = 0) {
  const sink = plan.vertices.flatMap((v) => v.operators).find((o) => o.node.spec.kind === 'sink')!;
  const connector = (sink.node.spec as unknown as { connector: unknown }).connector as { cleanup: (uid: string, keepRunId?: string) => Promise<void> };
  const original = connector.cleanup.bind(connector);
  const cleanups = { count: 0 };
  connector.cleanup = async (uid, keepRunId) => {
    cleanups.count++;
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    return original(uid, keepRunId);
  };
  return { sink, cleanups };
}

async function deployed(functionTimeoutMs?: number) {
  const plan = await wordCountPlan(2);
  const checkpoint = resolveCheckpointOptions({ interval: '1h' });
  const resources = await provisionEmulatorJob({ plan, clients, checkpoint, namespace: `start-${randomUUID().slice(0, 8)}` });
  const options = { ...checkpoint, dir: resources.checkpointRoot };
  // Every writer of the row is in this process: serialize its conditional writes, which moto does not make atomic (as emulator mode does).
  const store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: resources.coordinatorTable, serializeLocalWrites: true });
  /** A coordinator of the job, as another container runs it; `clock` for one whose ticks find a checkpoint due. */
  const coordinator = (clock?: Clock) =>
    new CoordinatorHost({
      plan,
      store,
      clock: clock ?? systemClock,
      storage: new S3CheckpointStorage({ client: clients.s3 }),
      sender: new SqsQueueSender(clients.sqs, (v) => resources.queueUrls[v]!),
      sources: new SourceChains({ plan, queueUrls: resources.queueUrls, sqs: clients.sqs }),
      log: () => {},
    });
  const tasks = coordinator();
  await tasks.initialize({ options, jobId: randomBytes(16).toString('hex'), savepointDir: resources.savepointRoot, ...(functionTimeoutMs === undefined ? {} : { functionTimeoutMs }) });
  const outputs: FloeStackOutputs = {
    jobName: plan.job,
    coordinatorTable: resources.coordinatorTable,
    stateTable: resources.stateTable,
    stateMachineArn: resources.stateMachineArn,
    checkpointBucket: resources.bucket,
  };
  const start = (from: StartFrom) => startDeployedJob({ outputs, clients, from, settleMs: 0, waitMs: 0 });
  return { plan, resources, options, outputs, store, tasks, coordinator, start };
}

describe('floe start against the job row (moto)', () => {
  it('refuses, writing nothing: no checkpoint for latest, and a manifest the deployed plan cannot take, with every problem', async () => {
    const d = await deployed();
    const job = d.plan.job;
    await cancelJob(d.store, job, Date.now());
    const before = await d.store.require(job);

    await expect(d.start({ kind: 'checkpoint', path: 'latest' })).rejects.toMatchObject({
      code: ErrorCode.CheckpointNotFound,
      message: expect.stringMatching(/has no completed checkpoint under s3:\/\/.*--from-savepoint.*--empty-state/),
    });

    // A savepoint of another job: state of an operator the plan lacks, and keyed state at another max parallelism.
    const keyGroups = keyGroupRange(0, 1, 64);
    const subtask = (uid: string) => ({
      subtask: 0,
      keyGroups,
      keyedState: [{ path: `state/${uid}.jsonl`, kind: 'full' as const, size: 1, entries: 1, keyGroups }],
      operatorState: [],
      pendingCommits: [],
      stats: { ackTimestamp: 0, alignmentMs: 0, syncMs: 0, asyncMs: 0, startDelayMs: 0, stateSize: 0, fullSize: 0 },
    });
    const manifest: Manifest = {
      formatVersion: MANIFEST_FORMAT_VERSION,
      job,
      jobId: 'other',
      graphFingerprint: 'ffff0000',
      checkpointId: 3,
      kind: 'savepoint',
      format: 'canonical',
      generation: 1,
      triggeredAt: 0,
      completedAt: 1,
      maxParallelism: 64,
      endOfInput: false,
      operators: ['gone', 'count'].map((uid) => ({ uid, name: uid, parallelism: 1, stateful: true, subtasks: [subtask(uid)] })),
    };
    await clients.s3.send(new PutObjectCommand({ Bucket: d.resources.bucket, Key: 'other/savepoint-3/_metadata', Body: ManifestSerializer.serialize(manifest) }));
    // Its state files exist: what is wrong with it is only what the plan cannot take.
    for (const uid of ['gone', 'count']) await clients.s3.send(new PutObjectCommand({ Bucket: d.resources.bucket, Key: `other/savepoint-3/state/${uid}.jsonl`, Body: '\n' }));
    const refused = d.start({ kind: 'savepoint', path: `s3://${d.resources.bucket}/other/savepoint-3` });
    await expect(refused).rejects.toMatchObject({ code: ErrorCode.IncompatibleRestore });
    const message = ((await refused.catch((e: Error) => e)) as Error).message;
    expect(message).toMatch(/state for operator\(s\) 'gone' that the job no longer has/);
    expect(message).toMatch(/maxParallelism changed from 64 to 128, but operator\(s\) 'count'/);

    const after = await d.store.require(job);
    expect(after.version).toBe(before.version);
    expect(after.runtime).toEqual(before.runtime);
  }, 60_000);

  it('cancels a failing generation first, starts the next with empty state, and the tick starts its sources only once it is ready', async () => {
    const d = await deployed();
    const job = d.plan.job;
    await d.tasks.tick();
    expect((await d.store.require(job)).runtime.sourcesStartedAt).toBeDefined();
    // Given generation 1 failing (no restart supervisor runs on AWS)
    await d.store.setJobStatus(job, { status: JobStatus.Failing, detail: 'boom', at: Date.now() });

    // When it is started with empty state
    const outcome = await d.start({ kind: 'empty' });

    // Then generation 2 is ready, RUNNING, laid out for the plan, but its sources wait for the coordinator
    expect(outcome).toMatchObject({ generation: 2, sourcesStarted: false, notes: [] });
    const ready = await d.store.require(job);
    expect(ready.runtime).toMatchObject({ generation: 2, start: { phase: StartPhase.Ready, generation: 2 } });
    expect(ready.runtime.sourcesStartedAt).toBeUndefined();
    expect(ready.jobStatus?.status).toBe(JobStatus.Running);
    expect(ready.state.status).toBe('RUNNING');
    expect(ready.state.tasks).toHaveLength(5);
    expect(ready.state.counts.restored).toBe(0);
    // And a second start while it is about to run is refused
    await expect(d.start({ kind: 'empty' })).rejects.toThrow(/generation 2 is still RUNNING/);

    // When the coordinator ticks: the sources start and the start is done
    await d.tasks.tick();
    const running = await d.store.require(job);
    expect(running.runtime.sourcesStartedAt).toBeDefined();
    expect(running.runtime.start).toBeUndefined();
  }, 60_000);

  it('fails a generation laid out for another plan than the coordinator runs, instead of starting it', async () => {
    const d = await deployed();
    const job = d.plan.job;
    await cancelJob(d.store, job, Date.now());
    // Given a row whose recorded plan is not the one the coordinator runs (a redeploy that has not reached it yet)
    const other = deployedPlanOf(await wordCountPlan(3), d.options, d.resources.savepointRoot);
    await d.store.updateRuntime(job, (r) => ({ ...r.runtime, deployment: other }), Date.now());

    await d.start({ kind: 'empty' });
    await d.tasks.tick();

    const row = await d.store.require(job);
    expect(row.runtime.sourcesStartedAt).toBeUndefined();
    expect(row.jobStatus?.status).toBe(JobStatus.Failing);
    expect(row.jobStatus?.detail).toMatch(/generation 2 was started for subtasks .*count:2.*but the deployed plan has .*run `floe start` again/);
  }, 60_000);
  it('prepares a started generation once however many ticks come at once, sparing its own output, and triggers no checkpoint until its sources started', async () => {
    const d = await deployed();
    const job = d.plan.job;
    await cancelJob(d.store, job, Date.now());
    await d.start({ kind: 'empty' });
    const ready = await d.store.require(job);
    // Given the sink's cleanup counted (and slow, so the ticks overlap), a stale in-progress file of an old run and
    // one of the new run (written once its sources run)
    const { sink, cleanups } = countCleanups(d.plan, 300);
    const out = join(work, 'out');
    await mkdir(out, { recursive: true });
    const stale = `.inprogress-${sink.uid}-0-oldrun-0`;
    const live = `.inprogress-${sink.uid}-0-${ready.runtime.jobId}-0`;
    await writeFile(join(out, stale), 'old\n');
    await writeFile(join(out, live), 'new\n');
    // And coordinators whose clock is past the checkpoint interval, so that their ticks would trigger a checkpoint
    const late = { now: () => Date.now() + 2 * 3_600_000 };

    // When a savepoint is asked for while the generation is being started, it is refused
    const next = ready.state.nextCheckpointId;
    await expect(d.coordinator(late).trigger({ checkpointId: next, request: { kind: 'savepoint' } }, 1)).rejects.toThrow(TriggerRefusedError);
    // And when three ticks come at once (the schedule's, floe start's, a duplicate)
    // (All on the one late clock: a claim is taken over when it is older than the takeover time by the claimant's
    // clock, so ticks two hours apart would take each other's claims over, as a claim abandoned that long ago is.)
    await Promise.all([d.coordinator(late).tick(), d.coordinator(late).tick(), d.coordinator(late).tick()]);

    // Then the generation was prepared once, its sources started, and no checkpoint was triggered meanwhile
    expect(cleanups.count).toBe(1);
    const running = await d.store.require(job);
    expect(running.runtime.sourcesStartedAt).toBeDefined();
    expect(running.runtime.start).toBeUndefined();
    expect(running.state.pending).toEqual([]);
    expect(running.state.nextCheckpointId).toBe(next);
    // And the cleanup removed the old run's in-progress file only
    const names = await readdir(out);
    expect(names).not.toContain(stale);
    expect(names).toContain(live);

    // When a late tick comes after the start, it triggers the due checkpoint and prepares nothing again
    await d.coordinator(late).tick();
    expect((await d.store.require(job)).state.pending.map((p) => p.id)).toEqual([next]);
    expect(cleanups.count).toBe(1);
  }, 60_000);

  it('starts the sources of a prepared generation without preparing it again (a tick that failed after writing prepared)', async () => {
    const d = await deployed();
    const job = d.plan.job;
    await cancelJob(d.store, job, Date.now());
    await d.start({ kind: 'empty' });
    await d.store.updateRuntime(job, (r) => ({ ...r.runtime, start: { ...r.runtime.start!, phase: StartPhase.Prepared } }), Date.now());
    const { cleanups } = countCleanups(d.plan);

    await d.tasks.tick();

    const running = await d.store.require(job);
    expect(running.runtime.sourcesStartedAt).toBeDefined();
    expect(running.runtime.start).toBeUndefined();
    expect(cleanups.count).toBe(0);
  }, 60_000);

  it('fails a generation started for another plan fingerprint than the coordinator runs, even with the same subtasks', async () => {
    const d = await deployed();
    const job = d.plan.job;
    await cancelJob(d.store, job, Date.now());
    await d.start({ kind: 'empty' });
    // Given floe start laid it out for a plan of other operators at the same parallelism
    await d.store.updateRuntime(
      job,
      (r) => ({ ...r.runtime, start: { ...r.runtime.start!, plan: { ...r.runtime.start!.plan!, fingerprint: 'ffff0000', uids: ['gone'] } } }),
      Date.now(),
    );

    await d.tasks.tick();

    const row = await d.store.require(job);
    expect(row.runtime.sourcesStartedAt).toBeUndefined();
    expect(row.jobStatus?.status).toBe(JobStatus.Failing);
    expect(row.jobStatus?.detail).toMatch(/plan fingerprint ffff0000, but the deployed plan's is .*operators gone, but the deployed plan has .*committed-lines/);
  }, 60_000);
  it('waits out the functions\' timeout recorded by the coordinator after fencing the old generation, and says so', async () => {
    // Given functions deployed with a 2 s timeout (the coordinator records it in the deployed plan)
    const d = await deployed(2000);
    const job = d.plan.job;
    expect((await d.store.require(job)).runtime.deployment?.functionTimeoutMs).toBe(2000);
    await cancelJob(d.store, job, Date.now());

    // When the job is started with the default wait
    const lines: string[] = [];
    const began = Date.now();
    await startDeployedJob({ outputs: d.outputs, clients, from: { kind: 'empty' }, waitMs: 0, log: (l) => lines.push(l) });

    // Then it waited the timeout plus the handlers' reread interval and a second before touching the state
    expect(settleMsOf({ functionTimeoutMs: 2000 })).toBe(2000 + RUN_REFRESH_MS + 1000);
    expect(settleMsOf({})).toBe(RUN_REFRESH_MS + 1000);
    expect(Date.now() - began).toBeGreaterThanOrEqual(2000 + RUN_REFRESH_MS + 1000);
    expect(lines.join('\n')).toMatch(/waiting 8 s for the functions to leave generation 1 \(a step in flight may run up to the functions' timeout of 2 s/);
  }, 60_000);
});
