import { formatDuration } from '../core/duration.js';
import { formatBytes } from '../core/manifest/inspect.js';
import type { CheckpointingStatistics, CheckpointStatistics } from '../rest/flink-types.js';

/** Pads columns to a common width; the last column is left ragged. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [headers, ...rows].map((cells) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
}

/** Local wall-clock time `YYYY-MM-DD HH:MM:SS`, the way a person at the terminal reads it. */
export function formatLocalTime(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function typeOf(c: CheckpointStatistics): string {
  if (c.checkpoint_type === 'SYNC_SAVEPOINT') return 'savepoint (stop)';
  return c.is_savepoint ? 'savepoint' : 'checkpoint';
}

function sizeOf(c: CheckpointStatistics): string {
  if (c.status !== 'COMPLETED' && c.num_acknowledged_subtasks === 0) return '-';
  // An incremental checkpoint writes less than it references; show both when they differ.
  return c.checkpointed_size === c.state_size ? formatBytes(c.state_size) : `${formatBytes(c.state_size)} (+${formatBytes(c.checkpointed_size)})`;
}

function pathOf(c: CheckpointStatistics): string {
  if (c.status === 'FAILED') return c.failure_message ? `failed: ${c.failure_message}` : '-';
  if (c.status === 'IN_PROGRESS') return '-';
  return `${c.external_path ?? '-'}${c.discarded ? ' (discarded)' : ''}`;
}

/** The text `floe checkpoints` prints: counts, the latest completed checkpoint, and the history as a table. */
export function formatCheckpoints(job: string, stats: CheckpointingStatistics): string {
  const { counts, latest } = stats;
  const lines = [
    `Checkpoints of job ${job}: ${counts.completed} completed, ${counts.in_progress} in progress, ${counts.failed} failed, ${counts.restored} restored (${counts.total} total)`,
  ];
  const c = latest.completed;
  lines.push(
    c
      ? `Latest completed: ${c.id} at ${formatLocalTime(c.trigger_timestamp)}, ${formatDuration(c.end_to_end_duration)}, ${formatBytes(c.state_size)}, ${c.external_path ?? '-'}`
      : 'Latest completed: none',
  );
  if (latest.savepoint) lines.push(`Latest savepoint: ${latest.savepoint.id}, ${latest.savepoint.external_path ?? '-'}`);
  if (latest.restored) {
    lines.push(`Restored from: ${latest.restored.is_savepoint ? 'savepoint' : 'checkpoint'} ${latest.restored.id}, ${latest.restored.external_path}`);
  }
  lines.push('');
  if (stats.history.length === 0) {
    lines.push('No checkpoints yet.');
  } else {
    const rows = stats.history.map((h) => [
      String(h.id),
      h.status,
      typeOf(h),
      formatLocalTime(h.trigger_timestamp),
      h.status === 'IN_PROGRESS' && h.num_acknowledged_subtasks === 0 ? '-' : formatDuration(h.end_to_end_duration),
      sizeOf(h),
      `${h.num_acknowledged_subtasks}/${h.num_subtasks}`,
      pathOf(h),
    ]);
    lines.push(...renderTable(['ID', 'STATUS', 'TYPE', 'TRIGGERED', 'DURATION', 'STATE SIZE', 'ACKS', 'PATH'], rows));
  }
  return lines.join('\n') + '\n';
}
