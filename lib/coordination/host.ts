/**
 * The coordinator's work on AWS: carrying out the effects of written reducer steps, and the state machine's tasks.
 *
 * | effect                | on AWS                                                                                  |
 * | --------------------- | --------------------------------------------------------------------------------------- |
 * | `injectBarrier`       | barrier envelopes (seq and directory from the job row) to each source vertex's queue,    |
 * |                       | then StartExecution `<job>-chk-<n>` (skipped inside that execution's own Trigger task)   |
 * | `writeManifest`       | `buildManifest` → `putIfAbsent(<dir>/_metadata)` → event `manifestWritten` / `…Failed`   |
 * | `checkpointCompleted` | pending sink commits via the committer registry; `discardOldCheckpoints` for checkpoints |
 * | `checkpointAborted`   | logged (its status item is written with every status change)                            |
 * | `failJob`             | job row `jobStatus = FAILING` with the reason (the restart supervisor takes it from there) |
 * | `jobFinished`         | job row `jobStatus = FINISHED` with the savepoint path                                  |
 * | `jobCanceled`         | job row `jobStatus = CANCELED`                                                          |
 *
 * Tasks (each idempotent, so Step Functions may retry them):
 * - **trigger** `n`: if `n` is the next id, apply a `trigger` request and write it only if the reducer starts `n`
 *   at once (a queued request would start later under another id, whose execution could not be this one); if `n`
 *   was allocated already, re-send its barriers. Answers the status key and the countdown to its deadline.
 * - **abort** `n`: apply a `tick` (the reducer expires what is overdue — never a checkpoint whose manifest is being
 *   written); re-run the manifest write of an overdue checkpoint that has all its acks (its writer died); rewrite
 *   the status item from the row. Answers the status.
 * - **complete** `n`: commit the checkpoint's pending sink transactions again, so completion side effects happen
 *   at least once even if the process that completed the checkpoint died right after (an intermediate savepoint
 *   commits nothing: its sinks carry their transactions into the next checkpoint).
 * - **tick**: the periodic heartbeat (interval, min pause, queued requests, timeouts); then, with a
 *   {@link SourceChainDriver}, it starts the sources of a generation nobody started yet (so a deployed job starts
 *   with its first tick) and lets the driver's watchdog re-wake stalled source chains. A generation `floe start`
 *   restored (`runtime.start`) is started only once its state is written, and after the snapshot's pending sink
 *   transactions are committed (lib/hosts/lambda/job-start.ts).
 *
 * A `putIfAbsent` refused because `_metadata` exists means another writer of the same checkpoint won (a duplicate
 * or a re-run): the stored manifest is read back and, if it is this run's checkpoint `n`, adopted as written. The
 * effects of one step all run even when one fails; the failures are then thrown together, so the caller's message
 * comes back, and what was lost is recovered by the watchdog execution (barriers by Trigger, manifests by Abort,
 * commits by Complete, status items by Abort).
 */
import { CheckpointStatus, type CoordinatorEffect, type CoordinatorEvent, type CoordinatorState, type PendingCheckpoint, type Termination } from '../core/coordinator/types.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import { Layout, join } from '../core/manifest/layout.js';
import { ManifestSerializer } from '../core/manifest/serializer.js';
import type { PhysicalPlan } from '../graph/plan.js';
import type { CheckpointStorage, Clock, QueueSender, SinkCommitter } from '../ports/index.js';
import { buildManifest, discardOldCheckpoints, loadManifest } from '../runtime/snapshot-catalog.js';
import { barrierEnvelopes } from './barriers.js';
import { SinkCommitRegistry, commitsOfManifest, commitsOfRecord } from './commits.js';
import { guardedObserver, jsonLineLog, type CoordinatorLog, type CoordinatorObservation, type CoordinatorObserver } from './observer.js';
import { JobStatus, StartPhase, checkpointStatusOf, isFinalStatus, isTerminal, planTasks, sameDeployment, startedPlanMismatch, startedPlanOf, type CheckpointStatusChange, type CoordinatorRow, type GenerationStart, type JobStatusRecord, type RowTransition } from '../core/coordinator/job-row.js';
import { deployedPlanOf, newCoordinatorRow, removeUncommittedOutput, type NewCoordinatorRowInput } from './generation.js';
import { CoordinatorConflictError, type AppliedStep, type CoordinatorStore, type EffectRunner } from '../ports/coordinator-store.js';
import { checkpointExecutionName, type AbortTaskOutput, type CheckpointExecutionInput, type CompleteTaskOutput, type TriggerTaskOutput, type CheckpointExecutions } from './checkpoint-tasks.js';
import { Restarter, type RestarterOptions } from './restarter.js';

