/**
 * A deployed job that fails restarts by itself, by the job's restart strategy (Flink's fixed-delay, failure-rate,
 * exponential-delay, none — the options the embedded runner takes): the coordinator's tick finds the row FAILING,
 * decides by the strategy (its memory of the run's failures is kept in the row), and moves the job to a new
 * generation restored from the newest checkpoint the run completed — else from what the run started from — in the
 * same steps `floe start` takes, spread over ticks:
 *
 *     FAILING ─tick─▶ decide: give up ─▶ FAILED (final; `floe start` may start it again)
 *                       │ restart after d
 *                       ▼
 *     fence: generation g+1, start = restoring, restoreAt = now + max(d, settle)   (handlers leave generation g;
 *       ─tick ≥ restoreAt─▶ claim ─▶ clear the state table, write each subtask's share of the snapshot      steps in
 *       ─▶ row: g+1 RUNNING, start = ready ─▶ (same tick) commit the snapshot's transactions, remove            flight end)
 *          uncommitted output, start the sources
 *
 * `settle` is the functions' timeout plus the handlers' reread interval (`settleMsOf`): a step of the failed
 * generation may still commit until then, and must not land in the restored state. Each step is a conditional write
 * of the row, so ticks that come at once (the schedule's, a requested one, duplicates of the standard queue) restart
 * the job once; a claim to write the state whose invocation died is taken over after {@link RESTORE_TAKEOVER_MS}.
 */
import { JobStatus, StartPhase, isTerminal, type CoordinatorRow, type DeployedPlan } from '../core/coordinator/job-row.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import type { ResolvedRestartOptions } from '../core/options.js';
import { INITIAL_RESTART_STATE, decideRestart } from '../core/restart-strategy.js';
import type { PhysicalPlan } from '../graph/plan.js';
import { CoordinatorConflictError, type CoordinatorStore } from '../ports/coordinator-store.js';
import type { CheckpointStorage, Clock, StateStore } from '../ports/index.js';
import { loadRestorableManifest } from '../runtime/snapshot-catalog.js';
import { deployedPlanOf, readyGenerationRow, restartPoint, settleMsOf } from './generation.js';
import type { CoordinatorLog } from './observer.js';
import { planSnapshotRestore, writeRestoredState } from './restore.js';

/** After this long a claim to write a restarted generation's state is taken over by another tick, in ms (Lambda's longest timeout). */
export const RESTORE_TAKEOVER_MS = 15 * 60_000;

/** Asks for a coordinator tick after a delay (a delayed message on the tasks queue on AWS). */
export interface TickRequester {
  request(delayMs: number): Promise<void>;
}

/** What a {@link Restarter} works with. */
export interface RestarterOptions {
  readonly plan: PhysicalPlan;
  readonly store: CoordinatorStore;
  readonly storage: CheckpointStorage;
  /** The state the generations' subtasks read: cleared and written with the restored snapshot. */
  readonly state: StateStore;
  readonly restart: ResolvedRestartOptions;
  readonly clock: Clock;
  readonly log: CoordinatorLog;
  /** Records a job status (through the host, which tells its listeners). */
  readonly recordStatus: (status: JobStatus, detail: string) => Promise<void>;
  /** Asks for the tick that writes the restored state when it is due. @default none (the schedule's ticks) */
  readonly ticks?: TickRequester;
  /** The exponential strategy's jitter. @default Math.random */
  readonly random?: () => number;
}

/** Restarts a failed generation by the job's restart strategy (see the module comment). */
export class Restarter {
  private readonly job: string;

  constructor(private readonly options: RestarterOptions) {
    this.job = options.plan.job;
  }

