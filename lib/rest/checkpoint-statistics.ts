import type { CheckpointRecord, CoordinatorState, PendingCheckpoint, SubtaskAck } from '../core/coordinator/types.js';
import type { ResolvedCheckpointOptions } from '../core/options.js';
import type { JobOverview } from './job-control.js';
import type {
  CheckpointConfigInfo,
  CheckpointingStatistics,
  CheckpointStatistics,
  CompletedSubtaskCheckpointStatistics,
  StatsSummaryDto,
  SubtaskCheckpointStatistics,
  TaskCheckpointStatistics,
  TaskCheckpointStatisticsWithSubtaskDetails,
} from './flink-types.js';

/** A vertex as checkpoint statistics need it: its id (the chain head's uid) and how many subtasks must ack. */
interface VertexShape {
  readonly id: string;
  readonly parallelism: number;
}

/** A checkpoint in either lifecycle stage, normalised for the statistics below. */
interface AnyCheckpoint {
  readonly id: number;
  readonly kind: 'checkpoint' | 'savepoint';
  readonly status: 'IN_PROGRESS' | 'COMPLETED' | 'FAILED';
  readonly triggeredAt: number;
  readonly finishedAt?: number;
  readonly termination?: string;
  readonly acks: readonly SubtaskAck[];
  readonly acknowledged: number;
  readonly total: number;
  readonly externalPath?: string;
  readonly failureReason?: string;
  /** For finished records the coordinator's sums; for pending ones computed from the acks. */
  readonly stateSize: number;
  readonly fullSize: number;
}

/** Splits a task key `<vertex>:<subtask>`; the vertex uid may itself contain colons. */
export function parseTaskKey(task: string): { vertex: string; subtask: number } {
  const at = task.lastIndexOf(':');
  if (at < 0) return { vertex: task, subtask: 0 };
  const subtask = Number(task.slice(at + 1));
  return { vertex: task.slice(0, at), subtask: Number.isInteger(subtask) ? subtask : 0 };
}

/** Sizes and timings of one subtask's ack, summed over its chained operators (sizes) or the slowest of them (timings). */
function ackStats(ack: SubtaskAck): { fullSize: number; stateSize: number; sync: number; async: number; alignment: number; startDelay: number } {
  const out = { fullSize: 0, stateSize: 0, sync: 0, async: 0, alignment: 0, startDelay: 0 };
  for (const snapshot of Object.values(ack.operators)) {
    const s = snapshot.stats;
    out.fullSize += s.fullSize;
    out.stateSize += s.stateSize;
    out.sync = Math.max(out.sync, s.syncMs);
    out.async = Math.max(out.async, s.asyncMs);
    out.alignment = Math.max(out.alignment, s.alignmentMs);
    out.startDelay = Math.max(out.startDelay, s.startDelayMs);
  }
  return out;
}

function fromPending(p: PendingCheckpoint, total: number): AnyCheckpoint {
  const acks = Object.values(p.acks);
  let stateSize = 0;
  let fullSize = 0;
  for (const ack of acks) {
    const s = ackStats(ack);
    stateSize += s.stateSize;
    fullSize += s.fullSize;
  }
  return {
    id: p.id,
    kind: p.kind,
    status: 'IN_PROGRESS',
    triggeredAt: p.triggeredAt,
    termination: p.termination,
    acks,
    acknowledged: acks.length,
    total,
    stateSize,
    fullSize,
  };
}

function fromRecord(r: CheckpointRecord): AnyCheckpoint {
  return {
    id: r.id,
    kind: r.kind,
    status: r.status,
    triggeredAt: r.triggeredAt,
    finishedAt: r.finishedAt,
    termination: r.termination,
    acks: Object.values(r.acks),
    acknowledged: r.acknowledged,
    total: r.total,
    externalPath: r.externalPath,
    failureReason: r.failureReason,
    stateSize: r.stateSize,
    fullSize: r.fullSize,
  };
}

/** Vertices in the overview's order, with parallelism taken from the coordinator's task list when it knows the vertex. */
function vertexShapes(overview: JobOverview, state: CoordinatorState): VertexShape[] {
  const counts = new Map<string, number>();
  for (const task of state.tasks) {
    const { vertex } = parseTaskKey(task);
    counts.set(vertex, (counts.get(vertex) ?? 0) + 1);
  }
  const shapes: VertexShape[] = overview.vertices.map((v) => ({ id: v.id, parallelism: counts.get(v.id) ?? v.parallelism }));
  for (const [id, parallelism] of counts) if (!shapes.some((s) => s.id === id)) shapes.push({ id, parallelism });
  return shapes;
}

function latestAck(acks: readonly SubtaskAck[]): number {
  return acks.reduce((max, a) => Math.max(max, a.ackTimestamp), -1);
}

function endToEnd(c: AnyCheckpoint): number {
  const end = c.status === 'IN_PROGRESS' ? latestAck(c.acks) : (c.finishedAt ?? latestAck(c.acks));
  return end < 0 ? 0 : Math.max(0, end - c.triggeredAt);
}

