import { afterEach, describe, expect, it } from 'vitest';
import { startRestServer, type RestServer } from '../../lib/rest/server.js';
import { JobControlBuilder, type FakeJobControl } from '../support/job-control-builder.js';
import { statsSummary } from '../../lib/rest/checkpoint-statistics.js';

const JID = 'a5e0edd8e66b53f1b89c2041f91b8fd2';

let server: RestServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(control: FakeJobControl): Promise<RestServer> {
  server = await startRestServer(control, { port: 0 });
  return server;
}

/** Sends a request (JSON, as Flink's client sends every request) and returns the status, the parsed JSON body and the headers. */
async function call(path: string, init: { method?: string; body?: string } = {}) {
  const method = init.method ?? 'GET';
  const res = await fetch(`${server!.url}${path}`, {
    method,
    ...(method !== 'GET' ? { headers: { 'Content-Type': 'application/json' } } : {}),
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await res.text();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return { status: res.status, body: JSON.parse(text) as any, headers: res.headers };
}

describe('startRestServer', () => {
  it('binds 127.0.0.1 on an ephemeral port and closes idempotently', async () => {
    const s = await serve(new JobControlBuilder().build());
    expect(s.port).toBeGreaterThan(0);
    expect(s.url).toBe(`http://127.0.0.1:${s.port}`);
    await s.close();
    await s.close();
    server = undefined;
  });

  it('reports a port in use as a FloeError naming --port', async () => {
    const s = await serve(new JobControlBuilder().build());
    await expect(startRestServer(new JobControlBuilder().build(), { port: s.port })).rejects.toThrow(/already in use.*--port/);
  });
});

describe('GET /jobs and /jobs/:id', () => {
  it('lists the one job with its status, unversioned and under /v1', async () => {
    await serve(new JobControlBuilder().build());
    for (const path of ['/jobs', '/v1/jobs']) {
      const { status, body, headers } = await call(path);
      expect(status).toBe(200);
      expect(headers.get('content-type')).toMatch(/^application\/json/);
      expect(body).toEqual({ jobs: [{ id: JID, status: 'RUNNING' }] });
    }
  });

  it.each([JID, 'wordcount'])('answers job details for %s (jid or job name)', async (id) => {
    await serve(new JobControlBuilder().build());
    const { status, body } = await call(`/jobs/${id}`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ jid: JID, name: 'wordcount', state: 'RUNNING', 'start-time': 1_700_000_000_000, 'end-time': -1, maxParallelism: 128 });
    expect(body.now).toBeGreaterThanOrEqual(body['start-time']);
    expect(body.duration).toBe(body.now - body['start-time']);
    expect(body.vertices).toHaveLength(3);
    expect(body.vertices[1]).toMatchObject({
      id: 'count',
      name: 'split -> count',
      parallelism: 2,
      status: 'RUNNING',
      metrics: { 'read-records': 1000, 'write-records': 900 },
    });
  });

  it('reports end-time and duration of a finished job', async () => {
    const control = new JobControlBuilder().build();
    control.setOverview({ state: 'FINISHED', endTime: 1_700_000_005_000 });
    await serve(control);
    const { body } = await call(`/jobs/${JID}`);
    expect(body).toMatchObject({ state: 'FINISHED', 'end-time': 1_700_000_005_000, duration: 5000 });
    expect(body.vertices[0].status).toBe('FINISHED');
  });

  it('answers 404 with Flink\'s error shape for an unknown job', async () => {
    await serve(new JobControlBuilder().build());
    for (const path of ['/jobs/nope', '/jobs/nope/checkpoints', '/jobs/nope/checkpoints/config']) {
      const { status, body } = await call(path);
      expect(status).toBe(404);
      expect(body).toEqual({ errors: ['Job nope not found.'] });
    }
  });
});

describe('GET /jobs/:id/checkpoints', () => {
  // Given completed 1, 2 (savepoint), failed 3, completed 4 and 5 in progress with one ack
  const control = () =>
    new JobControlBuilder()
      .withCompleted(1)
      .withCompleted(2, { kind: 'savepoint' })
      .withFailed(3, 'checkpoint expired before completing', ['source:0'])
      .withCompleted(4, { stats: { stateSize: 50, fullSize: 500 } })
      .withPending(5, ['count:1'])
      .withRestoredFrom({ id: 7, path: '/snap/chk-7', kind: 'checkpoint', restoredAt: 1_699_999_999_000 })
      .build();

  it('reports counts, the latest ones and the history newest first with the in-progress one', async () => {
    await serve(control());
    const { status, body } = await call(`/jobs/${JID}/checkpoints`);
    expect(status).toBe(200);
    expect(body.counts).toEqual({ restored: 1, total: 5, in_progress: 1, completed: 3, failed: 1 });
    expect(body.history.map((h: { id: number; status: string }) => [h.id, h.status])).toEqual([
      [5, 'IN_PROGRESS'],
      [4, 'COMPLETED'],
      [3, 'FAILED'],
      [2, 'COMPLETED'],
      [1, 'COMPLETED'],
    ]);
    expect(body.latest.completed).toMatchObject({ id: 4, is_savepoint: false, external_path: '.floe/checkpoints/wordcount/checkpoints/chk-4' });
    expect(body.latest.savepoint).toMatchObject({ id: 2, is_savepoint: true, checkpoint_type: 'SAVEPOINT', savepointFormat: 'CANONICAL' });
    expect(body.latest.failed).toMatchObject({ id: 3, failure_message: 'checkpoint expired before completing' });
    expect(body.latest.restored).toEqual({ id: 7, restore_timestamp: 1_699_999_999_000, is_savepoint: false, external_path: '/snap/chk-7' });
  });

  it('shapes each history entry like Flink', async () => {
    await serve(control());
    const { body } = await call(`/jobs/wordcount/checkpoints`);
    const [pending, completed, failed] = body.history;
    expect(completed).toEqual({
      className: 'completed',
      id: 4,
      status: 'COMPLETED',
      is_savepoint: false,
      savepointFormat: null,
      trigger_timestamp: 1_700_000_040_000,
      latest_ack_timestamp: 1_700_000_040_200,
      checkpointed_size: 4 * 50,
      state_size: 4 * 500,
      end_to_end_duration: 250,
      alignment_buffered: 0,
      processed_data: 0,
      persisted_data: 0,
      num_subtasks: 4,
      num_acknowledged_subtasks: 4,
      checkpoint_type: 'CHECKPOINT',
      tasks: {},
      external_path: '.floe/checkpoints/wordcount/checkpoints/chk-4',
      discarded: false,
    });
    expect(failed).toMatchObject({ className: 'failed', num_acknowledged_subtasks: 1, failure_timestamp: 1_700_000_630_000 });
    expect(pending).toMatchObject({ className: 'in_progress', status: 'IN_PROGRESS', num_subtasks: 4, num_acknowledged_subtasks: 1 });
    expect(pending.external_path).toBeUndefined();
  });

  it('marks completed checkpoints beyond the retained count as discarded, never savepoints', async () => {
    await serve(control());
    const { body } = await call(`/jobs/${JID}/checkpoints`);
    const discarded = Object.fromEntries(body.history.filter((h: { status: string }) => h.status === 'COMPLETED').map((h: { id: number; discarded: boolean }) => [h.id, h.discarded]));
    expect(discarded).toEqual({ 4: false, 2: false, 1: true });
  });

  it('summarises sizes and durations over completed checkpoints', async () => {
    await serve(control());
    const { body } = await call(`/jobs/${JID}/checkpoints`);
    expect(body.summary.state_size).toMatchObject({ min: 1600, max: 2000, avg: 1733 });
    expect(body.summary.end_to_end_duration).toMatchObject({ min: 250, max: 250, avg: 250 });
    expect(Object.keys(body.summary)).toEqual(
      expect.arrayContaining(['checkpointed_size', 'state_size', 'end_to_end_duration', 'alignment_buffered', 'processed_data', 'persisted_data']),
    );
  });

  it('answers an empty history with zeroed summaries and null latest entries', async () => {
    await serve(new JobControlBuilder().build());
    const { body } = await call(`/jobs/${JID}/checkpoints`);
    expect(body.counts).toEqual({ restored: 0, total: 0, in_progress: 0, completed: 0, failed: 0 });
    expect(body.latest).toEqual({ completed: null, savepoint: null, failed: null, restored: null });
    expect(body.summary.state_size).toEqual(statsSummary([]));
    expect(body.history).toEqual([]);
  });
});

describe('GET /jobs/:id/checkpoints/config', () => {
  it("answers Flink's CheckpointConfigInfo plus Floe's retained and incremental", async () => {
    await serve(
      new JobControlBuilder()
        .withCheckpointOptions({ interval: '10s', timeout: '1m', minPause: 500, maxConcurrent: 2, tolerableFailures: 3, retained: 4, incremental: false, retainOnCancel: false, mode: 'at-least-once' })
        .build(),
    );
    const { status, body } = await call(`/jobs/${JID}/checkpoints/config`);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      mode: 'at_least_once',
      interval: 10_000,
      timeout: 60_000,
      min_pause: 500,
      max_concurrent: 2,
      externalization: { enabled: true, delete_on_cancellation: true },
      tolerable_failed_checkpoints: 3,
      retained: 4,
      incremental: false,
    });
    expect(typeof body.state_backend).toBe('string');
    expect(typeof body.checkpoint_storage).toBe('string');
  });
});

