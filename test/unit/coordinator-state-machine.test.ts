import type { SFNClient } from '@aws-sdk/client-sfn';
import { describe, expect, it } from 'vitest';
import { barrierEnvelopes } from '../../lib/coordination/barriers.js';
import { transitionRow, type CoordinatorRow } from '../../lib/core/coordinator/job-row.js';
import { CoordinatorStateName, coordinatorStateMachineDefinition, type AslChoiceRule, type AslDefinition, type AslState, type CoordinatorStateMachineOptions } from '../../lib/adapters/aws/coordinator-state-machine.js';
import { CoordinatorAttr } from '../../lib/adapters/aws/dynamodb-coordinator-schema.js';
import { createCoordinatorTaskRecordHandler } from '../../lib/hosts/lambda/coordinator-task-handler.js';
import type { CoordinatorHost } from '../../lib/coordination/host.js';
import type { SqsRecord } from '../../lib/adapters/aws/sqs-poller.js';
import { Job } from '../../lib/api/job.js';
import { collectSink } from '../../lib/connectors/collect-sink.js';
import { generator } from '../../lib/connectors/generator.js';
import type { CoordinatorEvent } from '../../lib/core/coordinator/types.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import type { SubtaskSnapshot } from '../../lib/core/manifest/model.js';
import { resolveCheckpointOptions } from '../../lib/core/options.js';
import { buildPlan, type PhysicalPlan } from '../../lib/graph/plan.js';
import { COORDINATOR_CHANNEL, EnvelopeKind } from '../../lib/core/envelope.js';
import { newCoordinatorRow } from '../../lib/coordination/generation.js';
import { CoordinatorError, checkpointExecutionInput, checkpointExecutionName, parseCoordinatorTaskMessage } from '../../lib/coordination/checkpoint-tasks.js';

const OPTIONS: CoordinatorStateMachineOptions = {
  job: 'word-count',
  tableName: 'floe-coordinator',
  tasksQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/floe-coordinator-tasks',
};

const definition = (overrides: Partial<CoordinatorStateMachineOptions> = {}): AslDefinition => coordinatorStateMachineDefinition({ ...OPTIONS, ...overrides });

/** Every rule of a Choice, nested `And` rules included. */
function rulesOf(rules: readonly AslChoiceRule[] = []): AslChoiceRule[] {
  return rules.flatMap((r) => [r, ...rulesOf(r.And)]);
}

/** The states a state can go to next. */
function successors(state: AslState): string[] {
  return [
    ...(state.Next ? [state.Next] : []),
    ...(state.Default ? [state.Default] : []),
    ...(state.Choices ?? []).flatMap((c) => (c.Next ? [c.Next] : [])),
    ...(state.Catch ?? []).map((c) => c.Next),
  ];
}

function reachable(asl: AslDefinition): Set<string> {
  const seen = new Set<string>();
  const queue = [asl.StartAt];
  while (queue.length > 0) {
    const name = queue.pop()!;
    if (seen.has(name)) continue;
    seen.add(name);
    queue.push(...successors(asl.States[name]!));
  }
  return seen;
}

/** Resolves the `.$` fields of a Parameters template against plain values (enough for the message bodies). */
function resolve(template: Readonly<Record<string, unknown>>, values: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(template)) {
    if (key.endsWith('.$')) out[key.slice(0, -2)] = values[value as string];
    else out[key] = value;
  }
  return out;
}

