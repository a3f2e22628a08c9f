/**
 * What the two runners that run a whole job from this process share (the embedded runner and emulator mode): the
 * run as attempts under the restart strategy, where the first attempt restores from, the job control the REST API
 * and the CLI read (overview, checkpoint statistics from the job row, trigger statuses), and deleting the run's
 * checkpoints on cancel. A subclass runs one attempt on its substrate and says where its job row is.
 */
import type { Job } from '../api/job.js';
import { initialCoordinatorState } from '../core/coordinator/coordinator.js';
import type { CoordinatorRow } from '../core/coordinator/job-row.js';
import type { CoordinatorState } from '../core/coordinator/types.js';
import { Layout } from '../core/manifest/layout.js';
import { DEFAULT_RESTART_OPTIONS, resolveCheckpointOptions, resolveRestartOptions, type CheckpointOptions, type ResolvedCheckpointOptions, type ResolvedRestartOptions, type RestartOptions } from '../core/options.js';
import { RestartBackoff } from '../core/restart-strategy.js';
import { buildPlan, type PhysicalPlan } from '../graph/plan.js';
import type { CheckpointStorage, Clock } from '../ports/index.js';
import { describeSkippedCheckpoint, findLatestCheckpoint, listCheckpoints, loadManifest, loadRestorableManifest, type LoadedManifest } from '../runtime/snapshot-catalog.js';
import { restartPoint } from '../coordination/generation.js';
import { failureCause } from '../core/errors.js';
import { runAttempts, type AttemptOutcome, type RestoreSource, type RunOutcome } from '../coordination/restarts.js';
import { JobState, TriggerRequests, endedState, vertexOverviews, type JobOverview, type TriggerStatus } from '../rest/job-control.js';
import { systemClock } from '../adapters/local/system-clock.js';

/** Options every runner takes; the job's own options are the defaults. */
export interface JobRunOptions {
  /** Overrides of the job's checkpoint options. */
  readonly checkpoint?: CheckpointOptions;
  /** Overrides the job's restart strategy. @default the job's, else fixed-delay, 3 attempts, 1s apart */
  readonly restart?: RestartOptions;
  /** Default parallelism, overriding the job's. */
  readonly parallelism?: number;
  /** Where to start from. @default none */
  readonly restore?: RestoreSource;
  /** Drop state of operators the job no longer has. @default false */
  readonly allowNonRestoredState?: boolean;
  /** @default the system clock */
  readonly clock?: Clock;
  /** Receives one line per notable event (restores, checkpoints, restarts). */
  readonly log?: (message: string) => void;
}

/** A job run from this process: attempts, job control, and the REST API's view of the job row. */
export abstract class JobRun {
  readonly plan: PhysicalPlan;
  protected checkpointOptions: ResolvedCheckpointOptions;
  protected readonly backoff: RestartBackoff;
  /** The job's restart strategy, as the run applies it. */
  protected readonly restartOptions: ResolvedRestartOptions;
  protected readonly clock: Clock;
  protected readonly log: (m: string) => void;
  protected state: JobState = JobState.Created;
  protected restoredFrom: JobOverview['restoredFrom'];
  protected readonly requests = new TriggerRequests();
  /** Records in and out per vertex, for the overview. */
  protected readonly metrics = new Map<string, { recordsIn: number; recordsOut: number }>();
  protected cancelRequested = false;
  private startTime = 0;
  private endTime: number | undefined;
  private failureCause: string | undefined;

  constructor(
    readonly job: Job,
    protected readonly runOptions: JobRunOptions,
  ) {
    this.plan = buildPlan(job, { parallelism: runOptions.parallelism, ...(runOptions.checkpoint ? { checkpoint: runOptions.checkpoint } : {}) });
    this.checkpointOptions = resolveCheckpointOptions({ ...job.options.checkpoint, ...runOptions.checkpoint });
    this.restartOptions = resolveRestartOptions(runOptions.restart ?? job.options.restart ?? DEFAULT_RESTART_OPTIONS);
    this.backoff = new RestartBackoff(this.restartOptions, Math.random);
    this.clock = runOptions.clock ?? systemClock;
    this.log = runOptions.log ?? (() => {});
    for (const v of this.plan.vertices) this.metrics.set(v.id, { recordsIn: 0, recordsOut: 0 });
  }

  /** The run's id (32 hex digits), recorded in its manifests. */
  abstract get jobId(): string;

  /** The job row as this runner last knows it. */
  protected abstract currentRow(): CoordinatorRow | undefined;

  /** Runs one attempt, a new generation restored from `restore` (or empty). */
  protected abstract runAttempt(restore: LoadedManifest | undefined): Promise<AttemptOutcome>;

