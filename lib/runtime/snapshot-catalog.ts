import type { CheckpointStorage } from '../ports/index.js';
import type { PendingCheckpoint } from '../core/coordinator/types.js';
import { Layout, join, resolveRelative } from '../core/manifest/layout.js';
import { ManifestSerializer } from '../core/manifest/serializer.js';
import { MANIFEST_FORMAT_VERSION, type Manifest, type OperatorSnapshot } from '../core/manifest/model.js';
import type { PhysicalPlan } from '../graph/plan.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import { chooseLatestIntact, type CheckpointCandidate, type SkippedCheckpoint } from '../core/restore-choice.js';

/** A manifest with the directory it was read from. */
export interface LoadedManifest {
  readonly manifest: Manifest;
  readonly dir: string;
}

/** Reads a snapshot given its directory or its `_metadata` file, refusing corrupt or unknown formats. */
export async function loadManifest(storage: CheckpointStorage, path: string): Promise<LoadedManifest> {
  const trimmed = path.replace(/\/+$/, '');
  const dir = trimmed.endsWith(`/${Layout.METADATA}`) || trimmed === Layout.METADATA ? trimmed.slice(0, -Layout.METADATA.length - 1) || '.' : trimmed;
  const file = join(dir, Layout.METADATA);
  let bytes: Uint8Array;
  try {
    bytes = await storage.get(file);
  } catch (e) {
    if (e instanceof FloeError && e.code === ErrorCode.NotFound) {
      throw new FloeError(ErrorCode.CheckpointNotFound, `no snapshot at '${path}': ${file} does not exist`);
    }
    throw e;
  }
  return { manifest: ManifestSerializer.deserialize(bytes, file), dir };
}

/** Ids of checkpoint directories under the job's checkpoint root, with whether each has a manifest. */
export async function listCheckpoints(storage: CheckpointStorage, root: string, job: string): Promise<{ id: number; dir: string; complete: boolean }[]> {
  const base = Layout.checkpointsDir(root, job);
  const found = new Map<number, { id: number; dir: string; complete: boolean }>();
  for (const location of await storage.list(base)) {
    const rest = location.slice(base.length + 1).split('/');
    const id = Layout.parseCheckpointDirName(rest[0] ?? '');
    if (id === undefined) continue;
    const entry = found.get(id) ?? { id, dir: join(base, rest[0]!), complete: false };
    if (rest.length === 2 && rest[1] === Layout.METADATA) entry.complete = true;
    found.set(id, entry);
  }
  return [...found.values()].sort((a, b) => a.id - b.id);
}

/** Locations of the state files a snapshot references that do not exist, found by listing the directories holding them. */
export async function missingStateFiles(storage: CheckpointStorage, { manifest, dir }: LoadedManifest): Promise<string[]> {
  const referenced = new Set<string>();
  for (const op of manifest.operators) for (const s of op.subtasks) for (const h of s.keyedState) referenced.add(resolveRelative(dir, h.path));
  if (referenced.size === 0) return [];
  // One listing per directory (`state/`, `../shared/`), not one request per file.
  const parents = new Set([...referenced].map((f) => (f.lastIndexOf('/') > 0 ? f.slice(0, f.lastIndexOf('/')) : '.')));
  const listed = new Set((await Promise.all([...parents].map((p) => storage.list(p)))).flat());
  const missing: string[] = [];
  // A file the listing spells differently is asked about on its own before it is called missing.
  for (const f of [...referenced].filter((x) => !listed.has(x))) if (!(await storage.exists(f))) missing.push(f);
  return missing.sort();
}

/**
 * Reads a snapshot as `loadManifest` does and also refuses one whose state files are not all there (CORRUPT_MANIFEST
 * naming them), so a restore fails before it starts rather than halfway through reading state.
 */
export async function loadRestorableManifest(storage: CheckpointStorage, path: string): Promise<LoadedManifest> {
  const loaded = await loadManifest(storage, path);
  const missing = await missingStateFiles(storage, loaded);
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).join(', ') + (missing.length > 5 ? ` and ${missing.length - 5} more` : '');
    throw new FloeError(
      ErrorCode.CorruptManifest,
      `${join(loaded.dir, Layout.METADATA)} references ${missing.length === 1 ? 'a state file that does' : `${missing.length} state files that do`} not exist: ${shown}`,
    );
  }
  return loaded;
}

/** Errors that make one checkpoint unrestorable, as opposed to storage failures, which say nothing about it. */
const CORRUPT_CODES: ReadonlySet<string> = new Set([ErrorCode.CorruptManifest, ErrorCode.UnsupportedManifestVersion, ErrorCode.CheckpointNotFound]);

/** Options of `findLatestCheckpoint`. */
export interface FindLatestCheckpointOptions {
  /** Called once for each newer checkpoint passed over because it cannot be restored (not when none can be). @default nothing */
  readonly onSkip?: (skipped: SkippedCheckpoint) => void;
}

/** `checkpoint 7: <reason>`, the reason naming the checkpoint's `_metadata` (for a log line or a list of problems). */
export function describeSkippedCheckpoint(s: SkippedCheckpoint): string {
  return `checkpoint ${s.id}: ${s.reason.includes(s.location) ? s.reason : `${s.location}: ${s.reason}`}`;
}

