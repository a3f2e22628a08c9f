/**
 * Runs a job in this process: one async loop per subtask over bounded in-memory channels, and the coordinator's host
 * (lib/coordination/host.ts) over a job row in memory — the same host, effects and row protocol that emulator mode
 * and the deployed functions run over DynamoDB. Checkpoints on local disk, restarts by the restart strategy.
 */
import { randomBytes } from 'node:crypto';
import type { Job } from '../../api/job.js';
import type { CheckpointStorage, Ports, QueueSender } from '../../ports/index.js';
import type { Termination } from '../../core/coordinator/types.js';
import { JobStatus, type CoordinatorRow } from '../../core/coordinator/job-row.js';
import { Layout } from '../../core/manifest/layout.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import { SubtaskExecutor } from '../../runtime/task-step.js';
import { listCheckpoints, type LoadedManifest } from '../../runtime/snapshot-catalog.js';
import { cancelJob } from '../../coordination/cancel.js';
import { SinkCommitRegistry } from '../../coordination/commits.js';
import { CoordinatorStoreGateway } from '../../coordination/gateway.js';
import { nextGenerationRow, removeUncommittedOutput } from '../../coordination/generation.js';
import { CoordinatorHost } from '../../coordination/host.js';
import { coordinatorLine } from '../../coordination/observer.js';
import { restoreSnapshot } from '../../coordination/restore.js';
import type { AttemptOutcome, RunOutcome } from '../../coordination/restarts.js';
import { InMemoryQueues } from '../../adapters/local/in-memory-queues.js';
import { InMemoryStateStore } from '../../adapters/local/in-memory-state-store.js';
import { InMemoryCoordinatorStore } from '../../adapters/local/in-memory-coordinator-store.js';
import { FileCheckpointStorage } from '../../adapters/local/file-checkpoint-storage.js';
import { checkLocalSavepointTarget } from '../../adapters/local/local-savepoint-target.js';
import { JobState, type JobControl } from '../../rest/job-control.js';
import { JobRun, type JobRunOptions } from '../job-run.js';


/** Options of an embedded run; the job's own options are the defaults. */
export interface EmbeddedRunOptions extends JobRunOptions {
  /** Default savepoint directory, overriding the job's. */
  readonly savepointDir?: string;
  /** @default files on local disk */
  readonly storage?: CheckpointStorage;
  /** Envelopes an in-process channel holds before its sender waits. @default 16 */
  readonly queueCapacity?: number;
}

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

interface Attempt {
  readonly host: CoordinatorHost;
  readonly queues: InMemoryQueues;
  aborted: boolean;
  outcome?: AttemptOutcome;
  resolve: () => void;
  /** Snapshot writes and coordinator calls still in flight; the attempt is not over until they are. */
  readonly inflight: Set<Promise<unknown>>;
  /** Settles once the attempt's loops, snapshot writes and coordinator calls have all ended. */
  readonly stopped: Promise<void>;
}

/**
 * Runs a job in this process: one async loop per subtask over bounded in-memory channels, the coordinator's host
 * driven by a timer, checkpoints on local disk, restarts by the restart strategy.
 */
export class EmbeddedRunner extends JobRun implements JobControl {
  readonly jobId = randomBytes(16).toString('hex');
  private readonly storage: CheckpointStorage;
  private readonly savepointDir: string;
  /** The job row, in memory: the coordinator's state, as every host keeps it. */
  private readonly store = new InMemoryCoordinatorStore();
  private attempt: Attempt | undefined;

  constructor(
    job: Job,
    private readonly options: EmbeddedRunOptions = {},
  ) {
    super(job, options);
    this.storage = options.storage ?? new FileCheckpointStorage();
    this.savepointDir = options.savepointDir ?? job.options.savepoint?.dir ?? '.floe/savepoints';
  }

  /** Runs the job until it finishes, is cancelled or stopped, or fails beyond its restart strategy. */
  async run(): Promise<RunOutcome> {
    this.started();
    await this.removeIncompleteCheckpoints(this.storage);
    return this.runAttempts(this.storage);
  }

  protected currentRow(): CoordinatorRow | undefined {
    return this.store.peek(this.plan.job);
  }

