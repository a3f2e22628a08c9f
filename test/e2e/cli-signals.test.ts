/**
 * `floe run` as a shell sees it: SIGINT and SIGTERM cancel the job (its checkpoints kept) and the process then exits
 * with 128 + the signal's number, 130 and 143, embedded and in emulator mode (against the test emulator that
 * test/support/moto-global-setup.ts starts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { listCheckpoints } from '../../lib/runtime/snapshot-catalog.js';
import { FloeProcess } from '../support/floe-process.js';

const dirs: string[] = [];
afterEach(async () => {
  await FloeProcess.killAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('floe run and signals', () => {
  it.each([
    { mode: 'embedded', signal: 'SIGINT', code: 130 },
    { mode: 'embedded', signal: 'SIGTERM', code: 143 },
    { mode: 'emulator', signal: 'SIGINT', code: 130 },
    { mode: 'emulator', signal: 'SIGTERM', code: 143 },
  ] as const)('$mode: $signal cancels the job and exits $code', async ({ mode, signal, code }) => {
    // Given the clicks job rate-limited to run for about a minute, past its first checkpoint
    const work = mkdtempSync(join(tmpdir(), 'floe-signals-'));
    dirs.push(work);
    const job = FloeProcess.run({
      jobFile: 'examples/clicks.ts',
      checkpointInterval: '200ms',
      // Emulator mode checkpoints into the job's bucket.
      ...(mode === 'emulator' ? { awsEndpoint: process.env.AWS_ENDPOINT_URL! } : { checkpointDir: join(work, 'chk') }),
      jobArgs: ['--output', join(work, 'out'), '--rate', '1000', '--count', '60000'],
    });
    await job.waitForLine(/checkpoint \d+ completed/, { timeoutMs: 60_000 });

    // When it gets the signal
    expect(job.kill(signal)).toBe(true);

    // Then it cancels the job and exits as a shell expects of a process the signal ended
    const exit = await job.waitForExit(60_000);
    expect(exit, job.stderr()).toEqual({ code, signal: null });
    expect(job.stderr()).toContain(`interrupted (${signal}): cancelling the job`);
    expect(job.stderr()).toMatch(/job cancelled after/);
    expect(job.stderr()).not.toMatch(/job finished/);
    // (embedded, the checkpoints are on local disk to look at)
    if (mode === 'embedded') expect((await listCheckpoints(new FileCheckpointStorage(), join(work, 'chk'), 'clicks')).some((c) => c.complete)).toBe(true);
  }, 120_000);
});
