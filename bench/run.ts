/**
 * Floe's embedded-runtime benchmark: word-count throughput with checkpointing off and every second, checkpoint
 * duration and size, restore time, and an incremental checkpoint of a large, mostly unchanged keyed state; on moto
 * server, AWS requests and costs of the word count (aws.ts) and of an SQS and a Kinesis source drained and idle
 * (sources.ts).
 * Prints a table with targets and writes everything to `bench/results/latest.json`.
 *
 *   npm run bench                 full mode (a few minutes)
 *   npm run bench -- --quick      quick mode (about a minute); BENCH_QUICK=1 does the same
 *   npm run bench -- --help       every option
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Session } from 'node:inspector/promises';
import { EmbeddedRunner } from '../lib/index.js';
import type { CheckpointRecord } from '../lib/core/coordinator/types.js';
import { keyedStateJob, sinkCounter, wordCountJob } from './jobs.js';
import { formatSummary, summarizeProfile, type CpuProfile, type HotSpot } from './profile-summary.js';
import { AWS_PRICES, CHECKPOINT_RUN_LINES_PER_SECOND, awsSection } from './aws.js';
import { ESM_IDLE_RECEIVES_PER_MINUTE, IDLE_PRICES, idleSection, rateSection, type IdleSectionResult } from './idle.js';
import { scaleCost, sourcesSection } from './sources.js';
import { bytes, checkpointNow, fmt, median, range, sleep, stop, tempDir, waitUntil } from './harness.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

const HELP = `usage: npm run bench -- [options]

  --quick                 short runs (about a minute); also BENCH_QUICK=1
  --runs <n>              throughput runs per mode (off / every interval)      [quick 3, full 5]
  --warmup <ms>           warm-up before each throughput measurement           [quick 1000, full 2000]
  --measure <ms>          measured time of each throughput run                 [quick 3500, full 6000]
  --interval <ms>         checkpoint interval of the "on" runs                 [1000]
  --parallelism <n>       parallelism of every operator                        [2]
  --vocabulary <n>        distinct words                                       [10000]
  --words-per-line <n>    words per generated line                             [10]
  --queue-capacity <n>    envelopes an in-process channel holds (EmbeddedRunOptions.queueCapacity) [engine default]
  --sink <discard|files>  word-count sink: count and drop, or exactly-once files in a temp dir [discard]
  --restore-keys <n>      keys in the state restored for the restore timing    [quick 200000, full 1000000]
  --restore-runs <n>      restores timed (from the same checkpoint)            [quick 2, full 3]
  --incremental-keys <n>  keys of state for the incremental checkpoint         [1000000]
  --changed <fraction>    fraction of those keys updated between the two checkpoints [0.005]
  --only <list>           comma-separated sections: probe,throughput,restore,incremental,aws,sources,idle,rate [all]
  --aws / --no-aws        run the sections on moto server (emulator mode; moto is started by the bench):
                          aws, sources, idle and rate                          [on]
  --aws-words <n>         words the AWS cost run counts at steady state        [quick 100000, full 300000]
  --aws-fill <n>          words counted first, to create the keys (reported apart) [5 x vocabulary]
  --aws-source-chunk <n>  lines a source subtask reads per step in the AWS cost run [1000, emulator mode's default]
  --aws-backlog <n>       messages per downstream subtask above which sources hold off (backpressure;
                          EmulatorRunOptions.maxDownstreamBacklog; Infinity: off) [emulator mode's default, 4]
  --aws-cap <ms>          time allowed per parallelism for the AWS checkpoint runs [quick 60000, full 180000]
  --aws-parallelisms <l>  comma-separated parallelisms of the AWS checkpoint runs [1,4,16]
  --no-aws-cost           skip the AWS cost run (checkpoint durations only)
  --sources-messages <n>  messages (records) the sources section's drain runs read from an SQS queue and from a
                          2-shard Kinesis stream                                  [quick 800, full 2000]
  --sources-idle <ms>     the sources section's idle window, once the job is quiet and backed off [quick 30000, full 120000]
  --sources-runs <n>      drain and idle runs of the sources section, each (medians)      [quick 1, full 3]
  --sources-interval <ms> checkpoint interval of the sources section's job                [2000]
  --idle-window <ms>      the idle section's measured window: the orders job over an empty queue, once it is
                          quiet and its source backed off (scale to zero)                 [quick 300000, full 3600000]
  --rate <n>              the rate section's orders a second into the same job's queue (moto keeps up with 2) [2]
  --rate-window <ms>      the rate section's measured window, after a minute of warm-up   [quick 120000, full 600000]
  --rate-interval <ms>    the rate section's checkpoint interval (on AWS: a divisor of a minute, or whole minutes) [60000]
  --out <file>            JSON results                                         [bench/results/latest.json]
  --profile               CPU-profile each section: bench/results/profile-<section>.cpuprofile, plus a
                          summary of the hottest functions (profiling slows the runs; ratios stay comparable)
`;

interface Config {
  readonly quick: boolean;
  readonly runs: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  readonly intervalMs: number;
  readonly parallelism: number;
  readonly vocabulary: number;
  readonly wordsPerLine: number;
  readonly sink: 'discard' | 'files';
  readonly queueCapacity: number | undefined;
  readonly restoreKeys: number;
  readonly restoreRuns: number;
  readonly incrementalKeys: number;
  readonly changedFraction: number;
  readonly probeMs: number;
  readonly sections: ReadonlySet<string>;
  readonly out: string;
  readonly profile: boolean;
  readonly aws: boolean;
  readonly awsWords: number;
  readonly awsFillWords: number;
  readonly awsSourceChunk: number;
  readonly awsBacklog: number | undefined;
  readonly awsCapMs: number;
  readonly awsParallelisms: readonly number[];
  readonly awsCost: boolean;
  readonly sourcesMessages: number;
  readonly sourcesIdleMs: number;
  readonly sourcesRuns: number;
  readonly sourcesIntervalMs: number;
  readonly idleWindowMs: number;
  readonly rate: number;
  readonly rateWindowMs: number;
  readonly rateIntervalMs: number;
}

function readConfig(): Config {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      warmup: { type: 'string' },
      measure: { type: 'string' },
      interval: { type: 'string' },
      parallelism: { type: 'string' },
      vocabulary: { type: 'string' },
      'words-per-line': { type: 'string' },
      sink: { type: 'string' },
      'queue-capacity': { type: 'string' },
      'restore-keys': { type: 'string' },
      'restore-runs': { type: 'string' },
      'incremental-keys': { type: 'string' },
      changed: { type: 'string' },
      only: { type: 'string' },
      out: { type: 'string' },
      profile: { type: 'boolean', default: false },
      aws: { type: 'boolean', default: true },
      'no-aws': { type: 'boolean', default: false },
      'aws-words': { type: 'string' },
      'aws-fill': { type: 'string' },
      'aws-source-chunk': { type: 'string' },
      'aws-backlog': { type: 'string' },
      'aws-cap': { type: 'string' },
      'aws-parallelisms': { type: 'string' },
      'no-aws-cost': { type: 'boolean', default: false },
      'sources-messages': { type: 'string' },
      'sources-idle': { type: 'string' },
      'sources-runs': { type: 'string' },
      'sources-interval': { type: 'string' },
      'idle-window': { type: 'string' },
      rate: { type: 'string' },
      'rate-window': { type: 'string' },
      'rate-interval': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const quick = values.quick || process.env.BENCH_QUICK === '1' || process.env.BENCH_QUICK === 'true';
  const num = (name: string, text: string | undefined, fallback: number, min: number): number => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}, got '${text}'`);
    return n;
  };
  const vocabulary = num('vocabulary', values.vocabulary, 10_000, 1);
  const sink = values.sink ?? 'discard';
  if (sink !== 'discard' && sink !== 'files') throw new Error(`--sink must be discard or files, got '${sink}'`);
  const all = ['probe', 'throughput', 'restore', 'incremental', 'aws', 'sources', 'idle', 'rate'];
  const only = values.only ? values.only.split(',').map((s) => s.trim()) : all;
  for (const s of only) if (!all.includes(s)) throw new Error(`--only: unknown section '${s}' (known: ${all.join(', ')})`);
  const changedFraction = num('changed', values.changed, 0.005, 0);
  if (changedFraction <= 0 || changedFraction > 1) throw new Error(`--changed must be in (0, 1], got ${changedFraction}`);
  return {
    quick,
    runs: num('runs', values.runs, quick ? 3 : 5, 1),
    warmupMs: num('warmup', values.warmup, quick ? 1000 : 2000, 0),
    measureMs: num('measure', values.measure, quick ? 3500 : 6000, 100),
    intervalMs: num('interval', values.interval, 1000, 1),
    parallelism: num('parallelism', values.parallelism, 2, 1),
    vocabulary,
    wordsPerLine: num('words-per-line', values['words-per-line'], 10, 1),
    sink,
    queueCapacity: values['queue-capacity'] === undefined ? undefined : num('queue-capacity', values['queue-capacity'], 64, 1),
    restoreKeys: num('restore-keys', values['restore-keys'], quick ? 200_000 : 1_000_000, 1),
    restoreRuns: num('restore-runs', values['restore-runs'], quick ? 2 : 3, 1),
    incrementalKeys: num('incremental-keys', values['incremental-keys'], 1_000_000, 1),
    changedFraction,
    probeMs: quick ? 2000 : 3000,
    // --no-aws leaves out everything that runs on moto.
    sections: new Set(only.filter((s) => !['sources', 'idle', 'rate'].includes(s) || (values.aws && !values['no-aws']))),
    out: values.out ?? join(BENCH_DIR, 'results', 'latest.json'),
    profile: values.profile,
    aws: values.aws && !values['no-aws'] && (values.only === undefined || only.includes('aws')),
    awsWords: num('aws-words', values['aws-words'], quick ? 100_000 : 300_000, 10),
    awsFillWords: num('aws-fill', values['aws-fill'], 5 * vocabulary, 0),
    awsSourceChunk: num('aws-source-chunk', values['aws-source-chunk'], 1000, 1),
    awsBacklog: values['aws-backlog'] === undefined ? undefined : values['aws-backlog'] === 'Infinity' ? Infinity : num('aws-backlog', values['aws-backlog'], 0, 1),
    awsCapMs: num('aws-cap', values['aws-cap'], quick ? 60_000 : 180_000, 1000),
    awsParallelisms: (values['aws-parallelisms'] ?? '1,4,16').split(',').map((t) => {
      const n = Number(t.trim());
      if (!Number.isInteger(n) || n < 1) throw new Error(`--aws-parallelisms must list integers >= 1, got '${values['aws-parallelisms']}'`);
      return n;
    }),
    awsCost: !values['no-aws-cost'],
    sourcesMessages: num('sources-messages', values['sources-messages'], quick ? 800 : 2000, 10),
    sourcesIdleMs: num('sources-idle', values['sources-idle'], quick ? 30_000 : 120_000, 1000),
    sourcesRuns: num('sources-runs', values['sources-runs'], quick ? 1 : 3, 1),
    sourcesIntervalMs: num('sources-interval', values['sources-interval'], 2000, 100),
    idleWindowMs: num('idle-window', values['idle-window'], quick ? 300_000 : 3_600_000, 10_000),
    rate: num('rate', values.rate, 2, 0.1),
    rateWindowMs: num('rate-window', values['rate-window'], quick ? 120_000 : 600_000, 10_000),
    rateIntervalMs: num('rate-interval', values['rate-interval'], 60_000, 1000),
  };
}

/** Best-effort full GC between runs, so one run's garbage is not collected on the next one's clock. */
const collectGarbage: () => void = (() => {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    return () => gc();
  } catch {
    return () => {};
  }
})();

