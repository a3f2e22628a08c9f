/**
 * The event-driven example under crashes: `floe run examples/orders.ts --aws-endpoint <moto>` reads orders from an
 * SQS queue while they are being sent, is SIGKILLed at moments drawn from a logged seed — right after a checkpoint
 * completed (before the messages it covers are deleted), at a random delay, and almost at once — and is resumed each
 * time with `--from-checkpoint latest`. What a killed run held comes back after the visibility timeout. At the end the
 * DynamoDB table must hold, per customer, exactly the total a plain loop over the sent orders computes; the queue must
 * be empty, and the malformed messages must be in the dead-letter queue.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { FloeProcess, sleep } from '../support/floe-process.js';
import { mulberry32 } from '../../lib/connectors/generator.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
const region = 'us-east-1';
const log = (m: string) => console.info(`[e2e] ${m}`);
const COMPLETED = /^\[floe\] checkpoint (\d+) completed: /;
const RUNNING = /^\[floe\] job 'orders' \(\w+\) running/;

afterEach(() => FloeProcess.killAll());

interface Order {
  readonly customer: string;
  readonly amount: number;
}

async function depth(sqs: SQSClient, url: string): Promise<number> {
  const a = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }))).Attributes ?? {};
  return Number(a.ApproximateNumberOfMessages ?? 0) + Number(a.ApproximateNumberOfMessagesNotVisible ?? 0);
}

const sum = (totals: Map<string, number>) => [...totals.values()].reduce((a, b) => a + b, 0);

async function tableTotals(doc: DynamoDBDocumentClient, table: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let start: Record<string, unknown> | undefined;
  do {
    const page = await doc.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
    for (const item of page.Items ?? []) out.set(item.customer as string, item.total as number);
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

describe('examples/orders.ts in emulator mode, killed and resumed', () => {
  it('holds exactly the oracle\'s totals after three SIGKILLs while orders arrive, with the queue empty and the malformed messages dead-lettered', async () => {
    const seed = Number(process.env.FLOE_E2E_SEED ?? Date.now() % 100_000);
    const random = mulberry32(seed);
    log(`seed ${seed}`);
    const sqs = new SQSClient({ endpoint, region });
    const doc = DynamoDBDocumentClient.from(new DynamoDBClient({ endpoint, region }));
    const tag = randomUUID().slice(0, 8);
    const dlq = (await sqs.send(new CreateQueueCommand({ QueueName: `orders-dlq-${tag}` }))).QueueUrl!;
    const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlq, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
    const queue = (
      await sqs.send(new CreateQueueCommand({ QueueName: `orders-${tag}`, Attributes: { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 1000 }) } }))
    ).QueueUrl!;
    const table = `orders-${tag}`;
    await doc.send(
      new CreateTableCommand({ TableName: table, KeySchema: [{ AttributeName: 'customer', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'customer', AttributeType: 'S' }], BillingMode: 'PAY_PER_REQUEST' }),
    );

    // Orders are sent while the job runs and is killed: 12 customers, amounts 1..50.
    const orders: Order[] = Array.from({ length: 600 }, (_, i) => ({ customer: `customer-${(i * 7) % 12}`, amount: 1 + Math.floor(random() * 50) }));
    const poison = ['{"customer": "x"}', 'not json at all'];
    const bodies = orders.map((o) => JSON.stringify(o));
    bodies.splice(200, 0, poison[0]!);
    bodies.splice(450, 0, poison[1]!);
    let sent = 0;
    const producer = (async () => {
      for (let i = 0; i < bodies.length; i += 10) {
        await sqs.send(new SendMessageBatchCommand({ QueueUrl: queue, Entries: bodies.slice(i, i + 10).map((b, k) => ({ Id: String(k), MessageBody: b })) }));
        sent = Math.min(bodies.length, i + 10);
        await sleep(60);
      }
    })();

    const oracle = new Map<string, number>();
    for (const o of orders) oracle.set(o.customer, (oracle.get(o.customer) ?? 0) + o.amount);
    const run = (resume: boolean) =>
      FloeProcess.run({
        jobFile: 'examples/orders.ts',
        awsEndpoint: endpoint,
        checkpointInterval: '300ms',
        ...(resume ? { fromCheckpoint: 'latest' } : {}),
        jobArgs: ['--queue', queue, '--table', table, '--visibility-timeout', '4s'],
      });

    // Three kills: right after a checkpoint completed, at a random delay, and almost at once.
    const kinds = ['after-checkpoint', 'random-delay', 'early'] as const;
    let completedSoFar = 0;
    for (const [k, kind] of kinds.entries()) {
      const p = run(k > 0);
      await p.waitForLine(RUNNING, { timeoutMs: 60_000 });
      if (kind !== 'early') {
        // Progress first: this run committed something to the table.
        const before = sum(await tableTotals(doc, table));
        const deadline = Date.now() + 60_000;
        while (sum(await tableTotals(doc, table)) <= before && Date.now() < deadline) await sleep(200);
        expect(sum(await tableTotals(doc, table)), `run ${k + 1} committed nothing within 60 s:\n${p.stderr()}`).toBeGreaterThan(before);
      }
      if (kind === 'after-checkpoint') {
        // Killed as soon as the next checkpoint completed: its messages are not deleted yet (that waits for the
        // next barrier), and its table writes may be under way.
        const m = await p.waitForLine(COMPLETED, { timeoutMs: 60_000, from: p.lines.length });
        completedSoFar = Math.max(completedSoFar, Number(m!.match[1]));
      } else if (kind === 'random-delay') {
        await sleep(500 + Math.floor(random() * 2_500));
      } else {
        await sleep(Math.floor(random() * 300));
      }
      p.kill('SIGKILL');
      await p.waitForExit();
      log(`run ${k + 1} killed (${kind}) at ${p.elapsedMs()}ms after checkpoint ${completedSoFar}; ${sent} of ${bodies.length} sent; table total ${sum(await tableTotals(doc, table))} of ${sum(oracle)}`);
      // Nothing in the table is ahead of the truth at any time: each total is one the oracle reaches on the way.
      for (const [c, total] of await tableTotals(doc, table)) expect(total, c).toBeLessThanOrEqual(oracle.get(c)!);
    }
    await producer;

    // The last run goes on until the table holds the oracle's totals and the queue is empty.
    const last = run(true);
    await last.waitForLine(RUNNING, { timeoutMs: 60_000 });
    const deadline = Date.now() + 120_000;
    let totals = new Map<string, number>();
    for (;;) {
      totals = await tableTotals(doc, table);
      const same = totals.size === oracle.size && [...oracle].every(([c, t]) => totals.get(c) === t);
      if (same && (await depth(sqs, queue)) === 0) break;
      if (Date.now() > deadline) break;
      await sleep(500);
    }
    last.kill('SIGINT');
    await last.waitForExit(60_000);

    expect(Object.fromEntries(totals)).toEqual(Object.fromEntries(oracle));
    expect(await depth(sqs, queue)).toBe(0);
    const dead = await sqs.send(new ReceiveMessageCommand({ QueueUrl: dlq, MaxNumberOfMessages: 10, MessageAttributeNames: ['All'], WaitTimeSeconds: 1 }));
    expect([...new Set((dead.Messages ?? []).map((m) => m.Body))].sort()).toEqual([...poison].sort());
    for (const m of dead.Messages ?? []) expect(m.MessageAttributes?.['floe-error']?.StringValue).toMatch(/^parse failed: /);
  }, 400_000);
});
