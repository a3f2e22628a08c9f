/**
 * What the coordinator's effects and tasks report as they happen, as plain data, so a Lambda handler can turn them
 * into metrics without lib/ knowing how metrics are published. Logs say the same things in words; an observer is for
 * counting and timing. Emulator mode and tests may leave it out.
 */

/** One structured log entry; `message` says what happened, the other fields are for queries. */
export interface CoordinatorLogEntry {
  readonly level: 'info' | 'warn' | 'error';
  readonly message: string;
  readonly [field: string]: unknown;
}

/** Where the coordinator logs. */
export type CoordinatorLog = (entry: CoordinatorLogEntry) => void;

/** Structured JSON lines on stdout, which Lambda sends to CloudWatch Logs as they are. */
export const jsonLineLog: CoordinatorLog = (entry) => console.log(JSON.stringify({ time: new Date().toISOString(), ...entry }));

/** One thing the coordinator did, reported after the job row write it belongs to succeeded. */
export type CoordinatorObservation =
  /** The reducer started a checkpoint or savepoint (its barriers are being injected). */
  | { readonly type: 'checkpointTriggered'; readonly checkpointId: number; readonly kind: 'checkpoint' | 'savepoint'; readonly generation: number }
  /**
   * A checkpoint's manifest was written and the job row recorded it complete. `durationMs` runs from trigger to
   * completion; `stateSize` is the bytes this checkpoint wrote, `fullSize` the bytes it references (they differ for
   * incremental checkpoints); all three are absent when the row's history no longer holds the checkpoint.
   */
  | {
      readonly type: 'checkpointCompleted';
      readonly checkpointId: number;
      readonly kind: 'checkpoint' | 'savepoint';
      readonly generation: number;
      readonly durationMs?: number;
      readonly stateSize?: number;
      readonly fullSize?: number;
    }
  /** A pending checkpoint was aborted (timeout, decline, failed manifest write): it ends FAILED. */
  | { readonly type: 'checkpointAborted'; readonly checkpointId: number; readonly generation: number; readonly reason: string }
  /** Too many checkpoints failed, or a terminating one did: the job fails over. */
  | { readonly type: 'jobFailing'; readonly generation: number; readonly reason: string }
  /** A coordinator-tasks message was handled; `failed` when its task failed (answered or not) or its message comes back. */
  | { readonly type: 'coordinatorTask'; readonly task: 'trigger' | 'abort' | 'complete' | 'tick' | 'timerWake' | 'sourceWake' | 'activity' | 'malformed'; readonly failed: boolean; readonly durationMs: number };

/** Receives coordinator observations; must be quick, and is not awaited. */
export type CoordinatorObserver = (observation: CoordinatorObservation) => void;

/**
 * Wraps an observer so that its failure cannot fail the protocol step that reported: a metrics library that throws
 * is logged, at warn level, and the step goes on. Answers a no-op when there is no observer.
 */
export function guardedObserver<O>(observer: ((observation: O) => void) | undefined, log: CoordinatorLog): (observation: O) => void {
  if (!observer) return () => {};
  return (observation) => {
    try {
      observer(observation);
    } catch (e) {
      log({ level: 'warn', message: `observer failed: ${(e as Error).message}`, observation: (observation as { type?: unknown }).type });
    }
  };
}

/**
 * A coordinator log entry as one line for a person at a terminal (`floe run`): completions with their path,
 * entries marked `notable` (a restart's restore), warnings and errors; other info entries answer undefined.
 */
export function coordinatorLine(entry: Readonly<Record<string, unknown>>): string | undefined {
  const message = String(entry.message ?? JSON.stringify(entry));
  if (entry.level !== 'info' || entry.notable === true) return message;
  return /^(checkpoint|savepoint) \d+ completed$/.test(message) ? `${message}: ${String(entry.path ?? '')}` : undefined;
}
