import type { CoordinatorState, TriggerRequest } from './types.js';

/** Why a periodic checkpoint is or is not triggered now. */
export type PeriodicDecision =
  | { readonly trigger: true }
  | { readonly trigger: false; readonly reason: 'not-running' | 'disabled' | 'terminating' | 'queued' | 'quiet' | 'interval' | 'min-pause' | 'max-concurrent' };

/** True while another snapshot may start without exceeding `maxConcurrent`. */
export function hasFreeSlot(state: CoordinatorState): boolean {
  return state.pending.length < state.options.maxConcurrent;
}

/** True when a snapshot that ends the job is pending or waiting in the queue. */
export function terminationInFlight(state: CoordinatorState): boolean {
  return state.pending.some((p) => p.termination !== undefined) || state.queued.some((r) => r.termination !== undefined);
}

/** True when every source subtask reported the end of its input (and the job has sources at all). */
export function allSourcesFinished(state: CoordinatorState): boolean {
  return state.sourceTasks.length > 0 && state.sourceTasks.every((t) => state.finishedSources.includes(t));
}

/** Decides whether the periodic schedule triggers a checkpoint at `now`: not quiet, interval since the last trigger (or start), min pause since the last completion, a free slot. */
export function decidePeriodicTrigger(state: CoordinatorState, now: number): PeriodicDecision {
  const { interval, minPause } = state.options;
  if (state.status !== 'RUNNING') return { trigger: false, reason: 'not-running' };
  if (interval <= 0) return { trigger: false, reason: 'disabled' };
  if (terminationInFlight(state) || allSourcesFinished(state)) return { trigger: false, reason: 'terminating' };
  if (state.queued.length > 0) return { trigger: false, reason: 'queued' };
  // Nothing changed since the last checkpoint, confirmed (quiet.ts): a subtask's `activity` resumes them.
  if (state.quiet?.confirmed === true) return { trigger: false, reason: 'quiet' };
  const since = state.lastTriggeredAt ?? state.startedAt;
  if (since === undefined || now - since < interval) return { trigger: false, reason: 'interval' };
  if (state.lastCompletedAt !== undefined && now - state.lastCompletedAt < minPause) return { trigger: false, reason: 'min-pause' };
  if (!hasFreeSlot(state)) return { trigger: false, reason: 'max-concurrent' };
  return { trigger: true };
}

/**
 * Decides whether a user's (or the end-of-input) request may start now. Requests ignore interval and
 * min pause, like Flink's savepoints, but wait for a free slot; a second terminating request waits
 * until the first one has been decided.
 */
export function mayStartRequest(state: CoordinatorState, request: TriggerRequest): boolean {
  if (state.status !== 'RUNNING' || !hasFreeSlot(state)) return false;
  return request.termination === undefined || !state.pending.some((p) => p.termination !== undefined);
}
