/**
 * Restoring a snapshot into a new generation, in one place for every host (the embedded runner, emulator mode and
 * `floe start`): map the manifest onto the plan that will run (lib/core/restore-planner.ts), write each new subtask's
 * share of the state into the state store, and commit the transactions the snapshot's sinks had pre-committed.
 * `floe start` validates first and writes later (a fence and a wait lie between), so the steps are also exported
 * one by one.
 */
import type { PendingCommit } from '../core/manifest/model.js';
import { planRestore, type RestorePlan, type RestoreTarget } from '../core/restore-planner.js';
import { keyGroupRange } from '../graph/key-groups.js';
import type { CheckpointStorage, StateStore } from '../ports/index.js';
import type { LoadedManifest } from '../runtime/snapshot-catalog.js';

/** What a restore needs besides the snapshot. */
export interface RestoreOptions {
  /** The plan the restored generation runs: vertices (parallelism, operators) and max parallelism. */
  readonly target: RestoreTarget;
  /** Drop state of operators the target no longer has. @default false */
  readonly allowNonRestoredState?: boolean;
}

/** Maps a snapshot onto the target plan; throws INCOMPATIBLE_RESTORE listing every problem, before anything is written. */
export function planSnapshotRestore(snapshot: LoadedManifest, options: RestoreOptions): RestorePlan {
  return planRestore(snapshot.manifest, options.target, { allowNonRestoredState: options.allowNonRestoredState ?? false, source: `${snapshot.manifest.kind} ${snapshot.dir}` });
}

/** Writes each new subtask's share of the snapshot's state (its key groups, its operator state) into `state`. */
export async function writeRestoredState(snapshot: LoadedManifest, plan: RestorePlan, target: RestoreTarget, state: StateStore, storage: CheckpointStorage): Promise<void> {
  const vertices = new Map(target.vertices.map((v) => [v.id, v]));
  for (const [key, operators] of plan.subtasks) {
    const at = key.lastIndexOf(':');
    const vertex = key.slice(0, at);
    const subtask = Number(key.slice(at + 1));
    const keyGroups = keyGroupRange(subtask, vertices.get(vertex)!.parallelism, target.maxParallelism);
    await state.forSubtask({ vertex, subtask }).restore({ storage, manifestDir: snapshot.dir, keyGroups, operators });
  }
}

/** What {@link restoreSnapshot} did. */
export interface RestoredSnapshot {
  readonly plan: RestorePlan;
  /** Uids of the operators the snapshot holds state of (a restored source is told so). */
  readonly restoredUids: ReadonlySet<string>;
}

/**
 * Restores a snapshot for a new generation: plans it onto the target, commits the transactions its sinks had
 * pre-committed (`commit`; commits are idempotent, so one the snapshot's run had committed already is harmless), and
 * writes the state. The caller clears the state store first where an older generation may have left state.
 */
export async function restoreSnapshot(
  snapshot: LoadedManifest,
  options: RestoreOptions & {
    readonly state: StateStore;
    readonly storage: CheckpointStorage;
    readonly commit: (commits: ReadonlyArray<{ uid: string; commit: PendingCommit }>) => Promise<void>;
    readonly log?: (line: string) => void;
  },
): Promise<RestoredSnapshot> {
  const plan = planSnapshotRestore(snapshot, options);
  for (const note of plan.notes) options.log?.(note);
  await options.commit(plan.pendingCommits);
  await writeRestoredState(snapshot, plan, options.target, options.state, options.storage);
  return { plan, restoredUids: new Set(snapshot.manifest.operators.map((op) => op.uid)) };
}