function checkpointType(c: AnyCheckpoint): CheckpointStatistics['checkpoint_type'] {
  if (c.kind === 'checkpoint') return 'CHECKPOINT';
  return c.termination === 'stop' || c.termination === 'drain' ? 'SYNC_SAVEPOINT' : 'SAVEPOINT';
}

function subtaskStatistics(c: AnyCheckpoint, vertex: VertexShape): SubtaskCheckpointStatistics[] {
  const byIndex = new Map<number, SubtaskAck>();
  for (const ack of c.acks) {
    const key = parseTaskKey(ack.task);
    if (key.vertex === vertex.id) byIndex.set(key.subtask, ack);
  }
  const count = Math.max(vertex.parallelism, ...[...byIndex.keys()].map((i) => i + 1));
  const out: SubtaskCheckpointStatistics[] = [];
  for (let index = 0; index < count; index++) {
    const ack = byIndex.get(index);
    if (!ack) {
      out.push({ index, status: 'pending_or_failed' });
      continue;
    }
    const s = ackStats(ack);
    out.push({
      index,
      status: 'completed',
      ack_timestamp: ack.ackTimestamp,
      end_to_end_duration: Math.max(0, ack.ackTimestamp - c.triggeredAt),
      state_size: s.fullSize,
      checkpointed_size: s.stateSize,
      checkpoint: { sync: s.sync, async: s.async },
      alignment: { buffered: 0, processed: 0, persisted: 0, duration: s.alignment },
      start_delay: s.startDelay,
      unaligned_checkpoint: false,
      aborted: false,
    });
  }
  return out;
}

function taskStatistics(c: AnyCheckpoint, vertex: VertexShape): TaskCheckpointStatistics {
  const subtasks = subtaskStatistics(c, vertex);
  const acked = subtasks.filter((s): s is CompletedSubtaskCheckpointStatistics => s.status === 'completed');
  const latest = acked.reduce((max, s) => Math.max(max, s.ack_timestamp), -1);
  return {
    id: c.id,
    status: c.status,
    latest_ack_timestamp: latest,
    checkpointed_size: acked.reduce((sum, s) => sum + s.checkpointed_size, 0),
    state_size: acked.reduce((sum, s) => sum + s.state_size, 0),
    end_to_end_duration: latest < 0 ? 0 : Math.max(0, latest - c.triggeredAt),
    alignment_buffered: 0,
    processed_data: 0,
    persisted_data: 0,
    num_subtasks: subtasks.length,
    num_acknowledged_subtasks: acked.length,
    subtasks,
  };
}

function statistics(c: AnyCheckpoint, vertices: readonly VertexShape[] | undefined, discarded: boolean): CheckpointStatistics {
  const tasks: Record<string, TaskCheckpointStatistics> = {};
  for (const v of vertices ?? []) tasks[v.id] = taskStatistics(c, v);
  const base = {
    className: c.status === 'COMPLETED' ? 'completed' : c.status === 'FAILED' ? 'failed' : 'in_progress',
    id: c.id,
    status: c.status,
    is_savepoint: c.kind === 'savepoint',
    savepointFormat: c.kind === 'savepoint' ? 'CANONICAL' : null,
    trigger_timestamp: c.triggeredAt,
    latest_ack_timestamp: latestAck(c.acks),
    checkpointed_size: c.stateSize,
    state_size: c.fullSize,
    end_to_end_duration: endToEnd(c),
    alignment_buffered: 0,
    processed_data: 0,
    persisted_data: 0,
    num_subtasks: c.total,
    num_acknowledged_subtasks: c.acknowledged,
    checkpoint_type: checkpointType(c),
    tasks,
  } as const;
  if (c.status === 'COMPLETED') return { ...base, external_path: c.externalPath ?? '', discarded };
  if (c.status === 'FAILED') return { ...base, failure_timestamp: c.finishedAt ?? c.triggeredAt, failure_message: c.failureReason ?? 'unknown failure' };
  return base;
}

