import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { Job } from '../../lib/api/job.js';
import { tumblingEventTimeWindows } from '../../lib/api/windows.js';
import { Scratch, captureLog, listSource, runOptions, sleep, sorted } from '../support/jobs.js';

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

/** Delays that differ per value, so later calls often finish first. */
const delayOf = (v: number) => ((v * 7919) % 13) + 1;

describe('mapAsync and flatMapAsync (ordered async I/O), embedded', () => {
  it('emits results in input order while up to `capacity` calls run at once', async () => {
    // Given 300 values read 25 at a time, and an async map with capacity 4 whose calls finish out of order
    const values = Array.from({ length: 300 }, (_, i) => i);
    const sink = scratch.collector<string>();
    let running = 0;
    let most = 0;
    const job = new Job('async-order', { parallelism: 1 });
    job
      .source(listSource(values, 25), { uid: 'in' })
      .mapAsync(
        async (v) => {
          running += 1;
          most = Math.max(most, running);
          await sleep(delayOf(v));
          running -= 1;
          return `v${v}`;
        },
        { capacity: 4 },
      )
      .sinkTo(sink, { uid: 'out' });
    const { log, text } = captureLog();

    // When it runs to the end
    const outcome = await new EmbeddedRunner(job, runOptions(await scratch.dir(), log)).run();

    // Then every result is committed once, in the order of the input, and calls overlapped up to the capacity and no more
    expect(outcome.state, text()).toBe('FINISHED');
    expect(sink.committed).toEqual(values.map((v) => `v${v}`));
    expect(most).toBe(4);
  });

  it('emits what a call returns before the watermark that follows its record, so event-time windows after it drop nothing', async () => {
    // Given events one per read (each read advances the watermark), each expanded by a slow async call into two
    // records, then tumbling 10 ms windows with no allowed lateness
    const events = Array.from({ length: 120 }, (_, i) => ({ key: `k${i % 3}`, ts: i }));
    const sink = scratch.collector<string>();
    const job = new Job('async-watermarks', { parallelism: 1 });
    job
      .source(listSource(events, 1), { uid: 'in', watermarks: { timestamp: (e) => e.ts } })
      .flatMapAsync(async (e) => {
        await sleep(delayOf(e.ts));
        return [e, e];
      })
      .keyBy((e) => e.key)
      .window(tumblingEventTimeWindows(10))
      .aggregate({ createAccumulator: () => 0, add: (_e, n: number) => n + 1, getResult: (n: number) => n }, { uid: 'count', emit: (key, w, n) => `${String(key)}@${w.start}=${n}` })
      .sinkTo(sink, { uid: 'out' });
    const { log, text } = captureLog();

    // When it runs
    const outcome = await new EmbeddedRunner(job, runOptions(await scratch.dir(), log)).run();

    // Then each window counts both copies of each of its events: none arrived behind the watermark
    expect(outcome.state, text()).toBe('FINISHED');
    const expected = new Map<string, number>();
    for (const e of events) {
      const id = `${e.key}@${Math.floor(e.ts / 10) * 10}`;
      expected.set(id, (expected.get(id) ?? 0) + 2);
    }
    expect(sorted(sink.committed)).toEqual(sorted([...expected].map(([id, n]) => `${id}=${n}`)));
  });

  it('a call that rejects fails the job over; after the restore each result is committed exactly once', async () => {
    // Given an async map that rejects once, after a checkpoint completed
    const values = Array.from({ length: 2_000 }, (_, i) => i);
    const sink = scratch.collector<number>();
    let rejected = false;
    const completed = { count: () => 0 };
    const job = new Job('async-failure', { parallelism: 2 });
    job
      .source(listSource(values, 10), { uid: 'in' })
      .rebalance()
      .mapAsync(async (v) => {
        await sleep(2);
        if (!rejected && completed.count() >= 1) {
          rejected = true;
          throw new Error(`lookup failed for ${v}`);
        }
        return v * 2;
      })
      .sinkTo(sink, { uid: 'out' });
    const { log, lines, text } = captureLog();
    const runner = new EmbeddedRunner(job, runOptions(await scratch.dir(), log, { restart: { type: 'fixed-delay', attempts: 2, delay: 20 } }));
    completed.count = () => runner.coordinatorState().counts.completed;

    // When it runs
    const outcome = await runner.run();

    // Then it restarted once with the call's error and the output is each doubled value exactly once
    expect(outcome.state, text()).toBe('FINISHED');
    expect(rejected).toBe(true);
    expect(lines.some((l) => l.includes('restarting') && l.includes('lookup failed for')), text()).toBe(true);
    expect([...sink.committed].sort((a, b) => a - b)).toEqual(values.map((v) => v * 2));
  });

  it('a call slower than its timeout fails the job, naming the operator and the timeout', async () => {
    // Given an async map with a 50 ms timeout whose calls never finish, and no restarts
    const job = new Job('async-timeout', { parallelism: 1 });
    job
      .source(listSource([1, 2, 3]), { uid: 'in' })
      .mapAsync(() => new Promise<number>(() => undefined), { timeout: 50, name: 'Lookup' })
      .sinkTo(scratch.collector<number>(), { uid: 'out' });
    const { log } = captureLog();

    // When it runs
    const outcome = await new EmbeddedRunner(job, runOptions(await scratch.dir(), log, { restart: { type: 'none' } })).run();

    // Then it failed with the timeout, naming the operator
    expect(outcome.state).toBe('FAILED');
    const cause = outcome.error?.cause;
    expect(cause instanceof Error ? cause.message : outcome.error?.message).toMatch(/operator 'asyncFlatMap-1' threw: no result within 50 ms/);
  });

  it('starts a waiting call as soon as any call settles, not only the oldest', async () => {
    // Given capacity 2 and a first call much slower than the rest
    const sink = scratch.collector<number>();
    const started = new Map<number, number>();
    let firstDoneAt = Infinity;
    const job = new Job('async-refill', { parallelism: 1 });
    job
      .source(listSource([0, 1, 2, 3, 4, 5], 6), { uid: 'in' })
      .mapAsync(
        async (v) => {
          started.set(v, Date.now());
          await sleep(v === 0 ? 300 : 5);
          if (v === 0) firstDoneAt = Date.now();
          return v;
        },
        { capacity: 2 },
      )
      .sinkTo(sink, { uid: 'out' });
    const { log, text } = captureLog();
    const outcome = await new EmbeddedRunner(job, runOptions(await scratch.dir(), log)).run();

    // Then the others ran beside the slow one, and the results kept the input's order
    expect(outcome.state, text()).toBe('FINISHED');
    expect(started.get(5)!).toBeLessThan(firstDoneAt);
    expect(sink.committed).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('a function that returns no iterable fails, saying so; a timeout beyond what timers hold is refused when the job is built', async () => {
    const job = new Job('async-not-iterable', { parallelism: 1 });
    job
      .source(listSource([1]), { uid: 'in' })
      .flatMapAsync(async () => 42 as unknown as number[])
      .sinkTo(scratch.collector<number>(), { uid: 'out' });
    const { log } = captureLog();
    const outcome = await new EmbeddedRunner(job, runOptions(await scratch.dir(), log, { restart: { type: 'none' } })).run();
    const cause = outcome.error?.cause;
    expect(cause instanceof Error ? cause.message : outcome.error?.message).toMatch(/returned number, not an array or another iterable of records/);
    expect(() => new Job('t').source(listSource([1]), { uid: 'in' }).mapAsync(async (v) => v, { timeout: '25d' })).toThrow(/at most 24 days/);
  });
});