describe('coordinatorStateMachineDefinition', () => {
  const asl = definition();
  const S = CoordinatorStateName;

  it('starts with Trigger and names only states it defines, each reachable', () => {
    expect(asl.StartAt).toBe(S.Trigger);
    const names = new Set(Object.keys(asl.States));
    for (const [name, state] of Object.entries(asl.States)) {
      for (const next of successors(state)) expect(names.has(next), `${name} → ${next}`).toBe(true);
    }
    expect([...reachable(asl)].sort()).toEqual([...names].sort());
  });

  it('ends only in Succeed and Fail states, and every other state says where to go', () => {
    const terminal = Object.entries(asl.States).filter(([, s]) => successors(s).length === 0);
    expect(Object.fromEntries(terminal.map(([n, s]) => [n, s.Type]))).toEqual({
      [S.Completed]: 'Succeed',
      [S.Aborted]: 'Fail',
      [S.NotTriggered]: 'Fail',
      [S.TaskFailed]: 'Fail',
    });
    for (const state of Object.values(asl.States)) {
      expect(state.End).toBeUndefined();
      if (state.Type === 'Choice') expect(state.Default).toBeDefined();
      else if (state.Type !== 'Succeed' && state.Type !== 'Fail') expect(state.Next).toBeDefined();
    }
    expect(asl.States[S.Aborted]!.Error).toBe(CoordinatorError.CheckpointAborted);
    expect(asl.States[S.NotTriggered]!.Error).toBe(CoordinatorError.TriggerRefused);
    expect(asl.States[S.TaskFailed]!.Error).toBe(CoordinatorError.TaskFailed);
  });

  it('uses JSONPath only: no JSONata expressions, no Lambda', () => {
    expect(asl.QueryLanguage).toBe('JSONPath');
    const json = JSON.stringify(asl);
    expect(json).not.toContain('{%');
    expect(json).not.toContain('"Arguments"');
    expect(json).not.toContain('lambda');
    expect(JSON.parse(json)).toEqual(asl);
  });

  it.each([S.Trigger, S.Abort, S.Complete])('runs %s as a waitForTaskToken message to the tasks queue, with a timeout, retries and a catch-all', (name) => {
    const state = asl.States[name]!;
    expect(state.Type).toBe('Task');
    expect(state.Resource).toBe('arn:aws:states:::sqs:sendMessage.waitForTaskToken');
    expect(state.Parameters!.QueueUrl).toBe(OPTIONS.tasksQueueUrl);
    const body = state.Parameters!.MessageBody as Record<string, unknown>;
    expect(body).toMatchObject({ v: 1, job: OPTIONS.job, type: name.toLowerCase(), 'taskToken.$': '$$.Task.Token' });
    expect(state.TimeoutSeconds).toBe(300);
    expect(state.Retry).toEqual([{ ErrorEquals: [CoordinatorError.Retryable, 'States.Timeout'], IntervalSeconds: 1, MaxAttempts: 5, BackoffRate: 2 }]);
    expect(state.Catch!.at(-1)).toEqual({ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: S.TaskFailed });
  });

  it('sends task messages the task consumer parses', () => {
    const token = 'token-1';
    const trigger = resolve(asl.States[S.Trigger]!.Parameters!.MessageBody as Record<string, unknown>, { $: { checkpointId: 3 }, '$$.Task.Token': token });
    expect(parseCoordinatorTaskMessage(JSON.stringify(trigger))).toEqual({ v: 1, type: 'trigger', job: OPTIONS.job, input: { checkpointId: 3 }, pollIntervalSeconds: 1, taskToken: token });
    for (const name of [S.Abort, S.Complete]) {
      const body = resolve(asl.States[name]!.Parameters!.MessageBody as Record<string, unknown>, { '$.checkpoint.checkpointId': 3, '$$.Task.Token': token });
      expect(parseCoordinatorTaskMessage(JSON.stringify(body))).toMatchObject({ type: name.toLowerCase(), checkpointId: 3, taskToken: token });
    }
  });

  it('lets a refused trigger end in NotTriggered and keeps every task result apart', () => {
    expect(asl.States[S.Trigger]!.Catch![0]).toEqual({ ErrorEquals: [CoordinatorError.TriggerRefused], ResultPath: '$.error', Next: S.NotTriggered });
    expect(asl.States[S.Trigger]!.ResultPath).toBe('$.checkpoint');
    expect(asl.States[S.Abort]!.ResultPath).toBe('$.abort');
    expect(asl.States[S.Complete]!.ResultPath).toBe('$.completion');
    expect(asl.States[S.Check]!.ResultPath).toBe('$.status');
  });

  it('checks the status item with a consistent direct getItem, not a Lambda', () => {
    const check = asl.States[S.Check]!;
    expect(check.Resource).toBe('arn:aws:states:::dynamodb:getItem');
    expect(check.Parameters).toEqual({
      TableName: OPTIONS.tableName,
      Key: { [CoordinatorAttr.pk]: { 'S.$': '$.checkpoint.statusKey' } },
      ConsistentRead: true,
      ProjectionExpression: '#status',
      ExpressionAttributeNames: { '#status': CoordinatorAttr.checkpointStatus },
    });
    expect(check.TimeoutSeconds).toBeGreaterThan(0);
    expect(check.Retry?.[0]?.ErrorEquals).toEqual(['States.ALL']);
  });

  it('waits the poll interval Trigger chose, then decides: completed, aborted, out of polls, or count down and wait again', () => {
    expect(asl.States[S.Wait]).toEqual({ Type: 'Wait', SecondsPath: '$.checkpoint.pollSeconds', Next: S.Check });
    const decide = asl.States[S.Decide]!;
    const status = `$.status.Item.${CoordinatorAttr.checkpointStatus}.S`;
    expect(decide.Choices).toEqual([
      { And: [{ Variable: status, IsPresent: true }, { Variable: status, StringEquals: 'COMPLETED' }], Next: S.Complete },
      { And: [{ Variable: status, IsPresent: true }, { Variable: status, StringEquals: 'FAILED' }], Next: S.Aborted },
      { Variable: '$.checkpoint.remaining[0]', IsPresent: false, Next: S.Abort },
    ]);
    expect(decide.Default).toBe(S.Countdown);
    // Every comparison of a status is guarded by IsPresent: an item not written yet is "still pending", not an error.
    for (const rule of rulesOf(decide.Choices)) if (rule.StringEquals !== undefined) expect(rule.Variable).toBe(status);
    expect(asl.States[S.Countdown]).toMatchObject({ Type: 'Pass', InputPath: '$.checkpoint.remaining[1:]', ResultPath: '$.checkpoint.remaining', Next: S.Wait });
  });

  it('after Abort completes, fails, or goes back to waiting, never straight back to Abort', () => {
    expect(asl.States[S.AfterAbort]).toEqual({
      Type: 'Choice',
      Choices: [
        { Variable: '$.abort.status', StringEquals: 'COMPLETED', Next: S.Complete },
        { Variable: '$.abort.status', StringEquals: 'FAILED', Next: S.Aborted },
      ],
      Default: S.Wait,
    });
    expect(asl.States[S.Complete]!.Next).toBe(S.Completed);
  });

  it('bounds the execution and takes its options', () => {
    const custom = definition({ pollIntervalSeconds: 5, taskTimeoutSeconds: 60, taskRetries: 0, executionTimeoutSeconds: 3600 });
    expect(custom.TimeoutSeconds).toBe(3600);
    expect(definition().TimeoutSeconds).toBe(86_400);
    expect((custom.States[S.Trigger]!.Parameters!.MessageBody as Record<string, unknown>).pollIntervalSeconds).toBe(5);
    expect(custom.States[S.Abort]!.TimeoutSeconds).toBe(60);
    expect(custom.States[S.Abort]!.Retry).toEqual([]);
  });

  it('reports every invalid option at once', () => {
    const err = (() => {
      try {
        definition({ pollIntervalSeconds: 0, taskTimeoutSeconds: 1.5, taskRetries: -1, tableName: '' });
      } catch (e) {
        return e as FloeError;
      }
      throw new Error('expected a FloeError');
    })();
    expect(err.code).toBe(ErrorCode.InvalidOptions);
    for (const field of ['pollIntervalSeconds', 'taskTimeoutSeconds', 'taskRetries', 'tableName']) expect(err.message).toContain(field);
  });
});

