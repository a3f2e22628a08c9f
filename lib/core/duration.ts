import { FloeError, ErrorCode } from './errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a duration such as `500ms`, `10s`, `2m`, `1h` or a bare number of milliseconds.
 * Throws a FloeError naming `field` when the text is not a duration.
 */
export function parseDuration(text: string | number, field = 'duration'): number {
  if (typeof text === 'number') {
    if (!Number.isFinite(text) || text < 0) throw new FloeError(ErrorCode.InvalidOptions, `${field} must be a non-negative number of milliseconds, got ${text}`);
    return text;
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$/.exec(text);
  if (!match) throw new FloeError(ErrorCode.InvalidOptions, `${field} must be a duration like 500ms, 10s, 2m or 1h, got '${text}'`);
  return Math.round(Number(match[1]) * UNITS[match[2] ?? 'ms']!);
}

/** Formats milliseconds for people: `850ms`, `1.2s`, `3m 5s`. */
export function formatDuration(ms: number): string {
  // Choose the unit by the value as it will be rounded, so rounding never carries into the next unit ('1m 60s').
  if (Math.round(ms) < 1000) return `${Math.round(ms)}ms`;
  if (ms < 59_950) return `${(ms / 1000).toFixed(ms < 9_995 ? 2 : 1)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m ${s % 60}s`;
}
