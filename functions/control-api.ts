/**
 * Lambda handler of the control API: Flink's REST API (`GET /jobs`, `GET /jobs/:id`, `GET /jobs/:id/checkpoints`,
 * `.../checkpoints/config`, `.../checkpoints/details/:n`, `POST /jobs/:id/checkpoints`, `POST /jobs/:id/savepoints`
 * and `GET .../savepoints/:triggerId`, `POST /jobs/:id/stop`, `PATCH /jobs/:id?mode=cancel`) for the deployed job,
 * behind a function URL with IAM auth (callers sign with SigV4). HTTP events in payload format 2.0 (a function URL,
 * or an API Gateway HTTP API) are answered by the same router as `floe run`'s server (lib/rest/router.ts); the job
 * is read from its job row for every request and triggers start coordinator executions (lib/hosts/lambda/deployed-job-control.ts),
 * so nothing is kept between invocations and any container answers any request.
 *
 * It needs neither the job's code nor its plan, so FloeJob bundles this module alone. Its environment (names as in
 * `FloeEnv` in lib/hosts/lambda/handler-contract.ts): `FLOE_JOB`, `FLOE_COORDINATOR_TABLE`, `FLOE_STATE_MACHINE_ARN`,
 * `FLOE_SAVEPOINT_DIR` (the default savepoint directory), and `FLOE_CHECKPOINT_BUCKET`, `FLOE_CHECKPOINT_DIR`
 * (optional). A missing variable is answered with a 500 naming every one, for every request that reaches the job
 * (a malformed or unknown request is answered without it).
 *
 * Logs and metrics go through Powertools (functions/telemetry.ts): one log line per request, with the Lambda
 * context; the counts `controlApiRequests`, `controlApiClientErrors` (4xx) and `controlApiServerErrors` (5xx) and the
 * sample `controlApiDuration` (milliseconds), dimension `job`, published once per invocation.
 */
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { awsClients, type AwsClients } from '../lib/adapters/aws/clients.js';
import { createControlApiHandler, type HttpResultV2 } from '../lib/hosts/lambda/control-api.js';
import { DeployedJobControl } from '../lib/hosts/lambda/deployed-job-control.js';
import type { FloeStackOutputs } from '../lib/hosts/lambda/stack-outputs.js';
import { ErrorCode, ValidationError } from '../lib/core/errors.js';
import { FloeEnv } from '../lib/hosts/lambda/handler-contract.js';
import { createTelemetry, withInvocation } from './telemetry.js';

/** Reads the control API's environment as the stack outputs it stands for; every problem is reported at once. */
export function readControlApiEnvironment(env: NodeJS.ProcessEnv): FloeStackOutputs {
  const problems: string[] = [];
  const required = (name: string): string => {
    const value = env[name];
    if (!value) problems.push(`${name} is required`);
    return value ?? '';
  };
  const optional = <K extends string>(key: K, name: string): { [P in K]?: string } => (env[name] ? { [key]: env[name] } : {}) as { [P in K]?: string };
  const outputs: FloeStackOutputs = {
    jobName: required(FloeEnv.JobName),
    coordinatorTable: required(FloeEnv.CoordinatorTable),
    stateMachineArn: required(FloeEnv.StateMachineArn),
    savepointDir: required(FloeEnv.SavepointDir),
    ...optional('checkpointBucket', FloeEnv.CheckpointBucket),
    ...optional('checkpointDir', FloeEnv.CheckpointDir),
  };
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'control-api function environment', problems);
  return outputs;
}

/** The outputs from this function's environment; a problem there is the deployment's, not the caller's (a 500). */
function deployedOutputs(): FloeStackOutputs {
  try {
    return readControlApiEnvironment(process.env);
  } catch (e) {
    throw new Error(`the control API is misconfigured: ${(e as Error).message}`, { cause: e });
  }
}

let clients: AwsClients | undefined;

/** Counts published every invocation, as 0 when nothing happened. */
const ALWAYS = ['controlApiRequests', 'controlApiClientErrors', 'controlApiServerErrors'];

const telemetry = createTelemetry({ env: process.env, job: process.env[FloeEnv.JobName] ?? '', always: ALWAYS });

const handle = createControlApiHandler({
  // Read for each request: the environment is checked where its problems can be answered, and the job row is current.
  control: () => DeployedJobControl.open({ outputs: deployedOutputs(), clients: (clients ??= awsClients()) }),
  log: telemetry.log,
});

/** The Lambda entry point: one HTTP event (payload format 2.0) in, one answer of Flink's REST API out. */
export async function handler(event: unknown, context?: Context): Promise<HttpResultV2> {
  return withInvocation(telemetry, context, async () => {
    const started = performance.now();
    const result = await handle(event);
    telemetry.metrics.count('controlApiRequests');
    if (result.statusCode >= 500) telemetry.metrics.count('controlApiServerErrors');
    else if (result.statusCode >= 400) telemetry.metrics.count('controlApiClientErrors');
    telemetry.metrics.sample('controlApiDuration', MetricUnit.Milliseconds, performance.now() - started);
    return result;
  });
}
