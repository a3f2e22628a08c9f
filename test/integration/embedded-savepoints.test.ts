import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedRunner, type EmbeddedRunOptions } from '../../lib/hosts/embedded/embedded-runner.js';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { loadManifest } from '../../lib/runtime/snapshot-catalog.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import { Job, filesSink, valueState, type SinkConnector } from '../../lib/index.js';
import {
  Scratch,
  awaitTrigger,
  captureLog,
  expectedKeyedEvents,
  keyedEvents,
  runOptions,
  runningCountsJob,
  runningCountsOracle,
  sorted,
  sourceRecordsRead,
  startRunner,
  waitFor,
  type KeyedEventsOptions,
} from '../support/jobs.js';

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

const storage = new FileCheckpointStorage();

/**
 * Runs a job until its sources have read `readAtLeast` records, takes a savepoint while it runs, then cancels it.
 * Periodic checkpoints are off, so the savepoint is the only snapshot whose output the run commits.
 */
async function savepointThenCancel(job: Job, options: EmbeddedRunOptions, readAtLeast: number): Promise<string> {
  const runner = new EmbeddedRunner(job, { ...options, checkpoint: { ...options.checkpoint, interval: 0 } });
  const { done } = await startRunner(runner);
  await waitFor(`${readAtLeast} records read`, () => sourceRecordsRead(runner) >= readAtLeast);
  const id = runner.triggerSavepoint({ dir: await scratch.dir('floe-savepoints-') });
  const status = await awaitTrigger(runner, id);
  expect(status.status, status.failureCause).toBe('COMPLETED');
  await runner.cancel();
  // Still running when cancelled: the savepoint was taken mid-stream, not at the end of the input.
  expect((await done).state).toBe('CANCELED');
  return status.location!;
}

describe('savepoints and rescaling, embedded', () => {
  // 6000 events at 3000/s: two seconds of input, so the job is still running when the savepoints are taken.
  const input: KeyedEventsOptions = { count: 6_000, keys: 40, ratePerSecond: 3_000 };

  it('a savepoint taken while running restores at a different parallelism (up, then down) and keyed counts continue exactly', async () => {
    const sink = scratch.collector<string>();
    const checkpoints = await scratch.dir();
    const { log, text } = captureLog();

    // Given a savepoint of the job at parallelism 2, taken while it runs
    const first = await savepointThenCancel(runningCountsJob({ ...input, sink, parallelism: 2 }), runOptions(checkpoints, log), 600);
    const m1 = (await loadManifest(storage, first)).manifest;
    expect(m1.kind).toBe('savepoint');
    expect(m1.operators.find((o) => o.uid === 'count')?.parallelism).toBe(2);

    // When it is restored at parallelism 4 and savepointed again while running
    const second = await savepointThenCancel(
      runningCountsJob({ ...input, sink, parallelism: 4 }),
      runOptions(checkpoints, log, { restore: { kind: 'path', path: first } }),
      1_200,
    );
    expect((await loadManifest(storage, second)).manifest.operators.find((o) => o.uid === 'count')?.parallelism).toBe(4);

    // And that savepoint is restored at parallelism 1 and run to the end
    const last = new EmbeddedRunner(runningCountsJob({ ...input, ratePerSecond: undefined, sink, parallelism: 1 }), runOptions(checkpoints, log, { restore: { kind: 'path', path: second } }));
    const outcome = await last.run();

    // Then the output of the three runs together is the running counts of the whole input, each exactly once
    expect(outcome.state, text()).toBe('FINISHED');
    expect(text()).toContain("operator 'count' rescaled from parallelism 2 to 4");
    expect(text()).toContain("operator 'count' rescaled from parallelism 4 to 1");
    expect(last.overview().restoredFrom).toMatchObject({ kind: 'savepoint', path: second });
    expect(sorted(sink.committed)).toEqual(runningCountsOracle(expectedKeyedEvents(input)));
  });

  it("stop-with-savepoint ('stop') ends the run FINISHED with the savepoint, and a rescaled restore continues from it", async () => {
    // Given the job running at parallelism 3 with periodic checkpoints
    const sink = scratch.collector<string>();
    const checkpoints = await scratch.dir();
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(runningCountsJob({ ...input, sink, parallelism: 3 }), runOptions(checkpoints, log));
    const { done } = await startRunner(runner);
    await waitFor('records to flow', () => sourceRecordsRead(runner) >= 600);

    // When it is stopped with a savepoint
    const id = runner.triggerSavepoint({ dir: await scratch.dir('floe-savepoints-'), termination: 'stop' });
    const outcome = await done;

    // Then the run ended there, reporting the savepoint the trigger reports
    expect(outcome.state, text()).toBe('FINISHED');
    expect(outcome.savepoint).toBeDefined();
    expect((await awaitTrigger(runner, id)).location).toBe(outcome.savepoint);
    const { manifest } = await loadManifest(storage, outcome.savepoint!);
    expect(manifest.kind).toBe('savepoint');
    expect(manifest.endOfInput).toBe(false);
    const stoppedAt = sink.committed.length;
    expect(stoppedAt).toBeLessThan(runningCountsOracle(expectedKeyedEvents(input)).length);

    // And a restore at parallelism 2 completes the output exactly once
    const resumed = new EmbeddedRunner(
      runningCountsJob({ ...input, ratePerSecond: undefined, sink, parallelism: 2 }),
      runOptions(checkpoints, log, { restore: { kind: 'path', path: outcome.savepoint! } }),
    );
    expect((await resumed.run()).state, text()).toBe('FINISHED');
    expect(sorted(sink.committed)).toEqual(runningCountsOracle(expectedKeyedEvents(input)));
  });
});

