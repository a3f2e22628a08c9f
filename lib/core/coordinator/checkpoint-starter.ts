import { andThen, step, unchanged } from './step.js';
import { mayStartRequest } from './trigger-decider.js';
import type { CoordinatorState, CoordinatorStep, PendingCheckpoint, TriggerRequest } from './types.js';

/** What to start: a periodic checkpoint (no request) or a request's snapshot. */
export type StartSpec = { readonly periodic: true } | { readonly periodic: false; readonly request: TriggerRequest };

/** Allocates the next checkpoint id, makes it pending and asks the runner to inject its barrier; the caller has checked that it may start. */
export function startCheckpoint(state: CoordinatorState, spec: StartSpec, now: number): CoordinatorStep {
  const id = state.nextCheckpointId;
  const request = spec.periodic ? undefined : spec.request;
  const kind = request?.kind ?? 'checkpoint';
  const pending: PendingCheckpoint = {
    id,
    kind,
    triggeredAt: now,
    ...(request === undefined ? {} : { requestId: request.requestId }),
    ...(request?.dir === undefined ? {} : { dir: request.dir }),
    ...(request?.termination === undefined ? {} : { termination: request.termination }),
    acks: {},
    finalizing: false,
    ...(state.latestCommittedId === undefined ? {} : { committedThrough: state.latestCommittedId }),
  };
  return step({ ...state, nextCheckpointId: id + 1, lastTriggeredAt: now, pending: [...state.pending, pending] }, [
    {
      type: 'injectBarrier',
      checkpointId: id,
      kind,
      timestamp: now,
      ...(pending.termination === undefined ? {} : { termination: pending.termination }),
      ...(pending.committedThrough === undefined ? {} : { committedThrough: pending.committedThrough }),
    },
  ]);
}

/** Starts queued requests in order while they may start; stops at the first that must keep waiting, so requests never overtake each other. */
export function serveQueue(state: CoordinatorState, now: number): CoordinatorStep {
  let current = unchanged(state);
  for (;;) {
    const head = current.state.queued[0];
    if (head === undefined || !mayStartRequest(current.state, head)) return current;
    current = andThen(current, (s) => startCheckpoint({ ...s, queued: s.queued.slice(1) }, { periodic: false, request: head }, now));
  }
}

/** Starts a request now when nothing queued is ahead of it and it may start; queues it otherwise. A request id already pending or queued is ignored. */
export function submitRequest(state: CoordinatorState, request: TriggerRequest, now: number): CoordinatorStep {
  const known = state.pending.some((p) => p.requestId === request.requestId) || state.queued.some((r) => r.requestId === request.requestId);
  if (known) return unchanged(state);
  return serveQueue({ ...state, queued: [...state.queued, request] }, now);
}
