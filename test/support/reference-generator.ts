// Independent re-derivations of what Floe's generator connector is documented to produce, for oracles: element `i`
// is `generate(i, random)`, where `random` is mulberry32 seeded with MurmurHash3_x86_32 of the UTF-16LE bytes of
// `String(i)` under the generator's seed, and a bounded generator yields the indices 0 .. count-1, each once, however
// its splits are cut. Written from the reference algorithms (byte-level hashing, BigInt arithmetic), not from the
// connector's code, so a generator that drops, repeats or mis-seeds elements disagrees with these.

/** MurmurHash3_x86_32 over bytes, written from the reference algorithm. */
export function murmur3Bytes(bytes: Uint8Array, seed = 0): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const rotl = (x: number, r: number) => (x << r) | (x >>> (32 - r));
  let h = seed >>> 0;
  const blocks = bytes.length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(rotl(Math.imul(k, c1), 15), c2);
    h = (Math.imul(rotl(h ^ k, 13), 5) + 0xe6546b64) | 0;
  }
  const tail = bytes.length & 3;
  if (tail > 0) {
    let k = 0;
    if (tail === 3) k ^= bytes[blocks + 2]! << 16;
    if (tail >= 2) k ^= bytes[blocks + 1]! << 8;
    k ^= bytes[blocks]!;
    h ^= Math.imul(rotl(Math.imul(k, c1), 15), c2);
  }
  h ^= bytes.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The UTF-16LE bytes of a string. */
export const utf16le = (s: string) => new Uint8Array(Buffer.from(s, 'utf16le'));

const U32 = (1n << 32n) - 1n;

/** Tommy Ettinger's mulberry32 (the C reference, in unsigned 32-bit BigInt arithmetic): draws in [0, 1). */
export function mulberry32Reference(seed: number): () => number {
  let state = BigInt(seed >>> 0);
  return () => {
    state = (state + 0x6d2b79f5n) & U32;
    let z = state;
    z = ((z ^ (z >> 15n)) * (z | 1n)) & U32;
    z = (z ^ ((z + ((z ^ (z >> 7n)) * (z | 61n))) & U32)) & U32;
    return Number(z ^ (z >> 14n)) / 2 ** 32;
  };
}

/** What a bounded generator with these options yields, in index order: a plain loop over 0 .. count-1. */
export function generatedSequence<T>(o: { readonly generate: (index: number, random: () => number) => T; readonly count: number; readonly seed?: number }): T[] {
  if (!Number.isInteger(o.count) || o.count < 0) throw new Error(`generatedSequence needs a bounded count, got ${o.count}`);
  const out: T[] = [];
  for (let i = 0; i < o.count; i++) out.push(o.generate(i, mulberry32Reference(murmur3Bytes(utf16le(String(i)), o.seed ?? 0))));
  if (out.length !== o.count) throw new Error(`generatedSequence made ${out.length} elements, not ${o.count}`);
  return out;
}
