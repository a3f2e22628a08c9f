import { describe, expect, it } from 'vitest';
import { chooseLatestIntact, type CheckpointCandidate } from '../../lib/core/restore-choice.js';

/** An intact candidate whose snapshot is named after its id; a corrupt one when `problem` is given. */
const at = (id: number, problem?: string): CheckpointCandidate<string> =>
  problem === undefined ? { id, location: `chk-${id}/_metadata`, loaded: `snapshot ${id}` } : { id, location: `chk-${id}/_metadata`, problem };

describe('chooseLatestIntact', () => {
  it('is none only when there are no candidates at all', () => {
    expect(chooseLatestIntact([])).toEqual({ kind: 'none' });
  });

  it.each([
    { name: 'the newest when it is intact', candidates: [at(3), at(5), at(4)], id: 5, skipped: [] },
    { name: 'the newest intact one, passing over newer corrupt ones newest first', candidates: [at(5, 'bad json'), at(3), at(4, 'formatVersion 9')], id: 3, skipped: [5, 4] },
    { name: 'an older intact one, not a corrupt one older still', candidates: [at(7, 'gone'), at(6), at(2, 'bad')], id: 6, skipped: [7] },
  ])('chooses $name', ({ candidates, id, skipped }) => {
    const choice = chooseLatestIntact(candidates);
    expect(choice.kind).toBe('chosen');
    if (choice.kind !== 'chosen') return;
    expect(choice.id).toBe(id);
    expect(choice.loaded).toBe(`snapshot ${id}`);
    expect(choice.skipped.map((s) => s.id)).toEqual(skipped);
  });

  it('refuses when every candidate is corrupt, listing each newest first, on one line each', () => {
    const choice = chooseLatestIntact([at(1, 'chk-1/_metadata is corrupt:\n  - job: expected string\n  - checkpointId: too small'), at(2, 'not valid JSON')]);
    expect(choice).toEqual({
      kind: 'all-corrupt',
      skipped: [
        { id: 2, location: 'chk-2/_metadata', reason: 'not valid JSON' },
        { id: 1, location: 'chk-1/_metadata', reason: 'chk-1/_metadata is corrupt: job: expected string; checkpointId: too small' },
      ],
    });
  });
});
