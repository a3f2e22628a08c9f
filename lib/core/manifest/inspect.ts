import { formatDuration } from '../duration.js';
import type { Manifest, OperatorSnapshot, StateHandle } from './model.js';

/** A readable, aligned, colourless summary of a manifest for `floe inspect`; `location` names where it was read from. */
export function describeManifest(manifest: Manifest, location: string): string {
  const handles = manifest.operators.flatMap((op) => op.subtasks.flatMap((s) => s.keyedState));
  // A file may be referenced more than once (by several subtasks after a rescale); count its bytes once.
  const files = new Map<string, number>(handles.map((h) => [h.path, h.size]));
  const totalBytes = [...files.values()].reduce((sum, size) => sum + size, 0);

  const header: Array<[string, string]> = [
    ['Location', location],
    ['Job', manifest.job],
    ['Job id', manifest.jobId],
    ['Kind', manifest.kind],
    ['Format', manifest.format],
    ['Checkpoint id', String(manifest.checkpointId)],
    ['Generation', String(manifest.generation)],
    ['Triggered', formatTimestamp(manifest.triggeredAt)],
    ['Completed', formatTimestamp(manifest.completedAt)],
    ['Duration', formatDuration(Math.max(0, manifest.completedAt - manifest.triggeredAt))],
    ['Max parallelism', String(manifest.maxParallelism)],
    ['End of input', manifest.endOfInput ? 'yes' : 'no'],
    ['State size', `${formatBytes(totalBytes)} in ${files.size} ${files.size === 1 ? 'file' : 'files'}`],
    ['Operators', String(manifest.operators.length)],
  ];
  const labelWidth = Math.max(...header.map(([label]) => label.length)) + 1;
  const lines = header.map(([label, value]) => `${`${label}:`.padEnd(labelWidth)}  ${value}`);

  for (const op of manifest.operators) {
    lines.push('', ...describeOperator(op));
  }
  return lines.join('\n') + '\n';
}

function describeOperator(op: OperatorSnapshot): string[] {
  const title = `Operator ${op.uid}${op.name && op.name !== op.uid ? ` (${op.name})` : ''}`;
  const facts = `parallelism ${op.parallelism}, ${op.stateful ? 'stateful' : 'stateless'}`;
  if (op.subtasks.length === 0) return [`${title}: ${facts}, no subtask state`];
  const rows = [...op.subtasks]
    .sort((a, b) => a.subtask - b.subtask)
    .map((s) => [
      String(s.subtask),
      `[${s.keyGroups[0]}, ${s.keyGroups[1]})`,
      handleCounts(s.keyedState),
      formatBytes(s.keyedState.reduce((sum, h) => sum + h.size, 0)),
      String(s.operatorState.length),
      String(s.pendingCommits.length),
    ]);
  const table = formatTable(['subtask', 'key groups', 'handles (full/delta)', 'bytes', 'operator state', 'pending commits'], rows, [
    'right',
    'left',
    'right',
    'right',
    'right',
    'right',
  ]);
  return [`${title}: ${facts}`, ...table.map((line) => `  ${line}`)];
}

function handleCounts(handles: readonly StateHandle[]): string {
  const full = handles.filter((h) => h.kind === 'full').length;
  return `${handles.length} (${full}/${handles.length - full})`;
}

/** Pads columns to a common width, each aligned as `align` says. */
function formatTable(headers: readonly string[], rows: readonly string[][], align: ReadonlyArray<'left' | 'right'>): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (align[i] === 'left' ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [headers, ...rows].map(line);
}

const MAX_DATE_MS = 8.64e15;

/** ISO 8601 in UTC, or the raw number when it is not a representable date. */
function formatTimestamp(ms: number): string {
  return Number.isFinite(ms) && Math.abs(ms) <= MAX_DATE_MS ? new Date(ms).toISOString() : `${ms} (not a valid time)`;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Bytes in binary units: `512 B`, `1.5 KiB`, `12.3 MiB`. */
export function formatBytes(bytes: number): string {
  let unit = 0;
  // Step up while the rounded figure would reach 1024 (so 1048575 B is `1.0 MiB`, not `1024 KiB`).
  while (unit < UNITS.length - 1 && Number(rounded(bytes / 1024 ** unit)) >= 1024) unit++;
  return unit === 0 ? `${bytes} B` : `${rounded(bytes / 1024 ** unit)} ${UNITS[unit]}`;
}

function rounded(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}
