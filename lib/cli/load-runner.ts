import { ErrorCode, FloeError } from '../core/errors.js';
import type { RunJobFileOptions } from './run-options.js';

/** The embedded runner's entry point as `floe run` calls it. */
export type RunJobFile = (options: RunJobFileOptions) => Promise<number>;

/**
 * The embedded runner's module, relative to this file. It is imported only when `floe run` runs, so the
 * control commands (`savepoint`, `checkpoints`, ...) and `inspect` start without loading the engine.
 * A variable rather than a literal specifier: the runner is developed alongside the CLI, and the CLI must
 * type-check and load while it is absent; `RunJobFileOptions` in `run-options.ts` mirrors its options type.
 */
const RUNNER_MODULE: string = '../embedded/run-job-file.js';

/** Imports `runJobFile` from `lib/embedded/run-job-file`. */
export async function loadRunJobFile(): Promise<RunJobFile> {
  let mod: { runJobFile?: unknown };
  try {
    mod = (await import(RUNNER_MODULE)) as { runJobFile?: unknown };
  } catch (e) {
    throw new FloeError(ErrorCode.InvalidJob, `the embedded runner could not be loaded: ${(e as Error).message}`, { cause: e });
  }
  if (typeof mod.runJobFile !== 'function') {
    throw new FloeError(ErrorCode.InvalidJob, 'the embedded runner (lib/embedded/run-job-file) does not export a runJobFile function');
  }
  return mod.runJobFile as RunJobFile;
}
