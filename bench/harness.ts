/** Small helpers the benchmark shares: timing, statistics, temp directories, waiting on a runner. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EmbeddedRunner, RunOutcome } from '../lib/index.js';

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Median of numbers (mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Smallest and largest value. */
export function range(values: readonly number[]): [number, number] {
  return values.length === 0 ? [NaN, NaN] : [Math.min(...values), Math.max(...values)];
}

/** A fresh directory under the OS temp dir; `dispose` removes it. */
export async function tempDir(prefix: string): Promise<{ path: string; dispose: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `floe-bench-${prefix}-`));
  return { path, dispose: () => rm(path, { recursive: true, force: true }) };
}

/** Polls `predicate` every `everyMs` until it holds; throws after `timeoutMs`. */
export async function waitUntil(what: string, predicate: () => boolean, timeoutMs: number, everyMs = 5): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Triggers a checkpoint and waits for it to complete; returns its id and location. */
export async function checkpointNow(runner: EmbeddedRunner, timeoutMs: number): Promise<{ id: number; location: string }> {
  const request = runner.triggerCheckpoint();
  let result: { id: number; location: string } | undefined;
  await waitUntil(
    'a triggered checkpoint to complete',
    () => {
      const s = runner.triggerStatus(request);
      if (s?.status === 'FAILED') throw new Error(`checkpoint ${s.checkpointId} failed: ${s.failureCause}`);
      if (s?.status === 'COMPLETED') result = { id: s.checkpointId!, location: s.location! };
      return result !== undefined;
    },
    timeoutMs,
    2,
  );
  return result!;
}

/** Cancels a running job and waits for its run to end; a run that failed on its own is reported. */
export async function stop(runner: EmbeddedRunner, run: Promise<RunOutcome>): Promise<void> {
  await runner.cancel();
  const outcome = await run;
  if (outcome.state === 'FAILED') throw new Error(`job ${runner.plan.job} failed: ${outcome.error?.message}`);
}

/** Formats a number with thousands separators and `digits` decimals. */
export function fmt(n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a';
}

/** Formats bytes as B, KiB, MiB. */
export function bytes(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}