describe('checkpoint executions', () => {
  it.each([
    ['word-count', 7, 'word-count-chk-7'],
    ['Clicks_2', 12, 'Clicks_2-chk-12'],
  ])('names the execution of %s checkpoint %i %s', (job, id, name) => {
    expect(checkpointExecutionName(job, id)).toBe(name);
  });

  it('makes other job names safe, short and still distinct', () => {
    const dotted = checkpointExecutionName('a.b', 1);
    expect(dotted).toMatch(/^a_b_[0-9a-f]{8}-chk-1$/);
    expect(dotted).not.toBe(checkpointExecutionName('a_b', 1));
    const long = checkpointExecutionName('x'.repeat(200), 123456);
    expect(long.length).toBeLessThanOrEqual(80);
    expect(long).toMatch(/^[A-Za-z0-9_-]+-chk-123456$/);
    expect(long).not.toBe(checkpointExecutionName(`${'x'.repeat(199)}y`, 123456));
  });

  it('builds the same input whoever starts the execution, whatever the key order of the request', () => {
    expect(checkpointExecutionInput(4)).toBe('{"checkpointId":4}');
    expect(checkpointExecutionInput(4, { termination: 'stop', kind: 'savepoint', dir: 's3://b/sp' })).toBe(
      checkpointExecutionInput(4, { kind: 'savepoint', dir: 's3://b/sp', termination: 'stop' }),
    );
  });
});

