import { EmbeddedRunner, type RestoreSource } from './embedded-runner.js';
import { loadJob } from './load-job.js';
import { startRestServer } from '../rest/server.js';
import { startProgress } from '../cli/progress.js';
import { formatDuration } from '../core/duration.js';
import { ErrorCode, FloeError } from '../core/errors.js';

/** What `floe run` hands to the embedded runner. */
export interface RunJobFileOptions {
  jobFile: string;
  jobArgs: string[];
  checkpointInterval?: string;
  checkpointDir?: string;
  fromCheckpoint?: string;
  fromSavepoint?: string;
  allowNonRestoredState?: boolean;
  parallelism?: number;
  port?: number;
  /** Show live progress (stdout is a terminal). */
  progress: boolean;
  /** Run in emulator mode against this AWS-compatible endpoint (moto server, LocalStack, fakecloud) instead of embedded. */
  awsEndpoint?: string;
  /** Token every REST request must carry as `Authorization: Bearer <token>`. @default none: any local client may call */
  authToken?: string;
}

/** Loads a job file, runs it embedded with the REST API on localhost, and returns the process exit code. */
export async function runJobFile(options: RunJobFileOptions): Promise<number> {
  // With the live progress line on, a log line first clears it; the next progress tick redraws it below.
  const log = (m: string) => process.stderr.write(`${options.progress ? '\r\x1b[2K' : ''}[floe] ${m}\n`);
  const job = await loadJob(options.jobFile, options.jobArgs);
  const restore: RestoreSource =
    options.fromSavepoint !== undefined
      ? { kind: 'path', path: options.fromSavepoint }
      : options.fromCheckpoint === 'latest'
        ? { kind: 'latest-checkpoint' }
        : options.fromCheckpoint !== undefined
          ? { kind: 'path', path: options.fromCheckpoint }
          : { kind: 'none' };
  const checkpoint = {
    ...(options.checkpointInterval !== undefined ? { interval: options.checkpointInterval } : {}),
    ...(options.checkpointDir !== undefined ? { dir: options.checkpointDir } : {}),
  };
  const common = { checkpoint, parallelism: options.parallelism, restore, allowNonRestoredState: options.allowNonRestoredState, log };
  // Emulator mode loads the AWS SDK only when asked for.
  const runner =
    options.awsEndpoint !== undefined
      ? new (await import('../aws/emulator/emulator-runner.js')).EmulatorRunner(job, { ...common, endpoint: options.awsEndpoint })
      : new EmbeddedRunner(job, common);
  // The default savepoint directory is checked now, not when the first savepoint is asked for (emulator mode checks
  // its s3:// targets once the job's bucket is known).
  if (runner instanceof EmbeddedRunner) {
    try {
      await runner.validateSavepointTarget(undefined);
    } catch (e) {
      throw new FloeError(ErrorCode.InvalidOptions, `the default savepoint directory (savepoint.dir) cannot be used: ${(e as Error).message}`, { cause: e });
    }
  }
  const server = await startRestServer(runner, { port: options.port ?? 8081, ...(options.authToken === undefined ? {} : { authToken: options.authToken }) });
  log(`job '${job.name}' (${runner.jobId}) running; REST API at ${server.url}`);
  const progress = options.progress ? startProgress(runner, process.stderr) : undefined;
  const onSignal = () => {
    log('interrupted: cancelling the job (checkpoints are kept)');
    void runner.cancel();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const started = Date.now();
  try {
    const outcome = await runner.run();
    progress?.stop();
    // Let a CLI that triggered stop-with-savepoint read the result before the REST API goes away.
    if (outcome.savepoint) await new Promise((r) => setTimeout(r, 1500));
    const took = formatDuration(Date.now() - started);
    if (outcome.state === 'FINISHED') {
      log(outcome.savepoint ? `job stopped with savepoint ${outcome.savepoint} after ${took}` : `job finished after ${took}`);
      return 0;
    }
    if (outcome.state === 'CANCELED') {
      log(`job cancelled after ${took}`);
      return 0;
    }
    log(`job failed after ${took}: ${outcome.error?.message ?? 'unknown error'}`);
    return 1;
  } finally {
    progress?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await server.close();
  }
}
