import { describe, expect, it } from 'vitest';
import { resolveCheckpointOptions, resolveRestartOptions, type CheckpointOptions, type RestartOptions } from '../../lib/core/options.js';
import { ErrorCode, ValidationError } from '../../lib/core/errors.js';

/** The problems a resolve function reports, or [] when it accepts its input. */
function problemsOf(resolve: () => unknown): readonly string[] {
  try {
    resolve();
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    expect((e as ValidationError).code).toBe(ErrorCode.InvalidOptions);
    return (e as ValidationError).problems;
  }
  return [];
}

describe('resolveCheckpointOptions', () => {
  it('fills in the documented defaults', () => {
    expect(resolveCheckpointOptions()).toEqual({
      interval: 0,
      timeout: 600_000,
      minPause: 0,
      maxConcurrent: 1,
      tolerableFailures: 0,
      mode: 'exactly-once',
      retained: 1,
      retainOnCancel: true,
      incremental: true,
      dir: '.floe/checkpoints',
    });
  });

  it('parses durations given as text and keeps the rest', () => {
    const resolved = resolveCheckpointOptions({ interval: '10s', timeout: '2m', minPause: 500, mode: 'at-least-once', retained: 3, incremental: false, dir: '/ckpt' });
    expect(resolved).toMatchObject({ interval: 10_000, timeout: 120_000, minPause: 500, mode: 'at-least-once', retained: 3, incremental: false, dir: '/ckpt' });
  });

  it('reports every problem at once, each naming its field', () => {
    const options = { interval: 'soon', minPause: -5, maxConcurrent: 0, tolerableFailures: 1.5, mode: 'sometimes', retained: 0 } as unknown as CheckpointOptions;

    const problems = problemsOf(() => resolveCheckpointOptions(options));

    expect(problems).toEqual([
      "checkpoint.mode must be 'exactly-once' or 'at-least-once', got 'sometimes'",
      "checkpoint.interval must be a duration like 500ms, 10s, 2m or 1h, got 'soon'",
      'checkpoint.minPause must be a non-negative number of milliseconds, got -5',
      'checkpoint.maxConcurrent must be an integer >= 1, got 0',
      'checkpoint.tolerableFailures must be an integer >= 0, got 1.5',
      'checkpoint.retained must be an integer >= 1, got 0',
    ]);
  });

  it.each<[CheckpointOptions, string]>([
    [{ timeout: 0 }, 'checkpoint.timeout must be > 0'],
    [{ timeout: '0s' }, 'checkpoint.timeout must be > 0'],
    [{ maxConcurrent: Number.NaN }, 'checkpoint.maxConcurrent must be an integer >= 1, got NaN'],
  ])('rejects %j', (options, expected) => {
    expect(problemsOf(() => resolveCheckpointOptions(options))).toEqual([expected]);
  });

  it('puts every problem in the error message, under one subject', () => {
    expect(() => resolveCheckpointOptions({ maxConcurrent: 0, retained: 0 })).toThrow(
      'checkpoint options is invalid:\n  - checkpoint.maxConcurrent must be an integer >= 1, got 0\n  - checkpoint.retained must be an integer >= 1, got 0',
    );
  });
});

describe('resolveRestartOptions', () => {
  it.each<[RestartOptions | undefined, object]>([
    [undefined, { type: 'fixed-delay', attempts: 3, delay: 1_000 }],
    [{ type: 'fixed-delay', attempts: 0, delay: '5s' }, { type: 'fixed-delay', attempts: 0, delay: 5_000 }],
    [{ type: 'failure-rate' }, { type: 'failure-rate', maxFailuresPerInterval: 1, failureRateInterval: 60_000, delay: 1_000 }],
    [
      { type: 'exponential-delay' },
      { type: 'exponential-delay', initialBackoff: 1_000, maxBackoff: 60_000, backoffMultiplier: 2, resetBackoffThreshold: 3_600_000, jitterFactor: 0.1, attempts: Infinity },
    ],
    [{ type: 'none' }, { type: 'none' }],
  ])('fills in defaults for %j', (options, expected) => {
    expect(resolveRestartOptions(options)).toEqual(expected);
  });

  it.each<[string, RestartOptions, string[]]>([
    ['fixed-delay', { type: 'fixed-delay', attempts: -1, delay: 'later' }, ['restart.attempts must be an integer >= 0, got -1', "restart.delay must be a duration like 500ms, 10s, 2m or 1h, got 'later'"]],
    [
      'failure-rate',
      { type: 'failure-rate', maxFailuresPerInterval: 0, failureRateInterval: 'an hour', delay: -1 },
      [
        'restart.maxFailuresPerInterval must be an integer >= 1, got 0',
        "restart.failureRateInterval must be a duration like 500ms, 10s, 2m or 1h, got 'an hour'",
        'restart.delay must be a non-negative number of milliseconds, got -1',
      ],
    ],
    [
      'exponential-delay',
      { type: 'exponential-delay', initialBackoff: '10s', maxBackoff: '1s', backoffMultiplier: 0.5, jitterFactor: 2, attempts: 2.5 },
      [
        'restart.attempts must be an integer >= 0, got 2.5',
        'restart.backoffMultiplier must be >= 1',
        'restart.jitterFactor must be between 0 and 1',
        'restart.maxBackoff must be >= restart.initialBackoff',
      ],
    ],
  ])('reports every problem of a %s strategy at once', (_case, options, expected) => {
    expect(problemsOf(() => resolveRestartOptions(options))).toEqual(expected);
  });

  it('rejects an unknown strategy type, listing the known ones', () => {
    expect(problemsOf(() => resolveRestartOptions({ type: 'sometimes' } as unknown as RestartOptions))).toEqual([
      "restart.type must be one of fixed-delay, failure-rate, exponential-delay, none; got 'sometimes'",
    ]);
  });
});