  /** Runs attempts over `storage` from the run's restore source until the job ends; records how it ended. */
  protected async runAttempts(storage: CheckpointStorage): Promise<RunOutcome> {
    const first = await this.initialRestore(storage);
    return this.ended(
      await runAttempts(
        {
          backoff: this.backoff,
          clock: this.clock,
          log: this.log,
          attempt: (restore) => this.runAttempt(restore),
          restartFrom: async (last) => {
            const path = restartPoint(this.currentRow());
            return path === undefined ? last : loadManifest(storage, path);
          },
          cancelled: () => this.cancelRequested,
          restarting: () => (this.state = JobState.Restarting),
        },
        first,
      ),
    );
  }

  /** Records when the run started. */
  protected started(): void {
    this.startTime = this.clock.now();
  }

  /** Records how the run ended. */
  protected ended(outcome: RunOutcome): RunOutcome {
    this.state = outcome.state === 'FINISHED' ? JobState.Finished : outcome.state === 'CANCELED' ? JobState.Canceled : JobState.Failed;
    this.endTime = this.clock.now();
    // With the stack trace of the code that threw, when the failure came from code (a user function, say).
    if (outcome.error) this.failureCause = outcome.error.message.includes('\n    at ') ? outcome.error.message : failureCause(outcome.error.message, outcome.error.cause ?? outcome.error);
    return outcome;
  }

  /** The snapshot the first attempt restores, as the run's restore source says. */
  private async initialRestore(storage: CheckpointStorage): Promise<LoadedManifest | undefined> {
    const source = this.runOptions.restore ?? { kind: 'none' };
    if (source.kind === 'none') return undefined;
    if (source.kind === 'latest-checkpoint') {
      const latest = await findLatestCheckpoint(storage, this.checkpointOptions.dir, this.plan.job, { onSkip: (c) => this.log(`skipped ${describeSkippedCheckpoint(c)}`) });
      if (!latest) this.log(`no completed checkpoint under ${Layout.checkpointsDir(this.checkpointOptions.dir, this.plan.job)}: starting from the beginning`);
      return latest;
    }
    return loadRestorableManifest(storage, source.path);
  }

  /** Deletes checkpoint directories without a manifest: they never completed. */
  protected async removeIncompleteCheckpoints(storage: CheckpointStorage): Promise<void> {
    const existing = await listCheckpoints(storage, this.checkpointOptions.dir, this.plan.job);
    await storage.delete((await Promise.all(existing.filter((c) => !c.complete).map((c) => storage.list(c.dir)))).flat());
  }

  /** Deletes every checkpoint of the job and its shared files (a cancel without `retainOnCancel`). */
  protected async deleteCheckpoints(storage: CheckpointStorage): Promise<void> {
    const all = await listCheckpoints(storage, this.checkpointOptions.dir, this.plan.job);
    await storage.delete((await Promise.all(all.map((c) => storage.list(c.dir)))).flat());
    await storage.delete(await storage.list(Layout.sharedDir(this.checkpointOptions.dir, this.plan.job)));
  }

  /** Records a restore for the overview and says so. */
  protected restored(restore: LoadedManifest, generation: number): void {
    this.restoredFrom = { id: restore.manifest.checkpointId, path: restore.dir, kind: restore.manifest.kind, restoredAt: this.clock.now() };
    this.log(`restored from ${restore.manifest.kind} ${restore.dir} (checkpoint ${restore.manifest.checkpointId}, generation ${generation})`);
  }

  /** Restarts so far, for the overview. */
  protected restartCount(): number {
    return this.backoff.restarts;
  }

  // JobControl

  overview(): JobOverview {
    return {
      jid: this.jobId,
      name: this.plan.job,
      state: this.state,
      startTime: this.startTime,
      endTime: this.endTime,
      maxParallelism: this.plan.maxParallelism,
      vertices: vertexOverviews(this.plan, this.metrics),
      restarts: this.restartCount(),
      restoredFrom: this.restoredFrom,
      failureCause: this.failureCause,
      ...(this.currentRow()?.state.quiet?.confirmed === true ? { quietSince: this.currentRow()!.state.quiet!.since } : {}),
    };
  }

  coordinatorState(): CoordinatorState {
    return this.currentRow()?.state ?? initialCoordinatorState({ tasks: [], sourceTasks: [], options: this.checkpointOptions });
  }

  checkpointConfig(): ResolvedCheckpointOptions {
    return this.checkpointOptions;
  }

  triggerStatus(requestId: string): TriggerStatus | undefined {
    return this.requests.status(requestId, this.currentRow()?.state, endedState(this.state));
  }
}
