/**
 * The proof of exactly-once: `floe run` on the word count, SIGKILLed at random moments and resumed each time with
 * `--from-checkpoint latest`, must commit for every word exactly the running counts 1..N, where N is what a plain
 * loop over the input counts: no gap, no repeat.
 *
 * The kill schedule is drawn from a seed that is logged; set FLOE_E2E_SEED to replay a schedule (the moments are
 * still subject to timing, so a replay is close, not identical).
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FloeProcess, describeExit, sleep } from '../support/floe-process.js';
import {
  compareWithOracle,
  countWords,
  describeDiff,
  generateWordInput,
  isCommittedName,
  mulberry32,
  randomInt,
  readCommittedOutput,
  readInProgressOutput,
  type WordInput,
} from '../support/wordcount-oracle.js';

const JOB = 'examples/wordcount.ts';
const PARALLELISM = 3;
const INTERVAL = '200ms';
const RUNNING = /^\[floe\] job 'wordcount' \(\w+\) running/;
const COMPLETED = /^\[floe\] checkpoint (\d+) completed: /;
const RESTORED = /^\[floe\] restored from checkpoint \S+ \(checkpoint (\d+), generation \d+\)/;
const FINISHED = /^\[floe\] job finished after /;
const FROM_BEGINNING = /^\[floe\] no completed checkpoint under .*: starting from the beginning$/;

const log = (m: string) => console.info(`[e2e] ${m}`);

/**
 * When a run is killed: right after a checkpoint is reported completed; while a checkpoint is in flight (its first
 * state file is on disk, so sinks have pre-committed, but there is no `_metadata` yet); the moment a new
 * checkpoint's `_metadata` appears (often before the sink has committed its files, so only the manifest's pending
 * commits carry them); at a random delay; or almost at once (e.g. in the middle of a restore).
 */
type KillKind = 'after-checkpoint' | 'during-checkpoint' | 'manifest-written' | 'random-delay' | 'early';
const KINDS: readonly KillKind[] = ['after-checkpoint', 'during-checkpoint', 'manifest-written', 'random-delay', 'early'];

interface KillRecord {
  readonly run: number;
  readonly kind: KillKind;
  /** What the kill waited for, for the log. */
  readonly trigger: string;
  /** Ms from the `running` line to the kill. */
  readonly killedAtMs: number;
  /** Checkpoint ids this run reported completed before it was killed. */
  readonly completed: number[];
  /** The newest checkpoint with a `_metadata` when the run started and when it was dead. */
  readonly manifestBefore: number;
  readonly manifestAfter: number;
  /** The checkpoint this run restored from, if any. */
  readonly restoredFrom?: number;
  readonly inProgressFiles: number;
  readonly inProgressLines: number;
}

/** The highest checkpoint id under `dir` that has a `_metadata`, or 0. */
function newestManifest(dir: string): number {
  let newest = 0;
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    const m = /^chk-(\d+)$/.exec(name);
    if (m && Number(m[1]) > newest && existsSync(join(dir, name, '_metadata'))) newest = Number(m[1]);
  }
  return newest;
}

/** Polls (every turn of the event loop) until a checkpoint newer than `above` has a `_metadata`; undefined if `p` exits first. */
async function waitForManifest(dir: string, above: number, p: FloeProcess, timeoutMs: number): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (let id = above + 1; id <= above + 3; id++) if (existsSync(join(dir, `chk-${id}`, '_metadata'))) return id;
    if (p.exit) return undefined;
    if (Date.now() > deadline) throw new Error(`no checkpoint after ${above} wrote its _metadata within ${timeoutMs}ms; stderr:\n${p.stderr()}`);
    await new Promise<void>((r) => setImmediate(r));
  }
}

/** State files under the job's checkpoint directory (`shared/…` and `chk-<n>/…`), as `<dir>/<name>`. */
function sharedFiles(dir: string): Set<string> {
  const out = new Set<string>();
  for (const sub of existsSync(dir) ? readdirSync(dir) : []) {
    if (sub !== 'shared' && !sub.startsWith('chk-')) continue;
    for (const name of existsSync(join(dir, sub)) ? readdirSync(join(dir, sub)) : []) if (name !== '_metadata') out.add(`${sub}/${name}`);
  }
  return out;
}

