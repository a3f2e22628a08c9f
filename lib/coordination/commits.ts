import type { SinkConnector } from '../api/connector.js';
import type { CheckpointRecord } from '../core/coordinator/types.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import type { Manifest, PendingCommit } from '../core/manifest/model.js';
import type { PhysicalPlan } from '../graph/plan.js';
import type { SinkCommitter } from '../ports/index.js';

/** A pre-committed sink transaction and the uid of the sink operator that made it. */
export interface OwnedCommit {
  readonly uid: string;
  readonly commit: PendingCommit;
}

/** The pending commits a finished checkpoint's acks carry, in ack order. */
export function commitsOfRecord(record: Pick<CheckpointRecord, 'acks'>): OwnedCommit[] {
  const out: OwnedCommit[] = [];
  for (const ack of Object.values(record.acks)) for (const [uid, snapshot] of Object.entries(ack.operators)) for (const commit of snapshot.pendingCommits) out.push({ uid, commit });
  return out;
}

/** The pending commits a manifest lists, for a checkpoint whose history record is gone. */
export function commitsOfManifest(manifest: Manifest): OwnedCommit[] {
  return manifest.operators.flatMap((op) => op.subtasks.flatMap((s) => s.pendingCommits.map((commit) => ({ uid: op.uid, commit }))));
}

/**
 * Finds who commits a sink's pending transactions: the plan's sink of that uid when it is still the same kind of sink,
 * else a committer of that kind — the caller's registry first, then any sink of that kind in the plan.
 */
export class SinkCommitRegistry {
  private readonly byUid = new Map<string, SinkConnector<unknown>>();
  private readonly byKind = new Map<string, SinkCommitter>();

  constructor(plan: PhysicalPlan, committers: readonly SinkCommitter[] = []) {
    for (const v of plan.vertices) {
      for (const op of v.operators) {
        if (op.node.spec.kind !== 'sink') continue;
        const connector = op.node.spec.connector;
        this.byUid.set(op.uid, connector);
        if (!this.byKind.has(connector.type)) this.byKind.set(connector.type, { sink: connector.type, commit: (c) => connector.commit(c) });
      }
    }
    // The caller's committers win over the plan's connectors of the same kind.
    for (const c of committers) this.byKind.set(c.sink, c);
  }

  /** Commits each transaction in order; commits are idempotent, so committing again what was committed is harmless. */
  async commitAll(commits: readonly OwnedCommit[]): Promise<void> {
    for (const { uid, commit } of commits) {
      const own = this.byUid.get(uid);
      const committer = own?.type === commit.sink ? own : this.byKind.get(commit.sink);
      if (!committer) throw new FloeError(ErrorCode.IncompatibleRestore, `pending commit of sink '${uid}' (${commit.sink}) has no committer of that kind`);
      await committer.commit(commit);
    }
  }
}
