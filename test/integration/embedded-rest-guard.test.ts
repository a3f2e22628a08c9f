import { execFileSync } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join, relative, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { runJobFile } from '../../lib/cli/run-job-file.js';
import { startRestServer, type RestServer } from '../../lib/rest/server.js';
import { Scratch, captureLog, runOptions, runningCountsJob, sourceRecordsRead, startRunner, waitFor } from '../support/jobs.js';

// The REST API of a real embedded runner, over real HTTP: what a web page can send is refused and the job runs on;
// savepoint targets that cannot work are refused before the coordinator triggers anything.

const scratch = new Scratch();
let server: RestServer | undefined;
let runner: EmbeddedRunner | undefined;
const unfreeze: string[] = [];

afterEach(async () => {
  await server?.close();
  server = undefined;
  await runner?.cancel();
  runner = undefined;
  for (const d of unfreeze.splice(0)) {
    try {
      execFileSync('chattr', ['-i', d]);
    } catch {
      chmodSync(d, 0o755);
    }
  }
  await scratch.cleanup();
});

/** A running job (slow enough to outlive the test) with its REST API on an ephemeral port. */
async function runningJob(): Promise<{ runner: EmbeddedRunner; server: RestServer; log: ReturnType<typeof captureLog> }> {
  const log = captureLog();
  const checkpoints = await scratch.dir('floe-guard-chk-');
  // Periodic checkpoints off: every entry in the coordinator's history is one the test asked for.
  runner = new EmbeddedRunner(
    runningCountsJob({ count: 1_000_000, ratePerSecond: 200, sink: scratch.collector<string>() }),
    runOptions(checkpoints, log.log, { checkpoint: { interval: 0 } }),
  );
  await startRunner(runner);
  server = await startRestServer(runner, { port: 0 });
  return { runner, server, log };
}

