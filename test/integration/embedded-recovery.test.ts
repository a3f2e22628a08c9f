import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { listCheckpoints, loadManifest } from '../../lib/runtime/snapshot-catalog.js';
import { FloeError } from '../../lib/core/errors.js';
import { filesSink } from '../../lib/connectors/files-sink.js';
import {
  FailOnce,
  Scratch,
  captureLog,
  expectRunningCountPrefixes,
  expectedKeyedEvents,
  keyedEventsReadAt,
  readCommittedLines,
  runOptions,
  runningCountsJob,
  runningCountsOracle,
  sleep,
  sorted,
  startRunner,
  waitFor,
} from '../support/jobs.js';

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

// Module-level, so the flag outlives the restart of the job that reads it: the function throws the first time only.
let failure = new FailOnce(0);
afterEach(() => {
  failure = new FailOnce(0);
});

/** Local checkpoint storage whose state-file writes take a while. */
class SlowStorage extends FileCheckpointStorage {
  static readonly DELAY_MS = 40;
  override async put(location: string, bytes: Uint8Array): Promise<void> {
    await sleep(SlowStorage.DELAY_MS);
    return super.put(location, bytes);
  }
}

describe('restart strategies, embedded', () => {
  // 4000 events at 4000/s; the function throws at event 1500, or at the first event after that once a checkpoint completed.
  const input = { count: 4_000, keys: 25, ratePerSecond: 4_000 };

  it.each(['collect', 'files'] as const)('a user function that throws once: the job restores the latest checkpoint in-process and its %s output is exactly-once', async (kind) => {
    // Given the running-counts job at parallelism 3 whose counting function throws once, and a fixed-delay strategy
    failure = new FailOnce(1_500);
    const out = await scratch.dir('floe-out-');
    const collected = scratch.collector<string>();
    const sink = kind === 'collect' ? collected : filesSink<string>({ dir: out });
    const committed = async () => (kind === 'collect' ? collected.committed : readCommittedLines(out));
    const { log, lines, text } = captureLog();
    const job = runningCountsJob({ ...input, sink, failure, parallelism: 3 });
    const runner = new EmbeddedRunner(job, runOptions(await scratch.dir(), log, { restart: { type: 'fixed-delay', attempts: 2, delay: 20 } }));
    failure.armed = () => runner.coordinatorState().counts.completed >= 1;

    // When it runs
    const outcome = await runner.run();

    // Then it failed once, restarted from a checkpoint, and finished with each running count committed exactly once
    expect(outcome.state, text()).toBe('FINISHED');
    expect(failure.thrown).toBe(true);
    expect(runner.overview().restarts).toBe(1);
    expect(lines.some((l) => l.includes('restarting') && l.includes(failure.message)), text()).toBe(true);
    const restored = lines.find((l) => /^restored from checkpoint .*chk-\d+ \(checkpoint \d+, generation 2\)$/.test(l));
    expect(restored, text()).toBeDefined();
    expect(sorted(await committed())).toEqual(runningCountsOracle(expectedKeyedEvents(input)));
  });

  it("with restart type 'none' the same failure fails the run with the user's error", async () => {
    // Given the same job with no restarts
    failure = new FailOnce(1_500);
    const sink = scratch.collector<string>();
    const { log, text } = captureLog();
    const checkpoints = await scratch.dir();
    // Slow state-file writes, so that snapshot writes are in flight when the job fails.
    const storage = new SlowStorage();
    const runner = new EmbeddedRunner(runningCountsJob({ ...input, sink, failure }), runOptions(checkpoints, log, { restart: { type: 'none' }, storage, checkpoint: { retained: 2 } }));
    failure.armed = () => runner.coordinatorState().counts.completed >= 1;

    // When it runs
    const outcome = await runner.run();
    // (once run() has returned, nothing of the run writes to the checkpoint directory any more)
    const filesAtReturn = await storage.list(checkpoints);
    await sleep(2 * SlowStorage.DELAY_MS);
    expect(await storage.list(checkpoints)).toEqual(filesAtReturn);

    // Then the run FAILED, saying what threw and why it was not restarted
    expect(outcome.state, text()).toBe('FAILED');
    expect(outcome.error).toBeInstanceOf(FloeError);
    expect(outcome.error?.message).toContain(failure.message);
    expect(outcome.error?.message).toContain("operator 'count'");
    expect(outcome.error?.message).toContain('restart strategy is none');
    expect(runner.overview().state).toBe('FAILED');
    expect(runner.overview().restarts).toBe(0);
    // Nothing after the last completed checkpoint is visible: committed output is a consistent prefix. Per key, the
    // committed lines are the key's first N running counts in order (no gap, no repeat, no reordering)...
    const events = expectedKeyedEvents(input);
    const prefixes = expectRunningCountPrefixes(sink.committed, events);
    expect(sink.committed.length).toBeGreaterThan(0);
    expect(sink.committed.length).toBeLessThan(events.length);
    expect([...prefixes.values()].reduce((a, b) => a + b, 0)).toBe(sink.committed.length);
    // ...and together they are the output of a completed checkpoint: exactly the running counts of the events its
    // source positions had read. That is the latest one, or the one before it when the job failed after writing the
    // latest's manifest but before committing its transactions (a restore would commit them).
    const complete = (await listCheckpoints(storage, checkpoints, 'running-counts')).filter((c) => c.complete);
    expect(complete.length, text()).toBeGreaterThanOrEqual(1);
    const covered = await Promise.all(complete.slice(-2).map(async (c) => runningCountsOracle(keyedEventsReadAt((await loadManifest(storage, c.dir)).manifest, input))));
    expect(covered).toContainEqual(sorted(sink.committed));
  });
});

