import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { CreateQueueCommand, GetQueueAttributesCommand, PurgeQueueCommand, ReceiveMessageCommand, SendMessageCommand, SetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { CreateBucketCommand, HeadObjectCommand, PutBucketNotificationConfigurationCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { EmulatorRunner } from '../../lib/hosts/emulator/emulator-runner.js';
import { feedQueueEnvName } from '../../lib/api/connector-resources.js';
import { Job } from '../../lib/api/job.js';
import { s3Source, type S3ObjectInfo, type S3SourceOptions } from '../../lib/connectors/s3-source.js';
import type { CollectSink } from '../../lib/connectors/collect-sink.js';
import { FailOnce, Scratch, captureLog, runOptions, sleep, sorted, startRunner, waitFor } from '../support/jobs.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
const cfg = { endpoint, region: 'us-east-1' };
const sqs = new SQSClient(cfg);
const s3 = new S3Client({ ...cfg, forcePathStyle: true });
const scratch = new Scratch();
afterEach(() => scratch.cleanup());

/** A bucket, and a queue its object-created notifications go to when `notify`. */
async function bucketWithQueue(notify = true): Promise<{ bucket: string; queue: string }> {
  const tag = randomUUID().slice(0, 8);
  const queue = (await sqs.send(new CreateQueueCommand({ QueueName: `s3src-${tag}` }))).QueueUrl!;
  const queueArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queue, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
  const bucket = `s3src-${tag}`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  if (notify) {
    // S3 sends to a queue only if the queue's policy lets it (and refuses the notification configuration otherwise).
    const policy = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: 's3.amazonaws.com' }, Action: 'sqs:SendMessage', Resource: queueArn, Condition: { ArnLike: { 'aws:SourceArn': `arn:aws:s3:::${bucket}` } } }] };
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: queue, Attributes: { Policy: JSON.stringify(policy) } }));
    await s3.send(new PutBucketNotificationConfigurationCommand({ Bucket: bucket, NotificationConfiguration: { QueueConfigurations: [{ QueueArn: queueArn, Events: ['s3:ObjectCreated:*'] }] } }));
  }
  return { bucket, queue };
}

async function deadLetterQueue(): Promise<string> {
  return (await sqs.send(new CreateQueueCommand({ QueueName: `s3src-dlq-${randomUUID().slice(0, 8)}` }))).QueueUrl!;
}

