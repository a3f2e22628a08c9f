import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../lib/core/duration.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';

describe('parseDuration', () => {
  it.each<[string | number, number]>([
    ['500ms', 500],
    ['10s', 10_000],
    ['1.5s', 1_500],
    ['2m', 120_000],
    ['2min', 120_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['250', 250],
    [' 10 s ', 10_000],
    ['0', 0],
    [0, 0],
    [1_234, 1_234],
  ])('parses %j as %i ms', (text, expected) => {
    expect(parseDuration(text)).toBe(expected);
  });

  it.each<[string | number, RegExp]>([
    ['ten', /checkpoint\.interval must be a duration like 500ms, 10s, 2m or 1h, got 'ten'/],
    ['-1s', /got '-1s'/],
    ['1 hour', /got '1 hour'/],
    ['10S', /got '10S'/],
    ['', /got ''/],
    ['1e3', /got '1e3'/],
    [-1, /checkpoint\.interval must be a non-negative number of milliseconds, got -1/],
    [Number.NaN, /got NaN/],
    [Number.POSITIVE_INFINITY, /got Infinity/],
  ])('rejects %j with a message naming the field', (text, expected) => {
    let error: unknown;
    try {
      parseDuration(text, 'checkpoint.interval');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FloeError);
    expect((error as FloeError).code).toBe(ErrorCode.InvalidOptions);
    expect((error as FloeError).message).toMatch(expected);
  });
});

describe('formatDuration', () => {
  it.each<[number, string]>([
    [0, '0ms'],
    [850, '850ms'],
    [999.4, '999ms'],
    [999.6, '1.00s'],
    [1_200, '1.20s'],
    [9_994, '9.99s'],
    [9_999, '10.0s'],
    [12_345, '12.3s'],
    [59_949, '59.9s'],
    [59_999, '1m 0s'],
    [60_000, '1m 0s'],
    [65_000, '1m 5s'],
    [119_499, '1m 59s'],
    [119_999, '2m 0s'],
    [185_000, '3m 5s'],
  ])('formats %d ms as %s', (ms, expected) => {
    expect(formatDuration(ms)).toBe(expected);
  });

  it('never rounds into a carry: seconds stay below 60 and milliseconds below 1000', () => {
    const samples = [...Array.from({ length: 40_000 }, (_, i) => i * 7.3), ...[1, 10, 60, 120, 3_600].flatMap((s) => [s * 1000 - 0.6, s * 1000 - 0.4, s * 1000 - 1, s * 1000 - 50, s * 1000 - 51])];
    for (const ms of samples) {
      const text = formatDuration(ms);
      const parts = /^(?:(\d+)ms|(\d+\.\d+)s|(\d+)m (\d+)s)$/.exec(text);
      expect(parts, `${ms} → ${text}`).not.toBeNull();
      const [, millis, seconds, , minuteSeconds] = parts!;
      if (millis !== undefined) expect(Number(millis), `${ms} → ${text}`).toBeLessThan(1000);
      if (seconds !== undefined) expect(Number(seconds), `${ms} → ${text}`).toBeLessThan(60);
      if (minuteSeconds !== undefined) expect(Number(minuteSeconds), `${ms} → ${text}`).toBeLessThan(60);
    }
  });
});
