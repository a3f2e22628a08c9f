import type { CheckpointStorage } from '../ports/index.js';
import type { PendingCheckpoint } from '../core/coordinator/types.js';
import { Layout, join, resolveRelative } from '../core/manifest/layout.js';
import { ManifestSerializer } from '../core/manifest/serializer.js';
import { MANIFEST_FORMAT_VERSION, type Manifest, type OperatorSnapshot } from '../core/manifest/model.js';
import type { PhysicalPlan } from '../graph/plan.js';
import { ErrorCode, FloeError } from '../core/errors.js';

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

/** The newest completed checkpoint of a job, or undefined when there is none. */
export async function findLatestCheckpoint(storage: CheckpointStorage, root: string, job: string): Promise<LoadedManifest | undefined> {
  const complete = (await listCheckpoints(storage, root, job)).filter((c) => c.complete);
  const latest = complete[complete.length - 1];
  return latest ? loadManifest(storage, latest.dir) : undefined;
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
