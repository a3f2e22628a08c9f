import { describe, expect, it } from 'vitest';
import { END_OF_INPUT_REQUEST_ID, initialCoordinatorState, reduceCoordinator, type InitialCoordinatorInput } from '../../lib/core/coordinator/coordinator.js';
import type { CoordinatorEffect, CoordinatorEvent, CoordinatorState, CoordinatorStep, SubtaskAck, TriggerRequest } from '../../lib/core/coordinator/types.js';
import type { SubtaskSnapshot } from '../../lib/core/manifest/model.js';
import { resolveCheckpointOptions, type ResolvedCheckpointOptions } from '../../lib/core/options.js';

// ---------------------------------------------------------------------------------------------
// Fixtures: a builder with safe defaults (Flink's CheckpointCoordinatorBuilder) and event helpers.
// ---------------------------------------------------------------------------------------------

const TASKS = ['source:0', 'map:0', 'sink:0'] as const;
const SOURCES = ['source:0'] as const;
const INTERVAL = 1_000;
const TIMEOUT = 10_000;

type BuilderInput = Partial<Omit<InitialCoordinatorInput, 'options'>> & { readonly options?: Partial<ResolvedCheckpointOptions> };

/** A RUNNING coordinator started at 0 with three tasks, one source, a 1s interval, a 10s timeout, one checkpoint at a time, no tolerated failures. */
function coordinator(input: BuilderInput = {}): CoordinatorState {
  const { options, ...rest } = input;
  return initialCoordinatorState({
    tasks: TASKS,
    sourceTasks: SOURCES,
    now: 0,
    ...rest,
    options: { ...resolveCheckpointOptions({ interval: INTERVAL, timeout: TIMEOUT }), ...options },
  });
}

function snapshot(stateSize: number, fullSize: number): SubtaskSnapshot {
  return {
    subtask: 0,
    keyGroups: [0, 128],
    keyedState: [],
    operatorState: [],
    pendingCommits: [],
    stats: { ackTimestamp: 0, alignmentMs: 0, syncMs: 0, asyncMs: 0, startDelayMs: 0, stateSize, fullSize },
  };
}

function subtaskAck(task: string, now: number, sizes: Record<string, [stateSize: number, fullSize: number]> = { op: [1, 1] }): SubtaskAck {
  const operators = Object.fromEntries(Object.entries(sizes).map(([uid, [s, f]]) => [uid, snapshot(s, f)]));
  return { task, operators, ackTimestamp: now };
}

const tick = (now: number): CoordinatorEvent => ({ type: 'tick', now });
const trigger = (now: number, request: TriggerRequest): CoordinatorEvent => ({ type: 'trigger', now, request });
const ack = (now: number, checkpointId: number, task: string): CoordinatorEvent => ({ type: 'ack', now, checkpointId, ack: subtaskAck(task, now) });
const decline = (now: number, checkpointId: number, task = 'map:0'): CoordinatorEvent => ({ type: 'decline', now, checkpointId, task, reason: 'disk full' });
const sourceFinished = (now: number, task: string): CoordinatorEvent => ({ type: 'sourceFinished', now, task });
const manifestWritten = (now: number, checkpointId: number): CoordinatorEvent => ({ type: 'manifestWritten', now, checkpointId, path: `/chk/chk-${checkpointId}` });
const committed = (now: number, checkpointId: number): CoordinatorEvent => ({ type: 'committed', now, checkpointId });
const manifestFailed = (now: number, checkpointId: number): CoordinatorEvent => ({ type: 'manifestFailed', now, checkpointId, reason: 'throttled' });
const allAcks = (now: number, checkpointId: number, tasks: readonly string[] = TASKS): CoordinatorEvent[] => tasks.map((t) => ack(now, checkpointId, t));
/** Every task acks, then the manifest is written. */
const complete = (now: number, checkpointId: number): CoordinatorEvent[] => [...allAcks(now, checkpointId), manifestWritten(now, checkpointId)];

const savepoint = (requestId: string, termination?: TriggerRequest['termination']): TriggerRequest => ({
  requestId,
  kind: 'savepoint',
  dir: '/savepoints',
  ...(termination === undefined ? {} : { termination }),
});

/** Feeds events in order; returns the final state, every step, and every effect. */
function run(state: CoordinatorState, events: readonly CoordinatorEvent[]): { state: CoordinatorState; steps: CoordinatorStep[]; effects: CoordinatorEffect[] } {
  const steps: CoordinatorStep[] = [];
  let current = state;
  for (const event of events) {
    const s = reduceCoordinator(current, event);
    steps.push(s);
    current = s.state;
  }
  return { state: current, steps, effects: steps.flatMap((s) => s.effects) };
}

function ofType<T extends CoordinatorEffect['type']>(effects: readonly CoordinatorEffect[], type: T): Extract<CoordinatorEffect, { type: T }>[] {
  return effects.filter((e): e is Extract<CoordinatorEffect, { type: T }> => e.type === type);
}

const barrierIds = (effects: readonly CoordinatorEffect[]) => ofType(effects, 'injectBarrier').map((e) => e.checkpointId);

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------