describe('cancel, embedded', () => {
  const input = { count: 20_000, keys: 25, ratePerSecond: 5_000 };

  it('cancel() ends the run CANCELED, keeps its checkpoints, and a restore from the latest one completes the output exactly-once', async () => {
    // Given a running job that has completed a few checkpoints
    const sink = scratch.collector<string>();
    const checkpoints = await scratch.dir();
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(runningCountsJob({ ...input, sink }), runOptions(checkpoints, log, { checkpoint: { retained: 2 } }));
    const { done } = await startRunner(runner);
    await waitFor('two completed checkpoints', () => runner.coordinatorState().counts.completed >= 2);

    // When it is cancelled
    await runner.cancel();
    const outcome = await done;

    // Then it is CANCELED and its completed checkpoints are still there
    expect(outcome.state, text()).toBe('CANCELED');
    expect(runner.overview().state).toBe('CANCELED');
    const kept = (await listCheckpoints(new FileCheckpointStorage(), checkpoints, 'running-counts')).filter((c) => c.complete);
    expect(kept.length).toBeGreaterThanOrEqual(1);
    expect(kept.length).toBeLessThanOrEqual(2);

    // And a run restored from the latest checkpoint (no rate limit, parallelism 3: incremental chains re-split by key
    // group) finishes what the cancelled one started
    const resumed = new EmbeddedRunner(runningCountsJob({ ...input, ratePerSecond: undefined, sink, parallelism: 3 }), runOptions(checkpoints, log, { restore: { kind: 'latest-checkpoint' } }));
    const end = await resumed.run();
    expect(end.state, text()).toBe('FINISHED');
    expect(resumed.overview().restoredFrom?.id).toBe(kept[kept.length - 1]!.id);
    expect(sorted(sink.committed)).toEqual(runningCountsOracle(expectedKeyedEvents(input)));
  });

  it('a cancel() that comes while the run is still starting is not lost', async () => {
    // Given a run that has been started but has not reached RUNNING yet
    const { log, text } = captureLog();
    const sink = scratch.collector<string>();
    const runner = new EmbeddedRunner(runningCountsJob({ ...input, sink }), runOptions(await scratch.dir(), log));
    const done = runner.run();

    // When it is cancelled at once
    await runner.cancel();

    // Then it ends CANCELED without running to the end of its input
    const outcome = await done;
    expect(outcome.state, text()).toBe('CANCELED');
    expect(sink.committed.length).toBeLessThan(runningCountsOracle(expectedKeyedEvents(input)).length);
  });

  it('with retainOnCancel false, cancel() deletes the checkpoints', async () => {
    // Given a running job with checkpoints that are not to be kept on cancel
    const checkpoints = await scratch.dir();
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(runningCountsJob({ ...input, sink: scratch.collector<string>() }), runOptions(checkpoints, log, { checkpoint: { retainOnCancel: false } }));
    const { done } = await startRunner(runner);
    await waitFor('a completed checkpoint', () => runner.coordinatorState().counts.completed >= 2);

    // When it is cancelled
    await runner.cancel();
    const outcome = await done;

    // Then no checkpoint file is left behind
    expect(outcome.state, text()).toBe('CANCELED');
    expect(await new FileCheckpointStorage().list(checkpoints)).toEqual([]);
  });
});
