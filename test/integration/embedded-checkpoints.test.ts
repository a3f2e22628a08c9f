import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { listCheckpoints, loadManifest } from '../../lib/runtime/snapshot-catalog.js';
import { Layout, resolveRelative } from '../../lib/core/manifest/layout.js';
import type { CheckpointRecord } from '../../lib/core/coordinator/types.js';
import { Scratch, captureLog, expectedKeyedEvents, runOptions, runningCountsJob, runningCountsOracle, sorted, type KeyedEventsOptions } from '../support/jobs.js';

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

const storage = new FileCheckpointStorage();

/** Completed periodic checkpoints of a run, oldest first. */
function completedCheckpoints(history: readonly CheckpointRecord[]): CheckpointRecord[] {
  return history.filter((h) => h.kind === 'checkpoint' && h.status === 'COMPLETED').sort((a, b) => a.id - b.id);
}

describe('checkpoint retention, embedded', () => {
  it('after many checkpoints only the newest N remain, and shared/ holds exactly the files their manifests reference', async () => {
    // Given a job checkpointing incrementally every 30ms for about a second, keeping 2 checkpoints
    const input: KeyedEventsOptions = { count: 5_000, keys: 300, ratePerSecond: 5_000 };
    const sink = scratch.collector<string>();
    const root = await scratch.dir();
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(runningCountsJob({ ...input, sink }), runOptions(root, log, { checkpoint: { interval: 30, retained: 2, incremental: true } }));

    // When it runs to the end
    const outcome = await runner.run();
    expect(outcome.state, text()).toBe('FINISHED');
    const completed = runner.coordinatorState().counts.completed;
    expect(completed, text()).toBeGreaterThanOrEqual(8);

    // Then two chk-* directories remain, the newest two, each complete
    const dirs = await listCheckpoints(storage, root, 'running-counts');
    expect(dirs.map((d) => d.complete)).toEqual([true, true]);
    const newest = completedCheckpoints(runner.coordinatorState().history).map((h) => h.id).slice(-2);
    expect(dirs.map((d) => d.id)).toEqual(newest);

    // And shared/ holds exactly the state files the two manifests reference, every one of them present
    const referenced = new Set<string>();
    for (const d of dirs) {
      const { manifest, dir } = await loadManifest(storage, d.dir);
      for (const op of manifest.operators) for (const s of op.subtasks) for (const h of s.keyedState) referenced.add(resolveRelative(dir, h.path));
    }
    const shared = Layout.sharedDir(root, 'running-counts');
    const inShared = [...referenced].filter((p) => p.startsWith(`${shared}/`));
    expect(inShared.length).toBeGreaterThan(0);
    expect(sorted(await storage.list(shared))).toEqual(sorted(inShared));
    // Nothing else under the checkpoint root: no files of discarded or aborted checkpoints.
    const everything = await storage.list(Layout.checkpointsDir(root, 'running-counts'));
    expect(everything.filter((f) => !f.startsWith(`${shared}/`)).every((f) => dirs.some((d) => f.startsWith(`${d.dir}/`))), everything.join('\n')).toBe(true);

    // And the output is still exactly-once
    expect(sorted(sink.committed)).toEqual(runningCountsOracle(expectedKeyedEvents(input)));
  });
});

describe('incremental checkpoints, embedded', () => {
  // 3000 keys touched by the first 3000 events; after that only 5 keys change.
  const input: KeyedEventsOptions = {
    count: 6_000,
    ratePerSecond: 6_000,
    keyOf: (i) => (i < 3_000 ? `k${i}` : `hot${i % 5}`),
  };

  async function run(incremental: boolean) {
    const { log, text } = captureLog();
    const sink = scratch.collector<string>();
    const runner = new EmbeddedRunner(runningCountsJob({ ...input, sink }), runOptions(await scratch.dir(), log, { checkpoint: { interval: 50, incremental } }));
    const outcome = await runner.run();
    expect(outcome.state, text()).toBe('FINISHED');
    expect(sorted(sink.committed)).toEqual(runningCountsOracle(expectedKeyedEvents(input)));
    return completedCheckpoints(runner.coordinatorState().history);
  }

  it('with many keys and few changing, later checkpoints write a small fraction of the full state', async () => {
    // When the job runs with incremental checkpoints, and again without
    const incremental = await run(true);
    const full = await run(false);

    // Then without them every checkpoint writes everything it references
    for (const c of full) expect(c.stateSize, `checkpoint ${c.id}`).toBe(c.fullSize);
    // With them, once all 3000 keys exist, a checkpoint writes only the few changed keys: a small part of its state
    const largest = Math.max(...incremental.map((c) => c.fullSize));
    const settled = incremental.filter((c) => c.fullSize >= 0.9 * largest);
    expect(settled.length, JSON.stringify(incremental.map(({ id, stateSize, fullSize }) => ({ id, stateSize, fullSize })))).toBeGreaterThanOrEqual(3);
    const small = settled.filter((c) => c.stateSize * 10 < c.fullSize);
    expect(small.length, JSON.stringify(settled.map(({ id, stateSize, fullSize }) => ({ id, stateSize, fullSize })))).toBeGreaterThanOrEqual(2);
    // ...and much less than a full checkpoint of the same state writes
    const fullOfAllKeys = Math.max(...full.map((c) => c.stateSize));
    for (const c of small) expect(c.stateSize * 10).toBeLessThan(fullOfAllKeys);
  });
});
