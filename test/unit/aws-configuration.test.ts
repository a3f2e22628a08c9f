import { describe, expect, it } from 'vitest';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import { EMULATOR_DEFAULTS, checkAwsConfiguration, emulatorClientOptions, emulatorEnvironment, useAwsEndpoint, type ConfiguredClient } from '../../lib/adapters/aws/aws-configuration.js';

const url = 'http://127.0.0.1:5000';

describe('emulator environment', () => {
  it.each([
    ['nothing set', {}, { AWS_ENDPOINT_URL: url, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' }],
    ['a region', { AWS_REGION: 'eu-west-1' }, { AWS_ENDPOINT_URL: url, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' }],
    ['AWS_DEFAULT_REGION only (the SDK reads AWS_REGION)', { AWS_DEFAULT_REGION: 'eu-north-1' }, { AWS_ENDPOINT_URL: url, AWS_REGION: 'eu-north-1', AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' }],
    ['keys of their own', { AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'AKIA', AWS_SECRET_ACCESS_KEY: 's' }, { AWS_ENDPOINT_URL: url }],
    ['a profile', { AWS_REGION: 'us-east-1', AWS_PROFILE: 'moto' }, { AWS_ENDPOINT_URL: url }],
    ['an empty region and profile (unset)', { AWS_REGION: '', AWS_PROFILE: '' }, { AWS_ENDPOINT_URL: url, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' }],
    [
      'per-service endpoints and the switch that ignores them',
      { AWS_REGION: 'us-east-1', AWS_PROFILE: 'p', AWS_ENDPOINT_URL: 'http://elsewhere', AWS_ENDPOINT_URL_S3: 'http://s3.elsewhere', AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true' },
      { AWS_ENDPOINT_URL: url, AWS_ENDPOINT_URL_S3: url, AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: undefined },
    ],
  ])('with %s, points every client at the endpoint and fills in what is missing', (_what, env: Record<string, string>, changes) => {
    expect(emulatorEnvironment(url, env)).toEqual(changes);
  });

  it('applies the changes to an environment, removing what it unsets', () => {
    const env: Record<string, string | undefined> = { AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true', AWS_ENDPOINT_URL_SQS: 'http://sqs.elsewhere', PATH: '/bin' };
    useAwsEndpoint(url, env);
    expect(env).toEqual({ AWS_ENDPOINT_URL: url, AWS_ENDPOINT_URL_SQS: url, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', PATH: '/bin' });
  });

  it('gives clients the endpoint, a region, and test credentials only when the environment names none', () => {
    expect(emulatorClientOptions(url, {})).toEqual({ endpoint: url, region: EMULATOR_DEFAULTS.region, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
    expect(emulatorClientOptions(url, { AWS_REGION: 'eu-west-1', AWS_PROFILE: 'local' })).toEqual({ endpoint: url, region: 'eu-west-1' });
  });
});

/** A client whose region and credentials resolve, or fail as the SDK's do. */
function client(region: string | Error, credentials: object | Error): ConfiguredClient {
  const provide = (v: unknown) => async () => {
    if (v instanceof Error) throw v;
    return v;
  };
  return { config: { region: provide(region), credentials: provide(credentials) } };
}

async function messageOf(check: Promise<void>): Promise<string> {
  const e = await check.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(FloeError);
  expect((e as FloeError).code).toBe(ErrorCode.AwsConfiguration);
  return (e as FloeError).message;
}

describe('AWS configuration check', () => {
  const keys = { accessKeyId: 'AKIA', secretAccessKey: 's' };

  it('passes when a region and credentials resolve', async () => {
    await expect(checkAwsConfiguration(client('eu-west-1', keys), { env: {} })).resolves.toBeUndefined();
  });

  it('names both what is missing and what to set, in one error, for AWS', async () => {
    const message = await messageOf(checkAwsConfiguration(client(new Error('Region is missing'), new Error('Could not load credentials from any providers')), { env: {} }));
    expect(message.split('\n')).toEqual([
      'AWS is not configured (this command reaches AWS; for an emulator, pass --aws-endpoint <url>):',
      '  - no AWS region: set AWS_REGION (e.g. AWS_REGION=us-east-1), or AWS_PROFILE to a profile with a region in ~/.aws/config (the AWS SDK says: Region is missing)',
      '  - no AWS credentials: set AWS_PROFILE to a profile in ~/.aws/config or ~/.aws/credentials (`aws configure`, `aws sso login`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ' +
        '(and AWS_SESSION_TOKEN for temporary ones) (the AWS SDK says: Could not load credentials from any providers)',
    ]);
  });

  it('names the profile when AWS_PROFILE is set, and reports only what is missing', async () => {
    const message = await messageOf(checkAwsConfiguration(client('eu-west-1', new Error('Token is expired')), { env: { AWS_PROFILE: 'dev' } }));
    expect(message).toMatch(/^ {2}- no AWS credentials from profile 'dev' \(AWS_PROFILE\): .*`aws sso login --profile dev`.*Token is expired/m);
    expect(message).not.toMatch(/region/);
  });

  it('treats an empty region as missing', async () => {
    expect(await messageOf(checkAwsConfiguration(client('', keys), { env: {} }))).toMatch(/no AWS region: set AWS_REGION/);
  });

  it('says which endpoint it was for, given one or through AWS_ENDPOINT_URL', async () => {
    const failing = () => client(new Error('Region is missing'), keys);
    expect(await messageOf(checkAwsConfiguration(failing(), { endpoint: url, env: {} }))).toMatch(/^AWS is not configured for the endpoint http:\/\/127\.0\.0\.1:5000:$/m);
    expect(await messageOf(checkAwsConfiguration(failing(), { env: { AWS_ENDPOINT_URL: url } }))).toMatch(/for the endpoint http:\/\/127\.0\.0\.1:5000 \(AWS_ENDPOINT_URL; with --aws-endpoint <url> instead/);
  });
});
