import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/** Where the AWS clients connect. */
export interface AwsClientOptions {
  /**
   * Endpoint URL of an AWS-compatible emulator (moto server, LocalStack, fakecloud) or a private endpoint.
   * @default the SDK's own resolution: `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, the shared config, then AWS
   */
  readonly endpoint?: string;
  /**
   * AWS region.
   * @default the SDK's own resolution: `AWS_REGION`, then the shared config
   */
  readonly region?: string;
  /**
   * Static credentials (an emulator's test keys, say).
   * @default the SDK's own resolution: `AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, the shared files, a role
   */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };
}

/** The AWS clients Floe's adapters use, each created on first access and then shared. */
export interface AwsClients {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly dynamodb: DynamoDBClient;
  /** Document client over `dynamodb`; drops `undefined` attributes when marshalling. */
  readonly doc: DynamoDBDocumentClient;
  readonly sfn: SFNClient;
}

/** Builds lazily created S3, SQS, DynamoDB and Step Functions clients; S3 uses path-style URLs whenever an endpoint is configured. */
export function awsClients(options: AwsClientOptions = {}): AwsClients {
  const base = {
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    ...(options.region !== undefined ? { region: options.region } : {}),
    ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
  };
  // Emulators serve every bucket on one host and port, so `bucket.host` (virtual-hosted style) does not resolve there.
  const s3Endpoint = options.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  const s3Config = { ...base, forcePathStyle: s3Endpoint !== undefined && s3Endpoint !== '' };

  let s3: S3Client | undefined;
  let sqs: SQSClient | undefined;
  let dynamodb: DynamoDBClient | undefined;
  let doc: DynamoDBDocumentClient | undefined;
  let sfn: SFNClient | undefined;
  const clients: AwsClients = {
    get s3() {
      return (s3 ??= new S3Client(s3Config));
    },
    get sqs() {
      return (sqs ??= new SQSClient(base));
    },
    get dynamodb() {
      return (dynamodb ??= new DynamoDBClient(base));
    },
    get doc() {
      return (doc ??= DynamoDBDocumentClient.from(clients.dynamodb, { marshallOptions: { removeUndefinedValues: true } }));
    },
    get sfn() {
      return (sfn ??= new SFNClient(base));
    },
  };
  return clients;
}
