/**
 * Processing-time timers in emulator mode (the Lambda handlers in-process against moto, AWS_ENDPOINT_URL from
 * test/support/moto-global-setup.ts): a keyed process function registers a processing-time timer a few seconds ahead
 * on each key's first record and then gets no further input. The timer must fire on time although nothing else
 * reaches the keyed vertex (no records, no barriers: checkpoints are far apart until the timers fired), exactly once,
 * also across a stop-with-savepoint and restore before or after it fired. The committed output is compared with an
 * oracle: one `fired` line per key.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Job, valueState } from '../../lib/index.js';
import { collectSink, resetCollector } from '../../lib/connectors/collect-sink.js';
import { generator } from '../../lib/connectors/generator.js';
import { EmulatorRunner } from '../../lib/hosts/emulator/emulator-runner.js';
import type { RestoreSource } from '../../lib/coordination/restarts.js';
import { sorted } from '../support/jobs.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
const log = (m: string) => console.info(`[timers] ${m}`);

/** Keys that get one record each; nothing else reaches the keyed vertex afterwards. */
const KEYS = ['a', 'b', 'c'];

/**
 * Lateness allowed: the wake's delay is rounded up to a whole second, then two queue hops (the coordinator-tasks
 * queue, the vertex's FIFO queue) and a step; emulator mode polls an empty queue at most every second.
 */
const BOUND_MS = 3_000;

/** What the functions saw, in this process (emulator mode runs them here): registrations and firings. */
interface Firing {
  readonly key: string;
  readonly due: number;
  readonly at: number;
}
let registered: { key: string; due: number }[] = [];
let fired: Firing[] = [];

/** An unbounded, slow generator whose first records carry the keys; a filter in its vertex drops the rest. */
function timerJob(name: string, sink: string, delayMs: number): Job {
  const job = new Job(name, { parallelism: 1, maxParallelism: 16 });
  job
    .source(generator<{ i: number; key: string }>({ generate: (i) => ({ i, key: KEYS[i] ?? 'none' }), ratePerSecond: 10 }), { uid: 'gen' })
    .filter((r) => r.i < KEYS.length)
    .keyBy((r) => r.key)
    .process(
      {
        state: { due: valueState<number>() },
        processElement(r, ctx) {
          const due = ctx.timerService().currentProcessingTime() + delayMs;
          ctx.state.due.update(due);
          ctx.timerService().registerProcessingTimeTimer(due);
          registered.push({ key: r.key, due });
        },
        onTimer(ts, ctx, out) {
          const key = String(ctx.key);
          fired.push({ key, due: ts, at: ctx.timerService().currentProcessingTime() });
          out.collect(`${key} fired`);
        },
      },
      { uid: 'timers', parallelism: 2 },
    )
    .sinkTo(collectSink<string>(sink), { uid: 'out' });
  return job;
}

/** The oracle: every key's timer fires once. */
const oracle = () => sorted(KEYS.map((k) => `${k} fired`));

async function stopWithSavepoint(runner: EmulatorRunner, run: Promise<unknown>): Promise<string> {
  const id = runner.triggerSavepoint({ termination: 'stop' });
  const status = await vi.waitFor(
    () => {
      const s = runner.triggerStatus(id);
      if (s?.status !== 'COMPLETED') throw new Error(`savepoint ${JSON.stringify(s)}`);
      return s;
    },
    { timeout: 60_000, interval: 100 },
  );
  await run;
  return status.location!;
}

function emulator(job: Job, namespace: string, interval: string, restore?: RestoreSource): EmulatorRunner {
  return new EmulatorRunner(job, { endpoint, namespace, checkpoint: { interval }, ...(restore ? { restore } : {}), log });
}

const lateness = (fs: readonly Firing[], from: (f: Firing) => number = (f) => f.due) => fs.map((f) => f.at - from(f));

