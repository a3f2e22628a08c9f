import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { connectionProblems, main, startProblems } from '../../lib/cli/main.js';
import { readStackOutputsFile } from '../../lib/hosts/lambda/stack-outputs.js';

afterEach(() => vi.restoreAllMocks());

describe('control commands against a stack: flags', () => {
  it('rejects --stack/--outputs together with --port/--url, naming both', async () => {
    const stderr: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (stderr.push(String(chunk)), true));
    const code = await main(['checkpoints', 'job', '--port', '8081', '--outputs', 'out.json']);
    expect(code).toBe(1);
    expect(stderr.join('')).toMatch(/--port .*and --outputs .*exclude each other/);
    expect(connectionProblems({ url: 'http://x', stack: 's' })[0]).toMatch(/--url .*--stack/);
  });

  it('wants --stack or --outputs with --aws-endpoint, and a URL', () => {
    expect(connectionProblems({ awsEndpoint: 'http://127.0.0.1:5000' })).toEqual(['--aws-endpoint needs --stack or --outputs']);
    expect(connectionProblems({ stack: 's', awsEndpoint: 'nope' })[0]).toMatch(/must be a URL/);
    expect(connectionProblems({ stack: 's', awsEndpoint: 'http://127.0.0.1:5000' })).toEqual([]);
  });
});

describe('floe start: flags', () => {
  it.each([
    [{ stack: 's', fromSavepoint: 's3://b/sp/savepoint-1' }, []],
    [{ outputs: 'o.json', fromCheckpoint: 'latest', allowNonRestoredState: true }, []],
    [{ stack: 's', fromCheckpoint: 's3://b/wc/checkpoints/chk-4' }, []],
    [{ stack: 's', emptyState: true }, []],
    [{ stack: 's' }, [/say where the job starts from: --from-savepoint .*--from-checkpoint .*--empty-state/]],
    [{ stack: 's', fromSavepoint: 's3://b/x', emptyState: true }, [/--from-savepoint, --empty-state exclude each other/]],
    [{ stack: 's', emptyState: true, allowNonRestoredState: true }, [/--allow-non-restored-state needs --from-savepoint or --from-checkpoint/]],
    [{ stack: 's', fromSavepoint: '.floe/savepoints/savepoint-1' }, [/--from-savepoint of a deployed job takes an s3:\/\/ location, got '.floe/]],
    [{ fromSavepoint: 's3://b/x' }, [/name it with --stack or --outputs .*floe run <job-file> --from-savepoint/]],
  ])('%j → %j', (flags, expected) => {
    const problems = startProblems(flags);
    expect(problems).toHaveLength(expected.length);
    expected.forEach((re, i) => expect(problems[i]).toMatch(re));
  });

  it('lists every problem at once before touching anything', async () => {
    const stderr: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (stderr.push(String(chunk)), true));
    const code = await main(['start', '--from-checkpoint', 'chk-3', '--empty-state']);
    expect(code).toBe(1);
    const text = stderr.join('');
    expect(text).toMatch(/--stack or --outputs/);
    expect(text).toMatch(/exclude each other/);
    expect(text).toMatch(/takes an s3:\/\/ location or 'latest', got 'chk-3'/);
  });
});

describe('stack outputs file', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reads the cdk --outputs-file shape, picking the only Floe stack, and names what is missing', async () => {
    dir = await mkdtemp(join(tmpdir(), 'floe-outputs-'));
    const file = join(dir, 'o.json');
    const floe = { FloeJobName: 'wc', FloeCoordinatorTable: 't', FloeStateMachineArn: 'arn', FloeQueueUrls: '{"a":"http://q"}' };
    await writeFile(file, JSON.stringify({ Other: { X: '1' }, WcStack: floe }));
    const outputs = await readStackOutputsFile(file);
    expect(outputs).toMatchObject({ jobName: 'wc', coordinatorTable: 't', stateMachineArn: 'arn', queueUrls: { a: 'http://q' } });
    await expect(readStackOutputsFile(file, 'Nope')).rejects.toThrow(/no stack 'Nope'/);
    await writeFile(file, JSON.stringify({ S: { FloeJobName: 'wc' } }));
    await expect(readStackOutputsFile(file)).rejects.toThrow(/FloeCoordinatorTable is missing; output FloeStateMachineArn is missing/);
  });
});
