import type { ResolvedRestartOptions } from './options.js';

/** Whether to restart after a failure, and after how long. */
export type RestartDecision = { readonly restart: true; readonly delayMs: number } | { readonly restart: false; readonly reason: string };

/** What a restart strategy remembers between failures: plain data, so a deployed job keeps it in its job row. */
export interface RestartState {
  /** Restarts decided so far. */
  readonly attempts: number;
  /** Failure times within the failure-rate interval (failure-rate only). */
  readonly failures: readonly number[];
  /** The last backoff in ms (exponential-delay only). */
  readonly currentBackoff: number;
  readonly lastFailureAt?: number;
}

/** A strategy that has seen no failure. */
export const INITIAL_RESTART_STATE: RestartState = { attempts: 0, failures: [], currentBackoff: 0 };

/**
 * Records a failure at `now` and decides by Flink's fixed-delay, failure-rate and exponential-delay strategies;
 * time and randomness (the exponential strategy's jitter) are passed in. Answers the decision and the new state.
 */
export function decideRestart(options: ResolvedRestartOptions, state: RestartState, now: number, random: () => number = () => 0.5): { decision: RestartDecision; state: RestartState } {
  const o = options;
  const restart = (delayMs: number, next: Partial<RestartState>) => ({ decision: { restart: true, delayMs } as const, state: { ...state, ...next, attempts: state.attempts + 1 } });
  switch (o.type) {
    case 'none':
      return { decision: { restart: false, reason: 'restart strategy is none' }, state };
    case 'fixed-delay':
      if (state.attempts >= o.attempts) return { decision: { restart: false, reason: `fixed-delay restart strategy used all ${o.attempts} attempts` }, state };
      return restart(o.delay, {});
    case 'failure-rate': {
      const failures = [...state.failures.filter((t) => now - t < o.failureRateInterval), now];
      if (failures.length > o.maxFailuresPerInterval) {
        return {
          decision: { restart: false, reason: `failure-rate restart strategy: ${failures.length} failures within ${o.failureRateInterval}ms (at most ${o.maxFailuresPerInterval})` },
          state: { ...state, failures },
        };
      }
      return restart(o.delay, { failures });
    }
    case 'exponential-delay': {
      if (state.attempts >= o.attempts) return { decision: { restart: false, reason: `exponential-delay restart strategy used all ${o.attempts} attempts` }, state };
      const reset = state.lastFailureAt !== undefined && now - state.lastFailureAt >= o.resetBackoffThreshold;
      const previous = reset ? 0 : state.currentBackoff;
      const currentBackoff = previous === 0 ? o.initialBackoff : Math.min(previous * o.backoffMultiplier, o.maxBackoff);
      const jitter = currentBackoff * o.jitterFactor * (random() * 2 - 1);
      return restart(Math.max(0, Math.round(currentBackoff + jitter)), { currentBackoff, lastFailureAt: now });
    }
  }
}

/** A restart strategy with its state in memory (the embedded runner, emulator mode's own failures). */
export class RestartBackoff {
  private state: RestartState = INITIAL_RESTART_STATE;

  constructor(
    private readonly options: ResolvedRestartOptions,
    private readonly random: () => number = () => 0.5,
  ) {}

  /** Restarts decided so far. */
  get restarts(): number {
    return this.state.attempts;
  }

  /** Records a failure at `now` and decides. */
  onFailure(now: number): RestartDecision {
    const { decision, state } = decideRestart(this.options, this.state, now, this.random);
    this.state = state;
    return decision;
  }
}