/** Min, max, average and nearest-rank percentiles of `values`; all zero when there are none (as Flink reports it). */
export function statsSummary(values: readonly number[]): StatsSummaryDto {
  if (values.length === 0) return { min: 0, max: 0, avg: 0, p50: 0, p90: 0, p95: 0, p99: 0, p999: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
  return {
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    avg: Math.round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
    p50: pct(0.5),
    p90: pct(0.9),
    p95: pct(0.95),
    p99: pct(0.99),
    p999: pct(0.999),
  };
}

/** Ids of completed checkpoints that retention has already deleted: every completed checkpoint (not savepoint) beyond the newest `retained`. */
function discardedIds(history: readonly CheckpointRecord[], retained: number): Set<number> {
  const completed = history.filter((r) => r.status === 'COMPLETED' && r.kind === 'checkpoint').sort((a, b) => b.id - a.id);
  return new Set(completed.slice(retained).map((r) => r.id));
}

/** Builds `GET /jobs/:id/checkpoints`: counts, summary over completed checkpoints, latest ones, and the history (in-progress first, newest first). */
export function checkpointingStatistics(overview: JobOverview, state: CoordinatorState): CheckpointingStatistics {
  const discarded = discardedIds(state.history, state.options.retained);
  const pending = state.pending.map((p) => fromPending(p, state.tasks.length));
  const finished = state.history.map(fromRecord);
  const all = [...pending, ...finished].sort((a, b) => b.id - a.id);
  const history = all.map((c) => statistics(c, undefined, discarded.has(c.id)));
  const completed = history.filter((h) => h.status === 'COMPLETED');
  const restored = overview.restoredFrom;
  return {
    counts: {
      restored: state.counts.restored,
      total: state.counts.completed + state.counts.failed + pending.length,
      in_progress: pending.length,
      completed: state.counts.completed,
      failed: state.counts.failed,
    },
    summary: {
      checkpointed_size: statsSummary(completed.map((h) => h.checkpointed_size)),
      state_size: statsSummary(completed.map((h) => h.state_size)),
      end_to_end_duration: statsSummary(completed.map((h) => h.end_to_end_duration)),
      alignment_buffered: statsSummary(completed.map(() => 0)),
      processed_data: statsSummary(completed.map(() => 0)),
      persisted_data: statsSummary(completed.map(() => 0)),
    },
    latest: {
      completed: completed.find((h) => !h.is_savepoint) ?? null,
      savepoint: completed.find((h) => h.is_savepoint) ?? null,
      failed: history.find((h) => h.status === 'FAILED') ?? null,
      restored: restored
        ? { id: restored.id, restore_timestamp: restored.restoredAt, is_savepoint: restored.kind === 'savepoint', external_path: restored.path }
        : null,
    },
    history,
  };
}

function findCheckpoint(state: CoordinatorState, id: number): AnyCheckpoint | undefined {
  const pending = state.pending.find((p) => p.id === id);
  if (pending) return fromPending(pending, state.tasks.length);
  const record = state.history.find((r) => r.id === id);
  return record ? fromRecord(record) : undefined;
}

/** Builds `GET /jobs/:id/checkpoints/details/:n`, with `tasks` keyed by vertex id and per-subtask statistics inline; undefined when the id is unknown. */
export function checkpointDetails(overview: JobOverview, state: CoordinatorState, id: number): CheckpointStatistics | undefined {
  const c = findCheckpoint(state, id);
  if (!c) return undefined;
  return statistics(c, vertexShapes(overview, state), discardedIds(state.history, state.options.retained).has(id));
}

/** Builds `GET /jobs/:id/checkpoints/details/:n/subtasks/:vertex`; undefined when the checkpoint or the vertex is unknown. */
export function taskCheckpointDetails(
  overview: JobOverview,
  state: CoordinatorState,
  id: number,
  vertexId: string,
): TaskCheckpointStatisticsWithSubtaskDetails | undefined {
  const c = findCheckpoint(state, id);
  const vertex = vertexShapes(overview, state).find((v) => v.id === vertexId);
  if (!c || !vertex) return undefined;
  const task = taskStatistics(c, vertex);
  const acked = task.subtasks.filter((s): s is CompletedSubtaskCheckpointStatistics => s.status === 'completed');
  return {
    ...task,
    summary: {
      state_size: statsSummary(acked.map((s) => s.state_size)),
      checkpointed_size: statsSummary(acked.map((s) => s.checkpointed_size)),
      end_to_end_duration: statsSummary(acked.map((s) => s.end_to_end_duration)),
      checkpoint_duration: { sync: statsSummary(acked.map((s) => s.checkpoint.sync)), async: statsSummary(acked.map((s) => s.checkpoint.async)) },
      alignment: { duration: statsSummary(acked.map((s) => s.alignment.duration)) },
      start_delay: statsSummary(acked.map((s) => s.start_delay)),
    },
  };
}

/** Builds `GET /jobs/:id/checkpoints/config` from resolved checkpoint options. */
export function checkpointConfigInfo(options: ResolvedCheckpointOptions): CheckpointConfigInfo {
  return {
    mode: options.mode === 'at-least-once' ? 'at_least_once' : 'exactly_once',
    interval: options.interval,
    timeout: options.timeout,
    min_pause: options.minPause,
    max_concurrent: options.maxConcurrent,
    // Floe's checkpoints always outlive the run (they are files or S3 objects); retainOnCancel decides whether cancel deletes them.
    externalization: { enabled: true, delete_on_cancellation: !options.retainOnCancel },
    state_backend: 'FloeStateBackend',
    checkpoint_storage: options.dir.startsWith('s3://') ? 'S3CheckpointStorage' : 'FileCheckpointStorage',
    unaligned_checkpoints: false,
    tolerable_failed_checkpoints: options.tolerableFailures,
    aligned_checkpoint_timeout: 0,
    checkpoints_after_tasks_finish: true,
    state_changelog_enabled: false,
    retained: options.retained,
    incremental: options.incremental,
    checkpoint_dir: options.dir,
  };
}
