/**
 * The control API's HTTP-event side (lib/hosts/lambda/control-api.ts) over a fake job control: payload format 2.0 in, Flink's
 * REST answers out, as `floe run`'s server gives them; plus the trigger ids and the environment of the function.
 */
import { describe, expect, it } from 'vitest';
import { createControlApiHandler, restRequestOf, type ControlApiLogEntry, type HttpEventV2 } from '../../lib/hosts/lambda/control-api.js';
import { checkpointIdOfTrigger, executionArn, triggerIdFor } from '../../lib/hosts/lambda/deployed-job-control.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import { checkS3SavepointTarget } from '../../lib/core/savepoint-target.js';
import { MAX_BODY_BYTES } from '../../lib/rest/request-body.js';
import { readControlApiEnvironment } from '../../functions/control-api.js';
import { FloeEnv } from '../../lib/hosts/lambda/handler-contract.js';
import { JobControlBuilder, type FakeJobControl } from '../support/job-control-builder.js';

const JID = 'a5e0edd8e66b53f1b89c2041f91b8fd2';

function event(method: string, rawPath: string, options: { query?: string; body?: string; base64?: boolean } = {}): HttpEventV2 {
  return {
    version: '2.0',
    rawPath,
    rawQueryString: options.query ?? '',
    headers: {},
    requestContext: { http: { method, path: rawPath }, requestId: 'req-1' },
    ...(options.body === undefined ? {} : { body: options.base64 ? Buffer.from(options.body).toString('base64') : options.body, isBase64Encoded: options.base64 ?? false }),
  };
}

/** A handler over a fake control, counting how often the control was asked for. */
function handlerOver(control: FakeJobControl) {
  const logged: ControlApiLogEntry[] = [];
  let opened = 0;
  const handle = createControlApiHandler({
    control: () => {
      opened++;
      return control;
    },
    log: (entry) => logged.push(entry),
  });
  const call = async (e: HttpEventV2) => {
    const result = await handle(e);
    return { ...result, json: JSON.parse(result.body) as Record<string, unknown> & { errors?: string[] } };
  };
  return { call, logged, opened: () => opened };
}

