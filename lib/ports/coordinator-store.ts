/**
 * The coordinator's store: job rows with optimistic concurrency, and the checkpoint status items a watchdog polls.
 * An adapter supplies the primitives (load, create, a replace conditional on the version, status items, the job's
 * lifecycle status); this base class holds the protocol every host relies on.
 *
 * Concurrency: acks arrive from many tasks at once (Lambdas on AWS, subtask loops embedded). Each is applied as load
 * (consistent) → reduce → replace conditional on `version`. A writer that lost gets a `CoordinatorConflictError`
 * carrying the winner's row and re-applies its event to that row — no extra read. Re-applying is safe because the
 * reducer is idempotent for every event the gateway and the host send: a repeated ack is `duplicate`, one for a
 * finished checkpoint `discarded`, a repeated `manifestWritten`/`manifestFailed` for a checkpoint no longer pending
 * changes nothing.
 *
 *     A: load v7 ──reduce──▶ write v8 if v=7 ✓ ───────────────────────▶ effects of A
 *     B: load v7 ──reduce──▶ write v8 if v=7 ✗ (item v8) ─reduce─▶ write v9 if v=8 ✓ ─▶ effects of B
 *
 * Effects are carried out only after their step was written, so a step that lost its write never acts.
 *
 * Status items are a projection of the row, written after it (idempotently: a final status is never replaced by
 * IN_PROGRESS). If one is lost, the watchdog's Abort task rewrites it from the row, which stays the truth.
 */
import type { CoordinatorEvent, CoordinatorStep } from '../core/coordinator/types.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import { transitionRow, type CheckpointStatusChange, type CoordinatorRow, type CoordinatorRuntime, type JobStatusRecord, type RowTransition } from '../core/coordinator/job-row.js';

/** A conditional write of a job row lost to another writer; `current` is the row that won (absent if it was deleted). */
export class CoordinatorConflictError extends FloeError {
  constructor(
    readonly job: string,
    readonly expectedVersion: number,
    readonly current: CoordinatorRow | undefined,
  ) {
    super(ErrorCode.CommitFenced, `job row of '${job}' is no longer at version ${expectedVersion}${current ? ` (now ${current.version})` : ' (it was deleted)'}`, { retryable: true });
    this.name = 'CoordinatorConflictError';
  }
}

/** A reducer step that was applied to a job row. */
export interface AppliedStep {
  /** The row after the step (the stored row when nothing was written). */
  readonly row: CoordinatorRow;
  readonly step: CoordinatorStep;
  /** True when the step was written; its effects must then be carried out. */
  readonly written: boolean;
  /** True when the `accept` guard turned the step down; nothing was written. */
  readonly refused: boolean;
  readonly statusChanges: readonly CheckpointStatusChange[];
}

/** Carries out what a written reducer step asks for (barriers, manifest, commits, status items). */
export interface EffectRunner {
  run(applied: AppliedStep): Promise<void>;
}

/** Guards of {@link CoordinatorStore.apply}. */
export interface ApplyOptions {
  /** Decides, for each attempt, whether the step may be written; a refused step is returned with `refused: true`. */
  readonly accept?: (transition: RowTransition) => boolean;
}

