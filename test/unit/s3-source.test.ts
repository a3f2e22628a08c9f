import { describe, expect, it } from 'vitest';
import { compareSequencers, objectsInNotification, s3Source } from '../../lib/connectors/s3-source.js';

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

  it('orders sequencers of different lengths as S3 says: padded with zeros to the same length', () => {
    expect(compareSequencers('0FF', 'A0')).toBeGreaterThan(0);
    expect(compareSequencers('00A0', 'a0')).toBe(0);
    expect(compareSequencers('9', '10')).toBeLessThan(0);
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

  it("with notifications: 'eventbridge' it asks the deployment for a feed of the bucket's Object Created events under the prefix", () => {
    expect(s3Source({ bucket: 'b', prefix: 'in/', notifications: 'eventbridge' }).feed).toEqual({
      kind: 'eventbridge',
      bus: 'default',
      pattern: { source: ['aws.s3'], 'detail-type': ['Object Created'], detail: { bucket: { name: ['b'] }, object: { key: [{ prefix: 'in/' }] } } },
    });
  });
});