/** An S3 event notification of an object as it is now, as S3 would send it again. */
async function notificationOf(bucket: string, key: string): Promise<string> {
  const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  const object = { key: encodeURIComponent(key).replace(/%20/g, '+'), size: head.ContentLength ?? 0, eTag: (head.ETag ?? '').replace(/"/g, '') };
  return JSON.stringify({ Records: [{ eventName: 'ObjectCreated:Put', eventTime: new Date().toISOString(), s3: { bucket: { name: bucket }, object } }] });
}

const put = (bucket: string, key: string, body: string | Uint8Array) => s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
/** `n` lines of one object, each naming it, so the oracle is the union of what was put. */
const linesOf = (key: string, n: number) => Array.from({ length: n }, (_, i) => `${key}#${i}`);

/** `s3Source → (map that may fail once) → collect sink`, at parallelism 2, checkpoints every 100 ms. */
function linesJob(o: { options: S3SourceOptions<string> & { readonly emit?: 'lines' }; sink: CollectSink<string>; fail?: FailOnce }): Job {
  const job = new Job(`s3src-${randomUUID().slice(0, 6)}`, { parallelism: 2 });
  let i = 0;
  job
    .source(s3Source({ client: s3, sqsClient: sqs, visibilityTimeout: '30s', ...o.options }), { uid: 'uploads' })
    .map((line) => {
      o.fail?.check(i++);
      return line;
    })
    .sinkTo(o.sink, { uid: 'out' });
  return job;
}

async function committedAll(sink: CollectSink<string>, expected: readonly string[], log: () => string, timeoutMs = 30_000): Promise<void> {
  await waitFor('every line committed', () => sink.committed.length >= expected.length, timeoutMs, 50).catch((e: Error) => {
    throw new Error(`${e.message}: ${sink.committed.length} of ${expected.length}\n${log()}`);
  });
  // A while longer, so a copy that would follow is seen.
  await sleep(600);
}

describe('s3Source: every new object read exactly once', () => {
  it('reads each object announced by notifications once, though a notification arrives twice and the job fails over mid-way', async () => {
    // Given a bucket whose notifications go to a queue, and a job over it whose map throws once after a checkpoint
    const { bucket, queue } = await bucketWithQueue();
    const sink = scratch.collector<string>();
    const fail = new FailOnce(0);
    const { log, lines, text } = captureLog();
    // (A short visibility timeout: what the failed attempt had received and not checkpointed comes back after it.)
    const runner = new EmbeddedRunner(linesJob({ options: { bucket, prefix: 'in/', notifications: { queueUrl: queue }, listInterval: false, visibilityTimeout: '3s' }, sink, fail }), runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }));
    fail.armed = () => runner.coordinatorState().counts.completed >= 1;
    const { done } = await startRunner(runner);

    // When objects arrive under the prefix (one gzipped, one with CRLF line ends) and elsewhere, and one object's
    // notification is delivered a second time
    // (in two waves, the second after a checkpoint completed, so the map throws on a record of the second wave)
    const expected: string[] = [];
    for (let k = 0; k < 12; k++) {
      if (k === 6) await waitFor('a completed checkpoint', () => runner.coordinatorState().counts.completed >= 1, 20_000, 20);
      const key = `in/batch ${k}.txt`;
      const ls = linesOf(key, 5 + k);
      await put(bucket, key, ls.join('\n') + '\n');
      expected.push(...ls);
    }
    const gz = linesOf('in/z.log.gz', 7);
    await put(bucket, 'in/z.log.gz', gzipSync(gz.join('\n')));
    expected.push(...gz);
    const crlf = linesOf('in/crlf.txt', 3);
    await put(bucket, 'in/crlf.txt', crlf.join('\r\n'));
    expected.push(...crlf);
    await put(bucket, 'other/ignored.txt', 'not under the prefix\n');
    await sqs.send(new SendMessageCommand({ QueueUrl: queue, MessageBody: await notificationOf(bucket, 'in/batch 3.txt') }));
    try {
      await committedAll(sink, expected, text);
    } finally {
      runner.cancel();
      await done;
    }

    // Then every line is committed exactly once, and the job restored a checkpoint once
    expect(fail.thrown, text()).toBe(true);
    expect(lines.some((l) => /restored from checkpoint/.test(l)), text()).toBe(true);
    expect(sorted(sink.committed)).toEqual(sorted(expected));
  });

  it('drops a second notification of the same object version, and reads a later version of the key again', async () => {
    // Given a running job over a bucket's notifications
    const { bucket, queue } = await bucketWithQueue();
    const sink = scratch.collector<string>();
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(linesJob({ options: { bucket, notifications: { queueUrl: queue }, listInterval: false }, sink }), runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }));
    const { done } = await startRunner(runner);
    try {
      // When an object is put, its notification is captured and sent again after it was read, and then the key is
      // overwritten with other content
      const first = linesOf('k.txt', 4);
      await put(bucket, 'k.txt', first.join('\n'));
      await committedAll(sink, first, text);
      await sqs.send(new SendMessageCommand({ QueueUrl: queue, MessageBody: await notificationOf(bucket, 'k.txt') }));
      await sleep(1_000);
      const second = ['v2 a', 'v2 b'];
      await put(bucket, 'k.txt', second.join('\n'));
      await committedAll(sink, [...first, ...second], text);

      // Then the first version was read once, and the second once
      expect(sorted(sink.committed)).toEqual(sorted([...first, ...second]));
    } finally {
      runner.cancel();
      await done;
    }
  });

  it('finds by listing an object whose notification was lost, and reads nothing twice that both announced', async () => {
    // Given a bucket with notifications, a job listing every 300 ms besides them
    const { bucket, queue } = await bucketWithQueue();
    const sink = scratch.collector<string>();
    const { log, text } = captureLog();
    const before = linesOf('before.txt', 3);
    await put(bucket, 'before.txt', before.join('\n'));
    await sqs.send(new PurgeQueueCommand({ QueueUrl: queue }));
    const runner = new EmbeddedRunner(linesJob({ options: { bucket, notifications: { queueUrl: queue }, listInterval: 300, listHorizon: '10m' }, sink }), runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }));
    const { done } = await startRunner(runner);
    try {
      await sleep(800);
      // When objects are put, and the queue is purged right after one of them, so its notification is lost
      const expected: string[] = [];
      for (let k = 0; k < 6; k++) {
        const ls = linesOf(`n${k}.txt`, 4);
        await put(bucket, `n${k}.txt`, ls.join('\n'));
        expected.push(...ls);
      }
      await sleep(1_500);
      const lost = linesOf('lost.txt', 5);
      await put(bucket, 'lost.txt', lost.join('\n'));
      await sqs.send(new PurgeQueueCommand({ QueueUrl: queue }));
      expected.push(...lost);
      await committedAll(sink, expected, text);
      await sleep(1_000);

      // Then each object is read once — the lost one by listing — and the object there before the start is not read
      expect(sorted(sink.committed)).toEqual(sorted(expected));
    } finally {
      runner.cancel();
      await done;
    }
  });

  it('listing alone: reads objects created after the first start, and with `existing` those there before it too', async () => {
    for (const existing of [false, true]) {
      // Given a bucket with no notifications and an object in it
      const { bucket } = await bucketWithQueue(false);
      const old = linesOf('old.txt', 2);
      await put(bucket, 'old.txt', old.join('\n'));
      const sink = scratch.collector<string>();
      const { log, text } = captureLog();
      const runner = new EmbeddedRunner(linesJob({ options: { bucket, listInterval: 200, existing }, sink }), runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }));
      const { done } = await startRunner(runner);
      try {
        // When more objects are put while it runs
        await sleep(600);
        const fresh = [...linesOf('a.txt', 3), ...linesOf('b/c.txt', 2)];
        await put(bucket, 'a.txt', linesOf('a.txt', 3).join('\n'));
        await put(bucket, 'b/c.txt', linesOf('b/c.txt', 2).join('\n'));
        const expected = existing ? [...old, ...fresh] : fresh;
        await committedAll(sink, expected, text, 15_000);
        await sleep(800);

        // Then each is read once, the old one only with `existing`
        expect(sorted(sink.committed), `existing: ${existing}`).toEqual(sorted(expected));
      } finally {
        runner.cancel();
        await done;
      }
    }
  });

  it('sends a notification that is not an S3 event, and an object a line of which parse throws on, to the dead-letter queue with the reason', async () => {
    // Given a job whose parse refuses lines that are not numbers, with a dead-letter queue
    const { bucket, queue } = await bucketWithQueue();
    const dlq = await deadLetterQueue();
    const sink = scratch.collector<string>();
    const { log, text } = captureLog();
    const job = new Job('s3src-dlq', { parallelism: 1 });
    job
      .source(
        s3Source<number>({
          bucket,
          client: s3,
          sqsClient: sqs,
          notifications: { queueUrl: queue },
          listInterval: false,
          deadLetterQueueUrl: dlq,
          visibilityTimeout: '30s',
          parse: (line) => {
            const n = Number(line);
            if (!Number.isFinite(n)) throw new Error(`not a number: ${line}`);
            return n;
          },
        }),
        { uid: 'numbers' },
      )
      .map((n) => String(n * 10))
      .sinkTo(sink, { uid: 'out' });
    const runner = new EmbeddedRunner(job, runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }));
    const { done } = await startRunner(runner);
    try {
      // When a good object, a bad one, and a message that is no notification arrive
      await put(bucket, 'good.txt', '1\n2\n3\n');
      await put(bucket, 'bad.txt', '4\nfive\n6\n');
      await sqs.send(new SendMessageCommand({ QueueUrl: queue, MessageBody: '{"hello":"world"}' }));
      await committedAll(sink, ['10', '20', '30'], text);
      const reasons = await waitFor(
        'two dead letters',
        async () => {
          const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl: dlq, MaxNumberOfMessages: 10, MessageAttributeNames: ['All'], VisibilityTimeout: 0 }));
          const rs = (got.Messages ?? []).map((m) => m.MessageAttributes?.['floe-error']?.StringValue ?? '');
          return rs.length >= 2 ? rs : undefined;
        },
        15_000,
        200,
      );

      // Then the good object's lines are committed, none of the bad one's, and each refusal says why
      expect(sorted(sink.committed)).toEqual(['10', '20', '30']);
      expect(reasons.some((r) => /parse threw on line 2: not a number: five/.test(r)), reasons.join(' | ')).toBe(true);
      expect(reasons.some((r) => /neither an S3 event notification nor an EventBridge S3 event/.test(r)), reasons.join(' | ')).toBe(true);
    } finally {
      runner.cancel();
      await done;
    }
  });

  it("emit: 'objects' names each new object once, with its size and ETag, without reading it", async () => {
    // Given a job that emits objects
    const { bucket, queue } = await bucketWithQueue();
    const sink = scratch.collector<string>();
    const { log, text } = captureLog();
    const job = new Job('s3src-objects', { parallelism: 2 });
    job
      .source(s3Source({ bucket, client: s3, sqsClient: sqs, notifications: { queueUrl: queue }, listInterval: 300, emit: 'objects', visibilityTimeout: '30s' }), {
        uid: 'objects',
        watermarks: { timestamp: (o: S3ObjectInfo) => o.time },
      })
      .map((o) => `${o.key}\t${o.size}\t${o.etag.length > 0}`)
      .sinkTo(sink, { uid: 'out' });
    const runner = new EmbeddedRunner(job, runOptions(await scratch.dir(), log, { checkpoint: { interval: 100 } }));
    const { done } = await startRunner(runner);
    try {
      // When three objects are put
      await sleep(500);
      for (const [key, body] of [['x', 'abc'], ['y/z', 'hello'], ['w', '']] as const) await put(bucket, key, body);
      await committedAll(sink, ['', '', ''], text);
      await sleep(800);

      // Then each is named once, though notifications and listings both announced it
      expect(sorted(sink.committed)).toEqual(['w\t0\ttrue', 'x\t3\ttrue', 'y/z\t5\ttrue']);
    } finally {
      runner.cancel();
      await done;
    }
  });
});