describe('control-API handler', () => {
  it('answers the jobs overview with a JSON function result', async () => {
    const { call } = handlerOver(new JobControlBuilder().build());
    const result = await call(event('GET', '/v1/jobs'));
    expect(result.statusCode).toBe(200);
    expect(result.isBase64Encoded).toBe(false);
    expect(result.headers['Content-Type']).toBe('application/json; charset=utf-8');
    expect(result.json).toEqual({ jobs: [{ id: JID, status: 'RUNNING' }] });
  });

  it.each([
    ['plain', false],
    ['base64', true],
  ])('reads a %s body and triggers a savepoint with it', async (_what, base64) => {
    const control = new JobControlBuilder().build();
    const { call } = handlerOver(control);
    const result = await call(event('POST', `/jobs/${JID}/savepoints`, { body: JSON.stringify({ 'target-directory': 's3://b/sp', 'cancel-job': true }), base64 }));
    expect(result.statusCode).toBe(202);
    expect(typeof result.json['request-id']).toBe('string');
    expect(control.calls.savepoints).toEqual([{ dir: 's3://b/sp', termination: 'stop' }]);
  });

  it('passes the query string: PATCH ?mode=cancel cancels, another mode is refused', async () => {
    const control = new JobControlBuilder().build();
    const { call } = handlerOver(control);
    expect((await call(event('PATCH', '/jobs/wordcount', { query: 'mode=cancel' }))).statusCode).toBe(202);
    expect(control.calls.cancels).toBe(1);
    const refused = await call(event('PATCH', '/jobs/wordcount', { query: 'mode=stop' }));
    expect(refused.statusCode).toBe(400);
    expect(refused.json.errors![0]).toMatch(/mode=stop is not supported/);
    expect(control.calls.cancels).toBe(1);
  });

  it.each([
    ['bad JSON', '{"drain": ', 400, /not valid JSON/],
    ['a misspelt field', '{"target-directory": "s3://b/x"}', 400, /unknown field 'target-directory'/],
    ['a body above the limit', JSON.stringify({ targetDirectory: 'x'.repeat(MAX_BODY_BYTES) }), 413, /larger than/],
  ])('refuses a stop with %s in base64, and stops nothing', async (_what, body, status, message) => {
    const control = new JobControlBuilder().build();
    const { call } = handlerOver(control);
    const result = await call(event('POST', `/jobs/${JID}/stop`, { body, base64: true }));
    expect(result.statusCode).toBe(status);
    expect(result.json.errors).toHaveLength(1);
    expect(result.json.errors![0]).toMatch(message);
    expect(control.calls.savepoints).toEqual([]);
  });

  it.each([
    ['/savepoints', { 'target-directory': 's3://other-bucket/sp' }],
    ['/savepoints', { 'target-directory': '/etc/floe-pwn' }],
    ['/stop', { targetDirectory: 's3://b/wordcount/../other/sp' }],
  ])('refuses a savepoint target outside the job\'s bucket on %s with 400 before triggering', async (route, body) => {
    // The check the deployed controls make (AwsJobControl.validateSavepointTarget), over the job's own roots.
    const control = new JobControlBuilder().withSavepointTargetCheck((dir) => checkS3SavepointTarget(dir ?? 's3://b/wordcount/savepoints', ['s3://b/wordcount/savepoints', 's3://b/wordcount'])).build();
    const { call } = handlerOver(control);
    const result = await call(event('POST', `/jobs/${JID}${route}`, { body: JSON.stringify(body) }));
    expect(result.statusCode).toBe(400);
    expect(result.json.errors![0]).toMatch(/savepoint target .* (outside the job's own storage|is not an s3:\/\/ URL|segment)/);
    expect(control.calls.savepoints).toEqual([]);
    const inside = await call(event('POST', `/jobs/${JID}/savepoints`, { body: JSON.stringify({ 'target-directory': 's3://b/wordcount/savepoints/mine/' }) }));
    expect(inside.statusCode).toBe(202);
    expect(control.calls.savepoints).toEqual([{ dir: 's3://b/wordcount/savepoints/mine', termination: undefined }]);
  });

  it('answers unknown routes and methods without opening the job control', async () => {
    const { call, opened } = handlerOver(new JobControlBuilder().build());
    const unknown = await call(event('GET', '/jobs/x/y/z/w/v/u/t'));
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json).toEqual({ errors: ['Not found: /jobs/x/y/z/w/v/u/t'] });
    const method = await call(event('DELETE', `/jobs/${JID}`));
    expect(method.statusCode).toBe(405);
    expect(method.headers['Allow']).toBe('GET, PATCH');
    expect(opened()).toBe(0);
  });

  it('answers an unknown job with 404 and a failing job control with 500, and logs each request', async () => {
    const control = new JobControlBuilder().build();
    control.coordinatorState = () => {
      throw new Error('job row unreachable');
    };
    const { call, logged } = handlerOver(control);
    expect((await call(event('GET', '/jobs/other'))).json).toEqual({ errors: ['Job other not found.'] });
    const failed = await call(event('GET', `/jobs/${JID}/checkpoints`));
    expect(failed.statusCode).toBe(500);
    expect(failed.json).toEqual({ errors: ['Internal server error: job row unreachable'] });
    expect(logged.map((l) => [l.level, l.method, l.path, l.status, l.requestId])).toEqual([
      ['warn', 'GET', '/jobs/other', 404, 'req-1'],
      ['error', 'GET', `/jobs/${JID}/checkpoints`, 500, 'req-1'],
    ]);
  });

  it('refuses an event that is not an HTTP event of payload format 2.0', () => {
    for (const bad of [null, 'GET /jobs', { Records: [] }, { rawPath: '/jobs' }]) {
      expect(() => restRequestOf(bad)).toThrow(FloeError);
      try {
        restRequestOf(bad);
      } catch (e) {
        expect((e as FloeError).code).toBe(ErrorCode.MalformedMessage);
      }
    }
  });
});

describe('trigger ids of the deployed job control', () => {
  it.each([1, 255, 4_294_967_295])('carry checkpoint id %i in 32 hex digits', (n) => {
    const id = triggerIdFor('ab'.repeat(12), n);
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(checkpointIdOfTrigger(id)).toBe(n);
  });

  it.each(['', 'not-a-trigger', '0'.repeat(32), 'AB'.repeat(16), '0'.repeat(33)])('reject %j', (id) => {
    expect(checkpointIdOfTrigger(id)).toBeUndefined();
  });

  it('name the execution of a checkpoint under its state machine', () => {
    expect(executionArn('arn:aws:states:eu-west-1:123456789012:stateMachine:floe-coordinator', 'wordcount-chk-7')).toBe(
      'arn:aws:states:eu-west-1:123456789012:execution:floe-coordinator:wordcount-chk-7',
    );
    expect(() => executionArn('arn:aws:sqs:eu-west-1:123456789012:queue', 'x')).toThrow(/not a state machine ARN/);
  });
});

describe('control-API function environment', () => {
  it('reads the outputs it stands for', () => {
    expect(
      readControlApiEnvironment({
        [FloeEnv.JobName]: 'wordcount',
        [FloeEnv.CoordinatorTable]: 'coord',
        [FloeEnv.StateMachineArn]: 'arn:aws:states:us-east-1:1:stateMachine:m',
        [FloeEnv.SavepointDir]: 's3://b/wordcount/savepoints',
        [FloeEnv.CheckpointBucket]: 'b',
      }),
    ).toEqual({ jobName: 'wordcount', coordinatorTable: 'coord', stateMachineArn: 'arn:aws:states:us-east-1:1:stateMachine:m', savepointDir: 's3://b/wordcount/savepoints', checkpointBucket: 'b' });
  });

  it('names every missing variable at once', () => {
    expect(() => readControlApiEnvironment({ [FloeEnv.JobName]: 'wordcount' })).toThrow(/FLOE_COORDINATOR_TABLE is required\n.*FLOE_STATE_MACHINE_ARN is required\n.*FLOE_SAVEPOINT_DIR is required/);
  });
});
