/**
 * A run as a sequence of attempts under the job's restart strategy (Flink's fixed-delay, failure-rate,
 * exponential-delay, none): an attempt that fails is followed, after the strategy's delay, by a new generation
 * restored from the newest checkpoint the run completed, until the strategy gives up. The embedded runner and
 * emulator mode run their attempts through here.
 */
import { ErrorCode, FloeError } from '../core/errors.js';
import type { RestartBackoff } from '../core/restart-strategy.js';
import type { Clock } from '../ports/index.js';
import type { LoadedManifest } from '../runtime/snapshot-catalog.js';

/** Where a run starts from. */
export type RestoreSource =
  | { readonly kind: 'none' }
  /** The newest intact completed checkpoint under the checkpoint directory (newer corrupt ones are skipped); empty state when there is none at all. */
  | { readonly kind: 'latest-checkpoint' }
  /** A checkpoint or savepoint directory (or its `_metadata` file). */
  | { readonly kind: 'path'; readonly path: string };

/** How a run ended. */
export interface RunOutcome {
  readonly state: 'FINISHED' | 'CANCELED' | 'FAILED';
  readonly error?: Error;
  /** The savepoint written by stop-with-savepoint, if any. */
  readonly savepoint?: string;
}

/** How one attempt ended: as the run does, or with a failure the restart strategy handles. */
export type AttemptOutcome = RunOutcome | { readonly state: 'RESTART'; readonly error: Error };

/** What {@link runAttempts} drives. */
export interface Attempts {
  readonly backoff: RestartBackoff;
  readonly clock: Clock;
  readonly log: (line: string) => void;
  /** Runs one attempt (a new generation) from `restore`, or from empty state. */
  attempt(restore: LoadedManifest | undefined): Promise<AttemptOutcome>;
  /** Where the next attempt restores from, given what the last one did. */
  restartFrom(last: LoadedManifest | undefined): Promise<LoadedManifest | undefined>;
  /** True once the run was cancelled (a cancel during the restart delay ends the run). */
  cancelled(): boolean;
  /** Told when a restart is decided, before its delay. */
  restarting(delayMs: number, error: Error): void;
  /** @default setTimeout */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** Runs attempts until one finishes, is cancelled, or fails beyond the restart strategy. */
export async function runAttempts(run: Attempts, first: LoadedManifest | undefined): Promise<RunOutcome> {
  const sleep = run.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let restore = first;
  for (;;) {
    const outcome = await run.attempt(restore);
    if (outcome.state !== 'RESTART') return outcome;
    const decision = run.backoff.onFailure(run.clock.now());
    if (!decision.restart) {
      const cause = `${outcome.error.message} (${decision.reason})`;
      run.log(`job failed: ${cause}`);
      return { state: 'FAILED', error: new FloeError(ErrorCode.JobFailed, cause, { cause: outcome.error }) };
    }
    run.restarting(decision.delayMs, outcome.error);
    run.log(`restarting in ${decision.delayMs}ms after: ${outcome.error.message}`);
    await sleep(decision.delayMs);
    if (run.cancelled()) return { state: 'CANCELED' };
    restore = await run.restartFrom(restore);
  }
}
