import { existsSync } from 'node:fs';
import { parseDuration } from '../core/duration.js';
import { ErrorCode, ValidationError } from '../core/errors.js';

import type { RunJobFileOptions } from './run-job-file.js';

export type { RunJobFileOptions };

/** The `floe run` flags as commander hands them over: strings, unvalidated. */
export interface RunFlags {
  readonly checkpointInterval?: string;
  readonly checkpointDir?: string;
  readonly fromCheckpoint?: string;
  readonly fromSavepoint?: string;
  readonly allowNonRestoredState?: boolean;
  readonly parallelism?: string;
  readonly port?: string;
  readonly awsEndpoint?: string;
  readonly authToken?: string;
}

/** Parses a `--port` value: an integer from 0 to 65535 (0 picks a free port). Pushes a problem and returns undefined otherwise. */
export function parsePort(text: string, problems: string[]): number | undefined {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n > 65535) {
    problems.push(`--port must be an integer from 0 to 65535, got '${text}'`);
    return undefined;
  }
  return n;
}

/**
 * Validates `floe run` flags and builds the runner's options, reporting every problem at once
 * (a ValidationError listing each); `progress` says whether stdout is a terminal.
 */
export function validateRunFlags(
  jobFile: string,
  jobArgs: readonly string[],
  flags: RunFlags,
  env: { readonly progress: boolean; readonly fileExists?: (path: string) => boolean },
): RunJobFileOptions {
  const problems: string[] = [];
  const fileExists = env.fileExists ?? existsSync;
  if (jobFile.trim() === '') problems.push('the job file must not be empty');
  else if (!fileExists(jobFile)) problems.push(`job file '${jobFile}' does not exist`);

  if (flags.fromCheckpoint !== undefined && flags.fromSavepoint !== undefined) {
    problems.push('--from-checkpoint and --from-savepoint cannot be used together; restore from one snapshot');
  }
  if (flags.fromCheckpoint !== undefined && flags.fromCheckpoint.trim() === '') {
    problems.push("--from-checkpoint needs 'latest' or the path of a checkpoint");
  }
  if (flags.fromSavepoint !== undefined && flags.fromSavepoint.trim() === '') problems.push('--from-savepoint needs the path of a savepoint');
  if (flags.checkpointDir !== undefined && flags.checkpointDir.trim() === '') problems.push('--checkpoint-dir must not be empty');

  if (flags.checkpointInterval !== undefined) {
    try {
      parseDuration(flags.checkpointInterval, '--checkpoint-interval');
    } catch (e) {
      problems.push((e as Error).message);
    }
  }

  let parallelism: number | undefined;
  if (flags.parallelism !== undefined) {
    const n = Number(flags.parallelism);
    if (!/^\s*\d+\s*$/.test(flags.parallelism) || !Number.isSafeInteger(n) || n < 1) {
      problems.push(`--parallelism must be a positive integer, got '${flags.parallelism}'`);
    } else parallelism = n;
  }

  const port = flags.port === undefined ? undefined : parsePort(flags.port, problems);
  if (flags.authToken !== undefined && flags.authToken.trim() === '') problems.push('--auth-token must not be empty');

  if (flags.awsEndpoint !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(flags.awsEndpoint);
    } catch {
      problems.push(`--aws-endpoint must be a URL such as http://127.0.0.1:5000, got '${flags.awsEndpoint}'`);
    }
    if (url && url.protocol !== 'http:' && url.protocol !== 'https:') problems.push(`--aws-endpoint must be an http(s) URL, got '${flags.awsEndpoint}'`);
    // In emulator mode snapshots live in the emulator's S3; a local path cannot be read there.
    if (flags.checkpointDir !== undefined && flags.checkpointDir.trim() !== '' && !flags.checkpointDir.startsWith('s3://')) {
      problems.push(`--checkpoint-dir must be an s3:// URL with --aws-endpoint (default: the job's bucket), got '${flags.checkpointDir}'`);
    }
    for (const [flag, path] of [['--from-checkpoint', flags.fromCheckpoint], ['--from-savepoint', flags.fromSavepoint]] as const) {
      if (path !== undefined && path.trim() !== '' && path !== 'latest' && !path.startsWith('s3://')) {
        problems.push(`${flag} must be 'latest' or an s3:// URL with --aws-endpoint, got '${path}'`);
      }
    }
  }

  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'the command line', problems);
  return {
    jobFile,
    jobArgs: [...jobArgs],
    ...(flags.checkpointInterval !== undefined ? { checkpointInterval: flags.checkpointInterval } : {}),
    ...(flags.checkpointDir !== undefined ? { checkpointDir: flags.checkpointDir } : {}),
    ...(flags.fromCheckpoint !== undefined ? { fromCheckpoint: flags.fromCheckpoint } : {}),
    ...(flags.fromSavepoint !== undefined ? { fromSavepoint: flags.fromSavepoint } : {}),
    ...(flags.allowNonRestoredState ? { allowNonRestoredState: true } : {}),
    ...(parallelism !== undefined ? { parallelism } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(flags.awsEndpoint !== undefined ? { awsEndpoint: flags.awsEndpoint } : {}),
    ...(flags.authToken !== undefined ? { authToken: flags.authToken } : {}),
    progress: env.progress,
  };
}
