import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { COORDINATOR_TASK_MESSAGE_VERSION } from '../../coordination/checkpoint-tasks.js';
import type { TickRequester } from '../../coordination/restarter.js';

/** The longest delay SQS gives a message, in seconds. */
const MAX_DELAY_SECONDS = 900;

/**
 * Asks for a coordinator tick later by a delayed message on the coordinator-tasks queue (a standard queue, which takes
 * a delay per message, up to 15 minutes; a longer wait is bridged by the schedule's ticks).
 */
export class SqsTickRequester implements TickRequester {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
    private readonly job: string,
  ) {}

  async request(delayMs: number): Promise<void> {
    const DelaySeconds = Math.min(MAX_DELAY_SECONDS, Math.max(0, Math.ceil(delayMs / 1000)));
    await this.sqs.send(new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: JSON.stringify({ v: COORDINATOR_TASK_MESSAGE_VERSION, type: 'tick', job: this.job }), DelaySeconds }));
  }
}
