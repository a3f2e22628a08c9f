/**
 * FloeJob grants the AWS resources a job's sources and sinks declare, each to the functions that run the code that
 * touches it, with exactly the calls its access needs: the README's deploy example on `my-bucket`, a job with a
 * connector of every kind, and resources handed over as CDK constructs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SinkConnector, SourceConnector } from '../../lib/api/connector.js';
import type { AwsResourceAccess } from '../../lib/api/connector-resources.js';
import { Job } from '../../lib/api/job.js';
import { s3Source } from '../../lib/connectors/s3-source.js';
import { stdoutSink } from '../../lib/connectors/stdout-sink.js';
import { FloeJobErrorId, FloeJobValidationError, type FloeJobProblem } from '../../infra/errors.js';
import { createFloeApp } from '../../infra/floe-app.js';
import { FloeJob, type FloeJobProps } from '../../infra/floe-job.js';
import { allowedFor, type Allowed } from './support/iam-policies.js';

const projectRoot = join(import.meta.dirname, '..', '..');
const fixtures = { operatorEntry: 'test/fixtures/handlers/operator.ts', coordinatorEntry: 'test/fixtures/handlers/coordinator.ts' };
let outdir: string;

beforeAll(() => {
  outdir = mkdtempSync(join(tmpdir(), 'floe-cdk-grants-'));
});
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

/** `arn:${AWS::Partition}:<rest>` as CloudFormation writes a formatted ARN (with the region and account as given). */
const partitionArn = (rest: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, rest]] });
/** `arn:${AWS::Partition}:<service>:${AWS::Region}:${AWS::AccountId}:<resource>`: an ARN in the stack's region and account. */
const stackArn = (service: string, resource: string) => ({
  'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:${service}:`, { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, `:${resource}`]],
});

/** Every function of a FloeJob with a name for failure messages: its vertices', the coordinator's, the control API's. */
function functionsOf(job: FloeJob): { name: string; role: { roleName: string } }[] {
  return [
    ...[...job.vertices].map(([id, v]) => ({ name: `vertex ${id}`, role: v.function.role! })),
    { name: 'coordinator', role: job.coordinatorFunction.role! },
    { name: 'control API', role: job.controlApiFunction.role! },
  ];
}

/** What each function may do on a resource, by function name (functions with no grant on it left out). */
function grantsOn(stack: Stack, template: Template, job: FloeJob, resource: (a: Allowed) => boolean): Record<string, Allowed[]> {
  const out: Record<string, Allowed[]> = {};
  for (const f of functionsOf(job)) {
    const allowed = allowedFor(stack, template, f.role).filter(resource);
    if (allowed.length > 0) out[f.name] = allowed.sort((a, b) => `${a.action} ${a.resource}`.localeCompare(`${b.action} ${b.resource}`));
  }
  return out;
}

const on = (arn: unknown) => (a: Allowed) => a.resource === JSON.stringify(arn);
const mentions = (text: string) => (a: Allowed) => a.resource.includes(text);

/** cdk-nag's AwsSolutions findings in an app, and its error annotations: both empty when the stacks are clean. */
function nagFindings(app: App, stack: Stack): string[] {
  const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(app);
  return [
    ...report.violations.map((v) => `${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`),
    ...Annotations.fromStack(stack).findError('*', Match.anyValue()).map((e) => String(e.entry.data)),
  ];
}

