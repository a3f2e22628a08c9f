/**
 * {@link JobControl} of a deployed job, from its stack outputs: everything is read from the job row in the coordinator
 * table, and triggers start a coordinator state-machine execution with the request as its input, as the coordinator's
 * own schedule does. The coordinator (Lambda on AWS, the pollers of `floe run --aws-endpoint` on an emulator) runs
 * the trigger task; this side only watches the row, so it needs neither the job's code nor its plan.
 *
 * Cancel applies the reducer's `cancel` event to the row directly (coordinator-cancel.ts): the generation ends
 * CANCELED, the operator handlers drop its messages and the source chains end. Start moves a stopped, cancelled or
 * failing job to a new generation restored from a savepoint or checkpoint (job-start.ts).
 *
 * The reads of {@link JobControl} are synchronous: they answer the row as of the last {@link AwsJobControl.refresh}.
 */
import { randomBytes } from 'node:crypto';
import type { AwsClients } from '../../adapters/aws/clients.js';
import { StepFunctionsCheckpointExecutions } from '../../adapters/aws/step-functions-executions.js';
import { cancelJob } from '../../coordination/cancel.js';
import { JobStatus, isCanceled, type CoordinatorRow } from '../../core/coordinator/job-row.js';
import { S3CheckpointStorage } from '../../adapters/aws/s3-checkpoint-storage.js';
import { Layout, join } from '../../core/manifest/layout.js';
import { checkS3SavepointTarget } from '../../core/savepoint-target.js';
import { listCheckpoints } from '../../runtime/snapshot-catalog.js';
import { DynamoDbCoordinatorStore } from '../../adapters/aws/dynamodb-coordinator-store.js';
import type { CoordinatorState, Termination } from '../../core/coordinator/types.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import type { ResolvedCheckpointOptions } from '../../core/options.js';
import { JobState, type JobControl, type JobOverview, type TriggerStatus } from '../../rest/job-control.js';
import { startDeployedJob, type JobStartOptions, type JobStartOutcome } from './job-start.js';
import type { FloeStackOutputs } from './stack-outputs.js';
import type { CheckpointRequestInput } from '../../coordination/checkpoint-tasks.js';
import type { CheckpointExecutions } from '../../coordination/checkpoint-tasks.js';

/** Attempts at getting a trigger its own checkpoint id, when others take the id first. */
const MAX_TRIGGER_ATTEMPTS = 5;

interface TriggerEntry {
  status: TriggerStatus;
  readonly request: CheckpointRequestInput & { readonly requestId: string };
  /** The id this trigger's execution was started for. */
  attemptedId?: number;
  attempts: number;
  /** True while an execution is being started. */
  starting: boolean;
}

/** Options of {@link AwsJobControl.open}. */
export interface AwsJobControlOptions {
  readonly outputs: FloeStackOutputs;
  readonly clients: AwsClients;
  /** @default a Step Functions client on the stack's state machine */
  readonly executions?: CheckpointExecutions;
}

/** A deployed (or emulator-provisioned) job, controlled through its job row. */
export class AwsJobControl implements JobControl {
  private readonly store: DynamoDbCoordinatorStore;
  private readonly executions: CheckpointExecutions;
  private readonly triggers = new Map<string, TriggerEntry>();
  private row: CoordinatorRow;

  private constructor(
    private readonly options: AwsJobControlOptions,
    store: DynamoDbCoordinatorStore,
    row: CoordinatorRow,
  ) {
    this.store = store;
    this.row = row;
    this.executions =
      options.executions ?? new StepFunctionsCheckpointExecutions({ client: options.clients.sfn, stateMachineArn: options.outputs.stateMachineArn, job: options.outputs.jobName });
  }

  /** Reads the job row; throws NotFound when the job has none (never started). */
  static async open(options: AwsJobControlOptions): Promise<AwsJobControl> {
    const store = new DynamoDbCoordinatorStore({ client: options.clients.dynamodb, tableName: options.outputs.coordinatorTable });
    const row = await store.load(options.outputs.jobName);
    if (!row) {
      throw new FloeError(ErrorCode.NotFound, `job '${options.outputs.jobName}' has no job row in ${options.outputs.coordinatorTable}: it has not been started`);
    }
    return new AwsJobControl(options, store, row);
  }

  /** The job's name. */
  get job(): string {
    return this.options.outputs.jobName;
  }

