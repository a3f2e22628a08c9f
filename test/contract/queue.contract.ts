import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { QueueSender } from '../../lib/ports/index.js';
import { channelKey, ENVELOPE_VERSION, EnvelopeKind, type ChannelEnd, type Envelope, type StreamRecord } from '../../lib/core/envelope.js';
import { MAX_WATERMARK, MIN_WATERMARK } from '../../lib/runtime/watermark.js';

/** A queue transport under test: a sender and a way to take what arrived for one receiving subtask. */
export interface QueueTransportFixture {
  readonly sender: QueueSender;
  /** Takes (and acknowledges) up to `max` envelopes that arrived for `receiver`, waiting up to `waitMs` for the first. */
  receive(receiver: ChannelEnd, max: number, waitMs: number): Promise<Envelope[]>;
  cleanup(): Promise<void>;
}

/** The vertices whose input queues a fixture must provide. */
export const CONTRACT_VERTICES = ['map', 'sink'] as const;

/** Builds an envelope with safe defaults: a data envelope from `src` subtask 0 to `map` subtask 0. */
export function envelope(overrides: Partial<Envelope> = {}): Envelope {
  return {
    v: ENVELOPE_VERSION,
    job: 'contract-job',
    gen: 1,
    from: { op: 'src', subtask: 0 },
    to: { op: 'map', subtask: 0 },
    seq: 1,
    kind: EnvelopeKind.Data,
    epoch: 0,
    records: [{ v: 'x' }],
    ...overrides,
  };
}

/** Word-count-like records: a keyed exchange with timestamps. */
export function wordRecords(count: number, offset = 0): StreamRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const word = `word-${(offset + i) % 997}`;
    return { v: [word, offset + i], t: 1_700_000_000_000 + offset + i, k: JSON.stringify(word), g: (offset + i) % 128 };
  });
}

/** Receives until `count` envelopes arrived for `receiver` or `timeoutMs` passed. */
export async function receiveN(fixture: QueueTransportFixture, receiver: ChannelEnd, count: number, timeoutMs = 20_000): Promise<Envelope[]> {
  const out: Envelope[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < count && Date.now() < deadline) {
    out.push(...(await fixture.receive(receiver, count - out.length, Math.min(1000, Math.max(1, deadline - Date.now())))));
  }
  return out;
}

