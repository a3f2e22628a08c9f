import { describe, expect, it } from 'vitest';
import { checkS3SavepointTarget } from '../../lib/core/savepoint-target.js';

// The job's own storage, as the deployed controls name it: its savepoint directory and its prefix in the checkpoint bucket.
const roots = ['s3://jobs-bucket/wordcount/savepoints', 's3://jobs-bucket/wordcount'];

describe('checkS3SavepointTarget', () => {
  it.each([
    ['s3://jobs-bucket/wordcount/savepoints', 's3://jobs-bucket/wordcount/savepoints'],
    ['s3://jobs-bucket/wordcount/savepoints/', 's3://jobs-bucket/wordcount/savepoints'],
    ['s3://jobs-bucket/wordcount/savepoints/2026/run-1', 's3://jobs-bucket/wordcount/savepoints/2026/run-1'],
    ['s3://jobs-bucket/wordcount/elsewhere', 's3://jobs-bucket/wordcount/elsewhere'],
  ])('accepts %s inside the job\'s storage', (target, expected) => {
    expect(checkS3SavepointTarget(target, roots)).toBe(expected);
  });

  it.each([
    ['another bucket', 's3://other-bucket/wordcount/savepoints', /outside the job's own storage/],
    ['another job in the bucket', 's3://jobs-bucket/other-job/savepoints', /outside/],
    ['a prefix sharing the job name', 's3://jobs-bucket/wordcount-2/savepoints', /outside/],
    ['the bucket root', 's3://jobs-bucket', /outside/],
    ['a .. segment', 's3://jobs-bucket/wordcount/../other', /'\.\.' segment/],
    ['an empty segment', 's3://jobs-bucket/wordcount//x', /empty/],
    ['a local path', '/etc/floe-pwn', /is not an s3:\/\/ URL/],
    ['a relative path', '../../etc/floe-pwn', /is not an s3:\/\/ URL/],
    ['another scheme', 'file:///tmp/sp', /is not an s3:\/\/ URL/],
    ['an s3 URL without a bucket', 's3:///wordcount', /is not an s3:\/\/ URL/],
  ])('refuses %s with a BAD_REQUEST naming where savepoints go', (_what, target, reason) => {
    let error: unknown;
    try {
      checkS3SavepointTarget(target, roots);
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'BAD_REQUEST' });
    expect((error as Error).message).toMatch(reason);
    expect((error as Error).message).toMatch(/s3:\/\/jobs-bucket\/wordcount\/savepoints or s3:\/\/jobs-bucket\/wordcount/);
  });
});