/** Runs `fn` under the V8 CPU profiler when asked; saves the profile next to the results and summarizes it. */
async function profiled<T>(cfg: Config, section: string, fn: () => Promise<T>): Promise<{ value: T; hotSpots?: HotSpot[]; summary?: string }> {
  if (!cfg.profile) return { value: await fn() };
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  await session.post('Profiler.start');
  try {
    const value = await fn();
    const { profile } = (await session.post('Profiler.stop')) as { profile: CpuProfile };
    const file = join(dirname(cfg.out), `profile-${section}.cpuprofile`);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify(profile));
    const s = summarizeProfile(profile);
    return { value, hotSpots: s.spots.slice(0, 40), summary: formatSummary(`profile ${section} (${relative(process.cwd(), file)})`, s, 15) };
  } finally {
    session.disconnect();
  }
}

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

/** One checkpoint as the coordinator recorded it, with the slowest subtask's phases. */
interface CheckpointSample {
  readonly id: number;
  readonly durationMs: number;
  readonly stateSize: number;
  readonly fullSize: number;
  /** Slowest subtask: barrier injected → barrier reached it (alignment start). */
  readonly startDelayMs: number;
  readonly alignmentMs: number;
  /** Synchronous capture at the barrier (blocks the subtask). */
  readonly syncMs: number;
  /** Asynchronous state-file writes. */
  readonly asyncMs: number;
  /** Last subtask ack → manifest written and checkpoint completed. */
  readonly finalizeMs: number;
  /** Keyed entries written, over all subtasks (the changed keys, for an incremental checkpoint). */
  readonly entriesWritten: number;
}

function checkpointSample(r: CheckpointRecord): CheckpointSample {
  let startDelayMs = 0, alignmentMs = 0, syncMs = 0, asyncMs = 0, lastAck = r.triggeredAt, entriesWritten = 0;
  for (const ack of Object.values(r.acks)) {
    lastAck = Math.max(lastAck, ack.ackTimestamp);
    for (const snap of Object.values(ack.operators)) {
      startDelayMs = Math.max(startDelayMs, snap.stats.startDelayMs);
      alignmentMs = Math.max(alignmentMs, snap.stats.alignmentMs);
      syncMs = Math.max(syncMs, snap.stats.syncMs);
      asyncMs = Math.max(asyncMs, snap.stats.asyncMs);
      // The last handle of a chain is the file this checkpoint wrote, when it wrote one.
      if (snap.stats.stateSize > 0) entriesWritten += snap.keyedState[snap.keyedState.length - 1]?.entries ?? 0;
    }
  }
  return {
    id: r.id,
    durationMs: (r.finishedAt ?? NaN) - r.triggeredAt,
    stateSize: r.stateSize,
    fullSize: r.fullSize,
    startDelayMs,
    alignmentMs,
    syncMs,
    asyncMs,
    finalizeMs: (r.finishedAt ?? NaN) - lastAck,
    entriesWritten,
  };
}

function completedCheckpoints(runner: EmbeddedRunner): CheckpointSample[] {
  return runner
    .coordinatorState()
    .history.filter((h) => h.status === 'COMPLETED' && h.kind === 'checkpoint')
    .map(checkpointSample)
    .sort((a, b) => a.id - b.id);
}

function recordsInOf(runner: EmbeddedRunner, uid: string): number {
  const vertex = runner.plan.vertices.find((v) => v.operators.some((o) => o.uid === uid))!;
  return runner.overview().vertices.find((v) => v.id === vertex.id)!.recordsIn;
}

// ---------------------------------------------------------------------------------------------------------------
// Probe: does the embedded runner let timers run while a source always has data?

interface ProbeResult {
  readonly runMs: number;
  readonly words: number;
  /** How late a 50 ms timer set halfway through the run fired; when it only fired after the stop, a lower bound. */
  readonly timerLatenessMs: number;
  readonly timerFiredBeforeStop: boolean;
  readonly checkpointsCompleted: number;
  readonly expectedCheckpoints: number;
}