  /** Reads the job row again and advances the triggers' statuses from it. */
  async refresh(): Promise<void> {
    const row = await this.store.load(this.job);
    if (!row) throw new FloeError(ErrorCode.NotFound, `the job row of '${this.job}' is gone`);
    this.row = row;
    for (const entry of this.triggers.values()) this.update(entry);
  }

  private update(entry: TriggerEntry): void {
    if (entry.status.status !== 'IN_PROGRESS' || entry.starting || entry.attemptedId === undefined) return;
    const state = this.row.state;
    const id = entry.attemptedId;
    const mine = state.pending.find((p) => p.requestId === entry.request.requestId);
    if (mine) {
      entry.attemptedId = mine.id;
      entry.status = { status: 'IN_PROGRESS', checkpointId: mine.id };
      return;
    }
    if (entry.status.checkpointId === undefined) {
      if (state.nextCheckpointId <= id) return; // the trigger task has not run yet
      const record = state.history.find((h) => h.id === id);
      if (!state.pending.some((p) => p.id === id) && record?.kind === entry.request.kind) {
        // Finished between two reads: a record of our kind at our id is ours.
        entry.status = { status: 'IN_PROGRESS', checkpointId: id };
      } else {
        // Another checkpoint took the id first, or the trigger was refused: try the next one.
        if (this.isRunning() && entry.attempts < MAX_TRIGGER_ATTEMPTS) this.startExecution(entry);
        else entry.status = { status: 'FAILED', failureCause: this.isRunning() ? `no checkpoint id could be had for the ${entry.request.kind} in ${entry.attempts} attempts` : `job '${this.job}' is ${this.overview().state}` };
        return;
      }
    }
    const checkpointId = entry.status.checkpointId;
    if (checkpointId === undefined) return;
    const record = state.history.find((h) => h.id === checkpointId);
    if (!record) {
      if (!state.pending.some((p) => p.id === checkpointId) && state.history.length > 0 && state.history.every((h) => h.id > checkpointId)) {
        entry.status = { status: 'FAILED', checkpointId, failureCause: 'the checkpoint left the history before it was seen to finish' };
      }
      return;
    }
    entry.status =
      record.status === 'COMPLETED'
        ? { status: 'COMPLETED', checkpointId, ...(record.externalPath === undefined ? {} : { location: record.externalPath }) }
        : { status: 'FAILED', checkpointId, failureCause: record.failureReason ?? `${record.kind} failed` };
  }

  private isRunning(): boolean {
    return this.row.state.status === 'RUNNING' && (this.row.jobStatus?.status ?? JobStatus.Running) === JobStatus.Running;
  }

  /** The job row as of the last read. */
  get jobRow(): CoordinatorRow {
    return this.row;
  }

  /** Starts an execution for the next free checkpoint id; failures end the trigger. */
  private startExecution(entry: TriggerEntry): void {
    entry.starting = true;
    entry.attempts++;
    const n = this.row.state.nextCheckpointId;
    entry.attemptedId = n;
    this.executions
      .start(n, entry.request)
      .then(() => {
        // Started, or an execution for `n` existed already (then the id is someone else's: update() retries).
        entry.starting = false;
      })
      .catch((e: Error) => {
        entry.starting = false;
        entry.status = { status: 'FAILED', failureCause: `starting the coordinator execution failed: ${e.message}` };
      });
  }

  /** Waits until no trigger is still starting its execution (for callers that exit right after triggering). */
  async settled(): Promise<void> {
    while ([...this.triggers.values()].some((t) => t.starting)) await new Promise((r) => setTimeout(r, 20));
  }

  private trigger(kind: 'checkpoint' | 'savepoint', dir?: string, termination?: Termination): string {
    if (!this.isRunning()) throw new FloeError(ErrorCode.BadRequest, `job '${this.job}' is ${this.overview().state}; it takes ${kind}s only while RUNNING`);
    const requestId = randomBytes(16).toString('hex');
    const request = { requestId, kind, ...(dir === undefined ? {} : { dir }), ...(termination === undefined || termination === 'end' ? {} : { termination }) };
    const entry: TriggerEntry = { status: { status: 'IN_PROGRESS' }, request, attempts: 0, starting: false };
    this.triggers.set(requestId, entry);
    this.startExecution(entry);
    return requestId;
  }

  // JobControl

