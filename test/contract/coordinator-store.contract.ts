import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Job } from '../../lib/api/job.js';
import { newCoordinatorRow } from '../../lib/coordination/generation.js';
import { collectSink, resetCollector } from '../../lib/connectors/collect-sink.js';
import { generator } from '../../lib/connectors/generator.js';
import { JobStatus, type CheckpointStatusChange, type CoordinatorRow, type RowTransition } from '../../lib/core/coordinator/job-row.js';
import { CheckpointStatus, type CoordinatorEvent } from '../../lib/core/coordinator/types.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import type { SubtaskSnapshot } from '../../lib/core/manifest/model.js';
import { resolveCheckpointOptions } from '../../lib/core/options.js';
import { buildPlan, type PhysicalPlan } from '../../lib/graph/plan.js';
import { CoordinatorConflictError, type CoordinatorStore } from '../../lib/ports/coordinator-store.js';

// The behaviour every CoordinatorStore must share, run against the in-memory store and the DynamoDB store on the
// emulator. The DynamoDB store is the reference: its conditional writes are what the protocol of
// lib/ports/coordinator-store.ts was written against. Every test works on a job name of its own, so a factory may
// hand out stores over one shared table.

/** Makes a store; each call may return a new store over fresh (or shared, but unused by other jobs) storage. */
export type CoordinatorStoreFactory = () => CoordinatorStore | Promise<CoordinatorStore>;

const SINK = `coordinator-store-contract-${randomUUID()}`;
const T0 = 1_700_000_000_000;

/** `generator (p) → keyBy → process → collect sink`: tasks events:0..p-1 and count:0..p-1. */
function smallPlan(parallelism = 2): PhysicalPlan {
  const job = new Job('coordinator-store-contract', { parallelism });
  job
    .source(generator({ generate: (i) => ({ key: `k${i % 3}` }) }), { uid: 'events' })
    .keyBy((e) => e.key)
    .process({ processElement: (e, _ctx, out) => out.collect(e.key) }, { uid: 'count' })
    .sinkTo(collectSink<string>(SINK), { uid: 'out' });
  return buildPlan(job);
}

function emptySnapshot(subtask: number): SubtaskSnapshot {
  return { subtask, keyGroups: [0, 128], keyedState: [], operatorState: [], pendingCommits: [], stats: { ackTimestamp: 0, alignmentMs: 0, syncMs: 0, asyncMs: 0, startDelayMs: 0, stateSize: 0, fullSize: 0 } };
}

/** A new generation's row (version 0, not yet stored) for `job`, started at `now`. */
function newRow(plan: PhysicalPlan, job: string, now = T0, generation = 1): CoordinatorRow {
  const row = newCoordinatorRow({
    plan,
    options: resolveCheckpointOptions({ dir: 's3://bucket/ckpt', timeout: '10m' }),
    jobId: 'abcdef0123456789',
    savepointDir: 's3://bucket/savepoints',
    now,
    generation,
  });
  return { ...row, job };
}

const tick = (now: number): CoordinatorEvent => ({ type: 'tick', now });
const trigger = (now: number): CoordinatorEvent => ({ type: 'trigger', now, request: { requestId: `r-${now}`, kind: 'checkpoint' } });

/** Task `task`'s (`<vertex>:<subtask>`) ack of checkpoint `checkpointId` with empty state for each of its operators. */
function ackOf(plan: PhysicalPlan, task: string, checkpointId: number, now: number): CoordinatorEvent {
  const [vertex, subtask] = task.split(':') as [string, string];
  const v = plan.vertices.find((x) => x.id === vertex)!;
  const operators = Object.fromEntries(v.operators.map((op) => [op.uid, emptySnapshot(Number(subtask))]));
  return { type: 'ack', now, checkpointId, ack: { task, operators, ackTimestamp: now } };
}

