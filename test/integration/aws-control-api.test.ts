/**
 * The control-API Lambda (functions/control-api.ts), invoked in-process with HTTP events of payload format 2.0, against
 * a job that emulator mode runs on the test emulator: the handler knows only its environment (as FloeJob sets it)
 * and reaches the job through its job row and its coordinator state machine.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { ListStateMachinesCommand } from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { StepFunctionsCheckpointExecutions } from '../../lib/adapters/aws/step-functions-executions.js';
import { DynamoDbCoordinatorStore } from '../../lib/adapters/aws/dynamodb-coordinator-store.js';
import type { HttpEventV2, HttpResultV2 } from '../../lib/hosts/lambda/control-api.js';
import { EmulatorRunner } from '../../lib/hosts/emulator/emulator-runner.js';
import { emulatorResourceNames } from '../../lib/hosts/emulator/provision.js';
import { loadJob } from '../../lib/hosts/load-job.js';
import type { CheckpointingStatistics, JobDetailsInfo, JobIdsWithStatusOverview } from '../../lib/rest/flink-types.js';
import { handler } from '../../functions/control-api.js';
import { FloeEnv } from '../../lib/hosts/lambda/handler-contract.js';
import { REPO_ROOT } from '../support/floe-process.js';
import { generateWordInput } from '../support/wordcount-oracle.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
let work: string;
/** The handler's Powertools log lines (JSON on stdout, WARN and ERROR on stderr), kept out of the test output; EMF metric objects are left out. */
const logged: Record<string, unknown>[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'floe-control-api-'));
  const capture = (stream: NodeJS.WriteStream) => {
    const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
    vi.spyOn(stream, 'write').mockImplementation(((chunk: unknown, ...rest: unknown[]) => {
      const lines = String(chunk).split('\n').filter((l) => l.startsWith('{'));
      if (lines.length === 0) return write(chunk, ...rest);
      for (const line of lines) {
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (!('_aws' in entry)) logged.push(entry);
      }
      return true;
    }) as typeof stream.write);
  };
  capture(process.stdout);
  capture(process.stderr);
});

afterAll(async () => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  await rm(work, { recursive: true, force: true });
});

/** An HTTP event as a function URL delivers it; a body is sent base64-encoded when `base64` says so. */
function event(method: string, url: string, body?: string, base64 = false): HttpEventV2 {
  const [path, query = ''] = url.split('?') as [string, string?];
  return {
    version: '2.0',
    rawPath: path,
    rawQueryString: query,
    headers: { 'content-type': 'application/json' },
    requestContext: { http: { method, path }, requestId: randomUUID() },
    ...(body === undefined ? {} : { body: base64 ? Buffer.from(body).toString('base64') : body, isBase64Encoded: base64 }),
  };
}

/** Invokes the handler and answers the status and the parsed JSON body. */
async function call<T = Record<string, unknown>>(method: string, url: string, body?: string, base64 = false): Promise<{ status: number; body: T; result: HttpResultV2 }> {
  const result = await handler(event(method, url, body, base64));
  return { status: result.statusCode, body: JSON.parse(result.body) as T, result };
}

/** Polls a trigger's status through the API until it is no longer IN_PROGRESS. */
async function settled(url: string): Promise<{ status: { id: string }; operation?: Record<string, unknown> }> {
  let last: { status: { id: string }; operation?: Record<string, unknown> } | undefined;
  await vi.waitFor(
    async () => {
      const answer = await call<{ status: { id: string }; operation?: Record<string, unknown> }>('GET', url);
      expect(answer.status).toBe(200);
      last = answer.body;
      expect(answer.body.status.id).toBe('COMPLETED');
    },
    { timeout: 60_000, interval: 250 },
  );
  return last!;
}

