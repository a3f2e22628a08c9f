import { S3ServiceException, type S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it, vi } from 'vitest';
import { S3CheckpointStorage, parseS3Location } from '../../lib/adapters/aws/s3-checkpoint-storage.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';

// The one place the S3 client is mocked: failures an emulator cannot be made to produce on demand (throttling, 5xx,
// access denied, dropped connections, lost responses), and how each becomes a FloeError.

const LOCATION = 's3://floe-bucket/job/checkpoints/chk-7/_metadata';
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** An error as the SDK throws it for an S3 error response. */
function serviceError(name: string, status: number, extra: { attempts?: number; retryable?: boolean } = {}): S3ServiceException {
  return new S3ServiceException({
    name,
    message: `${name} from the service`,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status, attempts: extra.attempts ?? 1, requestId: 'req-1' },
    ...(extra.retryable ? { $retryable: { throttling: true } } : {}),
  });
}

/** An error as Node's HTTP stack throws it when the connection fails. */
function networkError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:4566`), { code });
}

/** A storage whose client answers each `send` with the next of `replies` (an Error is thrown). */
function storageReplying(...replies: unknown[]): { storage: S3CheckpointStorage; send: ReturnType<typeof vi.fn> } {
  const send = vi.fn();
  for (const reply of replies) {
    if (reply instanceof Error) send.mockRejectedValueOnce(reply);
    else send.mockResolvedValueOnce(reply);
  }
  return { storage: new S3CheckpointStorage({ client: { send } as unknown as S3Client }), send };
}

async function floeErrorOf(promise: Promise<unknown>): Promise<FloeError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(FloeError);
  return error as FloeError;
}

describe('S3CheckpointStorage error mapping', () => {
  it.each([
    ['SlowDown', serviceError('SlowDown', 503), true],
    ['InternalError', serviceError('InternalError', 500), true],
    ['ServiceUnavailable', serviceError('ServiceUnavailable', 503), true],
    ['an unnamed 502', serviceError('Unknown', 502), true],
    ['a 429', serviceError('TooManyRequests', 429), true],
    ['an error the SDK marks retryable', serviceError('Throttling', 400, { retryable: true }), true],
    ['RequestTimeout (400)', serviceError('RequestTimeout', 400), true],
    ['ConditionalRequestConflict (409)', serviceError('ConditionalRequestConflict', 409), true],
    ['a reset connection', networkError('ECONNRESET'), true],
    ['a refused connection', networkError('ECONNREFUSED'), true],
    ['a socket timeout', Object.assign(new Error('Connection timed out after 1000 ms'), { name: 'TimeoutError' }), true],
    ['AccessDenied', serviceError('AccessDenied', 403), false],
    ['InvalidAccessKeyId', serviceError('InvalidAccessKeyId', 403), false],
    ['SignatureDoesNotMatch', serviceError('SignatureDoesNotMatch', 403), false],
    ['NoSuchBucket', serviceError('NoSuchBucket', 404), false],
    ['NotImplemented (501), a service without the feature', serviceError('NotImplemented', 501), false],
    ['a 400 InvalidRequest', serviceError('InvalidRequest', 400), false],
    ['missing credentials', Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }), false],
  ])('maps %s on put to a STORAGE error with retryable=%s', async (_what, error, retryable) => {
    const { storage } = storageReplying(error);

    const mapped = await floeErrorOf(storage.put(LOCATION, bytes('x')));

    expect(mapped.code).toBe(ErrorCode.Storage);
    expect(mapped.retryable).toBe(retryable);
    expect(mapped.cause).toBe(error);
    expect(mapped.message).toContain(LOCATION);
    expect(mapped.message).toContain('code' in error ? String(error.code) : error.name);
  });

  it.each([
    ['get', (s: S3CheckpointStorage) => s.get(LOCATION)],
    ['exists', (s: S3CheckpointStorage) => s.exists(LOCATION)],
    ['list', (s: S3CheckpointStorage) => s.list('s3://floe-bucket/job')],
    ['delete', (s: S3CheckpointStorage) => s.delete([LOCATION])],
    ['putIfAbsent', (s: S3CheckpointStorage) => s.putIfAbsent(LOCATION, bytes('x'))],
  ])('maps throttling on %s to a retryable STORAGE error and access denied to a terminal one', async (_op, call) => {
    expect(await floeErrorOf(call(storageReplying(serviceError('SlowDown', 503)).storage))).toMatchObject({ code: ErrorCode.Storage, retryable: true });
    expect(await floeErrorOf(call(storageReplying(serviceError('AccessDenied', 403)).storage))).toMatchObject({ code: ErrorCode.Storage, retryable: false });
  });

  it('sends putIfAbsent as a create-only PUT and maps 412 to MANIFEST_EXISTS naming the location', async () => {
    const { storage, send } = storageReplying(serviceError('PreconditionFailed', 412));

    const error = await floeErrorOf(storage.putIfAbsent(LOCATION, bytes('x')));

    expect(error).toMatchObject({ code: ErrorCode.ManifestExists, retryable: false });
    expect(error.message).toContain(LOCATION);
    expect(send.mock.calls[0]![0].input).toMatchObject({ Bucket: 'floe-bucket', Key: 'job/checkpoints/chk-7/_metadata', IfNoneMatch: '*' });
  });

  it('maps a 409 ConditionalRequestConflict on putIfAbsent to a retryable STORAGE error, not MANIFEST_EXISTS', async () => {
    const { storage } = storageReplying(serviceError('ConditionalRequestConflict', 409));

    expect(await floeErrorOf(storage.putIfAbsent(LOCATION, bytes('x')))).toMatchObject({ code: ErrorCode.Storage, retryable: true });
  });

  it('treats a 412 on an SDK retry as success when the stored object is exactly what it wrote (the first attempt landed)', async () => {
    // Given a first attempt whose response was lost, so the SDK's retry met the object that attempt created
    const { storage, send } = storageReplying(serviceError('PreconditionFailed', 412, { attempts: 2 }), { Body: { transformToByteArray: async () => bytes('mine') } });

    // Then putIfAbsent succeeds, having read the object back once
    await expect(storage.putIfAbsent(LOCATION, bytes('mine'))).resolves.toBeUndefined();
    expect(send).toHaveBeenCalledTimes(2);
  });

  it('keeps MANIFEST_EXISTS for a 412 on an SDK retry when someone else wrote different bytes', async () => {
    const { storage } = storageReplying(serviceError('PreconditionFailed', 412, { attempts: 3 }), { Body: { transformToByteArray: async () => bytes('theirs') } });

    expect(await floeErrorOf(storage.putIfAbsent(LOCATION, bytes('mine')))).toMatchObject({ code: ErrorCode.ManifestExists });
  });

  it('does not read back after a 412 on the first attempt', async () => {
    const { storage, send } = storageReplying(serviceError('PreconditionFailed', 412));

    expect(await floeErrorOf(storage.putIfAbsent(LOCATION, bytes('mine')))).toMatchObject({ code: ErrorCode.ManifestExists });
    expect(send).toHaveBeenCalledTimes(1);
  });

  it.each([
    ['NoSuchKey', serviceError('NoSuchKey', 404)],
    ['a bare 404', serviceError('NotFound', 404)],
  ])('maps %s on get to NOT_FOUND naming the location', async (_what, error) => {
    const mapped = await floeErrorOf(storageReplying(error).storage.get(LOCATION));

    expect(mapped).toMatchObject({ code: ErrorCode.NotFound, retryable: false });
    expect(mapped.message).toContain(LOCATION);
  });

  it('maps a missing bucket on get to a terminal STORAGE error, not NOT_FOUND', async () => {
    expect(await floeErrorOf(storageReplying(serviceError('NoSuchBucket', 404)).storage.get(LOCATION))).toMatchObject({ code: ErrorCode.Storage, retryable: false });
  });

  it('maps a connection dropped while reading the body to a retryable STORAGE error', async () => {
    const { storage } = storageReplying({ Body: { transformToByteArray: () => Promise.reject(networkError('ECONNRESET')) } });

    expect(await floeErrorOf(storage.get(LOCATION))).toMatchObject({ code: ErrorCode.Storage, retryable: true });
  });

  it('answers exists with false on 404 and throws on anything else', async () => {
    expect(await storageReplying(serviceError('NotFound', 404)).storage.exists(LOCATION)).toBe(false);
    expect(await floeErrorOf(storageReplying(serviceError('Forbidden', 403)).storage.exists(LOCATION))).toMatchObject({ code: ErrorCode.Storage, retryable: false });
    expect(await floeErrorOf(storageReplying(networkError('ETIMEDOUT')).storage.exists(LOCATION))).toMatchObject({ code: ErrorCode.Storage, retryable: true });
  });

  it('reports a truncated listing without a continuation token instead of looping or returning a partial list', async () => {
    const { storage } = storageReplying({ Contents: [{ Key: 'job/a' }], IsTruncated: true });

    expect(await floeErrorOf(storage.list('s3://floe-bucket/job'))).toMatchObject({ code: ErrorCode.Storage, retryable: true });
  });

  it('ignores NoSuchKey among DeleteObjects per-key errors', async () => {
    const { storage } = storageReplying({ Errors: [{ Key: 'job/a', Code: 'NoSuchKey', Message: 'gone' }] });

    await expect(storage.delete(['s3://floe-bucket/job/a'])).resolves.toBeUndefined();
  });

  it.each([
    ['AccessDenied', false],
    ['InternalError', true],
    ['SlowDown', true],
  ])('reports a DeleteObjects per-key %s (sent with HTTP 200) as a STORAGE error with retryable=%s', async (code, retryable) => {
    const { storage } = storageReplying({ Errors: [{ Key: 'job/b', Code: code, Message: 'no' }] });

    const error = await floeErrorOf(storage.delete(['s3://floe-bucket/job/a', 's3://floe-bucket/job/b']));

    expect(error).toMatchObject({ code: ErrorCode.Storage, retryable });
    expect(error.message).toContain('s3://floe-bucket/job/b');
    expect(error.message).toContain(code);
  });

  it('checks every location before deleting anything', async () => {
    const { storage, send } = storageReplying();

    expect(await floeErrorOf(storage.delete(['s3://floe-bucket/job/a', '/tmp/job/b']))).toMatchObject({ code: ErrorCode.InvalidOptions });
    expect(send).not.toHaveBeenCalled();
  });
});

describe('parseS3Location', () => {
  it.each([
    ['s3://floe-bucket/job/chk-1/_metadata', { bucket: 'floe-bucket', key: 'job/chk-1/_metadata' }],
    ['s3://my.bucket-1/a', { bucket: 'my.bucket-1', key: 'a' }],
    ['s3://abc/key with spaces/and?query#hash', { bucket: 'abc', key: 'key with spaces/and?query#hash' }],
  ])('parses %s', (location, expected) => {
    expect(parseS3Location(location)).toEqual(expected);
  });

  it.each([
    ['s3://floe-bucket', { bucket: 'floe-bucket', key: '' }],
    ['s3://floe-bucket/', { bucket: 'floe-bucket', key: '' }],
    ['s3://floe-bucket/job/', { bucket: 'floe-bucket', key: 'job/' }],
  ])('parses the prefix %s', (location, expected) => {
    expect(parseS3Location(location, 'prefix')).toEqual(expected);
  });

  it.each([
    ['/tmp/checkpoints/_metadata', 'does not start with s3://'],
    ['checkpoints/_metadata', 'does not start with s3://'],
    ['file:///tmp/x', 'does not start with s3://'],
    ['https://floe-bucket.s3.amazonaws.com/x', 'does not start with s3://'],
    ['S3://floe-bucket/x', 'does not start with s3://'],
    ['s3:/floe-bucket/x', 'does not start with s3://'],
    ['s3:///x', 'is not a bucket name'],
    ['s3://Floe_Bucket/x', 'is not a bucket name'],
    ['s3://ab/x', 'is not a bucket name'],
    ['s3://floe-bucket', 'names a bucket, not an object'],
    ['s3://floe-bucket/', 'names a bucket, not an object'],
    ['s3://floe-bucket/job/', 'names a directory, not an object'],
    ['s3://floe-bucket/job/../x', "'.' or '..' segments"],
    ['s3://floe-bucket/./x', "'.' or '..' segments"],
    [`s3://floe-bucket/${'k'.repeat(1025)}`, 'longer than 1024 bytes'],
  ])('refuses %s as an object location: %s', (location, why) => {
    let error: unknown;
    try {
      parseS3Location(location);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FloeError);
    expect(error).toMatchObject({ code: ErrorCode.InvalidOptions, retryable: false });
    expect((error as FloeError).message).toContain(location);
    expect((error as FloeError).message).toContain(why);
  });
});
