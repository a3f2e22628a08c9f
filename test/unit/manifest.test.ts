import { describe, expect, it } from 'vitest';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import { describeManifest, formatBytes } from '../../lib/core/manifest/inspect.js';
import { Layout, join, resolveRelative } from '../../lib/core/manifest/layout.js';
import {
  MANIFEST_FORMAT_VERSION,
  type Manifest,
  type OperatorSnapshot,
  type StateHandle,
  type SubtaskSnapshot,
} from '../../lib/core/manifest/model.js';
import { ManifestSerializer } from '../../lib/core/manifest/serializer.js';

// Fixture builders: every field has a safe default; a test overrides only what it is about.

function aHandle(overrides: Partial<StateHandle> = {}): StateHandle {
  return { path: 'state/op/0/full-1', kind: 'full', size: 100, entries: 10, keyGroups: [0, 64], ...overrides };
}

function aSubtask(overrides: Partial<SubtaskSnapshot> = {}): SubtaskSnapshot {
  return {
    subtask: 0,
    keyGroups: [0, 64],
    keyedState: [],
    operatorState: [],
    pendingCommits: [],
    stats: { ackTimestamp: 1_000, alignmentMs: 0, syncMs: 1, asyncMs: 2, startDelayMs: 0, stateSize: 0, fullSize: 0 },
    ...overrides,
  };
}

function anOperator(overrides: Partial<OperatorSnapshot> = {}): OperatorSnapshot {
  return { uid: 'op', name: 'Operator', parallelism: 1, stateful: false, subtasks: [], ...overrides };
}

function aManifest(overrides: Partial<Manifest> = {}): Manifest {
  return {
    formatVersion: MANIFEST_FORMAT_VERSION,
    job: 'wordcount',
    jobId: 'job-1',
    graphFingerprint: 'fp-1',
    checkpointId: 1,
    kind: 'checkpoint',
    format: 'native',
    generation: 0,
    triggeredAt: Date.UTC(2024, 0, 2, 3, 4, 5),
    completedAt: Date.UTC(2024, 0, 2, 3, 4, 6, 500),
    maxParallelism: 128,
    endOfInput: false,
    operators: [],
    ...overrides,
  };
}

/** A manifest with two operators: a keyed counter with an incremental chain per subtask, and a sink with pending commits. */
function aRichManifest(): Manifest {
  return aManifest({
    checkpointId: 7,
    generation: 2,
    operators: [
      anOperator({
        uid: 'count-words',
        name: 'Count words',
        parallelism: 2,
        stateful: true,
        subtasks: [
          aSubtask({
            subtask: 0,
            keyGroups: [0, 64],
            keyedState: [
              aHandle({ path: '../shared/count-words/0/full-3', size: 2048, keyGroups: [0, 64] }),
              aHandle({ path: '../shared/count-words/0/delta-4', kind: 'delta', size: 512, keyGroups: [0, 64] }),
            ],
          }),
          aSubtask({
            subtask: 1,
            keyGroups: [64, 128],
            keyedState: [aHandle({ path: '../shared/count-words/1/full-3', size: 1024 * 1024, keyGroups: [64, 128] })],
            operatorState: ['a', 'b'],
          }),
        ],
      }),
      anOperator({
        uid: 'file-sink',
        name: 'Write files',
        parallelism: 1,
        stateful: true,
        subtasks: [aSubtask({ subtask: 0, keyGroups: [0, 128], pendingCommits: [{ sink: 'files', txn: 't-7' }] })],
      }),
    ],
  });
}

async function floeErrorOf(run: () => unknown): Promise<FloeError> {
  try {
    await run();
  } catch (e) {
    expect(e).toBeInstanceOf(FloeError);
    return e as FloeError;
  }
  throw new Error('expected a FloeError, but the call succeeded');
}

const encode = (value: unknown): string => JSON.stringify(value);

