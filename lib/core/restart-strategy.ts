import type { ResolvedRestartOptions } from './options.js';

/** Whether to restart after a failure, and after how long. */
export type RestartDecision = { readonly restart: true; readonly delayMs: number } | { readonly restart: false; readonly reason: string };

/** Decides restarts by Flink's fixed-delay, failure-rate and exponential-delay strategies; time and randomness are passed in. */
export class RestartBackoff {
  private failures: number[] = [];
  private attempts = 0;
  private currentBackoff = 0;
  private lastFailureAt: number | undefined;

  constructor(
    private readonly options: ResolvedRestartOptions,
    private readonly random: () => number = () => 0.5,
  ) {}

  /** Restarts decided so far. */
  get restarts(): number {
    return this.attempts;
  }

  /** Records a failure at `now` and decides. */
  onFailure(now: number): RestartDecision {
    const o = this.options;
    switch (o.type) {
      case 'none':
        return { restart: false, reason: 'restart strategy is none' };
      case 'fixed-delay':
        if (this.attempts >= o.attempts) return { restart: false, reason: `fixed-delay restart strategy used all ${o.attempts} attempts` };
        this.attempts++;
        return { restart: true, delayMs: o.delay };
      case 'failure-rate': {
        this.failures = [...this.failures.filter((t) => now - t < o.failureRateInterval), now];
        if (this.failures.length > o.maxFailuresPerInterval) {
          return { restart: false, reason: `failure-rate restart strategy: ${this.failures.length} failures within ${o.failureRateInterval}ms (at most ${o.maxFailuresPerInterval})` };
        }
        this.attempts++;
        return { restart: true, delayMs: o.delay };
      }
      case 'exponential-delay': {
        if (this.attempts >= o.attempts) return { restart: false, reason: `exponential-delay restart strategy used all ${o.attempts} attempts` };
        if (this.lastFailureAt !== undefined && now - this.lastFailureAt >= o.resetBackoffThreshold) this.currentBackoff = 0;
        this.lastFailureAt = now;
        this.currentBackoff = this.currentBackoff === 0 ? o.initialBackoff : Math.min(this.currentBackoff * o.backoffMultiplier, o.maxBackoff);
        const jitter = this.currentBackoff * o.jitterFactor * (this.random() * 2 - 1);
        this.attempts++;
        return { restart: true, delayMs: Math.max(0, Math.round(this.currentBackoff + jitter)) };
      }
    }
  }
}
