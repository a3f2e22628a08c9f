import { describe, expect, it } from 'vitest';
import { initialCoordinatorState, reduceCoordinator } from '../../lib/core/coordinator/coordinator.js';
import { decidePeriodicTrigger } from '../../lib/core/coordinator/trigger-decider.js';
import type { CoordinatorEffect, CoordinatorEvent, CoordinatorState, SubtaskAck } from '../../lib/core/coordinator/types.js';
import { resolveCheckpointOptions } from '../../lib/core/options.js';

// Quiet checkpoints (lib/core/coordinator/quiet.ts): a 1 s interval, a 6 s lag allowance, two tasks.
const TASKS = ['source:0', 'sink:0'] as const;
const QUIET_AFTER = 6_000;

/** `null`: quiet checkpoints off. */
function coordinator(quietAfterMs: number | null = QUIET_AFTER): CoordinatorState {
  return initialCoordinatorState({
    tasks: TASKS,
    sourceTasks: ['source:0'],
    now: 0,
    options: resolveCheckpointOptions({ interval: 1000, timeout: 10_000 }),
    ...(quietAfterMs === null ? {} : { quietAfterMs }),
  });
}

function subtaskAck(task: string, now: number, records: number | undefined): SubtaskAck {
  const stats = { ackTimestamp: now, alignmentMs: 0, syncMs: 0, asyncMs: 0, startDelayMs: 0, stateSize: 1, fullSize: 1, ...(records === undefined ? {} : { records }) };
  return { task, ackTimestamp: now, operators: { op: { subtask: 0, keyGroups: [0, 128], keyedState: [], operatorState: [], pendingCommits: [], stats } } };
}

/** Feeds events; answers the last state and every effect. */
function run(state: CoordinatorState, events: readonly CoordinatorEvent[]): { state: CoordinatorState; effects: CoordinatorEffect[] } {
  const effects: CoordinatorEffect[] = [];
  let current = state;
  for (const e of events) {
    const s = reduceCoordinator(current, e);
    effects.push(...s.effects);
    current = s.state;
  }
  return { state: current, effects };
}

/** A tick at `at` that must start checkpoint `id`, acked by every task with `records` each, completed at `at + 100`. */
function checkpointAt(state: CoordinatorState, at: number, records: number | undefined): CoordinatorState {
  const ticked = run(state, [{ type: 'tick', now: at }]);
  const injected = ticked.effects.filter((e) => e.type === 'injectBarrier');
  expect(injected, `a checkpoint starts at ${at}`).toHaveLength(1);
  const id = (injected[0] as Extract<CoordinatorEffect, { type: 'injectBarrier' }>).checkpointId;
  return run(ticked.state, [
    ...TASKS.map((t): CoordinatorEvent => ({ type: 'ack', now: at + 50, checkpointId: id, ack: subtaskAck(t, at + 50, records) })),
    { type: 'manifestWritten', now: at + 100, checkpointId: id, path: `/chk/chk-${id}` },
  ]).state;
}

const starts = (state: CoordinatorState, now: number) => run(state, [{ type: 'tick', now }]).effects.some((e) => e.type === 'injectBarrier');

describe('quiet checkpoints', () => {
  it('goes quiet after a checkpoint without work and stops periodic checkpoints once one triggered quietAfterMs later had none either', () => {
    let s = coordinator();
    s = checkpointAt(s, 1000, 0);
    expect(s.quiet).toEqual({ since: 1100, confirmed: false });
    // Not confirmed yet: a step's view of the row may be older than the quiet, so checkpoints go on.
    for (let at = 2100; at < 1100 + QUIET_AFTER; at += 1000) {
      s = checkpointAt(s, at, 0);
      expect(s.quiet?.confirmed, `at ${at}`).toBe(false);
    }
    s = checkpointAt(s, 7200, 0);
    expect(s.quiet).toEqual({ since: 1100, confirmed: true });
    expect(decidePeriodicTrigger(s, 60_000)).toEqual({ trigger: false, reason: 'quiet' });
    expect(starts(s, 60_000)).toBe(false);
  });

  it('ends the quiet on a checkpoint whose subtasks did work, and on activity, which starts a checkpoint at once when one is due', () => {
    let s = checkpointAt(coordinator(), 1000, 0);
    s = checkpointAt(s, 2100, 3);
    expect(s.quiet).toBeUndefined();

    s = checkpointAt(checkpointAt(coordinator(), 1000, 0), 7200, 0);
    expect(s.quiet?.confirmed).toBe(true);
    const woken = run(s, [{ type: 'activity', now: 90_000, task: 'sink:0' }]);
    expect(woken.state.quiet).toBeUndefined();
    expect(woken.effects.filter((e) => e.type === 'injectBarrier')).toHaveLength(1);
    // An unknown task's report changes nothing.
    expect(run(s, [{ type: 'activity', now: 90_000, task: 'ghost:0' }]).state).toBe(s);
  });

  it('counts an acknowledgement without a work count (an older subtask) as work, and stays off without quietAfterMs', () => {
    expect(checkpointAt(coordinator(), 1000, undefined).quiet).toBeUndefined();
    let off = coordinator(null);
    for (let at = 1000; at <= 20_000; at += 1000) off = checkpointAt(off, at, 0);
    expect(off.quiet).toBeUndefined();
    expect(starts(off, 21_000)).toBe(true);
  });

  it('does not confirm on a checkpoint triggered before since + quietAfterMs, even if it completes later', () => {
    let s = checkpointAt(coordinator(), 1000, 0);
    const ticked = run(s, [{ type: 'tick', now: 3000 }]);
    const id = (ticked.effects.find((e) => e.type === 'injectBarrier') as Extract<CoordinatorEffect, { type: 'injectBarrier' }>).checkpointId;
    s = run(ticked.state, [
      ...TASKS.map((t): CoordinatorEvent => ({ type: 'ack', now: 9000, checkpointId: id, ack: subtaskAck(t, 9000, 0) })),
      { type: 'manifestWritten', now: 9500, checkpointId: id, path: '/chk' },
    ]).state;
    expect(s.quiet).toEqual({ since: 1100, confirmed: false });
  });
});
