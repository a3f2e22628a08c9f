import { CheckpointStatus } from '../../core/coordinator/types.js';
import { JobStatus, isFinalStatus, type CheckpointStatusChange, type CoordinatorRow, type JobStatusRecord } from '../../core/coordinator/job-row.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import { CoordinatorConflictError, CoordinatorStore, type CoordinatorStoreOptions } from '../../ports/coordinator-store.js';

/** Lets other callers run between a read and the write that depends on it, as a network round trip would. */
const roundTrip = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Job rows and checkpoint status items in this process's memory, for the embedded runner: the same conditional
 * writes as the DynamoDB store (a replace names the version it read; a lost one carries the winner), so every host
 * runs the coordinator over the one protocol. A write replaces the row object; rows are never changed in place.
 */
export class InMemoryCoordinatorStore extends CoordinatorStore {
  private readonly rows = new Map<string, CoordinatorRow>();
  private readonly statuses = new Map<string, CheckpointStatusChange>();

  constructor(options: CoordinatorStoreOptions = {}) {
    super(options);
  }

  /** The stored row now, without waiting: for a host in the same process that answers reads synchronously. */
  peek(job: string): CoordinatorRow | undefined {
    return this.rows.get(job);
  }

  async load(job: string): Promise<CoordinatorRow | undefined> {
    await roundTrip();
    return this.rows.get(job);
  }

  async create(row: CoordinatorRow): Promise<CoordinatorRow> {
    await roundTrip();
    const existing = this.rows.get(row.job);
    if (existing) throw new CoordinatorConflictError(row.job, 0, existing);
    const created: CoordinatorRow = { ...row, version: 1, jobStatus: { status: JobStatus.Running, at: row.state.startedAt ?? 0 } };
    this.rows.set(row.job, created);
    return created;
  }

  protected async replace(row: CoordinatorRow, expectedVersion: number): Promise<void> {
    await roundTrip();
    const stored = this.fenced(row.job, expectedVersion);
    // As DynamoDB's update: the version, state and runtime are written; the job status stays what the store holds.
    const { jobStatus: _ignored, ...written } = row;
    this.rows.set(row.job, { ...written, ...(stored.jobStatus ? { jobStatus: stored.jobStatus } : {}) });
  }

  async replaceGeneration(row: CoordinatorRow, expectedVersion: number, now: number): Promise<CoordinatorRow> {
    await roundTrip();
    this.fenced(row.job, expectedVersion);
    const next: CoordinatorRow = { ...row, version: expectedVersion + 1, jobStatus: { status: JobStatus.Running, at: now } };
    this.rows.set(row.job, next);
    this.stats.writes++;
    return next;
  }

  async remove(row: CoordinatorRow): Promise<void> {
    await roundTrip();
    const stored = this.rows.get(row.job);
    if (!stored || stored.version !== row.version) {
      throw new FloeError(ErrorCode.CommitFenced, `the job row of '${row.job}' changed while this run started: is another run of the job still going?`);
    }
    this.rows.delete(row.job);
  }

  checkpointStatusKey(job: string, checkpointId: number): string {
    return `${job}/checkpoints/${checkpointId}`;
  }

  async putCheckpointStatus(job: string, change: CheckpointStatusChange): Promise<void> {
    await roundTrip();
    const key = this.checkpointStatusKey(job, change.checkpointId);
    const stored = this.statuses.get(key);
    // IN_PROGRESS only creates; a final status only replaces IN_PROGRESS (a status never goes back or changes its mind).
    if (stored && (change.status === CheckpointStatus.InProgress || stored.status !== CheckpointStatus.InProgress)) return;
    this.statuses.set(key, change);
  }

  async getCheckpointStatus(job: string, checkpointId: number): Promise<CheckpointStatusChange | undefined> {
    await roundTrip();
    return this.statuses.get(this.checkpointStatusKey(job, checkpointId));
  }

  async setJobStatus(job: string, record: JobStatusRecord): Promise<void> {
    await roundTrip();
    const stored = this.rows.get(job);
    if (!stored) throw new FloeError(ErrorCode.NotFound, `job '${job}' has no coordinator row to record ${record.status} in`);
    // FINISHED, CANCELED and FAILED are final.
    if (isFinalStatus(stored.jobStatus?.status)) return;
    this.rows.set(job, { ...stored, jobStatus: record });
  }

  /** The stored row if it is at `expectedVersion`; a CoordinatorConflictError carrying it (or nothing) otherwise. */
  private fenced(job: string, expectedVersion: number): CoordinatorRow {
    const stored = this.rows.get(job);
    if (!stored || stored.version !== expectedVersion) throw new CoordinatorConflictError(job, expectedVersion, stored);
    return stored;
  }
}
