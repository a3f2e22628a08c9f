/**
 * Grants for the AWS resources a job's connectors declare (`resources` on a source or sink connector,
 * lib/api/connector-resources.ts). A resource named by name, URL or ARN gets statements of exactly the calls its
 * access needs on its ARN (in the stack's account and region unless the URL or ARN says otherwise); one mapped to a
 * CDK construct in FloeJob's `resources` prop is granted through the construct's own grant* methods, which also
 * cover its KMS key. Where a grant goes is decided by the operator's place in the plan: a source's resources to the
 * function of its vertex; a sink's to the function of its vertex and, for an exactly-once sink, to every vertex
 * function and the coordinator too, since any of them may commit its transactions.
 */
import { Stack, Token } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import {
  describeResourceAccess,
  resourceAccessProblems,
  resourceIdentifier,
  resourceName,
  type AwsResourceAccess,
  type AwsResourceService,
} from '../lib/api/connector-resources.js';
import type { PlannedResourceUse } from '../lib/graph/connector-resources.js';
import { FloeJobErrorId, type FloeJobProblem } from './errors.js';
import { acknowledgeGrant } from './nag.js';

/** A CDK construct that can stand for a connector's resource in FloeJob's `resources` prop. */
export type ConnectorResourceConstruct = s3.IBucket | sqs.IQueue | dynamodb.ITable | kinesis.IStream | events.IEventBus;

/** The service a construct is a resource of, and its name when known at synth. */
function constructKind(c: ConnectorResourceConstruct): { service: AwsResourceService; name: string } | undefined {
  if ('bucketArn' in c) return { service: 's3', name: c.bucketName };
  if ('queueArn' in c) return { service: 'sqs', name: c.queueName };
  if ('tableArn' in c) return { service: 'dynamodb', name: c.tableName };
  if ('streamArn' in c) return { service: 'kinesis', name: c.streamName };
  if ('eventBusArn' in c) return { service: 'events', name: c.eventBusName };
  return undefined;
}

/** The construct `resources` maps an access to: by the identifier the connector wrote, or by the name it denotes. */
function constructFor(access: AwsResourceAccess, constructs: Readonly<Record<string, ConnectorResourceConstruct>> | undefined): ConnectorResourceConstruct | undefined {
  return constructs?.[resourceIdentifier(access)] ?? constructs?.[resourceName(access)];
}

/** Checks the declared accesses and the `resources` prop against each other, collecting every problem. */
export function connectorResourceProblems(
  job: string,
  uses: readonly PlannedResourceUse[],
  constructs: Readonly<Record<string, ConnectorResourceConstruct>> | undefined,
): FloeJobProblem[] {
  const problems: FloeJobProblem[] = [];
  const declared = new Set<string>();
  for (const use of uses) {
    for (const access of use.resources) {
      const wrong = resourceAccessProblems(access);
      for (const p of wrong) problems.push({ id: FloeJobErrorId.InvalidConnectorResource, message: `${use.role} '${use.uid}' declares a resource that cannot be granted: ${p}` });
      if (wrong.length > 0) continue;
      declared.add(resourceIdentifier(access)).add(resourceName(access));
      const construct = constructFor(access, constructs);
      if (construct === undefined) continue;
      const kind = constructKind(construct);
      if (kind?.service !== access.service) {
        problems.push({
          id: FloeJobErrorId.ConnectorResourceMismatch,
          message: `resources['${resourceIdentifier(access)}'] must be ${articleFor(access.service)} for ${use.role} '${use.uid}', got ${kind ? articleFor(kind.service) : 'a construct of another kind'}`,
        });
      } else if (!Token.isUnresolved(kind.name) && kind.name !== resourceName(access)) {
        problems.push({
          id: FloeJobErrorId.ConnectorResourceMismatch,
          message: `resources['${resourceIdentifier(access)}'] is ${access.service} '${kind.name}', but ${use.role} '${use.uid}' uses '${resourceName(access)}'`,
        });
      }
    }
  }
  for (const key of Object.keys(constructs ?? {})) {
    if (declared.has(key)) continue;
    const names = [...new Set(uses.flatMap((u) => u.resources.map(resourceIdentifier)))];
    problems.push({
      id: FloeJobErrorId.UnknownConnectorResource,
      message: `resources names '${key}', which no source or sink of job '${job}' declares; they declare ${names.length === 0 ? 'none' : names.map((n) => `'${n}'`).join(', ')}`,
    });
  }
  return problems;
}

