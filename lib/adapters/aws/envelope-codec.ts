import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ErrorCode, FloeError } from '../../core/errors.js';
import { ENVELOPE_VERSION, EnvelopeKind, type Envelope } from '../../core/envelope.js';

/**
 * Largest SQS message body, in bytes (1 MiB). AWS raised the limit from 256 KiB in August 2025; a queue's own
 * `MaximumMessageSize` attribute may still be lower, so the CDK stack sets it to this value explicitly.
 */
export const SQS_MAX_MESSAGE_BYTES = 1_048_576;

/** Largest total body size of one `SendMessageBatch` request, in bytes (the same 1 MiB as a single message). */
export const SQS_MAX_BATCH_BYTES = 1_048_576;

/** Most entries in one `SendMessageBatch`, `DeleteMessageBatch` or `ChangeMessageVisibilityBatch`, and most messages one `ReceiveMessage` returns. */
export const SQS_MAX_BATCH_ENTRIES = 10;

/** SQS bills each started 64 KiB of a request's payload as one request. */
export const SQS_BILLING_CHUNK_BYTES = 65_536;

/**
 * Encoded bytes of records an operator packs into one data envelope on SQS (two billing chunks). A Lambda batch
 * holds 10 messages at most, and a step's state writes are paid per step, not per record, so an envelope carries as
 * many records as fit: about 3,000 words of a word count rather than 512. Half of the 256 KiB that queues default to
 * (emulators included; the CDK stack raises it to 1 MiB), so a header and a few escapes never push a body over.
 */
export const SQS_ENVELOPE_BYTES = 128 * 1024;

/** Records packed into one data envelope on SQS at most; records are small, so {@link SQS_ENVELOPE_BYTES} decides first. */
export const SQS_RECORDS_PER_ENVELOPE = 32_768;

const channelEnd = z.object({ op: z.string().min(1), subtask: z.number().int().nonnegative() });

const streamRecord = z.object({
  v: z.unknown(),
  t: z.number().optional(),
  k: z.string().optional(),
  g: z.number().int().nonnegative().optional(),
});

const barrierInfo = z.object({
  checkpointId: z.number().int().nonnegative(),
  kind: z.enum(['checkpoint', 'savepoint']),
  timestamp: z.number(),
  stop: z.boolean().optional(),
  location: z.string(),
  sharedLocation: z.string().optional(),
  committedThrough: z.number().int().nonnegative().optional(),
});

const header = {
  v: z.literal(ENVELOPE_VERSION),
  job: z.string().min(1),
  gen: z.number().int().nonnegative(),
  from: channelEnd,
  to: channelEnd,
  seq: z.number().int().positive(),
  epoch: z.number().int().nonnegative(),
};

/** The wire form of an envelope; each kind requires the field it carries. */
const envelopeSchema = z.discriminatedUnion('kind', [
  z.object({ ...header, kind: z.literal(EnvelopeKind.Data), records: z.array(streamRecord) }),
  z.object({ ...header, kind: z.literal(EnvelopeKind.Watermark), watermark: z.number() }),
  z.object({ ...header, kind: z.literal(EnvelopeKind.Barrier), barrier: barrierInfo }),
  z.object({ ...header, kind: z.literal(EnvelopeKind.End), barrier: barrierInfo }),
]);

/** `U+FFFE` and `U+FFFF` are valid in JSON strings but SQS refuses them in a body; JSON.stringify escapes everything else SQS refuses. */
const SQS_FORBIDDEN = /[\uFFFE\uFFFF]/g;

/** The identity of an envelope: sender, receiver subtask and sequence number within a job generation. */
export function envelopeIdentity(e: Envelope): string {
  return `${e.job}.${e.gen}.${e.from.op}.${e.from.subtask}.${e.to.subtask}.${e.seq}`;
}

/** Encodes an envelope as an SQS message body (compact JSON; record values must be JSON values). */
export function encodeEnvelope(e: Envelope): string {
  let body: string;
  try {
    body = JSON.stringify(e);
  } catch (cause) {
    throw new FloeError(ErrorCode.MalformedMessage, `cannot encode envelope ${envelopeIdentity(e)}: ${(cause as Error).message}`, { cause });
  }
  return body.replace(SQS_FORBIDDEN, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

/** Bytes an encoded body takes in SQS (UTF-8). */
export function encodedSize(body: string): number {
  return Buffer.byteLength(body, 'utf8');
}

/** Throws a terminal FloeError when an encoded envelope is larger than `limit` bytes. */
export function assertFitsInMessage(e: Envelope, body: string, limit: number = SQS_MAX_MESSAGE_BYTES): void {
  const size = encodedSize(body);
  if (size <= limit) return;
  const records = e.records ? ` with ${e.records.length} records` : '';
  // One record too large for a message cannot be sent however envelopes are packed: retrying cannot mend it.
  const fix = e.records?.length === 1 ? `a single record vertex '${e.from.op}' sends to '${e.to.op}' is too large for SQS; make it smaller` : 'lower maxRecordsPerEnvelope or make the records smaller';
  throw new FloeError(ErrorCode.LimitExceeded, `envelope ${envelopeIdentity(e)} (${e.kind}${records}) encodes to ${size} bytes, over the SQS message limit of ${limit} bytes; ${fix}`);
}

/**
 * Decodes an SQS message body into an envelope. A body that is not JSON or not a valid envelope throws a terminal
 * FloeError MALFORMED_MESSAGE naming every problem, so the message can go to the dead-letter queue with the reason.
 * @param source names the message in the error (a message id, for instance)
 */
export function decodeEnvelope(body: string, source = 'message'): Envelope {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch (cause) {
    throw new FloeError(ErrorCode.MalformedMessage, `${source}: body is not JSON (${(cause as Error).message})`, { cause });
  }
  const parsed = envelopeSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${formatPath(i.path) || '(body)'}: ${i.message}`);
    throw new FloeError(ErrorCode.MalformedMessage, `${source}: body is not a valid envelope: ${problems.join('; ')}`, { cause: parsed.error });
  }
  const envelope: Envelope = parsed.data;
  return envelope;
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}

/** The FIFO message group of an envelope: its receiving subtask, so each subtask's input is processed serially and in order. */
export function messageGroupId(e: Envelope): string {
  return String(e.to.subtask);
}

/** Characters SQS allows in a deduplication id: printable ASCII without space. */
const DEDUP_ID = /^[\x21-\x7E]{1,128}$/;

/**
 * The FIFO deduplication id of an envelope, deterministic from its identity so that a step replayed after a crash
 * re-sends envelopes SQS drops (within its 5-minute window; receivers drop older ones by `seq`). An identity that is
 * too long or has characters SQS refuses is replaced by its SHA-256.
 */
export function deduplicationId(e: Envelope): string {
  return fifoDeduplicationId(envelopeIdentity(e));
}

/** A FIFO deduplication id for `identity`: itself when SQS takes it, else its SHA-256 (too long, or characters SQS refuses). */
export function fifoDeduplicationId(identity: string): string {
  return DEDUP_ID.test(identity) ? identity : `sha256:${createHash('sha256').update(identity).digest('hex')}`;
}