  overview(): JobOverview {
    const row = this.row;
    const parallelism = new Map<string, number>();
    for (const task of row.state.tasks) {
      const vertex = task.slice(0, task.lastIndexOf(':'));
      parallelism.set(vertex, (parallelism.get(vertex) ?? 0) + 1);
    }
    const sources = new Set(row.state.sourceTasks.map((t) => t.slice(0, t.lastIndexOf(':'))));
    const status = isCanceled(row) ? JobStatus.Canceled : (row.jobStatus?.status ?? JobStatus.Running);
    // FAILING: the coordinator restarts the job by its strategy (RESTARTING); FAILED: the strategy gave up.
    const state =
      status === JobStatus.Finished
        ? JobState.Finished
        : status === JobStatus.Canceled
          ? JobState.Canceled
          : status === JobStatus.Failed
            ? JobState.Failed
            : status === JobStatus.Failing
              ? JobState.Restarting
              : JobState.Running;
    return {
      jid: row.runtime.jobId,
      name: row.job,
      state,
      startTime: row.state.startedAt ?? 0,
      ...(state === JobState.Running ? {} : { endTime: row.jobStatus?.at }),
      maxParallelism: 0,
      vertices: [...parallelism].map(([id, p]) => ({ id, name: id, parallelism: p, recordsIn: 0, recordsOut: 0, isSource: sources.has(id) })),
      restarts: row.runtime.restarts?.attempts ?? 0,
      ...((status === JobStatus.Failing || status === JobStatus.Failed) && row.jobStatus?.detail !== undefined ? { failureCause: row.jobStatus.detail } : {}),
      ...(state === JobState.Running && row.state.quiet?.confirmed === true ? { quietSince: row.state.quiet.since } : {}),
    };
  }

  coordinatorState(): CoordinatorState {
    return this.row.state;
  }

  checkpointConfig(): ResolvedCheckpointOptions {
    return this.row.state.options;
  }

  triggerCheckpoint(): string {
    return this.trigger('checkpoint');
  }

  /**
   * Checks that a savepoint target is an `s3://` location inside the job's own storage, where its functions may write:
   * its savepoint directory, or its prefix `<bucket>/<job>` in the checkpoint bucket. Returns the target (the default
   * savepoint directory when absent).
   */
  async validateSavepointTarget(dir: string | undefined): Promise<string> {
    const savepointRoot = this.options.outputs.savepointDir ?? this.row.runtime.savepointDir;
    const buckets = [this.options.outputs.checkpointBucket === undefined ? undefined : `s3://${this.options.outputs.checkpointBucket}`, this.row.state.options.dir];
    const roots = [savepointRoot, ...buckets.filter((b): b is string => b !== undefined && b.startsWith('s3://')).map((b) => join(b, this.job))];
    return checkS3SavepointTarget(dir ?? savepointRoot, roots);
  }

  triggerSavepoint(options: { dir?: string; termination?: Extract<Termination, 'stop' | 'drain'> }): string {
    return this.trigger('savepoint', options.dir ?? this.options.outputs.savepointDir ?? this.row.runtime.savepointDir, options.termination);
  }

  triggerStatus(requestId: string): TriggerStatus | undefined {
    return this.triggers.get(requestId)?.status;
  }

  /**
   * Starts the job's next generation from a savepoint, a completed checkpoint or (explicitly) empty state, as Flink
   * submits a job with `-s`; refused while the current generation runs. See job-start.ts for the order of writes.
   */
  async start(options: Omit<JobStartOptions, 'outputs' | 'clients'>): Promise<JobStartOutcome> {
    const outcome = await startDeployedJob({ ...options, outputs: this.options.outputs, clients: this.options.clients });
    this.row = outcome.row;
    return outcome;
  }

  /**
   * Cancels the job's current generation without a savepoint: pending checkpoints are aborted, no checkpoint starts
   * or completes any more, the handlers drop its messages. Checkpoints are kept unless `checkpoint.retainOnCancel` is
   * false; then the completed ones are deleted (a snapshot file a Lambda was still writing may be left behind).
   * Cancelling a cancelled job does nothing more; a FINISHED one is refused.
   */
  async cancel(): Promise<void> {
    const { row } = await cancelJob(this.store, this.job, Date.now());
    this.row = row;
    for (const entry of this.triggers.values()) this.update(entry);
    const options = row.state.options;
    if (options.retainOnCancel) return;
    const storage = new S3CheckpointStorage({ client: this.options.clients.s3 });
    const all = await listCheckpoints(storage, options.dir, this.job);
    await storage.delete((await Promise.all(all.map((c) => storage.list(c.dir)))).flat());
    await storage.delete(await storage.list(Layout.sharedDir(options.dir, this.job)));
  }
}