function articleFor(service: AwsResourceService): string {
  return { s3: 'an s3.IBucket', sqs: 'an sqs.IQueue', dynamodb: 'a dynamodb.ITable', kinesis: 'a kinesis.IStream', events: 'an events.IEventBus' }[service];
}

/** One function that runs connector code, and what to call it in acknowledgements. */
export interface ConnectorFunction {
  readonly function: lambda.IFunction;
  readonly who: string;
}

/** Where FloeJob's functions are, for {@link grantConnectorResources}. */
export interface ConnectorFunctions {
  /** The function of each vertex, by vertex id. */
  readonly vertices: ReadonlyMap<string, ConnectorFunction>;
  /** The coordinator function, which commits restored sink transactions and removes uncommitted output at a start. */
  readonly coordinator: ConnectorFunction;
}

/** Which functions each declared access goes to, deduplicated per function: see the file comment. */
export function connectorGrantTargets(uses: readonly PlannedResourceUse[], functions: ConnectorFunctions): Map<ConnectorFunction, { access: AwsResourceAccess; use: PlannedResourceUse }[]> {
  const out = new Map<ConnectorFunction, { access: AwsResourceAccess; use: PlannedResourceUse }[]>();
  const seen = new Map<ConnectorFunction, Set<string>>();
  const add = (target: ConnectorFunction, access: AwsResourceAccess, use: PlannedResourceUse) => {
    const key = JSON.stringify(access);
    const keys = seen.get(target) ?? new Set<string>();
    seen.set(target, keys);
    if (keys.has(key)) return;
    keys.add(key);
    out.set(target, [...(out.get(target) ?? []), { access, use }]);
  };
  for (const use of uses) {
    const own = functions.vertices.get(use.vertex)!;
    const targets = use.committed ? [own, ...functions.vertices.values(), functions.coordinator] : [own];
    for (const target of targets) for (const access of use.resources) add(target, access, use);
  }
  return out;
}

/** Grants each function the declared accesses that reach it (see {@link connectorGrantTargets}). */
export function grantConnectorResources(
  uses: readonly PlannedResourceUse[],
  functions: ConnectorFunctions,
  constructs: Readonly<Record<string, ConnectorResourceConstruct>> | undefined,
): void {
  for (const [target, grants] of connectorGrantTargets(uses, functions)) {
    const role = target.function.role!;
    for (const { access, use } of grants) {
      const construct = constructFor(access, constructs);
      const how = construct ? `the construct's own grant* for this access (resources['${resourceIdentifier(access)}'])` : 'statements naming exactly the calls of this access';
      const runs = target.function === functions.vertices.get(use.vertex)!.function ? 'runs' : 'commits the transactions of';
      const why = `${target.who} ${runs} ${use.role} '${use.uid}', which declares ${describeResourceAccess(access)}; granted by ${how}, on that resource's objects, keys or indexes only.`;
      acknowledgeGrant(role, why, () => (construct ? grantThroughConstruct(construct, access, target.function) : grantByName(Stack.of(target.function), access, target.function)));
    }
  }
}

/** A key or prefix as a literal inside an IAM ARN or StringLike pattern: `*`, `?` and `$` escaped as policy variables. */
function iamLiteral(text: string): string {
  return text.replace(/[$*?]/g, (c) => `\${${c}}`);
}

/** One statement of a name-based grant. */
interface NamedStatement {
  readonly actions: readonly string[];
  readonly resources: readonly string[];
  readonly conditions?: Record<string, Record<string, unknown>>;
}