/** How a store retries lost conditional writes. */
export interface CoordinatorStoreOptions {
  /** Attempts at applying one event before giving up with a retryable error. @default 50 */
  readonly maxAttempts?: number;
  /** Cap of the first backoff after a conflict in milliseconds; each further conflict doubles it (full jitter, at most 250 ms). @default 5 */
  readonly retryBaseDelayMs?: number;
  /** Waits between attempts; tests pass a fake. @default a setTimeout-based sleep */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** What a store has done, for tests and metrics. */
export interface CoordinatorStoreStats {
  loads: number;
  writes: number;
  /** Conditional writes that lost to another writer and were re-applied. */
  conflicts: number;
}

/**
 * Job rows with optimistic concurrency. The base class holds the apply-and-retry protocol; a subclass maps rows to
 * its backend and turns a lost conditional write into a {@link CoordinatorConflictError} carrying the winner.
 */
export abstract class CoordinatorStore {
  readonly stats: CoordinatorStoreStats = { loads: 0, writes: 0, conflicts: 0 };
  private readonly maxAttempts: number;
  private readonly retryBaseDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(options: CoordinatorStoreOptions = {}) {
    this.maxAttempts = options.maxAttempts ?? 50;
    this.retryBaseDelayMs = options.retryBaseDelayMs ?? 5;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    if (!Number.isInteger(this.maxAttempts) || this.maxAttempts < 1) throw new FloeError(ErrorCode.InvalidOptions, `maxAttempts must be an integer >= 1, got ${this.maxAttempts}`);
  }

  /** Reads a job row (strongly consistent), or undefined when the job has none. */
  abstract load(job: string): Promise<CoordinatorRow | undefined>;

  /** Stores a new row at version 1; throws a CoordinatorConflictError carrying the existing row if the job has one. */
  abstract create(row: CoordinatorRow): Promise<CoordinatorRow>;

  /** Replaces the row if the stored one is at `expectedVersion`; throws a CoordinatorConflictError otherwise. `now` is the event's time. */
  protected abstract replace(row: CoordinatorRow, expectedVersion: number, now: number): Promise<void>;

  /** Writes a checkpoint's status item; a final status is never replaced by IN_PROGRESS, nor by another final status. */
  abstract putCheckpointStatus(job: string, change: CheckpointStatusChange): Promise<void>;

  /** Reads a checkpoint's status item (strongly consistent). */
  abstract getCheckpointStatus(job: string, checkpointId: number): Promise<CheckpointStatusChange | undefined>;

  /** Records the job's lifecycle status; FINISHED, CANCELED and FAILED are final. */
  abstract setJobStatus(job: string, record: JobStatusRecord): Promise<void>;

  /**
   * Replaces the whole row with a new generation's (state, runtime, and a RUNNING job status, the only write that
   * takes a FINISHED, CANCELED or FAILED row back to RUNNING) if the stored row is at `expectedVersion`; throws a
   * CoordinatorConflictError otherwise. Answers the stored row.
   */
  abstract replaceGeneration(row: CoordinatorRow, expectedVersion: number, now: number): Promise<CoordinatorRow>;

  /** Deletes a job's row if it is still at `row.version` (a run that starts afresh); throws COMMIT_FENCED if it changed or is gone. */
  abstract remove(row: CoordinatorRow): Promise<void>;

  /** Where a poller finds checkpoint `checkpointId`'s status item (the watchdog's Check state reads it). */
  abstract checkpointStatusKey(job: string, checkpointId: number): string;

  /** Reads a job row, throwing NOT_FOUND when the job has none. */
  async require(job: string): Promise<CoordinatorRow> {
    const row = await this.load(job);
    if (!row) throw new FloeError(ErrorCode.NotFound, `job '${job}' has no coordinator row`);
    return row;
  }

  /**
   * Changes a job row's runtime outside the reducer (what only the AWS substrate keeps, such as when the sources of
   * the generation were started): `change` answers the new runtime, or undefined for no write; re-applied to the
   * winner's row on a lost write. Answers the stored row.
   */
  async updateRuntime(job: string, change: (row: CoordinatorRow) => CoordinatorRuntime | undefined, now: number): Promise<CoordinatorRow> {
    let row = await this.require(job);
    for (let attempt = 1; ; attempt++) {
      const runtime = change(row);
      if (runtime === undefined) return row;
      const next: CoordinatorRow = { ...row, runtime, version: row.version + 1 };
      try {
        await this.replace(next, row.version, now);
        this.stats.writes++;
        return next;
      } catch (e) {
        if (!(e instanceof CoordinatorConflictError)) throw e;
        this.stats.conflicts++;
        if (attempt >= this.maxAttempts) throw new FloeError(ErrorCode.Storage, `updating the job row of '${job}' lost ${attempt} conditional writes in a row`, { cause: e, retryable: true });
        if (!e.current) throw new FloeError(ErrorCode.NotFound, `job '${job}' lost its coordinator row`, { cause: e });
        row = e.current;
        await this.sleep(Math.random() * Math.min(250, this.retryBaseDelayMs * 2 ** (attempt - 1)));
      }
    }
  }