/** A task token whose every window of a few characters is recognisable in a log line. */
const SECRET_TOKEN = 'S3CR3T'.repeat(40);

describe('parseCoordinatorTaskMessage', () => {
  it('accepts a scheduled tick without a token', () => {
    expect(parseCoordinatorTaskMessage('{"v":1,"type":"tick","job":"j"}')).toEqual({ v: 1, type: 'tick', job: 'j' });
  });

  it.each([
    ['not JSON', '{', 'not JSON'],
    ['an unknown type', '{"v":1,"type":"explode","job":"j"}', 'type'],
    ['a task without its token', '{"v":1,"type":"abort","job":"j","checkpointId":1}', 'taskToken'],
    ['another version', '{"v":2,"type":"tick","job":"j"}', 'v'],
    ['a checkpoint id of 0', '{"v":1,"type":"trigger","job":"j","input":{"checkpointId":0},"pollIntervalSeconds":1,"taskToken":"t"}', 'input.checkpointId'],
  ])('refuses %s as a terminal MALFORMED_MESSAGE', (_what, body, mention) => {
    const error = (() => {
      try {
        parseCoordinatorTaskMessage(body, 'message m-1');
      } catch (e) {
        return e as FloeError;
      }
      throw new Error('expected a FloeError');
    })();
    expect(error.code).toBe(ErrorCode.MalformedMessage);
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('message m-1');
    expect(error.message).toContain(mention);
  });

  it.each([
    ['a token where JSON expects a value', `{"v":1,"type":"abort","job":"j","checkpointId":1,"taskToken":${SECRET_TOKEN}}`],
    ['a body that is only the token', SECRET_TOKEN],
    ['a token in a truncated body', `{"v":1,"type":"abort","job":"j","checkpointId":1,"taskToken":"${SECRET_TOKEN}`],
    ['a token of the wrong type', `{"v":1,"type":"abort","job":"j","checkpointId":1,"taskToken":{"${SECRET_TOKEN}":1}}`],
  ])('keeps the task token out of the error (and so out of the logs) for %s', async (_what, body) => {
    const lines: Record<string, unknown>[] = [];
    const handle = createCoordinatorTaskRecordHandler({
      tasks: { job: 'j' } as CoordinatorHost,
      sfn: { send: () => Promise.reject(new Error('no answer expected')) } as unknown as SFNClient,
      log: (line) => lines.push(line),
    });
    await expect(handle({ messageId: 'm-1', body } as SqsRecord)).rejects.toThrow(/m-1/);
    expect(lines.some((l) => l.level === 'error' && String(l.message).includes('m-1'))).toBe(true);
    // Any piece of the token, not only the whole: V8 quotes a window of the body around a syntax error.
    for (const line of lines) expect(JSON.stringify(line)).not.toMatch(/CR3/);
  });
});

// ---------------------------------------------------------------------------------------------
// The job row's pure transition: placements, barrier seqs, status changes.
// ---------------------------------------------------------------------------------------------

function smallPlan(parallelism = 2): PhysicalPlan {
  const job = new Job('unit-coordinator', { parallelism });
  job
    .source(generator({ generate: (i) => ({ key: `k${i % 3}` }) }), { uid: 'events' })
    .keyBy((e) => e.key)
    .process({ processElement: (e, _ctx, out) => out.collect(e.key) }, { uid: 'count' })
    .sinkTo(collectSink<string>('unit-coordinator-out'), { uid: 'out' });
  return buildPlan(job);
}

function emptySnapshot(subtask: number): SubtaskSnapshot {
  return { subtask, keyGroups: [0, 128], keyedState: [], operatorState: [], pendingCommits: [], stats: { ackTimestamp: 0, alignmentMs: 0, syncMs: 0, asyncMs: 0, startDelayMs: 0, stateSize: 0, fullSize: 0 } };
}

function row(plan = smallPlan()): CoordinatorRow {
  return newCoordinatorRow({ plan, options: resolveCheckpointOptions({ dir: 's3://bucket/ckpt', timeout: '10s' }), jobId: 'abcdef0123456789', savepointDir: 's3://bucket/savepoints', now: 0 });
}

const trigger = (now: number, kind: 'checkpoint' | 'savepoint' = 'checkpoint'): CoordinatorEvent => ({ type: 'trigger', now, request: { requestId: `r-${now}`, kind } });

