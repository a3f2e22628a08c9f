import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SinkWriter, SinkWriterContext } from '../api/connector.js';
import type { AwsResourceAccess } from '../api/connector-resources.js';
import type { PendingCommit } from '../core/manifest/model.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import { join } from '../core/manifest/layout.js';
import type { CheckpointStorage } from '../ports/index.js';
import { awsClients } from '../adapters/aws/clients.js';
import { parseS3Location, S3CheckpointStorage } from '../adapters/aws/s3-checkpoint-storage.js';
import { FileCheckpointStorage } from '../adapters/local/file-checkpoint-storage.js';
import { forEachLimit } from './aws-calls.js';

// Two-phase commit for sinks whose target has no transactions of its own (a DynamoDB table, a queue, a stream, an event
// bus): what a sink subtask writes during an epoch is staged in objects, and the pending commit that travels in the
// checkpoint (its manifest, and on AWS the job row all subtasks share) is only a reference to them.
//
//   step          write(values)  ──▶ <staging>/<uid>/<run>/<subtask>/<n>-<nonce>.json   (one object per step)
//   barrier n     preCommit      ──▶ { dir, first, parts: [nonce…], checkpointId: n, … }  (a few hundred bytes)
//   chk n done    commit         ──▶ read the parts, apply them to the target, then delete the parts
//   again         commit         ──▶ a part is gone: the transaction was applied before, nothing to do
//
// Parts are deleted only by the commit that applied all of them, so "a part is missing" means "applied". Each part has
// a random nonce in its name: a replayed step, or a zombie of a failed attempt, writes under a name of its own instead
// of overwriting a part some committed state refers to.

/** Where a sink stages an epoch's records until its checkpoint completes. */
export interface StagingOptions {
  /**
   * An `s3://bucket/prefix` or a local directory (embedded runs) to stage records in until their checkpoint completes;
   * one per sink. Staged objects are deleted when committed, so no lifecycle rule may expire them earlier than a job
   * may stay down with a pending commit: a commit that finds its objects gone takes them as applied.
   * @default `<checkpoint root>/<job>/checkpoints/staging`, beside the job's checkpoints (the checkpoint bucket when deployed)
   */
  readonly staging?: string;
  /** The S3 client for an `s3://` staging location. @default `awsClients().s3` (the SDK's endpoint resolution, `AWS_ENDPOINT_URL` included) */
  readonly stagingClient?: S3Client;
}

/** What a sink staging in `staging` (an `s3://` prefix) declares it touches: it writes, reads and deletes parts there. */
export function stagingResource(staging: string): AwsResourceAccess {
  const { bucket, key } = parseS3Location(staging, 'prefix');
  return { service: 's3', bucket, prefix: key === '' || key.endsWith('/') ? key : `${key}/`, access: 'readwrite' };
}

/** A pre-committed transaction of a staging sink: which staged parts hold one sink subtask's epoch. */
export interface StagedTransaction extends PendingCommit {
  readonly sink: string;
  /** Directory of the writer's parts: `<staging>/<uid>/<run>/<subtask>`. */
  readonly dir: string;
  readonly uid: string;
  /** The run that wrote it (`SinkWriterContext.runId`). */
  readonly run: string;
  readonly subtask: number;
  /** The checkpoint at whose barrier it was pre-committed. */
  readonly checkpointId: number;
  /** Number of the first part; part `first + i` is `<first + i>-<parts[i]>.json`. */
  readonly first: number;
  /** The parts' nonces, in order. */
  readonly parts: readonly string[];
}

/** A staging writer's state (operator state): the parts of the epoch in progress. */
interface StagingWriterState {
  readonly floeStaging: 1;
  readonly run: string;
  readonly subtask: number;
  /** Number of the epoch's first part. */
  readonly first: number;
  /** Nonces of the epoch's parts so far. */
  readonly parts: readonly string[];
}

function isStagingState(s: unknown): s is StagingWriterState {
  return typeof s === 'object' && s !== null && (s as { floeStaging?: unknown }).floeStaging === 1;
}

/** The staged object's layout. */
interface StagedPart<R> {
  readonly v: 1;
  readonly records: readonly R[];
}

const PART_NAME = /^(\d+)-[0-9a-f]+\.json$/;

/** Staged objects of a sink: the storage its location is on, and its checks. */
export class Staging {
  /** The location `staging` names, if given; else each writer stages where its runtime says (`SinkWriterContext.stagingDir`). */
  private readonly location: string | undefined;
  private s3: CheckpointStorage | undefined;
  private file: CheckpointStorage | undefined;

  constructor(
    private readonly subject: string,
    private readonly options: StagingOptions,
  ) {
    this.location = options.staging === undefined ? undefined : this.normalize(options.staging);
  }

  private normalize(staging: string): string {
    if (typeof staging !== 'string' || staging === '') throw new FloeError(ErrorCode.InvalidOptions, `${this.subject}: staging must be an s3:// location or a directory`);
    if (staging.startsWith('s3://')) parseS3Location(staging, 'prefix');
    // A relative directory is made absolute, so a commit carried out elsewhere (a restore started from another
    // working directory) finds the parts the manifest names.
    return staging.startsWith('s3://') ? staging : resolve(staging);
  }

  private base(ctx: SinkWriterContext): string {
    if (this.location !== undefined) return this.location;
    if (ctx.stagingDir === undefined) throw new FloeError(ErrorCode.InvalidOptions, `${this.subject}: no staging location: give staging (an s3:// location or a directory)`);
    return this.normalize(ctx.stagingDir);
  }

