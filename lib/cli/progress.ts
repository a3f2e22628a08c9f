import { formatDuration } from '../core/duration.js';
import type { JobControl, JobOverview } from '../rest/job-control.js';
import { parseTaskKey } from '../rest/checkpoint-statistics.js';

/** Where the progress line goes: a terminal stream (stderr). */
export interface ProgressStream {
  write(text: string): unknown;
  readonly columns?: number;
}

/** Options of the progress line. */
export interface ProgressOptions {
  /** Milliseconds between redraws. @default 1000 */
  readonly intervalMs?: number;
  /** The clock, for rates. @default Date.now */
  readonly now?: () => number;
}

/** Records that entered the job (summed over source vertices' output) and left it (summed over sink vertices' input). */
export function recordTotals(overview: JobOverview, sourceVertexIds: ReadonlySet<string>): { in: number; out: number } {
  const vertices = overview.vertices;
  const sources = vertices.filter((v) => v.isSource ?? sourceVertexIds.has(v.id));
  const flaggedSinks = vertices.filter((v) => v.isSink === true);
  // Without flags, the overview lists vertices in topological order, so the last one is a sink.
  const sinks = flaggedSinks.length > 0 || vertices.some((v) => v.isSink !== undefined) ? flaggedSinks : vertices.slice(-1);
  return {
    in: sources.reduce((sum, v) => sum + v.recordsOut, 0),
    out: sinks.reduce((sum, v) => sum + v.recordsIn, 0),
  };
}

function rate(perSecond: number): string {
  if (!Number.isFinite(perSecond) || perSecond < 0) return '0';
  if (perSecond >= 1_000_000) return `${(perSecond / 1_000_000).toFixed(1)}M`;
  if (perSecond >= 10_000) return `${(perSecond / 1000).toFixed(0)}k`;
  return Math.round(perSecond).toLocaleString('en-US');
}

/** One progress line's text from the current overview and coordinator state, and the rates since the previous sample. */
export function progressText(control: JobControl, inRate: number, outRate: number): string {
  const overview = control.overview();
  const state = control.coordinatorState();
  const parts = [`${overview.name} ${overview.state}`, `in ${rate(inRate)}/s`, `out ${rate(outRate)}/s`];
  const last = state.history.find((r) => r.status === 'COMPLETED');
  if (last) parts.push(`checkpoint ${last.id} (${formatDuration(Math.max(0, (last.finishedAt ?? last.triggeredAt) - last.triggeredAt))})`);
  else parts.push('no checkpoint yet');
  if (state.pending.length > 0) parts.push(`${state.pending.map((p) => p.id).join(', ')} in progress`);
  if (overview.restarts > 0) parts.push(`${overview.restarts} restart${overview.restarts === 1 ? '' : 's'}`);
  return parts.join(' · ');
}

/**
 * Rewrites one line on `stream` every second with records in/s and out/s and the last completed checkpoint.
 * The timer does not keep the process alive; `stop()` clears the line.
 */
export function startProgress(control: JobControl, stream: ProgressStream, options: ProgressOptions = {}): { stop(): void } {
  const now = options.now ?? Date.now;
  const sourceVertices = (): Set<string> => new Set(control.coordinatorState().sourceTasks.map((t) => parseTaskKey(t).vertex));
  let previous: { at: number; in: number; out: number } | undefined;
  let drawn = false;

  const sample = () => {
    const totals = recordTotals(control.overview(), sourceVertices());
    return { at: now(), ...totals };
  };

  const draw = () => {
    try {
      const current = sample();
      const seconds = previous ? (current.at - previous.at) / 1000 : 0;
      const inRate = previous && seconds > 0 ? (current.in - previous.in) / seconds : 0;
      const outRate = previous && seconds > 0 ? (current.out - previous.out) / seconds : 0;
      previous = current;
      let text = progressText(control, inRate, outRate);
      const width = stream.columns;
      if (width !== undefined && width > 1 && text.length >= width) text = text.slice(0, width - 1);
      stream.write(`\r\x1b[2K${text}`);
      drawn = true;
    } catch {
      // A progress line must never take the job down; the next tick tries again.
    }
  };

  try {
    previous = sample();
  } catch {
    previous = undefined;
  }
  const timer = setInterval(draw, options.intervalMs ?? 1000);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      if (drawn) stream.write('\r\x1b[2K');
      drawn = false;
    },
  };
}
