import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Job, type JobFactory } from '../api/job.js';
import { ErrorCode, FloeError } from '../core/errors.js';

/** Imports a job file and builds its job from the job arguments; the file's default export is a Job or a factory of one. */
export async function loadJob(jobFile: string, args: readonly string[]): Promise<Job> {
  let mod: { default?: JobFactory };
  try {
    mod = (await import(pathToFileURL(resolve(jobFile)).href)) as { default?: JobFactory };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes(resolve(jobFile))) {
      throw new FloeError(ErrorCode.InvalidJob, `job file '${jobFile}' does not exist`);
    }
    throw e;
  }
  const factory = mod.default;
  if (factory === undefined) throw new FloeError(ErrorCode.InvalidJob, `job file '${jobFile}' has no default export: export default defineJob((args) => ...)`);
  const job = factory instanceof Job ? factory : typeof factory === 'function' ? await factory(args) : undefined;
  if (!(job instanceof Job)) throw new FloeError(ErrorCode.InvalidJob, `job file '${jobFile}': the default export must be a Job or a function returning one`);
  return job;
}