/**
 * After this long a claim to prepare a started generation (phase `preparing`) is taken over by another tick, in ms:
 * Lambda's longest function timeout, so the invocation that claimed it has ended by then.
 */
export const PREPARE_TAKEOVER_MS = 15 * 60_000;

/** Most status checks one execution makes before its deadline; longer timeouts poll less often. */
export const MAX_POLL_ROUNDS = 1000;

/** The Trigger task could not start the checkpoint its execution is named after. */
export class TriggerRefusedError extends FloeError {
  constructor(message: string) {
    super(ErrorCode.BadRequest, message);
    this.name = 'TriggerRefusedError';
  }
}

/** The coordinator's part in driving the sources' wake-up chains (implemented in lib/hosts/lambda/source-chains.ts). */
export interface SourceChainDriver {
  /** Sends the first wake to every source subtask of `generation`; sending it again is harmless (same deduplication ids). */
  start(generation: number): Promise<void>;
  /** Re-sends the next wake of the row's source chains that made no progress for too long. */
  watch(row: CoordinatorRow): Promise<void>;
}

/** Options of {@link CoordinatorHost}. */
export interface CoordinatorHostOptions {
  /** The job's physical plan: source vertices get barriers, manifests list its operators. */
  readonly plan: PhysicalPlan;
  readonly store: CoordinatorStore;
  /** Where manifests are written (S3 on AWS). */
  readonly storage: CheckpointStorage;
  /** Sends barrier envelopes to the source vertices' queues. */
  readonly sender: QueueSender;
  /** Starts the watchdog execution of a checkpoint a tick or request started. @default none (the caller starts executions) */
  readonly executions?: CheckpointExecutions;
  /** Committers of pending sink transactions, by sink kind; the plan's own sinks are used for kinds not listed. @default [] */
  readonly committers?: readonly SinkCommitter[];
  /** Starts and watches the sources' wake chains on ticks. @default none (the caller starts the sources) */
  readonly sources?: SourceChainDriver;
  /** Where time comes from (the system clock, lib/adapters/local/system-clock.ts, unless a test fakes it). */
  readonly clock: Clock;
  /** @default JSON lines on stdout */
  readonly log?: CoordinatorLog;
  /** Told of checkpoints triggered, completed and aborted and of fail-overs, for metrics. @default none */
  readonly observer?: CoordinatorObserver;
  /**
   * Told once the job row records a new job status (FAILING, FINISHED, CANCELED), after the write: how a host that
   * runs the subtasks itself (the embedded runner) learns that its attempt ended. `termination` says how a FINISHED
   * job ended. @default none (readers poll the row)
   */
  readonly onJobStatus?: (status: JobStatusRecord & { readonly termination?: Termination }) => void;
  /**
   * Restart a FAILING job by itself, by this strategy, writing the restored state into `state`
   * (lib/coordination/restarter.ts). @default none: a failed job stays FAILING until `floe start`
   */
  readonly restarts?: Pick<RestarterOptions, 'restart' | 'state' | 'ticks' | 'random'>;
}

/** Where effects run: inside the Trigger task of checkpoint `insideExecution`, that execution need not be started. */
export interface EffectContext {
  readonly insideExecution?: number;
}

/** Carries out coordinator effects and runs the state machine's tasks for one job. */
export class CoordinatorHost implements EffectRunner {
  readonly job: string;
  private readonly plan: PhysicalPlan;
  private readonly store: CoordinatorStore;
  private readonly storage: CheckpointStorage;
  private readonly sender: QueueSender;
  private readonly executions: CheckpointExecutions | undefined;
  private readonly sources: SourceChainDriver | undefined;
  private readonly commits: SinkCommitRegistry;
  private readonly clock: Clock;
  private readonly log: CoordinatorLog;
  private readonly observe: (observation: CoordinatorObservation) => void;
  private readonly onJobStatus: CoordinatorHostOptions['onJobStatus'];
  private readonly restarter: Restarter | undefined;

