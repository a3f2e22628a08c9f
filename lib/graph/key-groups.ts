/** 32-bit MurmurHash3 of a string's UTF-16 code units; stable across runs and substrates. */
export function murmur3(text: string, seed = 0): number {
  let h = seed >>> 0;
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let i = 0;
  for (; i + 1 < text.length; i += 2) {
    let k = (text.charCodeAt(i) & 0xffff) | (text.charCodeAt(i + 1) << 16);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < text.length) {
    let k = text.charCodeAt(i) & 0xffff;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= text.length * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Serializes a record key; keys travel and are stored in this form. */
export function serializeKey(key: unknown): string {
  return JSON.stringify(key) ?? 'null';
}

/** The key group of a serialized key: `hash(key) mod maxParallelism`. */
export function keyGroupOf(serializedKey: string, maxParallelism: number): number {
  return murmur3(serializedKey) % maxParallelism;
}

/** The subtask that owns a key group (Flink's computeOperatorIndexForKeyGroup). */
export function subtaskForKeyGroup(keyGroup: number, parallelism: number, maxParallelism: number): number {
  return Math.floor((keyGroup * parallelism) / maxParallelism);
}

/** Key groups `[start, end)` owned by a subtask (Flink's computeKeyGroupRangeForOperatorIndex). */
export function keyGroupRange(subtask: number, parallelism: number, maxParallelism: number): [number, number] {
  const start = Math.floor((subtask * maxParallelism + parallelism - 1) / parallelism);
  const end = Math.floor(((subtask + 1) * maxParallelism - 1) / parallelism) + 1;
  return [start, end];
}
