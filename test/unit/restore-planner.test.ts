import { describe, expect, it } from 'vitest';
import { planRestore, type RestoreTarget } from '../../lib/core/restore-planner.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import { MANIFEST_FORMAT_VERSION, type Manifest, type OperatorSnapshot, type StateHandle, type SubtaskSnapshot } from '../../lib/core/manifest/model.js';
import { keyGroupRange } from '../../lib/graph/key-groups.js';

// ---------------------------------------------------------------------------------------------
// Fixtures: a manifest built from a compact description, and a target job with one vertex per operator.
// ---------------------------------------------------------------------------------------------

const SOURCE = 'chk-7';

/** A keyed-state handle for old subtask `subtask` of `uid`, covering its key groups. */
function handle(uid: string, subtask: number, keyGroups: [number, number]): StateHandle {
  return { path: `../shared/${uid}-${subtask}.jsonl`, kind: 'full', size: 10, entries: 1, keyGroups };
}

interface OperatorShape {
  readonly uid: string;
  readonly parallelism: number;
  /** Whether each subtask has keyed state. @default true */
  readonly keyed?: boolean;
  /** Operator-state items per subtask. @default none */
  readonly items?: readonly (readonly unknown[])[];
  readonly pendingCommits?: readonly (readonly string[])[];
}

/** An operator snapshot whose subtasks own Flink's key-group ranges for `parallelism` over `maxParallelism`. */
function anOperator(shape: OperatorShape, maxParallelism: number): OperatorSnapshot {
  const subtasks: SubtaskSnapshot[] = Array.from({ length: shape.parallelism }, (_, i) => {
    const keyGroups = keyGroupRange(i, shape.parallelism, maxParallelism);
    return {
      subtask: i,
      keyGroups,
      keyedState: shape.keyed === false ? [] : [handle(shape.uid, i, keyGroups)],
      operatorState: [...(shape.items?.[i] ?? [])],
      pendingCommits: (shape.pendingCommits?.[i] ?? []).map((id) => ({ sink: 'collect', id })),
      stats: { ackTimestamp: 0, alignmentMs: 0, syncMs: 0, asyncMs: 0, startDelayMs: 0, stateSize: 0, fullSize: 0 },
    };
  });
  return { uid: shape.uid, name: shape.uid, parallelism: shape.parallelism, stateful: true, subtasks };
}

function aManifest(operators: readonly OperatorShape[], maxParallelism = 8): Manifest {
  return {
    formatVersion: MANIFEST_FORMAT_VERSION,
    job: 'orders',
    jobId: 'job-1',
    graphFingerprint: 'abcd1234',
    checkpointId: 7,
    kind: 'checkpoint',
    format: 'native',
    generation: 1,
    triggeredAt: 0,
    completedAt: 1,
    maxParallelism,
    endOfInput: false,
    operators: operators.map((o) => anOperator(o, maxParallelism)),
  };
}

/** A target job: one vertex per `uid → parallelism`, every operator stateful. */
function aTarget(vertices: Record<string, number>, maxParallelism = 8): RestoreTarget {
  return {
    maxParallelism,
    vertices: Object.entries(vertices).map(([id, parallelism]) => ({ id, parallelism, operators: [{ uid: id, stateful: true }] })),
  };
}

const plan = (manifest: Manifest, target: RestoreTarget, allowNonRestoredState = false) => planRestore(manifest, target, { allowNonRestoredState, source: SOURCE });

function assignment(result: ReturnType<typeof plan>, vertex: string, subtask: number, uid = vertex) {
  return result.subtasks.get(`${vertex}:${subtask}`)?.[uid];
}

/** Which old subtasks' chains a new subtask got, by the file name of their handles. */
const oldSubtasksOf = (chains: readonly (readonly StateHandle[])[]) => chains.map((c) => Number(/-(\d+)\.jsonl$/.exec(c[0]!.path)![1]));

function expectRestoreError(fn: () => unknown): FloeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FloeError);
    expect((e as FloeError).code).toBe(ErrorCode.IncompatibleRestore);
    return e as FloeError;
  }
  throw new Error('expected planRestore to throw');
}

