// The AWS sinks' batching, retries and error mapping, over clients that answer from a script (mocks only for the
// service's side; staging is a real directory), and the staging writer's bookkeeping.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DescribeTableCommand, PutItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SendMessageBatchCommandInput, SQSClient } from '@aws-sdk/client-sqs';
import type { KinesisClient, PutRecordsCommandInput } from '@aws-sdk/client-kinesis';
import type { EventBridgeClient, PutEventsCommandInput } from '@aws-sdk/client-eventbridge';
import { dynamoDbSink } from '../../lib/connectors/dynamodb-sink.js';
import { sqsSink } from '../../lib/connectors/sqs-sink.js';
import { kinesisSink } from '../../lib/connectors/kinesis-sink.js';
import { eventBridgeSink } from '../../lib/connectors/eventbridge-sink.js';
import { FloeError } from '../../lib/core/errors.js';
import type { SinkConnector } from '../../lib/api/connector.js';
import type { PendingCommit } from '../../lib/core/manifest/model.js';
import { Scratch } from '../support/jobs.js';

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

/** An error as the SDK raises it for a service error code. */
const serviceError = (name: string, fault: 'client' | 'server' = 'client') => Object.assign(new Error(`${name} (scripted)`), { name, $fault: fault, $metadata: { httpStatusCode: fault === 'server' ? 500 : 400 } });

/** A client whose `send` hands each command to `answer`, recording the calls. */
function scripted<C>(answer: (command: object, call: number) => unknown): C & { readonly calls: object[] } {
  const calls: object[] = [];
  return {
    calls,
    async send(command: object) {
      calls.push(command);
      return answer(command, calls.length);
    },
  } as unknown as C & { readonly calls: object[] };
}

/** Writes `values` in one step and pre-commits them as checkpoint 1. */
async function stageOne<T>(sink: SinkConnector<T>, values: readonly T[]): Promise<PendingCommit> {
  const writer = sink.createWriter({ uid: 'out', subtask: 0, runId: 'r1' });
  const state = await writer.write(values, await writer.resume(undefined));
  return (await writer.preCommit(state, 1)).pendingCommits[0]!;
}

/** The staged parts in a writer's directory (which goes once its last part is deleted). */
const partsIn = (dir: string) => readdir(dir).catch(() => [] as string[]);

const noSleep = { sleep: async () => {}, baseDelayMs: 1 };
const inputOf = <I>(command: object) => (command as { input: I }).input;

describe('dynamoDbSink commits', () => {
  it('retries throttling, takes a failed condition as a newer write, and keeps its staged parts when it cannot finish', async () => {
    const staging = await scratch.dir();
    // Given a table that throttles two puts, refuses one on its condition, and then fails one for good
    const script = ['ThrottlingException', 'ProvisionedThroughputExceededException', 'ConditionalCheckFailedException', 'ok', 'ok', 'ValidationException'];
    const client = scripted<DynamoDBClient>((command) => {
      if (command instanceof DescribeTableCommand) return { Table: { KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }] } };
      const next = script.shift() ?? 'ok';
      if (next !== 'ok') throw serviceError(next);
      return {};
    });
    const sink = dynamoDbSink<{ pk: string }>({ table: 't', staging, client, concurrency: 1, retry: noSleep });
    const pending = await stageOne(sink, [{ pk: 'a' }, { pk: 'b' }, { pk: 'a' }, { pk: 'c' }]);

    // When it commits
    await sink.commit(pending);

    // Then each key is written once (a's last write, after b's), b after two throttled attempts and then refused on its
    // condition (not an error: the item holds a newer write), and the staged part is gone
    const puts = client.calls.filter((c) => c instanceof PutItemCommand).map((c) => inputOf<{ Item: { pk: { S: string } } }>(c).Item.pk.S);
    expect(puts).toEqual(['b', 'b', 'b', 'a', 'c']);
    expect(await partsIn(join(staging, 'out', 'r1', '0'))).toEqual([]);

    // And a terminal error fails the commit, non-retryably, leaving the parts for a later run
    const other = await stageOne(sink, [{ pk: 'z' }]);
    await expect(sink.commit(other)).rejects.toMatchObject({ code: 'STORAGE', retryable: false, message: expect.stringMatching(/ValidationException/) });
    expect(await partsIn(join(staging, 'out', 'r1', '0'))).toHaveLength(1);
  });

  it('gives up after maxAttempts with a retryable error, and a later run commits from the same staged parts', async () => {
    const staging = await scratch.dir();
    let throttle = true;
    const client = scripted<DynamoDBClient>(() => {
      if (throttle) throw serviceError('ThrottlingException');
      return {};
    });
    const delays: number[] = [];
    const sink = dynamoDbSink<{ pk: string }>({ table: 't', key: ['pk'], staging, client, retry: { maxAttempts: 4, baseDelayMs: 8, sleep: async (ms) => void delays.push(ms) } });
    const pending = await stageOne(sink, [{ pk: 'a' }]);
    const error = await sink.commit(pending).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FloeError);
    expect(error).toMatchObject({ code: 'STORAGE', retryable: true, message: expect.stringMatching(/failed 4 times/) });
    expect(delays).toHaveLength(3);
    delays.forEach((d, i) => expect(d).toBeLessThanOrEqual(8 * 2 ** i));
    throttle = false;
    await sink.commit(pending);
    expect(client.calls).toHaveLength(5);
  });
});

