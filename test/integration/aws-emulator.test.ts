import { describe, expect, it } from 'vitest';
import { S3Client, CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';

// The emulator the AWS tests run against is up and speaks S3 with conditional writes.
describe('AWS emulator', () => {
  it('is reachable through AWS_ENDPOINT_URL and refuses a second create-only PUT', async () => {
    expect(process.env.AWS_ENDPOINT_URL).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const s3 = new S3Client({ forcePathStyle: true });
    const Bucket = `floe-probe-${Date.now()}`;
    await s3.send(new CreateBucketCommand({ Bucket }));
    await s3.send(new PutObjectCommand({ Bucket, Key: 'k', Body: 'one', IfNoneMatch: '*' }));
    await expect(s3.send(new PutObjectCommand({ Bucket, Key: 'k', Body: 'two', IfNoneMatch: '*' }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
  });
});
