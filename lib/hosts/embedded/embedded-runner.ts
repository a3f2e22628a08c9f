import { randomBytes } from 'node:crypto';
import type { Job } from '../../api/job.js';
import type { SinkConnector } from '../../api/connector.js';
import type { CheckpointAck, CheckpointStorage, Clock, CoordinatorGateway, Ports, TaskAddress } from '../../ports/index.js';
import type { CoordinatorEffect, CoordinatorEvent, CoordinatorState, PendingCheckpoint, Termination } from '../../core/coordinator/types.js';
import type { PendingCommit } from '../../core/manifest/model.js';
import { initialCoordinatorState, reduceCoordinator } from '../../core/coordinator/coordinator.js';
import { resolveCheckpointOptions, resolveRestartOptions, type CheckpointOptions, type ResolvedCheckpointOptions, type RestartOptions } from '../../core/options.js';
import { RestartBackoff } from '../../core/restart-strategy.js';
import { planRestore } from '../../core/restore-planner.js';
import { Layout, join } from '../../core/manifest/layout.js';
import { ManifestSerializer } from '../../core/manifest/serializer.js';
import { buildPlan, type PhysicalPlan } from '../../graph/plan.js';
import { SubtaskExecutor } from '../../runtime/task-step.js';
import { COORDINATOR_CHANNEL, ENVELOPE_VERSION, EnvelopeKind, type Envelope } from '../../core/envelope.js';
import { buildManifest, describeSkippedCheckpoint, discardOldCheckpoints, findLatestCheckpoint, listCheckpoints, loadManifest, loadRestorableManifest, type LoadedManifest } from '../../runtime/snapshot-catalog.js';
import { InMemoryQueues } from '../../adapters/local/in-memory-queues.js';
import { InMemoryStateStore } from '../../adapters/local/in-memory-state-store.js';
import { FileCheckpointStorage } from '../../adapters/local/file-checkpoint-storage.js';
import { checkLocalSavepointTarget } from '../../adapters/local/local-savepoint-target.js';
import { JobState, type JobControl, type JobOverview, type TriggerStatus, vertexOverviews } from '../../rest/job-control.js';
import { ErrorCode, FloeError } from '../../core/errors.js';

/** Where a run starts from. */
export type RestoreSource =
  | { readonly kind: 'none' }
  /** The newest intact completed checkpoint under the checkpoint directory (newer corrupt ones are skipped); empty state when there is none at all. */
  | { readonly kind: 'latest-checkpoint' }
  /** A checkpoint or savepoint directory (or its `_metadata` file). */
  | { readonly kind: 'path'; readonly path: string };

/** Options of an embedded run; the job's own options are the defaults. */
export interface EmbeddedRunOptions {
  /** Overrides of the job's checkpoint options. */
  readonly checkpoint?: CheckpointOptions;
  /** Overrides the job's restart strategy. */
  readonly restart?: RestartOptions;
  /** Default parallelism, overriding the job's. */
  readonly parallelism?: number;
  /** Where to start from. @default none */
  readonly restore?: RestoreSource;
  /** Drop state of operators the job no longer has. @default false */
  readonly allowNonRestoredState?: boolean;
  /** Default savepoint directory, overriding the job's. */
  readonly savepointDir?: string;
  /** @default the system clock */
  readonly clock?: Clock;
  /** @default files on local disk */
  readonly storage?: CheckpointStorage;
  /** Envelopes an in-process channel holds before its sender waits. @default 16 */
  readonly queueCapacity?: number;
  /** Receives one line per notable event (restores, checkpoints, restarts). */
  readonly log?: (message: string) => void;
}

/** How a run ended. */
export interface RunOutcome {
  readonly state: 'FINISHED' | 'CANCELED' | 'FAILED';
  readonly error?: Error;
  /** The savepoint written by stop-with-savepoint, if any. */
  readonly savepoint?: string;
}

const systemClock: Clock = { now: () => Date.now() };
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