describe('GET /jobs/:id/checkpoints/details/:n', () => {
  const control = () =>
    new JobControlBuilder()
      .withCompleted(4, { stats: { stateSize: 50, fullSize: 500, syncMs: 7, asyncMs: 30, alignmentMs: 4, startDelayMs: 9 } })
      .withPending(5, ['count:1'])
      .build();

  it('answers the checkpoint with tasks keyed by vertex id and per-subtask statistics', async () => {
    await serve(control());
    const { status, body } = await call(`/jobs/${JID}/checkpoints/details/4`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ id: 4, status: 'COMPLETED', num_subtasks: 4, num_acknowledged_subtasks: 4 });
    expect(Object.keys(body.tasks)).toEqual(['source', 'count', 'sink']);
    expect(body.tasks.count).toMatchObject({ id: 4, status: 'COMPLETED', num_subtasks: 2, num_acknowledged_subtasks: 2, state_size: 1000, checkpointed_size: 100 });
    expect(body.tasks.count.subtasks[1]).toEqual({
      index: 1,
      status: 'completed',
      ack_timestamp: 1_700_000_040_200,
      end_to_end_duration: 200,
      state_size: 500,
      checkpointed_size: 50,
      checkpoint: { sync: 7, async: 30 },
      alignment: { buffered: 0, processed: 0, persisted: 0, duration: 4 },
      start_delay: 9,
      unaligned_checkpoint: false,
      aborted: false,
    });
  });

  it('answers an in-progress checkpoint with pending subtasks', async () => {
    await serve(control());
    const { status, body } = await call(`/jobs/${JID}/checkpoints/details/5`);
    expect(status).toBe(200);
    expect(body.status).toBe('IN_PROGRESS');
    expect(body.tasks.count.num_acknowledged_subtasks).toBe(1);
    expect(body.tasks.count.subtasks.map((s: { status: string }) => s.status)).toEqual(['pending_or_failed', 'completed']);
    expect(body.tasks.source.subtasks).toEqual([{ index: 0, status: 'pending_or_failed' }]);
  });

  it('answers one vertex with a summary at .../subtasks/:vertex', async () => {
    await serve(control());
    const { status, body } = await call(`/jobs/${JID}/checkpoints/details/4/subtasks/count`);
    expect(status).toBe(200);
    expect(body.subtasks).toHaveLength(2);
    expect(body.summary.checkpoint_duration.async).toMatchObject({ min: 30, max: 30, avg: 30 });
    expect((await call(`/jobs/${JID}/checkpoints/details/4/subtasks/nope`)).status).toBe(404);
  });

  it.each([
    ['9', 404, 'Could not find checkpointing statistics for checkpoint 9.'],
    ['abc', 400, "Checkpoint id must be a positive integer, got 'abc'."],
    ['0', 400, "Checkpoint id must be a positive integer, got '0'."],
  ])('answers details/%s with %i', async (id, code, message) => {
    await serve(control());
    const { status, body } = await call(`/jobs/${JID}/checkpoints/details/${id}`);
    expect(status).toBe(code);
    expect(body).toEqual({ errors: [message] });
  });
});

