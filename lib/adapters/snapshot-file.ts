import type { RestoreInput } from '../ports/index.js';
import { resolveRelative } from '../core/manifest/layout.js';

/**
 * The keyed-state snapshot file format every state store writes and reads, so manifests move between substrates:
 * JSON lines, `[keyGroup, entryKey, value]` for an entry and `[keyGroup, entryKey]` for a deletion (a delta's tombstone).
 */
export function encodeSnapshotLine(keyGroup: number, key: string, value: unknown): string {
  return value === undefined ? JSON.stringify([keyGroup, key]) : JSON.stringify([keyGroup, key, value]);
}

/**
 * Reads the keyed state a restore asks for: every handle chain of every operator, applied in order, keeping only
 * entries in the subtask's key groups. Returns entry key → key group and value.
 */
export async function readRestoredEntries(input: RestoreInput): Promise<Map<string, { g: number; v: unknown }>> {
  const [lo, hi] = input.keyGroups;
  const decoder = new TextDecoder();
  const entries = new Map<string, { g: number; v: unknown }>();
  for (const op of Object.values(input.operators)) {
    for (const chain of op.keyedState) {
      for (const handle of chain) {
        if (handle.keyGroups[1] <= lo || handle.keyGroups[0] >= hi) continue;
        const text = decoder.decode(await input.storage.get(resolveRelative(input.manifestDir, handle.path)));
        for (const line of text.split('\n')) {
          if (line === '') continue;
          const [g, key, value] = JSON.parse(line) as [number, string, unknown?];
          if (g < lo || g >= hi) continue;
          if (value === undefined) entries.delete(key);
          else entries.set(key, { g, v: value });
        }
      }
    }
  }
  return entries;
}