describe('initialCoordinatorState', () => {
  it.each([
    { name: 'fresh job', input: {}, nextId: 1, restored: 0 },
    { name: 'restored after checkpoint 7', input: { latestCompletedId: 7, restored: true }, nextId: 8, restored: 1 },
    { name: 'restored with a later id already allocated', input: { latestCompletedId: 7, nextCheckpointId: 12, restored: true }, nextId: 12, restored: 1 },
    { name: 'a next id at or below the latest completed one is raised', input: { latestCompletedId: 7, nextCheckpointId: 3 }, nextId: 8, restored: 0 },
  ])('$name: next id $nextId', ({ input, nextId, restored }) => {
    const state = coordinator(input);
    expect(state.nextCheckpointId).toBe(nextId);
    expect(state.counts).toEqual({ completed: 0, failed: 0, restored });
    expect(state.status).toBe('RUNNING');
    expect(state.historySize).toBe(20);
  });

  it('first restored checkpoint gets the id after the restored one', () => {
    const { effects } = run(coordinator({ latestCompletedId: 41 }), [tick(INTERVAL)]);
    expect(barrierIds(effects)).toEqual([42]);
  });
});

describe('periodic trigger', () => {
  it.each([
    { name: 'not before one interval after start', options: {}, now: INTERVAL - 1, triggered: false },
    { name: 'one interval after start', options: {}, now: INTERVAL, triggered: true },
    { name: 'never when the interval is 0 (periodic checkpoints off)', options: { interval: 0 }, now: 100 * INTERVAL, triggered: false },
  ])('$name', ({ options, now, triggered }) => {
    const { effects } = run(coordinator({ options }), [tick(now)]);
    expect(barrierIds(effects)).toEqual(triggered ? [1] : []);
  });

  it('without a start time, the first tick starts the clock and the first checkpoint comes one interval later', () => {
    const state = initialCoordinatorState({ tasks: TASKS, sourceTasks: SOURCES, options: { ...resolveCheckpointOptions(), interval: INTERVAL } });
    const { steps } = run(state, [tick(5_000), tick(5_000 + INTERVAL - 1), tick(5_000 + INTERVAL)]);
    expect(steps.map((s) => barrierIds(s.effects))).toEqual([[], [], [1]]);
    expect(steps[0]?.state.startedAt).toBe(5_000);
  });

  it('the barrier carries the tick time and kind, and the checkpoint becomes pending', () => {
    const { state, effects } = run(coordinator(), [tick(1_234)]);
    expect(effects).toEqual([{ type: 'injectBarrier', checkpointId: 1, kind: 'checkpoint', timestamp: 1_234 }]);
    expect(state.pending).toEqual([{ id: 1, kind: 'checkpoint', triggeredAt: 1_234, acks: {}, finalizing: false }]);
    expect(state.lastTriggeredAt).toBe(1_234);
    expect(state.nextCheckpointId).toBe(2);
  });

  // Given checkpoint 1 triggered at 1000 and completed at `completedAt`, when ticking at `now`: is checkpoint 2 triggered?
  it.each([
    { name: 'interval not yet elapsed since the last trigger', minPause: 0, completedAt: 1_100, now: 1_999, triggered: false },
    { name: 'interval elapsed since the last trigger', minPause: 0, completedAt: 1_100, now: 2_000, triggered: true },
    { name: 'interval elapsed but min pause since completion not', minPause: 500, completedAt: 1_800, now: 2_000, triggered: false },
    { name: 'min pause just elapsed', minPause: 500, completedAt: 1_800, now: 2_300, triggered: true },
  ])('$name', ({ minPause, completedAt, now, triggered }) => {
    const given = run(coordinator({ options: { minPause } }), [tick(1_000), ...complete(completedAt, 1)]);
    expect(given.state.lastCompletedAt).toBe(completedAt);
    const { effects } = run(given.state, [tick(now)]);
    expect(barrierIds(effects)).toEqual(triggered ? [2] : []);
  });

  it.each([
    { maxConcurrent: 1, expected: [1] },
    { maxConcurrent: 2, expected: [1, 2] },
    { maxConcurrent: 3, expected: [1, 2, 3] },
  ])('never more than maxConcurrent=$maxConcurrent pending', ({ maxConcurrent, expected }) => {
    // Nothing acks, so every triggered checkpoint stays pending.
    const { state, effects } = run(coordinator({ options: { maxConcurrent } }), [tick(1_000), tick(2_000), tick(3_000), tick(4_000)]);
    expect(barrierIds(effects)).toEqual(expected);
    expect(state.pending).toHaveLength(maxConcurrent);
  });
});

describe('checkpoint ids', () => {
  it('are monotonic and never reused after aborts, completions or restarts of the schedule', () => {
    const { effects, state } = run(coordinator({ options: { tolerableFailures: 10 } }), [
      tick(1_000), // 1
      decline(1_100, 1),
      tick(2_000), // 2
      ...complete(2_100, 2),
      trigger(2_200, savepoint('sp-1')), // 3
      manifestFailed(2_300, 3), // not finalizing: ignored
      ...allAcks(2_300, 3),
      manifestFailed(2_400, 3),
      tick(3_200), // 4
      tick(3_200 + TIMEOUT), // 4 expires; 5 is triggered
    ]);
    const ids = barrierIds(effects);
    expect(ids).toEqual([1, 2, 3, 4, 5]);
    expect(state.nextCheckpointId).toBe(6);
  });
});