describe('triggers', () => {
  it('triggers a checkpoint and reports its status by trigger id', async () => {
    const control = new JobControlBuilder().build();
    await serve(control);
    const trigger = await call(`/jobs/${JID}/checkpoints`, { method: 'POST' });
    expect(trigger.status).toBe(202);
    const id = trigger.body['request-id'];
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(control.calls.checkpoints).toBe(1);

    expect((await call(`/jobs/${JID}/checkpoints/${id}`)).body).toEqual({ status: { id: 'IN_PROGRESS' } });
    control.settle(id, { status: 'COMPLETED', checkpointId: 6 });
    expect((await call(`/jobs/${JID}/checkpoints/${id}`)).body).toEqual({ status: { id: 'COMPLETED' }, operation: { checkpointId: 6 } });
  });

  it('triggers a savepoint, then reports IN_PROGRESS, then its location', async () => {
    const control = new JobControlBuilder().build();
    await serve(control);
    const trigger = await call(`/jobs/wordcount/savepoints`, { method: 'POST', body: JSON.stringify({ 'target-directory': '/tmp/sp' }) });
    expect(trigger.status).toBe(202);
    const id = trigger.body['request-id'];
    expect(control.calls.savepoints).toEqual([{ dir: '/tmp/sp', termination: undefined }]);

    const inProgress = await call(`/jobs/${JID}/savepoints/${id}`);
    expect(inProgress).toMatchObject({ status: 200, body: { status: { id: 'IN_PROGRESS' } } });

    control.settle(id, { status: 'COMPLETED', checkpointId: 3, location: '/tmp/sp/savepoint-3' });
    expect((await call(`/jobs/${JID}/savepoints/${id}`)).body).toEqual({ status: { id: 'COMPLETED' }, operation: { location: '/tmp/sp/savepoint-3' } });
  });

  it('reports a failed savepoint as COMPLETED with a failure-cause', async () => {
    const control = new JobControlBuilder().build();
    await serve(control);
    const id = (await call(`/jobs/${JID}/savepoints`, { method: 'POST', body: '{}' })).body['request-id'];
    control.settle(id, { status: 'FAILED', failureCause: 'subtask count:1 declined' });
    const { body } = await call(`/jobs/${JID}/savepoints/${id}`);
    expect(body.status).toEqual({ id: 'COMPLETED' });
    expect(body.operation['failure-cause']).toEqual({ class: 'FloeError', 'stack-trace': 'subtask count:1 declined' });
  });

  it('treats cancel-job as stop-with-savepoint and takes the default directory without a body', async () => {
    const control = new JobControlBuilder().build();
    await serve(control);
    await call(`/jobs/${JID}/savepoints`, { method: 'POST', body: JSON.stringify({ 'cancel-job': true }) });
    await call(`/jobs/${JID}/savepoints`, { method: 'POST' });
    expect(control.calls.savepoints).toEqual([
      { dir: undefined, termination: 'stop' },
      { dir: undefined, termination: undefined },
    ]);
  });

  it.each([
    [{}, { dir: undefined, termination: 'stop' }],
    [{ targetDirectory: '/sp', drain: true }, { dir: '/sp', termination: 'drain' }],
    [{ drain: false }, { dir: undefined, termination: 'stop' }],
  ])('stops with a savepoint for body %j', async (body, expected) => {
    const control = new JobControlBuilder().build();
    await serve(control);
    const { status, body: answer } = await call(`/jobs/${JID}/stop`, { method: 'POST', body: JSON.stringify(body) });
    expect(status).toBe(202);
    expect(answer['request-id']).toMatch(/^[0-9a-f]{32}$/);
    expect(control.calls.savepoints).toEqual([expected]);
  });

  it('answers 404 for an unknown trigger id', async () => {
    await serve(new JobControlBuilder().build());
    const { status, body } = await call(`/jobs/${JID}/savepoints/ffff`);
    expect(status).toBe(404);
    expect(body.errors[0]).toMatch(/no savepoint operation with triggerId=ffff/);
    expect((await call(`/jobs/${JID}/checkpoints/ffff`)).status).toBe(404);
  });

  it('cancels with PATCH ?mode=cancel and refuses other modes', async () => {
    const control = new JobControlBuilder().build();
    await serve(control);
    expect(await call(`/jobs/${JID}?mode=cancel`, { method: 'PATCH' })).toMatchObject({ status: 202, body: {} });
    expect(control.calls.cancels).toBe(1);
    expect((await call(`/jobs/${JID}`)).body.state).toBe('CANCELED');
    const stop = await call(`/jobs/${JID}?mode=stop`, { method: 'PATCH' });
    expect(stop.status).toBe(400);
    expect(stop.body.errors[0]).toMatch(/POST \/jobs\/:jobid\/stop/);
    expect((await call(`/jobs/${JID}?mode=explode`, { method: 'PATCH' })).status).toBe(400);
    expect(control.calls.cancels).toBe(1);
  });
});

