import { ErrorCode, FloeError } from './errors.js';
import type { Manifest, OperatorSnapshot, PendingCommit, StateHandle } from './manifest/model.js';

/** The shape of the new job that a restore maps state onto. */
export interface RestoreTarget {
  readonly maxParallelism: number;
  readonly vertices: ReadonlyArray<{
    readonly id: string;
    readonly parallelism: number;
    readonly operators: ReadonlyArray<{ readonly uid: string; readonly stateful: boolean }>;
  }>;
}

/** One operator's state for one new subtask. */
export interface OperatorAssignment {
  readonly keyedState: StateHandle[][];
  readonly operatorState: unknown[];
}

/** Where each piece of a snapshot goes in the new job. */
export interface RestorePlan {
  /** `<vertex>:<subtask>` → operator uid → state. */
  readonly subtasks: ReadonlyMap<string, Record<string, OperatorAssignment>>;
  /** Sink transactions pre-committed in the snapshot, with the uid that made them: commit them (again) before running. */
  readonly pendingCommits: ReadonlyArray<{ readonly uid: string; readonly commit: PendingCommit }>;
  /** What the restore did beyond a one-to-one mapping, for the log. */
  readonly notes: readonly string[];
}

function hasState(op: OperatorSnapshot): boolean {
  return op.subtasks.some((s) => s.keyedState.length > 0 || s.operatorState.length > 0);
}

function keyGroupRangeOf(subtask: number, parallelism: number, maxParallelism: number): [number, number] {
  return [Math.floor((subtask * maxParallelism + parallelism - 1) / parallelism), Math.floor(((subtask + 1) * maxParallelism - 1) / parallelism) + 1];
}

/**
 * Maps a snapshot onto a job by Flink's rules: state is matched by operator `uid`; keyed state is re-split by key
 * group when parallelism changed; operator state is kept per subtask when parallelism is unchanged and dealt out
 * round-robin otherwise; a new operator starts empty; state whose uid is gone fails the restore unless
 * `allowNonRestoredState`. Throws a FloeError naming every uid involved.
 */
export function planRestore(manifest: Manifest, target: RestoreTarget, options: { allowNonRestoredState: boolean; source: string }): RestorePlan {
  const problems: string[] = [];
  const notes: string[] = [];
  const byUid = new Map(manifest.operators.map((o) => [o.uid, o]));
  const newUids = new Set(target.vertices.flatMap((v) => v.operators.map((o) => o.uid)));

  const orphaned = manifest.operators.filter((o) => !newUids.has(o.uid) && hasState(o)).map((o) => o.uid);
  if (orphaned.length > 0) {
    if (options.allowNonRestoredState) notes.push(`state of operator(s) ${orphaned.map((u) => `'${u}'`).join(', ')} is not restored: the job no longer has them (--allow-non-restored-state)`);
    else
      problems.push(
        `${options.source} has state for operator(s) ${orphaned.map((u) => `'${u}'`).join(', ')} that the job no longer has; ` +
          `restore them under the same uid, or pass --allow-non-restored-state to drop that state`,
      );
  }
  const keyedUids = manifest.operators.filter((o) => newUids.has(o.uid) && o.subtasks.some((s) => s.keyedState.length > 0)).map((o) => o.uid);
  if (manifest.maxParallelism !== target.maxParallelism && keyedUids.length > 0) {
    problems.push(
      `maxParallelism changed from ${manifest.maxParallelism} to ${target.maxParallelism}, but operator(s) ${keyedUids.map((u) => `'${u}'`).join(', ')} ` +
        `have keyed state filed by key group; keep maxParallelism at ${manifest.maxParallelism}`,
    );
  }
  for (const v of target.vertices) {
    if (v.parallelism > manifest.maxParallelism && v.operators.some((o) => keyedUids.includes(o.uid))) {
      problems.push(`vertex '${v.id}' has parallelism ${v.parallelism}, above the snapshot's maxParallelism ${manifest.maxParallelism}`);
    }
  }
  if (problems.length > 0) {
    throw new FloeError(ErrorCode.IncompatibleRestore, `cannot restore job '${manifest.job}' from ${options.source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }

  const subtasks = new Map<string, Record<string, OperatorAssignment>>();
  for (const v of target.vertices) {
    for (let i = 0; i < v.parallelism; i++) subtasks.set(`${v.id}:${i}`, {});
    for (const op of v.operators) {
      const old = byUid.get(op.uid);
      if (!old) {
        if (op.stateful) notes.push(`operator '${op.uid}' is not in ${options.source} and starts with empty state`);
        continue;
      }
      if (old.parallelism !== v.parallelism && hasState(old)) notes.push(`operator '${op.uid}' rescaled from parallelism ${old.parallelism} to ${v.parallelism}`);
      const oldSubtasks = [...old.subtasks].sort((a, b) => a.subtask - b.subtask);
      const allItems = oldSubtasks.flatMap((s) => s.operatorState);
      for (let i = 0; i < v.parallelism; i++) {
        const [lo, hi] = keyGroupRangeOf(i, v.parallelism, target.maxParallelism);
        const keyedState = oldSubtasks.filter((s) => s.keyedState.length > 0 && s.keyGroups[0] < hi && s.keyGroups[1] > lo).map((s) => [...s.keyedState]);
        const operatorState =
          old.parallelism === v.parallelism ? [...(oldSubtasks.find((s) => s.subtask === i)?.operatorState ?? [])] : allItems.filter((_, j) => j % v.parallelism === i);
        subtasks.get(`${v.id}:${i}`)![op.uid] = { keyedState, operatorState };
      }
    }
  }
  const pendingCommits = manifest.operators.flatMap((o) => o.subtasks.flatMap((s) => s.pendingCommits.map((commit) => ({ uid: o.uid, commit }))));
  return { subtasks, pendingCommits, notes };
}