  /** One attempt: a new generation from `restore` (or empty), subtask loops and ticks until the job row says it ended. */
  protected async runAttempt(restore: LoadedManifest | undefined): Promise<AttemptOutcome> {
    const plan = this.plan;
    const previous = this.store.peek(plan.job);
    // Every attempt is a new generation, so whatever an older one left in flight is dropped.
    const gen = Math.max(previous?.runtime.generation ?? 0, restore?.manifest.generation ?? 0) + 1;
    const runId = `g${gen}-${randomBytes(3).toString('hex')}`;
    const state = new InMemoryStateStore();
    const queues = new InMemoryQueues(this.options.queueCapacity ?? 16);
    let restoredUids: ReadonlySet<string> = new Set();
    if (restore) {
      const registry = new SinkCommitRegistry(plan);
      let commitFailure: Error | undefined;
      try {
        const restored = await restoreSnapshot(restore, {
          target: plan,
          allowNonRestoredState: this.options.allowNonRestoredState ?? false,
          state,
          storage: this.storage,
          commit: (commits) =>
            registry.commitAll(commits).catch((e: unknown) => {
              // A pending commit no sink of the plan can carry out is a restore the plan cannot take: refused below.
              if (e instanceof FloeError && e.code === ErrorCode.IncompatibleRestore) throw e;
              throw (commitFailure = e instanceof Error ? e : new Error(String(e)));
            }),
          log: this.log,
        });
        restoredUids = restored.restoredUids;
      } catch (e) {
        // The snapshot's transactions could not be committed (the sink is unavailable, say): the restart strategy
        // tries again, as after any failure. A snapshot the plan cannot take fails the run at once.
        if (commitFailure !== undefined && e === commitFailure) return { state: 'RESTART', error: commitFailure };
        throw e;
      }
      this.restored(restore, gen);
    }
    await removeUncommittedOutput(plan);
    const existing = await listCheckpoints(this.storage, this.checkpointOptions.dir, plan.job);
    const row = nextGenerationRow({
      plan,
      options: this.checkpointOptions,
      jobId: this.jobId,
      savepointDir: this.savepointDir,
      now: this.clock.now(),
      generation: gen,
      usedIds: [existing[existing.length - 1]?.id ?? 0, (previous?.state.nextCheckpointId ?? 1) - 1],
      ...(restore ? { restored: restore.manifest } : {}),
      ...(previous ? { previous } : {}),
    });
    if (previous) await this.store.remove(previous);
    await this.store.create(row);

    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    // Barriers go into the sources' input queues without waiting for room: the host's call must not wait on a
    // subtask (a source's queue holds only barriers, at most a few checkpoints' worth).
    const sender: QueueSender = { send: async (envelopes) => void queues.send(envelopes) };
    const attempt: Attempt = {
      host: new CoordinatorHost({
        plan,
        store: this.store,
        storage: this.storage,
        sender,
        clock: this.clock,
        log: (entry) => {
          const line = coordinatorLine(entry);
          if (line !== undefined) this.log(line);
        },
        onJobStatus: (status) => {
          if (status.status === JobStatus.Failing) this.finish(attempt, { state: 'RESTART', error: new FloeError(ErrorCode.JobFailed, status.detail ?? 'the coordinator failed the job') });
          else if (status.status === JobStatus.Finished) this.finish(attempt, { state: 'FINISHED', ...(status.termination !== 'end' && status.detail !== undefined ? { savepoint: status.detail } : {}) });
          else if (status.status === JobStatus.Canceled) this.finish(attempt, { state: 'CANCELED' });
        },
      }),
      queues,
      aborted: false,
      resolve,
      inflight: new Set(),
      stopped,
    };
    this.attempt = attempt;
    this.state = JobState.Running;
    // A cancel that came while the run was starting (or restoring for a restart) had no attempt to stop: stop this one.
    if (this.cancelRequested) this.finish(attempt, { state: 'CANCELED' });

    const gateway = new CoordinatorStoreGateway({ job: plan.job, store: this.store, effects: attempt.host, clock: this.clock });
    const ports: Ports = { clock: this.clock, queue: queues, state, storage: this.storage, coordinator: gateway };
    const loops: Promise<void>[] = [];
    for (const v of plan.vertices) {
      for (let i = 0; i < v.parallelism; i++) {
        const executor = new SubtaskExecutor(
          // In-process channels never reorder or lose an envelope: a gap is a failure at once.
          { plan, vertex: v, subtask: i, gen, runId, stagingDir: Layout.stagingDir(this.checkpointOptions.dir, plan.job), mode: this.checkpointOptions.mode, incremental: this.checkpointOptions.incremental, restoredUids, maxEnvelopesAhead: 0 },
          ports,
        );
        loops.push(this.subtaskLoop(attempt, executor, v.isSource));
      }
    }
    const tickMs = Math.max(5, Math.min(100, this.checkpointOptions.interval > 0 ? this.checkpointOptions.interval / 4 : 100));
    let ticking = false;
    const ticker = setInterval(() => {
      if (ticking || attempt.outcome) return;
      ticking = true;
      this.track(attempt, attempt.host.tick().finally(() => (ticking = false)));
    }, tickMs);
    await done;
    clearInterval(ticker);
    attempt.aborted = true;
    queues.close();
    await Promise.allSettled(loops);
    // Snapshot writes and coordinator calls outlive the step that started them: wait, so nothing writes to storage after the run returns.
    while (attempt.inflight.size > 0) await Promise.allSettled([...attempt.inflight]);
    stop();
    return attempt.outcome!;
  }

