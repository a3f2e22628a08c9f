import { z } from 'zod';

/** The manifest format this build writes; the serializer refuses any other version. */
export const MANIFEST_FORMAT_VERSION = 1;

/** What triggered a snapshot: a periodic checkpoint or a user's savepoint. */
export const SnapshotKind = { Checkpoint: 'checkpoint', Savepoint: 'savepoint' } as const;
export type SnapshotKind = (typeof SnapshotKind)[keyof typeof SnapshotKind];

/** `native` may reference files shared between incremental checkpoints; `canonical` holds every byte inside its own directory. */
export const SnapshotFormat = { Native: 'native', Canonical: 'canonical' } as const;
export type SnapshotFormat = (typeof SnapshotFormat)[keyof typeof SnapshotFormat];

/** One state file: a full snapshot of a subtask's keyed state, or the delta since the previous file in its chain. */
export const StateHandleSchema = z.object({
  /** Location relative to the manifest's directory (`state/...` or `../shared/...`). */
  path: z.string().min(1),
  kind: z.enum(['full', 'delta']),
  /** Bytes in the file. */
  size: z.number().int().nonnegative(),
  /** Entries (puts and deletes) in the file. */
  entries: z.number().int().nonnegative(),
  /** Key groups the file holds, as `[start, end)`. */
  keyGroups: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});
export type StateHandle = z.infer<typeof StateHandleSchema>;

/** A sink transaction pre-committed at the barrier, committed when the checkpoint completes (and again on restore). */
export const PendingCommitSchema = z.object({ sink: z.string().min(1) }).passthrough();
export type PendingCommit = z.infer<typeof PendingCommitSchema>;

/** Timings and sizes one subtask reported with its acknowledgement. */
export const SubtaskStatsSchema = z.object({
  ackTimestamp: z.number(),
  alignmentMs: z.number().nonnegative(),
  syncMs: z.number().nonnegative(),
  asyncMs: z.number().nonnegative(),
  startDelayMs: z.number().nonnegative(),
  /** Bytes this checkpoint wrote for the subtask. */
  stateSize: z.number().int().nonnegative(),
  /** Bytes of all state files the subtask's snapshot references. */
  fullSize: z.number().int().nonnegative(),
  /** Records the subtask took in and sent out between its previous barrier and this one (0: it did no work). */
  records: z.number().int().nonnegative().optional(),
});
export type SubtaskStats = z.infer<typeof SubtaskStatsSchema>;

/** The state one subtask contributed to a snapshot. */
export const SubtaskSnapshotSchema = z.object({
  subtask: z.number().int().nonnegative(),
  keyGroups: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
  /** Keyed state, applied in order: a full file followed by deltas. */
  keyedState: z.array(StateHandleSchema),
  /** Operator (non-keyed) state as a list of items, redistributed evenly on rescale (source splits, for instance). */
  operatorState: z.array(z.unknown()),
  pendingCommits: z.array(PendingCommitSchema),
  stats: SubtaskStatsSchema,
});
export type SubtaskSnapshot = z.infer<typeof SubtaskSnapshotSchema>;

/** Everything one operator (by `uid`) contributed to a snapshot. */
export const OperatorSnapshotSchema = z.object({
  uid: z.string().min(1),
  name: z.string(),
  parallelism: z.number().int().positive(),
  /** Whether the operator keeps keyed state, operator state, or none. */
  stateful: z.boolean(),
  subtasks: z.array(SubtaskSnapshotSchema),
});
export type OperatorSnapshot = z.infer<typeof OperatorSnapshotSchema>;

/** The `_metadata` object: writing it, last and atomically, is what makes a checkpoint or savepoint exist. */
export const ManifestSchema = z.object({
  formatVersion: z.literal(MANIFEST_FORMAT_VERSION),
  job: z.string().min(1),
  jobId: z.string(),
  graphFingerprint: z.string(),
  checkpointId: z.number().int().positive(),
  kind: z.enum([SnapshotKind.Checkpoint, SnapshotKind.Savepoint]),
  format: z.enum([SnapshotFormat.Native, SnapshotFormat.Canonical]),
  /** Generation of the run that took the snapshot. */
  generation: z.number().int().nonnegative(),
  triggeredAt: z.number(),
  completedAt: z.number(),
  maxParallelism: z.number().int().positive(),
  /** True for the snapshot taken when bounded input ended or a stop drained the job. */
  endOfInput: z.boolean(),
  operators: z.array(OperatorSnapshotSchema),
});
export type Manifest = z.infer<typeof ManifestSchema>;