  constructor(options: CoordinatorHostOptions) {
    this.plan = options.plan;
    this.job = options.plan.job;
    this.store = options.store;
    this.storage = options.storage;
    this.sender = options.sender;
    this.executions = options.executions;
    this.sources = options.sources;
    this.commits = new SinkCommitRegistry(options.plan, options.committers);
    this.clock = options.clock;
    this.log = options.log ?? jsonLineLog;
    this.observe = guardedObserver(options.observer, this.log);
    this.onJobStatus = options.onJobStatus;
    this.restarter =
      options.restarts &&
      new Restarter({
        ...options.restarts,
        plan: options.plan,
        store: options.store,
        storage: options.storage,
        clock: options.clock,
        log: this.log,
        recordStatus: (status, detail) => this.recordStatus({ status, detail, at: this.clock.now() }),
      });
  }

  /** Creates the job row unless the job has one already; returns the stored row. */
  async initialize(input: Omit<NewCoordinatorRowInput, 'plan' | 'now'> & { readonly now?: number }): Promise<CoordinatorRow> {
    const now = input.now ?? this.clock.now();
    const row = newCoordinatorRow({ ...input, plan: this.plan, now });
    let stored: CoordinatorRow;
    try {
      stored = await this.store.create(row);
    } catch (e) {
      if (e instanceof CoordinatorConflictError && e.current) stored = e.current;
      else throw e;
    }
    // A redeploy (another parallelism, say) keeps the row: record the plan the functions now run, which `floe start` restores onto.
    const deployment = deployedPlanOf(this.plan, input.options, input.savepointDir, input.functionTimeoutMs);
    if (sameDeployment(stored.runtime.deployment, deployment)) return stored;
    return this.store.updateRuntime(this.job, (r) => (sameDeployment(r.runtime.deployment, deployment) ? undefined : { ...r.runtime, deployment }), now);
  }

  /** Applies an event to the job row and carries out the effects of the written step. */
  async dispatch(event: CoordinatorEvent, context: EffectContext = {}): Promise<AppliedStep> {
    const applied = await this.store.apply(this.job, event, { accept: (t) => !startsCheckpointDuringStart(t) });
    await this.run(applied, context);
    return applied;
  }

  /**
   * Carries out a written step: status items first, then each effect in order, feeding the events effects produce
   * (manifest written or failed) back through the job row. Every effect is attempted; failures are thrown together.
   */
  async run(applied: AppliedStep, context: EffectContext = {}): Promise<void> {
    if (!applied.written) return;
    const errors: unknown[] = [];
    const attempt = async (what: () => Promise<void>) => {
      try {
        await what();
      } catch (e) {
        errors.push(e);
      }
    };
    for (const change of applied.statusChanges) await attempt(() => this.store.putCheckpointStatus(this.job, change));
    // Checkpoints whose sink commit failed here: a job is not FINISHED while its final transactions are not committed.
    const uncommitted = new Set<number>();
    for (const effect of applied.step.effects) {
      if (effect.type === 'jobFinished' && uncommitted.has(effect.checkpointId)) {
        this.log({ level: 'warn', message: `job not recorded FINISHED: the sink commit of checkpoint ${effect.checkpointId} failed; its Complete task commits it again`, job: this.job, checkpointId: effect.checkpointId });
        continue;
      }
      const before = errors.length;
      await attempt(async () => {
        for (const event of await this.carryOut(effect, applied.row, context)) await this.dispatch(event, context);
      });
      if (effect.type === 'checkpointCompleted' && errors.length > before) uncommitted.add(effect.checkpointId);
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) {
      const retryable = errors.every((e) => e instanceof FloeError && e.retryable);
      throw new FloeError(ErrorCode.Storage, `${errors.length} coordinator effects failed: ${errors.map((e) => (e as Error).message).join('; ')}`, { cause: errors, retryable });
    }
  }