describe("the README's deploy example", () => {
  let app: App;
  let stack: Stack;
  let job: FloeJob;
  let template: Template;

  beforeAll(async () => {
    // Given the README's `npm run synth -- -c job=examples/wordcount.ts -c args="--input s3://my-bucket/in --output s3://my-bucket/out"`
    app = new App({
      outdir,
      context: { job: 'examples/wordcount.ts', args: '--input s3://my-bucket/in --output s3://my-bucket/out', removalPolicy: 'destroy', deletionProtection: 'false', ...fixtures },
    });
    ({ stack, job } = await createFloeApp(app));
    // Synthesis runs cdk-nag: an unacknowledged finding fails it here.
    template = Template.fromStack(stack);
  });

  it("lets the source's function read the input object or the objects under in/, and list only those keys", () => {
    const grants = grantsOn(stack, template, job, mentions('my-bucket'));
    const source = [...job.vertices.values()].find((v) => v.vertex.isSource)!.vertex.id;
    const isOutput = (a: Allowed) => a.resource.includes('my-bucket/out') || JSON.stringify(a.condition ?? {}).includes('out/');
    const reads = (grants[`vertex ${source}`] ?? []).filter((a) => !isOutput(a));
    expect(reads).toEqual([
      { action: 's3:GetObject', resource: JSON.stringify(partitionArn(':s3:::my-bucket/in')) },
      { action: 's3:GetObject', resource: JSON.stringify(partitionArn(':s3:::my-bucket/in/*')) },
      { action: 's3:ListBucket', resource: JSON.stringify(partitionArn(':s3:::my-bucket')), condition: { StringLike: { 's3:prefix': ['in'] } } },
      { action: 's3:ListBucket', resource: JSON.stringify(partitionArn(':s3:::my-bucket')), condition: { StringLike: { 's3:prefix': ['in/*'] } } },
    ]);
    // (as IAM statements in the template, in the source function's policy)
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [stack.resolve(job.vertices.get(source)!.function.role!.roleName)],
      PolicyDocument: {
        Statement: Match.arrayWith([
          { Effect: 'Allow', Action: 's3:GetObject', Resource: partitionArn(':s3:::my-bucket/in/*') },
          { Effect: 'Allow', Action: 's3:ListBucket', Resource: partitionArn(':s3:::my-bucket'), Condition: { StringLike: { 's3:prefix': ['in/*'] } } },
        ]),
      },
    });
    // Nobody else reads the input.
    for (const [who, allowed] of Object.entries(grants)) if (who !== `vertex ${source}`) expect(allowed.filter((a) => /my-bucket\/in|"in/.test(a.resource + JSON.stringify(a.condition ?? {}))), who).toEqual([]);
  });

  it("lets every vertex function and the coordinator, which may commit the sink's output, write, copy and delete under out/ only", () => {
    const grants = grantsOn(stack, template, job, mentions('my-bucket'));
    const writers = [...job.vertices.keys()].map((id) => `vertex ${id}`).concat('coordinator');
    expect(Object.keys(grants).sort()).toEqual(writers.sort());
    for (const who of writers) {
      expect(grants[who]!.filter((a) => a.resource.includes('my-bucket/out') || a.condition?.StringLike?.['s3:prefix']?.toString() === 'out/*'), who).toEqual([
        { action: 's3:DeleteObject', resource: JSON.stringify(partitionArn(':s3:::my-bucket/out/*')) },
        { action: 's3:GetObject', resource: JSON.stringify(partitionArn(':s3:::my-bucket/out/*')) },
        { action: 's3:ListBucket', resource: JSON.stringify(partitionArn(':s3:::my-bucket')), condition: { StringLike: { 's3:prefix': ['out/*'] } } },
        { action: 's3:PutObject', resource: JSON.stringify(partitionArn(':s3:::my-bucket/out/*')) },
      ]);
    }
    expect(grants['control API']).toBeUndefined();
  });

  it('grants nothing on my-bucket with a wildcard resource, nor anything at all on Resource *', () => {
    for (const f of functionsOf(job)) {
      const allowed = allowedFor(stack, template, f.role);
      expect(allowed.filter((a) => a.resource === '"*"'), f.name).toEqual([]);
      expect(allowed.filter((a) => a.resource.includes('my-bucket') && /:::my-bucket\/?\*"|:::\*/.test(a.resource)), f.name).toEqual([]);
    }
  });

  it('stays clean under cdk-nag, each wildcard under a prefix acknowledged for its connector', () => {
    expect(nagFindings(app, stack)).toEqual([]);
  });
});

/** A source that declares `resources`; it is never run here. */
function source(type: string, resources: AwsResourceAccess[]): SourceConnector<string> {
  return { type, bounded: true, resources, createSplits: async () => [], read: async (split) => ({ values: [], split }) };
}

/** A sink that declares `resources`; it is never run here. */
function sink(type: string, exactlyOnce: boolean, resources: AwsResourceAccess[]): SinkConnector<string> {
  return {
    type,
    exactlyOnce,
    resources,
    createWriter: () => ({ resume: async () => null, write: async () => null, preCommit: async () => ({ state: null, pendingCommits: [] }) }),
    commit: async () => {},
  };
}

/** Orders from SQS and clicks from Kinesis, joined, then out to DynamoDB, EventBridge, SQS and (exactly once) S3. */
function connectorsJob(): Job {
  const job = new Job('connectors', { checkpoint: { interval: '1m' }, parallelism: 2 });
  const orders = job.source(source('sqs', [{ service: 'sqs', queue: 'orders', access: 'consume' }]), { uid: 'orders' });
  const clicks = job.source(source('kinesis', [{ service: 'kinesis', stream: 'arn:aws:kinesis:eu-west-1:111122223333:stream/clicks', access: 'read' }]), { uid: 'clicks' });
  const joined = orders.union(clicks).keyBy((v) => v).reduce((a, b) => a + b, { uid: 'join' });
  joined.sinkTo(sink('dynamodb', false, [{ service: 'dynamodb', table: 'totals', access: 'write' }]), { uid: 'totals' });
  joined.sinkTo(sink('eventbridge', false, [{ service: 'events', bus: 'default', access: 'put' }]), { uid: 'events' });
  joined.sinkTo(sink('sqs', false, [{ service: 'sqs', queue: 'https://sqs.eu-west-1.amazonaws.com/111122223333/alerts', access: 'send' }]), { uid: 'alerts' });
  joined.sinkTo(sink('archive', true, [{ service: 's3', bucket: 'archive-bucket', prefix: 'daily/', access: 'readwrite' }]), { uid: 'archive' });
  return job;
}

/** Builds a FloeJob for `job` in an app and stack of its own. */
function synth(job: Job, props: Partial<FloeJobProps> = {}, build?: (stack: Stack) => Partial<FloeJobProps>): { app: App; stack: Stack; job: FloeJob; template: Template } {
  const app = new App({ outdir });
  const stack = new Stack(app, 'Connectors');
  const floeJob = new FloeJob(stack, 'Job', { job, jobFile: 'examples/wordcount.ts', projectRoot, ...fixtures, deletionProtection: false, ...props, ...build?.(stack) });
  return { app, stack, job: floeJob, template: Template.fromStack(stack) };
}

/** The vertex (function name as `functionsOf` gives it) that runs the operator `uid`. */
function vertexOf(job: FloeJob, uid: string): string {
  return `vertex ${[...job.vertices.values()].find((v) => v.vertex.operators.some((op) => op.uid === uid))!.vertex.id}`;
}

describe('a job with a connector of every kind', () => {
  let built: ReturnType<typeof synth>;
  beforeAll(() => {
    built = synth(connectorsJob());
  });
  const grants = (arn: unknown) => grantsOn(built.stack, built.template, built.job, on(arn));
  const actions = (allowed: Allowed[] | undefined) => [...new Set((allowed ?? []).map((a) => a.action))].sort();

  it('puts every source and every sink in a vertex of its own', () => {
    for (const uid of ['orders', 'clicks', 'totals', 'events', 'alerts', 'archive']) expect(vertexOf(built.job, uid)).toMatch(/^vertex /);
    expect(new Set(['orders', 'clicks', 'totals', 'events', 'alerts', 'archive'].map((uid) => vertexOf(built.job, uid))).size).toBe(6);
  });

  it.each([
    ['the SQS source (a queue by name: the stack\'s region and account)', 'orders', stackArn('sqs', 'orders'), ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage']],
    ['the Kinesis source (a stream by ARN)', 'clicks', 'arn:aws:kinesis:eu-west-1:111122223333:stream/clicks', ['kinesis:DescribeStreamSummary', 'kinesis:GetRecords', 'kinesis:GetShardIterator', 'kinesis:ListShards']],
  ])('grants %s to its own vertex only, exactly its calls', (_what, uid, arn, expected) => {
    const granted = grants(arn);
    expect(Object.keys(granted)).toEqual([vertexOf(built.job, uid)]);
    expect(actions(granted[vertexOf(built.job, uid)])).toEqual(expected);
  });

  // A sink's transactions, at-least-once ones included, are carried out wherever the checkpoint completes.
  it.each([
    ['the DynamoDB sink (writes only)', stackArn('dynamodb', 'table/totals'), ['dynamodb:BatchWriteItem', 'dynamodb:DeleteItem', 'dynamodb:DescribeTable', 'dynamodb:PutItem', 'dynamodb:UpdateItem']],
    ['the EventBridge sink (the default bus)', stackArn('events', 'event-bus/default'), ['events:PutEvents']],
    ['the SQS sink (a queue by URL: its own region and account)', partitionArn(':sqs:eu-west-1:111122223333:alerts'), ['sqs:GetQueueUrl', 'sqs:SendMessage']],
  ])('grants %s to every vertex function and the coordinator, which may commit it, exactly its calls', (_what, arn, expected) => {
    const granted = grants(arn);
    expect(Object.keys(granted).sort()).toEqual([...built.job.vertices.keys()].map((id) => `vertex ${id}`).concat('coordinator').sort());
    for (const allowed of Object.values(granted)) expect(actions(allowed)).toEqual(expected);
  });

  it('grants the exactly-once S3 sink to every vertex function and the coordinator, which may commit it, not to the control API', () => {
    const objects = grants(partitionArn(':s3:::archive-bucket/daily/*'));
    expect(Object.keys(objects).sort()).toEqual([...built.job.vertices.keys()].map((id) => `vertex ${id}`).concat('coordinator').sort());
    for (const allowed of Object.values(objects)) expect(actions(allowed)).toEqual(['s3:DeleteObject', 's3:GetObject', 's3:PutObject']);
    const listing = grants(partitionArn(':s3:::archive-bucket'));
    for (const allowed of Object.values(listing)) expect(allowed).toEqual([{ action: 's3:ListBucket', resource: JSON.stringify(partitionArn(':s3:::archive-bucket')), condition: { StringLike: { 's3:prefix': ['daily/*'] } } }]);
  });

  it('reads no DynamoDB index and grants nothing on Resource *', () => {
    for (const f of functionsOf(built.job)) {
      const allowed = allowedFor(built.stack, built.template, f.role);
      expect(allowed.filter((a) => a.resource === '"*"'), f.name).toEqual([]);
      expect(allowed.filter((a) => a.resource.includes('table/totals/index')), f.name).toEqual([]);
    }
  });

  it('stays clean under cdk-nag', () => {
    expect(nagFindings(built.app, built.stack)).toEqual([]);
  });
});

describe('resources handed over as CDK constructs', () => {
  let built: ReturnType<typeof synth>;
  let key: kms.IKey;
  beforeAll(() => {
    built = synth(connectorsJob(), {}, (stack) => {
      key = kms.Key.fromKeyArn(stack, 'ArchiveKey', 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab');
      return {
        resources: {
          'archive-bucket': s3.Bucket.fromBucketAttributes(stack, 'Archive', { bucketName: 'archive-bucket', encryptionKey: key }),
          orders: sqs.Queue.fromQueueArn(stack, 'Orders', 'arn:aws:sqs:us-east-1:111122223333:orders'),
          totals: dynamodb.Table.fromTableName(stack, 'Totals', 'totals'),
          default: events.EventBus.fromEventBusName(stack, 'Bus', 'default'),
        },
      };
    });
  });

  it("grants through the construct's own grant*: the queue's consume actions on its ARN, the bucket's read-write on the prefix and its key", () => {
    const queue = grantsOn(built.stack, built.template, built.job, on('arn:aws:sqs:us-east-1:111122223333:orders'));
    expect(Object.keys(queue)).toEqual([vertexOf(built.job, 'orders')]);
    expect(queue[vertexOf(built.job, 'orders')]!.map((a) => a.action).sort()).toEqual(['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage']);
    const archive = grantsOn(built.stack, built.template, built.job, mentions(':s3:::archive-bucket/daily/*'));
    expect(Object.keys(archive).sort()).toEqual([...built.job.vertices.keys()].map((id) => `vertex ${id}`).concat('coordinator').sort());
    for (const allowed of Object.values(archive)) expect(allowed.map((a) => a.action)).toEqual(expect.arrayContaining(['s3:GetObject*', 's3:PutObject', 's3:DeleteObject*']));
    const decrypt = grantsOn(built.stack, built.template, built.job, on(key.keyArn));
    expect(Object.keys(decrypt).sort()).toEqual(Object.keys(archive).sort());
    // The name-based grant of a construct's resource is not added besides (its exact actions, its conditioned listing).
    expect(grantsOn(built.stack, built.template, built.job, on(stackArn('sqs', 'orders')))).toEqual({});
    for (const allowed of Object.values(archive)) expect(allowed.map((a) => a.action)).not.toContain('s3:GetObject');
    for (const allowed of Object.values(grantsOn(built.stack, built.template, built.job, mentions(':s3:::archive-bucket')))) expect(allowed.filter((a) => a.condition)).toEqual([]);
  });

  it("writes the table through grantWriteData and puts events through grantPutEventsTo, on the functions that may commit them only", () => {
    const committers = [...built.job.vertices.keys()].map((id) => `vertex ${id}`).concat('coordinator').sort();
    const table = grantsOn(built.stack, built.template, built.job, mentions('table/totals'));
    expect(Object.keys(table).sort()).toEqual(committers);
    expect(table[vertexOf(built.job, 'totals')]!.map((a) => a.action)).toEqual(expect.arrayContaining(['dynamodb:BatchWriteItem', 'dynamodb:PutItem']));
    const bus = grantsOn(built.stack, built.template, built.job, mentions('event-bus/default'));
    expect(Object.keys(bus).sort()).toEqual(committers);
  });

  it("stays clean under cdk-nag: the construct grants' action groups are acknowledged for their connector", () => {
    expect(nagFindings(built.app, built.stack)).toEqual([]);
  });
});

describe('checks of the declared resources and the resources prop', () => {
  function problemsOf(job: Job, build: (stack: Stack) => Partial<FloeJobProps>): FloeJobProblem[] {
    const stack = new Stack(new App(), 'Invalid');
    try {
      new FloeJob(stack, 'Job', { job, jobFile: 'examples/wordcount.ts', projectRoot, ...fixtures, ...build(stack) });
      return [];
    } catch (e) {
      if (e instanceof FloeJobValidationError) return [...e.issues];
      throw e;
    }
  }

  it('reports every problem at once: a key no connector declares, a construct of another kind or of another name', () => {
    const problems = problemsOf(connectorsJob(), (stack) => ({
      resources: {
        'archive-bucket': sqs.Queue.fromQueueArn(stack, 'NotABucket', 'arn:aws:sqs:us-east-1:111122223333:archive-bucket'),
        totals: dynamodb.Table.fromTableName(stack, 'Other', 'other-table'),
        'no-such-thing': s3.Bucket.fromBucketName(stack, 'Unused', 'no-such-thing'),
      },
    }));
    expect(problems).toEqual([
      { id: FloeJobErrorId.ConnectorResourceMismatch, message: "resources['totals'] is dynamodb 'other-table', but sink 'totals' uses 'totals'" },
      { id: FloeJobErrorId.ConnectorResourceMismatch, message: "resources['archive-bucket'] must be an s3.IBucket for sink 'archive', got an sqs.IQueue" },
      {
        id: FloeJobErrorId.UnknownConnectorResource,
        message:
          "resources names 'no-such-thing', which no source or sink of job 'connectors' declares; they declare 'orders', 'arn:aws:kinesis:eu-west-1:111122223333:stream/clicks', 'totals', 'default', 'https://sqs.eu-west-1.amazonaws.com/111122223333/alerts', 'archive-bucket'",
      },
    ]);
  });

  it('refuses a declared resource that cannot be granted', () => {
    const job = new Job('bad', {});
    const bad = [
      { service: 'sns', topic: 't', access: 'publish' },
      { service: 's3', bucket: 'b', key: 'k', prefix: 'p/', access: 'read' },
      { service: 'dynamodb', table: '', access: 'read' },
    ] as unknown as AwsResourceAccess[];
    job.source(source('odd', bad), { uid: 'odd' }).sinkTo(sink('none', false, []), { uid: 'out' });
    expect(problemsOf(job, () => ({})).map((p) => [p.id, p.message])).toEqual([
      [FloeJobErrorId.InvalidConnectorResource, "source 'odd' declares a resource that cannot be granted: unknown service 'sns' (one of s3, sqs, dynamodb, kinesis, events)"],
      [FloeJobErrorId.InvalidConnectorResource, "source 'odd' declares a resource that cannot be granted: s3 b: give a key or a prefix, not both"],
      [FloeJobErrorId.InvalidConnectorResource, "source 'odd' declares a resource that cannot be granted: dynamodb resource has no name"],
    ]);
  });

  it('escapes IAM wildcards in a declared key, so that it grants that key only', () => {
    const job = new Job('literal', {});
    job.source(source('odd', [{ service: 's3', bucket: 'b-bucket', key: 'a*b?$c', access: 'read' }]), { uid: 'odd' }).sinkTo(sink('none', false, []), { uid: 'out' });
    const { stack, job: floeJob, template } = synth(job);
    const allowed = allowedFor(stack, template, [...floeJob.vertices.values()].find((v) => v.vertex.isSource)!.function.role!).filter(mentions('b-bucket'));
    expect(allowed).toEqual([
      { action: 's3:GetObject', resource: JSON.stringify(partitionArn(':s3:::b-bucket/a${*}b${?}${$}c')) },
      { action: 's3:ListBucket', resource: JSON.stringify(partitionArn(':s3:::b-bucket')), condition: { StringLike: { 's3:prefix': ['a${*}b${?}${$}c'] } } },
    ]);
  });
});

describe('the S3 source, notified through EventBridge', () => {
  let built: ReturnType<typeof synth>;
  beforeAll(() => {
    const job = new Job('s3-uploads', { parallelism: 2, checkpoint: { interval: '10s' } });
    job
      .source(s3Source({ bucket: 'uploads-bucket', prefix: 'in/', notifications: 'eventbridge' }), { uid: 'uploads' })
      .map((line) => line.toUpperCase())
      .keyBy((line) => line)
      .reduce((a) => a, { uid: 'last' })
      .sinkTo(stdoutSink(), { uid: 'out' });
    built = synth(job);
  });

  it('lets the source function and the function that reads the objects (after they are deduplicated by key) read under in/, and no other', () => {
    const grants = grantsOn(built.stack, built.template, built.job, (a) => a.action === 's3:GetObject' && a.resource.includes('uploads-bucket'));
    const readers = [vertexOf(built.job, 'uploads'), vertexOf(built.job, 'uploads.read')];
    expect(readers[0]).not.toBe(readers[1]);
    expect(Object.keys(grants).sort()).toEqual([...readers].sort());
    for (const r of readers) expect(grants[r]).toContainEqual({ action: 's3:GetObject', resource: JSON.stringify(partitionArn(':s3:::uploads-bucket/in/*')) });
  });

  it("creates a rule for the bucket's Object Created events under the prefix, feeding a queue of the source's own", () => {
    const rules = Object.values(built.template.findResources('AWS::Events::Rule')).map((r) => r.Properties);
    expect(rules.map((r) => r.EventPattern)).toEqual([{ source: ['aws.s3'], 'detail-type': ['Object Created'], detail: { bucket: { name: ['uploads-bucket'] }, object: { key: [{ prefix: 'in/' }] } } }]);
    // And turns the bucket's EventBridge notifications on, keeping its others (CDK's notifications resource, managed: false for a bucket it did not create)
    built.template.hasResourceProperties('Custom::S3BucketNotifications', { BucketName: 'uploads-bucket', NotificationConfiguration: { EventBridgeConfiguration: {} }, Managed: false });
  });

  it('stays clean under cdk-nag', () => {
    expect(nagFindings(built.app, built.stack)).toEqual([]);
  });
});
