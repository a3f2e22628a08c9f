import { createHash } from 'node:crypto';
import { KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { SinkConnector } from '../api/connector.js';
import { ErrorCode, FloeError, ValidationError } from '../core/errors.js';
import { resolveRetryOptions, sendInBatches, type RetryOptions } from './aws-calls.js';
import { Staging, stagingResource, type StagedTransaction, type StagingOptions } from './staged-transactions.js';

/** Options of the Kinesis Data Streams sink. */
export interface KinesisSinkOptions<T> extends StagingOptions {
  /** Name or ARN of the stream. */
  readonly stream: string;
  /** The payload of a record. @default strings as UTF-8, anything else as JSON */
  readonly data?: (value: T) => string | Uint8Array;
  /** The partition key of a record (1 to 256 characters), which picks its shard. @default the MD5 of its payload, in hex */
  readonly partitionKey?: (value: T) => string;
  /**
   * The Kinesis client.
   * @default a client with the SDK's endpoint resolution (`AWS_ENDPOINT_URL` included) over HTTP/1.1: the SDK's
   * default HTTP/2 handler serves only SubscribeToShard, and emulators speak HTTP/1.1
   */
  readonly client?: KinesisClient;
  /** Retries of throttled and failed calls and records. */
  readonly retry?: RetryOptions;
}

/** PutRecords takes at most this many records a request. */
export const KINESIS_MAX_BATCH_RECORDS = 500;
/** PutRecords takes at most this many bytes (payloads and partition keys) a request. */
export const KINESIS_MAX_BATCH_BYTES = 5 * 1024 * 1024;
/** A record's payload and partition key take at most this many bytes. */
export const KINESIS_MAX_RECORD_BYTES = 1024 * 1024;

interface StagedKinesisRecord {
  /** Payload, base64. */
  readonly d: string;
  /** Partition key. */
  readonly k: string;
  /** Bytes of payload and partition key. */
  readonly n: number;
}

interface KinesisTransaction extends StagedTransaction {
  readonly sink: 'kinesis';
  readonly stream: string;
}

/**
 * At-least-once records to a Kinesis data stream, put when the checkpoint that covers them completes. Records of an
 * epoch are staged (see `StagingOptions`); the commit sends them with PutRecords (500 records and 5 MiB a request,
 * records the answer reports as failed — throttled, an internal failure — sent again) and then deletes the staged parts.
 *
 * Not exactly-once: Kinesis has no idempotent put. A completed commit is not repeated (its parts are gone), but one
 * that dies after some requests and is run again (a retry, a restore) puts those records again. PutRecords also keeps
 * no order between the records of a request; consumers that need either dedupe by content or by a key of their own.
 */
export function kinesisSink<T>(options: KinesisSinkOptions<T>): SinkConnector<T> {
  if (typeof options.stream !== 'string' || options.stream === '') throw new ValidationError(ErrorCode.InvalidOptions, 'kinesisSink options', ['stream must be a stream name or ARN']);
  const retry = resolveRetryOptions('kinesisSink', options.retry);
  const staging = new Staging('kinesisSink', options);
  const dataOf = options.data ?? ((v: T) => (typeof v === 'string' ? v : JSON.stringify(v)));
  let client: KinesisClient | undefined;
  const kinesis = () => (client ??= options.client ?? new KinesisClient({ requestHandler: new NodeHttpHandler() }));
  const target = (stream: string) => (stream.startsWith('arn:') ? { StreamARN: stream } : { StreamName: stream });

  const encode = (values: readonly T[]): StagedKinesisRecord[] =>
    values.map((v) => {
      const raw = dataOf(v);
      const data = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
      const key = options.partitionKey ? options.partitionKey(v) : createHash('md5').update(data).digest('hex');
      if (typeof key !== 'string' || key.length < 1 || [...key].length > 256) throw new FloeError(ErrorCode.InvalidJob, `kinesisSink(${options.stream}): a partition key must be 1 to 256 characters, got ${JSON.stringify(key)}`);
      const n = data.byteLength + Buffer.byteLength(key, 'utf8');
      if (n > KINESIS_MAX_RECORD_BYTES) throw new FloeError(ErrorCode.LimitExceeded, `kinesisSink(${options.stream}): a record of ${n} bytes (payload and partition key) is over Kinesis's limit of ${KINESIS_MAX_RECORD_BYTES} bytes`);
      return { d: data.toString('base64'), k: key, n };
    });

  return {
    type: 'kinesis',
    resources: [{ service: 'kinesis', stream: options.stream, access: 'write' }, ...(options.staging?.startsWith('s3://') ? [stagingResource(options.staging)] : []),],
    exactlyOnce: false,
    createWriter(ctx) {
      return staging.writer<T, StagedKinesisRecord>(ctx, 'kinesis', () => ({ stream: options.stream }), encode);
    },
    async commit(pending) {
      const t = pending as KinesisTransaction;
      await staging.commit<StagedKinesisRecord>(t, async (records) => {
        await sendInBatches(
          `kinesisSink: putting checkpoint ${t.checkpointId} of ${t.uid}/${t.subtask} to ${t.stream}`,
          retry,
          records.map((r) => r.record),
          (rest) => {
            let n = 0;
            let bytes = 0;
            for (const r of rest) {
              if (n === KINESIS_MAX_BATCH_RECORDS || (n > 0 && bytes + r.n > KINESIS_MAX_BATCH_BYTES)) break;
              n++;
              bytes += r.n;
            }
            return n;
          },
          async (batch) => {
            const response = await kinesis().send(new PutRecordsCommand({ ...target(t.stream), Records: batch.map((r) => ({ Data: Buffer.from(r.d, 'base64'), PartitionKey: r.k })) }));
            const results = response.Records ?? [];
            return batch.map((_, i) => {
              const result = results[i];
              // An answer without a result for the record says nothing about it: it is sent again.
              if (!result) return { code: 'NoResult', retryable: true };
              return result.ErrorCode ? { code: result.ErrorCode, message: result.ErrorMessage } : undefined;
            });
          },
        );
      });
    },
  };
}
