import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CreateQueueCommand, GetQueueAttributesCommand, SetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { CreateBucketCommand, PutBucketNotificationConfigurationCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { loadJob } from '../../lib/hosts/load-job.js';
import { REPO_ROOT } from '../support/floe-process.js';
import { Scratch, captureLog, readCommittedLines, runOptions, sleep, startRunner, waitFor } from '../support/jobs.js';

const endpoint = process.env.AWS_ENDPOINT_URL!;
const scratch = new Scratch();
afterEach(() => scratch.cleanup());

describe('examples/uploads.ts: S3 object-created notifications through SQS into event-time windows', () => {
  it('counts every uploaded object once, in the window of its event time, per prefix', async () => {
    const cfg = { endpoint, region: 'us-east-1' };
    const sqs = new SQSClient(cfg);
    const s3 = new S3Client({ ...cfg, forcePathStyle: true });
    const tag = randomUUID().slice(0, 8);
    const queue = (await sqs.send(new CreateQueueCommand({ QueueName: `uploads-${tag}` }))).QueueUrl!;
    const queueArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queue, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
    const bucket = `uploads-${tag}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    // S3 sends to a queue only if the queue's policy lets it (and refuses the notification configuration otherwise).
    await sqs.send(
      new SetQueueAttributesCommand({
        QueueUrl: queue,
        Attributes: {
          Policy: JSON.stringify({
            Version: '2012-10-17',
            Statement: [{ Effect: 'Allow', Principal: { Service: 's3.amazonaws.com' }, Action: 'sqs:SendMessage', Resource: queueArn, Condition: { ArnLike: { 'aws:SourceArn': `arn:aws:s3:::${bucket}` } } }],
          }),
        },
      }),
    );
    await s3.send(new PutBucketNotificationConfigurationCommand({ Bucket: bucket, NotificationConfiguration: { QueueConfigurations: [{ QueueArn: queueArn, Events: ['s3:ObjectCreated:*'] }] } }));

    const output = await scratch.dir();
    const job = await loadJob(join(REPO_ROOT, 'examples/uploads.ts'), ['--bucket', bucket, '--queue', queue, '--output', output, '--window', '2s', '--lateness', '0s']);
    const { log, text } = captureLog();
    const runner = new EmbeddedRunner(job, runOptions(await scratch.dir(), log, { checkpoint: { interval: 200 } }));
    const { done } = await startRunner(runner);

    // Three waves of uploads to two prefixes, a key with a space among them; then, well past the last window, one
    // object that moves event time on so that every earlier window fires.
    const expected = new Map<string, { objects: number; bytes: number }>();
    try {
      for (let wave = 0; wave < 3; wave++) {
        for (let i = 0; i < 6; i++) {
          const prefix = i % 2 === 0 ? 'images' : 'logs';
          const body = 'x'.repeat(10 + wave * 6 + i);
          await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/wave ${wave}/${i}.bin`, Body: body }));
          const e = expected.get(prefix) ?? { objects: 0, bytes: 0 };
          expected.set(prefix, { objects: e.objects + 1, bytes: e.bytes + body.length });
        }
        await sleep(1_500);
      }
      await sleep(2_500);
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'flush/now', Body: 'x' }));
      const fired = async () => {
        const lines = await readCommittedLines(output);
        const sums = new Map<string, { objects: number; bytes: number }>();
        for (const l of lines) {
          const [, prefix, objects, bytes] = l.split('\t');
          const s = sums.get(prefix!) ?? { objects: 0, bytes: 0 };
          sums.set(prefix!, { objects: s.objects + Number(objects), bytes: s.bytes + Number(bytes) });
        }
        return sums.get('images')?.objects === expected.get('images')!.objects && sums.get('logs')?.objects === expected.get('logs')!.objects ? { lines, sums } : undefined;
      };
      const { lines, sums } = await waitFor('the windows of every wave', fired, 30_000, 200).catch(async (e: Error) => {
        throw new Error(`${e.message}: ${JSON.stringify(await readCommittedLines(output))}\n${text()}`);
      });
      expect(Object.fromEntries(sums)).toEqual(Object.fromEntries(expected));
      // One line per window and prefix, at window starts two seconds apart.
      const windows = lines.map((l) => l.split('\t').slice(0, 2).join(' '));
      expect(new Set(windows).size).toBe(windows.length);
      for (const l of lines) expect(Date.parse(l.split('\t')[0]!) % 2_000).toBe(0);
    } finally {
      await runner.cancel();
      await done;
    }
  }, 60_000);
});