  /** The Trigger task: makes sure checkpoint `n` is started and its barriers are sent; throws TriggerRefusedError when it cannot be. */
  async trigger(input: CheckpointExecutionInput, pollIntervalSeconds: number): Promise<TriggerTaskOutput> {
    const n = input.checkpointId;
    let row = await this.store.require(this.job);
    let sent = false;
    if (n === row.state.nextCheckpointId) {
      const r = input.request;
      const request = {
        requestId: r?.requestId ?? checkpointExecutionName(this.job, n),
        kind: r?.kind ?? 'checkpoint',
        ...(r?.dir === undefined ? {} : { dir: r.dir }),
        ...(r?.termination === undefined ? {} : { termination: r.termination }),
      } as const;
      const applied = await this.store.apply(
        this.job,
        { type: 'trigger', now: this.clock.now(), request },
        { accept: (t) => !startsCheckpointDuringStart(t) && t.step.effects.some((e) => e.type === 'injectBarrier' && e.checkpointId === n) },
      );
      row = applied.row;
      if (applied.written) {
        await this.run(applied, { insideExecution: n });
        sent = true;
        this.log({ level: 'info', message: `${request.kind} ${n} triggered`, job: this.job, checkpointId: n });
      }
    }
    // Refused, or another trigger of the same execution allocated `n` meanwhile: decide on the row as it is now.
    if (n >= row.state.nextCheckpointId) throw new TriggerRefusedError(refusalReason(row, n));
    const pending = row.state.pending.find((p) => p.id === n);
    if (pending && !sent) {
      await this.sender.send(barrierEnvelopes(this.plan, row, n));
      await this.store.putCheckpointStatus(this.job, { checkpointId: n, kind: pending.kind, status: CheckpointStatus.InProgress, at: pending.triggeredAt });
    } else if (!pending) {
      await this.store.putCheckpointStatus(this.job, await this.finishedStatus(row, n));
    }
    return { checkpointId: n, statusKey: this.store.checkpointStatusKey(this.job, n), ...countdown(row.state, pending, this.clock.now(), pollIntervalSeconds) };
  }

  /** The Abort task: lets the reducer expire checkpoint `n` if it is overdue, recovers a stuck manifest write, and answers the status. */
  async abort(checkpointId: number): Promise<AbortTaskOutput> {
    const now = this.clock.now();
    let row = (await this.dispatch({ type: 'tick', now })).row;
    const pending = row.state.pending.find((p) => p.id === checkpointId);
    if (pending?.finalizing && now - pending.triggeredAt >= row.state.options.timeout) {
      // Every task acked long ago but the manifest's outcome never reached the row: its writer died. Writing is idempotent.
      this.log({ level: 'warn', message: `rewriting the manifest of ${pending.kind} ${checkpointId}: all tasks acked but it never completed`, job: this.job, checkpointId });
      await this.run({ row, step: { state: row.state, effects: [{ type: 'writeManifest', checkpoint: pending }] }, written: true, refused: false, statusChanges: [] });
      row = await this.store.require(this.job);
    }
    const status = checkpointStatusOf(row, checkpointId) ?? (await this.finishedStatus(row, checkpointId));
    if (status.status !== CheckpointStatus.InProgress) await this.store.putCheckpointStatus(this.job, status);
    return { status: status.status, ...(status.reason === undefined ? {} : { reason: status.reason }) };
  }

  /** The Complete task: commits completed checkpoint `n`'s pending sink transactions (again; commits are idempotent). */
  async complete(checkpointId: number): Promise<CompleteTaskOutput> {
    const row = await this.store.require(this.job);
    const status = checkpointStatusOf(row, checkpointId) ?? (await this.store.getCheckpointStatus(this.job, checkpointId));
    if (status?.status !== CheckpointStatus.Completed || status.path === undefined) {
      throw new FloeError(ErrorCode.NotFound, `${checkpointId} is not a completed checkpoint of job '${this.job}' (${status?.status ?? 'unknown'})`);
    }
    const committed = await this.commitCheckpoint(row, checkpointId, status.path);
    if (status.kind === 'checkpoint') await this.dispatch({ type: 'committed', now: this.clock.now(), checkpointId });
    // The snapshot that ended the job: once its transactions are committed the job is FINISHED (recorded here too, in
    // case the invocation that completed it failed to commit and so did not record it).
    const record = row.state.history.find((h) => h.id === checkpointId);
    if (row.state.status === 'FINISHED' && record?.termination !== undefined && !isFinalStatus(row.jobStatus?.status)) {
      await this.recordStatus({ status: JobStatus.Finished, ...(record.externalPath === undefined ? {} : { detail: record.externalPath }), at: this.clock.now() }, record.termination);
    }
    return { committed };
  }

  /**
   * The periodic heartbeat: starts due checkpoints, serves queued requests, expires overdue ones; then starts the
   * sources of a generation nobody started yet, or watches their chains.
   *
   * A schedule's tick names the time it was scheduled for (`scheduledTime`, ISO 8601). Within a minute of the clock,
   * the reducer decides on that time rather than on the moment of delivery: ticks of a one-minute schedule are then
   * exactly a minute apart, so an interval of N minutes starts a checkpoint every N minutes, and not every N + 1 when
   * a tick happened to run a little sooner after the last trigger's than the one before it.
   */
  async tick(scheduledTime?: string): Promise<AppliedStep> {
    const now = this.clock.now();
    const scheduled = scheduledTime === undefined ? NaN : Date.parse(scheduledTime);
    const at = Number.isFinite(scheduled) && Math.abs(now - scheduled) <= 60_000 ? scheduled : now;
    const applied = await this.dispatch({ type: 'tick', now: at });
    const row = this.restarter ? await this.restarter.supervise(applied.row) : applied.row;
    await this.finishCommitted(row);
    await this.superviseSources(row);
    return applied;
  }