  /**
   * Applies one event to a job's row: load, reduce, write conditionally on the version, and on a lost write reduce
   * again on the winner's row. A step that changes nothing is not written. Carry out `effects` only when `written`.
   */
  async apply(job: string, event: CoordinatorEvent, options: ApplyOptions = {}): Promise<AppliedStep> {
    const { applied } = await this.applyEach(job, [event], options);
    return applied;
  }

  /**
   * Applies several events to a job's row in order with ONE conditional write (group commit): the acks that arrive
   * while a write is in flight go into the next one, so a checkpoint's N acks cost a few writes, not N. The events
   * are reduced one after the other as separate applies would reduce them; on a lost write all of them are reduced
   * again on the winner's row. `applied` merges the steps (the last state, every effect and status change in order)
   * and is what to carry out; `steps` holds each event's own step, for its result.
   */
  async applyAll(job: string, events: readonly CoordinatorEvent[]): Promise<{ applied: AppliedStep; steps: readonly CoordinatorStep[] }> {
    if (events.length === 0) throw new FloeError(ErrorCode.InvalidOptions, 'applyAll needs at least one event');
    return this.applyEach(job, events, {});
  }

  private async applyEach(job: string, events: readonly CoordinatorEvent[], options: ApplyOptions): Promise<{ applied: AppliedStep; steps: readonly CoordinatorStep[] }> {
    this.stats.loads++;
    const what = events.length === 1 ? events[0]!.type : `${events.length} events`;
    const now = events[events.length - 1]!.now;
    let row = await this.require(job);
    for (let attempt = 1; ; attempt++) {
      let current = row;
      let changed = false;
      const steps: CoordinatorStep[] = [];
      const statusChanges: CheckpointStatusChange[] = [];
      const effects: CoordinatorStep['effects'][number][] = [];
      for (const event of events) {
        const transition = transitionRow(current, event);
        if (options.accept && !options.accept(transition)) {
          return { applied: { row, step: transition.step, written: false, refused: true, statusChanges: [] }, steps: [transition.step] };
        }
        steps.push(transition.step);
        if (!transition.changed) continue;
        changed = true;
        current = transition.row;
        effects.push(...transition.step.effects);
        statusChanges.push(...transition.statusChanges);
      }
      const step: CoordinatorStep = steps.length === 1 ? steps[0]! : { state: current.state, effects };
      if (!changed) return { applied: { row, step, written: false, refused: false, statusChanges: [] }, steps };
      const next: CoordinatorRow = { ...current, version: row.version + 1 };
      try {
        await this.replace(next, row.version, now);
        this.stats.writes++;
        return { applied: { row: next, step, written: true, refused: false, statusChanges }, steps };
      } catch (e) {
        if (!(e instanceof CoordinatorConflictError)) throw e;
        this.stats.conflicts++;
        if (attempt >= this.maxAttempts) {
          throw new FloeError(ErrorCode.Storage, `applying ${what} to the job row of '${job}' lost ${attempt} conditional writes in a row`, { cause: e, retryable: true });
        }
        if (!e.current) throw new FloeError(ErrorCode.NotFound, `job '${job}' lost its coordinator row while applying ${what}`, { cause: e });
        row = e.current;
        await this.sleep(Math.random() * Math.min(250, this.retryBaseDelayMs * 2 ** (attempt - 1)));
      }
    }
  }
}