/**
 * Polls (every turn of the event loop) until a checkpoint newer than `above` has started writing state (a file of it
 * that is not in `old`, left by an earlier run) but has no `_metadata`; undefined if `p` exits first.
 */
async function waitForCheckpointInFlight(dir: string, above: number, old: Set<string>, p: FloeProcess, timeoutMs: number): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const name of sharedFiles(dir)) {
      if (old.has(name)) continue;
      const id = Number(/^chk-(\d+)\//.exec(name)?.[1] ?? /-chk(\d+)-/.exec(name)?.[1] ?? 0);
      if (id > above && !existsSync(join(dir, `chk-${id}`, '_metadata'))) return id;
    }
    if (p.exit) return undefined;
    if (Date.now() > deadline) throw new Error(`no checkpoint after ${above} started writing state within ${timeoutMs}ms; stderr:\n${p.stderr()}`);
    await new Promise<void>((r) => setImmediate(r));
  }
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(random, 0, i);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

describe('floe run word count under SIGKILL', () => {
  let root: string;
  let input: WordInput;
  let oracle: Map<string, number>;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'floe-e2e-kill-'));
    // Enough input for 4-7 s of uninterrupted work at the embedded engine's speed (measured 170-300k words/s with
    // parallelism 3 on 2 cores), so six kills, each keeping at most a checkpoint or two of progress, cannot outrun it.
    const started = Date.now();
    input = await generateWordInput(join(root, 'input'), { seed: 7, files: 6, words: 1_200_000, vocabulary: 5_000 });
    oracle = await countWords(input.dir);
    log(`input: ${input.files.length} files, ${input.words} words, ${(input.bytes / 1e6).toFixed(1)} MB, ${oracle.size} distinct words (generated and counted in ${Date.now() - started}ms)`);
  });

  afterEach(async () => {
    await FloeProcess.killAll();
  });

  afterAll(async () => {
    await FloeProcess.killAll();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('commits every running count exactly once across SIGKILLs and restores from the latest checkpoint', async () => {
    // Given the input, a fresh output and checkpoint directory, and a seeded kill schedule
    const seed = process.env['FLOE_E2E_SEED'] !== undefined ? Number(process.env['FLOE_E2E_SEED']) : Math.floor(Math.random() * 2 ** 31);
    log(`kill schedule seed ${seed} (FLOE_E2E_SEED=${seed} to replay it)`);
    const random = mulberry32(seed);
    const work = await mkdtemp(join(root, 'run-'));
    const output = join(work, 'out');
    const checkpointDir = join(work, 'checkpoints');
    const checkpointsOfJob = join(checkpointDir, 'wordcount', 'checkpoints');
    const kinds = shuffle<KillKind>(['after-checkpoint', 'during-checkpoint', 'manifest-written', 'random-delay', 'early', KINDS[randomInt(random, 0, KINDS.length - 1)]!], random);
    const start = (fromLatest: boolean) =>
      FloeProcess.run({
        jobFile: JOB,
        checkpointInterval: INTERVAL,
        checkpointDir,
        ...(fromLatest ? { fromCheckpoint: 'latest' } : {}),
        jobArgs: ['--input', input.dir, '--output', output, '--parallelism', String(PARALLELISM)],
      });

    // When floe run is SIGKILLed at each scheduled moment and restarted with --from-checkpoint latest
    const kills: KillRecord[] = [];
    const runs: FloeProcess[] = [];
    let highestLoggedCheckpoint = 0;
    let uncommittedSeen: Array<{ word: string; n: number }> = [];
    for (const kind of kinds) {
      const manifestBefore = newestManifest(checkpointsOfJob);
      const sharedBefore = sharedFiles(checkpointsOfJob);
      const p = start(runs.length > 0);
      runs.push(p);
      const running = (await p.waitForLine(RUNNING, { timeoutMs: 30_000 }))!;
      let trigger: string;
      let finishedFirst = false;
      if (kind === 'after-checkpoint') {
        const nth = random() < 0.7 ? 1 : 2;
        const extra = randomInt(random, 0, 20);
        let from = running.index + 1;
        for (let i = 0; i < nth && !finishedFirst; i++) {
          const m = await p.waitForLine(COMPLETED, { from, timeoutMs: 30_000, orExit: true });
          if (!m) finishedFirst = true;
          else from = m.index + 1;
        }
        if (extra > 0) await sleep(extra);
        trigger = `checkpoint #${nth} of this run completed, +${extra}ms`;
      } else if (kind === 'during-checkpoint') {
        const id = await waitForCheckpointInFlight(checkpointsOfJob, manifestBefore, sharedBefore, p, 30_000);
        if (id === undefined) finishedFirst = true;
        trigger = `chk-${id} writing state, no _metadata yet`;
      } else if (kind === 'manifest-written') {
        const id = await waitForManifest(checkpointsOfJob, manifestBefore, p, 30_000);
        if (id === undefined) finishedFirst = true;
        trigger = `_metadata of chk-${id} appeared`;
      } else {
        const delay = kind === 'early' ? randomInt(random, 0, 80) : randomInt(random, 100, 900);
        await sleep(delay);
        trigger = `${delay}ms after the running line`;
      }
      const killedAtMs = p.elapsedMs() - running.line.atMs;
      if (!p.kill()) finishedFirst = true;
      const exit = await p.waitForExit(15_000);
      if (finishedFirst || exit.signal !== 'SIGKILL') {
        const why = exit.code === 0 ? 'the input is too small for this machine' : 'the job failed';
        throw new Error(`run ${runs.length} ended by itself (${describeExit(exit)}) before kill ${kills.length + 1} (${kind}): ${why}; stderr:\n${p.stderr()}`);
      }
      const completed = p.matching(COMPLETED).map((l) => Number(COMPLETED.exec(l.text)![1]));
      const manifestAfter = newestManifest(checkpointsOfJob);
      // The kill fell between the manifest and the commit: the restart must commit the manifest's pending files.
      const beforeCommit = manifestAfter > manifestBefore && !completed.includes(manifestAfter);
      if (beforeCommit) trigger += ` (before checkpoint ${manifestAfter} was reported completed)`;
      const restored = p.matching(RESTORED)[0];
      const restoredFrom = restored ? Number(RESTORED.exec(restored.text)![1]) : undefined;
      // A restart restores the newest checkpoint any earlier run reported completed (or a newer one whose manifest
      // was written just before the kill, without the log line).
      // (An early kill may land before the restore is logged.)
      if (highestLoggedCheckpoint > 0) {
        expect(p.matching(FROM_BEGINNING), `run ${runs.length} ignored checkpoint ${highestLoggedCheckpoint}; stderr:\n${p.stderr()}`).toEqual([]);
        if (restoredFrom !== undefined) expect(restoredFrom, `run ${runs.length}; stderr:\n${p.stderr()}`).toBeGreaterThanOrEqual(highestLoggedCheckpoint);
      }
      highestLoggedCheckpoint = Math.max(highestLoggedCheckpoint, ...completed);

      // At every kill, what is committed so far is already exactly-once: for each word a prefix 1..k of 1..N.
      const partial = compareWithOracle(await readCommittedOutput(output), oracle, { partial: true });
      expect(partial.ok, `after kill ${kills.length + 1}: ${describeDiff(partial)}`).toBe(true);
      // Output written but not committed when the process died: it must be ignored now and replayed later.
      const inProgress = await readInProgressOutput(output);
      uncommittedSeen = uncommittedSeen.concat(inProgress.lines);
      const record: KillRecord = {
        run: runs.length,
        kind,
        trigger,
        killedAtMs,
        completed,
        manifestBefore,
        manifestAfter,
        restoredFrom,
        inProgressFiles: inProgress.files.length,
        inProgressLines: inProgress.lines.length,
      };
      kills.push(record);
      log(
        `kill ${kills.length} (pid ${p.pid}, ${kind}: ${trigger}) ${killedAtMs}ms after start` +
          `${restoredFrom !== undefined ? `, restored from chk ${restoredFrom}` : p.matching(FROM_BEGINNING).length > 0 ? ', started from the beginning' : runs.length === 1 ? ', first run' : ', killed before the restore was logged'}` +
          `, checkpoints completed [${completed.join(', ')}], committed ${partial.lines}/${partial.expectedLines} lines` +
          `, ${inProgress.files.length} in-progress files with ${inProgress.lines.length} uncommitted lines`,
      );
    }

    // ...and finally allowed to finish
    const last = start(true);
    runs.push(last);
    const exit = await last.waitForExit(90_000);
    log(`final run (pid ${last.pid}): ${describeExit(exit)} after ${last.elapsedMs()}ms; ${last.matching(RESTORED)[0]?.text ?? 'no restore'}`);
    expect(exit, last.stderr()).toEqual({ code: 0, signal: null });
    expect(last.matching(FINISHED), last.stderr()).toHaveLength(1);

    // Then the committed output equals the oracle: no gap, no repeat
    const committed = await readCommittedOutput(output);
    const diff = compareWithOracle(committed, oracle);
    log(`${describeDiff(diff)}; ${committed.files.length} committed files`);
    expect(diff.ok, describeDiff(diff)).toBe(true);
    expect(committed.lines).toBe(input.words);

    // The kills were real: at least four, several after a checkpoint had completed, and the restarts resumed from one.
    expect(kills.length).toBeGreaterThanOrEqual(4);
    // Several runs completed a checkpoint of their own before they were killed, so there was progress to resume.
    expect(kills.filter((k) => k.manifestAfter > k.manifestBefore).length, JSON.stringify(kills)).toBeGreaterThanOrEqual(2);
    const restarts = runs.slice(1);
    const resumed = restarts.filter((r) => r.matching(RESTORED).length > 0);
    expect(resumed.length, restarts.map((r) => r.stderr()).join('\n---\n')).toBeGreaterThanOrEqual(2);
    expect(last.matching(RESTORED), last.stderr()).toHaveLength(1);

    // In-progress files are uncommitted: the reader skipped them, they held output when the process died, and every
    // line they held was later committed exactly once (by rename or by replay), so counting them would repeat it.
    expect(committed.files.every(isCommittedName)).toBe(true);
    expect(committed.files.some((f) => f.startsWith('.inprogress-'))).toBe(false);
    expect(uncommittedSeen.length, 'no kill caught uncommitted output in .inprogress- files').toBeGreaterThan(0);
    const notCommitted = uncommittedSeen.filter(({ word, n }) => !(committed.counts.get(word) ?? []).includes(n));
    expect(notCommitted.slice(0, 10), 'uncommitted lines seen at a kill that never got committed').toEqual([]);
    // A finished job leaves no uncommitted leftovers behind.
    expect((await readInProgressOutput(output)).files).toEqual([]);
  }, 120_000);

  it('--from-checkpoint latest with no checkpoint yet starts from the beginning and says so', async () => {
    // Given a small input and an empty checkpoint directory
    const work = await mkdtemp(join(root, 'fresh-'));
    const small = await generateWordInput(join(work, 'input'), { seed: 11, files: 2, words: 20_000, vocabulary: 500 });
    const smallOracle = await countWords(small.dir);
    const checkpointDir = join(work, 'checkpoints');
    const output = join(work, 'out');

    // When floe run starts with --from-checkpoint latest
    const p = FloeProcess.run({
      jobFile: JOB,
      checkpointInterval: INTERVAL,
      checkpointDir,
      fromCheckpoint: 'latest',
      jobArgs: ['--input', small.dir, '--output', output, '--parallelism', '2'],
    });
    const exit = await p.waitForExit(60_000);

    // Then it says there was nothing to restore, starts from the beginning, and commits the whole count exactly once
    expect(exit, p.stderr()).toEqual({ code: 0, signal: null });
    const expected = `[floe] no completed checkpoint under ${join(checkpointDir, 'wordcount', 'checkpoints')}: starting from the beginning`;
    expect(p.lines.map((l) => l.text)).toContain(expected);
    expect(p.matching(/restored from/), p.stderr()).toEqual([]);
    expect(p.matching(FINISHED), p.stderr()).toHaveLength(1);
    const diff = compareWithOracle(await readCommittedOutput(output), smallOracle);
    expect(diff.ok, describeDiff(diff)).toBe(true);
  }, 60_000);
});