describe('ManifestSerializer', () => {
  it('round-trips a manifest through bytes', () => {
    const manifest = aRichManifest();

    const bytes = ManifestSerializer.serialize(manifest);

    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(ManifestSerializer.deserialize(bytes)).toEqual(manifest);
    expect(ManifestSerializer.deserialize(new TextDecoder().decode(bytes))).toEqual(manifest);
  });

  it('keeps the extra fields of a pending commit', () => {
    const back = ManifestSerializer.deserialize(ManifestSerializer.serialize(aRichManifest()));
    expect(back.operators[1]!.subtasks[0]!.pendingCommits).toEqual([{ sink: 'files', txn: 't-7' }]);
  });

  it('refuses to serialize an invalid manifest', () => {
    expect(() => ManifestSerializer.serialize(aManifest({ checkpointId: 0 }))).toThrow();
  });

  it('refuses bytes that are not JSON, naming the source', async () => {
    const error = await floeErrorOf(() => ManifestSerializer.deserialize(new TextEncoder().encode('{"formatVersion": 1,'), 'chk-3/_metadata'));
    expect(error.code).toBe(ErrorCode.CorruptManifest);
    expect(error.message).toContain('not valid JSON');
    expect(error.message).toContain('chk-3/_metadata');
  });

  it.each([['[]'], ['null'], ['"text"'], ['42']])('refuses %s, which is not a JSON object', async (text) => {
    const error = await floeErrorOf(() => ManifestSerializer.deserialize(text));
    expect(error.code).toBe(ErrorCode.CorruptManifest);
    expect(error.message).toContain('expected a JSON object');
  });

  it('refuses a manifest without formatVersion', async () => {
    const { formatVersion: _omitted, ...rest } = aManifest();
    const error = await floeErrorOf(() => ManifestSerializer.deserialize(encode(rest)));
    expect(error.code).toBe(ErrorCode.CorruptManifest);
    expect(error.message).toContain('formatVersion');
  });

  it.each([[2], [0], ['1']])('refuses formatVersion %j, naming the version it got and the one it reads', async (version) => {
    const error = await floeErrorOf(() => ManifestSerializer.deserialize(encode({ ...aManifest(), formatVersion: version })));
    expect(error.code).toBe(ErrorCode.UnsupportedManifestVersion);
    expect(error.message).toContain(`formatVersion ${JSON.stringify(version)}`);
    expect(error.message).toContain(`reads only formatVersion ${MANIFEST_FORMAT_VERSION}`);
  });

  it('lists the path of every schema violation', async () => {
    const manifest = aRichManifest();
    const broken = {
      ...manifest,
      checkpointId: -1,
      operators: [{ ...manifest.operators[0]!, uid: '' }, manifest.operators[1]!],
    };
    const error = await floeErrorOf(() => ManifestSerializer.deserialize(encode(broken)));
    expect(error.code).toBe(ErrorCode.CorruptManifest);
    expect(error.message).toContain('operators.0.uid');
    expect(error.message).toContain('checkpointId');
  });

  it('names the nested path of a broken state handle', async () => {
    const manifest = aRichManifest();
    const raw = JSON.parse(encode(manifest)) as { operators: Array<{ subtasks: Array<{ keyedState: Array<{ kind: string }> }> }> };
    raw.operators[0]!.subtasks[1]!.keyedState[0]!.kind = 'partial';
    const error = await floeErrorOf(() => ManifestSerializer.deserialize(encode(raw)));
    expect(error.message).toContain('operators.0.subtasks.1.keyedState.0.kind');
  });
});

describe('layout', () => {
  it.each([
    [['/a', 'b'], '/a/b'],
    [['/a/', '/b/', 'c'], '/a/b/c'],
    [['a', 'b'], 'a/b'],
    [['./a', 'b'], './a/b'],
    [['../a', 'b'], '../a/b'],
    [['a', '', 'b'], 'a/b'],
    [['a', '/', 'b'], 'a/b'],
    [['/', 'a'], '/a'],
    [['/'], '/'],
    [[], ''],
    [['s3://bucket', 'p', 'chk-1'], 's3://bucket/p/chk-1'],
    [['s3://bucket/', '/p/'], 's3://bucket/p'],
  ])('join(%j) is %s', (parts, expected) => {
    expect(join(...parts)).toBe(expected);
  });

  it.each([
    ['/a/b/chk-3', '../shared/x', '/a/b/shared/x'],
    ['/a/b/chk-3', 'state/x', '/a/b/chk-3/state/x'],
    ['/a/b/chk-3', './state/./x', '/a/b/chk-3/state/x'],
    ['/a/b/chk-3/', '../shared/x', '/a/b/shared/x'],
    ['/a', '../../x', '/x'],
    ['a/b/chk-3', '../shared/x', 'a/b/shared/x'],
    ['./a/chk-3', '../shared/x', 'a/shared/x'],
    ['../ckpt/job/checkpoints/chk-3', '../shared/x', '../ckpt/job/checkpoints/shared/x'],
    ['../ckpt/chk-1', 'state/x', '../ckpt/chk-1/state/x'],
    ['chk-1', '../../x', '../x'],
    ['chk-1', '..', '.'],
    ['s3://bucket/p/chk-1', '../shared/f', 's3://bucket/p/shared/f'],
    ['s3://bucket/p/chk-1', 'state/f', 's3://bucket/p/chk-1/state/f'],
    ['s3://bucket', 'f', 's3://bucket/f'],
    ['S3://Bucket/p/chk-1', '../f', 'S3://Bucket/p/f'],
    ['/a/chk-1', '/elsewhere/f', '/elsewhere/f'],
    ['/a/chk-1', 's3://bucket/f', 's3://bucket/f'],
  ])('resolveRelative(%s, %s) is %s', (dir, relative, expected) => {
    expect(resolveRelative(dir, relative)).toBe(expected);
  });

  it('places checkpoints, the shared area and savepoints as DESIGN.md says', () => {
    expect(Layout.checkpointDir('s3://b/root', 'wc', 3)).toBe('s3://b/root/wc/checkpoints/chk-3');
    expect(Layout.sharedDir('/data/', 'wc')).toBe('/data/wc/checkpoints/shared');
    expect(Layout.savepointDir('/sp', 'abc')).toBe('/sp/savepoint-abc');
    expect(resolveRelative(Layout.checkpointDir('/data', 'wc', 3), '../shared/f')).toBe(join(Layout.sharedDir('/data', 'wc'), 'f'));
  });

  it.each([
    ['chk-12', 12],
    ['chk-0', 0],
    ['chk-', undefined],
    ['chk-1a', undefined],
    ['shared', undefined],
  ])('parseCheckpointDirName(%s) is %s', (name, expected) => {
    expect(Layout.parseCheckpointDirName(name)).toBe(expected);
  });
});