/** Every task key of a plan. */
const tasksOf = (plan: PhysicalPlan): string[] => plan.vertices.flatMap((v) => Array.from({ length: v.parallelism }, (_, i) => `${v.id}:${i}`));

/** The error `promise` rejects with (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error('expected the call to reject, but it resolved');
}

export function describeCoordinatorStoreContract(name: string, makeStore: CoordinatorStoreFactory): void {
  describe(`CoordinatorStore contract: ${name}`, () => {
    const plan = smallPlan();
    let store: CoordinatorStore;
    let job: string;

    beforeEach(async () => {
      store = await makeStore();
      job = `contract-${randomUUID().slice(0, 12)}`;
    });

    afterEach(() => {
      vi.restoreAllMocks();
    });
    afterAll(() => resetCollector(SINK));

    /** Creates the job's row, then triggers checkpoint 1 (version 2). */
    async function createTriggered(): Promise<CoordinatorRow> {
      await store.create(newRow(plan, job));
      const { row } = await store.apply(job, trigger(T0 + 10));
      expect(row.version).toBe(2);
      return row;
    }

    // ---- create, load, require ----

    it('create stores the row at version 1 with jobStatus RUNNING', async () => {
      const created = await store.create({ ...newRow(plan, job), version: 7 });
      expect(created.version).toBe(1);
      expect(created.jobStatus).toEqual({ status: JobStatus.Running, at: T0 });
      const loaded = await store.load(job);
      expect(loaded).toEqual(created);
      expect(loaded?.state).toEqual(newRow(plan, job).state);
      expect(loaded?.runtime).toEqual(newRow(plan, job).runtime);
      expect(await store.require(job)).toEqual(created);
    });

    it('create of an existing job throws a CoordinatorConflictError carrying the existing row', async () => {
      const first = await store.create(newRow(plan, job));
      await store.apply(job, trigger(T0 + 10));
      const stored = await store.require(job);
      const e = await rejection(store.create(newRow(plan, job, T0 + 99, 2)));
      expect(e).toBeInstanceOf(CoordinatorConflictError);
      expect((e as CoordinatorConflictError).code).toBe(ErrorCode.CommitFenced);
      expect((e as CoordinatorConflictError).current).toEqual(stored);
      expect((e as CoordinatorConflictError).current?.version).toBe(first.version + 1);
      // The existing row is left as it was.
      expect(await store.load(job)).toEqual(stored);
    });

    it('load of an unknown job is undefined; require throws NOT_FOUND', async () => {
      expect(await store.load(job)).toBeUndefined();
      const e = await rejection(store.require(job));
      expect(e).toBeInstanceOf(FloeError);
      expect((e as FloeError).code).toBe(ErrorCode.NotFound);
    });

    it('apply and updateRuntime of an unknown job throw NOT_FOUND', async () => {
      expect(((await rejection(store.apply(job, tick(T0)))) as FloeError).code).toBe(ErrorCode.NotFound);
      expect(((await rejection(store.updateRuntime(job, (r) => r.runtime, T0))) as FloeError).code).toBe(ErrorCode.NotFound);
    });

    // ---- apply ----

    it('apply of an event that changes the row writes it at version + 1 and returns its effects', async () => {
      await store.create(newRow(plan, job));
      const writes = store.stats.writes;
      const applied = await store.apply(job, trigger(T0 + 10));
      expect(applied).toMatchObject({ written: true, refused: false });
      expect(applied.row.version).toBe(2);
      expect(applied.step.effects).toEqual([expect.objectContaining({ type: 'injectBarrier', checkpointId: 1, kind: 'checkpoint' })]);
      expect(applied.statusChanges).toEqual([{ checkpointId: 1, kind: 'checkpoint', status: CheckpointStatus.InProgress, at: T0 + 10 }]);
      expect(store.stats.writes).toBe(writes + 1);

      const loaded = await store.require(job);
      expect(loaded).toEqual(applied.row);
      expect(loaded.state.pending.map((p) => p.id)).toEqual([1]);
      expect(loaded.runtime.placements['1']).toMatchObject({ seq: 1 });
      expect(loaded.runtime.barrierSeq).toBe(1);
      expect(loaded.jobStatus?.status).toBe(JobStatus.Running);
    });

    it('apply of an idle tick right after creation writes nothing', async () => {
      const created = await store.create(newRow(plan, job));
      const writes = store.stats.writes;
      const applied = await store.apply(job, tick(T0));
      expect(applied).toMatchObject({ written: false, refused: false, statusChanges: [] });
      expect(applied.step.effects).toEqual([]);
      expect(applied.row).toEqual(created);
      expect(store.stats.writes).toBe(writes);
      expect((await store.require(job)).version).toBe(1);
    });

    it('apply of a duplicate ack writes nothing and answers duplicate', async () => {
      await createTriggered();
      const ack = ackOf(plan, 'events:0', 1, T0 + 20);
      const first = await store.apply(job, ack);
      expect(first).toMatchObject({ written: true, step: { result: 'accepted' } });
      expect(first.row.version).toBe(3);
      const writes = store.stats.writes;

      const again = await store.apply(job, { ...ack, now: T0 + 21 });
      expect(again).toMatchObject({ written: false, refused: false, step: { result: 'duplicate' } });
      expect(again.row).toEqual(first.row);
      expect(store.stats.writes).toBe(writes);
      expect((await store.require(job)).version).toBe(3);
    });

    it('concurrent applies of different acks all count in the stored row (lost writes are re-applied)', async () => {
      await createTriggered();
      const tasks = tasksOf(plan);
      const results = await Promise.all(tasks.map((t, i) => store.apply(job, ackOf(plan, t, 1, T0 + 20 + i))));

      expect(results.map((r) => [r.written, r.step.result])).toEqual(tasks.map(() => [true, 'accepted']));
      // Each write bumped the version once, whatever order they won in.
      expect(results.map((r) => r.row.version).sort((a, b) => a - b)).toEqual(tasks.map((_, i) => 3 + i));
      const stored = await store.require(job);
      expect(stored.version).toBe(2 + tasks.length);
      expect(Object.keys(stored.state.pending[0]!.acks).sort()).toEqual([...tasks].sort());
      expect(stored.state.pending[0]!.finalizing).toBe(true);
      // Exactly one writer saw the last ack and asks for the manifest.
      expect(results.flatMap((r) => r.step.effects).filter((e) => e.type === 'writeManifest')).toHaveLength(1);
      expect(store.stats.conflicts).toBeGreaterThanOrEqual(0);
    });

    it('a lost write is re-applied to the winner’s row: the winner’s change is kept', async () => {
      await createTriggered();
      // The first load answers the row as it was, then another writer's ack lands behind its back.
      const load = store.load.bind(store);
      let interfere = true;
      vi.spyOn(store, 'load').mockImplementation(async (j) => {
        const row = await load(j);
        if (interfere) {
          interfere = false;
          expect((await store.apply(j, ackOf(plan, 'count:0', 1, T0 + 20))).written).toBe(true);
        }
        return row;
      });
      const conflicts = store.stats.conflicts;

      const applied = await store.apply(job, ackOf(plan, 'events:0', 1, T0 + 21));
      expect(store.stats.conflicts).toBe(conflicts + 1);
      expect(applied).toMatchObject({ written: true, step: { result: 'accepted' } });
      expect(applied.row.version).toBe(4);
      const stored = await load(job);
      expect(stored).toEqual(applied.row);
      expect(Object.keys(stored!.state.pending[0]!.acks).sort()).toEqual(['count:0', 'events:0']);
    });

    // ---- applyAll ----

    it('applyAll of several acks does one write and returns each event’s own step', async () => {
      await createTriggered();
      const writes = store.stats.writes;
      const { applied, steps } = await store.applyAll(job, [ackOf(plan, 'events:0', 1, T0 + 20), ackOf(plan, 'count:1', 1, T0 + 21), ackOf(plan, 'events:0', 1, T0 + 22)]);
      expect(steps.map((s) => s.result)).toEqual(['accepted', 'accepted', 'duplicate']);
      expect(applied).toMatchObject({ written: true, refused: false });
      expect(applied.row.version).toBe(3);
      expect(store.stats.writes).toBe(writes + 1);
      const stored = await store.require(job);
      expect(stored).toEqual(applied.row);
      expect(Object.keys(stored.state.pending[0]!.acks).sort()).toEqual(['count:1', 'events:0']);
    });

    it('applyAll of events that change nothing writes nothing; of no events throws INVALID_OPTIONS', async () => {
      const created = await store.create(newRow(plan, job));
      const writes = store.stats.writes;
      const { applied, steps } = await store.applyAll(job, [tick(T0), tick(T0)]);
      expect(steps).toHaveLength(2);
      expect(applied).toMatchObject({ written: false, refused: false });
      expect(applied.row).toEqual(created);
      expect(store.stats.writes).toBe(writes);
      expect(((await rejection(store.applyAll(job, []))) as FloeError).code).toBe(ErrorCode.InvalidOptions);
    });

    // ---- accept guard ----

    it('apply refuses without writing when accept answers false', async () => {
      const created = await store.create(newRow(plan, job));
      const writes = store.stats.writes;
      const seen: RowTransition[] = [];
      const applied = await store.apply(job, trigger(T0 + 10), { accept: (t) => (seen.push(t), false) });
      expect(applied).toMatchObject({ written: false, refused: true, statusChanges: [] });
      expect(applied.row).toEqual(created);
      expect(seen).toHaveLength(1);
      expect(seen[0]!.changed).toBe(true);
      expect(store.stats.writes).toBe(writes);
      const stored = await store.require(job);
      expect(stored.version).toBe(1);
      expect(stored.state.pending).toEqual([]);

      // The same event, accepted, is written.
      expect(await store.apply(job, trigger(T0 + 10), { accept: () => true })).toMatchObject({ written: true, refused: false, row: { version: 2 } });
    });

    // ---- updateRuntime ----

    it('updateRuntime writes the new runtime at version + 1', async () => {
      await store.create(newRow(plan, job));
      const updated = await store.updateRuntime(job, (r) => ({ ...r.runtime, sourcesStartedAt: T0 + 5 }), T0 + 5);
      expect(updated.version).toBe(2);
      expect(updated.runtime.sourcesStartedAt).toBe(T0 + 5);
      const stored = await store.require(job);
      expect(stored).toEqual(updated);
      expect(stored.state).toEqual(newRow(plan, job).state);
    });

    it('updateRuntime re-applies its change to the winner’s row on a lost write', async () => {
      await store.create(newRow(plan, job));
      const load = store.load.bind(store);
      let interfere = true;
      vi.spyOn(store, 'load').mockImplementation(async (j) => {
        const row = await load(j);
        if (interfere) {
          interfere = false;
          await store.apply(j, trigger(T0 + 10));
        }
        return row;
      });
      const conflicts = store.stats.conflicts;
      const seenVersions: number[] = [];

      const updated = await store.updateRuntime(job, (r) => (seenVersions.push(r.version), { ...r.runtime, sourcesStartedAt: T0 + 11 }), T0 + 11);
      expect(seenVersions).toEqual([1, 2]);
      expect(store.stats.conflicts).toBe(conflicts + 1);
      expect(updated.version).toBe(3);
      const stored = await load(job);
      expect(stored).toEqual(updated);
      // Both the winner's trigger and this runtime change are in the row.
      expect(stored?.runtime.sourcesStartedAt).toBe(T0 + 11);
      expect(stored?.runtime.placements['1']).toBeDefined();
      expect(stored?.state.pending.map((p) => p.id)).toEqual([1]);
    });

    it('updateRuntime answers the stored row unchanged when the change answers undefined', async () => {
      await createTriggered();
      const stored = await store.require(job);
      const writes = store.stats.writes;
      const answered = await store.updateRuntime(job, () => undefined, T0 + 20);
      expect(answered).toEqual(stored);
      expect(store.stats.writes).toBe(writes);
      expect(await store.require(job)).toEqual(stored);
    });

    // ---- job status ----

    it('a replace keeps the stored jobStatus', async () => {
      await store.create(newRow(plan, job));
      await store.setJobStatus(job, { status: JobStatus.Failing, detail: 'task count:0 failed', at: T0 + 5 });
      const applied = await store.apply(job, trigger(T0 + 10));
      expect(applied.written).toBe(true);
      const failing = { status: JobStatus.Failing, detail: 'task count:0 failed', at: T0 + 5 };
      expect(applied.row.jobStatus).toEqual(failing);
      expect((await store.require(job)).jobStatus).toEqual(failing);

      const updated = await store.updateRuntime(job, (r) => ({ ...r.runtime, sourcesStartedAt: T0 + 12 }), T0 + 12);
      expect(updated.jobStatus).toEqual(failing);
      expect((await store.require(job)).jobStatus).toEqual(failing);
    });

    it('a replace keeps a jobStatus recorded after the writer loaded the row', async () => {
      await store.create(newRow(plan, job));
      // The writer loads a RUNNING row; the job status changes before its write lands (it does not bump the version).
      const load = store.load.bind(store);
      let interfere = true;
      vi.spyOn(store, 'load').mockImplementation(async (j) => {
        const row = await load(j);
        if (interfere) {
          interfere = false;
          await store.setJobStatus(j, { status: JobStatus.Canceled, at: T0 + 7 });
        }
        return row;
      });
      const applied = await store.apply(job, trigger(T0 + 10));
      expect(applied.written).toBe(true);
      expect(applied.row.jobStatus?.status).toBe(JobStatus.Running);
      expect(await load(job)).toMatchObject({ version: 2, jobStatus: { status: JobStatus.Canceled, at: T0 + 7 } });
    });

    it('setJobStatus records the status and leaves the version as it is', async () => {
      await store.create(newRow(plan, job));
      await store.setJobStatus(job, { status: JobStatus.Failing, detail: 'boom', at: T0 + 5 });
      expect(await store.require(job)).toMatchObject({ version: 1, jobStatus: { status: JobStatus.Failing, detail: 'boom', at: T0 + 5 } });
      // A record without detail drops the old one.
      await store.setJobStatus(job, { status: JobStatus.Running, at: T0 + 6 });
      expect((await store.require(job)).jobStatus).toEqual({ status: JobStatus.Running, at: T0 + 6 });
    });

    it.each([
      [JobStatus.Finished, JobStatus.Running],
      [JobStatus.Finished, JobStatus.Failing],
      [JobStatus.Canceled, JobStatus.Running],
      [JobStatus.Canceled, JobStatus.Failing],
      [JobStatus.Finished, JobStatus.Canceled],
    ])('setJobStatus %s is final: a later %s is ignored', async (final, later) => {
      await store.create(newRow(plan, job));
      await store.setJobStatus(job, { status: final, detail: 'the end', at: T0 + 5 });
      await store.setJobStatus(job, { status: later, at: T0 + 6 });
      expect((await store.require(job)).jobStatus).toEqual({ status: final, detail: 'the end', at: T0 + 5 });
      // Nor does a replace change it.
      await store.apply(job, trigger(T0 + 10));
      expect((await store.require(job)).jobStatus).toEqual({ status: final, detail: 'the end', at: T0 + 5 });
    });

    it('setJobStatus on a missing job throws NOT_FOUND', async () => {
      const e = await rejection(store.setJobStatus(job, { status: JobStatus.Failing, at: T0 }));
      expect(e).toBeInstanceOf(FloeError);
      expect((e as FloeError).code).toBe(ErrorCode.NotFound);
      expect(await store.load(job)).toBeUndefined();
    });

    // ---- replaceGeneration ----

    it('replaceGeneration at the stored version writes the new generation’s row with jobStatus RUNNING', async () => {
      const stored = await createTriggered();
      const next = newRow(plan, job, T0 + 100, 2);
      const replaced = await store.replaceGeneration(next, stored.version, T0 + 100);
      expect(replaced).toMatchObject({ version: stored.version + 1, jobStatus: { status: JobStatus.Running, at: T0 + 100 } });
      const loaded = await store.require(job);
      expect(loaded).toEqual(replaced);
      expect(loaded.runtime.generation).toBe(2);
      expect(loaded.runtime.placements).toEqual({});
      expect(loaded.state.pending).toEqual([]);
    });

    it.each([JobStatus.Canceled, JobStatus.Finished, JobStatus.Failing])('replaceGeneration takes a %s row back to RUNNING', async (status) => {
      await store.create(newRow(plan, job));
      await store.setJobStatus(job, { status, detail: 'before', at: T0 + 5 });
      const replaced = await store.replaceGeneration(newRow(plan, job, T0 + 100, 2), 1, T0 + 100);
      expect(replaced.jobStatus).toEqual({ status: JobStatus.Running, at: T0 + 100 });
      expect(await store.require(job)).toMatchObject({ version: 2, jobStatus: { status: JobStatus.Running, at: T0 + 100 } });
      expect((await store.require(job)).jobStatus?.detail).toBeUndefined();
    });

    it('replaceGeneration at a stale version throws a CoordinatorConflictError carrying the stored row', async () => {
      const stored = await createTriggered();
      const e = await rejection(store.replaceGeneration(newRow(plan, job, T0 + 100, 2), stored.version - 1, T0 + 100));
      expect(e).toBeInstanceOf(CoordinatorConflictError);
      expect((e as CoordinatorConflictError).current).toEqual(stored);
      expect(await store.require(job)).toEqual(stored);
    });

    // ---- remove ----

    it('remove at the stored version deletes the row', async () => {
      const stored = await createTriggered();
      await store.remove(stored);
      expect(await store.load(job)).toBeUndefined();
      // The job can start afresh.
      expect((await store.create(newRow(plan, job))).version).toBe(1);
    });

    it('remove at a stale version throws COMMIT_FENCED and keeps the row', async () => {
      const created = await store.create(newRow(plan, job));
      const stored = (await store.apply(job, trigger(T0 + 10))).row;
      const e = await rejection(store.remove(created));
      expect(e).toBeInstanceOf(FloeError);
      expect((e as FloeError).code).toBe(ErrorCode.CommitFenced);
      expect(await store.load(job)).toEqual(stored);
    });

    it('remove of a row that is gone throws COMMIT_FENCED', async () => {
      const created = await store.create(newRow(plan, job));
      await store.remove(created);
      const e = await rejection(store.remove(created));
      expect(e).toBeInstanceOf(FloeError);
      expect((e as FloeError).code).toBe(ErrorCode.CommitFenced);
    });

    // ---- checkpoint status items ----

    const status = (checkpointId: number, s: CheckpointStatus, at: number, extra: Partial<CheckpointStatusChange> = {}): CheckpointStatusChange => ({
      checkpointId,
      kind: 'checkpoint',
      status: s,
      at,
      ...extra,
    });

    it('getCheckpointStatus of an unknown id is undefined', async () => {
      expect(await store.getCheckpointStatus(job, 1)).toBeUndefined();
      await store.putCheckpointStatus(job, status(1, CheckpointStatus.InProgress, T0));
      expect(await store.getCheckpointStatus(job, 2)).toBeUndefined();
    });

    it('IN_PROGRESS creates a status item; a second IN_PROGRESS does not replace it', async () => {
      await store.putCheckpointStatus(job, status(1, CheckpointStatus.InProgress, T0));
      expect(await store.getCheckpointStatus(job, 1)).toEqual(status(1, CheckpointStatus.InProgress, T0));
      await store.putCheckpointStatus(job, { ...status(1, CheckpointStatus.InProgress, T0 + 1), kind: 'savepoint' });
      expect(await store.getCheckpointStatus(job, 1)).toEqual(status(1, CheckpointStatus.InProgress, T0));
    });

    it('a final status replaces IN_PROGRESS', async () => {
      await store.putCheckpointStatus(job, status(1, CheckpointStatus.InProgress, T0));
      await store.putCheckpointStatus(job, status(1, CheckpointStatus.Completed, T0 + 5, { path: 's3://bucket/ckpt/chk-1' }));
      expect(await store.getCheckpointStatus(job, 1)).toEqual(status(1, CheckpointStatus.Completed, T0 + 5, { path: 's3://bucket/ckpt/chk-1' }));

      await store.putCheckpointStatus(job, { ...status(2, CheckpointStatus.InProgress, T0), kind: 'savepoint' });
      await store.putCheckpointStatus(job, { ...status(2, CheckpointStatus.Failed, T0 + 6, { reason: 'declined' }), kind: 'savepoint' });
      expect(await store.getCheckpointStatus(job, 2)).toEqual({ checkpointId: 2, kind: 'savepoint', status: CheckpointStatus.Failed, at: T0 + 6, reason: 'declined' });
    });

    it('a final status without an IN_PROGRESS item before it is written', async () => {
      await store.putCheckpointStatus(job, status(3, CheckpointStatus.Failed, T0 + 6, { reason: 'expired' }));
      expect(await store.getCheckpointStatus(job, 3)).toEqual(status(3, CheckpointStatus.Failed, T0 + 6, { reason: 'expired' }));
    });

    it('a final status is never replaced, neither by IN_PROGRESS nor by another final status', async () => {
      const completed = status(1, CheckpointStatus.Completed, T0 + 5, { path: 's3://bucket/ckpt/chk-1' });
      await store.putCheckpointStatus(job, status(1, CheckpointStatus.InProgress, T0));
      await store.putCheckpointStatus(job, completed);
      await store.putCheckpointStatus(job, status(1, CheckpointStatus.InProgress, T0 + 6));
      expect(await store.getCheckpointStatus(job, 1)).toEqual(completed);
      await store.putCheckpointStatus(job, status(1, CheckpointStatus.Failed, T0 + 7, { reason: 'late abort' }));
      expect(await store.getCheckpointStatus(job, 1)).toEqual(completed);
      await store.putCheckpointStatus(job, status(1, CheckpointStatus.Completed, T0 + 8, { path: 's3://elsewhere' }));
      expect(await store.getCheckpointStatus(job, 1)).toEqual(completed);
    });

    it('status items are kept per job and per checkpoint id; checkpointStatusKey differs per job and per id', async () => {
      const other = `${job}-other`;
      await store.putCheckpointStatus(job, status(1, CheckpointStatus.Completed, T0 + 5));
      expect(await store.getCheckpointStatus(other, 1)).toBeUndefined();
      await store.putCheckpointStatus(other, status(1, CheckpointStatus.InProgress, T0 + 6));
      expect(await store.getCheckpointStatus(other, 1)).toEqual(status(1, CheckpointStatus.InProgress, T0 + 6));
      expect(await store.getCheckpointStatus(job, 1)).toEqual(status(1, CheckpointStatus.Completed, T0 + 5));

      const keys = [store.checkpointStatusKey(job, 1), store.checkpointStatusKey(job, 2), store.checkpointStatusKey(other, 1), store.checkpointStatusKey(other, 2)];
      expect(new Set(keys).size).toBe(keys.length);
      expect(store.checkpointStatusKey(job, 1)).toBe(store.checkpointStatusKey(job, 1));
      // Status items are no job row.
      expect(await store.load(job)).toBeUndefined();
    });
  });
}