interface Attempt {
  readonly gen: number;
  readonly plan: PhysicalPlan;
  readonly queues: InMemoryQueues;
  coordinator: CoordinatorState;
  readonly locations: Map<number, { dir: string; sharedDir?: string }>;
  readonly coordinatorSeq: Map<string, number>;
  events: Promise<void>;
  aborted: boolean;
  outcome?: { state: 'FINISHED' | 'CANCELED' | 'FAILED' | 'RESTART'; error?: Error; savepoint?: string };
  resolve: () => void;
  /** Snapshot writes still in flight; the attempt is not over until they are. */
  readonly snapshots: Set<Promise<void>>;
  /** Settles once the attempt's loops, snapshot writes and coordinator events have all ended. */
  readonly stopped: Promise<void>;
  stop: () => void;
}

/**
 * Runs a job in this process: one async loop per subtask over bounded in-memory channels, the checkpoint
 * coordinator reducer driven by a timer, checkpoints on local disk, restarts by the restart strategy.
 */
export class EmbeddedRunner implements JobControl {
  readonly jobId = randomBytes(16).toString('hex');
  readonly plan: PhysicalPlan;
  private readonly checkpointOptions: ResolvedCheckpointOptions;
  private readonly backoff: RestartBackoff;
  private readonly clock: Clock;
  private readonly storage: CheckpointStorage;
  private readonly savepointDir: string;
  private readonly log: (m: string) => void;
  private state: JobState = JobState.Created;
  private startTime = 0;
  private endTime: number | undefined;
  private attempt: Attempt | undefined;
  private generation = 0;
  private nextCheckpointId = 1;
  private latestCompleted: { id: number; path: string } | undefined;
  private restoredFrom: JobOverview['restoredFrom'];
  private failureCause: string | undefined;
  private readonly triggers = new Map<string, TriggerStatus>();
  private readonly metrics = new Map<string, { recordsIn: number; recordsOut: number }>();
  private lastCoordinator: CoordinatorState | undefined;
  private cancelRequested = false;
  /** Cleanup of old checkpoints, one at a time, off the coordinator's event chain. */
  private cleanup: Promise<void> = Promise.resolve();

  constructor(
    readonly job: Job,
    private readonly options: EmbeddedRunOptions = {},
  ) {
    this.plan = buildPlan(job, { parallelism: options.parallelism, ...(options.checkpoint ? { checkpoint: options.checkpoint } : {}) });
    this.checkpointOptions = resolveCheckpointOptions({ ...job.options.checkpoint, ...options.checkpoint });
    this.backoff = new RestartBackoff(resolveRestartOptions(options.restart ?? job.options.restart ?? { type: 'fixed-delay', attempts: 3, delay: '1s' }), Math.random);
    this.clock = options.clock ?? systemClock;
    this.storage = options.storage ?? new FileCheckpointStorage();
    this.savepointDir = options.savepointDir ?? job.options.savepoint?.dir ?? '.floe/savepoints';
    this.log = options.log ?? (() => {});
    for (const v of this.plan.vertices) this.metrics.set(v.id, { recordsIn: 0, recordsOut: 0 });
  }