  /**
   * A subtask did work since its last barrier while its view of the job row showed the job quiet
   * (lib/core/coordinator/quiet.ts): the quiet ends and a periodic checkpoint may start at once. Writes the row only
   * while it is quiet, so the repeats of other subtasks cost a read.
   */
  async activity(task: string): Promise<void> {
    const row = await this.store.load(this.job);
    if (row?.state.quiet === undefined) return;
    this.log({ level: 'info', message: `${task} did work while the job was quiet: periodic checkpoints resume`, job: this.job, task });
    await this.dispatch({ type: 'activity', now: this.clock.now(), task });
  }

  /**
   * A job whose snapshot ended it (the reducer says FINISHED) but whose status is not FINISHED a checkpoint timeout
   * later: its final sink commit failed where it completed, and the Complete task's retries may have run out too.
   * Every tick commits it again (commits are idempotent) and records FINISHED once that succeeds, so the job ends as
   * soon as the sink takes it rather than staying RUNNING for ever.
   */
  private async finishCommitted(row: CoordinatorRow): Promise<void> {
    if (row.state.status !== 'FINISHED' || isFinalStatus(row.jobStatus?.status)) return;
    const final = row.state.history.find((h) => h.status === CheckpointStatus.Completed && h.termination !== undefined);
    // Not while the invocation that completed it may still be committing: after the checkpoint timeout, as a stuck manifest write.
    if (final && this.clock.now() - (final.finishedAt ?? final.triggeredAt) >= row.state.options.timeout) await this.complete(final.id);
  }

  /** Starts the sources of the row's generation if that was not done, else lets the watchdog look at their chains; only while RUNNING. */
  async superviseSources(row: CoordinatorRow): Promise<void> {
    if (!this.sources || row.state.status !== 'RUNNING' || isTerminal(row) || row.jobStatus?.status === JobStatus.Failing) return;
    // `floe start` is still writing this generation's state: nothing may run yet.
    if (row.runtime.start?.phase === StartPhase.Restoring) return;
    if (row.runtime.sourcesStartedAt === undefined) await this.startSources(row);
    else await this.sources.watch(row);
  }

  /**
   * Sends every source subtask of the row's generation its first wake and records when in the row. Idempotent: a
   * repeat sends the same messages (dropped by SQS's deduplication, or by the chains' fence after five minutes).
   */
  async startSources(row?: CoordinatorRow): Promise<CoordinatorRow> {
    if (!this.sources) throw new FloeError(ErrorCode.InvalidOptions, `the coordinator of '${this.job}' has no source chain driver to start the sources with`);
    const current = row ?? (await this.store.require(this.job));
    const generation = current.runtime.generation;
    const start = current.runtime.start;
    if (start !== undefined && start.generation === generation && start.phase !== StartPhase.Prepared) {
      if (start.phase === StartPhase.Restoring || !(await this.prepareStartedGeneration(current, start))) return this.store.require(this.job);
    }
    await this.sources.start(generation);
    const now = this.clock.now();
    const stored = await this.store.updateRuntime(
      this.job,
      (r) => {
        if (r.runtime.generation !== generation || r.runtime.sourcesStartedAt !== undefined) return undefined;
        const { start: _done, ...runtime } = r.runtime;
        return { ...runtime, sourcesStartedAt: now };
      },
      now,
    );
    if (stored.runtime.sourcesStartedAt === now) this.log({ level: 'info', message: `sources of generation ${generation} started`, job: this.job, generation });
    return stored;
  }

