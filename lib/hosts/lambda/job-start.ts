/**
 * Starting a deployed job again (`floe start --stack …`), Flink's job submission with `-s <savepoint>`: a new
 * generation of the job row that restores a savepoint or a completed checkpoint, or starts with empty state when
 * asked to explicitly.
 *
 * The deployed functions keep running between generations; only the job row and the state table change, so the
 * order of the writes is what keeps the old generation and the new one apart:
 *
 *     validate (read only) ─▶ [FAILING: cancel it] ─▶ row: generation g+1, start = restoring (old state kept: nothing
 *       triggers, handlers drop generation g) ─▶ wait until every handler reread the row and every step in flight
 *       ended (the functions' timeout) ─▶ state table: clear, then
 *       each new subtask's share of the snapshot ─▶ row: g+1 RUNNING, laid out for the deployed plan, start = ready
 *       ─▶ (tick) coordinator commits the snapshot's pending sink transactions, removes uncommitted output, sends
 *       the sources their first wakes and records sourcesStartedAt
 *
 * Validation happens before anything is written: the row must not be RUNNING, the manifest must read (a corrupt
 * `_metadata`, an unknown format version or a missing state file is refused, naming the file and the problem; with
 * `latest`, a newest checkpoint that is so is passed over for the newest intact one, and the start is refused only
 * when none is intact, listing each one's problem), and the restore planner must
 * accept it for the deployed plan that the coordinator records in the row (every problem listed). The coordinator
 * checks again, against the plan it runs, before the sources start: a start that read the plan before a redeploy
 * reached the coordinator fails its generation instead of running it at the old parallelism.
 *
 * The snapshot's sink commits and the removal of uncommitted output need the job's code, which only the functions
 * have; the state itself is written from here (no Lambda time limit), with the same restore the emulator mode uses.
 */
import { randomBytes } from 'node:crypto';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { AwsClients } from '../../adapters/aws/clients.js';
import { cancelJob } from '../../coordination/cancel.js';
import { JobStatus, StartPhase, isTerminal, type CoordinatorRow, type DeployedPlan } from '../../core/coordinator/job-row.js';
import { DynamoDbCoordinatorStore } from '../../adapters/aws/dynamodb-coordinator-store.js';
import { DynamoDbStateStore } from '../../adapters/aws/dynamodb-state-store.js';
import { S3CheckpointStorage } from '../../adapters/aws/s3-checkpoint-storage.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import { Layout } from '../../core/manifest/layout.js';
import type { RestorePlan } from '../../core/restore-planner.js';
import { planSnapshotRestore, writeRestoredState } from '../../coordination/restore.js';
import { describeSkippedCheckpoint, findLatestCheckpoint, loadRestorableManifest, type LoadedManifest } from '../../runtime/snapshot-catalog.js';
import type { FloeStackOutputs } from './stack-outputs.js';
import { CoordinatorConflictError } from '../../ports/coordinator-store.js';
import { COORDINATOR_TASK_MESSAGE_VERSION } from '../../coordination/checkpoint-tasks.js';
import { RUN_REFRESH_MS, readyGenerationRow, settleMsOf } from '../../coordination/generation.js';
import { RESTORE_TAKEOVER_MS } from '../../coordination/restarter.js';

/** What a new generation starts from: exactly one, so that starting with empty state is never an accident. */
export type StartFrom =
  | { readonly kind: 'savepoint'; readonly path: string }
  /** `latest`: the newest completed checkpoint under the deployment's checkpoint directory. */
  | { readonly kind: 'checkpoint'; readonly path: string }
  | { readonly kind: 'empty' };

/** A start still writing its state is taken over by another start only after this long, in ms. */
export const START_TAKEOVER_MS = 10 * 60_000;

/** Options of {@link startDeployedJob}. */
export interface JobStartOptions {
  readonly outputs: FloeStackOutputs;
  readonly clients: AwsClients;
  readonly from: StartFrom;
  /** Drop state of operators (uids) the deployed plan no longer has. @default false */
  readonly allowNonRestoredState?: boolean;
  /**
   * How long to wait after moving the row to the new generation before writing state, so that every operator
   * handler has reread the row and stopped acting on the old generation, and no step of it is still running, in ms.
   * @default {@link settleMsOf} the deployed plan: the functions' timeout (a step in flight may run that long and
   * then commit) plus RUN_REFRESH_MS + 1000 (the handlers reread the row at least every RUN_REFRESH_MS); without a
   * recorded timeout (emulator mode) RUN_REFRESH_MS + 1000
   */
  readonly settleMs?: number;
  /** How long to wait for the coordinator to start the sources, in ms; 0 returns once the row is written. @default 120000 */
  readonly waitMs?: number;
  /** Receives one line per step. @default nothing is logged */
  readonly log?: (line: string) => void;
}

