import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Job } from '../../lib/api/job.js';
import { CoordinatorHost } from '../../lib/coordination/host.js';
import { newCoordinatorRow } from '../../lib/coordination/generation.js';
import { collectSink, resetCollector } from '../../lib/connectors/collect-sink.js';
import { generator } from '../../lib/connectors/generator.js';
import { InMemoryCoordinatorStore } from '../../lib/adapters/local/in-memory-coordinator-store.js';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { JobStatus } from '../../lib/core/coordinator/job-row.js';
import { CheckpointStatus, type CheckpointRecord } from '../../lib/core/coordinator/types.js';
import { resolveCheckpointOptions } from '../../lib/core/options.js';
import { buildPlan } from '../../lib/graph/plan.js';

const T0 = 1_700_000_000_000;
const SINK = 'host-finish-test';
const dirs: string[] = [];
afterEach(async () => {
  resetCollector(SINK);
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('CoordinatorHost: a job whose final sink commit failed where it completed', () => {
  it('is committed again by a tick a checkpoint timeout later and only then recorded FINISHED', async () => {
    // Given a bounded job whose final checkpoint 3 completed (the reducer says FINISHED), but whose commit failed, so
    // the job status still says RUNNING
    const sink = collectSink<string>(SINK);
    let failing = true;
    const flaky = { ...sink, commit: async (c: unknown) => (failing ? Promise.reject(new Error('sink unavailable')) : sink.commit(c as never)) };
    const job = new Job('host-finish', { parallelism: 1 });
    job.source(generator({ count: 1, generate: (i) => `v${i}` }), { uid: 'events' }).sinkTo(flaky, { uid: 'out' });
    const plan = buildPlan(job);
    const root = await mkdtemp(join(tmpdir(), 'floe-host-finish-'));
    dirs.push(root);
    const options = resolveCheckpointOptions({ dir: join(root, 'chk'), timeout: '1m' });
    const store = new InMemoryCoordinatorStore();
    const row = newCoordinatorRow({ plan, options, jobId: 'run-1', savepointDir: join(root, 'sp'), now: T0 });
    const final: CheckpointRecord = {
      id: 3,
      kind: 'checkpoint',
      status: CheckpointStatus.Completed,
      triggeredAt: T0,
      finishedAt: T0 + 100,
      termination: 'end',
      acknowledged: 1,
      total: 1,
      externalPath: join(root, 'chk', 'chk-3'),
      stateSize: 0,
      fullSize: 0,
      acks: {
        'events:0': {
          task: 'events:0',
          ackTimestamp: T0 + 50,
          operators: {
            out: {
              subtask: 0,
              keyGroups: [0, 128],
              keyedState: [],
              operatorState: [],
              pendingCommits: [{ sink: 'collect', collector: SINK, id: 'out-0-3-r', values: ['v0'] }],
              stats: { ackTimestamp: 0, alignmentMs: 0, syncMs: 0, asyncMs: 0, startDelayMs: 0, stateSize: 0, fullSize: 0 },
            },
          },
        },
      },
    };
    await store.create({ ...row, state: { ...row.state, status: 'FINISHED', latestCompletedId: 3, history: [final] } });
    const clock = { t: T0 + 1_000, now: () => clock.t };
    const host = new CoordinatorHost({ plan, store, storage: new FileCheckpointStorage(), sender: { send: async () => {} }, clock, log: () => {} });

    // When ticks come: within the checkpoint timeout nothing is retried (the completing invocation may still commit)
    await host.tick();
    expect(sink.committed).toEqual([]);
    // After it, a tick commits again, but the sink still fails: the job is not FINISHED
    clock.t = T0 + 100 + 60_000;
    await expect(host.tick()).rejects.toThrow('sink unavailable');
    expect((await store.require('host-finish')).jobStatus?.status).toBe(JobStatus.Running);
    // Once the sink takes it, the next tick commits and records FINISHED, with the final checkpoint's path
    failing = false;
    await host.tick();
    expect(sink.committed).toEqual(['v0']);
    expect((await store.require('host-finish')).jobStatus).toMatchObject({ status: JobStatus.Finished, detail: join(root, 'chk', 'chk-3') });
    // and later ticks do nothing more
    await host.tick();
    expect(sink.committed).toEqual(['v0']);
  });
});
