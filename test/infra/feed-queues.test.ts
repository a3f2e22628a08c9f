/**
 * A source that asks for a feed queue (the EventBridge source) gets one from FloeJob: a standard queue with a
 * dead-letter queue, an EventBridge rule with the source's pattern targeting it (allowed by the queue's policy for
 * that rule only), and for the source's function alone the grants to consume it and its URL in the environment.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFloeApp } from '../../infra/floe-app.js';
import type { FloeJob } from '../../infra/floe-job.js';
import { feedQueueEnvName } from '../../lib/api/connector-resources.js';
import { allowedFor } from './support/iam-policies.js';

const fixtures = { operatorEntry: 'test/fixtures/handlers/operator.ts', coordinatorEntry: 'test/fixtures/handlers/coordinator.ts' };
let outdir: string;
let app: App;
let stack: Stack;
let job: FloeJob;
let template: Template;

beforeAll(async () => {
  outdir = mkdtempSync(join(tmpdir(), 'floe-cdk-feeds-'));
  app = new App({ outdir, context: { job: 'test/fixtures/jobs/eventbridge-orders.ts', removalPolicy: 'destroy', deletionProtection: 'false', ...fixtures } });
  ({ stack, job } = await createFloeApp(app));
  template = Template.fromStack(stack);
});
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

describe('feed queues in FloeJob', () => {
  it("creates a rule with the source's pattern on the default bus, targeting a queue of the source's own", () => {
    const rules = template.findResources('AWS::Events::Rule');
    expect(Object.keys(rules)).toHaveLength(1);
    const rule = Object.values(rules)[0]!.Properties;
    expect(rule.EventPattern).toEqual({ source: ['shop'], 'detail-type': ['order'] });
    expect(rule.EventBusName).toBe('default');
    expect(rule.State).toBe('ENABLED');
    const queueId = Object.keys(template.findResources('AWS::SQS::Queue')).find((id) => id.includes('Feedorders') && id.includes('Queue') && !id.includes('DeadLetter'))!;
    expect(queueId, Object.keys(template.findResources('AWS::SQS::Queue')).join(', ')).toBeDefined();
    expect(rule.Targets).toEqual([{ Id: 'FeedQueue', Arn: { 'Fn::GetAtt': [queueId, 'Arn'] } }]);
    // Not FIFO, with a dead-letter queue.
    const queue = template.findResources('AWS::SQS::Queue')[queueId]!.Properties;
    expect(queue.FifoQueue).toBeUndefined();
    expect(queue.RedrivePolicy?.deadLetterTargetArn).toBeDefined();
    // EventBridge may send to it, from this rule only.
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: queueId }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Allow', Principal: { Service: 'events.amazonaws.com' }, Action: 'sqs:SendMessage', Condition: { ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [Match.stringLikeRegexp('FeedWiring'), 'Arn'] } } } }),
        ]),
      },
    });
  });

  it("gives the source's function, and no other, the queue's URL and the grants to consume it", () => {
    const sourceVertex = [...job.vertices.values()].find((v) => v.vertex.isSource)!;
    const env = template.findResources('AWS::Lambda::Function');
    const withUrl = Object.entries(env).filter(([, f]) => f.Properties.Environment?.Variables?.[feedQueueEnvName('orders')] !== undefined);
    expect(withUrl.map(([id]) => id)).toEqual([stack.getLogicalId(sourceVertex.function.node.defaultChild as never)]);
    const consumes = (f: { role?: { roleName: string } }) => allowedFor(stack, template, f.role!).filter((a) => a.resource.includes('Feedorders') && a.action === 'sqs:ReceiveMessage');
    expect(consumes(sourceVertex.function)).toHaveLength(1);
    for (const [id, v] of job.vertices) if (v !== sourceVertex) expect(consumes(v.function), id).toEqual([]);
    expect(consumes(job.coordinatorFunction)).toEqual([]);
  });

  it('stays clean under cdk-nag', () => {
    const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(app);
    expect([...report.violations.map((v) => `${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`), ...Annotations.fromStack(stack).findError('*', Match.anyValue()).map((e) => String(e.entry.data))]).toEqual([]);
  });
});
