import { readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { parseDuration } from '../core/duration.js';
import { ErrorCode, FloeError, ValidationError } from '../core/errors.js';
import { describeManifest } from '../core/manifest/inspect.js';
import type { Manifest } from '../core/manifest/model.js';
import { ManifestSerializer } from '../core/manifest/serializer.js';
import { DEFAULT_REST_PORT, RestClient, RestError, type PollOptions } from '../rest/client.js';
import type { CheckpointingStatistics, JobDetailsInfo } from '../rest/flink-types.js';
import { jobDetails } from '../rest/job-details.js';
import { checkpointingStatistics } from '../rest/checkpoint-statistics.js';
import { formatCheckpoints } from './checkpoints-table.js';
import { loadRunJobFile, type RunJobFile } from './load-runner.js';
import { parsePort, validateRunFlags, type RunFlags } from './run-options.js';

/** What the CLI reaches outside itself; tests replace parts of it. */
export interface CliDeps {
  /** Starts the embedded runner. @default `runJobFile` from `lib/cli/run-job-file`, loaded on first use */
  readonly runJobFile?: RunJobFile;
  /** The fetch the REST client uses. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /** Whether stdout is a terminal (turns on `run`'s progress line). @default process.stdout.isTTY */
  readonly isTTY?: boolean;
  /** The environment `FLOE_AUTH_TOKEN` and, for the AWS configuration check and an emulator's defaults, the AWS settings are read from. @default process.env */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** The environment variable that gives the REST API's token when `--auth-token` does not. */
export const AUTH_TOKEN_ENV = 'FLOE_AUTH_TOKEN';

/** The token from `--auth-token`, else from {@link AUTH_TOKEN_ENV} (an empty one counts as unset). */
function authTokenOf(flag: string | undefined, deps: CliDeps): string | undefined {
  if (flag !== undefined) return flag;
  const env = (deps.env ?? process.env)[AUTH_TOKEN_ENV];
  return env === undefined || env === '' ? undefined : env;
}

interface ConnectionFlags {
  readonly port?: string;
  readonly url?: string;
  readonly stack?: string;
  readonly outputs?: string;
  readonly awsEndpoint?: string;
  readonly authToken?: string;
}

/** What the control commands do with a job, over REST or through a deployed stack's job row. */
interface Controller {
  triggerSavepoint(job: string, options: { dir?: string; stop?: boolean; drain?: boolean }): Promise<string>;
  awaitSavepoint(job: string, trigger: string, poll: PollOptions): Promise<string>;
  cancel(job: string): Promise<void>;
  checkpoints(job: string): Promise<CheckpointingStatistics>;
  /** The job's state, restarts and failure cause (`GET /jobs/:id`). */
  status(job: string): Promise<JobDetailsInfo>;
  /** Starts a deployed job's next generation; only a stack controller can. */
  start?(job: string | undefined, options: StartFlags, log: (line: string) => void): Promise<string>;
}

/** Flags of `floe start`. */
interface StartFlags {
  readonly fromSavepoint?: string;
  readonly fromCheckpoint?: string;
  readonly emptyState?: boolean;
  readonly allowNonRestoredState?: boolean;
  readonly timeout?: string;
}

/** Says what is wrong with `floe start`'s flags: exactly one of --from-savepoint, --from-checkpoint and --empty-state. */
export function startProblems(flags: StartFlags & ConnectionFlags): string[] {
  const problems: string[] = [];
  if (flags.stack === undefined && flags.outputs === undefined) {
    problems.push('floe start restarts a deployed job: name it with --stack or --outputs (a job file runs with `floe run <job-file> --from-savepoint <path>`)');
  }
  const chosen = [flags.fromSavepoint !== undefined && '--from-savepoint', flags.fromCheckpoint !== undefined && '--from-checkpoint', flags.emptyState === true && '--empty-state'].filter(
    (x): x is string => x !== false,
  );
  if (chosen.length === 0) problems.push('say where the job starts from: --from-savepoint <s3://…>, --from-checkpoint latest|<s3://…>, or --empty-state (sources from the beginning, no state)');
  if (chosen.length > 1) problems.push(`${chosen.join(', ')} exclude each other: use one`);
  if (flags.emptyState === true && flags.allowNonRestoredState === true) problems.push('--allow-non-restored-state needs --from-savepoint or --from-checkpoint');
  for (const [flag, value] of [['--from-savepoint', flags.fromSavepoint], ['--from-checkpoint', flags.fromCheckpoint]] as const) {
    if (value === undefined || value === 'latest' && flag === '--from-checkpoint') continue;
    if (!value.startsWith('s3://')) problems.push(`${flag} of a deployed job takes an s3:// location${flag === '--from-checkpoint' ? " or 'latest'" : ''}, got '${value}'`);
  }
  return problems;
}

/** Says what is wrong with the connection flags: REST (`--port`/`--url`) and a stack (`--stack`/`--outputs`) exclude each other. */
export function connectionProblems(flags: ConnectionFlags): string[] {
  const problems: string[] = [];
  const rest = [flags.port !== undefined && '--port', flags.url !== undefined && '--url'].filter((x): x is string => x !== false);
  const aws = [flags.stack !== undefined && '--stack', flags.outputs !== undefined && '--outputs'].filter((x): x is string => x !== false);
  if (rest.length > 0 && aws.length > 0) {
    problems.push(`${rest.join(' and ')} (a job's REST API) and ${aws.join(' and ')} (a deployed stack) exclude each other: use one or the other`);
  }
  if (flags.awsEndpoint !== undefined) {
    if (aws.length === 0) problems.push('--aws-endpoint needs --stack or --outputs');
    try {
      const u = new URL(flags.awsEndpoint);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push(`--aws-endpoint must be an http(s) URL, got '${flags.awsEndpoint}'`);
    } catch {
      problems.push(`--aws-endpoint must be a URL such as http://127.0.0.1:5000, got '${flags.awsEndpoint}'`);
    }
  }
  if (flags.stack === '') problems.push('--stack needs a stack name');
  if (flags.authToken !== undefined && aws.length > 0) problems.push(`--auth-token is for a job's REST API (--port, --url), not for ${aws.join(' and ')}`);
  if (flags.authToken !== undefined && flags.authToken.trim() === '') problems.push('--auth-token must not be empty');
  return problems;
}

function restController(rest: RestClient): Controller {
  return {
    triggerSavepoint: (job, o) =>
      o.stop
        ? rest.stop(job, { ...(o.dir !== undefined ? { targetDirectory: o.dir } : {}), ...(o.drain ? { drain: true } : {}) })
        : rest.triggerSavepoint(job, o.dir === undefined ? {} : { targetDirectory: o.dir }),
    awaitSavepoint: (job, trigger, poll) => rest.awaitSavepoint(job, trigger, poll),
    cancel: (job) => rest.cancel(job),
    checkpoints: (job) => rest.checkpoints(job),
    status: (job) => rest.job(job),
  };
}

/**
 * AWS clients for a command that reaches AWS or, with `endpoint`, an emulator (region and credentials defaulted
 * there); checks first that a region and credentials are found, saying what to set when not.
 */
async function configuredAwsClients(endpoint: string | undefined, deps: CliDeps) {
  const [{ awsClients }, { checkAwsConfiguration, emulatorClientOptions }] = await Promise.all([import('../adapters/aws/clients.js'), import('../adapters/aws/aws-configuration.js')]);
  const env = deps.env ?? process.env;
  const options = endpoint === undefined ? {} : emulatorClientOptions(endpoint, env);
  const clients = awsClients(options);
  await checkAwsConfiguration(clients.s3, { ...(endpoint === undefined ? {} : { endpoint }), env });
  return { clients, options };
}

/** A controller over a deployed stack's job row; loads the AWS modules only when used. */
async function stackController(flags: ConnectionFlags, deps: CliDeps): Promise<Controller> {
  const [{ AwsJobControl }, outputsModule] = await Promise.all([import('../hosts/lambda/aws-job-control.js'), import('../hosts/lambda/stack-outputs.js')]);
  const endpoint = flags.awsEndpoint;
  // An outputs file that cannot be read is reported before the AWS configuration is looked at.
  const fromFile = flags.outputs !== undefined ? await outputsModule.readStackOutputsFile(flags.outputs, flags.stack) : undefined;
  const { clients, options } = await configuredAwsClients(endpoint, deps);
  const outputs = fromFile ?? (await outputsModule.describeStackOutputs(flags.stack!, options));
  const control = await AwsJobControl.open({ outputs, clients });
  const where = flags.outputs !== undefined ? flags.outputs : `stack '${flags.stack}'`;
  const check = (job: string) => {
    if (job !== control.job && job !== control.overview().jid) throw new FloeError(ErrorCode.NotFound, `${where} holds job '${control.job}', not '${job}'`);
  };
  return {
    async triggerSavepoint(job, o) {
      check(job);
      const termination = o.stop ? (o.drain ? 'drain' : 'stop') : undefined;
      // Checked before anything is triggered, as the control API's router does.
      const dir = await control.validateSavepointTarget(o.dir);
      const trigger = control.triggerSavepoint({ dir, ...(termination === undefined ? {} : { termination }) });
      await control.settled();
      const status = control.triggerStatus(trigger);
      if (status?.status === 'FAILED') throw new FloeError(ErrorCode.JobFailed, `savepoint failed: ${status.failureCause ?? 'unknown cause'}`);
      return trigger;
    },
    async awaitSavepoint(_job, trigger, poll) {
      const deadline = Date.now() + (poll.timeoutMs ?? Infinity);
      let interval = poll.intervalMs ?? 100;
      for (;;) {
        await control.refresh();
        await control.settled();
        const status = control.triggerStatus(trigger);
        if (status?.status === 'COMPLETED') {
          if (status.location === undefined) throw new FloeError(ErrorCode.JobFailed, 'savepoint completed without a location');
          return status.location;
        }
        if (status === undefined || status.status === 'FAILED') throw new FloeError(ErrorCode.JobFailed, `savepoint failed: ${status?.failureCause ?? 'unknown trigger'}`);
        if (Date.now() + interval > deadline) throw new FloeError(ErrorCode.JobFailed, `the savepoint did not complete within ${poll.timeoutMs}ms; it may still complete`);
        await new Promise((r) => setTimeout(r, interval));
        interval = Math.min(interval * 2, 1000);
      }
    },
    async cancel(job) {
      check(job);
      await control.cancel();
    },
    async checkpoints(job) {
      check(job);
      return checkpointingStatistics(control.overview(), control.coordinatorState());
    },
    async status(job) {
      check(job);
      return jobDetails(control.overview(), Date.now());
    },
    async start(job, o, log) {
      if (job !== undefined) check(job);
      const from =
        o.fromSavepoint !== undefined
          ? ({ kind: 'savepoint', path: o.fromSavepoint } as const)
          : o.fromCheckpoint !== undefined
            ? ({ kind: 'checkpoint', path: o.fromCheckpoint } as const)
            : ({ kind: 'empty' } as const);
      const waitMs = timeoutOf(o.timeout);
      const outcome = await control.start({ from, allowNonRestoredState: o.allowNonRestoredState === true, log, ...(waitMs === undefined ? {} : { waitMs }) });
      const what = outcome.restoredFrom ? `from ${outcome.restoredFrom.kind} ${outcome.restoredFrom.checkpointId} (${outcome.restoredFrom.path})` : 'with empty state';
      return outcome.sourcesStarted
        ? `Started job ${control.job} ${what}: generation ${outcome.generation}.\n`
        : `Job ${control.job} is ready at generation ${outcome.generation} ${what}; the coordinator starts its sources on its next tick (at most a minute).\n`;
    },
  };
}

async function controller(flags: ConnectionFlags, deps: CliDeps): Promise<Controller> {
  const problems = connectionProblems(flags);
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'the command line', problems);
  if (flags.stack !== undefined || flags.outputs !== undefined) return stackController(flags, deps);
  return restController(client(flags, deps));
}

const out = (text: string) => void process.stdout.write(text);
const err = (text: string) => void process.stderr.write(text);

function client(flags: ConnectionFlags, deps: CliDeps): RestClient {
  const problems: string[] = [];
  if (flags.port !== undefined && flags.url !== undefined) problems.push('use --port or --url, not both');
  const port = flags.port === undefined ? undefined : parsePort(flags.port, problems);
  if (flags.url !== undefined) {
    try {
      const u = new URL(flags.url);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push(`--url must be an http(s) URL, got '${flags.url}'`);
    } catch {
      problems.push(`--url must be a URL such as http://127.0.0.1:${DEFAULT_REST_PORT}, got '${flags.url}'`);
    }
  }
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'the command line', problems);
  const authToken = authTokenOf(flags.authToken, deps);
  return new RestClient({ url: flags.url, port: port ?? DEFAULT_REST_PORT, fetch: deps.fetch, ...(authToken === undefined ? {} : { authToken }) });
}

function timeoutOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseDuration(text, '--timeout');
  } catch (e) {
    throw new ValidationError(ErrorCode.InvalidOptions, 'the command line', [(e as Error).message]);
  }
}

function withConnection(cmd: Command): Command {
  return cmd
    .option('--port <n>', `REST port of the job on 127.0.0.1 (default ${DEFAULT_REST_PORT})`)
    .option('--url <base-url>', 'base URL of the REST API, instead of --port (e.g. http://127.0.0.1:8081)')
    .option('--stack <name>', "a deployed job: read its CloudFormation stack's outputs and control it through its job row, instead of REST")
    .option('--outputs <file>', "a deployed job's outputs from a `cdk deploy --outputs-file` JSON file, instead of reading the stack (emulators); --stack picks one of several stacks in it")
    .option('--aws-endpoint <url>', 'with --stack or --outputs: the AWS-compatible endpoint to use (moto server, LocalStack, fakecloud)')
    .option('--auth-token <token>', `with --port or --url: the token the job was started with (floe run --auth-token); default: $${AUTH_TOKEN_ENV}`)
    .addHelpText(
      'after',
      '\nA running `floe run` is reached over REST (--port, --url); a deployed job through its stack (--stack, --outputs).\n',
    );
}

/** Reads `_metadata` from a file or from a snapshot directory holding one; returns the bytes and the snapshot's directory. */
async function readMetadata(path: string): Promise<{ bytes: Uint8Array; file: string; location: string }> {
  let file = path;
  try {
    if ((await stat(path)).isDirectory()) file = join(path, '_metadata');
  } catch (e) {
    throw new FloeError(ErrorCode.CheckpointNotFound, `${path} does not exist`, { cause: e });
  }
  try {
    return { bytes: await readFile(file), file, location: dirname(file) };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'there is no _metadata in it, so it is not a complete checkpoint or savepoint' : (e as Error).message;
    throw new FloeError(ErrorCode.CheckpointNotFound, `cannot read ${file}: ${why}`, { cause: e });
  }
}

