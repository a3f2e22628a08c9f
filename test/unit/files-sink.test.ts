import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { filesSink } from '../../lib/connectors/files-sink.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('files sink', () => {
  it('leaves exactly the bytes its state accounts for when a zombie and its successor write from the same state', async () => {
    // Given two writers of the same subtask resuming the same committed state (a zombie and its successor)
    const dir = mkdtempSync(join(tmpdir(), 'floe-files-sink-'));
    dirs.push(dir);
    const sink = filesSink<string>({ dir });
    const ctx = { uid: 'out', subtask: 0, runId: 'run' };
    const base = await sink.createWriter(ctx).resume(undefined);
    const committed = await sink.createWriter(ctx).write(['a'], base);

    // When the zombie writes its batch, the successor then writes the same position, and replays it once more
    await sink.createWriter(ctx).write(['zombie line that is long'], committed);
    const successor = sink.createWriter(ctx);
    await successor.write(['b'], committed);
    const replayed = await successor.write(['b'], committed);

    // Then the in-progress file holds the committed line and one copy of the successor's
    const [file] = readdirSync(dir);
    expect(readFileSync(join(dir, file!), 'utf8')).toBe('a\nb\n');
    const { pendingCommits } = await successor.preCommit(replayed, 3);
    await sink.commit(pendingCommits[0]!);
    await sink.commit(pendingCommits[0]!);
    expect(readdirSync(dir)).toEqual(['part-out-0-chk3-run']);
  });
});
