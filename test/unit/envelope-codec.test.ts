import { describe, expect, it } from 'vitest';
import {
  assertFitsInMessage,
  decodeEnvelope,
  deduplicationId,
  encodedSize,
  encodeEnvelope,
  envelopeIdentity,
  messageGroupId,
  SQS_MAX_MESSAGE_BYTES,
} from '../../lib/adapters/aws/envelope-codec.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import { ENVELOPE_VERSION, EnvelopeKind, type Envelope } from '../../lib/core/envelope.js';
import { MIN_WATERMARK } from '../../lib/runtime/watermark.js';

/** A data envelope with safe defaults. */
function envelope(overrides: Partial<Envelope> = {}): Envelope {
  return {
    v: ENVELOPE_VERSION,
    job: 'wordcount',
    gen: 2,
    from: { op: 'tokenize', subtask: 1 },
    to: { op: 'count', subtask: 3 },
    seq: 17,
    kind: EnvelopeKind.Data,
    epoch: 4,
    records: [{ v: ['hello', 1], t: 1_700_000_000_000, k: '"hello"', g: 42 }],
    ...overrides,
  };
}

/** Awaits a call that must throw a FloeError and returns that error. */
function floeErrorOf(fn: () => unknown): FloeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FloeError);
    return e as FloeError;
  }
  throw new Error('expected a FloeError, but the call succeeded');
}

/** The JSON body of an envelope with some top-level fields replaced or (with undefined) removed. */
function bodyWith(fields: Record<string, unknown>): string {
  return JSON.stringify({ ...envelope(), ...fields });
}