async function probe(cfg: Config): Promise<ProbeResult> {
  const dir = await tempDir('probe');
  try {
    const counter = sinkCounter();
    const job = wordCountJob({
      parallelism: cfg.parallelism,
      vocabularySize: cfg.vocabulary,
      wordsPerLine: cfg.wordsPerLine,
      checkpoint: { interval: cfg.intervalMs, dir: join(dir.path, 'checkpoints') },
      sink: 'discard',
      counter,
      yieldToEventLoop: false,
    });
    const runner = new EmbeddedRunner(job, { queueCapacity: cfg.queueCapacity });
    const t0 = performance.now();
    let timerSetAt: number | undefined;
    let timerFiredAt: number | undefined;
    let stoppedAt: number | undefined;
    let stopping: Promise<void> | undefined;
    // Everything happens from inside the sink: a timer-based schedule would never run if timers are starved.
    counter.onWrite = () => {
      const now = performance.now();
      if (timerSetAt === undefined && now - t0 >= cfg.probeMs / 2) {
        timerSetAt = now;
        setTimeout(() => (timerFiredAt = performance.now()), 50);
      }
      if (!stopping && now - t0 >= cfg.probeMs) {
        stoppedAt = now;
        stopping = runner.cancel();
      }
    };
    const outcome = await runner.run();
    const runMs = performance.now() - t0;
    await stopping;
    if (outcome.state === 'FAILED') throw new Error(`probe job failed: ${outcome.error?.message}`);
    await sleep(60);
    const setAt = timerSetAt ?? t0;
    const firedBeforeStop = timerFiredAt !== undefined && stoppedAt !== undefined && timerFiredAt <= stoppedAt;
    return {
      runMs,
      words: counter.records,
      timerLatenessMs: (firedBeforeStop ? timerFiredAt! : (stoppedAt ?? performance.now())) - setAt - 50,
      timerFiredBeforeStop: firedBeforeStop,
      checkpointsCompleted: completedCheckpoints(runner).length,
      expectedCheckpoints: Math.floor(runMs / cfg.intervalMs),
    };
  } finally {
    await dir.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Word-count throughput, checkpointing off vs on, interleaved.

interface ThroughputRun {
  readonly mode: 'off' | 'on';
  readonly order: number;
  readonly wordsPerSecond: number;
  readonly linesPerSecond: number;
  readonly measuredMs: number;
  readonly checkpointsCompleted: number;
  readonly checkpointsFailed: number;
  readonly checkpoints: CheckpointSample[];
}

async function throughputRun(cfg: Config, mode: 'off' | 'on', order: number): Promise<ThroughputRun> {
  const dir = await tempDir(`wc-${mode}`);
  try {
    const counter = sinkCounter();
    const job = wordCountJob({
      parallelism: cfg.parallelism,
      vocabularySize: cfg.vocabulary,
      wordsPerLine: cfg.wordsPerLine,
      checkpoint: { interval: mode === 'on' ? cfg.intervalMs : 0, dir: join(dir.path, 'checkpoints'), retained: 1 },
      sink: cfg.sink,
      outputDir: join(dir.path, 'out'),
      counter,
    });
    const runner = new EmbeddedRunner(job, { queueCapacity: cfg.queueCapacity });
    const run = runner.run();
    await sleep(cfg.warmupMs);
    const w0 = recordsInOf(runner, 'count');
    const l0 = recordsInOf(runner, 'lines');
    const t0 = performance.now();
    const before = new Set(completedCheckpoints(runner).map((c) => c.id));
    await sleep(cfg.measureMs);
    const w1 = recordsInOf(runner, 'count');
    const l1 = recordsInOf(runner, 'lines');
    const t1 = performance.now();
    const state = runner.coordinatorState();
    const checkpoints = completedCheckpoints(runner).filter((c) => !before.has(c.id));
    const failed = state.history.filter((h) => h.status === 'FAILED').length;
    await stop(runner, run);
    const seconds = (t1 - t0) / 1000;
    return {
      mode,
      order,
      wordsPerSecond: (w1 - w0) / seconds,
      linesPerSecond: (l1 - l0) / seconds,
      measuredMs: t1 - t0,
      checkpointsCompleted: checkpoints.length,
      checkpointsFailed: failed,
      checkpoints,
    };
  } finally {
    await dir.dispose();
  }
}

async function throughput(cfg: Config): Promise<ThroughputRun[]> {
  const runs: ThroughputRun[] = [];
  let order = 0;
  for (let i = 0; i < cfg.runs; i++) {
    // Alternate which mode goes first, so drift (thermal, other load) hits both alike.
    for (const mode of i % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
      collectGarbage();
      const r = await throughputRun(cfg, mode, order++);
      log(`throughput ${mode.padEnd(3)} run ${i + 1}/${cfg.runs}: ${fmt(r.wordsPerSecond)} words/s, ${r.checkpointsCompleted} checkpoints completed`);
      runs.push(r);
    }
  }
  return runs;
}

// ---------------------------------------------------------------------------------------------------------------
// Restore time.

interface RestoreResult {
  readonly keys: number;
  readonly buildKeysPerSecond: number;
  readonly checkpoint: CheckpointSample;
  readonly runs: {
    /** run() called → "restored from" logged: manifest read, state files read and parsed into memory. */
    readonly restorePhaseMs: number;
    /** run() called → the first record reached the sink. */
    readonly firstRecordMs: number;
    /** The first output came from restored state (a count above 1). */
    readonly stateVerified: boolean;
  }[];
}

/** Runs the keyed-state job until `keys` distinct keys exist; returns the runner, its run and the build rate. */
async function buildKeyedState(cfg: Config, keys: number, hotKeys: number, checkpointDir: string) {
  const counter = sinkCounter();
  const job = keyedStateJob({ parallelism: cfg.parallelism, keys, hotKeys, checkpoint: { interval: 0, dir: checkpointDir, retained: 2, incremental: true }, counter });
  const runner = new EmbeddedRunner(job, { queueCapacity: cfg.queueCapacity });
  const t0 = performance.now();
  const run = runner.run();
  await waitUntil(`${fmt(keys)} keys of state`, () => counter.records >= keys, 600_000, 20);
  return { runner, run, counter, keysPerSecond: keys / ((performance.now() - t0) / 1000) };
}

async function restore(cfg: Config): Promise<RestoreResult> {
  const dir = await tempDir('restore');
  try {
    const keys = cfg.restoreKeys;
    const hotKeys = Math.max(1, Math.min(1000, keys));
    collectGarbage();
    const built = await buildKeyedState(cfg, keys, hotKeys, join(dir.path, 'checkpoints'));
    const chk = await checkpointNow(built.runner, 600_000);
    const checkpoint = completedCheckpoints(built.runner).find((c) => c.id === chk.id)!;
    await stop(built.runner, built.run);
    log(`restore: built ${fmt(keys)} keys at ${fmt(built.keysPerSecond)} keys/s; checkpoint ${chk.id} ${bytes(checkpoint.fullSize)} in ${fmt(checkpoint.durationMs)} ms`);
    const runs: RestoreResult['runs'][number][] = [];
    for (let i = 0; i < cfg.restoreRuns; i++) {
      collectGarbage();
      const counter = sinkCounter();
      const job = keyedStateJob({ parallelism: cfg.parallelism, keys, hotKeys, checkpoint: { interval: 0, dir: join(dir.path, `restored-${i}`) }, counter, sampleSize: 1 });
      let restoredAt: number | undefined;
      const runner = new EmbeddedRunner(job, {
        queueCapacity: cfg.queueCapacity,
        restore: { kind: 'path', path: chk.location },
        log: (m) => {
          if (restoredAt === undefined && m.startsWith('restored from')) restoredAt = performance.now();
        },
      });
      const t0 = performance.now();
      const run = runner.run();
      await waitUntil('the first record after restore', () => counter.firstRecordAt !== undefined, 600_000, 1);
      const result = { restorePhaseMs: (restoredAt ?? NaN) - t0, firstRecordMs: counter.firstRecordAt! - t0, stateVerified: typeof counter.sample[0] === 'number' && counter.sample[0] > 1 };
      await stop(runner, run);
      log(`restore run ${i + 1}/${cfg.restoreRuns}: restore phase ${fmt(result.restorePhaseMs)} ms, first record ${fmt(result.firstRecordMs)} ms`);
      runs.push(result);
    }
    return { keys, buildKeysPerSecond: built.keysPerSecond, checkpoint, runs };
  } finally {
    await dir.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Incremental checkpoint of a large state with few changes.

interface IncrementalResult {
  readonly keys: number;
  readonly hotKeys: number;
  readonly buildKeysPerSecond: number;
  readonly full: CheckpointSample;
  readonly incremental: CheckpointSample;
  /** Keys changed between the two checkpoints, as a fraction of all keys. */
  readonly changedFraction: number;
}

async function incremental(cfg: Config): Promise<IncrementalResult> {
  const dir = await tempDir('incremental');
  try {
    const keys = cfg.incrementalKeys;
    const hotKeys = Math.max(1, Math.floor(keys * cfg.changedFraction));
    collectGarbage();
    const built = await buildKeyedState(cfg, keys, hotKeys, join(dir.path, 'checkpoints'));
    log(`incremental: built ${fmt(keys)} keys at ${fmt(built.keysPerSecond)} keys/s`);
    // Every key exists and the source has moved on to the hot keys only: the first checkpoint is full, the second
    // holds at most `hotKeys` changed keys.
    const a = await checkpointNow(built.runner, 600_000);
    await sleep(500);
    const b = await checkpointNow(built.runner, 600_000);
    const samples = completedCheckpoints(built.runner);
    await stop(built.runner, built.run);
    const full = samples.find((c) => c.id === a.id)!;
    const inc = samples.find((c) => c.id === b.id)!;
    log(`incremental: full ${bytes(full.stateSize)} in ${fmt(full.durationMs)} ms; incremental ${bytes(inc.stateSize)} of ${bytes(inc.fullSize)} in ${fmt(inc.durationMs)} ms`);
    return { keys, hotKeys, buildKeysPerSecond: built.keysPerSecond, full, incremental: inc, changedFraction: inc.entriesWritten / keys };
  } finally {
    await dir.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Report.

interface Row {
  readonly section: string;
  readonly metric: string;
  readonly value: string;
  readonly target?: string;
  readonly pass?: boolean;
}

function table(rows: readonly Row[]): string {
  const cells = rows.map((r) => [r.section, r.metric, r.value, r.target ?? '', r.pass === undefined ? '' : r.pass ? 'PASS' : 'MISS']);
  const head = ['section', 'metric', 'value', 'target', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]) => c.map((x, i) => (i === 2 ? x.padStart(widths[i]!) : x.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

const ms = (n: number) => `${fmt(n, n < 10 ? 1 : 0)} ms`;

async function main(): Promise<void> {
  const cfg = readConfig();
  const startedAt = new Date();
  const loadBefore = loadavg();
  log(`${cfg.quick ? 'quick' : 'full'} mode; ${cpus().length} cores, load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
  const rows: Row[] = [];
  const results: Record<string, unknown> = {};
  const profiles: Record<string, HotSpot[]> = {};
  const summaries: string[] = [];
  const section = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const r = await profiled(cfg, name, fn);
    if (r.hotSpots) profiles[name] = r.hotSpots;
    if (r.summary) summaries.push(r.summary);
    return r.value;
  };

  if (cfg.sections.has('probe')) {
    log('probe: raw generator (never yields), checkpoint interval set, stopped from inside the sink');
    const p = await section('probe', () => probe(cfg));
    results.probe = p;
    rows.push(
      {
        section: 'probe',
        metric: 'lateness of a 50 ms timer set mid-run (raw generator)',
        value: `${p.timerFiredBeforeStop ? '' : '>= '}${ms(p.timerLatenessMs)}`,
        target: '< 100 ms',
        pass: p.timerFiredBeforeStop && p.timerLatenessMs < 100,
      },
      {
        section: 'probe',
        metric: `checkpoints completed in ${fmt(p.runMs / 1000, 1)} s (raw generator)`,
        value: `${p.checkpointsCompleted}`,
        target: `>= ${Math.max(1, p.expectedCheckpoints - 1)}`,
        pass: p.checkpointsCompleted >= Math.max(1, p.expectedCheckpoints - 1),
      },
    );
  }

  if (cfg.sections.has('throughput')) {
    const runs = await section('throughput', () => throughput(cfg));
    const off = runs.filter((r) => r.mode === 'off');
    const on = runs.filter((r) => r.mode === 'on');
    const medOff = median(off.map((r) => r.wordsPerSecond));
    const medOn = median(on.map((r) => r.wordsPerSecond));
    const ratio = medOn / medOff;
    const checkpoints = on.flatMap((r) => r.checkpoints);
    const measuredS = median(on.map((r) => r.measuredMs)) / 1000;
    const perRun = median(on.map((r) => r.checkpointsCompleted));
    const expectedPerRun = Math.floor((measuredS * 1000) / cfg.intervalMs);
    const checkpointsKeptUp = perRun >= Math.max(1, expectedPerRun - 1);
    const summary = {
      wordsPerSecondOff: medOff,
      wordsPerSecondOn: medOn,
      rangeOff: range(off.map((r) => r.wordsPerSecond)),
      rangeOn: range(on.map((r) => r.wordsPerSecond)),
      ratio,
      checkpointsPerRunMedian: perRun,
      checkpointsPerRunExpected: expectedPerRun,
      checkpoint: {
        count: checkpoints.length,
        durationMs: median(checkpoints.map((c) => c.durationMs)),
        durationRangeMs: range(checkpoints.map((c) => c.durationMs)),
        stateSize: median(checkpoints.map((c) => c.stateSize)),
        fullSize: median(checkpoints.map((c) => c.fullSize)),
        startDelayMs: median(checkpoints.map((c) => c.startDelayMs)),
        alignmentMs: median(checkpoints.map((c) => c.alignmentMs)),
        syncMs: median(checkpoints.map((c) => c.syncMs)),
        asyncMs: median(checkpoints.map((c) => c.asyncMs)),
        finalizeMs: median(checkpoints.map((c) => c.finalizeMs)),
      },
    };
    results.throughput = { summary, runs };
    const [loOff, hiOff] = summary.rangeOff;
    const [loOn, hiOn] = summary.rangeOn;
    const c = summary.checkpoint;
    rows.push(
      { section: 'wordcount', metric: `words/s, checkpointing off (median of ${off.length}; min..max)`, value: `${fmt(medOff)} (${fmt(loOff)}..${fmt(hiOff)})` },
      { section: 'wordcount', metric: `words/s, checkpoint every ${fmt(cfg.intervalMs)} ms (median of ${on.length}; min..max)`, value: `${fmt(medOn)} (${fmt(loOn)}..${fmt(hiOn)})` },
      {
        section: 'wordcount',
        metric: `checkpoints completed per ${fmt(measuredS, 1)} s run (median)`,
        value: fmt(perRun, 1),
        target: `>= ${Math.max(1, expectedPerRun - 1)}`,
        pass: checkpointsKeptUp,
      },
      {
        section: 'wordcount',
        // The ratio only prices checkpointing if checkpoints actually ran at about the interval.
        metric: 'throughput ratio, on / off (counts only if checkpoints kept up)',
        value: fmt(ratio, 3),
        target: '>= 0.900',
        pass: ratio >= 0.9 && checkpointsKeptUp,
      },
      { section: 'checkpoint', metric: `end-to-end duration, median of ${c.count} (min..max)`, value: `${ms(c.durationMs)} (${fmt(c.durationRangeMs[0])}..${fmt(c.durationRangeMs[1])})`, target: `< ${fmt(cfg.intervalMs)} ms`, pass: c.durationMs < cfg.intervalMs },
      { section: 'checkpoint', metric: 'phases (slowest subtask): start delay / alignment / sync / async / finalize', value: [c.startDelayMs, c.alignmentMs, c.syncMs, c.asyncMs, c.finalizeMs].map((x) => fmt(x)).join(' / ') + ' ms' },
      { section: 'checkpoint', metric: 'stateSize (written) / fullSize (referenced), median', value: `${bytes(c.stateSize)} / ${bytes(c.fullSize)}` },
    );
  }

  if (cfg.sections.has('restore')) {
    const r = await section('restore', () => restore(cfg));
    results.restore = r;
    const phase = median(r.runs.map((x) => x.restorePhaseMs));
    const first = median(r.runs.map((x) => x.firstRecordMs));
    rows.push(
      { section: 'restore', metric: `checkpoint of ${fmt(r.keys)} keys: size / time to take`, value: `${bytes(r.checkpoint.fullSize)} / ${ms(r.checkpoint.durationMs)}` },
      { section: 'restore', metric: `restore phase (run() → state loaded), median of ${r.runs.length}`, value: `${ms(phase)} (${fmt(r.keys / (phase / 1000))} keys/s, ${fmt(r.checkpoint.fullSize / 1024 / 1024 / (phase / 1000), 1)} MiB/s)` },
      { section: 'restore', metric: `start → first record out, median of ${r.runs.length}`, value: ms(first) },
      { section: 'restore', metric: 'restored state seen in the first output', value: r.runs.every((x) => x.stateVerified) ? 'yes' : 'no', target: 'yes', pass: r.runs.every((x) => x.stateVerified) },
    );
  }

  if (cfg.sections.has('incremental')) {
    const r = await section('incremental', () => incremental(cfg));
    results.incremental = r;
    rows.push(
      { section: 'incremental', metric: `build ${fmt(r.keys)} keys (keyed value state)`, value: `${fmt(r.buildKeysPerSecond)} keys/s` },
      { section: 'incremental', metric: 'first (full) checkpoint: duration / written', value: `${ms(r.full.durationMs)} / ${bytes(r.full.stateSize)}` },
      {
        section: 'incremental',
        metric: 'full phases: start delay / alignment / sync / async / finalize',
        value: [r.full.startDelayMs, r.full.alignmentMs, r.full.syncMs, r.full.asyncMs, r.full.finalizeMs].map((x) => fmt(x)).join(' / ') + ' ms',
      },
      { section: 'incremental', metric: 'keys changed before the second checkpoint', value: `${fmt(r.incremental.entriesWritten)} (${fmt(100 * r.changedFraction, 2)}%)`, target: '< 1%', pass: r.changedFraction < 0.01 },
      { section: 'incremental', metric: 'incremental checkpoint end-to-end duration', value: ms(r.incremental.durationMs), target: '< 1,000 ms', pass: r.incremental.durationMs < 1000 },
      {
        section: 'incremental',
        metric: 'incremental phases: start delay / alignment / sync / async / finalize',
        value: [r.incremental.startDelayMs, r.incremental.alignmentMs, r.incremental.syncMs, r.incremental.asyncMs, r.incremental.finalizeMs].map((x) => fmt(x)).join(' / ') + ' ms',
      },
      {
        section: 'incremental',
        metric: 'bytes written / full size (ratio)',
        value: `${bytes(r.incremental.stateSize)} / ${bytes(r.incremental.fullSize)} (${fmt((100 * r.incremental.stateSize) / r.incremental.fullSize, 2)}%)`,
        target: '< 5%',
        pass: r.incremental.stateSize / r.incremental.fullSize < 0.05,
      },
    );
  }

  if (cfg.aws) {
    const r = await section('aws', () =>
      awsSection({
        words: cfg.awsWords,
        fillWords: cfg.awsFillWords,
        sourceChunkSize: cfg.awsSourceChunk,
        ...(cfg.awsBacklog === undefined ? {} : { maxDownstreamBacklog: cfg.awsBacklog }),
        vocabulary: cfg.vocabulary,
        wordsPerLine: cfg.wordsPerLine,
        parallelism: cfg.parallelism,
        intervalMs: 2000,
        checkpointParallelisms: cfg.awsParallelisms,
        cost: cfg.awsCost,
        checkpointsPerRun: 3,
        timeoutMs: cfg.awsCapMs,
      }),
    );
    results.aws = { ...r, prices: AWS_PRICES };
    const c = r.cost;
    if (c) {
      const p = c.per1000;
      const usd = (n: number) => `$${n < 0.1 ? n.toFixed(4) : n.toFixed(3)}`;
      const sfnWork = c.stepFunctions;
      rows.push(
        {
          section: 'aws',
          metric: `emulator-mode word count, parallelism ${cfg.parallelism}, ${fmt(cfg.awsSourceChunk)} lines per source step, checkpoint every 2 s: ${fmt(c.fill.words)} words to fill the keys, then ${fmt(c.words)} at steady state (${c.checkpointsCompleted} checkpoints, ${fmt(c.runMs / 1000, 1)} s on moto)`,
          value: '',
        },
        { section: 'aws', metric: 'fill phase (keys created): WCU / SQS billed requests per 100 words', value: `${fmt(c.fill.writeUnitsPer1000 / 10, 3)} / ${fmt(c.fill.sqsBilledPer1000 / 10, 3)}` },
        { section: 'aws', metric: 'steady state, per 1,000 words: SQS requests / billed (64 KiB chunks), incl. Step Functions sends', value: `${fmt(p.sqsRequests, 2)} / ${fmt(p.sqsBilled, 2)}` },
        { section: 'aws', metric: 'steady state, per 1,000 words: DynamoDB requests / WCU (1 KB) / RCU (4 KB)', value: `${fmt(p.dynamoDbRequests, 2)} / ${fmt(p.writeUnits, 2)} / ${fmt(p.readUnits, 2)}` },
        {
          section: 'aws',
          metric: 'steady state, DynamoDB WCU per 1,000 words by item written',
          value: Object.entries(c.usage.writeUnitsByKind)
            .sort((a, b) => b[1] - a[1])
            .map(([kind, n]) => `${kind} ${fmt((n * 1000) / c.words, 2)}`)
            .join('; '),
        },
        { section: 'aws', metric: 'steady state, S3 requests (PUT-class / GET-class) per 1,000 words', value: `${fmt(p.s3Requests, 3)} (${fmt(p.s3Put, 3)} / ${fmt(p.s3Get, 3)})` },
        { section: 'aws', metric: `steady state, Step Functions API requests / state transitions per 1,000 words (${sfnWork.executions} executions in the run)`, value: `${fmt(p.sfnApiRequests, 3)} / ${fmt(p.sfnTransitions, 3)}` },
        { section: 'aws', metric: 'steady state, DynamoDB WCU per 100 words', value: fmt(p.writeUnits / 10, 3), target: '< 1', pass: p.writeUnits / 10 < 1 },
        { section: 'aws', metric: 'steady state, SQS requests (billed) per 100 words', value: fmt(p.sqsBilled / 10, 3), target: '< 1', pass: p.sqsBilled / 10 < 1 },
        {
          section: 'aws',
          metric: `steady state, cost per million words, ${AWS_PRICES.region} list prices: SQS / DynamoDB / S3 / Step Functions`,
          value: [c.costPerMillion.sqs, c.costPerMillion.dynamodb, c.costPerMillion.s3, c.costPerMillion.stepFunctions].map(usd).join(' / '),
        },
        { section: 'aws', metric: 'steady state, cost per million words, total (requests only; no Lambda, storage or transfer)', value: usd(c.costPerMillion.total) },
      );
    }
    rows.push(
      ...r.checkpoints.map((k) => ({
        section: 'aws',
        metric: `checkpoint end-to-end at parallelism ${k.parallelism} (source at ${CHECKPOINT_RUN_LINES_PER_SECOND} lines/s), after the first, median of ${k.durationsMs.length} (min..max)${k.failed ? `, ${k.failed} failed` : ''}; first`,
        value:
          (k.durationsMs.length === 0 ? `none within ${fmt(cfg.awsCapMs / 1000)} s` : `${ms(k.medianMs)} (${fmt(Math.min(...k.durationsMs))}..${fmt(Math.max(...k.durationsMs))})`) +
          `; first ${k.firstMs === undefined ? 'none' : ms(k.firstMs)}`,
        target: 'completes',
        pass: k.durationsMs.length > 0,
      })),
    );
  }

  if (cfg.sections.has('sources')) {
    const r = await section('sources', () =>
      sourcesSection({
        messages: cfg.sourcesMessages,
        idleWindowMs: cfg.sourcesIdleMs,
        runs: cfg.sourcesRuns,
        parallelism: cfg.parallelism,
        intervalMs: cfg.sourcesIntervalMs,
        customers: 100,
        kinesisShards: 2,
        drainTimeoutMs: Math.max(120_000, cfg.sourcesMessages * 200),
        // Kept small: moto delivers each object's notification and serves each GetObject slowly.
        s3Objects: 50,
        s3LinesPerObject: 20,
      }),
    );
    results.sources = { ...r, prices: AWS_PRICES };
    // The largest few; every count is in the JSON results.
    const list = (o: Record<string, number>, digits: number, top = 5) => {
      const entries = Object.entries(o)
        .filter(([, n]) => n > 0)
        .sort((a, b) => b[1] - a[1]);
      const shown = entries.slice(0, top).map(([k, n]) => `${k.replace(/Command$/, '')} ${fmt(n, digits)}`);
      if (entries.length > top) shown.push(`${entries.length - top} more ${fmt(entries.slice(top).reduce((a, [, n]) => a + n, 0), digits)}`);
      return shown.join('; ') || 'none';
    };
    const usd = (n: number) => `$${n < 0.1 ? n.toFixed(4) : n.toFixed(2)}`;
    const invocations = (i: Record<string, { count: number; meanMs: number; p90Ms: number }>, digits: number) =>
      Object.entries(i)
        .filter(([fn]) => fn !== 'all')
        .sort((a, b) => b[1].count - a[1].count)
        .map(([fn, x]) => `${fn} ${fmt(x.count, digits)} (${fmt(x.meanMs)} / ${fmt(x.p90Ms)} ms)`)
        .join('; ');
    const costs = (c: typeof r.idle.perMonth) => [c.sqsSourceQueue, c.sqsInternal, c.dynamodb, c.s3, c.stepFunctions, c.lambdaRequests, c.lambdaDuration].map(usd).join(' / ');
    const runs = cfg.sourcesRuns === 1 ? `one run${cfg.quick ? ' (quick mode)' : ''}` : `median of ${cfg.sourcesRuns} runs`;
    const d = r.drain.per1000;
    const h = r.idle.perHour;
    const k = r.kinesis;
    const kd = k.drain.per1000;
    const kh = k.idle.perHour;
    const s3 = r.s3;
    const so = s3.drain.perThousandObjects;
    const sl = s3.drain.perThousandLines;
    const sh = s3.idle.perHour;
    const s3Costs = (c: typeof r.idle.perMonth) => [c.sqsSourceQueue, c.s3SourceBucket, c.sqsInternal, c.dynamodb, c.s3, c.stepFunctions, c.lambdaRequests, c.lambdaDuration].map(usd).join(' / ');
    const S3_COSTS = 'SQS notification queue / S3 source bucket (LIST, GET) / SQS internal / DynamoDB / S3 / Step Functions / Lambda requests / Lambda duration';
    const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
    const perCheckpoint = (idle: typeof r.idle) => {
      const x = idle.perHour;
      if (idle.checkpoints === 0 || x.stepFunctions.executions === 0) return 'none in the window: the job was quiet (periodic checkpoints paused)';
      const f = idle.checkpoints > 0 ? idle.windowMs / 3_600_000 / idle.checkpoints : NaN;
      const transitions = x.stepFunctions.executions > 0 ? x.stepFunctions.transitions / x.stepFunctions.executions : NaN;
      return `${fmt(transitions, 1)}; ${fmt(sum(x.runtime.s3) * f, 1)}; $${((transitions / 1000) * AWS_PRICES.stepFunctionsPerThousandTransitions + x.cost.s3 * f).toFixed(6)}`;
    };
    const dynamoDb = (x: typeof d) =>
      `DynamoDB requests (WCU ${fmt(x.dynamoDb.writeUnits)}, ${fmt(x.dynamoDb.writeUnitsByKind['coordinator job row'] ?? 0)} of them the job row's ${fmt(x.jobRowWrites.count)} writes of ${bytes(Math.round(x.jobRowWrites.meanBytes))} mean; RCU ${fmt(x.dynamoDb.readUnits)})`;
    // Each SQS row is followed by its kinesisSource counterpart (`kinesis:`), and then its s3Source one (`s3:`).
    const K = 'kinesis: ';
    const S = 's3: ';
    rows.push(
      {
        section: 'sources',
        metric: `emulator mode: sqsSource (standard queue) → dedup → keyBy → running total → discarding sink, parallelism ${cfg.parallelism}, checkpoint every ${fmt(cfg.sourcesIntervalMs / 1000, 1)} s; ${runs}`,
        value: '',
      },
      {
        section: 'sources',
        metric: `${K}kinesisSource (${fmt(k.shards)} shards, TRIM_HORIZON, client passed in, HTTP/1.1) → keyBy → running total → discarding sink, the same settings`,
        value: '',
      },
      {
        section: 'sources',
        metric: `${S}s3Source (bucket notifications, s3:ObjectCreated:*, to a standard queue; listInterval 1m; S3 and SQS clients passed in) → dedup → read → keyBy → running total → discarding sink, the same settings`,
        value: '',
      },
      {
        section: 'sources',
        metric: `drain: ${fmt(cfg.sourcesMessages)} messages queued before the start, until the source deleted all (so all committed): time on moto, checkpoints`,
        value: `${fmt(r.drain.runMs / 1000, 1)} s, ${fmt(r.drain.checkpoints)}`,
      },
      {
        section: 'sources',
        metric: `${K}drain: ${fmt(cfg.sourcesMessages)} records put before the start, until all reached the sink and a checkpoint triggered after that completed: time on moto, checkpoints`,
        value: `${fmt(k.drain.runMs / 1000, 1)} s, ${fmt(k.drain.checkpoints)}`,
      },
      {
        section: 'sources',
        metric: `${S}drain: ${fmt(s3.objects)} objects of ${fmt(s3.linesPerObject)} lines put once the job runs, until every line reached the sink and a checkpoint triggered after that completed: time on moto, checkpoints`,
        value: `${fmt(s3.drain.runMs / 1000, 1)} s, ${fmt(s3.drain.checkpoints)}`,
      },
      { section: 'sources', metric: 'drain: every record reached the sink', value: r.drain.complete ? 'yes' : 'no', target: 'yes', pass: r.drain.complete },
      { section: 'sources', metric: `${K}drain: every record reached the sink`, value: k.drain.complete ? 'yes' : 'no', target: 'yes', pass: k.drain.complete },
      { section: 'sources', metric: `${S}drain: every line reached the sink`, value: s3.drain.complete ? 'yes' : 'no', target: 'yes', pass: s3.drain.complete },
      { section: 'sources', metric: `drain, per 1,000 records: the source's own SQS requests (${fmt(d.source.billed, 1)} billed)`, value: list(d.source.requests, 1) },
      { section: 'sources', metric: `${K}drain, per 1,000 records: the source's own Kinesis requests (not billed in provisioned mode)`, value: list(kd.source.requests, 1) },
      { section: 'sources', metric: `${K}drain, per 1,000 records: PUT payload units of the input (the producer's); their $ per million records`, value: `${fmt(k.drain.putPayloadUnitsPer1000, 1)}; ${usd(k.drain.putCostPerMillion)}` },
      { section: 'sources', metric: `${S}drain, per 1,000 objects: the source's own S3 and SQS requests (${fmt(so.source.billed, 1)} SQS billed)`, value: list(so.source.requests, 1, 7) },
      { section: 'sources', metric: `${S}drain, per 1,000 lines: the source's own S3 and SQS requests`, value: list(sl.source.requests, 1, 7) },
      { section: 'sources', metric: `drain, per 1,000 records: runtime SQS requests (${fmt(d.sqsBilled.fifo + d.sqsBilled.standard, 1)} billed, Step Functions' sends included)`, value: list(d.runtime.sqs, 1) },
      { section: 'sources', metric: `${K}drain, per 1,000 records: runtime SQS requests (${fmt(kd.sqsBilled.fifo + kd.sqsBilled.standard, 1)} billed, Step Functions' sends included)`, value: list(kd.runtime.sqs, 1) },
      { section: 'sources', metric: `${S}drain, per 1,000 objects: runtime SQS requests (${fmt(so.sqsBilled.fifo + so.sqsBilled.standard, 1)} billed, Step Functions' sends included); per 1,000 lines ${fmt(sum(sl.runtime.sqs), 1)}`, value: list(so.runtime.sqs, 1) },
      { section: 'sources', metric: `drain, per 1,000 records: ${dynamoDb(d)}`, value: list(d.runtime.dynamodb, 1) },
      { section: 'sources', metric: `${K}drain, per 1,000 records: ${dynamoDb(kd)}`, value: list(kd.runtime.dynamodb, 1) },
      { section: 'sources', metric: `${S}drain, per 1,000 objects: ${dynamoDb(so)}; per 1,000 lines ${fmt(sum(sl.runtime.dynamodb), 1)}`, value: list(so.runtime.dynamodb, 1) },
      { section: 'sources', metric: `drain, per 1,000 records: S3 requests; Step Functions state transitions`, value: `${list(d.runtime.s3, 2)}; ${fmt(d.stepFunctions.transitions, 1)} transitions` },
      { section: 'sources', metric: `${K}drain, per 1,000 records: S3 requests; Step Functions state transitions`, value: `${list(kd.runtime.s3, 2)}; ${fmt(kd.stepFunctions.transitions, 1)} transitions` },
      { section: 'sources', metric: `${S}drain, per 1,000 objects: runtime S3 requests; Step Functions state transitions`, value: `${list(so.runtime.s3, 2)}; ${fmt(so.stepFunctions.transitions, 1)} transitions` },
      { section: 'sources', metric: 'drain, per 1,000 records: handler invocations by function (mean / p90 duration)', value: invocations(d.invocations, 1) },
      { section: 'sources', metric: `${K}drain, per 1,000 records: handler invocations by function (mean / p90 duration)`, value: invocations(kd.invocations, 1) },
      { section: 'sources', metric: `${S}drain, per 1,000 objects: handler invocations by function (mean / p90 duration); per 1,000 lines ${fmt(sl.invocations.all?.count ?? 0, 1)} in all`, value: invocations(so.invocations, 1) },
      {
        section: 'sources',
        metric: `drain, $ per million records, ${AWS_PRICES.region} list prices: SQS source queue / SQS internal / DynamoDB / S3 / Step Functions / Lambda requests / Lambda duration = total`,
        value: `${costs(scaleCost(d.cost, 1000))} = ${usd(d.cost.total * 1000)}`,
      },
      {
        section: 'sources',
        metric: `${K}drain, $ per million records: Kinesis reads (not billed) / SQS internal / DynamoDB / S3 / Step Functions / Lambda requests / Lambda duration = total (PUT units and shard-hours apart)`,
        value: `${costs(scaleCost(kd.cost, 1000))} = ${usd(kd.cost.total * 1000)}`,
      },
      {
        section: 'sources',
        metric: `${S}drain, $ per million objects: ${S3_COSTS} = total (per million lines after the semicolon; the producer's PUTs apart)`,
        value: `${s3Costs(scaleCost(so.cost, 1000))} = ${usd(so.cost.total * 1000)}; ${usd(sl.cost.total * 1000)}`,
      },
      { section: 'sources', metric: 'idle: empty queue, window once quiet and backed off; checkpoints completed in it', value: `${fmt(r.idle.windowMs / 1000, 1)} s; ${fmt(r.idle.checkpoints)}` },
      { section: 'sources', metric: `${K}idle: empty stream, window once quiet and backed off; checkpoints completed in it`, value: `${fmt(k.idle.windowMs / 1000, 1)} s; ${fmt(k.idle.checkpoints)}` },
      { section: 'sources', metric: `${S}idle: empty bucket (and notification queue), window once quiet and backed off; checkpoints completed in it`, value: `${fmt(s3.idle.windowMs / 1000, 1)} s; ${fmt(s3.idle.checkpoints)}` },
      { section: 'sources', metric: "idle, per hour: the source's own SQS requests", value: list(h.source.requests, 0) },
      { section: 'sources', metric: `${K}idle, per hour: the source's own Kinesis requests (GetRecords per shard-hour ${fmt((kh.source.requests.GetRecords ?? 0) / k.shards)})`, value: list(kh.source.requests, 0) },
      { section: 'sources', metric: `${S}idle, per hour: the source's own S3 and SQS requests (the listing's ListObjectsV2 every minute, when the window held one)`, value: list(sh.source.requests, 0, 7) },
      { section: 'sources', metric: `idle, per hour: runtime SQS requests by purpose (${fmt(sum(h.runtime.sqs))} in all; ESM: the pollers, * emulator mode's)`, value: list(h.sqsByPurpose, 0, 7) },
      { section: 'sources', metric: `${K}idle, per hour: runtime SQS requests by purpose (${fmt(sum(kh.runtime.sqs))} in all)`, value: list(kh.sqsByPurpose, 0, 7) },
      { section: 'sources', metric: `${S}idle, per hour: runtime SQS requests by purpose (${fmt(sum(sh.runtime.sqs))} in all)`, value: list(sh.sqsByPurpose, 0, 7) },
      { section: 'sources', metric: `idle, per hour: ${dynamoDb(h)}`, value: list(h.runtime.dynamodb, 0) },
      { section: 'sources', metric: `${K}idle, per hour: ${dynamoDb(kh)}`, value: list(kh.runtime.dynamodb, 0) },
      { section: 'sources', metric: `${S}idle, per hour: ${dynamoDb(sh)}`, value: list(sh.runtime.dynamodb, 0) },
      { section: 'sources', metric: 'idle, per hour: S3 requests; Step Functions executions / state transitions', value: `${list(h.runtime.s3, 0)}; ${fmt(h.stepFunctions.executions)} / ${fmt(h.stepFunctions.transitions)}` },
      { section: 'sources', metric: `${K}idle, per hour: S3 requests; Step Functions executions / state transitions`, value: `${list(kh.runtime.s3, 0)}; ${fmt(kh.stepFunctions.executions)} / ${fmt(kh.stepFunctions.transitions)}` },
      { section: 'sources', metric: `${S}idle, per hour: runtime S3 requests; Step Functions executions / state transitions`, value: `${list(sh.runtime.s3, 0)}; ${fmt(sh.stepFunctions.executions)} / ${fmt(sh.stepFunctions.transitions)}` },
      { section: 'sources', metric: `idle, per hour: handler invocations by function (mean / p90 duration); ${fmt(h.invocations.all?.count ?? 0)} in all`, value: invocations(h.invocations, 0) },
      { section: 'sources', metric: `${K}idle, per hour: handler invocations by function (mean / p90 duration); ${fmt(kh.invocations.all?.count ?? 0)} in all`, value: invocations(kh.invocations, 0) },
      { section: 'sources', metric: `${S}idle, per hour: handler invocations by function (mean / p90 duration); ${fmt(sh.invocations.all?.count ?? 0)} in all`, value: invocations(sh.invocations, 0) },
      { section: 'sources', metric: 'idle, per hour: committed steps by vertex', value: list(h.steps, 0) },
      { section: 'sources', metric: `${K}idle, per hour: committed steps by vertex`, value: list(kh.steps, 0) },
      { section: 'sources', metric: `${S}idle, per hour: committed steps by vertex`, value: list(sh.steps, 0) },
      // What goes with each checkpoint whatever the data: scale by the checkpoint interval.
      { section: 'sources', metric: 'idle, per checkpoint: Step Functions transitions; S3 requests; their $ (they scale with 1 / checkpoint interval)', value: perCheckpoint(r.idle) },
      { section: 'sources', metric: `${K}idle, per checkpoint: Step Functions transitions; S3 requests; their $`, value: perCheckpoint(k.idle) },
      { section: 'sources', metric: `${S}idle, per checkpoint: Step Functions transitions; S3 requests; their $`, value: perCheckpoint(s3.idle) },
      {
        section: 'sources',
        metric: `idle, $ per month (${AWS_PRICES.hoursPerMonth} h): SQS source queue / SQS internal / DynamoDB / S3 / Step Functions / Lambda requests / Lambda duration (${fmt(AWS_PRICES.lambdaMemoryMb)} MB arm64)`,
        value: costs(r.idle.perMonth),
      },
      {
        section: 'sources',
        metric: `${K}idle, $ per month: Kinesis reads (not billed) / SQS internal / DynamoDB / S3 / Step Functions / Lambda requests / Lambda duration (${fmt(AWS_PRICES.lambdaMemoryMb)} MB arm64)`,
        value: costs(k.idle.perMonth),
      },
      {
        section: 'sources',
        metric: `${S}idle, $ per month: ${S3_COSTS} (${fmt(AWS_PRICES.lambdaMemoryMb)} MB arm64)`,
        value: s3Costs(s3.idle.perMonth),
      },
      { section: 'sources', metric: 'idle, $ per month, total (requests and Lambda only: no storage, transfer, logs, ticker or free tier)', value: usd(r.idle.perMonth.total) },
      { section: 'sources', metric: `${K}idle, $ per month, total (the same; the stream's shard-hours apart, below)`, value: usd(k.idle.perMonth.total) },
      { section: 'sources', metric: `${S}idle, $ per month, total (the same; the bucket's storage apart)`, value: usd(s3.idle.perMonth.total) },
      {
        section: 'sources',
        metric: `${K}the stream's ${fmt(k.shards)} shards, $ per month at $${AWS_PRICES.kinesisPerShardHour} per shard-hour (provisioned; the user's whether Floe reads it or not)`,
        value: usd(k.idle.shardHoursPerMonth),
      },
    );
  }

  /** The idle and rate sections' rows: what the orders job did per hour and costs a month. */
  const monthlyRows = (name: string, r: Omit<IdleSectionResult, 'quietAfterMs'>, what: string, head: Row) => {
    const usd = (n: number) => `$${n < 0.1 ? n.toFixed(4) : n.toFixed(2)}`;
    const top = (o: Record<string, number>, digits = 0) =>
      Object.entries(o)
        .filter(([, n]) => n > 0.05)
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `${k.replace(/Command$/, '')} ${fmt(n, digits)}`)
        .join('; ') || 'none';
    const h = r.perHour;
    const m = r.perMonth;
    const fns = Object.entries(h.functions)
      .sort((a, b) => b[1].invocations - a[1].invocations)
      .map(([fn, f]) => `${fn} ${fmt(f.invocations)} (${fmt(f.meanMs)} ms mean, ${fmt(f.lambdaSeconds, 1)} s)`)
      .join('; ');
    const I = `${what}: `;
    const polls = (ESM_IDLE_RECEIVES_PER_MINUTE * 60 * AWS_PRICES.hoursPerMonth * (r.polledQueues.fifo * AWS_PRICES.sqsFifoPerMillionRequests + r.polledQueues.standard * AWS_PRICES.sqsStandardPerMillionRequests)) / 1e6;
    const atFewest = m.total - polls + (polls * 6) / ESM_IDLE_RECEIVES_PER_MINUTE;
    rows.push(
      head,
      { section: name, metric: `${I}per hour, invocations by function (mean duration, Lambda-seconds)`, value: fns || 'none' },
      { section: name, metric: `${I}per hour, runtime SQS requests by purpose (emulator mode's pollers and checks left out)`, value: top(h.sqsByPurpose) },
      { section: name, metric: `${I}per hour, the source's own SQS requests`, value: top(h.sourceRequests) },
      { section: name, metric: `${I}per hour, DynamoDB requests; write / read units`, value: `${top(h.dynamodb)}; ${fmt(h.writeUnits, 1)} / ${fmt(h.readUnits, 1)}` },
      { section: name, metric: `${I}per hour, S3 requests; Step Functions executions / transitions`, value: `${top(h.s3)}; ${fmt(h.stepFunctions.executions)} / ${fmt(h.stepFunctions.transitions)}` },
      {
        section: name,
        metric: `${I}$ per month measured: SQS / source queue / DynamoDB / S3 / Step Functions / Lambda requests / Lambda duration (${fmt(AWS_PRICES.lambdaMemoryMb)} MB arm64)`,
        value: [m.sqsMeasured, m.sqsSourceQueue, m.dynamodb, m.s3, m.stepFunctionsStandard, m.lambdaRequests, m.lambdaDuration].map(usd).join(' / '),
      },
      {
        section: name,
        metric: `${I}$ per month modelled: Lambda's pollers of ${r.polledQueues.fifo} FIFO and ${r.polledQueues.standard} standard queues (${ESM_IDLE_RECEIVES_PER_MINUTE} long polls a minute each, plus one receive per batch) / schedule and ticker`,
        value: `${usd(m.esmPolling)} / ${usd(m.ticker)}`,
      },
      { section: name, metric: `${I}$ per month, Floe's own (measured)`, value: usd(m.floe), ...(name === 'idle' ? { target: '<= $1', pass: m.floe <= 1 } : {}) },
      {
        section: name,
        metric: `${I}$ per month, whole job (measured and modelled; no storage, logs or free tier); in brackets with 6 long polls a minute per queue (AWS's fewest, 2 pollers)`,
        value: `${usd(m.total)} (${usd(atFewest)})`,
        ...(name === 'idle' ? { target: '<= $1', pass: m.total <= 1 } : {}),
      },
    );
  };

  if (cfg.sections.has('idle')) {
    const r = await section('idle', () =>
      idleSection({ windowMs: cfg.idleWindowMs, parallelism: cfg.parallelism, intervalMs: cfg.sourcesIntervalMs, settleTimeoutMs: 180_000 }, (m) => process.stderr.write(`[bench] idle: ${m}\n`)),
    );
    results.idle = { ...r, prices: { ...AWS_PRICES, ...IDLE_PRICES, esmIdleReceivesPerMinute: ESM_IDLE_RECEIVES_PER_MINUTE } };
    monthlyRows('idle', r, 'idle', {
      section: 'idle',
      metric: `idle: window measured (the orders job, parallelism ${cfg.parallelism}, checkpoint every ${fmt(cfg.sourcesIntervalMs / 1000)} s, after it went quiet at ${fmt(r.quietAfterMs / 1000)} s); checkpoints in it`,
      value: `${fmt(r.windowMs / 1000)} s; ${fmt(r.checkpoints)}`,
      target: '0 checkpoints',
      pass: r.checkpoints === 0,
    });
  }

  if (cfg.sections.has('rate')) {
    const r = await section('rate', () =>
      rateSection({ rate: cfg.rate, windowMs: cfg.rateWindowMs, parallelism: cfg.parallelism, intervalMs: cfg.rateIntervalMs }, (m) => process.stderr.write(`[bench] rate: ${m}\n`)),
    );
    results.rate = { ...r, prices: { ...AWS_PRICES, ...IDLE_PRICES, esmIdleReceivesPerMinute: ESM_IDLE_RECEIVES_PER_MINUTE } };
    // The rate reached: moto's latency can hold the sender below the one asked for.
    const achieved = r.sent / (r.windowMs / 1000);
    const perMillion = (r.perMonth.total / (achieved * 3600 * AWS_PRICES.hoursPerMonth)) * 1e6;
    monthlyRows('rate', r, `${fmt(achieved, 1)}/s`, {
      section: 'rate',
      metric: `${fmt(cfg.rate)} orders/s asked: window measured (the orders job, parallelism ${cfg.parallelism}, checkpoint every ${fmt(cfg.rateIntervalMs / 1000)} s); checkpoints in it; orders sent in it (the rate reached); $ per million orders, whole job`,
      value: `${fmt(r.windowMs / 1000)} s; ${fmt(r.checkpoints)}; ${fmt(r.sent)} (${fmt(achieved, 1)}/s); $${perMillion.toFixed(2)}`,
    });
  }

  const loadAfter = loadavg();
  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    mode: cfg.quick ? 'quick' : 'full',
    environment: { node: process.version, platform: `${process.platform}-${process.arch}`, cpus: cpus().length, cpuModel: cpus()[0]?.model, totalMemory: totalmem(), loadavgBefore: loadBefore, loadavgAfter: loadAfter },
    setup: {
      runtime: 'EmbeddedRunner, in process, checkpoints to FileCheckpointStorage in a temp dir',
      source: 'generator, unbounded; each read first yields one event-loop turn (see bench/jobs.ts yieldingSource)',
      sink: cfg.sink === 'discard' ? 'discard (counts and drops; no pending commits)' : 'files (exactly-once files sink in a temp dir)',
      throughputUnit: 'words into the keyed Count operator per second',
    },
    config: { ...cfg, sections: [...cfg.sections] },
    results,
    rows,
    ...(cfg.profile ? { profiles } : {}),
  };
  await mkdir(dirname(cfg.out), { recursive: true });
  await writeFile(cfg.out, JSON.stringify(report, null, 2) + '\n');

  console.log('');
  console.log(`Floe embedded benchmark (${report.mode} mode) — ${report.environment.cpus} cores, node ${process.version}, load average ${loadBefore[0]!.toFixed(2)} → ${loadAfter[0]!.toFixed(2)}`);
  console.log(`word count: generator source (${fmt(cfg.vocabulary)}-word vocabulary, ${cfg.wordsPerLine} words/line), keyed running count, ${report.setup.sink}, parallelism ${cfg.parallelism}`);
  console.log('');
  console.log(table(rows));
  console.log('');
  for (const summary of summaries) console.log(summary + '\n');
  if (loadBefore[0]! > cpus().length || loadAfter[0]! > cpus().length) console.log(`note: the load average exceeded the core count (${cpus().length}); other processes were competing for CPU.`);
  console.log(`results: ${relative(process.cwd(), cfg.out) || cfg.out}`);
}

await main();
