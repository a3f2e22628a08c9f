import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FloeProcess, REPO_ROOT } from '../support/floe-process.js';
import { compareWithOracle, countWords, describeDiff, generateWordInput, readCommittedOutput } from '../support/wordcount-oracle.js';

const dirs: string[] = [];
afterEach(async () => {
  await FloeProcess.killAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The environment without a token of the caller's own, so a test says which token each command has. */
const { FLOE_AUTH_TOKEN: _ambient, ...baseEnv } = process.env;

function floeWith(env: Record<string, string>, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['bin/floe.js', ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000, env: { ...baseEnv, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function floe(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  return floeWith({}, ...args);
}

describe('floe control commands against a running job', () => {
  it('lists checkpoints, takes a savepoint, stops with one, and a relocated savepoint restores at another parallelism exactly once', async () => {
    // Given a word count over enough input to run for a few seconds
    const work = mkdtempSync(join(tmpdir(), 'floe-cli-e2e-'));
    dirs.push(work);
    const input = await generateWordInput(join(work, 'in'), { words: 1_200_000 });
    const oracle = await countWords(input.dir);
    const output = join(work, 'out');
    const job = FloeProcess.run({
      jobFile: 'examples/wordcount.ts',
      checkpointInterval: '300ms',
      checkpointDir: join(work, 'chk'),
      jobArgs: ['--input', input.dir, '--output', output, '--parallelism', '2'],
    });
    const rest = await job.waitForLine(/REST API at (http:\/\/\S+)/, { timeoutMs: 30_000, orExit: true });
    expect(rest, job.stderr()).toBeDefined();
    const url = rest!.match[1]!;
    await job.waitForLine(/checkpoint \d+ completed/, { timeoutMs: 30_000, orExit: true });

    // When the CLI lists checkpoints and takes a savepoint
    const listed = floe('checkpoints', 'wordcount', '--url', url);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/COMPLETED/);
    const savepoint = floe('savepoint', 'wordcount', join(work, 'sp'), '--url', url);
    expect(savepoint.code, savepoint.stderr).toBe(0);
    expect(savepoint.stdout).toMatch(/savepoint-/);

    // And stops the job with a savepoint
    const stop = floe('stop', 'wordcount', '--savepoint', join(work, 'sp'), '--url', url);
    expect(stop.code, stop.stderr).toBe(0);
    const stopPath = /(\S*savepoint-\S+)/.exec(stop.stdout)?.[1];
    expect(stopPath, stop.stdout).toBeDefined();
    const exit = await job.waitForExit(30_000);
    expect(exit.code, job.stderr()).toBe(0);
    expect(job.stderr()).toMatch(/job stopped with savepoint/);

    // Then the savepoint is self-contained: moved elsewhere, it inspects and restores at parallelism 3
    const relocated = join(work, 'moved-savepoint');
    cpSync(stopPath!, relocated, { recursive: true });
    rmSync(join(work, 'sp'), { recursive: true, force: true });
    const inspected = floe('inspect', relocated);
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(inspected.stdout).toMatch(/Kind:\s+savepoint/);
    expect(inspected.stdout).toMatch(/Format:\s+canonical/);

    const resumed = floe('run', 'examples/wordcount.ts', '--from-savepoint', relocated, '--parallelism', '3', '--port', '0', '--checkpoint-dir', join(work, 'chk2'), '--', '--input', input.dir, '--output', output);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/restored from savepoint/);
    expect(resumed.stderr).toMatch(/rescaled from parallelism 2 to 3/);
    const diff = compareWithOracle(await readCommittedOutput(output), oracle);
    expect(diff.ok, describeDiff(diff)).toBe(true);
  }, 120_000);

  it('a job started with --auth-token answers only the CLI calls that carry its token, from the flag or FLOE_AUTH_TOKEN', async () => {
    // Given a job that requires a token
    const work = mkdtempSync(join(tmpdir(), 'floe-cli-token-'));
    dirs.push(work);
    // (Large enough that the job is still running after the CLI calls below, each a process of its own: 600,000
    // words were done in 2 s on a fresh machine.)
    const input = await generateWordInput(join(work, 'in'), { words: 6_000_000 });
    const job = FloeProcess.run({
      jobFile: 'examples/wordcount.ts',
      checkpointInterval: '300ms',
      checkpointDir: join(work, 'chk'),
      authToken: 't0ken',
      jobArgs: ['--input', input.dir, '--output', join(work, 'out')],
    });
    const rest = await job.waitForLine(/REST API at (http:\/\/\S+)/, { timeoutMs: 30_000, orExit: true });
    expect(rest, job.stderr()).toBeDefined();
    const url = rest!.match[1]!;

    // When the CLI calls without the token, with a wrong one, and with the right one
    const without = floe('cancel', 'wordcount', '--url', url);
    expect(without.code).toBe(1);
    expect(without.stderr).toMatch(/Missing credentials.*--auth-token or FLOE_AUTH_TOKEN/);
    const wrong = floeWith({ FLOE_AUTH_TOKEN: 'guess' }, 'cancel', 'wordcount', '--url', url);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/Wrong credentials/);
    const listed = floeWith({ FLOE_AUTH_TOKEN: 't0ken' }, 'checkpoints', 'wordcount', '--url', url);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/wordcount/);

    // Then only the call with the token cancels the job
    const cancel = floe('cancel', 'wordcount', '--url', url, '--auth-token', 't0ken');
    expect(cancel.code, cancel.stderr).toBe(0);
    const exit = await job.waitForExit(30_000);
    // A cancelled run did not commit all its output: it says so and does not exit 0
    expect(exit.code, job.stderr()).toBe(1);
    expect(job.stderr()).toMatch(/job cancelled after .*: output written since (it started|checkpoint \d+) was not committed/);
  }, 120_000);
});