describe('acknowledgements', () => {
  it('emits writeManifest exactly once, when the last task acks, with every ack in it', () => {
    const { steps, state } = run(coordinator(), [tick(1_000), ...allAcks(1_100, 1), ack(1_200, 1, 'sink:0')]);
    const writes = steps.map((s) => ofType(s.effects, 'writeManifest').length);
    expect(writes).toEqual([0, 0, 0, 1, 0]);
    const write = ofType(steps[3]?.effects ?? [], 'writeManifest')[0];
    expect(Object.keys(write?.checkpoint.acks ?? {}).sort()).toEqual([...TASKS].sort());
    expect(write?.checkpoint.finalizing).toBe(true);
    expect(steps.map((s) => s.result)).toEqual([undefined, 'accepted', 'accepted', 'accepted', 'duplicate']);
    expect(state.pending[0]?.finalizing).toBe(true);
  });

  it('does not complete anything before the manifest is written', () => {
    const { state, effects } = run(coordinator(), [tick(1_000), ...allAcks(1_100, 1)]);
    expect(ofType(effects, 'checkpointCompleted')).toEqual([]);
    expect(state.counts.completed).toBe(0);
    expect(state.latestCompletedId).toBeUndefined();
  });

  // Given checkpoint 1 completed, 2 aborted by a decline, 3 pending with source:0's ack, and id 4 never triggered.
  const given = run(coordinator({ options: { maxConcurrent: 2, tolerableFailures: 5 } }), [
    tick(1_000),
    ...complete(1_100, 1),
    tick(2_100),
    decline(2_200, 2),
    tick(3_100),
    ack(3_200, 3, 'source:0'),
  ]).state;

  it.each([
    { name: 'a second ack from the same task', checkpointId: 3, task: 'source:0', result: 'duplicate' },
    { name: 'an id never triggered', checkpointId: 4, task: 'map:0', result: 'unknown' },
    { name: 'a far-future id', checkpointId: 99, task: 'map:0', result: 'unknown' },
    { name: 'a completed checkpoint', checkpointId: 1, task: 'map:0', result: 'discarded' },
    { name: 'an aborted checkpoint', checkpointId: 2, task: 'map:0', result: 'discarded' },
    { name: 'a task that is not part of the job', checkpointId: 3, task: 'ghost:7', result: 'unknown' },
    { name: 'a new task of a pending checkpoint', checkpointId: 3, task: 'map:0', result: 'accepted' },
  ])('$name → $result', ({ checkpointId, task, result }) => {
    expect(given.pending.map((p) => p.id)).toEqual([3]);
    const s = reduceCoordinator(given, ack(3_300, checkpointId, task));
    expect(s.result).toBe(result);
    expect(s.effects).toEqual([]);
    if (result === 'accepted') expect(s.state).not.toBe(given);
    else expect(s.state).toBe(given);
  });

  it.each([
    { name: 'a declined checkpoint', checkpointId: 2, result: 'discarded' },
    { name: 'an id never triggered', checkpointId: 4, result: 'unknown' },
  ])('a decline for $name → $result and changes nothing', ({ checkpointId, result }) => {
    const s = reduceCoordinator(given, decline(3_300, checkpointId));
    expect(s.result).toBe(result);
    expect(s.state).toBe(given);
  });
});

