import { vi } from 'vitest';
import { main } from '../../lib/cli/main.js';

/** Runs the `floe` CLI in this process and answers its exit code, stdout and stderr (kept out of the test output). */
export async function floeInProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c) => (stdout.push(String(c)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c) => (stderr.push(String(c)), true));
  try {
    const code = await main(args);
    return { code, stdout: stdout.join(''), stderr: stderr.join('') };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}
