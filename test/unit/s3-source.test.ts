import { describe, expect, it } from 'vitest';
import { compareSequencers, objectsInNotification, s3Source } from '../../lib/connectors/s3-source.js';
import type { SourceSplit } from '../../lib/api/connector.js';

describe('s3 source: what a notification announces', () => {
  it('reads an S3 event notification: decoded key, size, unquoted ETag, version and sequencer; skips other event names', () => {
    // Given a notification with a created and a removed object
    const body = JSON.stringify({
      Records: [
        { eventName: 'ObjectCreated:CompleteMultipartUpload', eventTime: '2026-12-07T10:00:00.000Z', s3: { bucket: { name: 'b' }, object: { key: 'in/a+b%2Bc.txt', size: 12, eTag: 'abc-2', versionId: 'v1', sequencer: '0A1B' } } },
        { eventName: 'ObjectRemoved:Delete', eventTime: '2026-12-07T10:00:01.000Z', s3: { bucket: { name: 'b' }, object: { key: 'gone' } } },
      ],
    });
    // When it is read, then only the created object is announced, as S3 named it
    expect(objectsInNotification(body)).toEqual([{ bucket: 'b', key: 'in/a b+c.txt', size: 12, etag: 'abc-2', versionId: 'v1', time: Date.parse('2026-12-07T10:00:00.000Z'), sequencer: '0A1B' }]);
  });

  it("reads an EventBridge 'Object Created' event, and announces nothing for S3's test event or another detail type", () => {
    const event = { source: 'aws.s3', 'detail-type': 'Object Created', time: '2026-12-07T10:00:00Z', detail: { bucket: { name: 'b' }, object: { key: 'k', size: 3, etag: 'e1', sequencer: '00FF' } } };
    expect(objectsInNotification(JSON.stringify(event))).toEqual([{ bucket: 'b', key: 'k', size: 3, etag: 'e1', time: Date.parse('2026-12-07T10:00:00Z'), sequencer: '00FF' }]);
    expect(objectsInNotification(JSON.stringify({ ...event, 'detail-type': 'Object Deleted' }))).toEqual([]);
    expect(objectsInNotification(JSON.stringify({ Service: 'Amazon S3', Event: 's3:TestEvent' }))).toEqual([]);
  });

  it('refuses what is neither, so the message goes to the dead-letter queue with the reason', () => {
    expect(() => objectsInNotification('{"orders":[]}')).toThrow(/neither an S3 event notification nor an EventBridge S3 event/);
    expect(() => objectsInNotification(JSON.stringify({ Records: [{ eventName: 'ObjectCreated:Put', s3: {} }] }))).toThrow(/without s3.bucket.name or s3.object.key/);
  });

  it('orders sequencers of different lengths as S3 says: the shorter right-padded with zeros', () => {
    // (A newer version's sequencer may be shorter: 0064D3901D00059243 follows 0064D3901D000592420A.)
    expect(compareSequencers('0064D3901D00059243', '0064D3901D000592420A')).toBeGreaterThan(0);
    expect(compareSequencers('A0', 'a000')).toBe(0);
    expect(compareSequencers('0A', '0B00')).toBeLessThan(0);
  });
});

/** An S3 client answering ListObjectsV2 from a list of objects, `page` keys a page, in key order, as S3 does. */
function fakeS3(objects: { key: string; etag: string; time: number }[], page = 2) {
  const calls: { StartAfter?: string }[] = [];
  const client = {
    send: async (cmd: { input: { Prefix?: string; StartAfter?: string } }) => {
      calls.push({ ...(cmd.input.StartAfter !== undefined ? { StartAfter: cmd.input.StartAfter } : {}) });
      const all = objects.filter((o) => o.key.startsWith(cmd.input.Prefix ?? '')).sort((a, b) => (a.key < b.key ? -1 : 1));
      const after = all.filter((o) => cmd.input.StartAfter === undefined || o.key > cmd.input.StartAfter);
      const contents = after.slice(0, page).map((o) => ({ Key: o.key, ETag: `"${o.etag}"`, Size: 1, LastModified: new Date(o.time) }));
      return { Contents: contents, IsTruncated: after.length > page };
    },
  };
  return { client: client as never, calls };
}

