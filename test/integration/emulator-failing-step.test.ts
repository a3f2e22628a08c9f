import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { EmulatorRunner } from '../../lib/hosts/emulator/emulator-runner.js';
import { filesSink } from '../../lib/connectors/files-sink.js';
import { generator } from '../../lib/connectors/generator.js';
import { Job, valueState } from '../../lib/index.js';
import { Scratch, captureLog, readCommittedLines, sorted } from '../support/jobs.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
const scratch = new Scratch();
afterEach(() => scratch.cleanup());

const COUNT = 3_000;
const KEYS = 30;

/** `events` (key `k<i mod KEYS>`) → keyBy → running count; `fail(i)` decides whether the count function throws on event i. */
function countsJob(name: string, out: string, fail: (i: number) => boolean): Job {
  const job = new Job(name, { parallelism: 2, maxParallelism: 32 });
  job
    .source(generator<{ i: number; key: string }>({ count: COUNT, generate: (i) => ({ i, key: `k${i % KEYS}` }) }), { uid: 'events' })
    .keyBy((e) => e.key)
    .process(
      {
        state: { n: valueState<number>() },
        processElement(e, ctx, o) {
          if (fail(e.i)) throw new Error(`cannot count event ${e.i}`);
          const n = (ctx.state.n.value() ?? 0) + 1;
          ctx.state.n.update(n);
          o.collect(`${e.key}\t${n}`);
        },
      },
      { uid: 'count' },
    )
    .sinkTo(filesSink({ dir: out }), { uid: 'out' });
  return job;
}

/** The oracle: for each key with N events, `key<TAB>1` .. `key<TAB>N`. */
function oracle(): string[] {
  const n = new Map<string, number>();
  const lines: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    const key = `k${i % KEYS}`;
    n.set(key, (n.get(key) ?? 0) + 1);
    lines.push(`${key}\t${n.get(key)}`);
  }
  return sorted(lines);
}

/** The job in emulator mode under a namespace of its own, checkpointing twice a second, allowed one restart. */
async function aRunner(label: string, fail: (i: number) => boolean) {
  const out = await scratch.dir('floe-emu-out-');
  const { log, text } = captureLog();
  const runner = new EmulatorRunner(countsJob(`${label}-${randomUUID().slice(0, 6)}`, out, fail), {
    endpoint,
    namespace: `fail-${randomUUID().slice(0, 8)}`,
    checkpoint: { interval: '500ms' },
    restart: { type: 'fixed-delay', attempts: 1, delay: 10 },
    sourceChunkSize: 200,
    log,
  });
  return { runner, out, text };
}

describe('a failing step in emulator mode', () => {
  it('user code that throws on every delivery of a record fails the job over, and the restart strategy then fails it, naming the operator', async () => {
    // Given a count function that always throws on event 1234, and one restart allowed
    const { runner, text } = await aRunner('poison', (i) => i === 1234);

    // When it runs
    const outcome = await runner.run();

    // Then it neither finishes (records would be missing) nor stalls: it fails, once restarted, with the error
    expect(outcome.state, text()).toBe('FAILED');
    expect(outcome.error?.message, text()).toMatch(/task count:\d failed: operator 'count' threw: cannot count event 1234 \(failed on all 5 deliveries its queue allows\)/);
    expect(runner.overview().restarts).toBe(1);
    expect(text()).toMatch(/restarting in \d+ms as generation \d+ \(restart 1\) from .+ after: task count:\d failed/);
    // The failure cause carries the stack trace of the user code that threw
    expect(runner.overview().failureCause, text()).toMatch(/cannot count event 1234[^]*\n\s+at (Object\.)?processElement \(.*emulator-failing-step\.test\.ts:\d+:\d+\)/);
  });

  it('user code that throws once is retried by redelivery, and the output is exact', async () => {
    // Given a count function that throws the first time it meets event 1234 only
    let thrown = 0;
    const { runner, out, text } = await aRunner('flaky', (i) => i === 1234 && thrown++ === 0);

    const outcome = await runner.run();

    expect(outcome.state, text()).toBe('FINISHED');
    expect(thrown).toBeGreaterThanOrEqual(2);
    expect(runner.overview().restarts).toBe(0);
    expect(sorted(await readCommittedLines(out))).toEqual(oracle());
  });

  it('a job whose step fails on every delivery restarts by itself from its latest checkpoint, with no floe start, and the output is exact', async () => {
    // Given a count function that throws on event 1700 on every delivery until the job has restarted: the first
    // generation fails over, the coordinator restarts the job, and the restored generation gets past the event.
    const holder: { runner?: EmulatorRunner } = {};
    const { runner, out, text } = await aRunner('restart', (i) => i === 1700 && holder.runner!.overview().restarts === 0);
    holder.runner = runner;

    // When it runs, nobody intervening
    const outcome = await runner.run();

    // Then it finished after exactly one restart, and every count was committed exactly once
    expect(outcome.state, text()).toBe('FINISHED');
    expect(runner.overview().restarts, text()).toBe(1);
    const restart = /restarting in \d+ms as generation (\d+) \(restart 1\) from (\S+(?: state)?) after: task count:\d failed: operator 'count' threw: cannot count event 1700/.exec(text());
    expect(restart, text()).not.toBeNull();
    // It restored the newest checkpoint completed before the failure (empty state only when none had completed)
    const before = text().slice(0, restart!.index);
    const completed = [...before.matchAll(/checkpoint (\d+) completed: (\S+)/g)].map((m) => m[2]);
    expect(restart![2]).toBe(completed.at(-1) ?? 'empty state');
    expect(text()).toContain(`generation ${restart![1]} restored from ${restart![2]}; its sources start now`);
    const committed = sorted(await readCommittedLines(out));
    expect(committed.length).toBe(COUNT);
    expect(committed).toEqual(oracle());
  });
});