describe('envelope codec', () => {
  it.each<[string, Envelope]>([
    ['data', envelope()],
    ['data without optional record fields', envelope({ records: [{ v: null }, { v: { nested: [1, 'two', false] } }, { v: 0, g: 0 }] })],
    ['watermark', envelope({ kind: EnvelopeKind.Watermark, records: undefined, watermark: MIN_WATERMARK })],
    [
      'barrier',
      envelope({
        kind: EnvelopeKind.Barrier,
        records: undefined,
        barrier: { checkpointId: 9, kind: 'savepoint', timestamp: 5, stop: true, location: 's3://b/sp', sharedLocation: 's3://b/shared', committedThrough: 8 },
      }),
    ],
    ['end', envelope({ kind: EnvelopeKind.End, records: undefined, barrier: { checkpointId: 10, kind: 'checkpoint', timestamp: 6, location: '/c' } })],
  ])('round-trips a %s envelope', (_, e) => {
    const expected = JSON.parse(JSON.stringify(e)) as Envelope;
    expect(decodeEnvelope(encodeEnvelope(e))).toStrictEqual(expected);
  });

  it('keeps the wire form compact: the record fields are one letter, and the header is small next to 512 records', () => {
    const records = Array.from({ length: 512 }, (_, i) => ({ v: [`word-${i}`, 1], k: `"word-${i}"`, g: i % 128 }));
    const full = encodedSize(encodeEnvelope(envelope({ records })));
    const header = encodedSize(encodeEnvelope(envelope({ records: [] })));
    expect(header).toBeLessThan(200);
    expect(header / full).toBeLessThan(0.01);
  });

  it('escapes the two characters SQS refuses in a body that JSON leaves alone, and keeps every other string intact', () => {
    const text = 'a\uFFFEb\uFFFFc \u0000 \u001f \uD800 lone surrogate, 🦀 pair, € ü';
    const body = encodeEnvelope(envelope({ records: [{ v: text, k: '\uFFFF' }] }));

    // SQS accepts #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
    expect(body).toMatch(/^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u);
    expect(decodeEnvelope(body).records).toStrictEqual([{ v: text, k: '\uFFFF' }]);
  });

  it('refuses to encode a record value JSON cannot hold, naming the envelope', () => {
    const error = floeErrorOf(() => encodeEnvelope(envelope({ records: [{ v: 10n }] })));
    expect(error.code).toBe(ErrorCode.MalformedMessage);
    expect(error.message).toMatch(/^cannot encode envelope wordcount\.2\.tokenize\.1\.3\.17: .*BigInt/);
  });

  it.each<[string, string, RegExp]>([
    ['not JSON', '{"v":1,', /^m-1: body is not JSON \(/],
    ['empty', '', /^m-1: body is not JSON/],
    ['a JSON array', '[]', /^m-1: body is not a valid envelope: \(body\): /],
    ['another version', bodyWith({ v: 2 }), /v: Invalid input: expected 1/],
    ['an unknown kind', bodyWith({ kind: 'rumour' }), /kind: /],
    ['data without records', bodyWith({ records: undefined }), /records: Invalid input: expected array, received undefined/],
    ['a barrier without barrier info', bodyWith({ kind: 'barrier', records: undefined }), /barrier: Invalid input: expected object/],
    ['a watermark without a watermark', bodyWith({ kind: 'watermark', records: undefined }), /watermark: /],
    ['seq 0', bodyWith({ seq: 0 }), /seq: Too small: expected number to be >0/],
    ['a fractional subtask', bodyWith({ to: { op: 'count', subtask: 1.5 } }), /to\.subtask: Invalid input: expected int/],
    ['an empty job', bodyWith({ job: '' }), /job: Too small/],
    ['a record with a string key group', bodyWith({ records: [{ v: 1 }, { v: 2, g: '7' }] }), /records\[1\]\.g: Invalid input: expected number, received string/],
    ['a barrier of an unknown kind', bodyWith({ kind: 'barrier', records: undefined, barrier: { checkpointId: 1, kind: 'snapshot', timestamp: 1, location: 'x' } }), /barrier\.kind: /],
  ])('decoding a body that is %s throws MALFORMED_MESSAGE naming the problem', (_, body, reason) => {
    const error = floeErrorOf(() => decodeEnvelope(body, 'm-1'));
    expect(error.code).toBe(ErrorCode.MalformedMessage);
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(reason);
  });

  it('names every problem of a body at once', () => {
    const error = floeErrorOf(() => decodeEnvelope(bodyWith({ seq: -1, gen: 'x', from: undefined })));
    expect(error.message).toMatch(/^message: body is not a valid envelope: /);
    for (const field of ['seq: ', 'gen: ', 'from: ']) expect(error.message).toContain(field);
  });

  it('measures bodies in UTF-8 bytes and refuses an envelope over the limit with a clear message', () => {
    expect(SQS_MAX_MESSAGE_BYTES).toBe(1024 * 1024);
    expect(encodedSize('€')).toBe(3);
    const e = envelope({ records: [{ v: 'x'.repeat(2000) }] });
    const body = encodeEnvelope(e);
    expect(() => assertFitsInMessage(e, body)).not.toThrow();
    expect(() => assertFitsInMessage(e, body, encodedSize(body))).not.toThrow();

    const error = floeErrorOf(() => assertFitsInMessage(e, body, 1024));
    expect(error.code).toBe(ErrorCode.LimitExceeded);
    expect(error.message).toBe(
      `envelope wordcount.2.tokenize.1.3.17 (data with 1 records) encodes to ${encodedSize(body)} bytes, over the SQS message limit of 1024 bytes; ` +
        `a single record vertex 'tokenize' sends to '${e.to.op}' is too large for SQS; make it smaller`,
    );
  });
});

describe('SQS FIFO message identity', () => {
  it('groups by receiving subtask and deduplicates by the envelope identity', () => {
    const e = envelope();
    expect(messageGroupId(e)).toBe('3');
    expect(envelopeIdentity(e)).toBe('wordcount.2.tokenize.1.3.17');
    expect(deduplicationId(e)).toBe('wordcount.2.tokenize.1.3.17');
  });

  it('gives a resent envelope the same deduplication id and any other envelope another', () => {
    const ids = new Set([
      deduplicationId(envelope()),
      deduplicationId(envelope({ seq: 18 })),
      deduplicationId(envelope({ gen: 3 })),
      deduplicationId(envelope({ from: { op: 'tokenize', subtask: 0 } })),
      deduplicationId(envelope({ to: { op: 'count', subtask: 0 } })),
      deduplicationId(envelope({ job: 'other' })),
    ]);
    expect(ids.size).toBe(6);
    expect(deduplicationId(envelope({ records: [{ v: 'other content' }] }))).toBe(deduplicationId(envelope()));
  });

  it.each<[string, Partial<Envelope>]>([
    ['too long', { job: 'j'.repeat(120) }],
    ['with a space', { from: { op: 'my op', subtask: 0 } }],
    ['with non-ASCII', { job: 'wörter' }],
  ])('hashes an identity that is %s into a valid deduplication id', (_, overrides) => {
    const e = envelope(overrides);
    const id = deduplicationId(e);
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(id).toMatch(/^[\x21-\x7E]{1,128}$/);
    expect(deduplicationId({ ...e, seq: e.seq + 1 })).not.toBe(id);
  });

  it('keeps an identity of exactly 128 allowed characters as it is', () => {
    const e = envelope({ job: `j!"#$%&'()*+,-/:;<=>?@[\\]^_\`{|}~`.padEnd(128 - '.2.tokenize.1.3.17'.length, 'x') });
    expect(envelopeIdentity(e)).toHaveLength(128);
    expect(deduplicationId(e)).toBe(envelopeIdentity(e));
  });
});