describe('bad requests', () => {
  it.each([
    ['not json', '{"target-directory": ', /not valid JSON/],
    ['an array', '[1]', /must be a JSON object/],
    ['a misspelt field', '{"targetDirectory": "/x"}', /unknown field 'targetDirectory'.*'target-directory'/],
    ['a wrong type', '{"cancel-job": "yes"}', /'cancel-job' .* must be a boolean/],
    ['an empty directory', '{"target-directory": ""}', /must not be empty/],
  ])('answers 400 to a savepoint body that is %s, and triggers nothing', async (_what, body, message) => {
    const control = new JobControlBuilder().build();
    await serve(control);
    const { status, body: answer } = await call(`/jobs/${JID}/savepoints`, { method: 'POST', body });
    expect(status).toBe(400);
    expect(answer.errors).toHaveLength(1);
    expect(answer.errors[0]).toMatch(message);
    expect(control.calls.savepoints).toEqual([]);
  });

  it('reports every bad field of a stop body at once', async () => {
    await serve(new JobControlBuilder().build());
    const { status, body } = await call(`/jobs/${JID}/stop`, { method: 'POST', body: JSON.stringify({ drain: 'yes', 'target-directory': '/x' }) });
    expect(status).toBe(400);
    expect(body.errors[0]).toMatch(/'drain'.*boolean.*unknown field 'target-directory'/);
  });

  it('answers 413 to an oversized body', async () => {
    await serve(new JobControlBuilder().build());
    const { status } = await call(`/jobs/${JID}/savepoints`, { method: 'POST', body: JSON.stringify({ 'target-directory': 'x'.repeat(100_000) }) });
    expect(status).toBe(413);
  });

  it.each(['/', '/nope', '/jobs/x/y/z/w/v/u/t', `/jobs/${JID}/vertices`])('answers 404 to the unknown route %s', async (path) => {
    await serve(new JobControlBuilder().build());
    const { status, body } = await call(path);
    expect(status).toBe(404);
    expect(body.errors[0]).toMatch(/^Not found: /);
  });

  it.each([
    ['DELETE', `/jobs/${JID}`, 'GET, PATCH'],
    ['POST', '/jobs', 'GET'],
    ['GET', `/jobs/${JID}/savepoints`, 'POST'],
    ['PUT', `/jobs/${JID}/checkpoints/config`, 'GET'],
  ])('answers 405 to %s %s with an Allow header', async (method, path, allow) => {
    await serve(new JobControlBuilder().build());
    const { status, body, headers } = await call(path, { method });
    expect(status).toBe(405);
    expect(headers.get('allow')).toBe(allow);
    expect(body.errors[0]).toMatch(new RegExp(`Method ${method} is not allowed`));
  });

  it('answers 400 to a malformed path escape', async () => {
    await serve(new JobControlBuilder().build());
    const { status, body } = await call('/jobs/%E0%A4%A');
    expect(status).toBe(400);
    expect(body.errors[0]).toMatch(/Malformed path/);
  });

  it('answers 500 when the job control throws, and keeps serving', async () => {
    const control = new JobControlBuilder().build();
    control.coordinatorState = () => {
      throw new Error('state store unreachable');
    };
    await serve(control);
    const { status, body } = await call(`/jobs/${JID}/checkpoints`);
    expect(status).toBe(500);
    expect(body).toEqual({ errors: ['Internal server error: state store unreachable'] });
    expect((await call('/jobs')).status).toBe(200);
  });
});