async function readLocalManifest(path: string): Promise<{ manifest: Manifest; location: string }> {
  const { bytes, file, location } = await readMetadata(path);
  return { manifest: ManifestSerializer.deserialize(bytes, file), location };
}

/** Reads a snapshot's manifest from S3 (its directory or its `_metadata` object); loads the AWS modules only when used. */
async function readS3Manifest(path: string, endpoint: string | undefined, deps: CliDeps): Promise<{ manifest: Manifest; location: string }> {
  if (endpoint !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      // reported below
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new ValidationError(ErrorCode.InvalidOptions, 'the command line', [`--aws-endpoint must be an http(s) URL such as http://127.0.0.1:5000, got '${endpoint}'`]);
    }
  }
  const [{ S3CheckpointStorage }, { loadManifest }] = await Promise.all([import('../adapters/aws/s3-checkpoint-storage.js'), import('../runtime/snapshot-catalog.js')]);
  const { clients } = await configuredAwsClients(endpoint, deps);
  const storage = new S3CheckpointStorage({ client: clients.s3 });
  const { manifest, dir } = await loadManifest(storage, path);
  return { manifest, location: dir };
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function buildProgram(deps: CliDeps, setExitCode: (code: number) => void): Command {
  const program = new Command('floe')
    .description(
      "Flink's checkpoints and savepoints for TypeScript jobs: run a job embedded, or control a running one over its REST API or a deployed one through its stack.",
    )
    .version(packageVersion(), '-V, --version')
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: err })
    .showHelpAfterError('(add --help for usage)');

  program
    .command('run')
    .description('Run a job file in this process with checkpoints, serving the REST API on 127.0.0.1')
    .argument('<job-file>', 'TypeScript or JavaScript module that defines the job')
    .argument('[job-args...]', 'arguments for the job itself, after --')
    .option('--checkpoint-interval <duration>', 'take a checkpoint this often, e.g. 10s (default: the job\'s setting, else off)')
    .option('--checkpoint-dir <dir>', 'directory for checkpoints (default: .floe/checkpoints)')
    .option('--from-checkpoint <latest|path>', "restore from a checkpoint: 'latest' (the newest intact one; newer corrupt ones are skipped, saying why) or a chk-<n> directory or _metadata file")
    .option('--from-savepoint <path>', 'restore from a savepoint directory or _metadata file')
    .option('--allow-non-restored-state', 'restore even if the snapshot has state for operators (uids) the job no longer has')
    .option('--parallelism <n>', 'default parallelism of the operators')
    .option('--port <n>', `REST port (default ${DEFAULT_REST_PORT}; 0 picks a free one)`)
    .option('--auth-token <token>', `require 'Authorization: Bearer <token>' on every REST request (default: $${AUTH_TOKEN_ENV}; none: any local client may call)`)
    .option(
      '--aws-endpoint <url>',
      'emulator mode: provision the job on this AWS-compatible endpoint (moto server, LocalStack, fakecloud) and run its handlers here, polling its queues',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  floe run examples/wordcount.ts --checkpoint-interval 5s -- --input words.txt --output out/\n' +
        '  floe run examples/wordcount.ts --aws-endpoint http://127.0.0.1:5000 -- --input words.txt --output out/\n' +
        '\nCtrl-C (SIGINT) or SIGTERM cancels the job, keeping its checkpoints; a second one exits at once.\n' +
        'Exit codes: 0 finished or stopped with a savepoint; 1 failed, refused or cancelled (output since the last checkpoint not committed); 2 internal error; 130 after SIGINT, 143 after SIGTERM.\n',
    )
    .action(async (jobFile: string, jobArgs: string[], flags: RunFlags) => {
      // Validate everything before loading the runner, so a bad command line fails fast and says all that is wrong.
      const authToken = authTokenOf(flags.authToken, deps);
      const options = validateRunFlags(jobFile, jobArgs, { ...flags, ...(authToken === undefined ? {} : { authToken }) }, { progress: deps.isTTY ?? process.stdout.isTTY === true });
      const runJobFile = deps.runJobFile ?? (await loadRunJobFile());
      setExitCode(await runJobFile(options));
    });

  withConnection(
    program
      .command('savepoint')
      .description('Take a savepoint of a running job and wait for it; prints its path')
      .argument('<job-id>', 'job id or job name')
      .argument('[dir]', 'target directory (default: the job\'s savepoint.dir)')
      .option('--timeout <duration>', 'give up waiting after this long (the savepoint may still complete)'),
  ).action(async (job: string, dir: string | undefined, flags: ConnectionFlags & { timeout?: string }) => {
    const timeoutMs = timeoutOf(flags.timeout);
    const control = await controller(flags, deps);
    const trigger = await control.triggerSavepoint(job, dir === undefined ? {} : { dir });
    err(`Triggered savepoint for job ${job} (request ${trigger}); waiting for it to complete...\n`);
    const location = await control.awaitSavepoint(job, trigger, { timeoutMs });
    out(`Savepoint completed. Path: ${location}\n`);
  });

  withConnection(
    program
      .command('stop')
      .description('Stop a job with a savepoint and wait for it; prints the savepoint path')
      .argument('<job-id>', 'job id or job name')
      .option('--savepoint <dir>', "savepoint directory (default: the job's savepoint.dir)")
      .option('--drain', 'advance event time to the end first, so windows and timers fire, before stopping')
      .option('--timeout <duration>', 'give up waiting after this long (the stop may still complete)'),
  ).action(async (job: string, flags: ConnectionFlags & { savepoint?: string; drain?: boolean; timeout?: string }) => {
    const timeoutMs = timeoutOf(flags.timeout);
    const control = await controller(flags, deps);
    const trigger = await control.triggerSavepoint(job, {
      stop: true,
      ...(flags.savepoint !== undefined ? { dir: flags.savepoint } : {}),
      ...(flags.drain ? { drain: true } : {}),
    });
    err(`Stopping job ${job}${flags.drain ? ' (draining)' : ''} with a savepoint (request ${trigger}); waiting...\n`);
    let location: string;
    try {
      location = await control.awaitSavepoint(job, trigger, { timeoutMs });
    } catch (e) {
      if (e instanceof FloeError && e.code === ErrorCode.NotFound && !(e instanceof RestError)) {
        throw new FloeError(
          ErrorCode.NotFound,
          `job ${job} stopped answering before it reported the savepoint; its output names the savepoint path`,
          { cause: e },
        );
      }
      throw e;
    }
    out(`Savepoint completed. Path: ${location}\n`);
  });

  withConnection(
    program
      .command('cancel')
      .description('Cancel a job without a savepoint (a deployed one: its job row ends CANCELED, its Lambdas drop its messages)')
      .argument('<job-id>', 'job id or job name'),
  ).action(async (job: string, flags: ConnectionFlags) => {
    await (await controller(flags, deps)).cancel(job);
    out(`Cancelled job ${job}.\n`);
  });

  withConnection(
    program
      .command('start')
      .description("Start a deployed job's next generation from a savepoint or checkpoint (Flink's `-s`), after stop, cancel or a failure")
      .argument('[job-id]', 'job id or job name (default: the stack\'s job)')
      .option('--from-savepoint <s3-path>', 'restore this savepoint directory (or its _metadata)')
      .option('--from-checkpoint <latest|s3-path>', "restore the newest intact completed checkpoint ('latest'; newer corrupt ones are skipped, saying why) or this chk-<n> directory")
      .option('--empty-state', 'start with no state: sources read from the beginning (Flink without -s); committed output of earlier runs stays')
      .option('--allow-non-restored-state', 'restore even if the snapshot has state for operators (uids) the deployed job no longer has')
      .option('--timeout <duration>', 'how long to wait for the coordinator to start the sources (default 2m; the start goes on after)')
      .addHelpText(
        'after',
        '\nThe snapshot is read and checked against the deployed plan (the parallelism of the last `cdk deploy`) before\n' +
          'anything changes; a RUNNING job is refused (stop or cancel it first), a failing one is cancelled first. The job\n' +
          "row then moves to a new generation whose state is the snapshot's, re-split by key group when the parallelism\n" +
          "changed, and the coordinator's next tick commits its pending sink transactions and starts the sources.\n\n" +
          'Examples:\n  floe start --stack Floe-wordcount --from-savepoint s3://bucket/wordcount/savepoints/savepoint-1a2b3c4d-7\n' +
          '  floe start --stack Floe-wordcount --from-checkpoint latest\n',
      ),
  ).action(async (job: string | undefined, flags: ConnectionFlags & StartFlags) => {
    const problems = [...startProblems(flags)];
    if (problems.length === 0) timeoutOf(flags.timeout);
    if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'the command line', problems);
    const control = await controller(flags, deps);
    out(await control.start!(job, flags, (line) => err(`${line}\n`)));
  });

  withConnection(
    program
      .command('checkpoints')
      .description("List a job's checkpoints: counts, the latest completed one, and the recent history")
      .argument('<job-id>', 'job id or job name')
      .option('--json', "print the REST answer (Flink's shape) instead of a table"),
  ).action(async (job: string, flags: ConnectionFlags & { json?: boolean }) => {
    const stats = await (await controller(flags, deps)).checkpoints(job);
    out(flags.json ? `${JSON.stringify(stats, null, 2)}\n` : formatCheckpoints(job, stats));
  });

  withConnection(
    program
      .command('status')
      .description("Show a job's state, its restarts and, when it failed, the failure cause with the stack trace of the code that threw")
      .argument('<job-id>', 'job id or job name')
      .option('--json', "print the REST answer (Flink's shape) instead of text"),
  ).action(async (job: string, flags: ConnectionFlags & { json?: boolean }) => {
    const details = await (await controller(flags, deps)).status(job);
    out(flags.json ? `${JSON.stringify(details, null, 2)}\n` : formatStatus(details));
  });

  program
    .command('inspect')
    .description('Describe a checkpoint or savepoint from its _metadata file or its directory')
    .argument('<path>', '_metadata file, or the chk-<n> / savepoint-<id> directory holding it; s3://bucket/… for one in S3')
    .option('--json', 'print the parsed manifest as JSON')
    .option('--aws-endpoint <url>', 'with an s3:// path: the AWS-compatible endpoint to read it from (moto server, LocalStack, fakecloud)')
    .addHelpText('after', '\nExamples:\n  floe inspect .floe/checkpoints/wordcount/checkpoints/chk-12\n  floe inspect s3://my-bucket/wordcount/savepoints/savepoint-3f2a --aws-endpoint http://127.0.0.1:5000\n')
    .action(async (path: string, flags: { json?: boolean; awsEndpoint?: string }) => {
      if (flags.awsEndpoint !== undefined && !path.startsWith('s3://')) {
        throw new ValidationError(ErrorCode.InvalidOptions, 'the command line', [`--aws-endpoint applies to s3:// paths only, got '${path}'`]);
      }
      const { manifest, location } = path.startsWith('s3://') ? await readS3Manifest(path, flags.awsEndpoint, deps) : await readLocalManifest(path);
      out(flags.json ? `${JSON.stringify(manifest, null, 2)}\n` : describeManifest(manifest, location));
    });

  return program;
}