  /**
   * Before the sources of a generation `floe start` restored run: checks that the generation was laid out for the
   * plan these functions run (a start that read the plan before a redeploy reached the coordinator fails the
   * generation instead of running it at the old parallelism), commits the snapshot's pending sink transactions
   * (again; commits are idempotent) and removes output no checkpoint committed.
   *
   * It runs once per generation, however many ticks come at once (the schedule's and `floe start`'s, duplicates of
   * the standard task queue): an invocation first claims it with a conditional write (`ready` → `preparing`), and
   * only the claimant writes `prepared`, after which the sources may start. Removing output after the sources
   * started would delete the running generation's in-progress objects; the removal also spares the objects of this
   * run (`runtime.jobId`). A claim whose invocation died is taken over after {@link PREPARE_TAKEOVER_MS}.
   * Answers whether the sources may start now: false when it failed the generation, or another invocation prepares it.
   */
  private async prepareStartedGeneration(row: CoordinatorRow, start: GenerationStart): Promise<boolean> {
    const expected = planTasks(this.plan).tasks;
    const laidOut = new Set(row.state.tasks);
    const mismatch =
      expected.length !== laidOut.size || expected.some((t) => !laidOut.has(t))
        ? `subtasks ${[...laidOut].join(', ')}, but the deployed plan has ${expected.join(', ')}`
        : startedPlanMismatch(start.plan, startedPlanOf(deployedPlanOf(this.plan, row.state.options, row.runtime.savepointDir)));
    if (mismatch !== undefined) {
      const reason = `generation ${start.generation} was started for ${mismatch} (the plan changed while \`floe start\` ran); run \`floe start\` again`;
      this.log({ level: 'error', message: reason, job: this.job, generation: start.generation });
      await this.recordStatus({ status: JobStatus.Failing, detail: reason, at: this.clock.now() });
      return false;
    }
    const claimedAt = this.clock.now();
    const ours = (r: CoordinatorRow) => r.runtime.start?.phase === StartPhase.Preparing && r.runtime.start.generation === start.generation && r.runtime.start.preparingAt === claimedAt;
    // Whether this invocation's claim is the write that landed (two claims in the same millisecond look alike).
    let wrote = false;
    const claimed = await this.store.updateRuntime(
      this.job,
      (r) => {
        wrote = false;
        const s = r.runtime.start;
        if (r.runtime.generation !== start.generation || s?.generation !== start.generation) return undefined;
        const abandoned = s.phase === StartPhase.Preparing && claimedAt - (s.preparingAt ?? 0) >= PREPARE_TAKEOVER_MS;
        if (s.phase !== StartPhase.Ready && !abandoned) return undefined;
        wrote = true;
        return { ...r.runtime, start: { ...s, phase: StartPhase.Preparing, preparingAt: claimedAt } };
      },
      claimedAt,
    );
    if (!wrote || !ours(claimed)) {
      // Another invocation prepares it (its sources start when it is done), or has prepared it: then start them too.
      const s = claimed.runtime.start;
      return claimed.runtime.generation === start.generation && s?.generation === start.generation && s.phase === StartPhase.Prepared;
    }
    try {
      if (start.from !== undefined) {
        const commits = commitsOfManifest((await loadManifest(this.storage, start.from)).manifest);
        await this.commits.commitAll(commits);
        this.log({ level: 'info', message: `committed ${commits.length} pending sink transaction(s) of ${start.from}`, job: this.job, generation: start.generation });
      }
      await removeUncommittedOutput(this.plan, row.runtime.jobId);
    } catch (e) {
      // Give the claim back, so the next tick prepares again instead of waiting for the claim to expire.
      await this.store
        .updateRuntime(this.job, (r) => (ours(r) ? { ...r.runtime, start: { ...r.runtime.start!, phase: StartPhase.Ready } } : undefined), this.clock.now())
        .catch(() => undefined);
      throw e;
    }
    const prepared = await this.store.updateRuntime(
      this.job,
      (r) => (ours(r) ? { ...r.runtime, start: { ...r.runtime.start!, phase: StartPhase.Prepared } } : undefined),
      this.clock.now(),
    );
    return prepared.runtime.start?.phase === StartPhase.Prepared && prepared.runtime.start.preparingAt === claimedAt;
  }