  /** Runs the job until it finishes, is cancelled or stopped, or fails beyond its restart strategy. */
  async run(): Promise<RunOutcome> {
    this.startTime = this.clock.now();
    let restore: LoadedManifest | undefined = await this.initialRestore();
    const root = this.checkpointOptions.dir;
    const existing = await listCheckpoints(this.storage, root, this.plan.job);
    this.nextCheckpointId = Math.max(this.nextCheckpointId, (existing[existing.length - 1]?.id ?? 0) + 1, (restore?.manifest.checkpointId ?? 0) + 1);
    this.generation = Math.max(this.generation, restore?.manifest.generation ?? 0);
    // Checkpoint directories without a manifest never completed: remove them.
    await this.storage.delete((await Promise.all(existing.filter((c) => !c.complete).map((c) => this.storage.list(c.dir)))).flat());
    for (;;) {
      const outcome = await this.runAttempt(restore);
      if (outcome.state !== 'RESTART') {
        this.state = outcome.state === 'FINISHED' ? JobState.Finished : outcome.state === 'CANCELED' ? JobState.Canceled : JobState.Failed;
        this.endTime = this.clock.now();
        if (outcome.error) this.failureCause = outcome.error.message;
        return { state: outcome.state, error: outcome.error, savepoint: outcome.savepoint };
      }
      const decision = this.backoff.onFailure(this.clock.now());
      if (!decision.restart) {
        this.state = JobState.Failed;
        this.endTime = this.clock.now();
        this.failureCause = `${outcome.error?.message ?? 'failure'} (${decision.reason})`;
        this.log(`job failed: ${this.failureCause}`);
        return { state: 'FAILED', error: new FloeError(ErrorCode.JobFailed, this.failureCause, { cause: outcome.error }) };
      }
      this.state = JobState.Restarting;
      this.log(`restarting in ${decision.delayMs}ms after: ${outcome.error?.message}`);
      await sleep(decision.delayMs);
      if (this.cancelRequested) {
        this.state = JobState.Canceled;
        this.endTime = this.clock.now();
        return { state: 'CANCELED' };
      }
      // Restore from the newest completed checkpoint, else from what this run started from.
      restore = this.latestCompleted ? await loadManifest(this.storage, this.latestCompleted.path) : restore;
    }
  }

  private async initialRestore(): Promise<LoadedManifest | undefined> {
    const source = this.options.restore ?? { kind: 'none' };
    if (source.kind === 'none') return undefined;
    if (source.kind === 'latest-checkpoint') {
      const latest = await findLatestCheckpoint(this.storage, this.checkpointOptions.dir, this.plan.job, { onSkip: (c) => this.log(`skipped ${describeSkippedCheckpoint(c)}`) });
      if (!latest) this.log(`no completed checkpoint under ${Layout.checkpointsDir(this.checkpointOptions.dir, this.plan.job)}: starting from the beginning`);
      return latest;
    }
    return loadRestorableManifest(this.storage, source.path);
  }

  private async commitPending(commits: ReadonlyArray<{ uid: string; commit: PendingCommit }>): Promise<void> {
    const sinks = new Map<string, SinkConnector<unknown>>();
    for (const v of this.plan.vertices) for (const op of v.operators) if (op.node.spec.kind === 'sink') sinks.set(op.uid, op.node.spec.connector);
    for (const { uid, commit } of commits) {
      // By uid only when it is still the same kind of sink: a commit handed to another kind cannot be carried out.
      const byUid = sinks.get(uid);
      const sink = byUid?.type === commit.sink ? byUid : [...sinks.values()].find((s) => s.type === commit.sink);
      if (!sink) throw new FloeError(ErrorCode.IncompatibleRestore, `pending commit of sink '${uid}' (${commit.sink}) has no sink of that kind in the job to commit it`);
      await sink.commit(commit);
    }
  }