/** Runs the `floe` command line with `argv` (without node and the script) and returns the exit code; never exits the process. */
export async function main(argv: string[], deps: CliDeps = {}): Promise<number> {
  let exitCode = 0;
  const program = buildProgram(deps, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode; // commander has already printed help or the usage error
    if (e instanceof FloeError) {
      err(`error: ${e.message}\n`);
      return 1;
    }
    // A bug, not a user error: say so, with the stack only when asked for.
    err(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    if (process.env['FLOE_DEBUG'] && e instanceof Error && e.stack) err(`${e.stack}\n`);
    return 2;
  }
}

/** `floe status`'s text: the job, its state and restarts, and the failure cause (with its stack trace) when there is one. */
export function formatStatus(details: JobDetailsInfo): string {
  const restarts = `${details.restarts} restart${details.restarts === 1 ? '' : 's'}`;
  const lines = [`Job ${details.name} (${details.jid}): ${details.state}, ${restarts}`];
  const quiet = details['quiet-since'];
  if (quiet !== undefined) lines.push(`Periodic checkpoints paused since ${new Date(quiet).toISOString()}: no work since the last checkpoint (they resume with the next input)`);
  if (details['failure-cause'] !== undefined) lines.push('Failure cause:', details['failure-cause']);
  return `${lines.join('\n')}\n`;
}
