import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../lib/cli/main.js';
import { validateRunFlags } from '../../lib/cli/run-options.js';
import { formatCheckpoints } from '../../lib/cli/checkpoints-table.js';
import { recordTotals, startProgress } from '../../lib/cli/progress.js';
import { describeManifest } from '../../lib/core/manifest/inspect.js';
import { ManifestSerializer } from '../../lib/core/manifest/serializer.js';
import type { Manifest } from '../../lib/core/manifest/model.js';
import { ValidationError } from '../../lib/core/errors.js';
import { JobControlBuilder, type FakeJobControl } from '../support/job-control-builder.js';
import { startRestServer, type RestServer } from '../../lib/rest/server.js';
import { checkpointingStatistics } from '../../lib/rest/checkpoint-statistics.js';

let stdout = '';
let stderr = '';
let tmp: string;
let server: RestServer | undefined;

beforeEach(() => {
  stdout = '';
  stderr = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  tmp = mkdtempSync(join(tmpdir(), 'floe-cli-'));
});

afterEach(async () => {
  vi.restoreAllMocks();
  rmSync(tmp, { recursive: true, force: true });
  await server?.close();
  server = undefined;
});

async function serve(control: FakeJobControl): Promise<string> {
  server = await startRestServer(control, { port: 0 });
  return server.url;
}

function manifest(): Manifest {
  return {
    formatVersion: 1,
    job: 'wordcount',
    jobId: 'a5e0edd8e66b53f1b89c2041f91b8fd2',
    graphFingerprint: 'abc123',
    checkpointId: 3,
    kind: 'checkpoint',
    format: 'native',
    generation: 0,
    triggeredAt: 1_700_000_000_000,
    completedAt: 1_700_000_000_250,
    maxParallelism: 128,
    endOfInput: false,
    operators: [
      {
        uid: 'count',
        name: 'count',
        parallelism: 1,
        stateful: true,
        subtasks: [
          {
            subtask: 0,
            keyGroups: [0, 128],
            keyedState: [{ path: 'state/count-0-3.json', kind: 'full', size: 2048, entries: 10, keyGroups: [0, 128] }],
            operatorState: [],
            pendingCommits: [],
            stats: { ackTimestamp: 1_700_000_000_200, alignmentMs: 1, syncMs: 1, asyncMs: 3, startDelayMs: 2, stateSize: 2048, fullSize: 2048 },
          },
        ],
      },
    ],
  };
}

function writeSnapshot(metadata: string | Uint8Array): string {
  const dir = join(tmp, 'wordcount', 'checkpoints', 'chk-3');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '_metadata'), metadata);
  return dir;
}

