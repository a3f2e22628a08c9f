/**
 * The queues FloeJob creates for sources that ask for one (`feed` on a source connector, lib/api/connector-resources.ts):
 * a standard queue with a dead-letter queue (the source dead-letters what it cannot process through the queue's
 * redrive policy), the wiring that fills it — an EventBridge rule with the source's pattern on its bus — and, for the
 * function of the source's vertex, the grants to consume it and the queue's URL in the variable the source reads.
 */
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Stack } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { acknowledge } from './nag.js';
import { feedQueueEnvName } from '../lib/api/connector-resources.js';
import type { PhysicalPlan } from '../lib/graph/plan.js';

/** The id of the stack-wide function CDK adds to set bucket notifications. */
const BUCKET_NOTIFICATIONS_HANDLER = 'BucketNotificationsHandler050a0587b7544547bf325f094a3db834';

/** A source's feed queue as deployed. */
export interface DeployedFeed {
  readonly uid: string;
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly rule: events.CfnRule;
}

/** Creates each source's feed queue and its wiring; `queueWithDeadLetters` makes the queues as the construct's own are made. */
export function addFeedQueues(
  scope: Construct,
  plan: PhysicalPlan,
  functionOf: (vertex: string) => lambda.Function,
  queueWithDeadLetters: (scopeId: string, description: string) => { queue: sqs.Queue; deadLetterQueue: sqs.Queue },
): DeployedFeed[] {
  const out: DeployedFeed[] = [];
  for (const v of plan.vertices) {
    for (const op of v.operators) {
      const spec = op.node.spec;
      if (spec.kind !== 'source' || spec.connector.feed === undefined) continue;
      const feed = spec.connector.feed;
      const { queue, deadLetterQueue } = queueWithDeadLetters(`Feed-${op.uid}`, `the feed queue of source '${op.uid}'`);
      const holder = new Construct(scope, `FeedWiring-${op.uid}`);
      const bus = feed.bus.startsWith('arn:') ? events.EventBus.fromEventBusArn(holder, 'Bus', feed.bus) : events.EventBus.fromEventBusName(holder, 'Bus', feed.bus);
      const rule = new events.CfnRule(holder, 'Rule', {
        description: `Floe job '${plan.job}': events for source '${op.uid}'`,
        eventBusName: bus.eventBusName,
        eventPattern: feed.pattern,
        state: 'ENABLED',
        targets: [{ id: 'FeedQueue', arn: queue.queueArn }],
      });
      queue.addToResourcePolicy(
        new iam.PolicyStatement({
          principals: [new iam.ServicePrincipal('events.amazonaws.com')],
          actions: ['sqs:SendMessage'],
          resources: [queue.queueArn],
          conditions: { ArnEquals: { 'aws:SourceArn': rule.attrArn } },
        }),
      );
      // The S3 source: the bucket sends its events to EventBridge (CDK's bucket-notifications resource keeps the
      // bucket's other notifications).
      if (feed.bucket !== undefined) {
        s3.Bucket.fromBucketName(holder, 'Bucket', feed.bucket).enableEventBridgeNotification();
        const handler = Stack.of(holder).node.tryFindChild(BUCKET_NOTIFICATIONS_HANDLER);
        if (handler !== undefined) {
          acknowledge(handler, [
            { id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]', reason: "CDK's own bucket-notifications handler (a custom resource run at deploy time) logs with the basic execution role" },
          ]);
        }
      }
      const fn = functionOf(v.id);
      queue.grantConsumeMessages(fn);
      deadLetterQueue.grantSendMessages(fn);
      fn.addEnvironment(feedQueueEnvName(op.uid), queue.queueUrl);
      out.push({ uid: op.uid, queue, deadLetterQueue, rule });
    }
  }
  return out;
}