/** The running-counts topology with parts swapped, to restore one version's savepoint into another. */
function versionedJob(o: { sink: SinkConnector<string>; count?: boolean; dedupe?: boolean; label?: string }, input: KeyedEventsOptions): Job {
  const job = new Job('versioned', { parallelism: 2 });
  let stream = job
    .source(keyedEvents(input), { uid: 'events' })
    // A stateless step without a uid; versions change what it does.
    .map((e) => ({ ...e, key: e.key.toUpperCase() }))
    .keyBy((e) => e.key);
  if (o.dedupe) {
    stream = stream
      .process<{ key: string; i: number }, { seen: ReturnType<typeof valueState<number>> }>(
        {
          state: { seen: valueState<number>() },
          processElement(e, ctx, out) {
            ctx.state.seen.update((ctx.state.seen.value() ?? 0) + 1);
            out.collect(e);
          },
        },
        { uid: 'dedupe' },
      )
      .keyBy((e) => e.key);
  }
  const lines = o.count === false
    ? stream.map((e) => `${e.key}\t-`)
    : stream.process(
        {
          state: { n: valueState<number>() },
          processElement(e, ctx, out) {
            const n = (ctx.state.n.value() ?? 0) + 1;
            ctx.state.n.update(n);
            out.collect(`${e.key}\t${n}`);
          },
        },
        { uid: 'count' },
      );
  lines.map((l) => (o.label ? `${l}\t${o.label}` : l)).sinkTo(o.sink, { uid: 'out' });
  return job;
}

describe('restoring into a changed job, embedded', () => {
  const input: KeyedEventsOptions = { count: 4_000, keys: 10, ratePerSecond: 4_000 };

  async function savepointOfV1(checkpoints: string, log: (m: string) => void) {
    const sink = scratch.collector<string>('v1');
    return savepointThenCancel(versionedJob({ sink }, input), runOptions(checkpoints, log), 500);
  }

  it('a stateful operator removed: the restore fails naming its uid, and runs with allowNonRestoredState', async () => {
    const checkpoints = await scratch.dir();
    const { log, text } = captureLog();
    const savepoint = await savepointOfV1(checkpoints, log);

    // When the job without 'count' restores the savepoint
    const withoutCount = (sink: SinkConnector<string>) => versionedJob({ sink, count: false }, { ...input, ratePerSecond: undefined });
    const refused = new EmbeddedRunner(withoutCount(scratch.collector<string>()), runOptions(checkpoints, log, { restore: { kind: 'path', path: savepoint } }));

    // Then the restore is refused, naming the operator whose state would be lost and the way out
    const error = await refused.run().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(FloeError);
    expect((error as FloeError).code).toBe(ErrorCode.IncompatibleRestore);
    expect((error as FloeError).message).toContain("'count'");
    expect((error as FloeError).message).toContain('allow-non-restored-state');

    // And with allowNonRestoredState it runs, continuing the source from the savepoint
    const sink = scratch.collector<string>();
    const allowed = new EmbeddedRunner(withoutCount(sink), runOptions(checkpoints, log, { restore: { kind: 'path', path: savepoint }, allowNonRestoredState: true }));
    expect((await allowed.run()).state, text()).toBe('FINISHED');
    expect(text()).toMatch(/state of operator\(s\) 'count' is not restored/);
    const all = expectedKeyedEvents(input);
    expect(sink.committed.length).toBeGreaterThan(0);
    expect(sink.committed.length).toBeLessThan(all.length);
  });

  it('a stateful operator added starts empty, and a changed stateless operator is fine', async () => {
    const checkpoints = await scratch.dir();
    const { log, text } = captureLog();
    const v1 = scratch.collector<string>('v1');
    const savepoint = await savepointThenCancel(versionedJob({ sink: v1 }, input), runOptions(checkpoints, log), 500);
    const { manifest } = await loadManifest(storage, savepoint);
    expect(manifest.operators.map((o) => o.uid)).not.toContain('dedupe');

    // When a version with a new keyed operator 'dedupe' and a changed stateless step restores it
    const sink = scratch.collector<string>();
    const v2 = new EmbeddedRunner(versionedJob({ sink, dedupe: true, label: 'v2' }, { ...input, ratePerSecond: undefined }), runOptions(checkpoints, log, { restore: { kind: 'path', path: savepoint } }));
    const outcome = await v2.run();

    // Then it runs; 'dedupe' starts empty while 'count' continues its counts from the savepoint
    expect(outcome.state, text()).toBe('FINISHED');
    expect(text()).toContain("operator 'dedupe' is not in savepoint");
    const all = expectedKeyedEvents(input);
    const upper = (e: { key: string; i: number }) => ({ ...e, key: e.key.toUpperCase() });
    const oracle = runningCountsOracle(all.map(upper));
    const before = v1.committed;
    const after = sink.committed.map((l) => {
      expect(l.endsWith('\tv2')).toBe(true);
      return l.slice(0, -'\tv2'.length);
    });
    expect(sorted([...before, ...after])).toEqual(oracle);
  });
});