describe('s3 source: the listing', () => {
  const ctx = (now: number) => ({ now: () => now });
  /** Reads the listing split until it neither emits nor has more, collecting the keys it announced. */
  async function pass(source: ReturnType<typeof s3Source>, split: SourceSplit, now: number): Promise<{ keys: string[]; split: SourceSplit; reads: number }> {
    const keys: string[] = [];
    let reads = 0;
    for (;;) {
      const r = await source.read(split, 100, ctx(now));
      reads++;
      keys.push(...(r.values as unknown as { o: { key: string }[] }[]).map((a) => a.o[0]!.key));
      split = r.split;
      if (!r.pending && r.values.length === 0) return { keys, split, reads };
    }
  }

  it('lists a page a read, announces each object once across passes, and remembers only what the next pass could see', async () => {
    // Given five objects, two of them older than the horizon, and a listing-only source with `existing`
    const t0 = Date.parse('2026-12-07T12:00:00Z');
    const objects = [
      { key: 'a', etag: 'e1', time: t0 - 3_600_000 },
      { key: 'b', etag: 'e2', time: t0 - 3_600_000 },
      { key: 'c', etag: 'e3', time: t0 - 1_000 },
      { key: 'd', etag: 'e4', time: t0 - 1_000 },
      { key: 'e', etag: 'e5', time: t0 - 500 },
    ];
    const { client, calls } = fakeS3(objects);
    const source = s3Source({ bucket: 'b', client, listInterval: 60_000, listHorizon: 120_000, existing: true });
    const [split] = await source.createSplits(1);

    // When a pass runs, then it announces all five, a page per read, and remembers the three within the horizon
    const first = await pass(source, split!, t0);
    expect(first.keys.sort()).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(calls.map((c) => c.StartAfter)).toEqual([undefined, 'b', 'd']);
    expect((first.split.position as { found: string[] }).found).toHaveLength(3);

    // And when an object is added and the next pass is due, only that one is announced; before it is due, nothing is listed
    objects.push({ key: 'f', etag: 'e6', time: t0 + 30_000 });
    const early = await pass(source, first.split, t0 + 30_000);
    expect(early.keys).toEqual([]);
    expect(calls).toHaveLength(3);
    const second = await pass(source, early.split, t0 + 61_000);
    expect(second.keys).toEqual(['f']);
  });

  it('without `existing`, its first pass only records what is there', async () => {
    const t0 = Date.now();
    const objects = [{ key: 'old', etag: 'e1', time: t0 - 10_000 }];
    const { client } = fakeS3(objects);
    const source = s3Source({ bucket: 'b', client, listInterval: 60_000 });
    const [split] = await source.createSplits(1);
    const first = await pass(source, split!, t0);
    expect(first.keys).toEqual([]);
    objects.push({ key: 'new', etag: 'e2', time: t0 + 1_000 });
    expect((await pass(source, first.split, t0 + 61_000)).keys).toEqual(['new']);
  });
});

describe('s3 source: options', () => {
  it('lists every problem with its options at once', () => {
    expect(() => s3Source({ bucket: 'b/x', listInterval: false, readConcurrency: 0 })).toThrow(
      /bucket must be a bucket name.*needs notifications, a listInterval, or both.*readConcurrency must be a whole number/,
    );
    expect(() => s3Source({ bucket: 'b', listInterval: '10m', listHorizon: '5m' })).toThrow(/listHorizon \(300s\) must be longer than listInterval \(600s\)/);
  });

  it('checks its dedup window against the listing and the checkpoint timeout', () => {
    const source = s3Source({ bucket: 'b', listInterval: '1m', listHorizon: '30m', dedupWindow: '20m' });
    expect(source.checkTiming!({ checkpointIntervalMs: 1_000, checkpointTimeoutMs: 600_000 })).toEqual([expect.stringMatching(/dedupWindow 1200s is shorter than listHorizon \+ listInterval \+ the checkpoint timeout \(2460s\)/)]);
  });

  it('declares read access to its bucket and prefix, and its notification queue', () => {
    expect(s3Source({ bucket: 'b', prefix: 'in/', notifications: { queueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q' } }).resources).toEqual([
      { service: 's3', bucket: 'b', prefix: 'in/', access: 'read' },
      { service: 'sqs', queue: 'https://sqs.eu-west-1.amazonaws.com/1/q', access: 'consume' },
    ]);
  });

  it('declares for the operators after it, which read the objects, the bucket and the dead-letter queue only', () => {
    const source = s3Source({ bucket: 'b', prefix: 'in/', notifications: { queueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q' }, deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/dlq' });
    expect(source.expandedResources).toEqual([
      { service: 's3', bucket: 'b', prefix: 'in/', access: 'read' },
      { service: 'sqs', queue: 'https://sqs.eu-west-1.amazonaws.com/1/dlq', access: 'send' },
    ]);
    expect(s3Source({ bucket: 'b', listInterval: '1m', emit: 'objects' }).expandedResources).toEqual([]);
  });

  it("with notifications: 'eventbridge' it asks the deployment for a feed of the bucket's Object Created events under the prefix, and to turn them on for the bucket", () => {
    expect(s3Source({ bucket: 'b', prefix: 'in/', notifications: 'eventbridge' }).feed).toEqual({
      kind: 'eventbridge',
      bus: 'default',
      bucket: 'b',
      pattern: { source: ['aws.s3'], 'detail-type': ['Object Created'], detail: { bucket: { name: ['b'] }, object: { key: [{ prefix: 'in/' }] } } },
    });
  });
});
