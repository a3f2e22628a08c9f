import { describe, expect, it } from 'vitest';
import { RestartBackoff, type RestartDecision } from '../../lib/core/restart-strategy.js';
import { resolveRestartOptions, type RestartOptions } from '../../lib/core/options.js';

/** Feeds failures at the given times; returns each decision as a delay, or 'stop'. */
function decide(options: RestartOptions, failuresAt: readonly number[], random: () => number = () => 0.5): (number | 'stop')[] {
  const backoff = new RestartBackoff(resolveRestartOptions(options), random);
  return failuresAt.map((now) => {
    const d: RestartDecision = backoff.onFailure(now);
    return d.restart ? d.delayMs : 'stop';
  });
}

describe('RestartBackoff: none', () => {
  it('never restarts', () => {
    const backoff = new RestartBackoff(resolveRestartOptions({ type: 'none' }));
    expect(backoff.onFailure(0)).toEqual({ restart: false, reason: 'restart strategy is none' });
    expect(backoff.restarts).toBe(0);
  });
});

describe('RestartBackoff: fixed-delay', () => {
  it.each<[number, (number | 'stop')[]]>([
    [0, ['stop']],
    [1, [500, 'stop']],
    [3, [500, 500, 500, 'stop', 'stop']],
  ])('with %i attempts restarts that many times after the delay, then stops', (attempts, expected) => {
    expect(decide({ type: 'fixed-delay', attempts, delay: 500 }, expected.map((_, i) => i * 10_000))).toEqual(expected);
  });

  it('defaults to 3 attempts 1s apart, counts restarts, and says why it stops', () => {
    const backoff = new RestartBackoff(resolveRestartOptions({ type: 'fixed-delay' }));
    const decisions = [0, 1, 2, 3].map((t) => backoff.onFailure(t));

    expect(decisions.slice(0, 3)).toEqual([1, 2, 3].map(() => ({ restart: true, delayMs: 1000 })));
    expect(decisions[3]).toEqual({ restart: false, reason: 'fixed-delay restart strategy used all 3 attempts' });
    expect(backoff.restarts).toBe(3);
  });
});

describe('RestartBackoff: failure-rate', () => {
  const rate = { type: 'failure-rate', maxFailuresPerInterval: 2, failureRateInterval: 1_000, delay: 100 } as const;

  it.each<[string, number[], (number | 'stop')[]]>([
    ['stops at the third failure inside one interval', [0, 100, 200], [100, 100, 'stop']],
    ['forgets failures that left the interval', [0, 500, 1_000, 1_500], [100, 100, 100, 100]],
    ['counts a failure exactly one interval old as outside it', [0, 999, 1_000], [100, 100, 100]],
    ['stops when the interval fills again later', [0, 5_000, 5_100, 5_200], [100, 100, 100, 'stop']],
  ])('%s', (_case, failures, expected) => {
    expect(decide(rate, failures)).toEqual(expected);
  });

  it('explains the stop with the count and the window', () => {
    const backoff = new RestartBackoff(resolveRestartOptions(rate));
    backoff.onFailure(0);
    backoff.onFailure(1);
    expect(backoff.onFailure(2)).toEqual({ restart: false, reason: 'failure-rate restart strategy: 3 failures within 1000ms (at most 2)' });
  });
});

describe('RestartBackoff: exponential-delay', () => {
  const exp = { type: 'exponential-delay', initialBackoff: 100, maxBackoff: 1_000, backoffMultiplier: 2, resetBackoffThreshold: 60_000, jitterFactor: 0 } as const;

  it('doubles the delay on each failure up to the cap', () => {
    expect(decide(exp, [0, 1, 2, 3, 4, 5, 6])).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
  });

  it.each<[string, number[], (number | 'stop')[]]>([
    ['resets to the initial delay after a quiet period of the threshold', [0, 1, 2, 60_002], [100, 200, 400, 100]],
    ['does not reset just before the threshold', [0, 1, 2, 60_001], [100, 200, 400, 800]],
  ])('%s', (_case, failures, expected) => {
    expect(decide(exp, failures)).toEqual(expected);
  });

  it('grows by a non-integer multiplier and rounds to whole milliseconds', () => {
    expect(decide({ ...exp, backoffMultiplier: 1.5 }, [0, 1, 2, 3])).toEqual([100, 150, 225, 338]);
  });

  it('stops after the attempts are used', () => {
    expect(decide({ ...exp, attempts: 2 }, [0, 1, 2])).toEqual([100, 200, 'stop']);
  });

  it.each<[string, number, number]>([
    ['random 0 gives the lower bound', 0, 900],
    ['random 0.5 gives the backoff itself', 0.5, 1_000],
    ['random just below 1 approaches the upper bound', 0.999_999, 1_100],
  ])('spreads the delay by ±jitterFactor: %s', (_case, random, expected) => {
    const options = { ...exp, initialBackoff: 1_000, maxBackoff: 10_000, jitterFactor: 0.1 };
    expect(decide(options, [0], () => random)).toEqual([expected]);
  });

  it('keeps every jittered delay within [backoff × (1 − j), backoff × (1 + j)] and the growth unaffected by jitter', () => {
    const randoms = [0, 0.999, 0.25, 0.75, 0.1, 0.9];
    let i = 0;
    const delays = decide({ ...exp, jitterFactor: 0.5 }, [0, 1, 2, 3, 4, 5], () => randoms[i++]!) as number[];
    const backoffs = [100, 200, 400, 800, 1_000, 1_000];
    delays.forEach((d, k) => {
      expect(d).toBeGreaterThanOrEqual(backoffs[k]! * 0.5);
      expect(d).toBeLessThanOrEqual(backoffs[k]! * 1.5);
    });
    expect(delays[0]).toBe(50);
  });
});
