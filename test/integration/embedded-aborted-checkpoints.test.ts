import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readdir } from 'node:fs/promises';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { filesSink } from '../../lib/connectors/files-sink.js';
import type { CheckpointStorage } from '../../lib/ports/index.js';
import type { CheckpointRecord } from '../../lib/core/coordinator/types.js';
import { Scratch, awaitTrigger, captureLog, expectedKeyedEvents, readCommittedLines, runOptions, runningCountsJob, runningCountsOracle, sorted, startRunner, waitFor, type KeyedEventsOptions } from '../support/jobs.js';

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

/** Local checkpoint storage whose writes fail, as a full disk would, for every location `failing` matches. */
class FailingStorage implements CheckpointStorage {
  private readonly inner = new FileCheckpointStorage();
  failures = 0;

  constructor(private readonly failing: (location: string) => boolean) {}

  private check(location: string): void {
    if (!this.failing(location)) return;
    this.failures++;
    throw Object.assign(new Error(`ENOSPC: no space left on device, write '${location}' (injected)`), { code: 'ENOSPC' });
  }

  async put(location: string, bytes: Uint8Array) {
    this.check(location);
    return this.inner.put(location, bytes);
  }
  async putIfAbsent(location: string, bytes: Uint8Array) {
    this.check(location);
    return this.inner.putIfAbsent(location, bytes);
  }
  get(location: string) {
    return this.inner.get(location);
  }
  exists(location: string) {
    return this.inner.exists(location);
  }
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  delete(locations: readonly string[]) {
    return this.inner.delete(locations);
  }
}

const failedIds = (history: readonly CheckpointRecord[], kind: 'checkpoint' | 'savepoint') => history.filter((h) => h.kind === kind && h.status === 'FAILED').map((h) => h.id);
const completedIds = (history: readonly CheckpointRecord[], kind: 'checkpoint' | 'savepoint') => history.filter((h) => h.kind === kind && h.status === 'COMPLETED').map((h) => h.id);

describe('aborted checkpoints and savepoints lose no output, embedded', () => {
  const input: KeyedEventsOptions = { count: 6_000, keys: 40, ratePerSecond: 6_000 };

  it('what sinks pre-committed for checkpoints that failed to write is committed with the next checkpoint that completes', async () => {
    // Given a job whose first two checkpoints after some output cannot be written (their manifests fail: aborted)
    const sink = scratch.collector<string>();
    const root = await scratch.dir();
    const failed = new Set<number>();
    let runner: EmbeddedRunner | undefined = undefined;
    const storage = new FailingStorage((l) => {
      const id = Number(/\/chk-(\d+)\/_metadata$/.exec(l)?.[1] ?? NaN);
      if (Number.isNaN(id)) return false;
      if (!failed.has(id) && (failed.size >= 2 || runner!.overview().vertices.every((v) => v.isSource || v.recordsIn < 500))) return false;
      failed.add(id);
      return true;
    });
    const { log, text } = captureLog();
    runner = new EmbeddedRunner(runningCountsJob({ ...input, sink }), { ...runOptions(root, log, { checkpoint: { interval: 40, tolerableFailures: 10 } }), storage });

    // When it runs to the end of its input
    const outcome = await runner.run();

    // Then both checkpoints failed, later ones completed, the job finished without a restart...
    expect(outcome.state, text()).toBe('FINISHED');
    const [first, second] = [...failed];
    expect(text()).toMatch(new RegExp(`checkpoint ${first} aborted: .*ENOSPC`));
    expect(text()).toMatch(new RegExp(`checkpoint ${second} aborted: .*ENOSPC`));
    expect(runner.coordinatorState().counts.failed, text()).toBe(2);
    expect(completedIds(runner.coordinatorState().history, 'checkpoint').some((id) => id > second!), text()).toBe(true);
    expect(runner.overview().restarts).toBe(0);
    expect(storage.failures).toBeGreaterThan(0);
    // ...and every record's output was committed exactly once
    expect(sorted(sink.committed)).toEqual(runningCountsOracle(expectedKeyedEvents(input)));
  });

  it('a savepoint whose target cannot be written leaves the files sink output of its epoch to be committed later, and no in-progress file behind', async () => {
    // Given a files sink and a savepoint directory whose writes fail
    const out = await scratch.dir('floe-out-');
    const root = await scratch.dir();
    const badTarget = join(root, 'full-disk');
    const storage = new FailingStorage((l) => l.startsWith(`${badTarget}/`));
    const { log, text } = captureLog();
    const slow: KeyedEventsOptions = { count: 6_000, keys: 40, ratePerSecond: 3_000 };
    const runner = new EmbeddedRunner(runningCountsJob({ ...slow, sink: filesSink({ dir: out }) }), { ...runOptions(root, log, { checkpoint: { interval: 100 } }), storage });
    const { done } = await startRunner(runner);

    // When a savepoint is taken into it while the job runs
    await waitFor('some records read', () => runner.overview().vertices.some((v) => v.isSource && v.recordsIn > 500));
    const status = await awaitTrigger(runner, runner.triggerSavepoint({ dir: badTarget }));
    expect(status.status, text()).toBe('FAILED');
    const outcome = await done;

    // Then the job finished, and the committed lines are exactly the oracle's
    expect(outcome.state, text()).toBe('FINISHED');
    expect(failedIds(runner.coordinatorState().history, 'savepoint'), text()).toHaveLength(1);
    expect(sorted(await readCommittedLines(out))).toEqual(runningCountsOracle(expectedKeyedEvents(slow)));
    expect((await readdir(out)).filter((n) => n.startsWith('.inprogress'))).toEqual([]);
  });

  it('an intermediate savepoint commits no output (a restore from an older checkpoint cannot repeat it); the next checkpoint does', async () => {
    // Given a job with no periodic checkpoints
    const sink = scratch.collector<string>();
    const root = await scratch.dir();
    const { log, text } = captureLog();
    const slow: KeyedEventsOptions = { count: 4_000, keys: 20, ratePerSecond: 4_000 };
    const runner = new EmbeddedRunner(runningCountsJob({ ...slow, sink }), runOptions(root, log, { checkpoint: { interval: 0 } }));
    const { done } = await startRunner(runner);

    // When a savepoint completes while it runs
    await waitFor('some records read', () => runner.overview().vertices.some((v) => v.isSource && v.recordsIn > 500));
    const status = await awaitTrigger(runner, runner.triggerSavepoint({}));
    expect(status.status, text()).toBe('COMPLETED');

    // Then nothing is committed yet, though the savepoint holds pre-committed output
    expect(sink.committed).toEqual([]);
    const record = runner.coordinatorState().history.find((h) => h.id === status.checkpointId)!;
    const pending = Object.values(record.acks).flatMap((a) => Object.values(a.operators).flatMap((o) => o.pendingCommits));
    expect(pending.length).toBeGreaterThan(0);

    // And the final checkpoint commits everything, the savepoint's epoch included, once
    expect((await done).state, text()).toBe('FINISHED');
    expect(sorted(sink.committed)).toEqual(runningCountsOracle(expectedKeyedEvents(slow)));
  });
});
