import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { ErrorCode, FloeError } from '../../core/errors.js';
import type { CheckpointStorage } from '../../ports/index.js';
import { awsClients } from './clients.js';

/** A bucket and an object key (or key prefix), parsed from an `s3://bucket/key` location. */
export interface S3Location {
  readonly bucket: string;
  readonly key: string;
}

/** Options of {@link S3CheckpointStorage}. */
export interface S3CheckpointStorageOptions {
  /**
   * The S3 client to use.
   * @default `awsClients().s3`: SDK defaults, `AWS_ENDPOINT_URL` included, path-style when an endpoint is set
   */
  readonly client?: S3Client;
}

/** DeleteObjects takes at most this many keys per request. */
const DELETE_BATCH = 1000;

/** Bucket names as S3 creates them today: 3–63 lowercase letters, digits, dots and hyphens, starting and ending alphanumeric. */
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** S3 refuses keys longer than this many UTF-8 bytes. */
const MAX_KEY_BYTES = 1024;

/** Error names (S3 codes and SDK names) that say "try again later": throttling, transient server trouble, races. */
const RETRYABLE_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'ProvisionedThroughputExceededException',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
  // 409: a conditional write raced a delete or another conditional request on the same key; S3 asks for a retry.
  'ConditionalRequestConflict',
  'OperationAborted',
]);

/** Node socket and DNS failures: the request may not have reached S3, or its answer was lost. */
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Parses an `s3://bucket/key` location; `kind: 'object'` also requires a key that names an object rather than a prefix. */
export function parseS3Location(location: string, kind: 'object' | 'prefix' = 'object'): S3Location {
  const invalid = (why: string): FloeError =>
    new FloeError(ErrorCode.InvalidOptions, `'${location}' is not a valid S3 ${kind === 'object' ? 'object ' : ''}location: ${why}; expected s3://<bucket>/<key>`);
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/s.exec(location);
  if (!m) throw invalid('it does not start with s3://');
  const bucket = m[1]!;
  const key = m[2] ?? '';
  if (!BUCKET_NAME.test(bucket)) throw invalid(`'${bucket}' is not a bucket name`);
  if (key.split('/').some((segment) => segment === '.' || segment === '..')) throw invalid(`the key has '.' or '..' segments`);
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw invalid(`the key is longer than ${MAX_KEY_BYTES} bytes`);
  if (kind === 'object' && key === '') throw invalid('it names a bucket, not an object');
  if (kind === 'object' && key.endsWith('/')) throw invalid('it names a directory, not an object');
  return { bucket, key };
}

/**
 * Checkpoint storage in S3 or any S3-compatible service; locations are `s3://bucket/key` URLs. `putIfAbsent` is a
 * create-only PUT (`If-None-Match: *`), so exactly one of several racing writers of a manifest wins.
 */
export class S3CheckpointStorage implements CheckpointStorage {
  private readonly s3: S3Client;

  constructor(options: S3CheckpointStorageOptions = {}) {
    this.s3 = options.client ?? awsClients().s3;
  }

  /** Writes an object with PutObject, replacing any existing one. */
  async put(location: string, bytes: Uint8Array): Promise<void> {
    const { bucket, key } = parseS3Location(location);
    try {
      await this.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
    } catch (e) {
      throw storageError(`cannot write ${location}`, e);
    }
  }