  /** Carries out one effect; returns the events its outcome produces. */
  private async carryOut(effect: CoordinatorEffect, row: CoordinatorRow, context: EffectContext): Promise<CoordinatorEvent[]> {
    switch (effect.type) {
      case 'injectBarrier': {
        this.observe({ type: 'checkpointTriggered', checkpointId: effect.checkpointId, kind: effect.kind, generation: row.runtime.generation });
        await this.sender.send(barrierEnvelopes(this.plan, row, effect.checkpointId));
        if (this.executions && context.insideExecution !== effect.checkpointId) await this.executions.start(effect.checkpointId);
        return [];
      }
      case 'writeManifest':
        return [await this.writeManifest(row, effect.checkpoint)];
      case 'checkpointCompleted': {
        const committed = await this.commitCheckpoint(row, effect.checkpointId, effect.path);
        this.log({ level: 'info', message: `${effect.kind} ${effect.checkpointId} completed`, job: this.job, checkpointId: effect.checkpointId, path: effect.path, committed });
        const record = row.state.history.find((h) => h.id === effect.checkpointId);
        this.observe({
          type: 'checkpointCompleted',
          checkpointId: effect.checkpointId,
          kind: effect.kind,
          generation: row.runtime.generation,
          ...(record ? { stateSize: record.stateSize, fullSize: record.fullSize } : {}),
          ...(record?.finishedAt === undefined ? {} : { durationMs: record.finishedAt - record.triggeredAt }),
        });
        if (effect.kind === 'checkpoint') {
          const { dir, retained } = row.state.options;
          // Cleanup must not fail the completion: what it leaves is removed by the next one.
          await discardOldCheckpoints(this.storage, dir, this.job, retained).catch((e: Error) =>
            this.log({ level: 'warn', message: `checkpoint cleanup failed: ${e.message}`, job: this.job, checkpointId: effect.checkpointId }),
          );
          // Only now may later barriers let the sinks drop these transactions (`committedThrough`).
          return [{ type: 'committed', now: this.clock.now(), checkpointId: effect.checkpointId }];
        }
        return [];
      }
      case 'checkpointAborted':
        this.log({ level: 'warn', message: `checkpoint ${effect.checkpointId} aborted: ${effect.reason}`, job: this.job, checkpointId: effect.checkpointId });
        this.observe({ type: 'checkpointAborted', checkpointId: effect.checkpointId, generation: row.runtime.generation, reason: effect.reason });
        return [];
      case 'failJob':
        this.log({ level: 'error', message: `job failing over: ${effect.reason}`, job: this.job });
        this.observe({ type: 'jobFailing', generation: row.runtime.generation, reason: effect.reason });
        await this.recordStatus({ status: JobStatus.Failing, detail: effect.reason, at: this.clock.now() });
        return [];
      case 'jobFinished': {
        const path = row.state.history.find((h) => h.id === effect.checkpointId)?.externalPath;
        this.log({ level: 'info', message: `job finished (${effect.termination}) with checkpoint ${effect.checkpointId}`, job: this.job, path });
        await this.recordStatus({ status: JobStatus.Finished, ...(path === undefined ? {} : { detail: path }), at: this.clock.now() }, effect.termination);
        return [];
      }
      case 'jobCanceled':
        this.log({ level: 'info', message: 'job cancelled', job: this.job, generation: row.runtime.generation });
        await this.recordStatus({ status: JobStatus.Canceled, at: this.clock.now() });
        return [];
    }
  }

  /** Records the job's status in its row and tells `onJobStatus`. */
  private async recordStatus(record: JobStatusRecord, termination?: Termination): Promise<void> {
    await this.store.setJobStatus(this.job, record);
    this.onJobStatus?.({ ...record, ...(termination === undefined ? {} : { termination }) });
  }

  /** Writes a fully acknowledged checkpoint's manifest, create-only; answers the event that reports the outcome. */
  private async writeManifest(row: CoordinatorRow, checkpoint: PendingCheckpoint): Promise<CoordinatorEvent> {
    const id = checkpoint.id;
    const placement = row.runtime.placements[String(id)];
    const failed = (reason: string): CoordinatorEvent => ({ type: 'manifestFailed', now: this.clock.now(), checkpointId: id, reason });
    if (!placement) return failed(`the job row has no placement for ${checkpoint.kind} ${id}`);
    const location = join(placement.dir, Layout.METADATA);
    try {
      const manifest = buildManifest({ plan: this.plan, jobId: row.runtime.jobId, generation: row.runtime.generation, checkpoint, completedAt: this.clock.now() });
      await this.storage.putIfAbsent(location, ManifestSerializer.serialize(manifest));
      return { type: 'manifestWritten', now: this.clock.now(), checkpointId: id, path: placement.dir };
    } catch (e) {
      const exists = e instanceof FloeError && e.code === ErrorCode.ManifestExists;
      // A PUT that reported a failure may still have landed: only a manifest that is not there has failed.
      if (exists || (await this.storage.exists(location).catch(() => false))) return this.adoptManifest(row, id, placement.dir);
      return failed((e as Error).message);
    }
  }

