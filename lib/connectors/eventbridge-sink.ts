import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import type { SinkConnector } from '../api/connector.js';
import { ErrorCode, FloeError, ValidationError } from '../core/errors.js';
import { resolveRetryOptions, sendInBatches, utf8Bytes, type RetryOptions } from './aws-calls.js';
import { Staging, stagingResource, type StagedTransaction, type StagingOptions } from './staged-transactions.js';

/** Options of the EventBridge sink. */
export interface EventBridgeSinkOptions<T> extends StagingOptions {
  /** Name or ARN of the event bus. @default 'default' */
  readonly eventBusName?: string;
  /** The event's `source`, or a function of the record. */
  readonly source: string | ((value: T) => string);
  /** The event's `detail-type`, or a function of the record. */
  readonly detailType: string | ((value: T) => string);
  /** The event's `detail`, a JSON object. @default the record itself */
  readonly detail?: (value: T) => Record<string, unknown>;
  /** ARNs of the resources the event concerns. @default none */
  readonly resources?: (value: T) => readonly string[];
  /** The EventBridge client. @default a client with the SDK's endpoint resolution (`AWS_ENDPOINT_URL` included) */
  readonly client?: EventBridgeClient;
  /** Retries of throttled and failed calls and entries. */
  readonly retry?: RetryOptions;
}

/** PutEvents takes at most this many entries a request. */
export const EVENTBRIDGE_MAX_BATCH_ENTRIES = 10;
/** PutEvents takes at most this many bytes a request, entries counted as EventBridge counts them. */
export const EVENTBRIDGE_MAX_BATCH_BYTES = 256 * 1024;

interface StagedEvent {
  readonly s: string;
  readonly t: string;
  /** Detail, as JSON text. */
  readonly d: string;
  readonly r?: readonly string[];
  /** Size as EventBridge counts it. */
  readonly n: number;
}

interface EventBridgeTransaction extends StagedTransaction {
  readonly sink: 'eventbridge';
  readonly eventBusName: string;
}

/**
 * At-least-once events to an EventBridge bus, put when the checkpoint that covers them completes. Records of an epoch
 * are staged (see `StagingOptions`); the commit sends them with PutEvents (10 entries and 256 KiB a request; entries the
 * answer reports as throttled or failed internally are sent again) and then deletes the staged parts.
 *
 * Not exactly-once: PutEvents has no idempotency key. A completed commit is not repeated (its parts are gone), but one
 * that dies after some requests and is run again (a retry, a restore) puts those events again, with new event ids.
 * Targets that must not act twice dedupe on a field of `detail` (the record's own id).
 */
export function eventBridgeSink<T>(options: EventBridgeSinkOptions<T>): SinkConnector<T> {
  const problems: string[] = [];
  if (typeof options.source !== 'function' && (typeof options.source !== 'string' || options.source === '')) problems.push('source must be a string or a function');
  if (typeof options.detailType !== 'function' && (typeof options.detailType !== 'string' || options.detailType === '')) problems.push('detailType must be a string or a function');
  if (options.eventBusName !== undefined && (typeof options.eventBusName !== 'string' || options.eventBusName === '')) problems.push('eventBusName must be a bus name or ARN');
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, 'eventBridgeSink options', problems);
  const retry = resolveRetryOptions('eventBridgeSink', options.retry);
  const staging = new Staging('eventBridgeSink', options);
  const bus = options.eventBusName ?? 'default';
  const sourceOf = typeof options.source === 'function' ? options.source : () => options.source as string;
  const detailTypeOf = typeof options.detailType === 'function' ? options.detailType : () => options.detailType as string;
  const detailOf = options.detail ?? ((v: T) => v as unknown as Record<string, unknown>);
  let client: EventBridgeClient | undefined;
  const events = () => (client ??= options.client ?? new EventBridgeClient({}));

  const encode = (values: readonly T[]): StagedEvent[] =>
    values.map((v) => {
      const s = sourceOf(v);
      const t = detailTypeOf(v);
      const detail = detailOf(v);
      const r = options.resources?.(v);
      if (typeof s !== 'string' || s === '' || typeof t !== 'string' || t === '') throw new FloeError(ErrorCode.InvalidJob, `eventBridgeSink(${bus}): source and detailType must be non-empty strings`);
      if (typeof detail !== 'object' || detail === null || Array.isArray(detail)) throw new FloeError(ErrorCode.InvalidJob, `eventBridgeSink(${bus}): detail must be a JSON object, got ${JSON.stringify(detail)}`);
      const d = JSON.stringify(detail);
      const n = utf8Bytes(s) + utf8Bytes(t) + utf8Bytes(d) + (r ?? []).reduce((sum, x) => sum + utf8Bytes(x), 0);
      if (n > EVENTBRIDGE_MAX_BATCH_BYTES) throw new FloeError(ErrorCode.LimitExceeded, `eventBridgeSink(${bus}): an event of ${n} bytes is over EventBridge's limit of ${EVENTBRIDGE_MAX_BATCH_BYTES} bytes`);
      return r && r.length > 0 ? { s, t, d, r: [...r], n } : { s, t, d, n };
    });

  return {
    type: 'eventbridge',
    resources: [{ service: 'events', bus, access: 'put' }, ...(options.staging?.startsWith('s3://') ? [stagingResource(options.staging)] : []),],
    exactlyOnce: false,
    createWriter(ctx) {
      return staging.writer<T, StagedEvent>(ctx, 'eventbridge', () => ({ eventBusName: bus }), encode);
    },
    async commit(pending) {
      const t = pending as EventBridgeTransaction;
      await staging.commit<StagedEvent>(t, async (records) => {
        await sendInBatches(
          `eventBridgeSink: putting checkpoint ${t.checkpointId} of ${t.uid}/${t.subtask} to ${t.eventBusName}`,
          retry,
          records.map((r) => r.record),
          (rest) => {
            let n = 0;
            let bytes = 0;
            for (const e of rest) {
              if (n === EVENTBRIDGE_MAX_BATCH_ENTRIES || (n > 0 && bytes + e.n > EVENTBRIDGE_MAX_BATCH_BYTES)) break;
              n++;
              bytes += e.n;
            }
            return n;
          },
          async (batch) => {
            const response = await events().send(
              new PutEventsCommand({
                Entries: batch.map((e) => ({ EventBusName: t.eventBusName, Source: e.s, DetailType: e.t, Detail: e.d, ...(e.r ? { Resources: [...e.r] } : {}) })),
              }),
            );
            const results = response.Entries ?? [];
            return batch.map((_, i) => {
              const result = results[i];
              if (!result) return { code: 'NoResult', retryable: true };
              return result.ErrorCode ? { code: result.ErrorCode, message: result.ErrorMessage } : undefined;
            });
          },
        );
      });
    },
  };
}