  /** The storage that holds `location` (an `s3://` URL or a path). */
  storage(location: string): CheckpointStorage {
    if (location.startsWith('s3://')) return (this.s3 ??= new S3CheckpointStorage({ client: this.options.stagingClient ?? awsClients().s3 }));
    return (this.file ??= new FileCheckpointStorage());
  }

  /** The directory a writer's parts go to. */
  dirOf(base: string, uid: string, run: string, subtask: number): string {
    return join(base, encodeURIComponent(uid), encodeURIComponent(run), String(subtask));
  }

  /**
   * A writer that stages each step's values, encoded by `encode` (which also checks what the target would refuse, so
   * a record that can never be applied fails its step rather than every commit), and pre-commits the epoch's parts as
   * one transaction that also carries what `fields` answers (where to apply it).
   */
  writer<T, R>(ctx: SinkWriterContext, sink: string, fields: () => Promise<Record<string, unknown>> | Record<string, unknown>, encode: (values: readonly T[]) => Promise<readonly R[]> | readonly R[]): SinkWriter<T> {
    const base = this.base(ctx);
    const fresh = (): StagingWriterState => ({ floeStaging: 1, run: ctx.runId, subtask: ctx.subtask, first: 0, parts: [] });
    return {
      resume: async (state) => {
        if (isStagingState(state) && state.run === ctx.runId && state.subtask === ctx.subtask) return state;
        // A state of another run (a restore, or one of several states after a rescale): its parts numbered from `first`
        // on were staged after its snapshot and belong to no transaction the snapshot lists; they are dropped.
        if (isStagingState(state) && state.run !== ctx.runId) await this.discardFrom(this.dirOf(base, ctx.uid, state.run, state.subtask), state.first);
        return fresh();
      },
      write: async (values, state) => {
        const s = isStagingState(state) ? state : fresh();
        const records = await encode(values);
        if (records.length === 0) return s;
        const nonce = randomBytes(4).toString('hex');
        const dir = this.dirOf(base, ctx.uid, s.run, s.subtask);
        const body: StagedPart<R> = { v: 1, records };
        await this.storage(dir).put(partLocation(dir, s.first + s.parts.length, nonce), new TextEncoder().encode(JSON.stringify(body)));
        return { ...s, parts: [...s.parts, nonce] } satisfies StagingWriterState;
      },
      preCommit: async (state, checkpointId) => {
        const s = isStagingState(state) ? state : fresh();
        if (s.parts.length === 0) return { state: s, pendingCommits: [] };
        const txn: StagedTransaction = {
          ...(await fields()),
          sink,
          dir: this.dirOf(base, ctx.uid, s.run, s.subtask),
          uid: ctx.uid,
          run: s.run,
          subtask: s.subtask,
          checkpointId,
          first: s.first,
          parts: s.parts,
        };
        return { state: { ...s, first: s.first + s.parts.length, parts: [] } satisfies StagingWriterState, pendingCommits: [txn] };
      },
    };
  }

  /**
   * Applies a staged transaction once: reads its parts, hands their records (in staging order, each with the name of
   * its part and its index there) to `apply`, then deletes the parts. Answers false when a part is already gone — the
   * transaction was applied by an earlier commit — and `apply` is not called.
   */
  async commit<R>(txn: StagedTransaction, apply: (records: ReadonlyArray<StagedRecord<R>>) => Promise<void>): Promise<boolean> {
    const storage = this.storage(txn.dir);
    const locations = txn.parts.map((nonce, i) => partLocation(txn.dir, txn.first + i, nonce));
    const bodies: (Uint8Array | undefined)[] = new Array(locations.length);
    await forEachLimit([...locations.keys()], 16, async (i) => {
      try {
        bodies[i] = await storage.get(locations[i]!);
      } catch (e) {
        if (e instanceof FloeError && e.code === ErrorCode.NotFound) bodies[i] = undefined;
        else throw e;
      }
    });
    if (bodies.some((b) => b === undefined)) return false;
    const records: StagedRecord<R>[] = [];
    bodies.forEach((bytes, i) => {
      const part = parsePart<R>(bytes!, locations[i]!);
      const name = `${txn.first + i}-${txn.parts[i]}`;
      part.records.forEach((record, index) => records.push({ record, part: name, index }));
    });
    await apply(records);
    await storage.delete(locations);
    return true;
  }

  /** Deletes the parts under `dir` numbered `first` or higher. */
  private async discardFrom(dir: string, first: number): Promise<void> {
    const storage = this.storage(dir);
    const stale = (await storage.list(dir)).filter((l) => {
      const m = PART_NAME.exec(l.slice(l.lastIndexOf('/') + 1));
      return m !== null && Number(m[1]) >= first;
    });
    if (stale.length > 0) await storage.delete(stale);
  }
}

/** A staged record with where it was staged: `part` and `index` name it uniquely within its writer's directory. */
export interface StagedRecord<R> {
  readonly record: R;
  readonly part: string;
  readonly index: number;
}

function partLocation(dir: string, n: number, nonce: string): string {
  return join(dir, `${n}-${nonce}.json`);
}

function parsePart<R>(bytes: Uint8Array, location: string): StagedPart<R> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new FloeError(ErrorCode.Storage, `staged part ${location} is not JSON: ${(e as Error).message}`, { cause: e });
  }
  const p = parsed as Partial<StagedPart<R>>;
  if (p.v !== 1 || !Array.isArray(p.records)) throw new FloeError(ErrorCode.Storage, `staged part ${location} is not a staged part of format 1`);
  return p as StagedPart<R>;
}