describe('restoring into a job whose sink changed kind, embedded', () => {
  it('pending commits of the old sink are not handed to a different kind of sink under the same uid: the restore is refused', async () => {
    // Given a savepoint whose collect sink 'out' has records pre-committed in it
    const input: KeyedEventsOptions = { count: 4_000, keys: 10, ratePerSecond: 4_000 };
    const { log } = captureLog();
    const savepoint = await savepointThenCancel(runningCountsJob({ ...input, sink: scratch.collector<string>() }), runOptions(await scratch.dir(), log), 300);
    const { manifest } = await loadManifest(storage, savepoint);
    expect(manifest.operators.find((o) => o.uid === 'out')?.subtasks.some((s) => s.pendingCommits.length > 0)).toBe(true);

    // When a job whose 'out' is now a files sink restores it
    const runner = new EmbeddedRunner(runningCountsJob({ ...input, sink: filesSink({ dir: await scratch.dir() }) }), runOptions(await scratch.dir(), log, { restore: { kind: 'path', path: savepoint } }));
    const error = await runner.run().then(
      () => undefined,
      (e: unknown) => e,
    );

    // Then the restore is refused with a FloeError naming the sink, not a crash inside the files sink
    expect(error).toBeInstanceOf(FloeError);
    expect((error as FloeError).code).toBe(ErrorCode.IncompatibleRestore);
    expect((error as FloeError).message).toContain("sink 'out' (collect)");
  });
});

describe('refused restore paths, embedded', () => {
  async function validSavepoint(): Promise<string> {
    const { log } = captureLog();
    return savepointThenCancel(runningCountsJob({ count: 4_000, ratePerSecond: 4_000, sink: scratch.collector<string>() }), runOptions(await scratch.dir(), log), 300);
  }

  const restoreFrom = async (path: string) => {
    const { log } = captureLog();
    const runner = new EmbeddedRunner(runningCountsJob({ sink: scratch.collector<string>() }), runOptions(await scratch.dir(), log, { restore: { kind: 'path', path } }));
    return runner.run().then(
      (outcome) => {
        throw new Error(`the restore from ${path} was accepted: ${outcome.state}`);
      },
      (e: unknown) => e as FloeError,
    );
  };

  it('a corrupt _metadata is refused, naming the file and the problem', async () => {
    const dir = join(await scratch.dir(), 'savepoint-x');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, '_metadata'), '{"formatVersion": 1, "job": "running-counts", "oper');
    const error = await restoreFrom(dir);
    expect(error).toBeInstanceOf(FloeError);
    expect(error.code).toBe(ErrorCode.CorruptManifest);
    expect(error.message).toContain(join(dir, '_metadata'));
    expect(error.message).toContain('not valid JSON');
  });

  it('a _metadata that parses but misses fields is refused, listing them', async () => {
    const savepoint = await validSavepoint();
    const raw = JSON.parse(await readFile(join(savepoint, '_metadata'), 'utf8')) as Record<string, unknown>;
    delete raw.operators;
    await writeFile(join(savepoint, '_metadata'), JSON.stringify(raw));
    const error = await restoreFrom(join(savepoint, '_metadata'));
    expect(error.code).toBe(ErrorCode.CorruptManifest);
    expect(error.message).toContain('operators');
  });

  it('an unknown formatVersion is refused, naming the version', async () => {
    const savepoint = await validSavepoint();
    const raw = JSON.parse(await readFile(join(savepoint, '_metadata'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(savepoint, '_metadata'), JSON.stringify({ ...raw, formatVersion: 99 }));
    const error = await restoreFrom(savepoint);
    expect(error.code).toBe(ErrorCode.UnsupportedManifestVersion);
    expect(error.message).toContain('formatVersion 99');
  });

  it('a path without _metadata is refused as not found', async () => {
    const error = await restoreFrom(await scratch.dir());
    expect(error.code).toBe(ErrorCode.CheckpointNotFound);
    expect(error.message).toContain('_metadata does not exist');
  });
});
