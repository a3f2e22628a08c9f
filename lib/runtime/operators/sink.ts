import type { SinkConnector, SinkWriter } from '../../api/connector.js';
import type { PendingCommit } from '../../core/manifest/model.js';
import type { BarrierInfo, StreamRecord } from '../../core/envelope.js';
import { Operator } from './operator.js';

/** Transactions a sink pre-committed for a snapshot that may not have completed: carried until one that did covers them. */
interface CarriedCommits {
  readonly checkpointId: number;
  readonly commits: readonly PendingCommit[];
}

/** A sink subtask's operator state: its writer's state and the transactions it carries. */
interface SinkState {
  readonly floeSink: 1;
  readonly writer: unknown;
  readonly carried: readonly CarriedCommits[];
}

function isSinkState(s: unknown): s is SinkState {
  return typeof s === 'object' && s !== null && (s as { floeSink?: unknown }).floeSink === 1;
}

/**
 * Hands records to a sink writer. Records of a step are written at the end of the step (or at a barrier);
 * the writer's state is operator state, so a restored sink resumes exactly where its checkpoint left it.
 *
 * Nothing pre-committed is dropped (Flink's two-phase commit rule): the transactions of snapshot `n` are carried in
 * the sink's state and reported again with every later snapshot until a barrier says a checkpoint `≥ n` completed.
 * So when checkpoint or savepoint `n` aborts (declined, timed out, its manifest not written) the next snapshot that
 * completes commits `n`'s output with its own. Commits are idempotent, so committing one twice is harmless.
 *
 *   barrier 5 ──▶ pre-commit T5, carry [T5]          snapshot 5 lists T5 ─▶ aborted, T5 not committed
 *   barrier 6 ──▶ pre-commit T6, carry [T5, T6]      snapshot 6 lists T5, T6 ─▶ completed: both committed
 *   barrier 7 (committedThrough 6) ──▶ forget ≤ 6, carry [T7]
 */
export class SinkOperator extends Operator {
  private buffer: unknown[] = [];
  private writer!: SinkWriter<unknown>;
  private resumed = false;

  constructor(uid: string, private readonly connector: SinkConnector<unknown>) {
    super(uid);
  }

  override async open(...args: Parameters<Operator['open']>): Promise<void> {
    await super.open(...args);
    this.writer = this.connector.createWriter({ uid: this.uid, subtask: this.rt.subtask, runId: this.rt.runId, ...(this.rt.stagingDir !== undefined ? { stagingDir: this.rt.stagingDir } : {}) });
  }

  processRecord(r: StreamRecord): void {
    this.buffer.push(r.v);
  }

  private state(): SinkState {
    return this.rt.store.getOperatorState(this.uid)[0] as SinkState;
  }

  private setState(writer: unknown, carried: readonly CarriedCommits[]): void {
    this.rt.store.setOperatorState(this.uid, [{ floeSink: 1, writer, carried } satisfies SinkState]);
  }

  private async ensureResumed(): Promise<void> {
    if (this.resumed) return;
    const states = this.rt.store.getOperatorState(this.uid);
    // After a rescale a subtask may inherit several writer states; resume each so their leftovers are discarded, and
    // keep every transaction they carry (a restore commits them again: harmless, commits are idempotent).
    let writer: unknown = undefined;
    const carried: CarriedCommits[] = [];
    for (const s of states.length > 0 ? states : [undefined]) {
      // A state without the wrapper is a bare writer state, as snapshots of earlier versions hold.
      writer = await this.writer.resume(isSinkState(s) ? s.writer : s);
      if (isSinkState(s)) carried.push(...s.carried);
    }
    this.setState(writer, carried);
    this.resumed = true;
  }

  override async flush(): Promise<void> {
    await this.ensureResumed();
    if (this.buffer.length === 0) return;
    const values = this.buffer;
    this.buffer = [];
    const s = this.state();
    this.setState(await this.writer.write(values, s.writer), s.carried);
  }

  override async prepareSnapshot(barrier: BarrierInfo): Promise<PendingCommit[]> {
    await this.flush();
    const s = this.state();
    const { state, pendingCommits } = await this.writer.preCommit(s.writer, barrier.checkpointId);
    const done = barrier.committedThrough ?? 0;
    const carried = s.carried.filter((c) => c.checkpointId > done);
    if (pendingCommits.length > 0) carried.push({ checkpointId: barrier.checkpointId, commits: pendingCommits });
    this.setState(state, carried);
    return carried.flatMap((c) => c.commits);
  }
}