describe('control-API Lambda against a deployed job (emulator)', () => {
  it('answers the overview, triggers a checkpoint and a savepoint, lists them, refuses bad requests, and stops the job', async () => {
    // Given the word count running in emulator mode, slowly enough to be controlled, without periodic checkpoints
    const input = await generateWordInput(join(work, 'in'), { files: 4, words: 200_000, vocabulary: 2_000, seed: 7 });
    const job = await loadJob(join(REPO_ROOT, 'examples/wordcount.ts'), ['--input', input.dir, '--output', join(work, 'out'), '--parallelism', '1']);
    const namespace = `api-${randomUUID().slice(0, 8)}`;
    const runner = new EmulatorRunner(job, { endpoint, namespace, checkpoint: { interval: '1h' }, sourceChunkSize: 50 });
    const run = runner.run();
    try {
      await vi.waitFor(() => expect(['RUNNING', 'FAILED']).toContain(runner.overview().state), { timeout: 60_000, interval: 100 });
      expect(runner.overview().state).toBe('RUNNING');

      // And the control API's environment naming its resources, as FloeJob sets it
      const clients = awsClients({ endpoint });
      const names = emulatorResourceNames(runner.plan.job, namespace);
      const machines = await clients.sfn.send(new ListStateMachinesCommand({}));
      const stateMachineArn = machines.stateMachines?.find((m) => m.name === names.stateMachine)?.stateMachineArn;
      expect(stateMachineArn).toBeDefined();
      vi.stubEnv(FloeEnv.JobName, runner.plan.job);
      vi.stubEnv(FloeEnv.CoordinatorTable, names.coordinatorTable);
      vi.stubEnv(FloeEnv.StateMachineArn, stateMachineArn!);
      vi.stubEnv(FloeEnv.SavepointDir, `s3://${names.bucket}/api-savepoints`);
      vi.stubEnv(FloeEnv.CheckpointBucket, names.bucket);
      const name = runner.plan.job;

      // When the jobs are listed: the one job, running, with the id the job row has
      const jobs = await call<JobIdsWithStatusOverview>('GET', '/jobs');
      expect(jobs.status).toBe(200);
      expect(jobs.result.headers['Content-Type']).toMatch(/^application\/json/);
      expect(jobs.body.jobs).toHaveLength(1);
      expect(jobs.body.jobs[0]!.status).toBe('RUNNING');
      const jid = jobs.body.jobs[0]!.id;
      const details = await call<JobDetailsInfo>('GET', `/v1/jobs/${jid}`);
      expect(details.status).toBe(200);
      expect(details.body).toMatchObject({ jid, name, state: 'RUNNING' });

      // When a checkpoint is triggered (empty JSON body, base64-encoded as a function URL may send it)
      const trigger = await call<{ 'request-id': string }>('POST', `/jobs/${name}/checkpoints`, '{}', true);
      expect(trigger.status, JSON.stringify(trigger.body)).toBe(202);
      const checkpoint = await settled(`/jobs/${name}/checkpoints/${trigger.body['request-id']}`);
      const checkpointId = checkpoint.operation?.['checkpointId'] as number;
      expect(checkpointId).toBeGreaterThan(0);

      // Then the checkpoint statistics list it as the latest completed one, with details
      const stats = await call<CheckpointingStatistics>('GET', `/jobs/${name}/checkpoints`);
      expect(stats.status).toBe(200);
      expect(stats.body.counts.completed).toBe(1);
      expect(stats.body.latest.completed?.id).toBe(checkpointId);
      expect(stats.body.history.map((h) => [h.id, h.status, h.is_savepoint])).toContainEqual([checkpointId, 'COMPLETED', false]);
      const one = await call<{ id: number; status: string }>('GET', `/jobs/${name}/checkpoints/details/${checkpointId}`);
      expect(one.status).toBe(200);
      expect(one.body).toMatchObject({ id: checkpointId, status: 'COMPLETED' });
      const config = await call<{ interval: number; mode: string }>('GET', `/jobs/${name}/checkpoints/config`);
      expect(config.body).toMatchObject({ interval: 3_600_000, mode: 'exactly_once' });

      // When a savepoint is triggered while another checkpoint has just claimed the next id (its execution started
      // first), the request moves on to the following id
      const store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: names.coordinatorTable });
      const next = (await store.require(name)).state.nextCheckpointId;
      const other = new StepFunctionsCheckpointExecutions({ client: clients.sfn, stateMachineArn: stateMachineArn!, job: name });
      expect((await other.start(next)).started).toBe(true);
      const savepoint = await call<{ 'request-id': string }>('POST', `/jobs/${name}/savepoints`, JSON.stringify({ 'target-directory': `s3://${names.bucket}/${name}/chosen` }));
      expect(savepoint.status, JSON.stringify(savepoint.body)).toBe(202);
      const done = await settled(`/jobs/${name}/savepoints/${savepoint.body['request-id']}`);

      // Then it completes in the chosen directory, its manifest exists, and the history holds both
      const location = done.operation?.['location'] as string;
      expect(location).toMatch(new RegExp(`^s3://${names.bucket}/${name}/chosen/`));
      const key = `${location.slice(`s3://${names.bucket}/`.length)}/_metadata`;
      await expect(clients.s3.send(new HeadObjectCommand({ Bucket: names.bucket, Key: key }))).resolves.toBeDefined();
      await vi.waitFor(
        async () => {
          const after = await call<CheckpointingStatistics>('GET', `/jobs/${name}/checkpoints`);
          expect(after.body.history.map((h) => [h.id, h.is_savepoint, h.status])).toEqual(
            expect.arrayContaining([
              [next, false, 'COMPLETED'],
              [next + 1, true, 'COMPLETED'],
            ]),
          );
          expect(after.body.latest.savepoint?.external_path).toBe(location);
        },
        { timeout: 30_000, interval: 250 },
      );

      // And bad requests are refused in Flink's error shape, without triggering anything
      const refused = async (method: string, url: string, status: number, message: RegExp, body?: string) => {
        const answer = await call<{ errors: string[] }>(method, url, body);
        expect(answer.status, `${method} ${url}`).toBe(status);
        expect(answer.body.errors).toHaveLength(1);
        expect(answer.body.errors[0]).toMatch(message);
      };
      await refused('GET', '/jobs/other-job', 404, /Job other-job not found/);
      await refused('GET', `/jobs/${name}/nope`, 404, /^Not found: /);
      await refused('POST', `/jobs/${name}/savepoints`, 400, /not valid JSON/, '{"target-directory": ');
      await refused('POST', `/jobs/${name}/stop`, 400, /unknown field 'target-directory'/, JSON.stringify({ 'target-directory': 's3://x/y' }));
      // Savepoint targets outside the job's own storage (its savepoint directory, its prefix in its bucket) are 400s
      await refused('POST', `/jobs/${name}/savepoints`, 400, /outside the job's own storage/, JSON.stringify({ 'target-directory': `s3://${names.bucket}/other-job/sp` }));
      await refused('POST', `/jobs/${name}/savepoints`, 400, /is not an s3:\/\/ URL/, JSON.stringify({ 'target-directory': '../../etc/floe-pwn' }));
      await refused('POST', `/jobs/${name}/stop`, 400, /outside the job's own storage/, JSON.stringify({ targetDirectory: 's3://someone-elses-bucket/sp' }));
      await refused('GET', `/jobs/${name}/savepoints/${'0'.repeat(31)}1`, 404, /no savepoint operation with triggerId/);
      await refused('GET', `/jobs/${name}/savepoints/not-a-trigger`, 404, /no savepoint operation with triggerId/);
      await refused('PATCH', `/jobs/${name}?mode=stop`, 400, /use POST \/jobs\/:jobid\/stop/);
      await refused('DELETE', `/jobs/${name}`, 405, /Method DELETE is not allowed/);
      expect((await store.require(name)).state.nextCheckpointId).toBe(next + 2);

      // When the job is stopped with a savepoint: it completes in the default directory and the job finishes
      const stop = await call<{ 'request-id': string }>('POST', `/jobs/${name}/stop`, JSON.stringify({ drain: false }));
      expect(stop.status, JSON.stringify(stop.body)).toBe(202);
      const stopped = await settled(`/jobs/${name}/savepoints/${stop.body['request-id']}`);
      expect(stopped.operation?.['location']).toMatch(new RegExp(`^s3://${names.bucket}/api-savepoints/`));
      expect((await run).state).toBe('FINISHED');
      await vi.waitFor(async () => expect((await call<JobIdsWithStatusOverview>('GET', '/jobs')).body.jobs[0]!.status).toBe('FINISHED'), { timeout: 10_000 });
      await refused('POST', `/jobs/${name}/savepoints`, 400, /is FINISHED; it takes savepoints only while RUNNING/);

      // And every request was logged as one Powertools JSON line with its method, path and status
      expect(logged).toContainEqual(expect.objectContaining({ level: 'INFO', service: 'floe', method: 'POST', path: `/jobs/${name}/stop`, status: 202 }));
      expect(logged).toContainEqual(expect.objectContaining({ level: 'WARN', service: 'floe', method: 'GET', path: '/jobs/other-job', status: 404, errors: ['Job other-job not found.'] }));
    } finally {
      if (runner.overview().state === 'RUNNING') {
        await runner.cancel().catch(() => {});
        await run;
      }
    }
  }, 240_000);
});