  /** Another writer created `dir/_metadata` first: it completes checkpoint `id` if it is this run's manifest of it. */
  private async adoptManifest(row: CoordinatorRow, id: number, dir: string): Promise<CoordinatorEvent> {
    let found;
    try {
      found = (await loadManifest(this.storage, dir)).manifest;
    } catch (e) {
      if (e instanceof FloeError && (e.code === ErrorCode.CorruptManifest || e.code === ErrorCode.UnsupportedManifestVersion)) {
        return { type: 'manifestFailed', now: this.clock.now(), checkpointId: id, reason: e.message };
      }
      throw e;
    }
    if (found.checkpointId === id && found.jobId === row.runtime.jobId) {
      this.log({ level: 'info', message: `manifest of checkpoint ${id} was written by another writer; adopting it`, job: this.job, checkpointId: id });
      return { type: 'manifestWritten', now: this.clock.now(), checkpointId: id, path: dir };
    }
    return {
      type: 'manifestFailed',
      now: this.clock.now(),
      checkpointId: id,
      reason: `${join(dir, Layout.METADATA)} holds checkpoint ${found.checkpointId} of run ${found.jobId}, not checkpoint ${id} of run ${row.runtime.jobId}`,
    };
  }

  /** Commits a completed checkpoint's pending sink transactions, from its history record or else from its manifest; answers how many. */
  private async commitCheckpoint(row: CoordinatorRow, id: number, path: string): Promise<number> {
    const record = row.state.history.find((h) => h.id === id);
    // An intermediate savepoint commits nothing (its sinks carry their transactions into the next checkpoint).
    if (record && record.kind === 'savepoint' && record.termination === undefined) return 0;
    const commits = record ? commitsOfRecord(record) : commitsOfManifest((await loadManifest(this.storage, path)).manifest);
    await this.commits.commitAll(commits);
    return commits.length;
  }

  /** The status of a checkpoint that is no longer pending: its history record, else whether its manifest exists. */
  private async finishedStatus(row: CoordinatorRow, id: number): Promise<CheckpointStatusChange> {
    const known = checkpointStatusOf(row, id);
    if (known) return known;
    const stored = await this.store.getCheckpointStatus(this.job, id);
    if (stored && stored.status !== CheckpointStatus.InProgress) return stored;
    const dir = Layout.checkpointDir(row.state.options.dir, this.job, id);
    const now = this.clock.now();
    if (await this.storage.exists(join(dir, Layout.METADATA))) return { checkpointId: id, kind: 'checkpoint', status: CheckpointStatus.Completed, at: now, path: dir };
    return { checkpointId: id, kind: stored?.kind ?? 'checkpoint', status: CheckpointStatus.Failed, at: now, reason: `checkpoint ${id} finished without a manifest and has left the history` };
  }
}

/**
 * Whether a step would start a checkpoint while `floe start` has not finished starting the row's generation: its
 * barriers would reach sources whose state is still being written, or make sinks write output that the
 * generation's preparation then removes.
 */
function startsCheckpointDuringStart(t: RowTransition): boolean {
  return t.row.runtime.start !== undefined && t.step.effects.some((e) => e.type === 'injectBarrier');
}

/** Why checkpoint `n` cannot be started now. */
function refusalReason(row: CoordinatorRow, n: number): string {
  const state = row.state;
  if (n > state.nextCheckpointId) return `checkpoint ${n} is not the next one (${state.nextCheckpointId})`;
  const start = row.runtime.start;
  if (start !== undefined) return `checkpoint ${n} cannot start: generation ${start.generation} is still being started (${start.phase})`;
  if (state.status !== 'RUNNING') return `checkpoint ${n} cannot start: the job is ${state.status}`;
  if (state.pending.length >= state.options.maxConcurrent) {
    return `checkpoint ${n} cannot start: ${state.pending.length} pending (checkpoint.maxConcurrent is ${state.options.maxConcurrent})`;
  }
  return `checkpoint ${n} cannot start now: a snapshot that ends the job is pending or requests are queued`;
}

/** The status checks left before a checkpoint's deadline, and how far apart they are. */
function countdown(state: CoordinatorState, pending: PendingCheckpoint | undefined, now: number, pollIntervalSeconds: number): { pollSeconds: number; remaining: number[] } {
  const { timeout } = state.options;
  const pollSeconds = Math.max(pollIntervalSeconds, Math.ceil(timeout / 1000 / MAX_POLL_ROUNDS));
  if (!pending) return { pollSeconds, remaining: [] };
  const left = Math.max(0, pending.triggeredAt + timeout - now);
  return { pollSeconds, remaining: new Array<number>(Math.ceil(left / (pollSeconds * 1000))).fill(0) };
}