function ackAll(r: CoordinatorRow, plan: PhysicalPlan, id: number, now: number): CoordinatorRow {
  for (const v of plan.vertices) {
    for (let i = 0; i < v.parallelism; i++) {
      const operators = Object.fromEntries(v.operators.map((op) => [op.uid, emptySnapshot(i)]));
      r = transitionRow(r, { type: 'ack', now, checkpointId: id, ack: { task: `${v.id}:${i}`, operators, ackTimestamp: now } }).row;
    }
  }
  return r;
}

describe('transitionRow', () => {
  it('places each started checkpoint and numbers its barrier on the coordinator channels', () => {
    const plan = smallPlan();
    const first = transitionRow(row(plan), trigger(10));
    expect(first.changed).toBe(true);
    expect(first.row.runtime.placements).toEqual({ '1': { seq: 1, dir: 's3://bucket/ckpt/unit-coordinator/checkpoints/chk-1', sharedDir: 's3://bucket/ckpt/unit-coordinator/checkpoints/shared' } });
    expect(first.statusChanges).toEqual([{ checkpointId: 1, kind: 'checkpoint', status: 'IN_PROGRESS', at: 10 }]);

    const completed = transitionRow(ackAll(first.row, plan, 1, 20), { type: 'manifestWritten', now: 30, checkpointId: 1, path: first.row.runtime.placements['1']!.dir });
    expect(completed.row.runtime.placements).toEqual({});
    expect(completed.statusChanges).toEqual([{ checkpointId: 1, kind: 'checkpoint', status: 'COMPLETED', at: 30, path: 's3://bucket/ckpt/unit-coordinator/checkpoints/chk-1' }]);

    const savepoint = transitionRow(completed.row, trigger(40, 'savepoint'));
    expect(savepoint.row.runtime.placements['2']).toEqual({ seq: 2, dir: 's3://bucket/savepoints/savepoint-abcdef01-2' });
    expect(savepoint.row.runtime.barrierSeq).toBe(2);
  });

  it('changes nothing for a duplicate ack or an idle tick', () => {
    const plan = smallPlan();
    const started = transitionRow(row(plan), trigger(10)).row;
    const ack: CoordinatorEvent = { type: 'ack', now: 11, checkpointId: 1, ack: { task: 'events:0', operators: { events: emptySnapshot(0) }, ackTimestamp: 11 } };
    const once = transitionRow(started, ack);
    expect(once.step.result).toBe('accepted');
    const twice = transitionRow(once.row, ack);
    expect(twice).toMatchObject({ changed: false, statusChanges: [] });
    expect(twice.step.result).toBe('duplicate');
    expect(twice.row).toBe(once.row);
    expect(transitionRow(once.row, { type: 'tick', now: 12 }).changed).toBe(false);
  });

  it('records the status of a checkpoint the reducer expires', () => {
    const started = transitionRow(row(), trigger(0)).row;
    const expired = transitionRow(started, { type: 'tick', now: 10_000 });
    expect(expired.statusChanges).toEqual([expect.objectContaining({ checkpointId: 1, status: 'FAILED', at: 10_000, reason: expect.stringContaining('expired') })]);
    expect(expired.row.runtime.placements).toEqual({});
  });
});

describe('barrierEnvelopes', () => {
  it('builds one barrier per source subtask, as the embedded runner does, and the same ones every time', () => {
    const plan = smallPlan(3);
    const started = transitionRow(row(plan), trigger(10)).row;
    const envelopes = barrierEnvelopes(plan, started, 1);
    expect(envelopes.map((e) => e.to)).toEqual([0, 1, 2].map((subtask) => ({ op: 'events', subtask })));
    for (const e of envelopes) {
      expect(e).toMatchObject({ job: 'unit-coordinator', gen: 1, from: COORDINATOR_CHANNEL, seq: 1, kind: EnvelopeKind.Barrier, epoch: 1 });
      expect(e.barrier).toEqual({ checkpointId: 1, kind: 'checkpoint', timestamp: 10, location: 's3://bucket/ckpt/unit-coordinator/checkpoints/chk-1', sharedLocation: 's3://bucket/ckpt/unit-coordinator/checkpoints/shared' });
    }
    expect(barrierEnvelopes(plan, started, 1)).toEqual(envelopes);
    expect(barrierEnvelopes(plan, started, 2)).toEqual([]);
  });
});