describe('floe inspect', () => {
  it.each([
    ['the snapshot directory', (dir: string) => dir],
    ['the _metadata file', (dir: string) => join(dir, '_metadata')],
  ])('describes a valid manifest given %s', async (_what, pathOf) => {
    const dir = writeSnapshot(ManifestSerializer.serialize(manifest()));
    const code = await main(['inspect', pathOf(dir)]);
    expect(code).toBe(0);
    expect(stdout).toBe(describeManifest(manifest(), dir));
    expect(stderr).toBe('');
  });

  it('prints the parsed manifest as JSON with --json', async () => {
    const dir = writeSnapshot(ManifestSerializer.serialize(manifest()));
    expect(await main(['inspect', dir, '--json'])).toBe(0);
    expect(JSON.parse(stdout)).toEqual(manifest());
  });

  it.each([
    ['truncated JSON', '{"formatVersion": 1, "job": ', /_metadata is corrupt: not valid JSON/],
    ['a missing field', JSON.stringify({ ...manifest(), checkpointId: undefined }), /_metadata is corrupt:\n\s+- checkpointId/],
    ['an unknown version', JSON.stringify({ ...manifest(), formatVersion: 99 }), /has formatVersion 99, but this Floe reads only formatVersion 1/],
  ])('rejects %s with the message on stderr, no stack, exit 1', async (_what, text, message) => {
    const dir = writeSnapshot(text);
    const code = await main(['inspect', dir]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^error: /);
    expect(stderr).toMatch(message);
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it('says so when the path does not exist or holds no _metadata', async () => {
    expect(await main(['inspect', join(tmp, 'nope')])).toBe(1);
    expect(stderr).toMatch(/nope does not exist/);
    stderr = '';
    expect(await main(['inspect', tmp])).toBe(1);
    expect(stderr).toMatch(/there is no _metadata in it/);
  });

  it.each([
    ['a local path', (dir: string) => ['inspect', dir, '--aws-endpoint', 'http://127.0.0.1:5000'], /--aws-endpoint applies to s3:\/\/ paths only/],
    ['an endpoint that is not a URL', () => ['inspect', 's3://bucket/wordcount/savepoints/savepoint-1', '--aws-endpoint', '127.0.0.1:5000'], /--aws-endpoint must be an http\(s\) URL/],
  ])('refuses --aws-endpoint with %s before reading anything', async (_what, argv, message) => {
    const dir = writeSnapshot(ManifestSerializer.serialize(manifest()));
    expect(await main(argv(dir))).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(message);
  });
});

describe('floe --help', () => {
  it('lists every subcommand', async () => {
    expect(await main(['--help'])).toBe(0);
    for (const command of ['run', 'savepoint', 'stop', 'cancel', 'checkpoints', 'status', 'inspect']) expect(stdout).toMatch(new RegExp(`^\\s+${command} `, 'm'));
  });

  it.each([
    ['run', ['--checkpoint-interval', '--checkpoint-dir', '--from-checkpoint', '--from-savepoint', '--allow-non-restored-state', '--parallelism', '--port']],
    ['savepoint', ['<job-id>', '[dir]', '--port', '--url']],
    ['stop', ['--savepoint', '--drain', '--port', '--url']],
    ['cancel', ['<job-id>', '--port', '--url']],
    ['checkpoints', ['<job-id>', '--port', '--url']],
    ['status', ['<job-id>', '--port', '--url', '--stack', '--json']],
    ['inspect', ['<path>']],
  ])('documents %s', async (command, words) => {
    expect(await main([command, '--help'])).toBe(0);
    expect(stdout).toMatch(new RegExp(`^Usage: floe ${command}`));
    for (const word of words) expect(stdout).toContain(word);
  });

  it('fails with exit 1 on an unknown command or option', async () => {
    expect(await main(['explode'])).toBe(1);
    expect(stderr).toMatch(/unknown command 'explode'/);
    stderr = '';
    expect(await main(['cancel', 'x', '--bogus'])).toBe(1);
    expect(stderr).toMatch(/unknown option '--bogus'/);
  });
});

describe('floe status', () => {
  it('prints the state, the restarts and the failure cause with its stack trace', async () => {
    const cause = "task count:0 failed: operator 'count' threw: boom\n    at Object.processElement (/app/job.ts:12:9)";
    const url = await serve(new JobControlBuilder().withOverview({ state: 'FAILED', restarts: 3, failureCause: cause }).build());
    expect(await main(['status', 'wordcount', '--url', url])).toBe(0);
    expect(stdout).toMatch(/^Job wordcount \([0-9a-f]+\): FAILED, 3 restarts$/m);
    expect(stdout).toContain(`Failure cause:\n${cause}\n`);
  });

  it("prints Flink's JSON with --json, and no failure cause for a running job", async () => {
    const url = await serve(new JobControlBuilder().build());
    expect(await main(['status', 'wordcount', '--url', url, '--json'])).toBe(0);
    const details = JSON.parse(stdout) as { state: string; restarts: number };
    expect(details).toMatchObject({ state: 'RUNNING', restarts: 0 });
    expect(details).not.toHaveProperty('failure-cause');
    expect(details).not.toHaveProperty('quiet-since');
  });

  it('says when periodic checkpoints are paused because the job did no work', async () => {
    const since = Date.UTC(2026, 0, 2, 3, 4, 5);
    const url = await serve(new JobControlBuilder().withOverview({ quietSince: since }).build());
    expect(await main(['status', 'wordcount', '--url', url])).toBe(0);
    expect(stdout).toMatch(/^Periodic checkpoints paused since 2026-01-02T03:04:05.000Z: no work since the last checkpoint/m);
    expect(await main(['status', 'wordcount', '--url', url, '--json'])).toBe(0);
    expect(stdout).toContain(`"quiet-since": ${since}`);
  });
});

describe('floe checkpoints', () => {
  const control = () => new JobControlBuilder().withCompleted(1).withCompleted(2, { kind: 'savepoint' }).withFailed(3, 'expired').withCompleted(4).withPending(5, ['count:0']).build();

  it('prints counts, the latest completed checkpoint and a table with every id', async () => {
    const url = await serve(control());
    expect(await main(['checkpoints', 'wordcount', '--url', url])).toBe(0);
    expect(stdout).toMatch(/3 completed, 1 in progress, 1 failed, 0 restored \(5 total\)/);
    expect(stdout).toMatch(/^Latest completed: 4 at .*chk-4$/m);
    expect(stdout).toMatch(/^ID\s+STATUS\s+TYPE\s+TRIGGERED\s+DURATION\s+STATE SIZE\s+ACKS\s+PATH$/m);
    const rows = stdout.split('\n').filter((l) => /^\d+ /.test(l));
    expect(rows.map((l) => Number(l.split(/\s+/)[0]))).toEqual([5, 4, 3, 2, 1]);
    expect(rows[0]).toMatch(/IN_PROGRESS\s+checkpoint.*1\/4/);
    expect(rows[2]).toMatch(/FAILED.*failed: expired/);
    expect(rows[3]).toMatch(/COMPLETED\s+savepoint/);
  });

  it('accepts --port', async () => {
    await serve(control());
    expect(await main(['checkpoints', 'wordcount', '--port', String(server!.port)])).toBe(0);
    expect(stdout).toMatch(/^4 /m);
  });

  it("prints Flink's JSON with --json", async () => {
    const url = await serve(control());
    expect(await main(['checkpoints', 'wordcount', '--url', url, '--json'])).toBe(0);
    expect(JSON.parse(stdout).counts.completed).toBe(3);
  });

  it('says when no job answers', async () => {
    const url = await serve(control());
    await server!.close();
    server = undefined;
    expect(await main(['checkpoints', 'wordcount', '--url', url])).toBe(1);
    expect(stderr).toBe(`error: no Floe job answers at ${url}; is \`floe run\` running? use --port or --url\n`);
  });

  it("surfaces the server's error message", async () => {
    const url = await serve(control());
    expect(await main(['checkpoints', 'nope', '--url', url])).toBe(1);
    expect(stderr).toBe('error: Job nope not found.\n');
  });

  it('rejects a bad --port or --port with --url before any request', async () => {
    expect(await main(['checkpoints', 'wordcount', '--port', 'http'])).toBe(1);
    expect(stderr).toMatch(/--port must be an integer from 0 to 65535, got 'http'/);
    stderr = '';
    expect(await main(['checkpoints', 'wordcount', '--port', '1', '--url', 'http://127.0.0.1:1'])).toBe(1);
    expect(stderr).toMatch(/use --port or --url, not both/);
  });

  it('formats an empty history', () => {
    const c = new JobControlBuilder().build();
    const text = formatCheckpoints('wordcount', checkpointingStatistics(c.overview(), c.coordinatorState()));
    expect(text).toMatch(/Latest completed: none/);
    expect(text).toMatch(/No checkpoints yet\./);
  });
});

describe('floe savepoint, stop, cancel', () => {
  /** Completes each savepoint trigger once its status has been polled `polls` times. */
  function completingAfter(control: FakeJobControl, polls: number, location: (dir?: string) => string): FakeJobControl {
    const seen = new Map<string, number>();
    const status = control.triggerStatus.bind(control);
    control.triggerStatus = (id) => {
      const n = (seen.get(id) ?? 0) + 1;
      seen.set(id, n);
      if (n >= polls) control.settle(id, { status: 'COMPLETED', checkpointId: 7, location: location(control.calls.savepoints.at(-1)?.dir) });
      return status(id);
    };
    return control;
  }

  it('savepoint waits until the trigger completes and prints the location', async () => {
    const control = completingAfter(new JobControlBuilder().build(), 2, (dir) => `${dir}/savepoint-7`);
    const url = await serve(control);
    expect(await main(['savepoint', 'wordcount', '/tmp/sp', '--url', url])).toBe(0);
    expect(stdout).toBe('Savepoint completed. Path: /tmp/sp/savepoint-7\n');
    expect(control.calls.savepoints).toEqual([{ dir: '/tmp/sp', termination: undefined }]);
  });

  it('savepoint reports a failed savepoint with exit 1', async () => {
    const control = new JobControlBuilder().build();
    const trigger = control.triggerSavepoint.bind(control);
    control.triggerSavepoint = (request) => {
      const id = trigger(request);
      control.settle(id, { status: 'FAILED', failureCause: 'checkpoint 7 expired' });
      return id;
    };
    const url = await serve(control);
    expect(await main(['savepoint', 'wordcount', '--url', url])).toBe(1);
    expect(stderr).toMatch(/error: savepoint failed: checkpoint 7 expired/);
  });

  it('stop --drain stops with a draining savepoint and prints its path', async () => {
    const control = completingAfter(new JobControlBuilder().build(), 1, () => '.floe/savepoints/savepoint-7');
    const url = await serve(control);
    expect(await main(['stop', 'wordcount', '--drain', '--savepoint', '/sp', '--url', url])).toBe(0);
    expect(control.calls.savepoints).toEqual([{ dir: '/sp', termination: 'drain' }]);
    expect(stdout).toBe('Savepoint completed. Path: .floe/savepoints/savepoint-7\n');
  });

  it('cancel cancels the job', async () => {
    const control = new JobControlBuilder().build();
    const url = await serve(control);
    expect(await main(['cancel', 'a5e0edd8e66b53f1b89c2041f91b8fd2', '--url', url])).toBe(0);
    expect(control.calls.cancels).toBe(1);
    expect(stdout).toBe('Cancelled job a5e0edd8e66b53f1b89c2041f91b8fd2.\n');
  });
});

describe('--auth-token', () => {
  async function serveWithToken(control: FakeJobControl, authToken: string): Promise<string> {
    server = await startRestServer(control, { port: 0, authToken });
    return server.url;
  }

  it('the control commands send the token from --auth-token, or from FLOE_AUTH_TOKEN', async () => {
    const control = new JobControlBuilder().withCompleted(1).build();
    const url = await serveWithToken(control, 's3cr3t');
    expect(await main(['checkpoints', 'wordcount', '--url', url, '--auth-token', 's3cr3t'], { env: {} })).toBe(0);
    expect(stdout).toMatch(/COMPLETED/);
    expect(await main(['cancel', 'wordcount', '--url', url], { env: { FLOE_AUTH_TOKEN: 's3cr3t' } })).toBe(0);
    expect(control.calls.cancels).toBe(1);
  });

  it('savepoint and stop send the token with their triggers and polls', async () => {
    const control = new JobControlBuilder().build();
    const status = control.triggerStatus.bind(control);
    control.triggerStatus = (id) => {
      control.settle(id, { status: 'COMPLETED', checkpointId: 7, location: '/tmp/sp/savepoint-7' });
      return status(id);
    };
    const url = await serveWithToken(control, 's3cr3t');
    expect(await main(['savepoint', 'wordcount', '/tmp/sp', '--url', url], { env: { FLOE_AUTH_TOKEN: 's3cr3t' } })).toBe(0);
    expect(await main(['stop', 'wordcount', '--url', url, '--auth-token', 's3cr3t'], { env: {} })).toBe(0);
    expect(control.calls.savepoints).toEqual([
      { dir: '/tmp/sp', termination: undefined },
      { dir: undefined, termination: 'stop' },
    ]);
  });

  it('without the token, or with a wrong one, the command fails with exit 1 saying how to pass it', async () => {
    const control = new JobControlBuilder().build();
    const url = await serveWithToken(control, 's3cr3t');
    expect(await main(['stop', 'wordcount', '--url', url], { env: {} })).toBe(1);
    expect(stderr).toMatch(/error: Missing credentials.*--auth-token or FLOE_AUTH_TOKEN/);
    expect(await main(['stop', 'wordcount', '--url', url, '--auth-token', 'guess'], { env: {} })).toBe(1);
    expect(stderr).toMatch(/error: Wrong credentials/);
    expect(control.calls.savepoints).toEqual([]);
  });

  it('is refused with --stack or --outputs, and when empty', async () => {
    expect(await main(['cancel', 'wordcount', '--outputs', join(tmp, 'o.json'), '--auth-token', 't'], { env: {} })).toBe(1);
    expect(stderr).toMatch(/--auth-token is for a job's REST API/);
    expect(await main(['cancel', 'wordcount', '--auth-token', ' '], { env: {} })).toBe(1);
    expect(stderr).toMatch(/--auth-token must not be empty/);
  });

  it('floe run hands the token from --auth-token or FLOE_AUTH_TOKEN to the runner', async () => {
    const seen: Array<string | undefined> = [];
    const runJobFile = async (o: { authToken?: string }) => {
      seen.push(o.authToken);
      return 0;
    };
    const job = join(tmp, 'job.ts');
    writeFileSync(job, 'export default {};\n');
    expect(await main(['run', job, '--auth-token', 'flag'], { runJobFile, env: { FLOE_AUTH_TOKEN: 'env' } })).toBe(0);
    expect(await main(['run', job], { runJobFile, env: { FLOE_AUTH_TOKEN: 'env' } })).toBe(0);
    expect(await main(['run', job], { runJobFile, env: { FLOE_AUTH_TOKEN: '' } })).toBe(0);
    expect(seen).toEqual(['flag', 'env', undefined]);
  });
});

describe('floe run flags', () => {
  const exists = () => true;

  it('fails naming both restore flags, before the runner is reached', async () => {
    const runJobFile = vi.fn(async () => 0);
    const code = await main(['run', 'x.ts', '--from-checkpoint', 'latest', '--from-savepoint', 'y'], { runJobFile });
    expect(code).toBe(1);
    expect(stderr).toMatch(/--from-checkpoint and --from-savepoint cannot be used together/);
    expect(runJobFile).not.toHaveBeenCalled();
  });

  it('reports every problem at once', () => {
    const attempt = () =>
      validateRunFlags('job.ts', [], { fromCheckpoint: 'latest', fromSavepoint: 'sp', parallelism: '0', checkpointInterval: 'often', port: '70000' }, { progress: false, fileExists: () => false });
    expect(attempt).toThrow(ValidationError);
    try {
      attempt();
    } catch (e) {
      expect((e as ValidationError).problems).toEqual([
        "job file 'job.ts' does not exist",
        '--from-checkpoint and --from-savepoint cannot be used together; restore from one snapshot',
        "--checkpoint-interval must be a duration like 500ms, 10s, 2m or 1h, got 'often'",
        "--parallelism must be a positive integer, got '0'",
        "--port must be an integer from 0 to 65535, got '70000'",
      ]);
    }
  });

  it.each(['1.5', '-2', 'two', ''])('rejects --parallelism %j', (parallelism) => {
    expect(() => validateRunFlags('job.ts', [], { parallelism }, { progress: false, fileExists: exists })).toThrow(/--parallelism must be a positive integer/);
  });

  it('builds the runner options from valid flags', () => {
    expect(
      validateRunFlags(
        'job.ts',
        ['--input', 'words'],
        { checkpointInterval: '5s', checkpointDir: '/ck', fromCheckpoint: 'latest', allowNonRestoredState: true, parallelism: '4', port: '0' },
        { progress: true, fileExists: exists },
      ),
    ).toEqual({
      jobFile: 'job.ts',
      jobArgs: ['--input', 'words'],
      checkpointInterval: '5s',
      checkpointDir: '/ck',
      fromCheckpoint: 'latest',
      allowNonRestoredState: true,
      parallelism: 4,
      port: 0,
      progress: true,
    });
  });

  it('hands the job arguments after -- to the runner and returns its exit code', async () => {
    const job = join(tmp, 'job.ts');
    writeFileSync(job, 'export default {};\n');
    const runJobFile = vi.fn(async () => 3);
    const code = await main(['run', job, '--parallelism', '2', '--', '--input', 'words', '-x'], { runJobFile, isTTY: false });
    expect(code).toBe(3);
    expect(runJobFile).toHaveBeenCalledWith({ jobFile: job, jobArgs: ['--input', 'words', '-x'], parallelism: 2, progress: false });
  });

  it('prints a runner error without a stack', async () => {
    const job = join(tmp, 'job.ts');
    writeFileSync(job, 'export default {};\n');
    const { FloeError } = await import('../../lib/core/errors.js');
    const runJobFile = vi.fn(async () => {
      throw new FloeError('INCOMPATIBLE_RESTORE', "state for uid 'old' has no operator; pass --allow-non-restored-state");
    });
    expect(await main(['run', job], { runJobFile })).toBe(1);
    expect(stderr).toBe("error: state for uid 'old' has no operator; pass --allow-non-restored-state\n");
  });
});

describe('progress line', () => {
  it('counts records in at sources and out at sinks', () => {
    const c = new JobControlBuilder().build();
    expect(recordTotals(c.overview(), new Set())).toEqual({ in: 1000, out: 900 });
  });

  it('falls back to the coordinator\'s source tasks and the last vertex without flags', () => {
    const overview = new JobControlBuilder()
      .withVertices([
        { id: 'src', name: 'src', parallelism: 1, recordsIn: 0, recordsOut: 10 },
        { id: 'map', name: 'map', parallelism: 1, recordsIn: 10, recordsOut: 8 },
        { id: 'out', name: 'out', parallelism: 1, recordsIn: 8, recordsOut: 0 },
      ])
      .build()
      .overview();
    expect(recordTotals(overview, new Set(['src']))).toEqual({ in: 10, out: 8 });
  });

  it('rewrites one line with rates from deltas and the last completed checkpoint, and clears it on stop', () => {
    vi.useFakeTimers();
    try {
      const control = new JobControlBuilder().withCompleted(4).build();
      let now = 0;
      const writes: string[] = [];
      const progress = startProgress(control, { write: (t) => writes.push(t) }, { now: () => now });
      const v = control.overview().vertices;
      control.setOverview({ vertices: [{ ...v[0]!, recordsOut: 3000 }, v[1]!, { ...v[2]!, recordsIn: 1900 }] });
      now = 2000;
      vi.advanceTimersByTime(1000);
      expect(writes).toHaveLength(1);
      expect(writes[0]!.startsWith('\r\x1b[2K')).toBe(true);
      expect(writes[0]).toContain('in 1,000/s');
      expect(writes[0]).toContain('out 500/s');
      expect(writes[0]).toContain('checkpoint 4 (250ms)');
      progress.stop();
      expect(writes.at(-1)).toBe('\r\x1b[2K');
      vi.advanceTimersByTime(5000);
      expect(writes).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });
});