  private async runAttempt(restore: LoadedManifest | undefined): Promise<NonNullable<Attempt['outcome']>> {
    const plan = this.plan;
    const gen = ++this.generation;
    const runId = `g${gen}-${randomBytes(3).toString('hex')}`;
    const store = new InMemoryStateStore();
    const queues = new InMemoryQueues(this.options.queueCapacity ?? 16);
    const restoredUids = new Set<string>();
    if (restore) {
      const source = `${restore.manifest.kind} ${restore.dir}`;
      const restorePlan = planRestore(restore.manifest, plan, { allowNonRestoredState: this.options.allowNonRestoredState ?? false, source });
      for (const note of restorePlan.notes) this.log(note);
      await this.commitPending(restorePlan.pendingCommits);
      for (const [key, operators] of restorePlan.subtasks) {
        const [vertex, subtask] = [key.slice(0, key.lastIndexOf(':')), Number(key.slice(key.lastIndexOf(':') + 1))];
        const v = plan.vertices.find((x) => x.id === vertex)!;
        const lo = Math.floor((subtask * plan.maxParallelism + v.parallelism - 1) / v.parallelism);
        const hi = Math.floor(((subtask + 1) * plan.maxParallelism - 1) / v.parallelism) + 1;
        await store.forSubtask({ vertex, subtask }).restore({ storage: this.storage, manifestDir: restore.dir, keyGroups: [lo, hi], operators });
      }
      for (const op of restore.manifest.operators) restoredUids.add(op.uid);
      this.restoredFrom = { id: restore.manifest.checkpointId, path: restore.dir, kind: restore.manifest.kind, restoredAt: this.clock.now() };
      this.log(`restored from ${source} (checkpoint ${restore.manifest.checkpointId}, generation ${gen})`);
    }
    for (const v of plan.vertices) for (const op of v.operators) {
      const connector = op.node.spec.kind === 'sink' ? (op.node.spec.connector as SinkConnector<unknown> & { cleanup?: (uid: string) => Promise<void> }) : undefined;
      await connector?.cleanup?.(op.uid);
    }

    const tasks = plan.vertices.flatMap((v) => Array.from({ length: v.parallelism }, (_, i) => `${v.id}:${i}`));
    const sourceTasks = plan.vertices.filter((v) => v.isSource).flatMap((v) => Array.from({ length: v.parallelism }, (_, i) => `${v.id}:${i}`));
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const attempt: Attempt = {
      gen,
      plan,
      queues,
      coordinator: initialCoordinatorState({
        tasks,
        sourceTasks,
        options: this.checkpointOptions,
        now: this.clock.now(),
        nextCheckpointId: this.nextCheckpointId,
        latestCompletedId: this.latestCompleted?.id ?? restore?.manifest.checkpointId,
        restored: restore !== undefined,
      }),
      locations: new Map(),
      coordinatorSeq: new Map(),
      events: Promise.resolve(),
      aborted: false,
      resolve,
      snapshots: new Set(),
      stopped,
      stop,
    };
    if (this.lastCoordinator) {
      const prev = this.lastCoordinator;
      attempt.coordinator = { ...attempt.coordinator, counts: { ...prev.counts, restored: prev.counts.restored + (restore ? 1 : 0) }, history: prev.history };
    }
    this.attempt = attempt;
    this.state = JobState.Running;
    // A cancel that came while the run was starting (or restoring for a restart) had no attempt to stop: stop this one.
    if (this.cancelRequested) this.finish(attempt, { state: 'CANCELED' });

    const gateway: CoordinatorGateway = {
      acknowledge: async (ack: CheckpointAck) =>
        this.dispatch(attempt, { type: 'ack', now: this.clock.now(), checkpointId: ack.checkpointId, ack: { task: `${ack.task.vertex}:${ack.task.subtask}`, operators: ack.operators, ackTimestamp: this.clock.now() } }),
      decline: async (checkpointId: number, task: TaskAddress, reason: string) =>
        this.dispatch(attempt, { type: 'decline', now: this.clock.now(), checkpointId, task: `${task.vertex}:${task.subtask}`, reason }),
      sourceFinished: async (task: TaskAddress) => this.dispatch(attempt, { type: 'sourceFinished', now: this.clock.now(), task: `${task.vertex}:${task.subtask}` }),
      failTask: async (task: TaskAddress, reason: string) => this.dispatch(attempt, { type: 'taskFailed', now: this.clock.now(), task: `${task.vertex}:${task.subtask}`, reason }),
    };
    const ports: Ports = { clock: this.clock, queue: queues, state: store, storage: this.storage, coordinator: gateway };

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
    const ticker = setInterval(() => this.dispatch(attempt, { type: 'tick', now: this.clock.now() }), tickMs);
    await done;
    clearInterval(ticker);
    attempt.aborted = true;
    queues.close();
    await Promise.allSettled(loops);
    // Snapshot writes outlive the step that started them: wait, so nothing writes to storage after the run returns.
    await Promise.allSettled([...attempt.snapshots]);
    await this.cleanup;
    await attempt.events.catch(() => undefined);
    this.lastCoordinator = attempt.coordinator;
    attempt.stop();
    return attempt.outcome!;
  }