/** What {@link startDeployedJob} did. */
export interface JobStartOutcome {
  /** The generation started. */
  readonly generation: number;
  /** The snapshot restored, absent for a start with empty state. */
  readonly restoredFrom?: { readonly path: string; readonly checkpointId: number; readonly kind: 'checkpoint' | 'savepoint' };
  /** What the restore did beyond a one-to-one mapping (rescales, dropped or new operators). */
  readonly notes: readonly string[];
  /** True once the coordinator started the sources; false when the wait ended first (they start on its next tick). */
  readonly sourcesStarted: boolean;
  /** The job row as last read. */
  readonly row: CoordinatorRow;
}

/** Why the row's current generation may not be replaced now, or undefined when it may. */
function refusal(row: CoordinatorRow, now: number): string | undefined {
  const g = row.runtime.generation;
  const start = row.runtime.start;
  // The coordinator is restarting the job by its restart strategy: scheduled, or writing the state under a live claim.
  if (start?.phase === StartPhase.Restoring && start.restoreAt !== undefined) {
    if (start.restoringAt === undefined) {
      // A cancelled job's pending restart is dropped by the coordinator's next tick; a start may replace it.
      if (isTerminal(row)) return undefined;
      return `the coordinator restarts generation ${start.generation} by the job's restart strategy at ${new Date(start.restoreAt).toISOString()}; wait for it, or cancel the job (floe cancel) first`;
    }
    if (now - start.restoringAt < RESTORE_TAKEOVER_MS) {
      return `the coordinator is writing the restored state of generation ${start.generation} since ${new Date(start.restoringAt).toISOString()}; wait for it, or run this again ${RESTORE_TAKEOVER_MS / 60_000} minutes after it began, to take it over`;
    }
    return undefined;
  }
  if (start?.phase === StartPhase.Restoring && now - start.at < START_TAKEOVER_MS) {
    return `another start is writing the state of generation ${start.generation} since ${new Date(start.at).toISOString()}; wait for it (or run this again ${START_TAKEOVER_MS / 60_000} minutes after it began, to take it over)`;
  }
  if (start?.phase === StartPhase.Restoring) return undefined;
  if (isTerminal(row) || row.jobStatus?.status === JobStatus.Failing) return undefined;
  return `generation ${g} is still RUNNING: stop it with a savepoint (floe stop) or cancel it (floe cancel) first`;
}

/** Reads the snapshot to start from, refusing what cannot be restored. */
async function snapshotOf(storage: S3CheckpointStorage, job: string, deployment: DeployedPlan, from: StartFrom, log: (line: string) => void): Promise<LoadedManifest | undefined> {
  if (from.kind === 'empty') return undefined;
  if (from.kind === 'checkpoint' && from.path === 'latest') {
    const latest = await findLatestCheckpoint(storage, deployment.options.dir, job, { onSkip: (c) => log(`skipped ${describeSkippedCheckpoint(c)}`) });
    if (!latest) {
      throw new FloeError(
        ErrorCode.CheckpointNotFound,
        `job '${job}' has no completed checkpoint under ${Layout.checkpointsDir(deployment.options.dir, job)}; start from a savepoint (--from-savepoint) or with empty state (--empty-state)`,
      );
    }
    return latest;
  }
  return loadRestorableManifest(storage, from.path);
}

/**
 * Starts a deployed job's next generation from a savepoint, a checkpoint or empty state (see the module comment).
 * Throws BAD_REQUEST while the job runs, CHECKPOINT_NOT_FOUND / CORRUPT_MANIFEST / UNSUPPORTED_MANIFEST_VERSION for a
 * snapshot that cannot be read and INCOMPATIBLE_RESTORE for one the deployed plan cannot take, all before any write.
 */