describe('s3Source in emulator mode (the deployed handlers, over the emulator)', () => {
  it('reads each notified object exactly once through a failing step, objects read in the vertex after the deduplication', async () => {
    // Given a bucket notifying a queue, and the lines job run by the deployed handlers, its map throwing once
    const { bucket, queue } = await bucketWithQueue();
    const sink = scratch.collector<string>();
    const fail = new FailOnce(15);
    const { log, text } = captureLog();
    const job = linesJob({ options: { bucket, notifications: { queueUrl: queue }, listInterval: false, visibilityTimeout: '4s' }, sink, fail });
    const runner = new EmulatorRunner(job, { endpoint, namespace: `s3src-${randomUUID().slice(0, 8)}`, checkpoint: { interval: '500ms' }, log });
    const done = runner.run();
    const expected: string[] = [];
    try {
      // When objects are put while it runs
      for (let k = 0; k < 6; k++) {
        const ls = linesOf(`o${k}.txt`, 6);
        await put(bucket, `o${k}.txt`, ls.join('\n'));
        expected.push(...ls);
      }
      await committedAll(sink, expected, text, 80_000);
      await sleep(1_500);
    } finally {
      await runner.cancel();
    }
    await done;

    // Then every line is committed exactly once
    expect(fail.thrown, text()).toBe(true);
    expect(sorted(sink.committed)).toEqual(sorted(expected));
  }, 120_000);

  it("notifications: 'eventbridge' — the runner turns the bucket's EventBridge notifications on, creates the feed queue and the rule, and each event's object is read once", async () => {
    const bucket = `s3src-eb-${randomUUID().slice(0, 8)}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    // Given a bucket, and a job whose source asks for its EventBridge events (the runner turns them on)
    const sink = scratch.collector<string>();
    const { log, text } = captureLog();
    const job = linesJob({ options: { bucket, prefix: 'in/', notifications: 'eventbridge', listInterval: false, visibilityTimeout: '4s' }, sink });
    const runner = new EmulatorRunner(job, { endpoint, namespace: `s3eb-${randomUUID().slice(0, 8)}`, checkpoint: { interval: '500ms' }, log });
    const done = runner.run();
    const expected: string[] = [];
    try {
      // When objects are put under the prefix and beside it, once the job runs
      const before = process.env[feedQueueEnvName('uploads')];
      await waitFor('the feed queue', () => (process.env[feedQueueEnvName('uploads')] ?? before) !== before || undefined, 20_000, 100);
      await sleep(1_000);
      for (let k = 0; k < 4; k++) {
        const ls = linesOf(`in/e${k}.txt`, 3);
        await put(bucket, `in/e${k}.txt`, ls.join('\n'));
        expected.push(...ls);
      }
      await put(bucket, 'out/skip.txt', 'not under the prefix');
      await committedAll(sink, expected, text, 60_000);
      await sleep(1_000);
    } finally {
      await runner.cancel();
    }
    await done;

    // Then each line under the prefix is committed exactly once
    expect(sorted(sink.committed)).toEqual(sorted(expected));
  }, 120_000);
});
