import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedRunner, Job, collectSink, generator, valueState } from '../../lib/index.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('embedded runner liveness', () => {
  it('takes periodic checkpoints while a CPU-bound unbounded source keeps every subtask busy', async () => {
    // Given an unbounded generator with no I/O anywhere in the pipeline
    const dir = mkdtempSync(join(tmpdir(), 'floe-liveness-'));
    dirs.push(dir);
    const job = new Job('liveness', { parallelism: 2, checkpoint: { interval: 100, dir } });
    job
      .source(generator({ generate: (i) => `k${i % 500}` }), { uid: 'gen' })
      .keyBy((k) => k)
      .process(
        {
          state: { n: valueState<number>() },
          processElement(k, ctx, out) {
            const n = (ctx.state.n.value() ?? 0) + 1;
            ctx.state.n.update(n);
            out.collect(n);
          },
        },
        { uid: 'count' },
      )
      .sinkTo(collectSink('liveness'), { uid: 'sink' });
    const runner = new EmbeddedRunner(job);
    const outcome = runner.run();

    // When it runs for 1.5 seconds of wall time
    await new Promise((r) => setTimeout(r, 1500));
    const completedWhileRunning = runner.coordinatorState().counts.completed;
    const recordsIn = runner.overview().vertices.find((v) => v.id === 'gen')!.recordsIn;
    await runner.cancel();

    // Then the coordinator's timer was not starved: several checkpoints completed, and records flowed meanwhile
    expect(completedWhileRunning).toBeGreaterThanOrEqual(3);
    expect(recordsIn).toBeGreaterThan(10_000);
    expect((await outcome).state).toBe('CANCELED');
  });
});
