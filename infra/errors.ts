import { ErrorCode, ValidationError } from '../lib/core/errors.js';

/** Stable ids of the problems FloeJob reports at synth time; each message starts with its id in brackets. */
export const FloeJobErrorId = {
  /** The job definition itself is invalid (validateJob's problems, one each). */
  InvalidJob: 'FloeJob.InvalidJob',
  /** The job file does not exist. */
  JobFileNotFound: 'FloeJob.JobFileNotFound',
  /** A handler entry (operator or coordinator) does not exist. */
  HandlerEntryNotFound: 'FloeJob.HandlerEntryNotFound',
  /** An operator's parallelism (its own, the job's or the override) is above the job's maxParallelism. */
  ParallelismAboveMaxParallelism: 'FloeJob.ParallelismAboveMaxParallelism',
  /** The job file or a handler entry lies outside the project root, which bundling cannot read from. */
  PathOutsideProjectRoot: 'FloeJob.PathOutsideProjectRoot',
  /** The parallelism override is not a positive integer. */
  InvalidParallelism: 'FloeJob.InvalidParallelism',
  /** The checkpoint or savepoint options are invalid (resolveCheckpointOptions' problems, one each). */
  InvalidCheckpointOptions: 'FloeJob.InvalidCheckpointOptions',
  /** `checkpoint.interval` is below what AWS can drive (1 s: a Step Functions Wait counts whole seconds). */
  CheckpointIntervalBelowMinimum: 'FloeJob.CheckpointIntervalBelowMinimum',
  /** `checkpoint.interval` is neither a divisor of a minute nor a whole number of minutes. */
  CheckpointIntervalNotSchedulable: 'FloeJob.CheckpointIntervalNotSchedulable',
  /** `savepoint.dir` is not an `s3://` location. */
  SavepointDirNotS3: 'FloeJob.SavepointDirNotS3',
  /** The function timeout is outside Lambda's 1 s – 15 min. */
  FunctionTimeoutOutOfRange: 'FloeJob.FunctionTimeoutOutOfRange',
  /** The function memory is outside Lambda's 128 – 10,240 MB. */
  MemorySizeOutOfRange: 'FloeJob.MemorySizeOutOfRange',
  /** The runtime is not a Node.js runtime. */
  UnsupportedRuntime: 'FloeJob.UnsupportedRuntime',
  /** `maxReceiveCount` is not a positive integer. */
  MaxReceiveCountOutOfRange: 'FloeJob.MaxReceiveCountOutOfRange',
  /** `idleSourceMaxDelay` is not a whole number of seconds from 0 to 15 minutes (SQS's longest delay). */
  IdleSourceMaxDelayOutOfRange: 'FloeJob.IdleSourceMaxDelayOutOfRange',
  /** A function's environment would exceed Lambda's 4 KB (too many output vertices, say). */
  EnvironmentTooLarge: 'FloeJob.EnvironmentTooLarge',
  /** A reserved concurrency is not an integer, or below what its function's event source can be capped to. */
  ReservedConcurrencyOutOfRange: 'FloeJob.ReservedConcurrencyOutOfRange',
  /** A per-vertex option names a vertex the job's plan does not have. */
  UnknownVertex: 'FloeJob.UnknownVertex',
  /** A stack holds another FloeJob; its outputs (read by the CLI) would collide. */
  OnePerStack: 'FloeJob.OnePerStack',
  /** A source or sink declares an AWS resource that cannot be granted (unknown service or access, no name). */
  InvalidConnectorResource: 'FloeJob.InvalidConnectorResource',
  /** `resources` maps a connector's resource to a construct of another kind, or of another name. */
  ConnectorResourceMismatch: 'FloeJob.ConnectorResourceMismatch',
  /** `resources` names a resource that no source or sink of the job declares. */
  UnknownConnectorResource: 'FloeJob.UnknownConnectorResource',
} as const;
export type FloeJobErrorId = (typeof FloeJobErrorId)[keyof typeof FloeJobErrorId];

/** One problem found while validating a FloeJob. */
export interface FloeJobProblem {
  readonly id: FloeJobErrorId;
  readonly message: string;
}

/** FloeJob's props or job cannot be deployed; `issues` lists every problem found, each with its stable id. */
export class FloeJobValidationError extends ValidationError {
  readonly issues: readonly FloeJobProblem[];
  constructor(path: string, issues: readonly FloeJobProblem[]) {
    const code = issues.every((i) => i.id === FloeJobErrorId.InvalidJob) ? ErrorCode.InvalidJob : ErrorCode.InvalidOptions;
    super(code, `FloeJob '${path}'`, issues.map((i) => `[${i.id}] ${i.message}`));
    this.name = 'FloeJobValidationError';
    this.issues = issues;
  }
}