/** The behaviour both the in-memory queues and SQS (sender plus event-source poller) must share. */
export function describeQueueTransportContract(name: string, makeTransport: () => Promise<QueueTransportFixture>): void {
  describe(`Queue transport contract: ${name}`, () => {
    let fixture: QueueTransportFixture;

    beforeEach(async () => {
      fixture = await makeTransport();
    });

    afterEach(async () => {
      await fixture.cleanup();
    });

    it('keeps each receiving subtask’s order across many sends from several senders', async () => {
      // Given three sending subtasks, each numbering its channel to each of two receivers from 1
      const sent: Envelope[] = [];
      const seqs = new Map<string, number>();
      for (let call = 0; call < 8; call++) {
        const batch: Envelope[] = [];
        for (let i = 0; i < 9; i++) {
          const from = { op: 'src', subtask: (call + i) % 3 };
          const to = { op: 'map', subtask: (call * 7 + i) % 2 };
          const key = `${channelKey(from)}->${channelKey(to)}`;
          const seq = (seqs.get(key) ?? 0) + 1;
          seqs.set(key, seq);
          batch.push(envelope({ from, to, seq, records: wordRecords(3, call * 100 + i) }));
        }
        // When they are sent in several calls, one after the other
        await fixture.sender.send(batch);
        sent.push(...batch);
      }

      // Then each receiver gets exactly its envelopes, in the order they were sent
      for (const subtask of [0, 1]) {
        const expected = sent.filter((e) => e.to.subtask === subtask);
        const got = await receiveN(fixture, { op: 'map', subtask }, expected.length);
        expect(got).toStrictEqual(expected);
      }
      expect(await fixture.receive({ op: 'map', subtask: 0 }, 10, 300)).toEqual([]);
    });

    it('does not hold back one subtask’s envelopes behind another’s backlog', async () => {
      const backlog = Array.from({ length: 25 }, (_, i) => envelope({ to: { op: 'map', subtask: 0 }, seq: i + 1 }));
      const other = envelope({ from: { op: 'src', subtask: 1 }, to: { op: 'map', subtask: 1 }, seq: 1, records: [{ v: 'other' }] });
      await fixture.sender.send([...backlog, other]);

      expect(await receiveN(fixture, { op: 'map', subtask: 1 }, 1)).toStrictEqual([other]);
      expect(await receiveN(fixture, { op: 'map', subtask: 0 }, backlog.length)).toStrictEqual(backlog);
    });

    it('keeps the queues of different vertices apart', async () => {
      const toMap = envelope({ to: { op: 'map', subtask: 0 }, records: [{ v: 'to map' }] });
      const toSink = envelope({ from: { op: 'map', subtask: 0 }, to: { op: 'sink', subtask: 0 }, records: [{ v: 'to sink' }] });
      await fixture.sender.send([toSink, toMap]);

      expect(await receiveN(fixture, { op: 'sink', subtask: 0 }, 1)).toStrictEqual([toSink]);
      expect(await receiveN(fixture, { op: 'map', subtask: 0 }, 1)).toStrictEqual([toMap]);
    });

    it('round-trips every kind of envelope and record exactly', async () => {
      const to = { op: 'map', subtask: 1 };
      const records: StreamRecord[] = [
        { v: { word: 'hello', n: 1, nested: { list: [1, -2.5, null, true, 'x'] } }, t: 1_700_000_000_123, k: '"hello"', g: 0 },
        { v: 'unicode: ünï €, 🦀, \u0000 nul, \u2028 separator, \uFFFE\uFFFF non-characters', k: 'k\u0000with nul', g: 127 },
        { v: null },
        { v: 0, t: -5 },
        { v: [], g: 3 },
        { v: false, k: '' },
      ];
      const all: Envelope[] = [
        envelope({ to, seq: 1, epoch: 3, records }),
        envelope({ to, seq: 2, kind: EnvelopeKind.Watermark, records: undefined, watermark: 1_700_000_000_000 }),
        envelope({ to, seq: 3, kind: EnvelopeKind.Watermark, records: undefined, watermark: MIN_WATERMARK }),
        envelope({
          to,
          seq: 4,
          epoch: 3,
          kind: EnvelopeKind.Barrier,
          records: undefined,
          barrier: { checkpointId: 4, kind: 'checkpoint', timestamp: 1_700_000_000_999, location: 's3://bucket/job/chk-4', sharedLocation: 's3://bucket/job/shared' },
        }),
        envelope({
          to,
          seq: 5,
          epoch: 4,
          kind: EnvelopeKind.Barrier,
          records: undefined,
          barrier: { checkpointId: 5, kind: 'savepoint', timestamp: 1_700_000_001_000, stop: true, location: 's3://bucket/savepoints/sp-1' },
        }),
        envelope({ to, seq: 6, kind: EnvelopeKind.Watermark, records: undefined, watermark: MAX_WATERMARK }),
        envelope({
          to,
          seq: 7,
          epoch: 5,
          kind: EnvelopeKind.End,
          records: undefined,
          barrier: { checkpointId: 6, kind: 'checkpoint', timestamp: 1_700_000_002_000, stop: false, location: '/tmp/chk-6', sharedLocation: '/tmp/shared' },
        }),
      ].map(withoutUndefined);
      await fixture.sender.send(all);

      expect(await receiveN(fixture, to, all.length)).toStrictEqual(all);
    });

    it('carries many records packed into each envelope', async () => {
      const packed = [0, 1, 2, 3].map((i) => envelope({ to: { op: 'map', subtask: i % 2 }, seq: Math.floor(i / 2) + 1, records: wordRecords(512, i * 512) }));
      await fixture.sender.send(packed);

      const got = [...(await receiveN(fixture, { op: 'map', subtask: 0 }, 2)), ...(await receiveN(fixture, { op: 'map', subtask: 1 }, 2))];
      expect(got).toStrictEqual([packed[0], packed[2], packed[1], packed[3]]);
      expect(got.flatMap((e) => e.records ?? [])).toHaveLength(2048);
    });

    it('accepts an empty send', async () => {
      await fixture.sender.send([]);
      expect(await fixture.receive({ op: 'map', subtask: 0 }, 10, 200)).toEqual([]);
    });
  });
}

/** The envelope without keys whose value is undefined, as it looks after any serialization. */
function withoutUndefined(e: Envelope): Envelope {
  return Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)) as unknown as Envelope;
}