describe('processing-time timers in emulator mode', () => {
  const sinks: string[] = [];
  afterEach(() => {
    for (const s of sinks.splice(0)) resetCollector(s);
    registered = [];
    fired = [];
  });

  it('fire on time on a vertex that gets no more input, exactly once, and a restore after they fired does not fire them again', async () => {
    // Given a job whose keyed vertex registers a timer 2 s ahead per key, then receives nothing: no records, and no
    // barriers, since the first periodic checkpoint is a minute away
    const name = `timers-${randomUUID().slice(0, 8)}`;
    const sink = `${name}-out`;
    sinks.push(sink);
    const job = timerJob(name, sink, 2_000);
    const namespace = `t-${randomUUID().slice(0, 8)}`;
    const first = emulator(job, namespace, '60s');
    const run = first.run();

    // When the timers come due
    await vi.waitFor(() => expect(fired.length).toBe(KEYS.length), { timeout: 30_000, interval: 50 });

    // Then each fired once, after its due time and within the bound, with no checkpoint (barrier) in between
    const late = lateness(fired);
    log(`lateness of ${fired.length} timers: ${late.join(', ')} ms`);
    expect(sorted(fired.map((f) => f.key))).toEqual(sorted(KEYS));
    for (const l of late) expect(l).toBeGreaterThanOrEqual(0);
    expect(Math.max(...late)).toBeLessThanOrEqual(BOUND_MS);
    expect(first.coordinatorState().counts.completed).toBe(0);
    expect(first.coordinatorState().pending).toHaveLength(0);

    // And stopped with a savepoint, the output is committed exactly once
    const savepoint = await stopWithSavepoint(first, run);
    expect(sorted(collectSink<string>(sink).committed)).toEqual(oracle());

    // When the job is restored from that savepoint and runs two checkpoints more (its keyed subtasks took the
    // generation's first timer wake, with no timer left)
    const second = emulator(job, namespace, '300ms', { kind: 'path', path: savepoint });
    const rerun = second.run();
    await vi.waitFor(() => expect(second.coordinatorState().counts.completed).toBeGreaterThanOrEqual(2), { timeout: 60_000, interval: 100 });
    await stopWithSavepoint(second, rerun);

    // Then nothing fired again, and the output is still the oracle's
    expect(fired).toHaveLength(KEYS.length);
    expect(sorted(collectSink<string>(sink).committed)).toEqual(oracle());
  }, 180_000);

  it('a timer restored from a savepoint taken before it was due fires once, on time, in the new generation', async () => {
    // Given the timers registered 8 s ahead, and the job stopped with a savepoint before they were due
    const name = `timers-${randomUUID().slice(0, 8)}`;
    const sink = `${name}-out`;
    sinks.push(sink);
    const job = timerJob(name, sink, 8_000);
    const namespace = `t-${randomUUID().slice(0, 8)}`;
    const first = emulator(job, namespace, '60s');
    const run = first.run();
    await vi.waitFor(() => expect(registered.length).toBe(KEYS.length), { timeout: 30_000, interval: 50 });
    const savepoint = await stopWithSavepoint(first, run);
    // (otherwise the test would prove nothing: the first generation must not have fired them)
    expect(fired).toHaveLength(0);
    expect(collectSink<string>(sink).committed).toEqual([]);

    // When the job is restored from the savepoint, still far from its next checkpoint
    const second = emulator(job, namespace, '60s', { kind: 'path', path: savepoint });
    const rerun = second.run();
    await vi.waitFor(() => expect(second.overview().state).toBe('RUNNING'), { timeout: 60_000, interval: 20 });
    const runningAt = Date.now();
    await vi.waitFor(() => expect(fired.length).toBe(KEYS.length), { timeout: 30_000, interval: 50 });

    // Then each fired once, within the bound of its due time (or of the restart, if that came after it)
    const late = lateness(fired, (f) => Math.max(f.due, runningAt));
    log(`lateness of ${fired.length} restored timers: ${late.join(', ')} ms (due ${fired.map((f) => f.due - runningAt).join(', ')} ms after the restart)`);
    expect(sorted(fired.map((f) => f.key))).toEqual(sorted(KEYS));
    expect(Math.max(...late)).toBeLessThanOrEqual(BOUND_MS);
    expect(second.coordinatorState().counts.completed).toBe(0);

    // And the output, committed by a final stop-with-savepoint, is exactly the oracle's
    await stopWithSavepoint(second, rerun);
    expect(fired).toHaveLength(KEYS.length);
    expect(sorted(collectSink<string>(sink).committed)).toEqual(oracle());
  }, 180_000);
});