describe('failures', () => {
  it('a checkpoint times out exactly at the timeout, counting a failure', () => {
    const { steps, state } = run(coordinator({ options: { tolerableFailures: 1 } }), [tick(1_000), ack(1_500, 1, 'source:0'), tick(1_000 + TIMEOUT - 1), tick(1_000 + TIMEOUT)]);
    expect(ofType(steps[2]?.effects ?? [], 'checkpointAborted')).toEqual([]);
    const aborted = ofType(steps[3]?.effects ?? [], 'checkpointAborted');
    expect(aborted).toEqual([{ type: 'checkpointAborted', checkpointId: 1, reason: `checkpoint 1 expired after ${TIMEOUT}ms before all tasks acknowledged (1/3; waiting for ${TASKS.filter((t) => t !== 'source:0').join(', ')})` }]);
    expect(state.counts.failed).toBe(1);
    expect(state.consecutiveFailures).toBe(1);
    expect(state.history[0]).toMatchObject({ id: 1, status: 'FAILED', acknowledged: 1, total: 3, finishedAt: 1_000 + TIMEOUT });
    // The expired slot is free again: the same tick triggers the next checkpoint.
    expect(barrierIds(steps[3]?.effects ?? [])).toEqual([2]);
  });

  it('a checkpoint whose manifest write is in flight does not expire', () => {
    const { state, effects } = run(coordinator(), [tick(1_000), ...allAcks(1_100, 1), tick(1_000 + TIMEOUT * 2)]);
    expect(ofType(effects, 'checkpointAborted')).toEqual([]);
    expect(state.pending.map((p) => p.id)).toEqual([1]);
  });

  it('a decline aborts the checkpoint and names the task and reason', () => {
    const { state, effects, steps } = run(coordinator({ options: { tolerableFailures: 3 } }), [tick(1_000), decline(1_100, 1, 'map:0')]);
    expect(steps[1]?.result).toBe('accepted');
    expect(ofType(effects, 'checkpointAborted')).toEqual([{ type: 'checkpointAborted', checkpointId: 1, reason: 'checkpoint 1 declined by map:0: disk full' }]);
    expect(state.pending).toEqual([]);
    expect(state.consecutiveFailures).toBe(1);
  });

  const failures: { kind: string; fail: (now: number, id: number) => CoordinatorEvent[] }[] = [
    { kind: 'decline', fail: (now, id) => [decline(now, id)] },
    { kind: 'timeout', fail: (now, _id) => [tick(now + TIMEOUT)] },
    { kind: 'manifest failure', fail: (now, id) => [...allAcks(now, id), manifestFailed(now, id)] },
  ];

  describe.each(failures)('tolerable failures, failing by $kind', ({ fail }) => {
    /** Runs `rounds` user-triggered checkpoints (periodic ones are off) far apart in time, each failing or completing, and collects every effect. */
    function rounds(state: CoordinatorState, count: number, from: number, outcome: 'fail' | 'complete'): ReturnType<typeof run> {
      let current = state;
      const effects: CoordinatorEffect[] = [];
      for (let i = 0; i < count; i++) {
        const t = from + i * 10 * TIMEOUT;
        const id = current.nextCheckpointId;
        const events = [trigger(t, { requestId: `r-${t}`, kind: 'checkpoint' }), ...(outcome === 'fail' ? fail(t + 1, id) : complete(t + 1, id))];
        const r = run(current, events);
        current = r.state;
        effects.push(...r.effects);
      }
      return { state: current, steps: [], effects };
    }
    const unscheduled = (tolerableFailures: number) => coordinator({ options: { interval: 0, tolerableFailures } });

    it.each([{ tolerableFailures: 0 }, { tolerableFailures: 1 }, { tolerableFailures: 3 }])(
      'with tolerableFailures=$tolerableFailures the job fails on the next failure, not before',
      ({ tolerableFailures }) => {
        const tolerated = rounds(unscheduled(tolerableFailures), tolerableFailures, 1_000, 'fail');
        expect(tolerated.state.consecutiveFailures).toBe(tolerableFailures);
        expect(ofType(tolerated.effects, 'checkpointAborted')).toHaveLength(tolerableFailures);
        expect(ofType(tolerated.effects, 'failJob')).toEqual([]);
        expect(tolerated.state.status).toBe('RUNNING');

        const fatal = rounds(tolerated.state, 1, 1_000_000_000, 'fail');
        const failJobs = ofType(fatal.effects, 'failJob');
        expect(failJobs).toHaveLength(1);
        expect(failJobs[0]?.reason).toContain(`${tolerableFailures + 1} consecutive failed checkpoints, ${tolerableFailures} tolerated`);
        expect(fatal.state.status).toBe('FAILING');
        expect(fatal.state.counts.failed).toBe(tolerableFailures + 1);
      },
    );

    it('a completed checkpoint resets the consecutive count', () => {
      // Given two tolerated failures, then a success.
      const twoFailures = rounds(unscheduled(2), 2, 1_000, 'fail');
      expect(twoFailures.state.consecutiveFailures).toBe(2);
      const succeeded = rounds(twoFailures.state, 1, 1_000_000, 'complete');
      expect(succeeded.state.consecutiveFailures).toBe(0);
      // When two more fail, the job still runs.
      const again = rounds(succeeded.state, 2, 2_000_000, 'fail');
      expect(again.state.consecutiveFailures).toBe(2);
      expect(ofType(again.effects, 'failJob')).toEqual([]);
      expect(again.state.status).toBe('RUNNING');
      expect(again.state.counts).toMatchObject({ completed: 1, failed: 4 });
    });
  });

  it('failing the job aborts the other pending checkpoints and stops triggering', () => {
    // Given checkpoints 1 and 2 pending, no failure tolerated.
    const given = run(coordinator({ options: { maxConcurrent: 2 } }), [tick(1_000), tick(2_000)]).state;
    // When 2 is declined.
    const { state, effects } = run(given, [decline(2_100, 2), tick(10 * INTERVAL)]);
    // Then the job fails over, 1 is aborted without charging the budget, and no new checkpoint starts.
    expect(ofType(effects, 'failJob')).toHaveLength(1);
    expect(ofType(effects, 'checkpointAborted').map((e) => e.checkpointId)).toEqual([2, 1]);
    expect(state.pending).toEqual([]);
    expect(state.consecutiveFailures).toBe(1);
    expect(barrierIds(effects)).toEqual([]);
  });
});

