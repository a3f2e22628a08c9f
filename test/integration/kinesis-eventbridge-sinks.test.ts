import { afterEach, describe, expect, it } from 'vitest';
import { CreateStreamCommand, DescribeStreamCommand, GetRecordsCommand, GetShardIteratorCommand, KinesisClient } from '@aws-sdk/client-kinesis';
import { EventBridgeClient, PutRuleCommand, PutTargetsCommand } from '@aws-sdk/client-eventbridge';
import { GetQueueAttributesCommand, SetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { kinesisSink } from '../../lib/connectors/kinesis-sink.js';
import { eventBridgeSink } from '../../lib/connectors/eventbridge-sink.js';
import { armInTurn, aws, createQueue, createStaging, drainQueue, faultyS3, listKeys, serviceError, stageEpochs, unique } from '../support/aws-sinks.js';
import { FailOnce, Scratch, captureLog, expectedKeyedEvents, runOptions, runningCountsJob, runningCountsOracle, sorted, type KeyedEventsOptions } from '../support/jobs.js';

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

// moto speaks HTTP/1.1 only; the SDK's default Kinesis handler is HTTP/2 (the sink makes the same choice).
const kinesis = new KinesisClient({ requestHandler: new NodeHttpHandler() });
const events = new EventBridgeClient({});

async function createStream(label: string, shards = 2): Promise<string> {
  const name = unique(label);
  await kinesis.send(new CreateStreamCommand({ StreamName: name, ShardCount: shards }));
  return name;
}

/** Every record in a stream, from the start of each shard: payload as UTF-8 and partition key. */
async function readStream(stream: string): Promise<{ data: string; key: string }[]> {
  const described = await kinesis.send(new DescribeStreamCommand({ StreamName: stream }));
  const out: { data: string; key: string }[] = [];
  for (const shard of described.StreamDescription?.Shards ?? []) {
    let iterator = (await kinesis.send(new GetShardIteratorCommand({ StreamName: stream, ShardId: shard.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }))).ShardIterator;
    for (;;) {
      const page = await kinesis.send(new GetRecordsCommand({ ShardIterator: iterator!, Limit: 10_000 }));
      for (const r of page.Records ?? []) out.push({ data: Buffer.from(r.Data!).toString('utf8'), key: r.PartitionKey! });
      if ((page.Records ?? []).length === 0) break;
      iterator = page.NextShardIterator;
    }
  }
  return out;
}

/** Counts of each distinct value. */
function counts<T>(values: readonly T[]): Map<T, number> {
  const out = new Map<T, number>();
  for (const v of values) out.set(v, (out.get(v) ?? 0) + 1);
  return out;
}

const keepParts = () => faultyS3((command) => (command === 'DeleteObjectsCommand' ? serviceError('AccessDenied') : undefined));

describe('kinesisSink on the emulator', () => {
  it('puts every record of a committed epoch once, with its partition key; committing again puts nothing', async () => {
    // Given 1,200 records over two epochs staged for a stream of two shards
    const stream = await createStream('kinesis');
    const { bucket, staging } = await createStaging('kinesis');
    const sink = kinesisSink<{ id: number }>({ stream, staging, partitionKey: (v) => `p${v.id % 7}` });
    const values = Array.from({ length: 1_200 }, (_, id) => ({ id }));
    const staged = await stageEpochs(sink, [
      { checkpointId: 1, steps: [values.slice(0, 300), values.slice(300, 700)] },
      { checkpointId: 2, steps: [values.slice(700)] },
    ]);
    expect(await readStream(stream)).toEqual([]);

    // When both commit, and then again (a restore, a later checkpoint carrying them)
    for (const c of [1, 2, 1, 2]) await sink.commit(staged.get(c)![0]!);

    // Then each record is in the stream once, under its partition key, and nothing is left staged
    const got = await readStream(stream);
    expect(sorted(got.map((r) => `${r.data}|${r.key}`))).toEqual(sorted(values.map((v) => `${JSON.stringify(v)}|p${v.id % 7}`)));
    expect(await listKeys(bucket, 'staging/')).toEqual([]);
    expect(sink.exactlyOnce).toBe(false);
  });

  it('is at-least-once: a commit that died after putting puts its records again when run again', async () => {
    const stream = await createStream('kinesis-again', 1);
    const { staging } = await createStaging('kinesis-again');
    const values = Array.from({ length: 30 }, (_, i) => `r${i}`);
    const dying = kinesisSink<string>({ stream, staging, stagingClient: keepParts() });
    const staged = await stageEpochs(dying, [{ checkpointId: 1, steps: [values] }]);
    await expect(dying.commit(staged.get(1)![0]!)).rejects.toThrow(/AccessDenied/);
    await kinesisSink<string>({ stream, staging }).commit(staged.get(1)![0]!);
    expect(sorted((await readStream(stream)).map((r) => r.data))).toEqual(sorted([...values, ...values]));
  });

  it('in an embedded job that fails and restarts, every running count reaches the stream at least once', async () => {
    // Given the running-counts job writing to a stream, whose user function throws once at two points
    const input: KeyedEventsOptions = { count: 1_500, keys: 20, ratePerSecond: 1_500 };
    const stream = await createStream('kinesis-job');
    const { staging } = await createStaging('kinesis-job');
    let runner: EmbeddedRunner | undefined = undefined;
    const failures = [new FailOnce(400), new FailOnce(1_000)];
    armInTurn(failures, () => runner?.coordinatorState().latestCompletedId ?? 0);
    const { log, text } = captureLog();
    const sink = kinesisSink<string>({ stream, staging, partitionKey: (l) => l.split('\t')[0]! });
    runner = new EmbeddedRunner(runningCountsJob({ ...input, sink, failures, name: 'kinesis-counts' }), runOptions(await scratch.dir(), log));

    // When it runs to the end of its input
    const outcome = await runner.run();

    // Then every line of the oracle is in the stream, and nothing that is not
    expect(outcome.state, text()).toBe('FINISHED');
    expect(failures.map((f) => f.thrown)).toEqual([true, true]);
    const got = counts((await readStream(stream)).map((r) => r.data));
    const oracle = runningCountsOracle(expectedKeyedEvents(input));
    for (const l of oracle) expect(got.get(l) ?? 0, l).toBeGreaterThanOrEqual(1);
    expect([...got.keys()].filter((l) => !oracle.includes(l))).toEqual([]);
  });

  it('refuses at write time a partition key Kinesis would refuse', async () => {
    const stream = await createStream('kinesis-limits', 1);
    const { staging } = await createStaging('kinesis-limits');
    const writer = kinesisSink<string>({ stream, staging, partitionKey: (v) => v }).createWriter({ uid: 'out', subtask: 0, runId: 'r' });
    const state = await writer.resume(undefined);
    await expect(writer.write([''], state)).rejects.toThrow(/partition key must be 1 to 256 characters/);
    await expect(writer.write(['k'.repeat(257)], state)).rejects.toThrow(/partition key must be 1 to 256 characters/);
  });
});

describe('eventBridgeSink on the emulator', () => {
  /** A rule on the default bus sending events of `source` to a new queue; answers the queue's URL. */
  async function ruleToQueue(source: string): Promise<string> {
    const queueUrl = await createQueue('events', false);
    const arn = (await aws.sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
    const rule = unique('rule');
    const { RuleArn } = await events.send(new PutRuleCommand({ Name: rule, EventPattern: JSON.stringify({ source: [source] }) }));
    // EventBridge delivers to a queue only if the queue's policy lets the rule send to it.
    await aws.sqs.send(
      new SetQueueAttributesCommand({
        QueueUrl: queueUrl,
        Attributes: {
          Policy: JSON.stringify({
            Version: '2012-10-17',
            Statement: [{ Effect: 'Allow', Principal: { Service: 'events.amazonaws.com' }, Action: 'sqs:SendMessage', Resource: arn, Condition: { ArnEquals: { 'aws:SourceArn': RuleArn } } }],
          }),
        },
      }),
    );
    await events.send(new PutTargetsCommand({ Rule: rule, Targets: [{ Id: 'queue', Arn: arn }] }));
    return queueUrl;
  }

  /** The events a queue received: detail-type and detail of each. */
  const delivered = async (queueUrl: string) =>
    (await drainQueue(queueUrl)).map((m) => {
      const e = JSON.parse(m.Body!) as { source: string; 'detail-type': string; detail: unknown };
      return { source: e.source, detailType: e['detail-type'], detail: e.detail };
    });

  it('puts every event of a committed epoch once, with its source and detail type; committing again puts nothing', async () => {
    // Given 25 events (three PutEvents requests) staged for the default bus, where a rule sends them to a queue
    const source = `floe.test.${unique('src')}`;
    const queueUrl = await ruleToQueue(source);
    const { bucket, staging } = await createStaging('events');
    const sink = eventBridgeSink<{ id: number; kind: string }>({ staging, source, detailType: (v) => v.kind, detail: (v) => ({ id: v.id }) });
    const values = Array.from({ length: 25 }, (_, id) => ({ id, kind: id % 2 === 0 ? 'even' : 'odd' }));
    const staged = await stageEpochs(sink, [{ checkpointId: 1, steps: [values.slice(0, 12), values.slice(12)] }]);
    expect(await delivered(queueUrl)).toEqual([]);

    // When it commits, and again
    await sink.commit(staged.get(1)![0]!);
    await sink.commit(staged.get(1)![0]!);

    // Then the queue received each event once, and nothing is left staged
    const got = await delivered(queueUrl);
    expect(sorted(got.map((e) => JSON.stringify(e)))).toEqual(sorted(values.map((v) => JSON.stringify({ source, detailType: v.kind, detail: { id: v.id } }))));
    expect(await listKeys(bucket, 'staging/')).toEqual([]);
    expect(sink.exactlyOnce).toBe(false);
  });

  it('is at-least-once: a commit that died after putting puts its events again when run again', async () => {
    const source = `floe.test.${unique('src')}`;
    const queueUrl = await ruleToQueue(source);
    const { staging } = await createStaging('events-again');
    const dying = eventBridgeSink<{ id: number }>({ staging, source, detailType: 'row', stagingClient: keepParts() });
    const staged = await stageEpochs(dying, [{ checkpointId: 1, steps: [[{ id: 1 }, { id: 2 }]] }]);
    await expect(dying.commit(staged.get(1)![0]!)).rejects.toThrow(/AccessDenied/);
    await eventBridgeSink<{ id: number }>({ staging, source, detailType: 'row' }).commit(staged.get(1)![0]!);
    expect(sorted((await delivered(queueUrl)).map((e) => JSON.stringify(e.detail)))).toEqual(['{"id":1}', '{"id":1}', '{"id":2}', '{"id":2}']);
  });

  it('refuses at write time an event EventBridge would refuse: a detail that is no object, an event over 256 KiB', async () => {
    const { staging } = await createStaging('events-limits');
    const writer = eventBridgeSink<unknown>({ staging, source: 's', detailType: 't' }).createWriter({ uid: 'out', subtask: 0, runId: 'r' });
    const state = await writer.resume(undefined);
    await expect(writer.write(['a string'], state)).rejects.toThrow(/detail must be a JSON object/);
    await expect(writer.write([{ big: 'x'.repeat(256 * 1024) }], state)).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
  });
});
