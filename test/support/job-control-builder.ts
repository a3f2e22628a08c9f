import type { CheckpointRecord, CoordinatorState, PendingCheckpoint, SubtaskAck } from '../../lib/core/coordinator/types.js';
import type { SubtaskSnapshot } from '../../lib/core/manifest/model.js';
import { resolveCheckpointOptions, type CheckpointOptions } from '../../lib/core/options.js';
import type { JobControl, JobOverview, TriggerStatus, VertexOverview } from '../../lib/rest/job-control.js';

/** What a fake JobControl recorded, for assertions. */
export interface JobControlCalls {
  checkpoints: number;
  savepoints: Array<Parameters<JobControl['triggerSavepoint']>[0]>;
  /** The targets `validateSavepointTarget` was asked about, in order (undefined: the default). */
  validations: Array<string | undefined>;
  cancels: number;
}

/** An in-memory JobControl whose triggers stay IN_PROGRESS until the test settles them. */
export interface FakeJobControl extends JobControl {
  readonly calls: JobControlCalls;
  /** Sets the status a trigger id reports, e.g. to complete a savepoint. */
  settle(requestId: string, status: TriggerStatus): void;
  /** Replaces the overview (to move the job to FINISHED, say). */
  setOverview(patch: Partial<JobOverview>): void;
}

/** Timings and sizes a fixture subtask acks with. */
export interface AckStats {
  readonly stateSize?: number;
  readonly fullSize?: number;
  readonly syncMs?: number;
  readonly asyncMs?: number;
  readonly alignmentMs?: number;
  readonly startDelayMs?: number;
}

const T0 = 1_700_000_000_000;

function snapshot(subtask: number, ackTimestamp: number, stats: AckStats): SubtaskSnapshot {
  return {
    subtask,
    keyGroups: [0, 128],
    keyedState: [],
    operatorState: [],
    pendingCommits: [],
    stats: {
      ackTimestamp,
      alignmentMs: stats.alignmentMs ?? 2,
      syncMs: stats.syncMs ?? 1,
      asyncMs: stats.asyncMs ?? 5,
      startDelayMs: stats.startDelayMs ?? 3,
      stateSize: stats.stateSize ?? 100,
      fullSize: stats.fullSize ?? 400,
    },
  };
}

/**
 * Builds a fake JobControl with safe defaults (Flink's `CheckpointCoordinatorBuilder` style): a running job
 * `wordcount` with vertices source (1) → count (2) → sink (1), no checkpoints, checkpoint interval 10s.
 * For tests of the REST API, the CLI and anything else that only needs a JobControl.
 */
export class JobControlBuilder {
  private overview: JobOverview = {
    jid: 'a5e0edd8e66b53f1b89c2041f91b8fd2',
    name: 'wordcount',
    state: 'RUNNING',
    startTime: T0,
    maxParallelism: 128,
    restarts: 0,
    vertices: [
      { id: 'source', name: 'Source: words', parallelism: 1, recordsIn: 0, recordsOut: 1000, isSource: true, isSink: false },
      { id: 'count', name: 'split -> count', parallelism: 2, recordsIn: 1000, recordsOut: 900, isSource: false, isSink: false },
      { id: 'sink', name: 'Sink: counts', parallelism: 1, recordsIn: 900, recordsOut: 0, isSource: false, isSink: true },
    ],
  };
  private checkpointOptions: CheckpointOptions = { interval: '10s', dir: '.floe/checkpoints' };
  private readonly history: CheckpointRecord[] = [];
  private readonly pending: PendingCheckpoint[] = [];
  private restored = 0;
  private savepointTargetCheck: (dir: string | undefined) => string = (dir) => dir as string;

  /** Replaces the fake's savepoint target check, which by default accepts any target and keeps an absent one absent. */
  withSavepointTargetCheck(check: (dir: string | undefined) => string): this {
    this.savepointTargetCheck = check;
    return this;
  }

  /** Overrides fields of the job overview. */
  withOverview(patch: Partial<JobOverview>): this {
    this.overview = { ...this.overview, ...patch };
    return this;
  }

  /** Replaces the vertices (and so the coordinator's task list). */
  withVertices(vertices: readonly VertexOverview[]): this {
    return this.withOverview({ vertices });
  }

  /** Sets checkpoint options, resolved as the runner would. */
  withCheckpointOptions(options: CheckpointOptions): this {
    this.checkpointOptions = options;
    return this;
  }

  /** Adds a completed checkpoint (or savepoint) acked by every task; triggered at `T0 + id * 10s`, taking 250ms. */
  withCompleted(id: number, options: { kind?: 'checkpoint' | 'savepoint'; path?: string; stats?: AckStats; termination?: 'stop' | 'drain' } = {}): this {
    const triggeredAt = T0 + id * 10_000;
    const acks = this.acksFor(this.tasks(), triggeredAt + 200, options.stats ?? {});
    const kind = options.kind ?? 'checkpoint';
    this.history.push({
      id,
      kind,
      status: 'COMPLETED',
      triggeredAt,
      finishedAt: triggeredAt + 250,
      ...(options.termination ? { termination: options.termination } : {}),
      acknowledged: this.tasks().length,
      total: this.tasks().length,
      externalPath: options.path ?? (kind === 'savepoint' ? `.floe/savepoints/savepoint-${id}` : `.floe/checkpoints/${this.overview.name}/checkpoints/chk-${id}`),
      ...this.sizes(acks),
      acks,
    });
    return this;
  }