describe('subsumption', () => {
  it('a completed checkpoint aborts older pending checkpoints without charging the failure budget, but keeps savepoints', () => {
    // Given checkpoint 1, savepoint 2 and checkpoint 3 pending, with no failure tolerated.
    const given = run(coordinator({ options: { maxConcurrent: 3, tolerableFailures: 0 } }), [tick(1_000), trigger(1_500, savepoint('sp')), tick(2_500)]).state;
    expect(given.pending.map((p) => [p.id, p.kind])).toEqual([
      [1, 'checkpoint'],
      [2, 'savepoint'],
      [3, 'checkpoint'],
    ]);
    // When checkpoint 3 completes.
    const { state, effects } = run(given, complete(2_600, 3));
    // Then 1 is subsumed, the savepoint stays, and the job keeps running.
    expect(ofType(effects, 'checkpointAborted')).toEqual([{ type: 'checkpointAborted', checkpointId: 1, reason: 'subsumed by checkpoint 3' }]);
    expect(ofType(effects, 'failJob')).toEqual([]);
    expect(state.consecutiveFailures).toBe(0);
    expect(state.status).toBe('RUNNING');
    expect(state.pending.map((p) => p.id)).toEqual([2]);
    expect(state.latestCompletedId).toBe(3);
  });

  it('a late ack for a subsumed checkpoint is discarded', () => {
    const { steps } = run(coordinator({ options: { maxConcurrent: 2 } }), [tick(1_000), tick(2_000), ...complete(2_100, 2), ack(2_200, 1, 'map:0')]);
    expect(steps.at(-1)?.result).toBe('discarded');
  });
});

describe('savepoints and user triggers', () => {
  it('a savepoint starts at once, ignoring interval and min pause', () => {
    // Given checkpoint 1 completed just now, with a long min pause.
    const given = run(coordinator({ options: { minPause: 60_000 } }), [tick(1_000), ...complete(1_100, 1), committed(1_150, 1)]).state;
    const { effects, state } = run(given, [trigger(1_200, savepoint('sp-1'))]);
    // Its barrier says checkpoint 1's transactions are committed: sinks forget them and carry the rest.
    expect(ofType(effects, 'injectBarrier')).toEqual([{ type: 'injectBarrier', checkpointId: 2, kind: 'savepoint', timestamp: 1_200, committedThrough: 1 }]);
    expect(state.pending[0]).toMatchObject({ id: 2, kind: 'savepoint', requestId: 'sp-1', dir: '/savepoints' });
  });

  it('a savepoint queues behind maxConcurrent and starts when the slot frees', () => {
    // Given checkpoint 1 pending with maxConcurrent 1.
    const given = run(coordinator(), [tick(1_000)]).state;
    // When a savepoint is requested.
    const queued = run(given, [trigger(1_100, savepoint('sp-1'))]);
    expect(queued.effects).toEqual([]);
    expect(queued.state.queued.map((r) => r.requestId)).toEqual(['sp-1']);
    // Then it starts in the same step that completes checkpoint 1, and before any periodic checkpoint.
    const { steps, state } = run(queued.state, [...complete(1_200, 1), tick(5_000)]);
    const completion = steps.at(-2)?.effects ?? [];
    expect(completion.map((e) => e.type)).toEqual(['checkpointCompleted', 'injectBarrier']);
    expect(ofType(completion, 'injectBarrier')[0]).toMatchObject({ checkpointId: 2, kind: 'savepoint' });
    expect(state.queued).toEqual([]);
    expect(barrierIds(steps.at(-1)?.effects ?? [])).toEqual([]);
  });

  it('queued requests start in arrival order', () => {
    const given = run(coordinator({ options: { interval: 0 } }), [trigger(0, savepoint('a')), trigger(1, savepoint('b')), trigger(2, { requestId: 'c', kind: 'checkpoint' })]).state;
    const { state } = run(given, [...complete(10, 1), ...complete(20, 2)]);
    expect(state.history.map((r) => r.id)).toEqual([2, 1]);
    expect(state.pending.map((p) => [p.id, p.requestId])).toEqual([[3, 'c']]);
  });

  it('the same request id twice starts one snapshot', () => {
    const { effects, state } = run(coordinator(), [trigger(10, savepoint('sp')), trigger(11, savepoint('sp'))]);
    expect(barrierIds(effects)).toEqual([1]);
    expect(state.queued).toEqual([]);
  });

  it('a completed savepoint counts as completed but does not move the latest completed checkpoint', () => {
    const given = run(coordinator(), [tick(1_000), ...complete(1_100, 1)]).state;
    const { effects, state } = run(given, [trigger(1_200, savepoint('sp')), ...complete(1_300, 2)]);
    // An intermediate savepoint commits no side effects, as in Flink: its sinks carry them into the next checkpoint.
    expect(ofType(effects, 'checkpointCompleted')).toEqual([{ type: 'checkpointCompleted', checkpointId: 2, path: '/chk/chk-2', kind: 'savepoint', commits: false, requestId: 'sp' }]);
    expect(state.counts.completed).toBe(2);
    expect(state.latestCompletedId).toBe(1);
    expect(state.status).toBe('RUNNING');
  });

  it('a failed savepoint is recorded but does not count against the tolerable failures', () => {
    const { effects, state } = run(coordinator({ options: { tolerableFailures: 0 } }), [trigger(10, savepoint('sp')), decline(20, 1)]);
    expect(ofType(effects, 'checkpointAborted')).toMatchObject([{ checkpointId: 1, requestId: 'sp' }]);
    expect(ofType(effects, 'failJob')).toEqual([]);
    expect(state.consecutiveFailures).toBe(0);
    expect(state.counts.failed).toBe(1);
    expect(state.history[0]).toMatchObject({ id: 1, kind: 'savepoint', status: 'FAILED' });
  });

  it.each(['stop', 'drain'] as const)('stop-with-savepoint (%s) finishes the job only after its manifest is written', (termination) => {
    const afterAcks = run(coordinator(), [trigger(10, savepoint('stop-1', termination)), ...allAcks(20, 1)]);
    expect(ofType(afterAcks.effects, 'injectBarrier')).toEqual([{ type: 'injectBarrier', checkpointId: 1, kind: 'savepoint', timestamp: 10, termination }]);
    expect(ofType(afterAcks.effects, 'jobFinished')).toEqual([]);
    expect(afterAcks.state.status).toBe('RUNNING');

    const { effects, state } = run(afterAcks.state, [manifestWritten(30, 1)]);
    expect(effects).toEqual([
      { type: 'checkpointCompleted', checkpointId: 1, path: '/chk/chk-1', kind: 'savepoint', commits: true, requestId: 'stop-1', termination },
      { type: 'jobFinished', checkpointId: 1, termination },
    ]);
    expect(state.status).toBe('FINISHED');
  });

  it('no periodic checkpoint starts while a stop-with-savepoint is pending', () => {
    const { effects } = run(coordinator({ options: { maxConcurrent: 5 } }), [trigger(10, savepoint('stop', 'stop')), tick(INTERVAL), tick(2 * INTERVAL)]);
    expect(barrierIds(effects)).toEqual([1]);
  });

  it('a second terminating request waits while the first is pending', () => {
    const { effects, state } = run(coordinator({ options: { maxConcurrent: 5 } }), [trigger(10, savepoint('stop', 'stop')), trigger(20, savepoint('drain', 'drain'))]);
    expect(barrierIds(effects)).toEqual([1]);
    expect(state.queued.map((r) => r.requestId)).toEqual(['drain']);
  });

  it.each([
    { name: 'declined', fail: [decline(20, 1)] },
    { name: 'manifest not written', fail: [...allAcks(20, 1), manifestFailed(30, 1)] },
  ])('a failed stop-with-savepoint ($name) fails the job over even with failures tolerated', ({ fail }) => {
    const { effects, state } = run(coordinator({ options: { tolerableFailures: 10 } }), [trigger(10, savepoint('stop', 'stop')), ...fail]);
    const failJobs = ofType(effects, 'failJob');
    expect(failJobs).toHaveLength(1);
    expect(failJobs[0]?.reason).toMatch(/^stop-with-savepoint 1 \(stop\) failed/);
    expect(state.status).toBe('FAILING');
    expect(ofType(effects, 'jobFinished')).toEqual([]);
  });
});