describe('sqsSink commits', () => {
  it('sends 10 entries a request within maxBatchBytes, resends failed entries first and in order, and stops on a sender fault', async () => {
    const staging = await scratch.dir();
    let failOnce = true;
    const client = scripted<SQSClient>((command) => {
      const entries = inputOf<SendMessageBatchCommandInput>(command).Entries!;
      if (failOnce && entries.length === 10) {
        failOnce = false;
        return { Successful: [], Failed: [{ Id: '3', Code: 'InternalError', SenderFault: false }, { Id: '7', Code: 'RequestThrottled', SenderFault: false }] };
      }
      return { Successful: entries.map((e) => ({ Id: e.Id })), Failed: [] };
    });
    const sink = sqsSink<string>({ queueUrl: 'https://sqs.example/1/q.fifo', staging, client, maxMessageBytes: 2048, maxBatchBytes: 2048, retry: noSleep });
    const bodies = Array.from({ length: 25 }, (_, i) => (i === 20 || i === 21 ? 'x'.repeat(2000) + i : `m${i}`));
    await sink.commit(await stageOne(sink, bodies));
    const sent = client.calls.map((c) => inputOf<SendMessageBatchCommandInput>(c).Entries!.map((e) => e.MessageBody!.slice(-3).replace(/^x+/, '')));
    expect(sent).toEqual([
      ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9'],
      ['m3', 'm7', 'm10', 'm11', 'm12', 'm13', 'm14', 'm15', 'm16', 'm17'],
      ['m18', 'm19', '20'],
      ['21', 'm22', 'm23', 'm24'],
    ]);
    // Deduplication ids are the same for the resent entries, and distinct across messages
    const ids = client.calls.flatMap((c) => inputOf<SendMessageBatchCommandInput>(c).Entries!.map((e) => `${e.MessageBody}|${e.MessageDeduplicationId}`));
    expect(new Set(ids).size).toBe(25);

    const refusing = scripted<SQSClient>(() => ({ Successful: [], Failed: [{ Id: '0', Code: 'InvalidMessageContents', SenderFault: true, Message: 'bad' }] }));
    const strict = sqsSink<string>({ queueUrl: 'https://sqs.example/1/q', staging, client: refusing, retry: noSleep });
    await expect(strict.commit(await stageOne(strict, ['a']))).rejects.toThrow(/refused with InvalidMessageContents: bad/);
  });
});