  /** Writes an object only if none exists (`If-None-Match: *`); throws FloeError MANIFEST_EXISTS when one does. */
  async putIfAbsent(location: string, bytes: Uint8Array): Promise<void> {
    const { bucket, key } = parseS3Location(location);
    try {
      await this.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes, IfNoneMatch: '*' }));
    } catch (e) {
      if (!isPreconditionFailed(e)) throw storageError(`cannot write ${location}`, e);
      // A 412 on the SDK's second or later attempt may answer our own first attempt, which succeeded but whose
      // response was lost:   attempt 1 ──PUT──▶ S3 creates the object ─╳ reply lost
      //                      attempt 2 ──PUT──▶ 412, "it exists"  (it does: we wrote it)
      // Only then are the stored bytes compared with ours; equal bytes mean the write we were asked for happened.
      if (attemptsOf(e) > 1 && (await this.holds(location, bytes, e))) return;
      throw new FloeError(ErrorCode.ManifestExists, `${location} already exists; refusing to overwrite it`, { cause: e });
    }
  }

  /** Reads an object with GetObject; throws FloeError NOT_FOUND when it does not exist. */
  async get(location: string): Promise<Uint8Array> {
    const { bucket, key } = parseS3Location(location);
    try {
      const response = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return response.Body ? await response.Body.transformToByteArray() : new Uint8Array();
    } catch (e) {
      // A missing bucket is a misconfiguration, not a missing checkpoint: it stays a STORAGE error.
      if (statusOf(e) === 404 && nameOf(e) !== 'NoSuchBucket') {
        throw new FloeError(ErrorCode.NotFound, `${location} does not exist`, { cause: e });
      }
      throw storageError(`cannot read ${location}`, e);
    }
  }

  /** True when the object exists (HeadObject). */
  async exists(location: string): Promise<boolean> {
    const { bucket, key } = parseS3Location(location);
    try {
      await this.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return true;
    } catch (e) {
      if (statusOf(e) === 404) return false;
      throw storageError(`cannot check ${location}`, e);
    }
  }

  /**
   * Objects under the directory `prefix` (keys starting with `prefix/`, so `chk-1` does not match `chk-10`), in key
   * order, as `s3://` locations; folder markers (keys ending in `/`) are not objects and are left out.
   */
  async list(prefix: string): Promise<string[]> {
    const { bucket, key } = parseS3Location(prefix, 'prefix');
    const keyPrefix = key === '' || key.endsWith('/') ? key : `${key}/`;
    const out: string[] = [];
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: keyPrefix, ContinuationToken: token }));
      } catch (e) {
        throw storageError(`cannot list ${prefix}`, e);
      }
      for (const object of page.Contents ?? []) {
        if (object.Key !== undefined && !object.Key.endsWith('/')) out.push(`s3://${bucket}/${object.Key}`);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated && !token) {
        throw new FloeError(ErrorCode.Storage, `cannot list ${prefix}: a truncated page came without a continuation token`, { retryable: true });
      }
    } while (token);
    return out;
  }

  /** Deletes objects with DeleteObjects, up to 1000 keys per request and in the given order; missing ones are ignored. */
  async delete(locations: readonly string[]): Promise<void> {
    // Every location is checked before anything is deleted.
    const parsed = locations.map((l) => parseS3Location(l));
    // Consecutive runs of one bucket, so a caller's order (manifests first, say) holds from one request to the next.
    const batches: { bucket: string; keys: string[] }[] = [];
    for (const { bucket, key } of parsed) {
      const last = batches[batches.length - 1];
      if (last && last.bucket === bucket && last.keys.length < DELETE_BATCH) {
        if (!last.keys.includes(key)) last.keys.push(key);
      } else {
        batches.push({ bucket, keys: [key] });
      }
    }
    for (const { bucket, keys } of batches) {
      let response;
      try {
        response = await this.s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }));
      } catch (e) {
        throw storageError(`cannot delete ${keys.length} object(s) in s3://${bucket}`, e);
      }
      // DeleteObjects answers 200 even when some keys failed; those are listed in `Errors`.
      const failed = (response.Errors ?? []).filter((f) => f.Code !== 'NoSuchKey');
      if (failed.length > 0) {
        const shown = failed.slice(0, 3).map((f) => `s3://${bucket}/${f.Key ?? '?'} (${f.Code ?? 'unknown'}: ${f.Message ?? ''})`);
        const more = failed.length > shown.length ? ` and ${failed.length - shown.length} more` : '';
        throw new FloeError(ErrorCode.Storage, `cannot delete ${shown.join(', ')}${more}`, {
          cause: failed,
          retryable: failed.every((f) => RETRYABLE_NAMES.has(f.Code ?? '')),
        });
      }
    }
  }

  /** Whether the object at `location` holds exactly `bytes`; `conflict` is the 412 that prompted the check. */
  private async holds(location: string, bytes: Uint8Array, conflict: unknown): Promise<boolean> {
    let stored: Uint8Array;
    try {
      stored = await this.get(location);
    } catch (e) {
      if (e instanceof FloeError && e.code === ErrorCode.NotFound) {
        throw new FloeError(ErrorCode.Storage, `cannot write ${location}: it existed, then vanished before it could be read back`, {
          cause: conflict,
          retryable: true,
        });
      }
      throw e;
    }
    return stored.byteLength === bytes.byteLength && Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength).equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
}

/** Turns an SDK or network error into a STORAGE FloeError, retryable for throttling, 5xx, races and network failures. */
function storageError(message: string, cause: unknown): FloeError {
  const name = nameOf(cause) ?? 'Error';
  const status = statusOf(cause);
  const detail = cause instanceof Error && cause.message && cause.message !== name ? `${name}: ${cause.message}` : name;
  const requestId = metadataOf(cause)?.requestId;
  return new FloeError(ErrorCode.Storage, `${message}: ${detail}${status !== undefined ? ` (HTTP ${status})` : ''}${requestId ? ` [request ${requestId}]` : ''}`, {
    cause,
    retryable: isRetryable(cause),
  });
}

function isRetryable(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  // The SDK marks throttling and transient errors it recognises.
  if ('$retryable' in e && e.$retryable) return true;
  if (RETRYABLE_NAMES.has(nameOf(e) ?? '')) return true;
  const status = statusOf(e);
  // 501 Not Implemented is a service that lacks a feature, which no retry will add.
  if (status !== undefined) return status === 429 || (status >= 500 && status !== 501);
  // No HTTP status: the request failed below HTTP, or the response body broke off.
  const code = 'code' in e && typeof e.code === 'string' ? e.code : undefined;
  return code !== undefined && NETWORK_CODES.has(code);
}

function isPreconditionFailed(e: unknown): boolean {
  return statusOf(e) === 412 || nameOf(e) === 'PreconditionFailed';
}

function metadataOf(e: unknown): { httpStatusCode?: number; attempts?: number; requestId?: string } | undefined {
  if (typeof e !== 'object' || e === null || !('$metadata' in e)) return undefined;
  const metadata = e.$metadata;
  return typeof metadata === 'object' && metadata !== null ? metadata : undefined;
}

function statusOf(e: unknown): number | undefined {
  return metadataOf(e)?.httpStatusCode;
}

function attemptsOf(e: unknown): number {
  return metadataOf(e)?.attempts ?? 1;
}

function nameOf(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'name' in e && typeof e.name === 'string' ? e.name : undefined;
}
