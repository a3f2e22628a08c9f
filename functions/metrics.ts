/**
 * The metrics the Floe Lambdas publish (CloudWatch EMF, namespace `POWERTOOLS_METRICS_NAMESPACE`, default `Floe`),
 * and the observers that count lib/'s observations into them. Names follow Flink's metrics where Flink has the
 * concept (`numRecordsIn`, `numberOfCompletedCheckpoints`, `lastCheckpointDuration`, …). Each published value is
 * what happened during one invocation, so the Sum statistic over a period gives the period's count (Flink's
 * `numberOf…` are running totals; CloudWatch sums increments instead).
 */
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { CoordinatorObservation, CoordinatorObserver } from '../lib/coordination/observer.js';
import type { OperatorObserver } from '../lib/hosts/lambda/operator-observer.js';
import type { HandlerTelemetry, InvocationMetrics } from './telemetry.js';

/** Metrics of an operator function; dimensions `job` and `vertex`. */
export const OperatorMetric = {
  /** SQS messages the invocation received (Count). */
  MessagesIn: 'messagesIn',
  /** Messages reported in `batchItemFailures`, to come back (Count). */
  BatchItemFailures: 'batchItemFailures',
  /** Task steps that committed (Count). */
  Steps: 'steps',
  /** Task steps that failed; their messages come back (Count). */
  StepFailures: 'stepFailures',
  /** Duration of each committed step, from its slice's start to its commit and acks (Milliseconds, one value per step). */
  StepDuration: 'stepDuration',
  /** Records read, from envelopes or from a source (Count). */
  NumRecordsIn: 'numRecordsIn',
  /** Records sent to downstream vertices (Count). */
  NumRecordsOut: 'numRecordsOut',
  /** Envelopes dropped as duplicates or of an older generation, and stale wakes (Count). */
  DroppedEnvelopes: 'droppedEnvelopes',
  /** Malformed messages moved to the dead-letter queue with their reason (Count). */
  DeadLetteredMessages: 'deadLetteredMessages',
  /** Checkpoint barriers aligned and snapshotted (Count). */
  CheckpointBarriers: 'checkpointBarriers',
  /** Acknowledgements the job row accepted (Count). */
  CheckpointAcks: 'checkpointAcks',
  /** Acknowledgements not accepted: duplicate, unknown or discarded checkpoint, or dropped because their step failed (Count). */
  CheckpointAcksRejected: 'checkpointAcksRejected',
  /** Acknowledgements that failed after their step committed; the checkpoint's watchdog recovers or aborts it (Count). */
  CheckpointAckFailures: 'checkpointAckFailures',
  /** Checkpoints a subtask declined (Count). */
  CheckpointDeclines: 'checkpointDeclines',
} as const;

/** Operator counts published every invocation, 0 included. */
export const OPERATOR_ALWAYS: readonly string[] = [
  OperatorMetric.MessagesIn,
  OperatorMetric.BatchItemFailures,
  OperatorMetric.Steps,
  OperatorMetric.StepFailures,
  OperatorMetric.NumRecordsIn,
  OperatorMetric.NumRecordsOut,
  OperatorMetric.DeadLetteredMessages,
];

/** Checkpoint metrics of the job; dimension `job`, from whichever function carried out the coordinator's effect. */
export const CheckpointMetric = {
  /** Checkpoints and savepoints triggered (Count). */
  Triggered: 'totalNumberOfCheckpoints',
  /** Checkpoints and savepoints completed: manifest written and recorded (Count). */
  Completed: 'numberOfCompletedCheckpoints',
  /** Checkpoints aborted (timeout, decline, failed manifest write); they end FAILED (Count). */
  Failed: 'numberOfFailedCheckpoints',
  /** Trigger to completion of each completed checkpoint (Milliseconds). */
  Duration: 'lastCheckpointDuration',
  /** Bytes each completed checkpoint wrote (less than its full size when incremental) (Bytes). */
  Size: 'lastCheckpointSize',
  /** Bytes each completed checkpoint references (Bytes). */
  FullSize: 'lastCheckpointFullSize',
  /** Fail-overs the coordinator decided: too many failed checkpoints, or a failed terminating one (Count). */
  JobFailovers: 'numberOfJobFailovers',
} as const;

