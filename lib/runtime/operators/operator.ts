import type { Clock, SubtaskStateStore } from '../../ports/index.js';
import type { PendingCommit } from '../../core/manifest/model.js';
import type { BarrierInfo, StreamRecord } from '../../core/envelope.js';

/** What an operator instance sees of its subtask. */
export interface OperatorRuntime {
  readonly uid: string;
  readonly subtask: number;
  readonly parallelism: number;
  readonly maxParallelism: number;
  readonly store: SubtaskStateStore;
  readonly clock: Clock;
  /** Unique per run of the job, for names no other run uses. */
  readonly runId: string;
  /** Where sinks may stage what they write until their checkpoint completes. */
  readonly stagingDir?: string;
  /** The subtask's current event-time watermark. */
  currentWatermark(): number;
}

/** Where an operator's output goes: the next operator in the chain, or the vertex's output channels. */
export interface Output {
  emit(record: StreamRecord): void;
}

/** One operator instance in a subtask's chain. Per-record work is synchronous; everything that may do I/O is async. */
export abstract class Operator {
  protected rt!: OperatorRuntime;
  protected out!: Output;

  constructor(readonly uid: string) {}

  /** Binds the operator to its subtask; called once per instance, before anything else. */
  async open(rt: OperatorRuntime, out: Output): Promise<void> {
    this.rt = rt;
    this.out = out;
  }

  /** Handles one record. */
  abstract processRecord(record: StreamRecord): void;

  /** The watermark advanced to `watermark`: fire due event-time timers. */
  async advanceWatermark(_watermark: number): Promise<void> {}

  /** Processing time advanced to `now`: fire due processing-time timers. */
  async advanceProcessingTime(_now: number): Promise<void> {}

  /** All input has ended (the watermark is already at its maximum). */
  async endInput(): Promise<void> {}

  /** Finishes asynchronous work for the records handled so far; called at the end of each step and before a snapshot. */
  async flush(): Promise<void> {}

  /** At a barrier, after `flush`: pre-commit external transactions (sinks); returns every transaction the snapshot must commit. */
  async prepareSnapshot(_barrier: BarrierInfo): Promise<PendingCommit[]> {
    return [];
  }
}
