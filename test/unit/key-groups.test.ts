import { describe, expect, it } from 'vitest';
import { keyGroupOf, keyGroupRange, murmur3, serializeKey, subtaskForKeyGroup } from '../../lib/graph/key-groups.js';
import { murmur3Bytes, utf16le } from '../support/reference-generator.js';

const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));

describe('murmur3', () => {
  // Published MurmurHash3_x86_32 test vectors over bytes; the strings below spell those bytes as UTF-16LE code units.
  it.each<[string, string, number, number]>([
    ['no bytes', '', 0, 0x00000000],
    ['no bytes, seed 1', '', 1, 0x514e28b7],
    ['no bytes, seed 0xffffffff', '', 0xffffffff, 0x81f16f39],
    ['bytes 00 00', '\u0000', 0, 0x30f4c306],
    ['bytes 00 00 00 00', '\u0000\u0000', 0, 0x2362f9de],
    ['bytes ff ff ff ff', '\uffff\uffff', 0, 0x76293b50],
    ['bytes 21 43', '\u4321', 0, 0xa0f7b07a],
    ['bytes 21 43 65 87', '\u4321\u8765', 0, 0xf55b516b],
    ['bytes 21 43 65 87, seed 0x5082edee', '\u4321\u8765', 0x5082edee, 0x2362f9de],
  ])('is MurmurHash3_x86_32 of the UTF-16LE bytes: %s', (_case, text, seed, expected) => {
    expect(murmur3(text, seed)).toBe(expected);
  });

  it.each(['', 'a', 'ab', 'abc', 'Hello, world!', '"user-42"', 'żółw', '日本語のキー', '🦊 fox', 'x'.repeat(1001)])(
    'equals the byte-level reference over the UTF-16LE encoding of %j',
    (text) => {
      expect(murmur3(text)).toBe(murmur3Bytes(utf16le(text)));
      expect(murmur3(text, 0x9747b28c)).toBe(murmur3Bytes(utf16le(text), 0x9747b28c));
    },
  );

  it('is not the hash of the UTF-8 bytes, even for ASCII (so not interchangeable with byte-oriented implementations)', () => {
    // The byte-level reference agrees with the published vector for the UTF-8 bytes of this string…
    expect(murmur3Bytes(utf8('Hello, world!'), 0x9747b28c)).toBe(0x24884cba);
    // …while murmur3 hashes its UTF-16 code units.
    expect(murmur3('Hello, world!', 0x9747b28c)).not.toBe(0x24884cba);
  });

  it('returns an unsigned 32-bit integer, the same on every call', () => {
    for (const text of ['a', 'b', '🦊', 'key-1', 'key-2']) {
      const h = murmur3(text);
      expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
      expect(murmur3(text)).toBe(h);
    }
  });
});

describe('serializeKey', () => {
  it.each<[unknown, string]>([
    ['a', '"a"'],
    [42, '42'],
    [null, 'null'],
    [undefined, 'null'],
    [['a', 1], '["a",1]'],
    [{ user: 'u', region: 'eu' }, '{"user":"u","region":"eu"}'],
  ])('serializes %j as %s', (key, expected) => {
    expect(serializeKey(key)).toBe(expected);
  });

  it('keeps a string and a number with the same digits apart', () => {
    expect(serializeKey('1')).not.toBe(serializeKey(1));
  });
});

describe('keyGroupOf', () => {
  it('is murmur3 of the serialized key modulo maxParallelism', () => {
    for (const key of ['a', 'b', '"user-7"', '123']) expect(keyGroupOf(key, 128)).toBe(murmur3(key) % 128);
  });

  it.each([8, 128, 1000])('spreads 50,000 keys uniformly over %i key groups (chi-square within 5 standard deviations)', (maxParallelism) => {
    const counts = new Array<number>(maxParallelism).fill(0);
    const n = 50_000;
    for (let i = 0; i < n; i++) counts[keyGroupOf(serializeKey(`user-${i}`), maxParallelism)]!++;
    const expected = n / maxParallelism;
    const chiSquare = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    const df = maxParallelism - 1;
    expect(chiSquare).toBeLessThan(df + 5 * Math.sqrt(2 * df));
    expect(Math.min(...counts)).toBeGreaterThan(0);
  });

  it('puts sequential keys into different key groups (no clustering of similar keys)', () => {
    const groups = new Set(Array.from({ length: 16 }, (_, i) => keyGroupOf(serializeKey(`k${i}`), 128)));
    expect(groups.size).toBeGreaterThan(12);
  });
});

describe('key-group ranges', () => {
  const cases: [number, number][] = [];
  for (const m of [1, 2, 7, 8, 10, 128, 1000, 32768]) for (const p of [1, 2, 3, 5, 7, 8, 64, 127, 128, 1000]) if (p <= m) cases.push([p, m]);

  it.each(cases)('partition [0, M) exactly, in order and none empty, for p = %i, M = %i', (p, m) => {
    let next = 0;
    for (let i = 0; i < p; i++) {
      const [start, end] = keyGroupRange(i, p, m);
      expect(start).toBe(next);
      expect(end).toBeGreaterThan(start);
      next = end;
    }
    expect(next).toBe(m);
  });

  it.each(cases.filter(([, m]) => m <= 1000))('agree with subtaskForKeyGroup for every key group, p = %i, M = %i', (p, m) => {
    for (let i = 0; i < p; i++) {
      const [start, end] = keyGroupRange(i, p, m);
      for (let g = start; g < end; g++) expect(subtaskForKeyGroup(g, p, m)).toBe(i);
    }
  });

  it.each<[number, number, number, [number, number]]>([
    // Flink's KeyGroupRangeAssignment.computeKeyGroupRangeForOperatorIndex
    [0, 3, 8, [0, 3]],
    [1, 3, 8, [3, 6]],
    [2, 3, 8, [6, 8]],
    [0, 2, 128, [0, 64]],
    [1, 2, 128, [64, 128]],
    [2, 3, 10, [7, 10]],
  ])('gives subtask %i of %i over %i key groups the range %j', (subtask, p, m, expected) => {
    expect(keyGroupRange(subtask, p, m)).toEqual(expected);
  });
});