/** The statements a name-based grant of `access` adds: exactly its calls, on its ARNs. */
export function namedStatements(stack: Stack, access: AwsResourceAccess): NamedStatement[] {
  switch (access.service) {
    case 's3': {
      const bucket = stack.formatArn({ service: 's3', region: '', account: '', resource: access.bucket });
      const whole = access.key === undefined && (access.prefix ?? '') === '';
      const pattern = access.key !== undefined ? iamLiteral(access.key) : `${iamLiteral(access.prefix ?? '')}*`;
      const objects = stack.formatArn({ service: 's3', region: '', account: '', resource: access.bucket, resourceName: pattern });
      const out: NamedStatement[] = [];
      if (access.access !== 'write') {
        out.push({ actions: ['s3:GetObject'], resources: [objects] });
        // ListObjectsV2 names its prefix (s3:prefix); a listing of the whole bucket names none, so only then no condition.
        out.push({ actions: ['s3:ListBucket'], resources: [bucket], ...(whole ? {} : { conditions: { StringLike: { 's3:prefix': [pattern] } } }) });
      }
      // CopyObject is a GetObject of its source (read) and a PutObject of its target.
      if (access.access !== 'read') out.push({ actions: ['s3:PutObject', 's3:DeleteObject'], resources: [objects] });
      return out;
    }
    case 'sqs': {
      const queue = queueArn(stack, access.queue);
      // GetQueueUrl: a connector given a queue's name looks its URL up.
      return access.access === 'consume'
        ? [{ actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'], resources: [queue] }]
        : [{ actions: ['sqs:SendMessage', 'sqs:GetQueueUrl'], resources: [queue] }];
    }
    case 'dynamodb': {
      const table = access.table.startsWith('arn:') ? access.table : stack.formatArn({ service: 'dynamodb', resource: 'table', resourceName: access.table });
      const out: NamedStatement[] = [];
      if (access.access !== 'write') out.push({ actions: ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query', 'dynamodb:Scan'], resources: [table, `${table}/index/*`] });
      // DescribeTable: a sink not told the key reads it.
      if (access.access !== 'read') out.push({ actions: ['dynamodb:BatchWriteItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem', 'dynamodb:UpdateItem', 'dynamodb:DescribeTable'], resources: [table] });
      return out;
    }
    case 'kinesis': {
      const stream = access.stream.startsWith('arn:') ? access.stream : stack.formatArn({ service: 'kinesis', resource: 'stream', resourceName: access.stream });
      return access.access === 'read'
        ? [{ actions: ['kinesis:DescribeStreamSummary', 'kinesis:ListShards', 'kinesis:GetShardIterator', 'kinesis:GetRecords'], resources: [stream] }]
        : [{ actions: ['kinesis:PutRecord', 'kinesis:PutRecords'], resources: [stream] }];
    }
    case 'events': {
      const bus = access.bus.startsWith('arn:') ? access.bus : stack.formatArn({ service: 'events', resource: 'event-bus', resourceName: access.bus });
      return [{ actions: ['events:PutEvents'], resources: [bus] }];
    }
  }
}

/** A queue's ARN from its ARN, its URL (whose host and path name its region and account) or its name. */
function queueArn(stack: Stack, queue: string): string {
  if (queue.startsWith('arn:')) return queue;
  if (/^https?:\/\//.test(queue)) {
    const url = new URL(queue);
    const [account, name] = url.pathname.split('/').filter(Boolean);
    const region = /^sqs\.([a-z0-9-]+)\.amazonaws\.com/.exec(url.hostname)?.[1] ?? /^([a-z0-9-]+)\.queue\.amazonaws\.com/.exec(url.hostname)?.[1];
    return stack.formatArn({ service: 'sqs', resource: name ?? '', ...(region ? { region } : {}), ...(account && /^\d{12}$/.test(account) ? { account } : {}) });
  }
  return stack.formatArn({ service: 'sqs', resource: queue });
}

function grantByName(stack: Stack, access: AwsResourceAccess, grantee: iam.IGrantable): void {
  for (const st of namedStatements(stack, access)) {
    iam.Grant.addToPrincipal({ grantee, actions: [...st.actions], resourceArns: [...st.resources], ...(st.conditions ? { conditions: st.conditions } : {}) });
  }
}

function grantThroughConstruct(construct: ConnectorResourceConstruct, access: AwsResourceAccess, grantee: iam.IGrantable): void {
  switch (access.service) {
    case 's3': {
      const bucket = construct as s3.IBucket;
      const pattern = access.key !== undefined ? access.key : `${access.prefix ?? ''}*`;
      if (access.access === 'read') bucket.grantRead(grantee, pattern);
      else if (access.access === 'write') {
        bucket.grantPut(grantee, pattern);
        bucket.grantDelete(grantee, pattern);
      } else bucket.grantReadWrite(grantee, pattern);
      return;
    }
    case 'sqs': {
      const queue = construct as sqs.IQueue;
      if (access.access === 'consume') queue.grantConsumeMessages(grantee);
      else queue.grantSendMessages(grantee);
      return;
    }
    case 'dynamodb': {
      const table = construct as dynamodb.ITable;
      if (access.access === 'read') table.grantReadData(grantee);
      else if (access.access === 'write') table.grantWriteData(grantee);
      else table.grantReadWriteData(grantee);
      return;
    }
    case 'kinesis': {
      const stream = construct as kinesis.IStream;
      if (access.access === 'read') stream.grantRead(grantee);
      else stream.grantWrite(grantee);
      return;
    }
    case 'events':
      (construct as events.IEventBus).grantPutEventsTo(grantee);
      return;
  }
}