  /** Adds a failed checkpoint that `ackedTasks` acknowledged before it was aborted for `reason`. */
  withFailed(id: number, reason: string, ackedTasks: readonly string[] = []): this {
    const triggeredAt = T0 + id * 10_000;
    const acks = this.acksFor(ackedTasks, triggeredAt + 100, {});
    this.history.push({
      id,
      kind: 'checkpoint',
      status: 'FAILED',
      triggeredAt,
      finishedAt: triggeredAt + 600_000,
      acknowledged: ackedTasks.length,
      total: this.tasks().length,
      failureReason: reason,
      ...this.sizes(acks),
      acks,
    });
    return this;
  }

  /** Adds an in-progress checkpoint that `ackedTasks` (task keys such as `count:1`) have acknowledged so far. */
  withPending(id: number, ackedTasks: readonly string[] = [], kind: 'checkpoint' | 'savepoint' = 'checkpoint'): this {
    const triggeredAt = T0 + id * 10_000;
    this.pending.push({ id, kind, triggeredAt, acks: this.acksFor(ackedTasks, triggeredAt + 50, {}), finalizing: false });
    return this;
  }

  /** Marks the run as restored from a snapshot. */
  withRestoredFrom(restoredFrom: NonNullable<JobOverview['restoredFrom']>): this {
    this.restored = 1;
    return this.withOverview({ restoredFrom });
  }

  /** The task keys `<vertex>:<subtask>` of the current vertices. */
  tasks(): string[] {
    return this.overview.vertices.flatMap((v) => Array.from({ length: v.parallelism }, (_, i) => `${v.id}:${i}`));
  }

  private acksFor(tasks: readonly string[], ackTimestamp: number, stats: AckStats): Record<string, SubtaskAck> {
    const acks: Record<string, SubtaskAck> = {};
    for (const task of tasks) {
      const at = task.lastIndexOf(':');
      const vertex = task.slice(0, at);
      const subtask = Number(task.slice(at + 1));
      acks[task] = { task, ackTimestamp, operators: { [vertex]: snapshot(subtask, ackTimestamp, stats) } };
    }
    return acks;
  }

  private sizes(acks: Record<string, SubtaskAck>): { stateSize: number; fullSize: number } {
    let stateSize = 0;
    let fullSize = 0;
    for (const ack of Object.values(acks)) {
      for (const s of Object.values(ack.operators)) {
        stateSize += s.stats.stateSize;
        fullSize += s.stats.fullSize;
      }
    }
    return { stateSize, fullSize };
  }

  /** The fake. */
  build(): FakeJobControl {
    let overview = this.overview;
    const options = resolveCheckpointOptions(this.checkpointOptions);
    const history = [...this.history].sort((a, b) => b.id - a.id);
    const completed = history.filter((r) => r.status === 'COMPLETED');
    const state: CoordinatorState = {
      tasks: this.tasks(),
      sourceTasks: this.tasks().filter((t) => overview.vertices.find((v) => t.startsWith(`${v.id}:`))?.isSource === true),
      options,
      status: 'RUNNING',
      nextCheckpointId: Math.max(0, ...history.map((r) => r.id), ...this.pending.map((p) => p.id)) + 1,
      pending: [...this.pending],
      queued: [],
      consecutiveFailures: 0,
      finishedSources: [],
      counts: { completed: completed.length, failed: history.length - completed.length, restored: this.restored },
      history,
      historySize: 20,
      ...(completed[0] ? { latestCompletedId: completed[0].id, lastCompletedAt: completed[0].finishedAt } : {}),
    };
    const triggers = new Map<string, TriggerStatus>();
    const calls: JobControlCalls = { checkpoints: 0, savepoints: [], cancels: 0, validations: [] };
    const savepointTargetCheck = this.savepointTargetCheck;
    let next = 0;
    const newTrigger = () => {
      const id = (++next).toString(16).padStart(32, '0');
      triggers.set(id, { status: 'IN_PROGRESS' });
      return id;
    };
    return {
      calls,
      overview: () => overview,
      coordinatorState: () => state,
      checkpointConfig: () => options,
      triggerCheckpoint() {
        calls.checkpoints++;
        return newTrigger();
      },
      async validateSavepointTarget(dir) {
        calls.validations.push(dir);
        return savepointTargetCheck(dir);
      },
      triggerSavepoint(request) {
        calls.savepoints.push(request);
        return newTrigger();
      },
      triggerStatus: (id) => triggers.get(id),
      async cancel() {
        calls.cancels++;
        overview = { ...overview, state: 'CANCELED', endTime: overview.startTime + 60_000 };
      },
      settle(id, status) {
        triggers.set(id, status);
      },
      setOverview(patch) {
        overview = { ...overview, ...patch };
      },
    };
  }
}