  /** Looks at the row after a tick: decides a restart of a FAILING job, or writes a due one's state. Answers the row as it now is. */
  async supervise(row: CoordinatorRow): Promise<CoordinatorRow> {
    const start = row.runtime.start;
    const restarting = start?.phase === StartPhase.Restoring && start.restoreAt !== undefined;
    // Cancelled (or failed for good) while a restart was pending: the restart is dropped, nothing runs again.
    if (isTerminal(row)) return restarting ? this.dropRestart(row) : row;
    // FAILING by the status or by the reducer (the truth: a failover whose status write was lost still restarts).
    if ((row.state.status === 'FAILING' || row.jobStatus?.status === JobStatus.Failing) && start === undefined) return this.decide(row);
    if (restarting && this.options.clock.now() >= start.restoreAt!) return this.restore(row);
    return row;
  }

  /** Removes a pending restart's start from a row that ended (a cancel came while it waited). */
  private async dropRestart(row: CoordinatorRow): Promise<CoordinatorRow> {
    const generation = row.runtime.start!.generation;
    this.options.log({ level: 'info', message: `restart as generation ${generation} dropped: the job is ${row.jobStatus?.status ?? row.state.status}`, job: this.job, generation });
    return this.options.store.updateRuntime(
      this.job,
      (r) => {
        const s = r.runtime.start;
        if (!isTerminal(r) || s?.phase !== StartPhase.Restoring || s.restoreAt === undefined || s.generation !== generation) return undefined;
        const { start: _dropped, ...runtime } = r.runtime;
        return runtime;
      },
      this.options.clock.now(),
    );
  }

  /** The deployed plan as the row records it, else as these functions run it. */
  private deployment(row: CoordinatorRow): DeployedPlan {
    return row.runtime.deployment ?? deployedPlanOf(this.options.plan, row.state.options, row.runtime.savepointDir);
  }

  /** Decides by the strategy: FAILED, or a fence to the next generation with the time its state may be written. */
  private async decide(row: CoordinatorRow): Promise<CoordinatorRow> {
    const { store, clock, log } = this.options;
    const now = clock.now();
    // The FAILING status's detail, or the reducer's reason when that write has not landed (or was lost).
    const cause = (row.jobStatus?.status === JobStatus.Failing ? row.jobStatus.detail : undefined) ?? row.state.failure ?? 'the job failed over';
    const { decision, state } = decideRestart(this.options.restart, row.runtime.restarts ?? INITIAL_RESTART_STATE, now, this.options.random ?? Math.random);
    if (!decision.restart) {
      const detail = `${cause} (${decision.reason})`;
      log({ level: 'error', message: `job failed: ${detail}`, job: this.job, generation: row.runtime.generation });
      await this.options.recordStatus(JobStatus.Failed, detail);
      return store.require(this.job);
    }
    const generation = row.runtime.generation + 1;
    const from = restartPoint(row);
    const restoreAt = now + Math.max(decision.delayMs, settleMsOf(this.deployment(row)));
    // Whether this invocation's write is the one that landed (the last call of `change` answers for the write).
    let wrote = false;
    const fenced = await store.updateRuntime(
      this.job,
      (r) => {
        wrote = false;
        if (r.version !== row.version) return undefined;
        const { sourcesStartedAt: _started, start: _start, ...runtime } = r.runtime;
        wrote = true;
        return { ...runtime, generation, placements: {}, restarts: state, start: { phase: StartPhase.Restoring, generation, at: now, restoreAt, ...(from === undefined ? {} : { from }) } };
      },
      now,
    );
    if (!wrote) return fenced;
    log({
      level: 'warn',
      message: `restarting in ${restoreAt - now}ms as generation ${generation} (restart ${state.attempts}) from ${from ?? 'empty state'} after: ${cause.split('\n')[0]}`,
      job: this.job,
      generation,
    });
    await this.options.ticks?.request(restoreAt - now).catch((e: Error) => log({ level: 'warn', message: `requesting the restart's tick failed (the schedule's next tick does it): ${e.message}`, job: this.job }));
    return fenced;
  }

