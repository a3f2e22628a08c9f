/** What reading one completed checkpoint gave: its snapshot, or why it cannot be restored. */
export type CheckpointCandidate<T> =
  | { readonly id: number; readonly location: string; readonly loaded: T }
  | { readonly id: number; readonly location: string; readonly problem: string };

/** A completed checkpoint passed over because it cannot be restored. */
export interface SkippedCheckpoint {
  readonly id: number;
  /** Its `_metadata` location. */
  readonly location: string;
  /** What is wrong with it, on one line. */
  readonly reason: string;
}

/** Which checkpoint `latest` restores: none exists, one was chosen (passing over newer corrupt ones), or every one is corrupt. */
export type CheckpointChoice<T> =
  | { readonly kind: 'none' }
  | { readonly kind: 'chosen'; readonly id: number; readonly loaded: T; readonly skipped: readonly SkippedCheckpoint[] }
  | { readonly kind: 'all-corrupt'; readonly skipped: readonly SkippedCheckpoint[] };

/**
 * Picks the newest intact checkpoint among `candidates` (any order), listing the newer ones it passes over, newest
 * first. Never "none" when candidates exist: checkpoints that are all corrupt are not the same as no checkpoints,
 * and starting with empty state in their place would silently reprocess everything.
 */
export function chooseLatestIntact<T>(candidates: readonly CheckpointCandidate<T>[]): CheckpointChoice<T> {
  if (candidates.length === 0) return { kind: 'none' };
  const newestFirst = [...candidates].sort((a, b) => b.id - a.id);
  const skipped: SkippedCheckpoint[] = [];
  for (const c of newestFirst) {
    if ('loaded' in c) return { kind: 'chosen', id: c.id, loaded: c.loaded, skipped };
    skipped.push({ id: c.id, location: c.location, reason: oneLine(c.problem) });
  }
  return { kind: 'all-corrupt', skipped };
}

/** Folds a multi-line problem (`x is corrupt:\n  - a\n  - b`) onto one line (`x is corrupt: a; b`). */
function oneLine(text: string): string {
  return text
    .split('\n')
    .map((l) => l.trim().replace(/^- /, ''))
    .filter((l) => l !== '')
    .reduce((acc, l) => (acc === '' ? l : acc.endsWith(':') ? `${acc} ${l}` : `${acc}; ${l}`), '');
}