  /** Keeps a coordinator call or snapshot write of the attempt in view; its failure fails the attempt over. */
  private track(attempt: Attempt, work: Promise<unknown>): void {
    const tracked: Promise<unknown> = work.catch((e: unknown) => this.finish(attempt, { state: 'RESTART', error: e instanceof Error ? e : new Error(String(e)) })).finally(() => attempt.inflight.delete(tracked));
    attempt.inflight.add(tracked);
  }

  private finish(attempt: Attempt, outcome: AttemptOutcome): void {
    if (attempt.outcome) return;
    attempt.outcome = outcome;
    attempt.aborted = true;
    attempt.resolve();
  }

  private async subtaskLoop(attempt: Attempt, executor: SubtaskExecutor, isSource: boolean): Promise<void> {
    const key = `${executor.address.vertex}:${executor.address.subtask}`;
    const m = this.metrics.get(executor.address.vertex)!;
    let idle = false;
    try {
      while (!attempt.aborted) {
        const batch = await attempt.queues.receive(key, 16, isSource && !idle ? 0 : 50);
        if (attempt.aborted) return;
        const result = await executor.step(batch);
        m.recordsIn += result.recordsIn;
        m.recordsOut += result.recordsOut;
        for (const p of result.pendingSnapshots) this.track(attempt, p);
        if (result.finished) return;
        idle = result.idle;
        // Let timers and I/O run between steps: a pipeline fed by a CPU-bound source otherwise runs on microtasks
        // alone and starves the coordinator's tick (no checkpoint would ever be triggered).
        await yieldToEventLoop();
      }
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e));
      this.log(`subtask ${key} failed: ${error.message}`);
      this.finish(attempt, { state: 'RESTART', error });
    }
  }

  // JobControl

  private trigger(kind: 'checkpoint' | 'savepoint', dir?: string, termination?: Termination): string {
    const requestId = randomBytes(16).toString('hex');
    const attempt = this.attempt;
    if (!attempt || attempt.outcome || this.state !== JobState.Running) {
      throw new FloeError(ErrorCode.BadRequest, `job '${this.plan.job}' is ${this.state}; it takes ${kind}s only while RUNNING`);
    }
    this.requests.add(requestId);
    const request = { requestId, kind, ...(dir === undefined ? {} : { dir }), ...(termination === undefined ? {} : { termination }) };
    // A trigger that fails to apply fails the request, not the job.
    const applied = attempt.host.dispatch({ type: 'trigger', now: this.clock.now(), request }).catch((e: Error) => this.requests.failed(requestId, e.message));
    attempt.inflight.add(applied);
    void applied.finally(() => attempt.inflight.delete(applied));
    return requestId;
  }

  triggerCheckpoint(): string {
    return this.trigger('checkpoint');
  }

  /** Checks a savepoint directory on local disk (checkLocalSavepointTarget) and returns its canonical path; a storage other than files on disk takes `dir` as it is. */
  async validateSavepointTarget(dir: string | undefined): Promise<string> {
    const target = dir ?? this.savepointDir;
    return this.storage instanceof FileCheckpointStorage ? checkLocalSavepointTarget(target) : target;
  }

  triggerSavepoint(options: { dir?: string; termination?: 'stop' | 'drain' }): string {
    return this.trigger('savepoint', options.dir ?? this.savepointDir, options.termination);
  }

  async cancel(): Promise<void> {
    this.cancelRequested = true;
    const attempt = this.attempt;
    // Recorded in the job row too: nothing more completes or commits, pending checkpoints are aborted.
    if (attempt && !attempt.outcome && this.store.peek(this.plan.job)) {
      await cancelJob(this.store, this.plan.job, this.clock.now()).catch((e: Error) => this.log(`recording the cancel in the job row failed: ${e.message}`));
    }
    if (attempt) this.finish(attempt, { state: 'CANCELED' });
    if (!this.checkpointOptions.retainOnCancel) {
      // Snapshots still being written would land after the deletion: let the attempt wind down first.
      await attempt?.stopped;
      await this.deleteCheckpoints(this.storage);
    }
  }
}
