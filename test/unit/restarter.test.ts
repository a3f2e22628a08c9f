import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Job } from '../../lib/api/job.js';
import { newCoordinatorRow, settleMsOf } from '../../lib/coordination/generation.js';
import { RESTORE_TAKEOVER_MS, Restarter } from '../../lib/coordination/restarter.js';
import { cancelJob } from '../../lib/coordination/cancel.js';
import { collectSink } from '../../lib/connectors/collect-sink.js';
import { generator } from '../../lib/connectors/generator.js';
import { InMemoryCoordinatorStore } from '../../lib/adapters/local/in-memory-coordinator-store.js';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { JobStatus, StartPhase, type CoordinatorRow } from '../../lib/core/coordinator/job-row.js';
import { resolveCheckpointOptions, resolveRestartOptions, type RestartOptions } from '../../lib/core/options.js';
import { buildPlan, type PhysicalPlan } from '../../lib/graph/plan.js';
import type { StateStore } from '../../lib/ports/index.js';

const T0 = 1_700_000_000_000;
const JOB = 'restarter';

function aPlan(): PhysicalPlan {
  const job = new Job(JOB, { parallelism: 2 });
  job
    .source(generator({ generate: (i) => ({ key: `k${i % 3}` }) }), { uid: 'events' })
    .keyBy((e) => e.key)
    .process({ processElement: (e, _ctx, out) => out.collect(e.key) }, { uid: 'count' })
    .sinkTo(collectSink<string>('restarter-test'), { uid: 'out' });
  return buildPlan(job);
}

/** A state store that counts how often it was cleared (a restart from empty state writes nothing else). */
function countingState(): StateStore & { clears: number } {
  const s = {
    clears: 0,
    async clear() {
      s.clears++;
    },
    forSubtask() {
      throw new Error('a restart from empty state writes no subtask state');
    },
  };
  return s as unknown as StateStore & { clears: number };
}

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** What the host does once a ready generation's sources started: the start is over. */
async function sourcesStarted(store: InMemoryCoordinatorStore, at: number): Promise<CoordinatorRow> {
  return store.updateRuntime(
    JOB,
    (r) => {
      const { start: _done, ...runtime } = r.runtime;
      return { ...runtime, sourcesStartedAt: at };
    },
    at,
  );
}

/** A FAILING job row in an in-memory store, and a restarter over it with a clock the test moves. */
async function aFailingJob(restart: RestartOptions, options: { from?: string } = {}) {
  const plan = aPlan();
  const store = new InMemoryCoordinatorStore();
  const clock = { t: T0, now: () => clock.t };
  const state = countingState();
  const root = await mkdtemp(join(tmpdir(), 'floe-restarter-'));
  dirs.push(root);
  const row = newCoordinatorRow({ plan, options: resolveCheckpointOptions({ dir: join(root, 'chk') }), jobId: 'run-1', savepointDir: join(root, 'sp'), now: T0 });
  await store.create({ ...row, runtime: { ...row.runtime, ...(options.from ? { origin: options.from } : {}) } });
  await store.setJobStatus(JOB, { status: JobStatus.Failing, detail: 'task count:0 failed: boom', at: T0 });
  const requested: number[] = [];
  const restarter = new Restarter({
    plan,
    store,
    storage: new FileCheckpointStorage(),
    state,
    restart: resolveRestartOptions(restart),
    clock,
    log: () => {},
    recordStatus: (status, detail) => store.setJobStatus(JOB, { status, detail, at: clock.now() }),
    ticks: { request: async (ms) => void requested.push(ms) },
    random: () => 0.5,
  });
  const row0 = await store.require(JOB);
  return { plan, store, clock, state, restarter, requested, row0, root };
}

const settle = settleMsOf({});

