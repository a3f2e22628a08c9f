/**
 * The contract between FloeJob and the Lambda handler modules (`functions/operator.ts`, `functions/coordinator.ts`,
 * `functions/control-api.ts`).
 *
 * A job file is user code, so it is bundled into every Lambda together with the handler: FloeJob generates one
 * small entry per handler kind that re-exports the handler module's `handler` and the job file's default export,
 *
 * ```ts
 * // .cache/floe-cdk/entries/<hash>/operator.ts (generated)
 * export { default } from '../../../../examples/wordcount.ts';
 * export { handler } from '../../../../functions/operator.ts';
 * ```
 *
 * and points {@link FloeEnv.JobModule} at the bundle itself, so a handler gets its job exactly as `floe run` does:
 * `loadJob(process.env.FLOE_JOB_MODULE, JSON.parse(process.env.FLOE_JOB_ARGS))`. Node's module cache hands back the
 * bundle the runtime already loaded, so there is one copy of the engine and `instanceof Job` holds. Everything else
 * (resource names, the vertex) arrives in the environment variables below; one bundle serves every vertex. The
 * control API runs no job code: it is bundled alone and gets only the job's name and resource names.
 */

/** Where the Lambda runtime unpacks a function's code, and the bundle's file name (NodejsFunction, ESM output). */
export const BUNDLE_MODULE_PATH = '/var/task/index.mjs';

/** Environment variables FloeJob sets on its functions. */
export const FloeEnv = {
  /** The module whose default export is the job: the function's own bundle (operator and coordinator functions). */
  JobModule: 'FLOE_JOB_MODULE',
  /** JSON array of the job arguments the job file's factory is called with (operator and coordinator functions). */
  JobArgs: 'FLOE_JOB_ARGS',
  /** Parallelism override passed to `buildPlan(job, { parallelism })`; unset when the job's own applies (operator and coordinator functions). */
  Parallelism: 'FLOE_PARALLELISM',
  /** Job name (all functions). */
  JobName: 'FLOE_JOB',
  /** The job file, relative to the project root, for logs (operator and coordinator functions). */
  JobFile: 'FLOE_JOB_FILE',
  /** Fingerprint of the deployed plan; a handler whose rebuilt plan differs should refuse to run (operator and coordinator functions). */
  PlanFingerprint: 'FLOE_PLAN_FINGERPRINT',
  /** JSON of the resolved checkpoint options (the job's, overlaid with the construct's), `dir` being the S3 root (operator and coordinator functions). */
  CheckpointOptions: 'FLOE_CHECKPOINT_OPTIONS',
  /** Checkpoint root, `s3://<bucket>`; checkpoints live under `<job>/checkpoints/` in it (all functions). */
  CheckpointDir: 'FLOE_CHECKPOINT_DIR',
  /** Default savepoint directory, `s3://<bucket>/<job>/savepoints` unless overridden (all functions). */
  SavepointDir: 'FLOE_SAVEPOINT_DIR',
  /** The checkpoint bucket's name (all functions). */
  CheckpointBucket: 'FLOE_CHECKPOINT_BUCKET',
  /** The DynamoDB coordinator table (all functions). */
  CoordinatorTable: 'FLOE_COORDINATOR_TABLE',
  /** ARN of the coordinator state machine, whose executions a reducer step may start (all functions). */
  StateMachineArn: 'FLOE_STATE_MACHINE_ARN',
  /**
   * JSON object vertex id → input queue URL, for the queues this function may send to: the coordinator gets the
   * sources (barriers) and the vertices with processing-time timers (timer wakes); an operator gets its outputs and the sources (its coordinator gateway carries out the effects
   * of the steps it writes, barriers included).
   */
  VertexQueueUrls: 'FLOE_VERTEX_QUEUE_URLS',
  /**
   * The functions' timeout in ms (operator and coordinator functions): the coordinator records it in the job row's
   * deployed plan, and `floe start` waits that long after fencing a generation, so no step of the old one is still
   * running when the state is rewritten.
   */
  FunctionTimeoutMs: 'FLOE_FUNCTION_TIMEOUT_MS',
  /** The DynamoDB state table (operator functions; the coordinator reads the source subtasks' control rows from it). */
  StateTable: 'FLOE_STATE_TABLE',
  /** The vertex an operator function runs (operator functions). */
  Vertex: 'FLOE_VERTEX',
  /** The dead-letter queue of the vertex's input queue, where the handler moves a malformed message with its reason (operator functions). */
  DeadLetterQueueUrl: 'FLOE_DEAD_LETTER_QUEUE_URL',
  /** Receives of a message before the vertex's queue dead-letters it (operator functions): a step failing on the last one fails the job over. */
  MaxReceiveCount: 'FLOE_MAX_RECEIVE_COUNT',
  /** Operator and coordinator functions: the longest delay of an idle source's backed-off wake, in ms (FloeJob `idleSourceMaxDelay`). */
  IdleSourceMaxDelayMs: 'FLOE_SOURCE_IDLE_MAX_DELAY_MS',
  /**
   * The coordinator-tasks queue (standard): where a vertex with processing-time timers schedules its timer wakes
   * (delayed messages), and where the coordinator sends a wake not yet due back with the time left and asks for a
   * delayed tick of its own (a restart that is due later). The coordinator and the functions of vertices with
   * processing-time timers.
   */
  CoordinatorQueueUrl: 'FLOE_COORDINATOR_QUEUE_URL',
} as const;
export type FloeEnv = (typeof FloeEnv)[keyof typeof FloeEnv];

/** Keys of the stack outputs a FloeJob writes; the CLI reads them (lib/hosts/lambda/stack-outputs.ts). */
export const FloeJobOutput = {
  JobName: 'FloeJobName',
  PlanFingerprint: 'FloePlanFingerprint',
  CheckpointBucket: 'FloeCheckpointBucket',
  CheckpointDir: 'FloeCheckpointDir',
  SavepointDir: 'FloeSavepointDir',
  StateTable: 'FloeStateTable',
  CoordinatorTable: 'FloeCoordinatorTable',
  StateMachineArn: 'FloeStateMachineArn',
  CoordinatorQueueUrl: 'FloeCoordinatorQueueUrl',
  QueueUrls: 'FloeQueueUrls',
  /** The control API's function URL (Flink's REST API for the job; IAM auth, requests signed with SigV4 for service `lambda`). */
  ControlApiUrl: 'FloeControlApiUrl',
} as const;