  private finish(attempt: Attempt, outcome: NonNullable<Attempt['outcome']>): void {
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
        for (const p of result.pendingSnapshots) {
          const tracked: Promise<void> = p.catch((e: Error) => this.finish(attempt, { state: 'RESTART', error: e })).finally(() => attempt.snapshots.delete(tracked));
          attempt.snapshots.add(tracked);
        }
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

  /** Feeds an event to the coordinator reducer and carries out its effects, one event at a time. */
  private dispatch(attempt: Attempt, event: CoordinatorEvent): Promise<void> {
    const run = async () => {
      if (attempt.outcome) return;
      const step = reduceCoordinator(attempt.coordinator, event);
      attempt.coordinator = step.state;
      this.lastCoordinator = step.state;
      for (const effect of step.effects) await this.apply(attempt, effect);
    };
    attempt.events = attempt.events.then(run, run).catch((e: Error) => this.finish(attempt, { state: 'RESTART', error: e }));
    return attempt.events;
  }

  private async apply(attempt: Attempt, effect: CoordinatorEffect): Promise<void> {
    const root = this.checkpointOptions.dir;
    switch (effect.type) {
      case 'injectBarrier': {
        this.nextCheckpointId = Math.max(this.nextCheckpointId, effect.checkpointId + 1);
        const pending = attempt.coordinator.pending.find((p) => p.id === effect.checkpointId);
        const location =
          effect.kind === 'savepoint'
            ? { dir: Layout.savepointDir(pending?.dir ?? this.savepointDir, `${this.jobId.slice(0, 6)}-${effect.checkpointId}-${randomBytes(3).toString('hex')}`) }
            : { dir: Layout.checkpointDir(root, this.plan.job, effect.checkpointId), sharedDir: Layout.sharedDir(root, this.plan.job) };
        attempt.locations.set(effect.checkpointId, location);
        if (pending?.requestId) this.triggers.set(pending.requestId, { status: 'IN_PROGRESS', checkpointId: effect.checkpointId });
        const end = effect.termination === 'end' || effect.termination === 'drain';
        const barriers: Envelope[] = [];
        for (const v of attempt.plan.vertices.filter((x) => x.isSource)) {
          for (let i = 0; i < v.parallelism; i++) {
            const to = `${v.id}:${i}`;
            const seq = (attempt.coordinatorSeq.get(to) ?? 0) + 1;
            attempt.coordinatorSeq.set(to, seq);
            barriers.push({
              v: ENVELOPE_VERSION,
              job: this.plan.job,
              gen: attempt.gen,
              from: COORDINATOR_CHANNEL,
              to: { op: v.id, subtask: i },
              seq,
              kind: end ? EnvelopeKind.End : EnvelopeKind.Barrier,
              epoch: effect.checkpointId,
              barrier: {
                checkpointId: effect.checkpointId,
                kind: effect.kind,
                timestamp: effect.timestamp,
                stop: effect.termination === 'stop' || undefined,
                location: location.dir,
                sharedLocation: location.sharedDir,
                committedThrough: effect.committedThrough,
              },
            });
          }
        }
        void attempt.queues.send(barriers);
        return;
      }
      case 'writeManifest': {
        const location = attempt.locations.get(effect.checkpoint.id)!;
        try {
          const manifest = buildManifest({ plan: this.plan, jobId: this.jobId, generation: attempt.gen, checkpoint: effect.checkpoint, completedAt: this.clock.now() });
          await this.storage.putIfAbsent(join(location.dir, Layout.METADATA), ManifestSerializer.serialize(manifest));
          this.queueEvent(attempt, { type: 'manifestWritten', now: this.clock.now(), checkpointId: effect.checkpoint.id, path: location.dir });
        } catch (e) {
          this.queueEvent(attempt, { type: 'manifestFailed', now: this.clock.now(), checkpointId: effect.checkpoint.id, reason: (e as Error).message });
        }
        return;
      }
      case 'checkpointCompleted': {
        const record = attempt.coordinator.history.find((h) => h.id === effect.checkpointId);
        // The checkpoint is complete once its manifest is written, before its sinks commit: a commit that fails then
        // fails the attempt, and the restart restores this checkpoint and commits its transactions again. Restoring
        // the one before would replay the epoch into new transactions while this one may be half applied.
        if (effect.kind === 'checkpoint') {
          if (!this.latestCompleted || effect.checkpointId > this.latestCompleted.id) this.latestCompleted = { id: effect.checkpointId, path: effect.path };
          // Cleanup runs on a chain of its own: listing and deleting must not hold up the next trigger and the acks.
          this.cleanup = this.cleanup.then(() => discardOldCheckpoints(this.storage, root, this.plan.job, this.checkpointOptions.retained)).catch((e: Error) => this.log(`checkpoint cleanup failed: ${e.message}`));
        }
        if (effect.commits) await this.commitPending(this.pendingCommitsOf(record?.acks ?? {}));
        if (effect.requestId) this.triggers.set(effect.requestId, { status: 'COMPLETED', checkpointId: effect.checkpointId, location: effect.path });
        this.log(`${effect.kind} ${effect.checkpointId} completed: ${effect.path}`);
        return;
      }
      case 'checkpointAborted': {
        if (effect.requestId) this.triggers.set(effect.requestId, { status: 'FAILED', checkpointId: effect.checkpointId, failureCause: effect.reason });
        this.log(`checkpoint ${effect.checkpointId} aborted: ${effect.reason}`);
        return;
      }
      case 'failJob':
        this.finish(attempt, { state: 'RESTART', error: new FloeError(ErrorCode.JobFailed, effect.reason) });
        return;
      case 'jobFinished': {
        const path = attempt.locations.get(effect.checkpointId)?.dir;
        this.finish(attempt, { state: 'FINISHED', savepoint: effect.termination === 'end' ? undefined : path });
        return;
      }
      case 'jobCanceled':
        this.finish(attempt, { state: 'CANCELED' });
        return;
    }
  }

  /** Queues an event after the current one (effects must not wait on the event chain they run in). */
  private queueEvent(attempt: Attempt, event: CoordinatorEvent): void {
    void this.dispatch(attempt, event);
  }

  private pendingCommitsOf(acks: PendingCheckpoint['acks']): { uid: string; commit: PendingCommit }[] {
    const out: { uid: string; commit: PendingCommit }[] = [];
    for (const ack of Object.values(acks)) for (const [uid, snap] of Object.entries(ack.operators)) for (const commit of snap.pendingCommits) out.push({ uid, commit });
    return out;
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
      restarts: this.backoff.restarts,
      restoredFrom: this.restoredFrom,
      failureCause: this.failureCause,
    };
  }