describe('end of input', () => {
  const sources = ['source:0', 'source:1'];
  const tasks = [...sources, 'sink:0'];
  const bounded = (options: Partial<ResolvedCheckpointOptions> = {}) => coordinator({ tasks, sourceTasks: sources, options });

  it('when every source finished, a final checkpoint with termination end runs and then the job finishes', () => {
    const { steps, state } = run(bounded({ interval: 0 }), [
      sourceFinished(100, 'source:0'),
      sourceFinished(110, 'source:0'), // idempotent
      sourceFinished(120, 'not-a-source:0'), // ignored
      sourceFinished(200, 'source:1'),
      ...allAcks(300, 1, tasks),
      manifestWritten(400, 1),
    ]);
    expect(steps.slice(0, 3).flatMap((s) => s.effects)).toEqual([]);
    expect(steps[3]?.effects).toEqual([{ type: 'injectBarrier', checkpointId: 1, kind: 'checkpoint', timestamp: 200, termination: 'end' }]);
    expect(steps.at(-1)?.effects).toEqual([
      { type: 'checkpointCompleted', checkpointId: 1, path: '/chk/chk-1', kind: 'checkpoint', commits: true, requestId: END_OF_INPUT_REQUEST_ID, termination: 'end' },
      { type: 'jobFinished', checkpointId: 1, termination: 'end' },
    ]);
    expect(state.status).toBe('FINISHED');
    expect(state.latestCompletedId).toBe(1);
    expect(state.finishedSources).toEqual(sources);
  });

  it('the final checkpoint waits for a free slot, and no periodic checkpoint starts meanwhile', () => {
    // Given periodic checkpoint 1 pending with maxConcurrent 1.
    const given = run(bounded(), [tick(INTERVAL)]).state;
    // When both sources finish and time passes.
    const waiting = run(given, [sourceFinished(1_100, 'source:0'), sourceFinished(1_200, 'source:1'), tick(3 * INTERVAL)]);
    expect(barrierIds(waiting.effects)).toEqual([]);
    expect(waiting.state.queued.map((r) => r.termination)).toEqual(['end']);
    // Then completing checkpoint 1 starts the final one.
    const { effects } = run(waiting.state, [...allAcks(3_100, 1, tasks), manifestWritten(3_200, 1)]);
    // Checkpoint 1's commit has not been reported yet: the final barrier lets the sinks drop nothing (they carry it).
    expect(ofType(effects, 'injectBarrier')).toEqual([{ type: 'injectBarrier', checkpointId: 2, kind: 'checkpoint', timestamp: 3_200, termination: 'end' }]);
  });

  it('barriers let the sinks drop only transactions whose commit was reported, never beyond the latest completed checkpoint', () => {
    // Given checkpoints 1 and 2 completed, and only 1's commit reported
    const given = run(coordinator(), [tick(1_000), ...complete(1_100, 1), committed(1_150, 1), tick(2_000), ...complete(2_100, 2)]).state;
    expect(given.latestCompletedId).toBe(2);
    expect(given.latestCommittedId).toBe(1);
    // A report of a checkpoint that did not complete, or an older one, changes nothing
    expect(run(given, [committed(2_200, 3)]).state).toBe(given);
    expect(run(given, [committed(2_200, 1)]).state).toBe(given);
    // The next barrier carries 1 until 2's commit is reported, then 2
    expect(ofType(run(given, [tick(3_000)]).effects, 'injectBarrier')[0]?.committedThrough).toBe(1);
    expect(ofType(run(given, [committed(2_200, 2), tick(3_000)]).effects, 'injectBarrier')[0]?.committedThrough).toBe(2);
  });

  it('a restored run counts the snapshot\'s transactions as committed (the restore commits them first)', () => {
    const restored = coordinator({ latestCompletedId: 7 });
    expect(restored.latestCommittedId).toBe(7);
    expect(ofType(run(restored, [tick(1_000)]).effects, 'injectBarrier')[0]?.committedThrough).toBe(7);
  });

  it('sources finishing while a stop-with-savepoint is pending add no final checkpoint: the stop ends the job', () => {
    const { steps, state, effects } = run(bounded({ maxConcurrent: 5 }), [
      trigger(10, savepoint('stop', 'stop')),
      sourceFinished(20, 'source:0'),
      sourceFinished(30, 'source:1'),
      tick(5 * INTERVAL),
      ...allAcks(40, 1, tasks),
      manifestWritten(50, 1),
    ]);
    expect(barrierIds(effects)).toEqual([1]);
    expect(steps[3]?.state.queued).toEqual([]);
    expect(ofType(effects, 'jobFinished')).toEqual([{ type: 'jobFinished', checkpointId: 1, termination: 'stop' }]);
    expect(state.status).toBe('FINISHED');
  });

  it('after a failed stop-with-savepoint the job fails over and a tick starts no final checkpoint', () => {
    const { state, effects } = run(bounded({ tolerableFailures: 5 }), [
      trigger(10, savepoint('stop', 'stop')),
      sourceFinished(20, 'source:0'),
      sourceFinished(30, 'source:1'),
      decline(40, 1, 'sink:0'),
      tick(5 * INTERVAL),
    ]);
    expect(state.status).toBe('FAILING');
    expect(ofType(effects, 'failJob')).toHaveLength(1);
    expect(barrierIds(effects)).toEqual([1]);
  });

  it('a tick requests the final checkpoint when every source already finished, e.g. in a state reloaded from storage', () => {
    // Given a reloaded state whose sources all finished, with nothing pending or queued.
    const reloaded: CoordinatorState = { ...bounded({ interval: 0 }), finishedSources: sources };
    const { effects, state } = run(reloaded, [tick(10), tick(20)]);
    expect(ofType(effects, 'injectBarrier')).toEqual([{ type: 'injectBarrier', checkpointId: 1, kind: 'checkpoint', timestamp: 10, termination: 'end' }]);
    expect(state.pending.map((p) => p.requestId)).toEqual([END_OF_INPUT_REQUEST_ID]);
  });

  it('a failed final checkpoint fails the job, since it cannot finish otherwise', () => {
    const { effects, state } = run(bounded({ interval: 0, tolerableFailures: 10 }), [sourceFinished(1, 'source:0'), sourceFinished(2, 'source:1'), tick(2 + TIMEOUT)]);
    const failJobs = ofType(effects, 'failJob');
    expect(failJobs).toHaveLength(1);
    expect(failJobs[0]?.reason).toMatch(/^final checkpoint 1 of bounded input failed/);
    expect(state.status).toBe('FAILING');
  });
});