  /** Claims a due restart, writes its state and makes its generation ready; a restore that cannot work fails the job. */
  private async restore(row: CoordinatorRow): Promise<CoordinatorRow> {
    const { store, clock, log } = this.options;
    const claimedAt = clock.now();
    const start = row.runtime.start!;
    const generation = start.generation;
    const ours = (r: CoordinatorRow) => !isTerminal(r) && r.runtime.start?.generation === generation && r.runtime.start.phase === StartPhase.Restoring && r.runtime.start.restoringAt === claimedAt;
    let wrote = false;
    let claimed = await store.updateRuntime(
      this.job,
      (r) => {
        wrote = false;
        const s = r.runtime.start;
        if (isTerminal(r) || s?.generation !== generation || s.phase !== StartPhase.Restoring || s.restoreAt === undefined) return undefined;
        if (s.restoringAt !== undefined && claimedAt - s.restoringAt < RESTORE_TAKEOVER_MS) return undefined;
        wrote = true;
        return { ...r.runtime, start: { ...s, restoringAt: claimedAt } };
      },
      claimedAt,
    );
    // Another invocation claimed it (its tick restores the generation), or made it ready already.
    if (!wrote) return claimed;
    const deployment = this.deployment(claimed);
    try {
      const snapshot = start.from === undefined ? undefined : await loadRestorableManifest(this.options.storage, start.from);
      const plan = snapshot && planSnapshotRestore(snapshot, { target: deployment });
      await this.options.state.clear();
      if (snapshot && plan) {
        for (const note of plan.notes) log({ level: 'info', message: note, job: this.job, generation });
        await writeRestoredState(snapshot, plan, deployment, this.options.state, this.options.storage);
      }
      for (;;) {
        const next = readyGenerationRow({
          fenced: claimed,
          deployment,
          generation,
          startedAt: start.at,
          now: clock.now(),
          jobId: claimed.runtime.jobId,
          ...(snapshot ? { from: snapshot } : {}),
          ...(claimed.runtime.restarts ? { restarts: claimed.runtime.restarts } : {}),
          ...(claimed.runtime.origin === undefined ? {} : { origin: claimed.runtime.origin }),
          ...(claimed.runtime.latestCheckpoint === undefined ? {} : { latestCheckpoint: claimed.runtime.latestCheckpoint }),
        });
        try {
          const ready = await store.replaceGeneration(next, claimed.version, clock.now());
          log({ level: 'info', message: `generation ${generation} restored from ${start.from ?? 'empty state'}; its sources start now`, job: this.job, generation, notable: true });
          return ready;
        } catch (e) {
          // Another write to the row (not to its start) came between: ours still holds if the claim is still there.
          if (!(e instanceof CoordinatorConflictError) || !e.current || !ours(e.current)) throw e;
          claimed = e.current;
        }
      }
    } catch (e) {
      const retryable = e instanceof FloeError && e.retryable;
      if (!retryable) {
        const detail = `restarting as generation ${generation} failed: ${(e as Error).message}`;
        log({ level: 'error', message: detail, job: this.job, generation });
        // The restart is over (no later tick takes it up again), then the job is FAILED for good.
        await store.updateRuntime(
          this.job,
          (r) => {
            if (!ours(r)) return undefined;
            const { start: _failed, ...runtime } = r.runtime;
            return runtime;
          },
          clock.now(),
        );
        await this.options.recordStatus(JobStatus.Failed, detail);
        return store.require(this.job);
      }
      // Let the next tick try again rather than wait for the claim to expire.
      await store
        .updateRuntime(
          this.job,
          (r) => {
            if (!ours(r)) return undefined;
            const { restoringAt: _claim, ...unclaimed } = r.runtime.start!;
            return { ...r.runtime, start: unclaimed };
          },
          clock.now(),
        )
        .catch(() => undefined);
      throw new FloeError(ErrorCode.Storage, `restarting as generation ${generation} failed for now: ${(e as Error).message}`, { cause: e, retryable: true });
    }
  }
}
