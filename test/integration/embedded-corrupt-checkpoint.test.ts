/**
 * `--from-checkpoint latest` when the newest checkpoint cannot be restored: the runner passes it over for the newest
 * intact one and says which it skipped and why; when none is intact it refuses to start, listing every problem,
 * instead of starting with empty state. An explicit path to a corrupt snapshot is refused, with no fallback.
 */
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { ErrorCode } from '../../lib/core/errors.js';
import { Layout, join, resolveRelative } from '../../lib/core/manifest/layout.js';
import { listCheckpoints, loadManifest } from '../../lib/runtime/snapshot-catalog.js';
import { Scratch, captureLog, expectedKeyedEvents, runOptions, runningCountsJob, runningCountsOracle, sorted } from '../support/jobs.js';

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

const storage = new FileCheckpointStorage();
const JOB = 'running-counts';
const input = { count: 4_000, keys: 25, ratePerSecond: 8_000 };

/** What is done to a checkpoint; returns the text its refusal must contain. */
type Corruption = (chk: { id: number; dir: string }) => Promise<RegExp>;

const corruptions: Record<string, Corruption> = {
  'garbage JSON in _metadata': async ({ dir }) => {
    await writeFile(join(dir, Layout.METADATA), '{"formatVersion": 1, "job": ');
    return /is corrupt: not valid JSON/;
  },
  'an unknown formatVersion': async ({ dir }) => {
    const raw = JSON.parse(await readFile(join(dir, Layout.METADATA), 'utf8')) as Record<string, unknown>;
    await writeFile(join(dir, Layout.METADATA), JSON.stringify({ ...raw, formatVersion: 99 }));
    return /has formatVersion 99, but this Floe reads only formatVersion 1/;
  },
  'a deleted state file it wrote': async ({ id, dir }) => {
    // A file this checkpoint wrote itself (the delta of its epoch), which no older checkpoint references.
    const { manifest } = await loadManifest(storage, dir);
    const own = manifest.operators.flatMap((o) => o.subtasks.flatMap((s) => s.keyedState)).find((h) => h.path.includes(`-chk${id}-`));
    expect(own, `checkpoint ${id} wrote no state file of its own`).toBeDefined();
    const file = resolveRelative(dir, own!.path);
    await unlink(file);
    return new RegExp(`references a state file that does not exist: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);
  },
};

/** Runs the running-counts job to the end, keeping its newest two checkpoints; answers them, oldest first. */
async function finishedRun() {
  const sink = scratch.collector<string>();
  const root = await scratch.dir();
  const { log, text } = captureLog();
  const runner = new EmbeddedRunner(runningCountsJob({ ...input, sink }), runOptions(root, log, { checkpoint: { interval: 40, retained: 2 } }));
  const outcome = await runner.run();
  expect(outcome.state, text()).toBe('FINISHED');
  const kept = (await listCheckpoints(storage, root, JOB)).filter((c) => c.complete);
  expect(kept.length, text()).toBe(2);
  return { sink, root, kept: kept as [(typeof kept)[0], (typeof kept)[0]] };
}

/** The records a checkpoint's sink commits carry (the collect sink keeps them in the manifest). */
async function committedBy(dir: string): Promise<string[]> {
  const { manifest } = await loadManifest(storage, dir);
  return manifest.operators.flatMap((o) => o.subtasks.flatMap((s) => s.pendingCommits.flatMap((c) => (c as { values?: string[] }).values ?? [])));
}

describe('restoring latest past a corrupt checkpoint, embedded', () => {
  it.each(Object.keys(corruptions))('a newest checkpoint with %s is skipped, saying why, for the one before it', async (name) => {
    // Given a finished run whose newest retained checkpoint is then corrupted
    const { sink, root, kept } = await finishedRun();
    const [previous, newest] = kept;
    const replayed = await committedBy(newest.dir);
    expect(replayed.length).toBeGreaterThan(0);
    const reason = await corruptions[name]!(newest);

    // When the job runs again from the latest checkpoint
    const { log, lines, text } = captureLog();
    const resumed = new EmbeddedRunner(runningCountsJob({ ...input, ratePerSecond: undefined, sink }), runOptions(root, log, { restore: { kind: 'latest-checkpoint' } }));
    const outcome = await resumed.run();

    // Then it restored the previous checkpoint, with one line naming the skipped one and its problem
    expect(outcome.state, text()).toBe('FINISHED');
    expect(resumed.overview().restoredFrom?.id, text()).toBe(previous.id);
    const skips = lines.filter((l) => l.startsWith('skipped checkpoint'));
    expect(skips, text()).toHaveLength(1);
    expect(skips[0]).toContain(`skipped checkpoint ${newest.id}: `);
    expect(skips[0]).toContain(join(newest.dir, Layout.METADATA));
    expect(skips[0]).toMatch(reason);
    // And the output is the oracle's, plus once more the records of the skipped checkpoint, which the rollback
    // behind it replays (their first commit, by the earlier run, cannot be taken back)
    const oracle = runningCountsOracle(expectedKeyedEvents(input));
    expect(sorted(sink.committed)).toEqual(sorted([...oracle, ...replayed]));
    expect(sorted([...new Set(sink.committed)])).toEqual(oracle);
  });

  it('refuses to start when every checkpoint is corrupt, listing each problem, rather than start with empty state', async () => {
    // Given a finished run whose two retained checkpoints are both corrupted, in different ways
    const { sink, root, kept } = await finishedRun();
    const [previous, newest] = kept;
    const reasons = [await corruptions['garbage JSON in _metadata']!(newest), await corruptions['an unknown formatVersion']!(previous)];
    const before = [...sink.committed];
    const filesBefore = await storage.list(root);

    // When the job runs again from the latest checkpoint
    const { log, text } = captureLog();
    const resumed = new EmbeddedRunner(runningCountsJob({ ...input, ratePerSecond: undefined, sink }), runOptions(root, log, { restore: { kind: 'latest-checkpoint' } }));
    const refused = await resumed.run().then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );

    // Then it did not start: an error naming both checkpoints and their problems, no output, no checkpoint written
    expect(refused, text()).toBeDefined();
    expect(refused!.code).toBe(ErrorCode.CorruptManifest);
    expect(refused!.message).toMatch(/none of the 2 completed checkpoint\(s\) under .* can be restored/);
    expect(refused!.message).toMatch(new RegExp(`checkpoint ${newest.id}: .*${reasons[0]!.source}`));
    expect(refused!.message).toMatch(new RegExp(`checkpoint ${previous.id}: .*${reasons[1]!.source}`));
    expect(text()).not.toMatch(/starting from the beginning/);
    expect(sink.committed).toEqual(before);
    expect(await storage.list(root)).toEqual(filesBefore);
  });

  it.each(Object.keys(corruptions))('an explicit --from-checkpoint path to a checkpoint with %s is refused, not passed over', async (name) => {
    // Given a finished run whose newest checkpoint is corrupted, the one before it intact
    const { sink, root, kept } = await finishedRun();
    const newest = kept[1];
    const reason = await corruptions[name]!(newest);
    const before = [...sink.committed];

    // When the job is asked to restore that checkpoint by its path
    const { log, text } = captureLog();
    const resumed = new EmbeddedRunner(runningCountsJob({ ...input, ratePerSecond: undefined, sink }), runOptions(root, log, { restore: { kind: 'path', path: newest.dir } }));

    // Then it is refused with what is wrong with it, and nothing ran
    await expect(resumed.run()).rejects.toThrow(reason);
    expect(text()).not.toMatch(/restored from/);
    expect(sink.committed).toEqual(before);
  });
});