describe('Restarter: a failed job restarts by its restart strategy', () => {
  it('fences the next generation once, however many ticks decide at once, and asks for the tick that restores it', async () => {
    const { store, restarter, requested, row0 } = await aFailingJob({ type: 'fixed-delay', attempts: 2, delay: 100 });

    const rows = await Promise.all([restarter.supervise(row0), restarter.supervise(row0), restarter.supervise(row0)]);

    const row = await store.require(JOB);
    expect(row.runtime.generation).toBe(2);
    expect(row.runtime.start).toMatchObject({ phase: StartPhase.Restoring, generation: 2, at: T0, restoreAt: T0 + Math.max(100, settle) });
    expect(row.runtime.restarts?.attempts).toBe(1);
    expect(row.jobStatus?.status).toBe(JobStatus.Failing);
    expect(requested).toEqual([Math.max(100, settle)]);
    for (const r of rows) expect(r.runtime.generation).toBe(2);
  });

  it('writes the restored state only once the failed generation has settled, then makes the generation ready and RUNNING, keeping the run', async () => {
    const { store, clock, state, restarter, row0 } = await aFailingJob({ type: 'fixed-delay', attempts: 2, delay: 100 });
    const fenced = await restarter.supervise(row0);

    // Before restoreAt nothing is written
    clock.t = fenced.runtime.start!.restoreAt! - 1;
    expect((await restarter.supervise(fenced)).runtime.start?.phase).toBe(StartPhase.Restoring);
    expect(state.clears).toBe(0);

    // At restoreAt two ticks at once write it once
    clock.t = fenced.runtime.start!.restoreAt!;
    await Promise.all([restarter.supervise(fenced), restarter.supervise(fenced)]);
    expect(state.clears).toBe(1);
    const ready = await store.require(JOB);
    expect(ready.jobStatus?.status).toBe(JobStatus.Running);
    expect(ready.runtime).toMatchObject({ generation: 2, jobId: 'run-1', restarts: { attempts: 1 }, start: { phase: StartPhase.Ready, generation: 2 } });
    expect(ready.state.status).toBe('RUNNING');
    expect(ready.state.nextCheckpointId).toBeGreaterThanOrEqual(row0.state.nextCheckpointId);
  });

  it('fails the job for good when the strategy gives up, naming its reason; FAILED is final', async () => {
    const { store, clock, restarter, row0 } = await aFailingJob({ type: 'fixed-delay', attempts: 1, delay: 0 });
    // The first failure restarts…
    const fenced = await restarter.supervise(row0);
    clock.t = fenced.runtime.start!.restoreAt!;
    await restarter.supervise(fenced);
    await sourcesStarted(store, clock.t);
    // …the second does not
    await store.setJobStatus(JOB, { status: JobStatus.Failing, detail: 'task count:1 failed: boom again', at: clock.t });
    const failed = await restarter.supervise(await store.require(JOB));
    expect(failed.jobStatus).toMatchObject({ status: JobStatus.Failed, detail: 'task count:1 failed: boom again (fixed-delay restart strategy used all 1 attempts)' });
    expect(failed.runtime.generation).toBe(2);
    await store.setJobStatus(JOB, { status: JobStatus.Running, at: clock.t });
    expect((await store.require(JOB)).jobStatus?.status).toBe(JobStatus.Failed);
  });

  it('keeps the exponential strategy\'s backoff in the row across restarts', async () => {
    const { store, clock, restarter, row0 } = await aFailingJob({ type: 'exponential-delay', initialBackoff: '10s', maxBackoff: '1m', backoffMultiplier: 2, jitterFactor: 0, attempts: 5 });
    let row: CoordinatorRow = await restarter.supervise(row0);
    const delays = [row.runtime.start!.restoreAt! - clock.t];
    for (let i = 0; i < 2; i++) {
      clock.t = row.runtime.start!.restoreAt!;
      await restarter.supervise(row);
      await sourcesStarted(store, clock.t);
      await store.setJobStatus(JOB, { status: JobStatus.Failing, detail: 'boom', at: clock.t });
      row = await restarter.supervise(await store.require(JOB));
      delays.push(row.runtime.start!.restoreAt! - clock.t);
    }
    expect(delays).toEqual([10_000, 20_000, 40_000]);
    expect(row.runtime.restarts).toMatchObject({ attempts: 3, currentBackoff: 40_000 });
  });

  it('restarts from what the run started from when it completed no checkpoint, and fails the job naming a snapshot that cannot be read', async () => {
    const { store, clock, root, restarter } = await aFailingJob({ type: 'fixed-delay', attempts: 3, delay: 0 }, { from: 'placeholder' });
    // The run started from a savepoint whose manifest is now garbage
    const savepoint = join(root, 'sp', 'savepoint-1');
    await mkdir(savepoint, { recursive: true });
    await writeFile(join(savepoint, '_metadata'), 'garbage{{{');
    const row = await store.require(JOB);
    await store.updateRuntime(JOB, (r) => ({ ...r.runtime, origin: savepoint }), clock.t);

    const fenced = await restarter.supervise({ ...row, runtime: { ...row.runtime, origin: savepoint }, version: row.version + 1 });
    expect(fenced.runtime.start?.from).toBe(savepoint);
    clock.t = fenced.runtime.start!.restoreAt!;
    const failed = await restarter.supervise(fenced);

    expect(failed.jobStatus?.status).toBe(JobStatus.Failed);
    expect(failed.jobStatus?.detail).toContain('restarting as generation 2 failed');
    expect(failed.jobStatus?.detail).toContain(savepoint);
  });

  it('takes over a claim to restore whose invocation died', async () => {
    const { store, clock, state, restarter, row0 } = await aFailingJob({ type: 'fixed-delay', attempts: 2, delay: 0 });
    const fenced = await restarter.supervise(row0);
    // An invocation claimed the restore and died
    const claimedAt = fenced.runtime.start!.restoreAt!;
    await store.updateRuntime(JOB, (r) => ({ ...r.runtime, start: { ...r.runtime.start!, restoringAt: claimedAt } }), claimedAt);
    clock.t = claimedAt + 1000;
    await restarter.supervise(await store.require(JOB));
    expect(state.clears).toBe(0);
    clock.t = claimedAt + RESTORE_TAKEOVER_MS;
    const ready = await restarter.supervise(await store.require(JOB));
    expect(state.clears).toBe(1);
    expect(ready.runtime.start?.phase).toBe(StartPhase.Ready);
  });

  it('drops a pending restart when the job is cancelled while it waits, and never writes state', async () => {
    const { store, clock, state, restarter, row0 } = await aFailingJob({ type: 'fixed-delay', attempts: 2, delay: 0 });
    const fenced = await restarter.supervise(row0);
    // floe cancel while the restart waits for its settle time
    await cancelJob(store, JOB, clock.t + 1);
    clock.t = fenced.runtime.start!.restoreAt!;
    const row = await restarter.supervise(await store.require(JOB));
    expect(state.clears).toBe(0);
    expect(row.runtime.start).toBeUndefined();
    expect(row.jobStatus?.status).toBe(JobStatus.Canceled);
    expect(row.state.status).toBe('CANCELED');
    // and a later tick does nothing more
    expect((await restarter.supervise(row)).version).toBe(row.version);
  });

  it('restarts a job whose reducer failed over even when its FAILING status write was lost', async () => {
    const { store, restarter } = await aFailingJob({ type: 'fixed-delay', attempts: 2, delay: 0 });
    // The reducer says FAILING (a task failed), the status attribute still RUNNING
    await store.replaceGeneration({ ...(await store.require(JOB)), state: { ...(await store.require(JOB)).state, status: 'FAILING' } }, (await store.require(JOB)).version, T0);
    const row = await store.require(JOB);
    expect(row.jobStatus?.status).toBe(JobStatus.Running);
    const fenced = await restarter.supervise(row);
    expect(fenced.runtime.start).toMatchObject({ phase: StartPhase.Restoring, generation: 2 });
  });

  it('names the reducer\'s reason when it fails a job whose FAILING status write has not landed', async () => {
    const { store, restarter } = await aFailingJob({ type: 'none' });
    const current = await store.require(JOB);
    await store.replaceGeneration({ ...current, state: { ...current.state, status: 'FAILING', failure: 'task count:1 failed: boom in the reducer' } }, current.version, T0);
    await store.setJobStatus(JOB, { status: JobStatus.Running, at: T0 });
    const failed = await restarter.supervise(await store.require(JOB));
    expect(failed.jobStatus).toMatchObject({ status: JobStatus.Failed, detail: expect.stringMatching(/^task count:1 failed: boom in the reducer \(/) });
  });

  it('restarts from the newest checkpoint of this run, not from one an earlier run left in the history', async () => {
    const { store, restarter, row0 } = await aFailingJob({ type: 'fixed-delay', attempts: 2, delay: 0 }, { from: '/savepoints/savepoint-9' });
    // An earlier run's completed checkpoint is in the history; this run completed none
    const old = { id: 7, kind: 'checkpoint' as const, status: 'COMPLETED' as const, triggeredAt: 1, finishedAt: 2, acknowledged: 4, total: 4, externalPath: '/chk/chk-7', stateSize: 0, fullSize: 0, acks: {} };
    const withHistory = { ...row0, state: { ...row0.state, history: [old] } };
    await store.replaceGeneration(withHistory, row0.version, T0);
    await store.setJobStatus(JOB, { status: JobStatus.Failing, detail: 'boom', at: T0 });
    const fenced = await restarter.supervise(await store.require(JOB));
    expect(fenced.runtime.start?.from).toBe('/savepoints/savepoint-9');
  });
});