describe('describeManifest', () => {
  it('summarizes the snapshot and every operator', () => {
    const text = describeManifest(aRichManifest(), '/data/wordcount/checkpoints/chk-7/_metadata');

    expect(text).toContain('/data/wordcount/checkpoints/chk-7/_metadata');
    expect(text).toContain('wordcount');
    expect(text).toContain('job-1');
    expect(text).toMatch(/Checkpoint id:\s+7/);
    expect(text).toMatch(/Generation:\s+2/);
    expect(text).toContain('2024-01-02T03:04:05.000Z');
    expect(text).toContain('2024-01-02T03:04:06.500Z');
    expect(text).toContain('1.50s');
    expect(text).toMatch(/Max parallelism:\s+128/);
    expect(text).toMatch(/End of input:\s+no/);
    // 2048 + 512 + 1 MiB, in three files
    expect(text).toContain(`${formatBytes(2048 + 512 + 1024 * 1024)} in 3 files`);
    expect(text).toContain('count-words');
    expect(text).toContain('Count words');
    expect(text).toContain('file-sink');
    expect(text).toContain('[64, 128)');
    expect(text).toContain('2 (1/1)');
    expect(text).toContain('2.5 KiB');
    expect(text).toContain('1.0 MiB');
  });

  it('aligns the summary values and the table columns', () => {
    const lines = describeManifest(aRichManifest(), 'chk-7/_metadata').split('\n');

    const summary = lines.slice(0, lines.indexOf(''));
    const valueColumns = new Set(summary.map((l) => l.search(/:\s+\S/) + (/:\s+/.exec(l)?.[0].length ?? 0)));
    expect(valueColumns.size).toBe(1);

    const table = lines.filter((l) => l.startsWith('  '));
    const lengths = new Set(table.slice(0, 3).map((l) => l.length));
    expect(lengths.size).toBe(1);
    expect(lines.every((l) => !l.includes('\u001b'))).toBe(true);
  });

  it('counts a file referenced by several subtasks once', () => {
    const shared = aHandle({ path: '../shared/f', size: 1000 });
    const manifest = aManifest({
      operators: [anOperator({ stateful: true, parallelism: 2, subtasks: [aSubtask({ keyedState: [shared] }), aSubtask({ subtask: 1, keyedState: [shared] })] })],
    });
    expect(describeManifest(manifest, 'x')).toContain('1000 B in 1 file');
  });

  it('describes an operator without subtask state and a snapshot without state', () => {
    const text = describeManifest(aManifest({ endOfInput: true, kind: 'savepoint', format: 'canonical', operators: [anOperator({ uid: 'map' })] }), 'sp/_metadata');
    expect(text).toContain('map');
    expect(text).toContain('no subtask state');
    expect(text).toContain('0 B in 0 files');
    expect(text).toMatch(/End of input:\s+yes/);
    expect(text).toContain('savepoint');
    expect(text).toContain('canonical');
  });

  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [1024 * 1024 - 1, '1.0 MiB'],
    [150 * 1024 * 1024, '150 MiB'],
    [3 * 1024 ** 3, '3.0 GiB'],
  ])('formatBytes(%i) is %s', (bytes, expected) => {
    expect(formatBytes(bytes)).toBe(expected);
  });
});