describe('a finished job', () => {
  // Given a job finished by a stop-with-savepoint, with nothing pending.
  const finished = run(coordinator(), [trigger(10, savepoint('stop', 'stop')), ...complete(20, 1)]).state;

  it.each<CoordinatorEvent>([
    tick(100 * INTERVAL),
    trigger(30, savepoint('late')),
    ack(30, 1, 'map:0'),
    ack(30, 2, 'map:0'),
    decline(30, 1),
    sourceFinished(30, 'source:0'),
    manifestWritten(30, 1),
    manifestFailed(30, 1),
  ])('ignores $type', (event) => {
    expect(finished.status).toBe('FINISHED');
    const s = reduceCoordinator(finished, event);
    expect(s.state).toBe(finished);
    expect(s.effects).toEqual([]);
  });
});

describe('history', () => {
  it('keeps at most historySize records, newest first, with sizes summed over every ack and operator', () => {
    // Given a history of 3 and five checkpoints, each with per-task, per-operator sizes.
    const events: CoordinatorEvent[] = [];
    for (let id = 1; id <= 5; id++) {
      const t = id * INTERVAL;
      events.push(tick(t));
      TASKS.forEach((task, i) =>
        events.push({ type: 'ack', now: t + 1, checkpointId: id, ack: subtaskAck(task, t + 1, { a: [id * 10 + i, id * 100 + i], b: [1, 2] }) }),
      );
      events.push(manifestWritten(t + 2, id));
    }
    const { state } = run(coordinator({ historySize: 3 }), events);

    expect(state.history.map((r) => r.id)).toEqual([5, 4, 3]);
    expect(state.counts.completed).toBe(5);
    const newest = state.history[0];
    // Oracle: per task i, operator a writes 50+i and references 500+i; operator b writes 1, references 2.
    const stateSize = TASKS.reduce((sum, _t, i) => sum + 50 + i + 1, 0);
    const fullSize = TASKS.reduce((sum, _t, i) => sum + 500 + i + 2, 0);
    expect(newest).toMatchObject({ id: 5, kind: 'checkpoint', status: 'COMPLETED', triggeredAt: 5_000, finishedAt: 5_002, acknowledged: 3, total: 3, externalPath: '/chk/chk-5', stateSize, fullSize });
    expect(Object.keys(newest?.acks ?? {}).sort()).toEqual([...TASKS].sort());
  });

  it('mixes completed and failed records in the order they finished', () => {
    const { state } = run(coordinator({ options: { tolerableFailures: 5 } }), [tick(1_000), decline(1_100, 1), tick(2_000), ...complete(2_100, 2)]);
    expect(state.history.map((r) => [r.id, r.status])).toEqual([
      [2, 'COMPLETED'],
      [1, 'FAILED'],
    ]);
    expect(state.history[1]?.failureReason).toBe('checkpoint 1 declined by map:0: disk full');
  });
});

