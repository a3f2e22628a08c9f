/**
 * Running totals of orders per customer, event-driven: JSON messages `{"customer": string, "amount": number}` from
 * an SQS queue, the total of `amount` per `customer` in keyed state, and items `{customer, total}` (partition key
 * `customer`) in a DynamoDB table. Exactly once: a message is deleted from the queue only after the checkpoint that
 * covers it completed, and the table is written when that checkpoint completes. It never finishes by itself.
 *
 *   floe run examples/orders.ts --aws-endpoint <url> -- --queue <queue-url> --table <name>
 *   cdk deploy -c job=examples/orders.ts -c args='--queue <queue-url> --table <name>'
 *
 * A message that is not such an order goes to the queue's dead-letter queue (its redrive policy target, or the one
 * given with `--dead-letter-queue <url>`) with the reason. `--visibility-timeout` (default 5m) is how long a received
 * message stays hidden from other receivers; after a crash, what the crashed run held comes back after it.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { Job, defineJob, dynamoDbSink, sqsSource, valueState } from '../lib/index.js';

const Order = z.object({ customer: z.string().min(1), amount: z.number().finite() });
type Order = z.infer<typeof Order>;

export default defineJob((args) => {
  const { values } = parseArgs({
    args: [...args],
    options: {
      queue: { type: 'string' },
      table: { type: 'string' },
      'dead-letter-queue': { type: 'string' },
      'visibility-timeout': { type: 'string' },
      parallelism: { type: 'string' },
    },
  });
  if (!values.queue || !values.table) throw new Error('orders needs --queue <queue-url> and --table <name>');
  const job = new Job('orders', {
    parallelism: values.parallelism ? Number(values.parallelism) : 2,
    checkpoint: { interval: '2s' },
    restart: { type: 'fixed-delay', attempts: 3, delay: '1s' },
  });
  job
    .source(
      sqsSource<Order>({
        queueUrl: values.queue,
        parse: (body) => {
          const order = Order.safeParse(JSON.parse(body));
          if (!order.success) throw new Error(`not an order: ${order.error.issues.map((i) => `${i.path.join('.') || 'message'}: ${i.message}`).join('; ')}`);
          return order.data;
        },
        ...(values['dead-letter-queue'] ? { deadLetterQueueUrl: values['dead-letter-queue'] } : {}),
        ...(values['visibility-timeout'] ? { visibilityTimeout: values['visibility-timeout'] } : {}),
      }),
      { uid: 'orders' },
    )
    .keyBy((order) => order.customer)
    .process(
      {
        state: { total: valueState<number>() },
        processElement(order, ctx, out) {
          const total = (ctx.state.total.value() ?? 0) + order.amount;
          ctx.state.total.update(total);
          out.collect({ customer: order.customer, total });
        },
      },
      { uid: 'totals', name: 'Total per customer' },
    )
    // (Staged beside the checkpoints until each checkpoint completes.)
    .sinkTo(dynamoDbSink<{ customer: string; total: number }>({ table: values.table, key: ['customer'] }), { uid: 'table', name: 'DynamoDB' });
  return job;
});
