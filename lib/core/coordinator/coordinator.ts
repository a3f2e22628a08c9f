import type { ResolvedCheckpointOptions } from '../options.js';
import { abortAllPending, abortCheckpoint, failJob } from './abort.js';
import { classifyNotPending, findPending, recordAck } from './ack-tracker.js';
import { serveQueue, startCheckpoint, submitRequest } from './checkpoint-starter.js';
import { completeCheckpoint } from './completion.js';
import { endQuiet } from './quiet.js';
import { DEFAULT_HISTORY_SIZE } from './history.js';
import { andThen, step, unchanged } from './step.js';
import { allSourcesFinished, decidePeriodicTrigger, terminationInFlight } from './trigger-decider.js';
import type { CoordinatorEvent, CoordinatorState, CoordinatorStep, PendingCheckpoint, SubtaskAck, TriggerRequest } from './types.js';

/** Request id of the final checkpoint taken when every source has read all of its input. */
export const END_OF_INPUT_REQUEST_ID = 'end-of-input';

/** What a coordinator starts from: the job's tasks and options, and where a restored run left off. */
export interface InitialCoordinatorInput {
  /** Task keys (`<vertex>:<subtask>`) that must ack every checkpoint. */
  readonly tasks: readonly string[];
  /** Task keys of source subtasks. */
  readonly sourceTasks: readonly string[];
  readonly options: ResolvedCheckpointOptions;
  /** Start time; the first periodic checkpoint is due one interval later. Absent: the first tick's time. */
  readonly now?: number;
  /** First id to allocate. @default latestCompletedId + 1, or 1 */
  readonly nextCheckpointId?: number;
  /** Latest completed checkpoint of the run this one restores. */
  readonly latestCompletedId?: number;
  /** True when the run restored from a checkpoint or savepoint (counted in `counts.restored`). @default false */
  readonly restored?: boolean;
  /** Finished checkpoints kept in the history. @default 20 */
  readonly historySize?: number;
  /** Quiet checkpoints (quiet.ts): how long a step's view of the job row may lag, in ms. @default off */
  readonly quietAfterMs?: number;
}

/** Builds a RUNNING coordinator with nothing pending; ids continue after a restored run's, never reusing one. */
export function initialCoordinatorState(input: InitialCoordinatorInput): CoordinatorState {
  const floor = (input.latestCompletedId ?? 0) + 1;
  return {
    tasks: [...input.tasks],
    sourceTasks: [...input.sourceTasks],
    options: input.options,
    status: 'RUNNING',
    nextCheckpointId: Math.max(input.nextCheckpointId ?? floor, floor),
    pending: [],
    queued: [],
    ...(input.now === undefined ? {} : { startedAt: input.now }),
    // A restored run commits the snapshot's transactions before it starts: they count as committed.
    ...(input.latestCompletedId === undefined ? {} : { latestCompletedId: input.latestCompletedId, latestCommittedId: input.latestCompletedId }),
    consecutiveFailures: 0,
    finishedSources: [],
    counts: { completed: 0, failed: 0, restored: input.restored === true ? 1 : 0 },
    history: [],
    historySize: input.historySize ?? DEFAULT_HISTORY_SIZE,
    ...(input.quietAfterMs === undefined ? {} : { quietAfterMs: input.quietAfterMs }),
  };
}

const endOfInputRequest: TriggerRequest = { requestId: END_OF_INPUT_REQUEST_ID, kind: 'checkpoint', termination: 'end' };

/** Queues (or starts) the final checkpoint once every source finished, unless a terminating snapshot is already on its way. */
function requestEndOfInput(state: CoordinatorState, now: number): CoordinatorStep {
  if (state.status !== 'RUNNING' || !allSourcesFinished(state) || terminationInFlight(state)) return unchanged(state);
  return submitRequest(state, endOfInputRequest, now);
}

/** The tasks that have not acknowledged a pending checkpoint, the first few by name: where a stuck barrier is. */
function missingTasks(state: CoordinatorState, p: PendingCheckpoint): string {
  const missing = state.tasks.filter((t) => p.acks[t] === undefined);
  return missing.length <= 5 ? missing.join(', ') : `${missing.slice(0, 5).join(', ')} and ${missing.length - 5} more`;
}

/** Aborts pending checkpoints older than the timeout, oldest first. */
function expireOverdue(state: CoordinatorState, now: number): CoordinatorStep {
  const { timeout } = state.options;
  // Once every task acked, the manifest write is the commit point: only its outcome decides, or a
  // manifest could appear for a checkpoint the coordinator had already aborted.
  const overdue = state.pending.filter((p) => !p.finalizing && now - p.triggeredAt >= timeout);
  return overdue.reduce<CoordinatorStep>(
    (acc, p) =>
      andThen(acc, (s) =>
        s.status !== 'RUNNING'
          ? unchanged(s)
          : abortCheckpoint(s, p.id, `${p.kind} ${p.id} expired after ${timeout}ms before all tasks acknowledged (${Object.keys(p.acks).length}/${s.tasks.length}; waiting for ${missingTasks(s, p)})`, now, 'failure'),
      ),
    unchanged(state),
  );
}

