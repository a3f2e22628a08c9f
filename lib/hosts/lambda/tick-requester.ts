import type { SQSClient } from '@aws-sdk/client-sqs';
import { COORDINATOR_TASK_MESSAGE_VERSION, delaySecondsUntil } from '../../coordination/checkpoint-tasks.js';
import type { TickRequester } from '../../coordination/restarter.js';
import { sendCoordinatorTask } from '../../adapters/aws/sqs-coordinator-tasks.js';

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
    await sendCoordinatorTask(this.sqs, this.queueUrl, { v: COORDINATOR_TASK_MESSAGE_VERSION, type: 'tick', job: this.job }, delaySecondsUntil(delayMs, 0));
  }
}
