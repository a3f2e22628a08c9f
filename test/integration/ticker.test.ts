/**
 * The deployed ticker's definition (infra/coordinator-definition.ts) executed by moto's Step Functions: it reads the
 * job row's `quiet` attribute as the DynamoDB store writes it, and a quiet job gets one tick instead of a minute's.
 */
import { describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { CreateQueueCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { CreateStateMachineCommand, DescribeExecutionCommand, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { createCoordinatorTable, DynamoDbCoordinatorStore } from '../../lib/adapters/aws/dynamodb-coordinator-store.js';
import { newCoordinatorRow } from '../../lib/coordination/generation.js';
import { enableMotoStepFunctionsExecution } from '../../lib/hosts/emulator/provision.js';
import { Job } from '../../lib/api/job.js';
import { generator } from '../../lib/connectors/generator.js';
import { collectSink } from '../../lib/connectors/collect-sink.js';
import { buildPlan } from '../../lib/graph/plan.js';
import { resolveCheckpointOptions } from '../../lib/core/options.js';
import { parseCoordinatorTaskMessage } from '../../lib/coordination/checkpoint-tasks.js';
import { tickerDefinition } from '../../infra/coordinator-definition.js';
import { sleep } from '../support/jobs.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
const clients = awsClients({ endpoint, region: 'us-east-1' });
const TICKS = 3;

function plan(name: string) {
  const job = new Job(name, { parallelism: 1 });
  job.source(generator({ generate: (i) => i }), { uid: 'numbers' }).sinkTo(collectSink<number>(`ticker-${randomUUID()}`), { uid: 'out' });
  return buildPlan(job);
}

/** Runs the ticker (3 ticks 1 s apart) once for job `name` and answers the ticks that reached the queue. */
async function runTicker(name: string, tableName: string): Promise<number> {
  const queueUrl = (await clients.sqs.send(new CreateQueueCommand({ QueueName: `ticks-${randomUUID().slice(0, 8)}` }))).QueueUrl!;
  const definition = tickerDefinition(name, { rateMinutes: 1, tickSeconds: 1, ticksPerExecution: TICKS }).replaceAll('${CoordinatorQueueUrl}', queueUrl).replaceAll('${CoordinatorTableName}', tableName);
  const { stateMachineArn } = await clients.sfn.send(
    new CreateStateMachineCommand({ name: `ticker-${randomUUID().slice(0, 8)}`, definition, roleArn: 'arn:aws:iam::123456789012:role/ticker', type: 'STANDARD' }),
  );
  const { executionArn } = await clients.sfn.send(new StartExecutionCommand({ stateMachineArn, input: '{}' }));
  for (let i = 0; ; i++) {
    const { status } = await clients.sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (status !== 'RUNNING') {
      expect(status).toBe('SUCCEEDED');
      break;
    }
    if (i > 150) throw new Error('the ticker did not finish within 30 s');
    await sleep(200);
  }
  let ticks = 0;
  for (;;) {
    const res = await clients.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    const got = res.Messages ?? [];
    if (got.length === 0) return ticks;
    for (const m of got) expect(parseCoordinatorTaskMessage(m.Body!)).toMatchObject({ type: 'tick', job: name });
    ticks += got.length;
  }
}

describe('the ticker state machine', () => {
  it('sends a minute of ticks to a running job, one tick to a quiet one, and ticks as usual when it cannot read the row', async () => {
    await enableMotoStepFunctionsExecution(endpoint);
    const tableName = `ticker-coordinator-${randomUUID().slice(0, 8)}`;
    await createCoordinatorTable(clients.dynamodb, tableName);
    const store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName });
    const row = (name: string, quiet: boolean) => {
      const r = newCoordinatorRow({ plan: plan(name), options: resolveCheckpointOptions({ dir: 's3://b/c', interval: '1s' }), jobId: 'j', savepointDir: 's3://b/s', now: 1, quietAfterMs: 6000 });
      return quiet ? { ...r, state: { ...r.state, quiet: { since: 1, confirmed: true } } } : r;
    };
    await store.create(row('busy', false));
    await store.create(row('idle', true));
    // A quiet job not yet confirmed still gets every tick.
    const unconfirmed = row('settling', false);
    await store.create({ ...unconfirmed, state: { ...unconfirmed.state, quiet: { since: 1, confirmed: false } } });

    expect(await runTicker('busy', tableName)).toBe(TICKS);
    expect(await runTicker('idle', tableName)).toBe(1);
    expect(await runTicker('settling', tableName)).toBe(TICKS);
    // No row (a job not yet started) and a table that does not exist: the ticker ticks as usual.
    expect(await runTicker('unknown', tableName)).toBe(TICKS);
    expect(await runTicker('idle', `missing-${randomUUID().slice(0, 8)}`)).toBe(TICKS);
  }, 120_000);
});
