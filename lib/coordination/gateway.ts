import type { AckResult } from '../core/coordinator/ack-tracker.js';
import type { CoordinatorEvent, CoordinatorStep } from '../core/coordinator/types.js';
import type { CheckpointAck, Clock, CoordinatorGateway, TaskAddress } from '../ports/index.js';
import type { AppliedStep, CoordinatorStore, EffectRunner } from '../ports/coordinator-store.js';

/** Options of {@link CoordinatorStoreGateway}. */
export interface CoordinatorStoreGatewayOptions {
  readonly job: string;
  /** The job rows (DynamoDB on AWS and in emulator mode, in memory embedded). */
  readonly store: CoordinatorStore;
  /** Carries out the effects of every step this gateway writes (`CoordinatorHost`). */
  readonly effects: EffectRunner;
  /** Where time comes from (the system clock, lib/adapters/local/system-clock.ts, unless a test fakes it). */
  readonly clock: Clock;
}

/** An ack waiting for the next group write. */
interface QueuedAck {
  readonly event: CoordinatorEvent;
  readonly resolve: (step: CoordinatorStep) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * How subtasks report to the coordinator, on every substrate: each report is an event applied to the job row with a conditional
 * write (re-applied on a lost race, so concurrent acks from many Lambdas or subtask loops all count), and the effects of the written
 * step — the manifest write once the last ack is in — are handed to the effect runner. The same gateway serves the
 * embedded runner, emulator mode and a Lambda; only the store and the host's ports differ.
 *
 * Acks are group-committed: while one write of the job row is in flight, the acks that arrive meanwhile (from the
 * other slices of the batch, or other steps of the container) wait and then go into ONE write together
 * (`CoordinatorStore.applyAll`). One write per ack made a checkpoint of N subtasks cost N serial read-and-write
 * round trips on the row every ack contends for; grouped, an ack still counts only once its write succeeded, and a
 * caller still learns its own ack's result. Declines and end-of-input reports stay single writes, in call order.
 */
export class CoordinatorStoreGateway implements CoordinatorGateway {
  private readonly clock: Clock;
  private queued: QueuedAck[] = [];
  private writing = false;

  constructor(private readonly options: CoordinatorStoreGatewayOptions) {
    this.clock = options.clock;
  }

  /** Records an ack. */
  async acknowledge(ack: CheckpointAck): Promise<void> {
    await this.receiveAcknowledge(ack);
  }

  /** Records a decline, which aborts the checkpoint unless it already has all its acks. */
  async decline(checkpointId: number, task: TaskAddress, reason: string): Promise<void> {
    await this.receiveDecline(checkpointId, task, reason);
  }

  /** Records an ack and answers what became of it (Flink's TaskAcknowledgeResult): `duplicate` for a repeat, `discarded` for a checkpoint that already finished. */
  async receiveAcknowledge(ack: CheckpointAck): Promise<AckResult> {
    const now = this.clock.now();
    const task = `${ack.task.vertex}:${ack.task.subtask}`;
    const step = await new Promise<CoordinatorStep>((resolve, reject) => {
      this.queued.push({ event: { type: 'ack', now, checkpointId: ack.checkpointId, ack: { task, operators: ack.operators, ackTimestamp: now } }, resolve, reject });
      if (!this.writing) void this.writeQueued();
    });
    return step.result ?? 'unknown';
  }

  /** Writes the queued acks in groups until none is left; one group's failure is every one of its callers'. */
  private async writeQueued(): Promise<void> {
    this.writing = true;
    try {
      while (this.queued.length > 0) {
        const group = this.queued;
        this.queued = [];
        let result;
        try {
          result = await this.options.store.applyAll(this.options.job, group.map((q) => q.event));
        } catch (e) {
          for (const q of group) q.reject(e);
          continue;
        }
        const { applied, steps } = result;
        let failure: { error: unknown } | undefined;
        if (applied.written) await this.options.effects.run(applied).catch((error: unknown) => (failure = { error }));
        // The acks were written either way; effects that failed are reported to the acks that asked for them.
        const owners = steps.some((st) => st.effects.length > 0) ? (i: number) => steps[i]!.effects.length > 0 : () => true;
        group.forEach((q, i) => (failure && owners(i) ? q.reject(failure.error) : q.resolve(steps[i]!)));
      }
    } finally {
      this.writing = false;
    }
  }

  /** Records a decline and answers what became of it. */
  async receiveDecline(checkpointId: number, task: TaskAddress, reason: string): Promise<AckResult> {
    const applied = await this.apply({ type: 'decline', now: this.clock.now(), checkpointId, task: `${task.vertex}:${task.subtask}`, reason });
    return applied.step.result ?? 'unknown';
  }

  /** Records that a source subtask read all of its input (the final checkpoint starts once every source did). */
  async sourceFinished(task: TaskAddress): Promise<void> {
    await this.apply({ type: 'sourceFinished', now: this.clock.now(), task: `${task.vertex}:${task.subtask}` });
  }

  /**
   * Fails the job over because a subtask's step failed for good; the job row says FAILING with the reason. A step of a
   * generation the row has moved past (it outlived a restart) fails nothing.
   */
  async failTask(task: TaskAddress, reason: string, generation?: number): Promise<void> {
    if (generation !== undefined && (await this.options.store.load(this.options.job))?.runtime.generation !== generation) return;
    await this.apply({ type: 'taskFailed', now: this.clock.now(), task: `${task.vertex}:${task.subtask}`, reason });
  }

  private async apply(event: CoordinatorEvent): Promise<AppliedStep> {
    const applied = await this.options.store.apply(this.options.job, event);
    if (applied.written) await this.options.effects.run(applied);
    return applied;
  }
}