export async function startDeployedJob(options: JobStartOptions): Promise<JobStartOutcome> {
  const { outputs, clients, from } = options;
  const job = outputs.jobName;
  const log = options.log ?? (() => {});
  const store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: outputs.coordinatorTable });
  const storage = new S3CheckpointStorage({ client: clients.s3 });

  // 1. Validate; nothing is written before this passes.
  let row = await store.load(job);
  if (!row) throw new FloeError(ErrorCode.NotFound, `job '${job}' has no job row in ${outputs.coordinatorTable}: it was never started (a deployed job starts by itself on the coordinator's first tick)`);
  const refused = refusal(row, Date.now());
  if (refused) throw new FloeError(ErrorCode.BadRequest, `cannot start job '${job}': ${refused}`);
  const deployment = row.runtime.deployment;
  if (!deployment) {
    throw new FloeError(ErrorCode.BadRequest, `cannot start job '${job}': its job row does not record the deployed plan yet; the coordinator records it when it starts (on its next tick)`);
  }
  if (outputs.stateTable === undefined) throw new FloeError(ErrorCode.InvalidOptions, `cannot start job '${job}': the stack outputs name no state table (FloeStateTable)`);
  const snapshot = await snapshotOf(storage, job, deployment, from, log);
  const restorePlan: RestorePlan | undefined = snapshot && planSnapshotRestore(snapshot, { target: deployment, allowNonRestoredState: options.allowNonRestoredState ?? false });

  // 2. A failing generation may still be running: end it as a cancel does.
  if (!isTerminal(row) && row.runtime.start?.phase !== StartPhase.Restoring) {
    log(`cancelling generation ${row.runtime.generation}, which is failing (${row.jobStatus?.detail ?? 'no reason recorded'})`);
    row = (await cancelJob(store, job, Date.now())).row;
  }

  // 3. Fence: the row moves to the new generation, keeping the old (ended) reducer state, so nothing triggers or starts.
  const generation = Math.max(row.runtime.generation, row.runtime.start?.generation ?? 0) + 1;
  const startedAt = Date.now();
  const base = row;
  const fenced = await store.updateRuntime(
    job,
    (r) => {
      if (r.version !== base.version) return undefined;
      const { sourcesStartedAt: _old, start: _previous, ...runtime } = r.runtime;
      return { ...runtime, generation, placements: {}, start: { phase: StartPhase.Restoring, generation, at: startedAt, ...(snapshot ? { from: snapshot.dir } : {}) } };
    },
    startedAt,
  );
  if (fenced.runtime.start?.generation !== generation || fenced.runtime.start.at !== startedAt) {
    throw new FloeError(ErrorCode.CommitFenced, `the job row of '${job}' changed while the start began (another start or a cancel?); nothing was changed, run it again`);
  }
  const settleMs = options.settleMs ?? settleMsOf(deployment);
  const why =
    deployment.functionTimeoutMs === undefined
      ? `the handlers reread the job row every ${RUN_REFRESH_MS / 1000} s`
      : `a step in flight may run up to the functions' timeout of ${deployment.functionTimeoutMs / 1000} s, and the handlers reread the job row every ${RUN_REFRESH_MS / 1000} s`;
  log(`job row at generation ${generation}; waiting ${Math.ceil(settleMs / 1000)} s for the functions to leave generation ${base.runtime.generation} (${why})`);
  await new Promise((r) => setTimeout(r, settleMs));

  // 4. State: everything of the old generation goes, then each new subtask gets its share of the snapshot.
  const state = new DynamoDbStateStore({ tableName: outputs.stateTable, job, client: clients.dynamodb });
  await state.clear();
  if (snapshot && restorePlan) {
    for (const note of restorePlan.notes) log(note);
    await writeRestoredState(snapshot, restorePlan, deployment, state, storage);
    log(`state of ${snapshot.manifest.kind} ${snapshot.manifest.checkpointId} written for ${restorePlan.subtasks.size} subtasks`);
  }

  // 5. The new generation, laid out for the deployed plan; the coordinator's next tick starts it.
  const now = Date.now();
  const next = readyGenerationRow({ fenced, deployment, generation, startedAt, jobId: randomBytes(16).toString('hex'), now, ...(snapshot ? { from: snapshot } : {}) });
  try {
    row = await store.replaceGeneration(next, fenced.version, now);
  } catch (e) {
    if (e instanceof CoordinatorConflictError) {
      throw new FloeError(ErrorCode.CommitFenced, `the job row of '${job}' changed while the state of generation ${generation} was written (another start?); run it again`, { cause: e });
    }
    throw e;
  }
  log(`generation ${generation} is ready; the coordinator starts its sources on its next tick`);

  // 6. Ask for that tick now rather than at the schedule's next one, and wait for the sources to start.
  if (outputs.coordinatorQueueUrl !== undefined) {
    const tick = JSON.stringify({ v: COORDINATOR_TASK_MESSAGE_VERSION, type: 'tick', job });
    await clients.sqs.send(new SendMessageCommand({ QueueUrl: outputs.coordinatorQueueUrl, MessageBody: tick }));
  }
  const deadline = Date.now() + (options.waitMs ?? 120_000);
  let sourcesStarted = false;
  for (let pause = 100; Date.now() < deadline; pause = Math.min(pause * 2, 2000)) {
    await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(0, deadline - Date.now()))));
    row = (await store.load(job)) ?? row;
    if (row.runtime.generation !== generation) break;
    if (row.jobStatus?.status === JobStatus.Failing) throw new FloeError(ErrorCode.JobFailed, `generation ${generation} of job '${job}' did not start: ${row.jobStatus.detail ?? 'no reason recorded'}`);
    if (row.runtime.sourcesStartedAt !== undefined) {
      sourcesStarted = true;
      break;
    }
  }
  return {
    generation,
    ...(snapshot ? { restoredFrom: { path: snapshot.dir, checkpointId: snapshot.manifest.checkpointId, kind: snapshot.manifest.kind } } : {}),
    notes: restorePlan?.notes ?? [],
    sourcesStarted,
    row,
  };
}