describe('planRestore: same parallelism', () => {
  it('gives each subtask its own keyed chain and its own operator-state items', () => {
    const manifest = aManifest([{ uid: 'op', parallelism: 2, items: [['a'], ['b', 'c']] }]);

    const result = plan(manifest, aTarget({ op: 2 }));

    expect(oldSubtasksOf(assignment(result, 'op', 0)!.keyedState)).toEqual([0]);
    expect(oldSubtasksOf(assignment(result, 'op', 1)!.keyedState)).toEqual([1]);
    expect(assignment(result, 'op', 0)!.operatorState).toEqual(['a']);
    expect(assignment(result, 'op', 1)!.operatorState).toEqual(['b', 'c']);
    expect(result.notes).toEqual([]);
  });

  it('keeps operator state per subtask even when the manifest lists subtasks out of order', () => {
    const manifest = aManifest([{ uid: 'op', parallelism: 2, items: [['a'], ['b']] }]);
    const shuffled: Manifest = { ...manifest, operators: [{ ...manifest.operators[0]!, subtasks: [...manifest.operators[0]!.subtasks].reverse() }] };

    const result = plan(shuffled, aTarget({ op: 2 }));

    expect([assignment(result, 'op', 0)!.operatorState, assignment(result, 'op', 1)!.operatorState]).toEqual([['a'], ['b']]);
  });
});

describe('planRestore: rescaling', () => {
  it.each<[string, number, number, number, number[][]]>([
    // old ranges [0,4) [4,8); new [0,2) [2,4) [4,6) [6,8)
    ['up 2 → 4', 2, 4, 8, [[0], [0], [1], [1]]],
    // old [0,2) [2,4) [4,6) [6,8); new [0,3) [3,6) [6,8)
    ['down 4 → 3', 4, 3, 8, [[0, 1], [1, 2], [3]]],
    ['down 4 → 1', 4, 1, 8, [[0, 1, 2, 3]]],
    // old [0,43) [43,86) [86,128); new [0,64) [64,128)
    ['down 3 → 2 over 128 key groups', 3, 2, 128, [[0, 1], [1, 2]]],
  ])('assigns keyed state by key-group overlap when scaling %s', (_case, from, to, maxParallelism, expected) => {
    const manifest = aManifest([{ uid: 'op', parallelism: from }], maxParallelism);

    const result = plan(manifest, aTarget({ op: to }, maxParallelism));

    expect(Array.from({ length: to }, (_, i) => oldSubtasksOf(assignment(result, 'op', i)!.keyedState))).toEqual(expected);
    expect(result.notes).toEqual([`operator 'op' rescaled from parallelism ${from} to ${to}`]);
  });

  it.each([
    [1, 2],
    [2, 1],
    [2, 4],
    [4, 2],
    [3, 5],
    [5, 3],
    [7, 8],
  ])('covers every key group of every new subtask and nothing outside it (%i → %i, 8 key groups)', (from, to) => {
    const manifest = aManifest([{ uid: 'op', parallelism: from }]);

    const result = plan(manifest, aTarget({ op: to }));

    for (let i = 0; i < to; i++) {
      const [lo, hi] = keyGroupRange(i, to, 8);
      const ranges = assignment(result, 'op', i)!.keyedState.map((c) => c[0]!.keyGroups);
      for (let g = lo; g < hi; g++) expect(ranges.some(([a, b]) => a <= g && g < b)).toBe(true);
      for (const [a, b] of ranges) expect(a < hi && b > lo).toBe(true);
    }
  });

  it.each([
    [2, 4],
    [4, 2],
    [3, 2],
    [2, 3],
    [1, 5],
  ])('deals operator-state items out round-robin when scaling %i → %i, losing and duplicating none', (from, to) => {
    const items = Array.from({ length: from }, (_, i) => Array.from({ length: i + 1 }, (_, j) => `s${i}-${j}`));
    const manifest = aManifest([{ uid: 'src', parallelism: from, keyed: false, items }]);

    const result = plan(manifest, aTarget({ src: to }));

    const dealt = Array.from({ length: to }, (_, i) => assignment(result, 'src', i)!.operatorState as string[]);
    expect(dealt.flat().sort()).toEqual(items.flat().sort());
    const sizes = dealt.map((d) => d.length);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    // Round-robin in old-subtask order: item j of the flattened list goes to subtask j mod to.
    expect(dealt[0]![0]).toBe(items.flat()[0]);
  });
});

