import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import clicksJob, { CLICK_DELAYS, CLICK_STEP_MS, CLICK_WINDOW, CLICKS_SEED, clickAt } from '../../examples/clicks.js';
import { generator } from '../../lib/connectors/generator.js';
import type { Job } from '../../lib/api/job.js';
import {
  FailOnce,
  Scratch,
  awaitTrigger,
  captureLog,
  chunkedWindowOracle,
  firingLine,
  firingsByKey,
  listSource,
  parseFiring,
  readCommittedLines,
  runOptions,
  simulateTumblingCounts,
  sourceRecordsRead,
  startRunner,
  waitFor,
  windowCountsJob,
  type WindowFiring,
} from '../support/jobs.js';
import { generatedSequence } from '../support/reference-generator.js';

/** Records a source subtask reads per step at most (SubtaskConfig.sourceChunkSize's default). */
const SOURCE_CHUNK = 2048;

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

/** Groups firing lines per key, keeping their order. */
function perKey(lines: readonly string[]): Map<string, string[]> {
  return firingsByKey(lines.map(parseFiring));
}

describe('event-time windows, embedded', () => {
  it('clicks example: every (user, window) ends at the oracle count, refires only grow it, and very late clicks are dropped', async () => {
    // Given the clicks example over 100k clicks, its window operator at parallelism 3, checkpoints every 100ms
    const count = 100_000;
    const out = await scratch.dir('floe-clicks-out-');
    const job = await (clicksJob as (args: readonly string[]) => Promise<Job>)(['--output', out, '--count', String(count), '--parallelism', '3']);
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(job, runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }));

    // When it runs to the end
    const outcome = await runner.run();
    expect(outcome.state, text()).toBe('FINISHED');

    // Then the output agrees with an oracle over the same clicks. The source reads in chunks (SubtaskConfig's
    // sourceChunkSize, 2048 records by default) and the watermark moves between chunks; the input is built so that no
    // click's fate (counted or dropped) depends on where a chunk ends, and the oracle knows which late clicks came
    // certainly after their window fired.
    const clicks = generatedSequence({ generate: clickAt, count, seed: CLICKS_SEED });
    const oracle = chunkedWindowOracle(
      clicks.map((c) => ({ key: c.user, ts: c.ts })),
      { size: CLICK_WINDOW.sizeMs, allowedLateness: CLICK_WINDOW.allowedLatenessMs, outOfOrderness: CLICK_WINDOW.outOfOrdernessMs, maxChunk: SOURCE_CHUNK },
    );
    expect(oracle.ambiguous).toBe(0);
    // The input has all three kinds of lateness, in roughly the documented fractions.
    const canBeVeryLate = count - CLICK_DELAYS.veryLate.maxMs / CLICK_STEP_MS;
    expect(oracle.dropped).toBeGreaterThan(0.5 * CLICK_DELAYS.veryLate.fraction * canBeVeryLate);
    expect([...oracle.certainlyLate.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(0);

    const firings = new Map<string, number[]>();
    for (const line of await readCommittedLines(out)) {
      const f = parseFiring(line);
      const id = `${f.key}\t${f.start}\t${f.end}`;
      firings.set(id, [...(firings.get(id) ?? []), f.count]);
    }
    expect(sortedKeys(firings)).toEqual(sortedKeys(oracle.counts));
    for (const [id, counts] of firings) {
      const ascending = [...counts].sort((a, b) => a - b);
      // Each firing adds at least one record to the previous one's count: no duplicates, no lost updates.
      expect(new Set(ascending).size, `${id}: ${counts.join(',')}`).toBe(ascending.length);
      expect(ascending[ascending.length - 1], id).toBe(oracle.counts.get(id));
      // A click that certainly came after its window fired fires it again.
      expect(ascending.length, id).toBeGreaterThanOrEqual(oracle.certainlyLate.get(id) ?? 0);
    }
  });

  it('a late record within the allowed lateness fires its window again; one beyond it is dropped', async () => {
    // Given hand-made input read one record at a time (the watermark advances after each), size 10s, lateness 5s
    const semantics = { size: 10_000, allowedLateness: 5_000, outOfOrderness: 0 };
    const events = [
      { key: 'a', ts: 1_000 },
      { key: 'b', ts: 2_000 },
      { key: 'a', ts: 5_000 },
      { key: 'a', ts: 12_000 }, // watermark 11_999: [0, 10s) fires for a (2) and b (1)
      { key: 'a', ts: 3_000 }, // late, within lateness (9_999 + 5_000 > 11_999): a's [0, 10s) fires again with 3
      { key: 'b', ts: 9_999 }, // late, within lateness: b's [0, 10s) fires again with 2
      { key: 'b', ts: 16_000 }, // watermark 15_999 >= 9_999 + 5_000: [0, 10s) is cleaned up
      { key: 'a', ts: 4_000 }, // beyond the allowed lateness: dropped
      { key: 'b', ts: 8_000 }, // dropped
      { key: 'a', ts: 14_000 },
      { key: 'a', ts: 22_000 }, // watermark 21_999: [10s, 20s) fires for a (2) and b (1)
      { key: 'b', ts: 19_000 }, // late within lateness: b's [10s, 20s) fires again with 2
      { key: 'a', ts: 31_000 }, // end of input: [20s, 30s) and [30s, 40s) fire
    ];
    const expected = simulateTumblingCounts(events, semantics);
    // The oracle itself shows what the test is about.
    expect(expected.dropped).toBe(2);
    expect(expected.firings.filter((f) => f.key === 'a' && f.start === 0).map((f) => f.count)).toEqual([2, 3]);

    const sink = scratch.collector<string>('late');
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(windowCountsJob({ events: listSource(events), sink, semantics, parallelism: 2 }), runOptions(await scratch.dir(), log));

    // When it runs to the end
    const outcome = await runner.run();

    // Then each key's firings are exactly the simulated ones, in order
    expect(outcome.state, text()).toBe('FINISHED');
    expect(perKey(sink.committed)).toEqual(firingsByKey(expected.firings));
  });

  it.each([
    { allowedLateness: 0, outOfOrderness: 0, seed: 1 },
    { allowedLateness: 0, outOfOrderness: 200, seed: 2 },
    { allowedLateness: 300, outOfOrderness: 0, seed: 3 },
    { allowedLateness: 1_000, outOfOrderness: 0, seed: 4 },
    { allowedLateness: 2_500, outOfOrderness: 200, seed: 5 },
  ])('random disorder, lateness $allowedLateness, out-of-orderness $outOfOrderness: per key, the firings are the simulated ones', async (c) => {
    // Given 300 records, 30% of them up to 4s behind, read one at a time (the watermark advances after each)
    const semantics = { size: 1_000, allowedLateness: c.allowedLateness, outOfOrderness: c.outOfOrderness };
    let x = c.seed;
    const random = () => ((x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32);
    const events = Array.from({ length: 300 }, (_, i) => ({ key: `k${Math.floor(random() * 4)}`, ts: Math.max(0, i * 50 - (random() < 0.3 ? Math.floor(random() * 4_000) : 0)) }));
    const sink = scratch.collector<string>('random');
    const { log, text } = captureLog();

    // When the window job (parallelism 2) runs over them
    const outcome = await new EmbeddedRunner(windowCountsJob({ events: listSource(events), sink, semantics, parallelism: 2 }), runOptions(await scratch.dir(), log)).run();

    // Then every key's firings, refires included and dropped records left out, are those of the simulation
    expect(outcome.state, text()).toBe('FINISHED');
    expect(perKey(sink.committed)).toEqual(firingsByKey(simulateTumblingCounts(events, semantics).firings));
  });

  it('a failure mid-stream restores window contents and timers from the checkpoint: every window fires exactly once', async () => {
    // Given in-order records (none late, whatever the watermark does after the restore) and a hook that throws once,
    // at the 3000th record or the first one after that once a checkpoint completed
    const semantics = { size: 1_000, allowedLateness: 500, outOfOrderness: 100 };
    const definition = { generate: (i: number) => ({ key: `k${i % 7}`, ts: i * 5 }), count: 8_000 };
    const events = generator({ ...definition, ratePerSecond: 8_000 });
    const failure = new FailOnce(3_000);
    const sink = scratch.collector<string>('restart');
    const { log, text } = captureLog();
    const job = windowCountsJob({ events, sink, semantics, parallelism: 3, beforeWindow: (e) => failure.check(e.ts / 5) });
    const runner = new EmbeddedRunner(job, runOptions(await scratch.dir(), log));
    failure.armed = () => runner.coordinatorState().counts.completed >= 1;

    // When it runs
    const outcome = await runner.run();

    // Then it restarted once and the committed firings are those of a run without failure
    expect(outcome.state, text()).toBe('FINISHED');
    expect(failure.thrown).toBe(true);
    expect(runner.overview().restarts).toBe(1);
    expect([...sink.committed].sort()).toEqual(simulateTumblingCounts(generatedSequence(definition), semantics).firings.map(firingLine).sort());
  });

  it('with no late data every (key, window) fires once with its exact count', async () => {
    // Given in-order timestamps (the watermark never passes a record's window before the record) and a window
    // operator at parallelism 3 that checkpoints every 50ms
    const semantics = { size: 1_000, allowedLateness: 0, outOfOrderness: 200 };
    const definition = { generate: (i: number, random: () => number) => ({ key: `u${Math.floor(random() * 7)}`, ts: i * 7 + Math.floor(random() * 100) }), count: 20_000, seed: 3 };
    const events = generator(definition);
    const sink = scratch.collector<string>('exact');
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(windowCountsJob({ events, sink, semantics, parallelism: 3 }), runOptions(await scratch.dir(), log));

    // When it runs to the end
    const outcome = await runner.run();

    // Then the firings are those of a plain count per (key, window)
    expect(outcome.state, text()).toBe('FINISHED');
    const input = generatedSequence(definition);
    const counts = new Map<string, WindowFiring>();
    for (const e of input) {
      const start = e.ts - (e.ts % semantics.size);
      const id = `${e.key}\t${start}`;
      const f = counts.get(id) ?? { key: e.key, start, end: start + semantics.size, count: 0 };
      counts.set(id, { ...f, count: f.count + 1 });
    }
    expect([...sink.committed].sort()).toEqual([...counts.values()].map(firingLine).sort());
  });
});

describe('stop-with-savepoint of a windowed job', () => {
  const semantics = { size: 1_000, allowedLateness: 0, outOfOrderness: 0 };
  // One record every 10ms of event time, three keys: 100 records per second of event time.
  const eventAt = (i: number) => ({ key: `k${i % 3}`, ts: i * 10 });
  const eventsAt = (count: number, ratePerSecond?: number) => generator({ generate: eventAt, count, ...(ratePerSecond !== undefined ? { ratePerSecond } : {}) });
  const windowCounts = (input: readonly { key: string; ts: number }[]) => simulateTumblingCounts(input, semantics).firings.map(firingLine).sort();

  it("'drain' fires every pending window before the savepoint; 'stop' leaves them in state, and a restore finishes them", async () => {
    const total = 6_000;
    for (const termination of ['drain', 'stop'] as const) {
      // Given a rate-limited windowed job that also writes every record it reads to a `raw` sink
      const sink = scratch.collector<string>(`windows-${termination}`);
      const raw = scratch.collector<{ key: string; ts: number }>(`raw-${termination}`);
      const { log, text } = captureLog();
      const checkpoints = await scratch.dir();
      const runner = new EmbeddedRunner(windowCountsJob({ events: eventsAt(total, 4_000), sink, rawSink: raw, semantics }), runOptions(checkpoints, log));
      const { done } = await startRunner(runner);
      await waitFor('records to flow', () => sourceRecordsRead(runner) > 500);

      // When it is stopped with a savepoint
      const id = runner.triggerSavepoint({ dir: await scratch.dir(), termination });
      const outcome = await done;
      const status = await awaitTrigger(runner, id);

      // Then the run ends at the savepoint
      expect(outcome.state, text()).toBe('FINISHED');
      expect(status.status).toBe('COMPLETED');
      expect(outcome.savepoint).toBe(status.location);
      const read = [...raw.committed].sort((a, b) => a.ts - b.ts);
      expect(read.length).toBeLessThan(total);
      expect(read.map((e) => e.ts)).toEqual(Array.from({ length: read.length }, (_, i) => i * 10));
      const all = windowCounts(read);
      if (termination === 'drain') {
        // Draining moved event time to its end: every window of what was read fired, the unfinished last ones too.
        expect([...sink.committed].sort()).toEqual(all);
      } else {
        // Stopping did not: what fired is exact, but the window holding the newest record is still open.
        const emitted = [...sink.committed].sort();
        expect(all).toEqual(expect.arrayContaining(emitted));
        const last = read[read.length - 1]!;
        expect(emitted.some((l) => parseFiring(l).key === last.key && parseFiring(l).end > last.ts)).toBe(false);

        // And a run restored from the stop savepoint finishes the open windows from their state
        const resumed = new EmbeddedRunner(
          windowCountsJob({ events: eventsAt(total), sink, rawSink: raw, semantics, parallelism: 3 }),
          runOptions(checkpoints, log, { restore: { kind: 'path', path: outcome.savepoint! } }),
        );
        const end = await resumed.run();
        expect(end.state, text()).toBe('FINISHED');
        expect(raw.committed.length).toBe(total);
        expect([...sink.committed].sort()).toEqual(windowCounts(generatedSequence({ generate: eventAt, count: total })));
      }
    }
  });
});

function sortedKeys<V>(m: ReadonlyMap<string, V>): string[] {
  return [...m.keys()].sort();
}
