import { constants } from 'node:os';
import { EmbeddedRunner } from '../hosts/embedded/embedded-runner.js';
import { loadJob } from '../hosts/load-job.js';
import { startRestServer } from '../rest/server.js';
import { startProgress } from './progress.js';
import { formatDuration } from '../core/duration.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import { checkAwsConfiguration, useAwsEndpoint } from '../adapters/aws/aws-configuration.js';
import { plannedResourceUses } from '../graph/connector-resources.js';
import type { RestoreSource } from '../coordination/restarts.js';

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

/** The exit code a shell expects of a process that ends because of `signal`: 128 + its number (130 for SIGINT, 143 for SIGTERM). */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + constants.signals[signal];
}

/**
 * Loads a job file, runs it embedded with the REST API on localhost, and returns the process exit code: 0 when the
 * job finished or was stopped with a savepoint; 1 when it failed or was cancelled (its output since the last completed
 * checkpoint is not committed); after SIGINT or SIGTERM, which cancel
 * the job (keeping its checkpoints), `signalExitCode` of the signal unless the job failed. A second signal exits at once.
 */
export async function runJobFile(options: RunJobFileOptions): Promise<number> {
  // With the live progress line on, a log line first clears it; the next progress tick redraws it below.
  const log = (m: string) => process.stderr.write(`${options.progress ? '\r\x1b[2K' : ''}[floe] ${m}\n`);
  // Before the job file loads: its connectors, and SDK clients its own code creates, then reach the emulator too.
  if (options.awsEndpoint !== undefined) useAwsEndpoint(options.awsEndpoint);
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
      ? new (await import('../hosts/emulator/emulator-runner.js')).EmulatorRunner(job, { ...common, endpoint: options.awsEndpoint })
      : new EmbeddedRunner(job, common);
  // A job that reaches AWS (emulator mode, or connectors that declare AWS resources) fails now if the SDK finds no
  // region or no credentials, saying what to set, rather than with the SDK's words once the job runs.
  if (options.awsEndpoint !== undefined || plannedResourceUses(runner.plan).length > 0) {
    const { awsClients } = await import('../adapters/aws/clients.js');
    await checkAwsConfiguration(awsClients().s3, options.awsEndpoint === undefined ? {} : { endpoint: options.awsEndpoint });
  }
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
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      log(`${signal} again: exiting without waiting for the cancel to finish`);
      process.exit(signalExitCode(signal));
    }
    signalled = signal;
    log(`interrupted (${signal}): cancelling the job (checkpoints are kept); ${signal === 'SIGINT' ? 'press Ctrl-C' : `send ${signal}`} again to exit at once`);
    void runner.cancel();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  log(`job '${job.name}' (${runner.jobId}) running; REST API at ${server.url}`);
  const progress = options.progress ? startProgress(runner, process.stderr) : undefined;
  const started = Date.now();
  try {
    const outcome = await runner.run();
    progress?.stop();
    // Let a CLI that triggered stop-with-savepoint read the result before the REST API goes away.
    if (outcome.savepoint) await new Promise((r) => setTimeout(r, 1500));
    const took = formatDuration(Date.now() - started);
    if (outcome.state === 'FAILED') {
      log(`job failed after ${took}: ${outcome.error?.message ?? 'unknown error'}`);
      return 1;
    }
    if (outcome.state === 'FINISHED') {
      log(outcome.savepoint ? `job stopped with savepoint ${outcome.savepoint} after ${took}` : `job finished after ${took}`);
      return signalled ? signalExitCode(signalled) : 0;
    }
    // A cancelled job's sinks commit nothing after its last completed checkpoint: say so, and do not report success.
    const latest = runner.coordinatorState().latestCompletedId;
    log(
      `job cancelled after ${took}: output written since ${latest === undefined ? 'it started' : `checkpoint ${latest}`} was not committed` +
        ` (run again with --from-checkpoint latest to produce it)`,
    );
    return signalled ? signalExitCode(signalled) : 1;
  } finally {
    progress?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await server.close();
  }
}