describe('planRestore: matching by uid', () => {
  it('fails naming the uid of state the job no longer has', () => {
    const manifest = aManifest([{ uid: 'op', parallelism: 1 }, { uid: 'gone', parallelism: 1 }]);

    const error = expectRestoreError(() => plan(manifest, aTarget({ op: 1 })));

    expect(error.message).toContain(`cannot restore job 'orders' from ${SOURCE}`);
    expect(error.message).toContain("'gone'");
    expect(error.message).toContain('--allow-non-restored-state');
    expect(error.message).not.toContain("'op'");
  });

  it('drops that state with a note when allowNonRestoredState is set', () => {
    const manifest = aManifest([{ uid: 'op', parallelism: 1 }, { uid: 'gone', parallelism: 1 }]);

    const result = plan(manifest, aTarget({ op: 1 }), true);

    expect(result.notes).toEqual([expect.stringContaining("'gone' is not restored")]);
    expect([...result.subtasks.values()].flatMap((s) => Object.keys(s))).toEqual(['op']);
  });

  it('does not complain about a removed operator that had no state', () => {
    const manifest = aManifest([{ uid: 'op', parallelism: 1 }, { uid: 'stateless', parallelism: 1, keyed: false }]);

    expect(() => plan(manifest, aTarget({ op: 1 }))).not.toThrow();
  });

  it('starts a new stateful operator empty, with a note', () => {
    const manifest = aManifest([{ uid: 'op', parallelism: 2 }]);

    const result = plan(manifest, aTarget({ op: 2, fresh: 2 }));

    expect(result.notes).toEqual([`operator 'fresh' is not in ${SOURCE} and starts with empty state`]);
    expect(assignment(result, 'fresh', 0)).toBeUndefined();
    expect(result.subtasks.has('fresh:1')).toBe(true);
  });

  it('collects every pending sink commit with the uid that made it', () => {
    const manifest = aManifest([{ uid: 'sink', parallelism: 2, keyed: false, pendingCommits: [['t1'], ['t2', 't3']] }]);

    const result = plan(manifest, aTarget({ sink: 2 }));

    expect(result.pendingCommits.map((p) => [p.uid, p.commit['id']])).toEqual([
      ['sink', 't1'],
      ['sink', 't2'],
      ['sink', 't3'],
    ]);
  });
});

describe('planRestore: max parallelism', () => {
  it('fails when maxParallelism changed and an operator has keyed state', () => {
    const manifest = aManifest([{ uid: 'op', parallelism: 2 }], 8);

    const error = expectRestoreError(() => plan(manifest, aTarget({ op: 2 }, 16)));

    expect(error.message).toContain('maxParallelism changed from 8 to 16');
    expect(error.message).toContain("'op'");
  });

  it('allows a maxParallelism change when no operator has keyed state', () => {
    const manifest = aManifest([{ uid: 'src', parallelism: 2, keyed: false, items: [['a'], ['b']] }], 8);

    const result = plan(manifest, aTarget({ src: 2 }, 16));

    expect(assignment(result, 'src', 1)!.operatorState).toEqual(['b']);
  });

  it("fails when a keyed vertex's parallelism is above the snapshot's maxParallelism", () => {
    const manifest = aManifest([{ uid: 'op', parallelism: 2 }], 4);

    const error = expectRestoreError(() => plan(manifest, aTarget({ op: 6 }, 4)));

    expect(error.message).toContain("vertex 'op' has parallelism 6, above the snapshot's maxParallelism 4");
  });

  it('reports every problem at once', () => {
    const manifest = aManifest([{ uid: 'op', parallelism: 2 }, { uid: 'gone', parallelism: 1 }], 8);

    const error = expectRestoreError(() => plan(manifest, aTarget({ op: 2 }, 16)));

    expect(error.message.split('\n').filter((l) => l.startsWith('  - '))).toHaveLength(2);
  });
});
