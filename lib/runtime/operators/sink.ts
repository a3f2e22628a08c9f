import type { SinkConnector, SinkWriter } from '../../api/connector.js';
import type { PendingCommit } from '../../core/manifest/model.js';
import type { StreamRecord } from '../envelope.js';
import { Operator } from './operator.js';

/**
 * Hands records to a sink writer. Records of a step are written at the end of the step (or at a barrier);
 * the writer's state is operator state, so a restored sink resumes exactly where its checkpoint left it.
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
    this.writer = this.connector.createWriter({ uid: this.uid, subtask: this.rt.subtask, runId: this.rt.runId });
  }

  processRecord(r: StreamRecord): void {
    this.buffer.push(r.v);
  }

  private state(): unknown {
    return this.rt.store.getOperatorState(this.uid)[0];
  }

  private async ensureResumed(): Promise<void> {
    if (this.resumed) return;
    const states = this.rt.store.getOperatorState(this.uid);
    // After a rescale a subtask may inherit several writer states; resume each so their leftovers are discarded.
    let state: unknown = undefined;
    for (const s of states.length > 0 ? states : [undefined]) state = await this.writer.resume(s);
    this.rt.store.setOperatorState(this.uid, [state]);
    this.resumed = true;
  }

  override async flush(): Promise<void> {
    await this.ensureResumed();
    if (this.buffer.length === 0) return;
    const values = this.buffer;
    this.buffer = [];
    this.rt.store.setOperatorState(this.uid, [await this.writer.write(values, this.state())]);
  }

  override async prepareSnapshot(checkpointId: number): Promise<PendingCommit[]> {
    await this.flush();
    const { state, pendingCommits } = await this.writer.preCommit(this.state(), checkpointId);
    this.rt.store.setOperatorState(this.uid, [state]);
    return pendingCommits;
  }
}