describe('purity', () => {
  it('never mutates the state it is given', () => {
    const start = deepFreeze(coordinator({ options: { maxConcurrent: 2, tolerableFailures: 1 } }));
    const snapshotBefore = JSON.stringify(start);
    const events = [tick(1_000), tick(2_000), ...complete(2_100, 2), trigger(2_200, savepoint('sp')), decline(2_300, 3), tick(20_000)];
    let state = start;
    for (const event of events) state = deepFreeze(reduceCoordinator(state, event).state);
    expect(JSON.stringify(start)).toBe(snapshotBefore);
    expect(state.history.length).toBeGreaterThan(0);
  });
});

describe('cancel', () => {
  it('aborts what is pending without charging the budget, drops queued requests, and ends the job CANCELED', () => {
    const before = run(coordinator({ options: { maxConcurrent: 1, tolerableFailures: 0 } }), [tick(INTERVAL), ack(INTERVAL + 1, 1, 'source:0'), trigger(INTERVAL + 2, savepoint('sp'))]);
    expect(before.state.pending.map((p) => p.id)).toEqual([1]);
    expect(before.state.queued.map((r) => r.requestId)).toEqual(['sp']);

    const { effects, state } = reduceCoordinator(before.state, { type: 'cancel', now: INTERVAL + 3 });
    expect(effects).toEqual([{ type: 'checkpointAborted', checkpointId: 1, reason: 'the job was cancelled' }, { type: 'jobCanceled' }]);
    expect(state.status).toBe('CANCELED');
    expect(state.pending).toEqual([]);
    expect(state.queued).toEqual([]);
    expect(state.consecutiveFailures).toBe(0);
    expect(state.history.map((h) => [h.id, h.status, h.failureReason])).toEqual([[1, 'FAILED', 'the job was cancelled']]);
  });

  it.each<[string, CoordinatorEvent]>([
    ['a tick after an interval', tick(10 * INTERVAL)],
    ['a trigger', trigger(10, savepoint('late'))],
    ['an ack', ack(10, 1, 'source:0')],
    ['a source finishing', sourceFinished(10, 'source:0')],
    ['another cancel', { type: 'cancel', now: 10 }],
  ])('a cancelled job ignores %s', (_, event) => {
    const canceled = reduceCoordinator(coordinator(), { type: 'cancel', now: 1 }).state;
    const step = reduceCoordinator(canceled, event);
    expect(step.state).toBe(canceled);
    expect(step.effects).toEqual([]);
  });

  it('a FAILING job may be cancelled; a FINISHED one is not', () => {
    const failing = run(coordinator(), [trigger(10, savepoint('stop', 'stop')), decline(20, 1)]).state;
    expect(failing.status).toBe('FAILING');
    expect(reduceCoordinator(failing, { type: 'cancel', now: 30 }).state.status).toBe('CANCELED');

    const finished = run(coordinator(), [trigger(10, savepoint('stop', 'stop')), ...complete(20, 1)]).state;
    expect(finished.status).toBe('FINISHED');
    expect(reduceCoordinator(finished, { type: 'cancel', now: 30 }).state).toBe(finished);
  });
});
