/**
 * What AWS resources a connector touches, and how: a deployment grants each function exactly these (FloeJob in
 * infra/floe-job.ts), and `floe run` checks that AWS is configured before a job that declares any starts.
 *
 * A source's resources are granted to the function of its vertex. A sink's are granted to the function of its
 * vertex and, for an exactly-once (two-phase) sink, also to every function that may commit its transactions: any
 * vertex's acknowledgement may complete a checkpoint, and the coordinator commits a restored snapshot's transactions
 * and removes uncommitted output when a generation starts.
 */

/** Objects of one S3 bucket: the keys under `prefix`, or the one object `key`; without either, the whole bucket. */
export type S3ResourceAccess = {
  readonly service: 's3';
  readonly bucket: string;
  /**
   * `read`: get objects and list keys; `write`: put and delete objects; `readwrite`: both (a sink that copies or
   * checks what it wrote, as the S3 files sink does).
   */
  readonly access: 'read' | 'write' | 'readwrite';
} & (
  | {
      /** Every key that starts with this (`out/` for the keys under `out/`); '' for the whole bucket. @default '' */
      readonly prefix?: string;
      readonly key?: never;
    }
  | {
      /** One object's key, exactly. */
      readonly key: string;
      readonly prefix?: never;
    }
);

/** One SQS queue, named by its URL, its ARN or its name (in the stack's account and region). */
export interface SqsResourceAccess {
  readonly service: 'sqs';
  readonly queue: string;
  /** `consume`: receive, delete and change the visibility of messages; `send`: send them. */
  readonly access: 'consume' | 'send';
}

/** One DynamoDB table (and its indexes, to read), named by its name or its ARN. */
export interface DynamoDbResourceAccess {
  readonly service: 'dynamodb';
  readonly table: string;
  /** `read`: get, query and scan; `write`: put, update, delete and batch-write items; `readwrite`: both. */
  readonly access: 'read' | 'write' | 'readwrite';
}

/** One Kinesis data stream, named by its name or its ARN. */
export interface KinesisResourceAccess {
  readonly service: 'kinesis';
  readonly stream: string;
  /** `read`: list shards and get records; `write`: put records. */
  readonly access: 'read' | 'write';
}

/** One EventBridge event bus, named by its name (`default` included) or its ARN. */
export interface EventsResourceAccess {
  readonly service: 'events';
  readonly bus: string;
  /** `put`: put events on the bus. */
  readonly access: 'put';
}

/** An AWS resource a connector touches, and what it does with it. */
export type AwsResourceAccess = S3ResourceAccess | SqsResourceAccess | DynamoDbResourceAccess | KinesisResourceAccess | EventsResourceAccess;

/** The AWS service of an {@link AwsResourceAccess}. */
export type AwsResourceService = AwsResourceAccess['service'];

/** The resource an access names, as written (`my-bucket`, a queue URL, a table ARN). */
export function resourceIdentifier(access: AwsResourceAccess): string {
  switch (access.service) {
    case 's3':
      return access.bucket;
    case 'sqs':
      return access.queue;
    case 'dynamodb':
      return access.table;
    case 'kinesis':
      return access.stream;
    case 'events':
      return access.bus;
  }
}

/** The resource's name: the identifier itself, or the name at the end of a queue URL or of an ARN. */
export function resourceName(access: AwsResourceAccess): string {
  const id = resourceIdentifier(access);
  if (id.startsWith('arn:')) {
    const resource = id.split(':').slice(5).join(':');
    // table/<name>, stream/<name>, event-bus/<name>; an SQS ARN ends with the bare name.
    return resource.includes('/') ? resource.split('/')[1]! : resource;
  }
  if (access.service === 'sqs' && /^https?:\/\//.test(id)) return new URL(id).pathname.split('/').filter(Boolean).pop() ?? id;
  return id;
}

/** Describes an access for messages: `s3 my-bucket/out/* (readwrite)`. */
export function describeResourceAccess(access: AwsResourceAccess): string {
  if (access.service === 's3') {
    const where = access.key !== undefined ? `/${access.key}` : access.prefix ? `/${access.prefix}*` : '';
    return `s3 ${access.bucket}${where} (${access.access})`;
  }
  return `${access.service} ${resourceIdentifier(access)} (${access.access})`;
}

/** Says what is wrong with an access a connector declared: an empty name, an unknown service or access. */
export function resourceAccessProblems(access: AwsResourceAccess): string[] {
  const accesses: Record<AwsResourceService, readonly string[]> = {
    s3: ['read', 'write', 'readwrite'],
    sqs: ['consume', 'send'],
    dynamodb: ['read', 'write', 'readwrite'],
    kinesis: ['read', 'write'],
    events: ['put'],
  };
  const allowed = accesses[access.service] as readonly string[] | undefined;
  if (allowed === undefined) return [`unknown service '${String(access.service)}' (one of ${Object.keys(accesses).join(', ')})`];
  const problems: string[] = [];
  if (!allowed.includes(access.access)) problems.push(`${access.service} access must be ${allowed.map((a) => `'${a}'`).join(' or ')}, got '${String(access.access)}'`);
  const id = resourceIdentifier(access);
  if (typeof id !== 'string' || id.trim() === '') problems.push(`${access.service} resource has no name`);
  if (access.service === 's3') {
    // A connector written in JavaScript may give both, which the type rules out.
    if (access.key !== undefined && (access as { prefix?: string }).prefix !== undefined) problems.push(`s3 ${access.bucket}: give a key or a prefix, not both`);
    if (access.key === '') problems.push(`s3 ${access.bucket}: key must not be empty (leave it out for the whole bucket)`);
    if (typeof id === 'string' && id.includes('/')) problems.push(`s3 bucket '${id}' must be a bucket name, without a key`);
  }
  return problems;
}

/**
 * A queue a source reads that the deployment creates for it, fed by what it names: the events an EventBridge rule
 * matches. FloeJob creates the queue (with a dead-letter queue), the wiring and the grants, and gives the source's
 * function the queue's URL in the environment variable {@link feedQueueEnvName}; emulator mode creates the same on
 * the emulator and sets the variable in its process.
 */
export type FeedQueue = {
  readonly kind: 'eventbridge';
  /** The event bus's name or ARN. */
  readonly bus: string;
  /** The rule's event pattern, as EventBridge takes it. */
  readonly pattern: Readonly<Record<string, unknown>>;
  /** A bucket whose events the rule matches: the deployment turns its EventBridge notifications on. */
  readonly bucket?: string;
};

/** The environment variable that holds the URL of the feed queue of the source `uid`. */
export function feedQueueEnvName(uid: string): string {
  return `FLOE_FEED_QUEUE_${uid.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}