function send(method: string, path: string, headers: Record<string, string>, body?: string) {
  return new Promise<{ status: number; body: { errors?: string[]; 'request-id'?: string; [k: string]: unknown } }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server!.port, method, path, headers: { Host: `127.0.0.1:${server!.port}`, ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { errors?: string[] } }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const json = { 'Content-Type': 'application/json' };

/** Savepoints the coordinator has started or finished: none while every request was refused. */
function savepointsTriggered(r: EmbeddedRunner): number {
  const state = r.coordinatorState();
  return state.history.filter((h) => h.kind === 'savepoint').length + state.pending.filter((p) => p.kind === 'savepoint').length;
}

describe('the embedded runner over REST', () => {
  it('a web page cannot stop the job: foreign Origin, text/plain and a rebound Host are refused, and the job keeps running', async () => {
    const { runner: r, server: s } = await runningJob();
    const job = r.jobId;
    const attempts = [
      { what: 'a foreign Origin', headers: { ...json, Origin: 'http://attacker.example' }, status: 403 },
      { what: 'text/plain (no preflight)', headers: { 'Content-Type': 'text/plain' }, status: 415 },
      { what: 'a rebound DNS name', headers: { ...json, Host: `attacker.example:${s.port}` }, status: 403 },
      { what: 'cross-site fetch metadata', headers: { ...json, 'Sec-Fetch-Site': 'cross-site' }, status: 403 },
    ];
    for (const a of attempts) {
      const answer = await send('POST', `/jobs/${job}/stop`, a.headers, '{"drain": true}');
      expect(answer.status, a.what).toBe(a.status);
      expect(answer.body.errors, a.what).toHaveLength(1);
    }
    const readBefore = sourceRecordsRead(r);
    // Still running: its source goes on reading after every refusal.
    await waitFor('the source to read on', () => sourceRecordsRead(r) > readBefore);
    expect(r.overview().state).toBe('RUNNING');
    expect(savepointsTriggered(r)).toBe(0);
  });

  it('its own client is served: the right Host, Origin and JSON take a savepoint', async () => {
    const { runner: r, server: s } = await runningJob();
    const dir = await scratch.dir('floe-guard-sp-');
    const answer = await send(
      'POST',
      `/jobs/${r.jobId}/savepoints`,
      { ...json, Host: `localhost:${s.port}`, Origin: `http://localhost:${s.port}` },
      JSON.stringify({ 'target-directory': dir }),
    );
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    const status = await waitFor('the savepoint', async () => {
      const b = (await send('GET', `/jobs/${r.jobId}/savepoints/${answer.body['request-id']}`, {})).body as { status: { id: string }; operation?: { location?: string } };
      return b.status.id === 'COMPLETED' ? b : undefined;
    });
    expect(status.operation?.location).toMatch(new RegExp(`^${dir}/savepoint-`));
  });
});

describe('savepoint targets are checked before anything is triggered', () => {
  /** Makes `dir` unwritable even for root (an immutable directory); undefined when this machine cannot. */
  function unwritable(dir: string): string | undefined {
    try {
      if (process.getuid?.() === 0) execFileSync('chattr', ['+i', dir], { stdio: 'ignore' });
      else chmodSync(dir, 0o555);
      unfreeze.push(dir);
      accessSync(dir, constants.W_OK);
      return undefined;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EACCES' || (e as NodeJS.ErrnoException).code === 'EPERM' ? dir : undefined;
    }
  }

  const cases: ReadonlyArray<[string, (base: string) => string | undefined, RegExp]> = [
    ['under /proc', () => '/proc/self/floe-savepoints', /inside \/proc/],
    ['escaping into /proc with ..', (base) => relative(process.cwd(), join(base, '..', '..', '..', '..', '..', '..', '..', '..', 'proc', 'floe')), /inside \/proc/],
    ['under /sys', () => '/sys/kernel/floe', /inside \/sys/],
    ['under /dev', () => '/dev/shm/../floe', /inside \/dev/],
    [
      'through a symlink into /proc',
      (base) => {
        symlinkSync('/proc/self', join(base, 'link'));
        return join(base, 'link', 'sp');
      },
      /leads into \/proc/,
    ],
    [
      'through a regular file',
      (base) => {
        writeFileSync(join(base, 'file'), 'x');
        return join(base, 'file', 'sp');
      },
      /runs through .*\/file, which is not a directory/,
    ],
    [
      'in an unwritable directory',
      (base) => {
        mkdirSync(join(base, 'ro'));
        return unwritable(join(base, 'ro')) && join(base, 'ro', 'sp');
      },
      /cannot be created: .*\/ro is not writable/,
    ],
    ['an s3:// URL', () => 's3://bucket/sp', /is a URL/],
  ];

  it.for(cases)('refuses a target %s with 400, on /savepoints and on /stop, and triggers nothing', async ([what, make, reason], ctx) => {
    const { runner: r } = await runningJob();
    const target = make(await scratch.dir('floe-guard-target-'));
    if (target === undefined) {
      ctx.skip(`${what}: this machine cannot make a directory unwritable`);
      return;
    }
    const viaSavepoint = await send('POST', `/jobs/${r.jobId}/savepoints`, json, JSON.stringify({ 'target-directory': target }));
    const viaStop = await send('POST', `/jobs/${r.jobId}/stop`, json, JSON.stringify({ targetDirectory: target }));
    for (const answer of [viaSavepoint, viaStop]) {
      expect(answer.status, JSON.stringify(answer.body)).toBe(400);
      expect(answer.body.errors![0]).toMatch(reason);
    }
    expect(savepointsTriggered(r)).toBe(0);
    expect(r.overview().state).toBe('RUNNING');
  });

  it('a relative target with .. is the user\'s own path: it resolves against the working directory and is written there', async () => {
    const { runner: r } = await runningJob();
    const base = await scratch.dir('floe-guard-rel-');
    const target = relative(process.cwd(), join(base, 'a', '..', 'b'));
    expect(target).toMatch(/^\.\.\//);
    const answer = await send('POST', `/jobs/${r.jobId}/savepoints`, json, JSON.stringify({ 'target-directory': target }));
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    const status = await waitFor('the savepoint', () => {
      const s = r.triggerStatus(answer.body['request-id']!);
      return s && s.status !== 'IN_PROGRESS' ? s : undefined;
    });
    expect(status.status, status.failureCause).toBe('COMPLETED');
    expect(status.location).toMatch(new RegExp(`^${join(base, 'b')}/savepoint-`));
  });
});

describe('floe run start-up', () => {
  it.each([
    ['under /proc', () => '/proc/self/floe-savepoints', /inside \/proc/],
    [
      'through a regular file',
      (base: string) => {
        writeFileSync(join(base, 'file'), 'x');
        return join(base, 'file', 'sp');
      },
      /not a directory/,
    ],
  ])('refuses a job whose savepoint.dir is %s at start-up, with INVALID_OPTIONS', async (_what, make, reason) => {
    const base = await scratch.dir('floe-guard-startup-');
    const lib = (p: string) => JSON.stringify(resolve('lib', p));
    const jobFile = join(base, 'job.ts');
    writeFileSync(
      jobFile,
      `import { Job, generator, stdoutSink } from ${lib('index.ts')};\n` +
        `const job = new Job('startup-check', { savepoint: { dir: ${JSON.stringify(make(base))} } });\n` +
        "job.source(generator({ generate: (i) => i, count: 10 }), { uid: 'numbers' }).sinkTo(stdoutSink(), { uid: 'out' });\n" +
        'export default job;\n',
    );
    const run = runJobFile({ jobFile, jobArgs: [], port: 0, progress: false, checkpointDir: join(base, 'chk') });
    await expect(run).rejects.toThrow(reason);
    await expect(run).rejects.toMatchObject({ code: 'INVALID_OPTIONS', message: expect.stringMatching(/savepoint\.dir/) });
  });
});
