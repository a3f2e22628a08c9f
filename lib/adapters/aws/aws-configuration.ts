/**
 * Where the CLI's AWS clients connect, and as whom. Against an emulator (`--aws-endpoint <url>`) every client is
 * pointed at the endpoint and a missing region or missing credentials get defaults; `floe run` sets this up in the
 * process's environment before it loads the job file, so the job's connectors, and SDK clients its own code creates,
 * reach the emulator too. Against AWS, a missing region or missing credentials is one error saying what to set,
 * raised before the command does anything.
 */
import type { AwsClientOptions } from './clients.js';
import { ErrorCode, FloeError } from '../../core/errors.js';

/** An environment, as `process.env`. */
export type Environment = Readonly<Record<string, string | undefined>>;

/** What an emulator gets when the environment names no region or no credentials: any credentials are accepted there. */
export const EMULATOR_DEFAULTS = { region: 'us-east-1', accessKeyId: 'test', secretAccessKey: 'test' } as const;

const given = (env: Environment, name: string) => env[name] !== undefined && env[name] !== '';

/** Whether the environment says where credentials come from (keys, a profile, a web identity, a container role). */
function namesCredentials(env: Environment): boolean {
  return ['AWS_ACCESS_KEY_ID', 'AWS_PROFILE', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'].some((n) => given(env, n));
}

/** The region for an emulator: `AWS_REGION`, else `AWS_DEFAULT_REGION` (which the SDK itself does not read), else us-east-1. */
function emulatorRegion(env: Environment): string {
  return given(env, 'AWS_REGION') ? env.AWS_REGION! : given(env, 'AWS_DEFAULT_REGION') ? env.AWS_DEFAULT_REGION! : EMULATOR_DEFAULTS.region;
}

/**
 * The environment changes that point every AWS SDK client of a process at `endpoint`: `AWS_ENDPOINT_URL`, and any
 * per-service `AWS_ENDPOINT_URL_<SERVICE>` (which the SDK prefers) set to it too; `AWS_REGION` when none is set; test
 * credentials unless the environment names credentials of its own. A value of `undefined` removes the variable.
 */
export function emulatorEnvironment(endpoint: string, env: Environment): Record<string, string | undefined> {
  const changes: Record<string, string | undefined> = { AWS_ENDPOINT_URL: endpoint };
  for (const name of Object.keys(env)) if (name.startsWith('AWS_ENDPOINT_URL_')) changes[name] = endpoint;
  if (env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS !== undefined) changes.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = undefined;
  if (!given(env, 'AWS_REGION')) changes.AWS_REGION = emulatorRegion(env);
  if (!namesCredentials(env)) {
    changes.AWS_ACCESS_KEY_ID = EMULATOR_DEFAULTS.accessKeyId;
    changes.AWS_SECRET_ACCESS_KEY = EMULATOR_DEFAULTS.secretAccessKey;
  }
  return changes;
}

/** Applies {@link emulatorEnvironment} to `env` (the process's environment by default). */
export function useAwsEndpoint(endpoint: string, env: Record<string, string | undefined> = process.env): void {
  for (const [name, value] of Object.entries(emulatorEnvironment(endpoint, env))) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
}

/** Options for `awsClients()` against an emulator, with the region and credentials the environment lacks filled in. */
export function emulatorClientOptions(endpoint: string, env: Environment = process.env): AwsClientOptions {
  return {
    endpoint,
    region: emulatorRegion(env),
    ...(namesCredentials(env) ? {} : { credentials: { accessKeyId: EMULATOR_DEFAULTS.accessKeyId, secretAccessKey: EMULATOR_DEFAULTS.secretAccessKey } }),
  };
}

/** The part of an SDK client this check reads: its resolved region and credential providers. */
export interface ConfiguredClient {
  readonly config: { readonly region?: unknown; readonly credentials?: unknown };
}

const resolveProvider = async (provider: unknown): Promise<unknown> => (typeof provider === 'function' ? await (provider as () => Promise<unknown>)() : provider);
const sdkSaid = (e: unknown) => (e instanceof Error && e.message ? ` (the AWS SDK says: ${e.message})` : '');

/**
 * Checks that `client` resolves a region and credentials; otherwise throws one FloeError (`AWS_CONFIGURATION`)
 * listing what is missing and what to set. `endpoint` is the emulator the command was given, if any.
 */
export async function checkAwsConfiguration(client: ConfiguredClient, options: { readonly endpoint?: string; readonly env?: Environment } = {}): Promise<void> {
  const env = options.env ?? process.env;
  const profile = given(env, 'AWS_PROFILE') ? env.AWS_PROFILE : undefined;
  const problems: string[] = [];
  try {
    const region = await resolveProvider(client.config.region);
    if (typeof region !== 'string' || region === '') throw new Error('Region is missing');
  } catch (e) {
    problems.push(
      profile !== undefined
        ? `no AWS region: set AWS_REGION (e.g. AWS_REGION=us-east-1), or a region for profile '${profile}' in ~/.aws/config${sdkSaid(e)}`
        : `no AWS region: set AWS_REGION (e.g. AWS_REGION=us-east-1), or AWS_PROFILE to a profile with a region in ~/.aws/config${sdkSaid(e)}`,
    );
  }
  try {
    await resolveProvider(client.config.credentials);
  } catch (e) {
    problems.push(
      profile !== undefined
        ? `no AWS credentials from profile '${profile}' (AWS_PROFILE): check it in ~/.aws/config and ~/.aws/credentials, or sign in again (\`aws sso login --profile ${profile}\`)${sdkSaid(e)}`
        : 'no AWS credentials: set AWS_PROFILE to a profile in ~/.aws/config or ~/.aws/credentials (`aws configure`, `aws sso login`), ' +
            `or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)${sdkSaid(e)}`,
    );
  }
  if (problems.length === 0) return;
  const where =
    options.endpoint !== undefined
      ? `for the endpoint ${options.endpoint}`
      : given(env, 'AWS_ENDPOINT_URL')
        ? `for the endpoint ${env.AWS_ENDPOINT_URL} (AWS_ENDPOINT_URL; with --aws-endpoint <url> instead, an emulator gets a region and test credentials)`
        : '(this command reaches AWS; for an emulator, pass --aws-endpoint <url>)';
  throw new FloeError(ErrorCode.AwsConfiguration, `AWS is not configured ${where}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
}
