/**
 * Uploads per minute, event-driven: every object created in a bucket is counted once, with its bytes, per top-level
 * prefix in tumbling event-time windows (event time is the notification's `eventTime`); the job writes one committed
 * line per window, `window-start<TAB>prefix<TAB>objects<TAB>bytes`. S3 announces each object by an event notification
 * to an SQS queue; a listing of the bucket every `--list-interval` (default 10m) finds objects whose notification was
 * lost. Exactly once: a window's line is committed once, an object announced twice is counted once, and a notification
 * is deleted only after the checkpoint that covers it completed. It never finishes by itself.
 *
 *   floe run examples/uploads.ts --aws-endpoint <url> -- --bucket <name> --queue <queue-url> --output <dir|s3://bucket/prefix>
 *
 * The bucket's notification configuration sends `s3:ObjectCreated:*` to the queue, whose policy must allow
 * `sqs:SendMessage` to the `s3.amazonaws.com` principal for the bucket. `--window` sets the window size
 * (default 1m); a window is written once an object at least `--lateness` (default 5s) past its end has arrived.
 */
import { parseArgs } from 'node:util';
import { Job, defineJob, filesSink, s3Source, tumblingEventTimeWindows, type S3ObjectInfo } from '../lib/index.js';

export default defineJob((args) => {
  const { values } = parseArgs({
    args: [...args],
    options: {
      bucket: { type: 'string' },
      queue: { type: 'string' },
      'list-interval': { type: 'string' },
      output: { type: 'string' },
      window: { type: 'string' },
      lateness: { type: 'string' },
      'visibility-timeout': { type: 'string' },
    },
  });
  if (!values.bucket || !values.queue || !values.output) throw new Error('uploads needs --bucket <name>, --queue <queue-url> and --output <dir|s3://bucket/prefix>');
  const job = new Job('uploads', { parallelism: 2, checkpoint: { interval: '2s' }, restart: { type: 'fixed-delay', attempts: 3, delay: '1s' } });
  job
    .source(
      s3Source({
        bucket: values.bucket,
        notifications: { queueUrl: values.queue },
        listInterval: values['list-interval'] ?? '10m',
        emit: 'objects',
        ...(values['visibility-timeout'] ? { visibilityTimeout: values['visibility-timeout'] } : {}),
      }),
      // One subtask: uploads are few, and an idle subtask would hold the watermark back.
      { uid: 'uploads', parallelism: 1, watermarks: { timestamp: (o: S3ObjectInfo) => o.time, outOfOrderness: values.lateness ?? '5s' } },
    )
    .keyBy((u) => u.key.split('/')[0]!)
    .window(tumblingEventTimeWindows(values.window ?? '1m'))
    .aggregate(
      {
        createAccumulator: () => ({ objects: 0, bytes: 0 }),
        add: (u: S3ObjectInfo, acc: { objects: number; bytes: number }) => ({ objects: acc.objects + 1, bytes: acc.bytes + u.size }),
        getResult: (acc: { objects: number; bytes: number }) => acc,
      },
      {
        uid: 'per-prefix',
        name: 'Uploads per prefix',
        emit: (prefix: string, window, r) => `${new Date(window.start).toISOString()}\t${prefix}\t${r.objects}\t${r.bytes}`,
      },
    )
    .sinkTo(filesSink({ dir: values.output }), { uid: 'windows', name: 'Files' });
  return job;
});
