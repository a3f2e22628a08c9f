import type { RunJobFileOptions } from './run-job-file.js';

/** The embedded runner's entry point as `floe run` calls it. */
export type RunJobFile = (options: RunJobFileOptions) => Promise<number>;

/** Imports `runJobFile` only when `floe run` runs, so the control commands and `inspect` start without loading the engine. */
export async function loadRunJobFile(): Promise<RunJobFile> {
  return (await import('./run-job-file.js')).runJobFile;
}