  coordinatorState(): CoordinatorState {
    return this.attempt?.coordinator ?? initialCoordinatorState({ tasks: [], sourceTasks: [], options: this.checkpointOptions });
  }

  checkpointConfig(): ResolvedCheckpointOptions {
    return this.checkpointOptions;
  }

  private trigger(kind: 'checkpoint' | 'savepoint', dir?: string, termination?: Termination): string {
    const requestId = randomBytes(16).toString('hex');
    const attempt = this.attempt;
    if (!attempt || attempt.outcome || this.state !== JobState.Running) {
      throw new FloeError(ErrorCode.BadRequest, `job '${this.plan.job}' is ${this.state}; it takes ${kind}s only while RUNNING`);
    }
    this.triggers.set(requestId, { status: 'IN_PROGRESS' });
    void this.dispatch(attempt, { type: 'trigger', now: this.clock.now(), request: { requestId, kind, dir, termination } });
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

  triggerStatus(requestId: string): TriggerStatus | undefined {
    return this.triggers.get(requestId);
  }

  async cancel(): Promise<void> {
    this.cancelRequested = true;
    const attempt = this.attempt;
    if (attempt) this.finish(attempt, { state: 'CANCELED' });
    if (!this.checkpointOptions.retainOnCancel) {
      // Snapshots still being written would land after the deletion: let the attempt wind down first.
      await attempt?.stopped;
      const all = await listCheckpoints(this.storage, this.checkpointOptions.dir, this.plan.job);
      await this.storage.delete((await Promise.all(all.map((c) => this.storage.list(c.dir)))).flat());
      await this.storage.delete(await this.storage.list(Layout.sharedDir(this.checkpointOptions.dir, this.plan.job)));
    }
  }
}
