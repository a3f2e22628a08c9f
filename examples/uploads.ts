/**
 * Uploads per minute, event-driven: S3 sends an event notification to an SQS queue for every object created in a
 * bucket; the job counts the objects and bytes created per top-level prefix in tumbling event-time windows (event
 * time is the notification's `eventTime`) and writes one committed line per window,
 * `window-start<TAB>prefix<TAB>objects<TAB>bytes`. Exactly once: a window's line is committed once, and a
 * notification is deleted only after the checkpoint that covers it completed. It never finishes by itself.
 *
 *   floe run examples/uploads.ts --aws-endpoint <url> -- --queue <queue-url> --output <dir|s3://bucket/prefix>
 *
 * The bucket's notification configuration sends `s3:ObjectCreated:*` to the queue, whose policy must allow
 * `sqs:SendMessage` to the `s3.amazonaws.com` principal for the bucket (S3 first sends an `s3:TestEvent`, which the
 * job skips). `--window` sets the window size (default 1m); a window is written once an event at least
 * `--lateness` (default 5s) past its end has arrived.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { Job, defineJob, filesSink, sqsSource, tumblingEventTimeWindows } from '../lib/index.js';

/** One object-created record of an S3 event notification. */
const S3Record = z.object({
  eventName: z.string(),
  eventTime: z.string(),
  s3: z.object({ bucket: z.object({ name: z.string() }), object: z.object({ key: z.string(), size: z.number().optional() }) }),
});
const Notification = z.union([z.object({ Records: z.array(S3Record) }), z.object({ Event: z.literal('s3:TestEvent') })]);

interface Upload {
  readonly bucket: string;
  readonly key: string;
  readonly size: number;
  readonly time: number;
}

/** The objects an S3 event notification says were created (none for a test event). */
function uploadsOf(body: string): Upload[] {
  const n = Notification.parse(JSON.parse(body));
  if (!('Records' in n)) return [];
  return n.Records.filter((r) => r.eventName.startsWith('ObjectCreated:')).map((r) => ({
    bucket: r.s3.bucket.name,
    // Keys arrive URL-encoded, with '+' for a space.
    key: decodeURIComponent(r.s3.object.key.replace(/\+/g, ' ')),
    size: r.s3.object.size ?? 0,
    time: Date.parse(r.eventTime),
  }));
}

export default defineJob((args) => {
  const { values } = parseArgs({
    args: [...args],
    options: {
      queue: { type: 'string' },
      output: { type: 'string' },
      window: { type: 'string' },
      lateness: { type: 'string' },
      'visibility-timeout': { type: 'string' },
    },
  });
  if (!values.queue || !values.output) throw new Error('uploads needs --queue <queue-url> and --output <dir|s3://bucket/prefix>');
  const job = new Job('uploads', { parallelism: 2, checkpoint: { interval: '2s' }, restart: { type: 'fixed-delay', attempts: 3, delay: '1s' } });
  job
    .source(
      sqsSource<Upload[]>({ queueUrl: values.queue, parse: uploadsOf, ...(values['visibility-timeout'] ? { visibilityTimeout: values['visibility-timeout'] } : {}) }),
      // One subtask: notifications are few, and an idle subtask would hold the watermark back. A notification's time is
      // that of its first record (the records of one notification are a single upload).
      { uid: 'notifications', parallelism: 1, watermarks: { timestamp: (uploads) => uploads[0]?.time ?? 0, outOfOrderness: values.lateness ?? '5s' } },
    )
    .flatMap<Upload>((uploads, out) => {
      for (const u of uploads) out.collectWithTimestamp(u, u.time);
    }, { name: 'Uploads' })
    .keyBy((u) => u.key.split('/')[0]!)
    .window(tumblingEventTimeWindows(values.window ?? '1m'))
    .aggregate(
      {
        createAccumulator: () => ({ objects: 0, bytes: 0 }),
        add: (u: Upload, acc: { objects: number; bytes: number }) => ({ objects: acc.objects + 1, bytes: acc.bytes + u.size }),
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