describe('kinesisSink and eventBridgeSink commits', () => {
  it('kinesis: 500 records a request; records the answer failed are put again', async () => {
    const staging = await scratch.dir();
    let first = true;
    const client = scripted<KinesisClient>((command) => {
      const records = inputOf<PutRecordsCommandInput>(command).Records!;
      const fail = first;
      first = false;
      return { FailedRecordCount: fail ? 2 : 0, Records: records.map((_, i) => (fail && (i === 0 || i === 499) ? { ErrorCode: 'ProvisionedThroughputExceededException', ErrorMessage: 'slow down' } : { SequenceNumber: '1', ShardId: 's' })) };
    });
    const sink = kinesisSink<string>({ stream: 'arn:aws:kinesis:us-east-1:1:stream/s', staging, client, retry: noSleep });
    const values = Array.from({ length: 1_200 }, (_, i) => `r${i}`);
    await sink.commit(await stageOne(sink, values));
    const sent = client.calls.map((c) => inputOf<PutRecordsCommandInput>(c));
    expect(sent.map((s) => s.Records!.length)).toEqual([500, 500, 202]);
    expect(sent[0]!.StreamARN).toBe('arn:aws:kinesis:us-east-1:1:stream/s');
    expect(Buffer.from(sent[1]!.Records![0]!.Data!).toString()).toBe('r0');
    expect(Buffer.from(sent[1]!.Records![1]!.Data!).toString()).toBe('r499');
  });

  it('eventbridge: 10 entries a request; a throttled entry is put again, a malformed one fails the commit', async () => {
    const staging = await scratch.dir();
    const script = [{ i: 4, code: 'ThrottlingException' }];
    const client = scripted<EventBridgeClient>((command) => {
      const entries = inputOf<PutEventsCommandInput>(command).Entries!;
      const f = script.shift();
      return { FailedEntryCount: f ? 1 : 0, Entries: entries.map((_, i) => (f && i === f.i ? { ErrorCode: f.code } : { EventId: `e${i}` })) };
    });
    const sink = eventBridgeSink<{ id: number }>({ staging, source: 's', detailType: 't', client, retry: noSleep });
    await sink.commit(await stageOne(sink, Array.from({ length: 25 }, (_, id) => ({ id }))));
    expect(client.calls.map((c) => inputOf<PutEventsCommandInput>(c).Entries!.length)).toEqual([10, 10, 6]);
    expect(inputOf<PutEventsCommandInput>(client.calls[1]!).Entries![0]!.Detail).toBe('{"id":4}');

    script.push({ i: 0, code: 'MalformedDetail' });
    await expect(sink.commit(await stageOne(sink, [{ id: 1 }]))).rejects.toThrow(/refused with MalformedDetail/);
  });
});

describe('staging', () => {
  it('pre-commits a reference of a few hundred bytes however much was written, and only when something was', async () => {
    const staging = await scratch.dir();
    const sink = sqsSink<string>({ queueUrl: 'https://sqs.example/1/q.fifo', staging, client: scripted<SQSClient>(() => ({})) });
    const writer = sink.createWriter({ uid: 'out', subtask: 3, runId: 'r1' });
    let state = await writer.resume(undefined);
    expect((await writer.preCommit(state, 1)).pendingCommits).toEqual([]);
    for (let step = 0; step < 20; step++) state = await writer.write(Array.from({ length: 500 }, (_, i) => `step ${step} message ${i} `.repeat(10)), state);
    const { pendingCommits } = await writer.preCommit(state, 2);
    expect(pendingCommits).toHaveLength(1);
    expect(pendingCommits[0]).toMatchObject({ sink: 'sqs', uid: 'out', run: 'r1', subtask: 3, checkpointId: 2, first: 0 });
    expect(JSON.stringify(pendingCommits).length).toBeLessThan(600);
  });

  it('a writer resumed from a state of another run drops the parts that run staged after that state, and no other', async () => {
    const staging = await scratch.dir();
    const sink = sqsSink<string>({ queueUrl: 'https://sqs.example/1/q.fifo', staging, client: scripted<SQSClient>(() => ({})) });
    // Given run r1, whose snapshot state is taken after two parts were pre-committed, and which then staged two more
    const old = sink.createWriter({ uid: 'out', subtask: 0, runId: 'r1' });
    let state = await old.resume(undefined);
    state = await old.write(['a'], state);
    state = await old.write(['b'], state);
    const snapshot = (await old.preCommit(state, 1)).state;
    state = await old.write(['c'], snapshot);
    await old.write(['d'], state);
    const dir = join(staging, 'out', 'r1', '0');
    expect(await readdir(dir)).toHaveLength(4);

    // When run r2 resumes from the snapshot state
    const resumed = await sink.createWriter({ uid: 'out', subtask: 0, runId: 'r2' }).resume(snapshot);

    // Then the pre-committed parts stay (a restore commits them), the later ones are gone, and r2 starts afresh
    expect((await readdir(dir)).map((n) => n.split('-')[0]).sort()).toEqual(['0', '1']);
    expect(resumed).toMatchObject({ run: 'r2', first: 0, parts: [] });
  });
});