function onTick(state: CoordinatorState, now: number): CoordinatorStep {
  if (state.status !== 'RUNNING') return unchanged(state);
  let result = expireOverdue(state.startedAt === undefined ? { ...state, startedAt: now } : state, now);
  result = andThen(result, (s) => requestEndOfInput(s, now));
  result = andThen(result, (s) => serveQueue(s, now));
  return andThen(result, (s) => (decidePeriodicTrigger(s, now).trigger ? startCheckpoint(s, { periodic: true }, now) : unchanged(s)));
}

function onAck(state: CoordinatorState, checkpointId: number, ack: SubtaskAck): CoordinatorStep {
  const outcome = recordAck(state, checkpointId, ack);
  if (outcome.result !== 'accepted') return unchanged(state, outcome.result);
  const checkpoint = outcome.fullyAcknowledged ? { ...outcome.checkpoint, finalizing: true } : outcome.checkpoint;
  const next: CoordinatorState = { ...state, pending: state.pending.map((p) => (p.id === checkpointId ? checkpoint : p)) };
  return step(next, outcome.fullyAcknowledged ? [{ type: 'writeManifest', checkpoint }] : [], 'accepted');
}

function onDecline(state: CoordinatorState, checkpointId: number, task: string, reason: string, now: number): CoordinatorStep {
  const pending = findPending(state, checkpointId);
  if (pending === undefined) return unchanged(state, classifyNotPending(state, checkpointId));
  if (!state.tasks.includes(task)) return unchanged(state, 'unknown');
  // Every task acked already: the manifest write decides (see expireOverdue).
  if (pending.finalizing) return unchanged(state, 'discarded');
  const aborted = abortCheckpoint(state, checkpointId, `${pending.kind} ${checkpointId} declined by ${task}: ${reason}`, now, 'failure');
  return { ...aborted, result: 'accepted' };
}

function onSourceFinished(state: CoordinatorState, task: string, now: number): CoordinatorStep {
  if (!state.sourceTasks.includes(task) || state.finishedSources.includes(task)) return unchanged(state);
  return requestEndOfInput({ ...state, finishedSources: [...state.finishedSources, task] }, now);
}

function onManifestFailed(state: CoordinatorState, checkpointId: number, reason: string, now: number): CoordinatorStep {
  const pending = findPending(state, checkpointId);
  if (pending === undefined || !pending.finalizing) return unchanged(state);
  return abortCheckpoint(state, checkpointId, `manifest of ${pending.kind} ${checkpointId} could not be written: ${reason}`, now, 'failure');
}

/** A task's step failed for good: the job fails over, once (a FAILING job ignores further failures). */
function onTaskFailed(state: CoordinatorState, task: string, reason: string, now: number): CoordinatorStep {
  if (state.status !== 'RUNNING' || !state.tasks.includes(task)) return unchanged(state);
  return failJob(state, `task ${task} failed: ${reason}`, now);
}

/** A completed checkpoint's sink transactions were committed: later barriers let the sinks drop them. */
function onCommitted(state: CoordinatorState, checkpointId: number): CoordinatorStep {
  if (checkpointId > (state.latestCompletedId ?? 0) || checkpointId <= (state.latestCommittedId ?? 0)) return unchanged(state);
  return step({ ...state, latestCommittedId: checkpointId }, []);
}

/** Cancels the job: a FAILING job may be cancelled too (its failover is then not wanted); pending checkpoints are aborted without charging the budget. */
function onCancel(state: CoordinatorState, now: number): CoordinatorStep {
  const aborted = abortAllPending({ ...state, status: 'CANCELED', queued: [] }, 'the job was cancelled', now);
  return andThen(aborted, (s) => step(s, [{ type: 'jobCanceled' }]));
}

/**
 * The checkpoint coordinator as a pure reducer: `(state, event) → { state, effects }`. It reads no clock
 * (time comes from `event.now`) and does no I/O; the runner carries out the effects and feeds their
 * outcomes back as events. A FINISHED or CANCELED job ignores every event.
 */
export function reduceCoordinator(state: CoordinatorState, event: CoordinatorEvent): CoordinatorStep {
  if (state.status === 'FINISHED' || state.status === 'CANCELED') return unchanged(state);
  switch (event.type) {
    case 'tick':
      return onTick(state, event.now);
    case 'trigger':
      return submitRequest(state, event.request, event.now);
    case 'ack':
      return onAck(state, event.checkpointId, event.ack);
    case 'decline':
      return onDecline(state, event.checkpointId, event.task, event.reason, event.now);
    case 'sourceFinished':
      return onSourceFinished(state, event.task, event.now);
    case 'manifestWritten':
      return completeCheckpoint(state, event.checkpointId, event.path, event.now);
    case 'manifestFailed':
      return onManifestFailed(state, event.checkpointId, event.reason, event.now);
    case 'taskFailed':
      return onTaskFailed(state, event.task, event.reason, event.now);
    case 'cancel':
      return onCancel(state, event.now);
    case 'committed':
      return onCommitted(state, event.checkpointId);
    case 'activity':
      // The quiet ends, and the tick that follows lets a periodic checkpoint start at once if one is due.
      if (!state.tasks.includes(event.task)) return unchanged(state);
      return onTick(endQuiet(state), event.now);
    default: {
      const _exhaustive: never = event;
      return unchanged(state);
    }
  }
}