/** Metrics of the coordinator function; dimension `job`. */
export const CoordinatorMetric = {
  /** Coordinator-tasks messages handled (Count). */
  Tasks: 'coordinatorTasks',
  /** Tasks that failed, answered to the state machine or not, and malformed task messages (Count). */
  TaskFailures: 'coordinatorTaskFailures',
  /** Messages reported in `batchItemFailures`, to come back (Count). */
  BatchItemFailures: 'batchItemFailures',
} as const;

/** Coordinator counts published every invocation, 0 included. */
export const COORDINATOR_ALWAYS: readonly string[] = [CoordinatorMetric.Tasks, CoordinatorMetric.TaskFailures, CoordinatorMetric.BatchItemFailures];

/** Counts coordinator observations: checkpoint outcomes into `job`, task outcomes into `tasks`; the generation becomes a log key. */
export function coordinatorMetrics(telemetry: HandlerTelemetry, tasks: InvocationMetrics = telemetry.metrics): CoordinatorObserver {
  const job = telemetry.jobMetrics;
  return (o: CoordinatorObservation) => {
    if ('generation' in o) telemetry.logger.appendPersistentKeys({ generation: o.generation });
    switch (o.type) {
      case 'checkpointTriggered':
        return job.count(CheckpointMetric.Triggered);
      case 'checkpointCompleted':
        job.count(CheckpointMetric.Completed);
        if (o.durationMs !== undefined) job.sample(CheckpointMetric.Duration, MetricUnit.Milliseconds, o.durationMs);
        if (o.stateSize !== undefined) job.sample(CheckpointMetric.Size, MetricUnit.Bytes, o.stateSize);
        if (o.fullSize !== undefined) job.sample(CheckpointMetric.FullSize, MetricUnit.Bytes, o.fullSize);
        return;
      case 'checkpointAborted':
        return job.count(CheckpointMetric.Failed);
      case 'jobFailing':
        return job.count(CheckpointMetric.JobFailovers);
      case 'coordinatorTask':
        tasks.count(CoordinatorMetric.Tasks);
        if (o.failed) tasks.count(CoordinatorMetric.TaskFailures);
        return;
    }
  };
}

/** Counts an operator function's observations; coordinator effects its acks ran go to the job's checkpoint metrics. */
export function operatorMetrics(telemetry: HandlerTelemetry): OperatorObserver {
  const m = telemetry.metrics;
  const coordinator = coordinatorMetrics(telemetry);
  return (o) => {
    switch (o.type) {
      case 'batch':
        m.count(OperatorMetric.MessagesIn, o.messages);
        m.count(OperatorMetric.BatchItemFailures, o.failed);
        return;
      case 'step':
        telemetry.logger.appendPersistentKeys({ generation: o.generation });
        m.count(OperatorMetric.Steps);
        m.count(OperatorMetric.NumRecordsIn, o.recordsIn);
        m.count(OperatorMetric.NumRecordsOut, o.recordsOut);
        if (o.dropped > 0) m.count(OperatorMetric.DroppedEnvelopes, o.dropped);
        if (o.barriers > 0) m.count(OperatorMetric.CheckpointBarriers, o.barriers);
        if (o.ackFailures > 0) m.count(OperatorMetric.CheckpointAckFailures, o.ackFailures);
        m.sample(OperatorMetric.StepDuration, MetricUnit.Milliseconds, o.durationMs);
        return;
      case 'stepFailed':
        return m.count(OperatorMetric.StepFailures);
      case 'deadLettered':
        return m.count(OperatorMetric.DeadLetteredMessages);
      case 'ack':
        return m.count(o.result === 'accepted' ? OperatorMetric.CheckpointAcks : OperatorMetric.CheckpointAcksRejected);
      case 'decline':
        return m.count(OperatorMetric.CheckpointDeclines);
      default:
        return coordinator(o);
    }
  };
}