/**
 * The newest completed checkpoint of a job that can be restored, or undefined when there is none. A newer one whose
 * `_metadata` is corrupt, has an unknown formatVersion or references missing state files is passed over (reported
 * through `onSkip`); when every completed checkpoint is so, throws CORRUPT_MANIFEST listing each one's problem.
 * Storage failures are thrown as they are, never taken for corruption.
 */
export async function findLatestCheckpoint(
  storage: CheckpointStorage,
  root: string,
  job: string,
  options: FindLatestCheckpointOptions = {},
): Promise<LoadedManifest | undefined> {
  const complete = (await listCheckpoints(storage, root, job)).filter((c) => c.complete).reverse();
  const candidates: CheckpointCandidate<LoadedManifest>[] = [];
  // Newest first, reading only until one is intact.
  for (const c of complete) {
    const location = join(c.dir, Layout.METADATA);
    try {
      candidates.push({ id: c.id, location, loaded: await loadRestorableManifest(storage, c.dir) });
      break;
    } catch (e) {
      if (!(e instanceof FloeError && CORRUPT_CODES.has(e.code))) throw e;
      candidates.push({ id: c.id, location, problem: e.message });
    }
  }
  const choice = chooseLatestIntact(candidates);
  if (choice.kind === 'none') return undefined;
  if (choice.kind === 'chosen') {
    for (const s of choice.skipped) options.onSkip?.(s);
    return choice.loaded;
  }
  throw new FloeError(
    ErrorCode.CorruptManifest,
    `none of the ${choice.skipped.length} completed checkpoint(s) under ${Layout.checkpointsDir(root, job)} can be restored, so the job does not start with empty state in their place:\n${choice.skipped
      .map((s) => `  - ${describeSkippedCheckpoint(s)}`)
      .join('\n')}`,
  );
}

/** Builds the manifest of a checkpoint every task has acknowledged. */
export function buildManifest(input: {
  plan: PhysicalPlan;
  jobId: string;
  generation: number;
  checkpoint: PendingCheckpoint;
  completedAt: number;
}): Manifest {
  const { plan, checkpoint } = input;
  const operators: OperatorSnapshot[] = [];
  for (const v of plan.vertices) {
    for (const op of v.operators) {
      const subtasks = Array.from({ length: v.parallelism }, (_, i) => {
        const ack = checkpoint.acks[`${v.id}:${i}`];
        const snap = ack?.operators[op.uid];
        if (!snap) throw new FloeError(ErrorCode.Storage, `checkpoint ${checkpoint.id}: no acknowledgement for operator '${op.uid}' subtask ${i}`);
        return snap;
      });
      operators.push({ uid: op.uid, name: op.node.name, parallelism: v.parallelism, stateful: op.stateful, subtasks });
    }
  }
  return {
    formatVersion: MANIFEST_FORMAT_VERSION,
    job: plan.job,
    jobId: input.jobId,
    graphFingerprint: plan.fingerprint,
    checkpointId: checkpoint.id,
    kind: checkpoint.kind,
    format: checkpoint.kind === 'savepoint' ? 'canonical' : 'native',
    generation: input.generation,
    triggeredAt: checkpoint.triggeredAt,
    completedAt: input.completedAt,
    maxParallelism: plan.maxParallelism,
    endOfInput: checkpoint.termination === 'end' || checkpoint.termination === 'drain',
    operators,
  };
}

/**
 * Deletes completed checkpoints beyond the newest `retained`, directories of checkpoints that never completed and
 * are older than the newest completed one, and shared state files no retained checkpoint references.
 */
export async function discardOldCheckpoints(storage: CheckpointStorage, root: string, job: string, retained: number): Promise<void> {
  const all = await listCheckpoints(storage, root, job);
  const complete = all.filter((c) => c.complete);
  if (complete.length === 0) return;
  const keep = complete.slice(-retained);
  const newest = keep[keep.length - 1]!.id;
  const discard = all.filter((c) => !keep.includes(c) && c.id < newest);
  const referenced = new Set<string>();
  for (const c of keep) {
    const { manifest, dir } = await loadManifest(storage, c.dir);
    for (const op of manifest.operators) for (const s of op.subtasks) for (const h of s.keyedState) referenced.add(resolveRelative(dir, h.path));
  }
  const doomed: string[] = [];
  for (const c of discard) doomed.push(...(await storage.list(c.dir)));
  const shared = Layout.sharedDir(root, job);
  for (const file of await storage.list(shared)) {
    // Files of checkpoints newer than the newest completed one may belong to one still in flight.
    const m = /-chk(\d+)-[0-9a-f]+\.jsonl$/.exec(file);
    if (!referenced.has(file) && m && Number(m[1]) <= newest) doomed.push(file);
  }
  // Manifests first, so an interrupted cleanup never leaves a manifest pointing at deleted files.
  doomed.sort((a, b) => Number(b.endsWith(Layout.METADATA)) - Number(a.endsWith(Layout.METADATA)));
  await storage.delete(doomed);
}
