/**
 * The job control of one control-API request: a deployed job seen by a process that keeps nothing between requests
 * (a Lambda container may serve the trigger and never see the status poll). {@link AwsJobControl} answers the reads
 * and cancel; triggers and their statuses are worked out here from durable state only:
 *
 * - a trigger id is 24 random hex digits followed by the checkpoint id it was started for as 8 hex digits (32 hex
 *   digits in all, the shape of Flink's trigger ids), and it is also the request id the coordinator records on the
 *   pending checkpoint;
 * - the trigger starts the execution `<job>-chk-<n>` for the job row's next checkpoint id with the request as its
 *   input, and waits (a few seconds at most) until the job row shows the request pending, so a checkpoint id taken
 *   by a periodic checkpoint in the meantime is retried with the next one before the caller gets the id;
 * - a status reads the job row (the pending checkpoint carries the request id; a finished one is recognised by its
 *   id and kind), the checkpoint's status item once it left the history, and the execution (whose input names the
 *   request) to tell an unknown trigger id from one the coordinator has not picked up yet or refused.
 */
import { randomBytes } from 'node:crypto';
import { DescribeExecutionCommand, ExecutionDoesNotExist } from '@aws-sdk/client-sfn';
import type { AwsClients } from '../../adapters/aws/clients.js';
import { StepFunctionsCheckpointExecutions } from '../../adapters/aws/step-functions-executions.js';
import type { CoordinatorRow } from '../../core/coordinator/job-row.js';
import { DynamoDbCoordinatorStore } from '../../adapters/aws/dynamodb-coordinator-store.js';
import type { CoordinatorState, Termination } from '../../core/coordinator/types.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import type { ResolvedCheckpointOptions } from '../../core/options.js';
import { HttpError } from '../../rest/http-error.js';
import { JobState, type JobOverview, type TriggerStatus } from '../../rest/job-control.js';
import type { RoutableJobControl } from '../../rest/router.js';
import { AwsJobControl } from './aws-job-control.js';
import type { FloeStackOutputs } from './stack-outputs.js';
import { checkpointExecutionName, type CheckpointRequestInput, type CheckpointExecutions } from '../../coordination/checkpoint-tasks.js';

/** Attempts at getting a checkpoint id for one trigger, when others take the id first. */
const MAX_TRIGGER_ATTEMPTS = 5;
/** Hex digits of a trigger id that carry the checkpoint id. */
const ID_DIGITS = 8;

/** What a Step Functions execution says of itself, as far as a trigger status needs it. */
export interface ExecutionSummary {
  readonly status: 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED' | 'PENDING_REDRIVE';
  /** The request id in the execution's input, if it carries a request. */
  readonly requestId?: string;
  /** What the request in the execution's input asked for. */
  readonly requestKind?: 'checkpoint' | 'savepoint';
  readonly error?: string;
  readonly cause?: string;
}

/** Looks up checkpoint `n`'s execution; undefined when there is none. */
export type DescribeCheckpointExecution = (checkpointId: number) => Promise<ExecutionSummary | undefined>;

/** Options of {@link DeployedJobControl.open}. */
export interface DeployedJobControlOptions {
  readonly outputs: FloeStackOutputs;
  readonly clients: AwsClients;
  /** @default a Step Functions client on the stack's state machine */
  readonly executions?: CheckpointExecutions;
  /** @default DescribeExecution of `<job>-chk-<n>` on the stack's state machine */
  readonly describe?: DescribeCheckpointExecution;
  /** How long a trigger waits for the coordinator to take its request up before answering anyway, in ms. @default 10000 */
  readonly triggerWaitMs?: number;
  /** Pause between two reads of the job row while a trigger waits, in ms. @default 200 */
  readonly pollMs?: number;
}

/** The trigger id of a request started for checkpoint `checkpointId`. */
export function triggerIdFor(random: string, checkpointId: number): string {
  return `${random}${checkpointId.toString(16).padStart(ID_DIGITS, '0')}`;
}

/** The checkpoint id a trigger id was started for, or undefined when it is not one of {@link triggerIdFor}'s. */
export function checkpointIdOfTrigger(triggerId: string): number | undefined {
  if (!/^[0-9a-f]{32}$/.test(triggerId)) return undefined;
  const n = Number.parseInt(triggerId.slice(-ID_DIGITS), 16);
  return n >= 1 ? n : undefined;
}

/** The ARN of an execution of a state machine: `arn:<partition>:states:<region>:<account>:execution:<machine>:<name>`. */
export function executionArn(stateMachineArn: string, name: string): string {
  const parts = stateMachineArn.split(':');
  if (parts.length < 7 || parts[5] !== 'stateMachine') throw new FloeError(ErrorCode.InvalidOptions, `'${stateMachineArn}' is not a state machine ARN`);
  return [...parts.slice(0, 5), 'execution', parts[6], name].join(':');
}

/** {@link DescribeCheckpointExecution} through DescribeExecution. */
export function describeWithStepFunctions(clients: AwsClients, outputs: FloeStackOutputs): DescribeCheckpointExecution {
  return async (checkpointId) => {
    const arn = executionArn(outputs.stateMachineArn, checkpointExecutionName(outputs.jobName, checkpointId));
    try {
      const res = await clients.sfn.send(new DescribeExecutionCommand({ executionArn: arn }));
      let request: { requestId?: unknown; kind?: unknown } | undefined;
      try {
        request = (JSON.parse(res.input ?? '{}') as { request?: typeof request }).request;
      } catch {
        // an input that is not JSON carries no request
      }
      return {
        status: (res.status ?? 'RUNNING') as ExecutionSummary['status'],
        ...(typeof request?.requestId === 'string' ? { requestId: request.requestId } : {}),
        ...(request?.kind === 'checkpoint' || request?.kind === 'savepoint' ? { requestKind: request.kind } : {}),
        ...(res.error === undefined ? {} : { error: res.error }),
        ...(res.cause === undefined ? {} : { cause: res.cause }),
      };
    } catch (e) {
      if (e instanceof ExecutionDoesNotExist || (e as Error).name === 'ExecutionDoesNotExist') return undefined;
      throw e;
    }
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A deployed job as one control-API request sees it; see the file comment. */
export class DeployedJobControl implements RoutableJobControl {
  private readonly store: DynamoDbCoordinatorStore;
  private readonly executions: CheckpointExecutions;
  private readonly describe: DescribeCheckpointExecution;

  private constructor(
    private readonly options: DeployedJobControlOptions,
    private readonly reads: AwsJobControl,
    private row: CoordinatorRow,
  ) {
    const { outputs, clients } = options;
    this.store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: outputs.coordinatorTable });
    this.executions = options.executions ?? new StepFunctionsCheckpointExecutions({ client: clients.sfn, stateMachineArn: outputs.stateMachineArn, job: outputs.jobName });
    this.describe = options.describe ?? describeWithStepFunctions(clients, outputs);
  }

  /** Reads the job row once for the request; throws NotFound when the job has none (never started). */
  static async open(options: DeployedJobControlOptions): Promise<DeployedJobControl> {
    // Reads and cancel only: this class starts the executions of its triggers itself.
    const reads = await AwsJobControl.open({ outputs: options.outputs, clients: options.clients });
    const store = new DynamoDbCoordinatorStore({ client: options.clients.dynamodb, tableName: options.outputs.coordinatorTable });
    const row = await store.require(options.outputs.jobName);
    return new DeployedJobControl(options, reads, row);
  }

  private get job(): string {
    return this.options.outputs.jobName;
  }

  private async load(): Promise<CoordinatorRow> {
    this.row = await this.store.require(this.job);
    return this.row;
  }

  private isRunning(): boolean {
    return this.row.state.status === 'RUNNING' && this.reads.overview().state === JobState.Running;
  }

  /**
   * Starts an execution for the next checkpoint id and waits until the coordinator took the request up, moving on to
   * the next id when another checkpoint took this one first. Answers the trigger id.
   */
  private async trigger(kind: 'checkpoint' | 'savepoint', dir?: string, termination?: Termination): Promise<string> {
    if (!this.isRunning()) throw new FloeError(ErrorCode.BadRequest, `job '${this.job}' is ${this.reads.overview().state}; it takes ${kind}s only while RUNNING`);
    const waitMs = this.options.triggerWaitMs ?? 10_000;
    const pollMs = this.options.pollMs ?? 200;
    const deadline = Date.now() + waitMs;
    const random = randomBytes(12).toString('hex');
    let row = this.row;
    for (let attempt = 1; attempt <= MAX_TRIGGER_ATTEMPTS; attempt++) {
      // The Trigger task refuses a checkpoint while `maxConcurrent` are pending; wait for a free slot rather than burn an id.
      while (row.state.pending.length >= row.state.options.maxConcurrent && Date.now() < deadline) {
        await sleep(pollMs);
        row = await this.load();
      }
      if (row.state.status !== 'RUNNING') throw new FloeError(ErrorCode.BadRequest, `job '${this.job}' is ${row.state.status}; it takes ${kind}s only while RUNNING`);
      const n = row.state.nextCheckpointId;
      const id = triggerIdFor(random, n);
      const request: CheckpointRequestInput = { requestId: id, kind, ...(dir === undefined ? {} : { dir }), ...(termination === undefined ? {} : { termination }) };
      const { started } = await this.executions.start(n, request);
      if (started) {
        const outcome = await this.awaitPickUp(id, n, kind, deadline, pollMs);
        if (outcome !== 'taken') return id;
      } else {
        // `<job>-chk-<n>` exists: someone else's checkpoint n, whose Trigger task moves the row's next id on.
        while (this.row.state.nextCheckpointId <= n && Date.now() < deadline) {
          await sleep(pollMs);
          await this.load();
        }
      }
      row = this.row;
      if (Date.now() >= deadline) break;
    }
    const next = this.row.state.nextCheckpointId;
    throw new HttpError(
      503,
      `no checkpoint id could be had for the ${kind} of job '${this.job}' within ${waitMs} ms: other checkpoints kept taking the next id (now ${next}), or the execution of checkpoint ${next} exists while the job row has not allocated it; try again`,
    );
  }

  /** Waits until the job row shows request `id` pending as checkpoint `n` ('ours'), another checkpoint took `n` ('taken'), the execution ended without it ('refused'), or the deadline passed. */
  private async awaitPickUp(id: string, n: number, kind: 'checkpoint' | 'savepoint', deadline: number, pollMs: number): Promise<'ours' | 'taken' | 'refused' | 'timeout'> {
    let lastDescribe = Date.now();
    for (;;) {
      const { state } = await this.load();
      if (state.pending.some((p) => p.requestId === id)) return 'ours';
      if (state.nextCheckpointId > n) {
        // Allocated: ours if it already finished as a checkpoint of our kind, someone else's otherwise.
        const record = state.history.find((h) => h.id === n);
        return !state.pending.some((p) => p.id === n) && record?.kind === kind ? 'ours' : 'taken';
      }
      if (Date.now() >= deadline) return 'timeout';
      if (Date.now() - lastDescribe >= 1000) {
        lastDescribe = Date.now();
        const execution = await this.describe(n);
        if (execution && execution.status !== 'RUNNING') return 'refused';
      }
      await sleep(pollMs);
    }
  }

  // RoutableJobControl

  overview(): JobOverview {
    return this.reads.overview();
  }

  coordinatorState(): CoordinatorState {
    return this.row.state;
  }

  checkpointConfig(): ResolvedCheckpointOptions {
    return this.row.state.options;
  }

  triggerCheckpoint(): Promise<string> {
    return this.trigger('checkpoint');
  }

  /** Checks a savepoint target as {@link AwsJobControl.validateSavepointTarget} does: inside the job's own bucket. */
  validateSavepointTarget(dir: string | undefined): Promise<string> {
    return this.reads.validateSavepointTarget(dir);
  }

  triggerSavepoint(options: { dir?: string; termination?: Extract<Termination, 'stop' | 'drain'> }): Promise<string> {
    return this.trigger('savepoint', options.dir ?? this.options.outputs.savepointDir ?? this.row.runtime.savepointDir, options.termination);
  }

  /**
   * The status of a trigger from the job row, the checkpoint's status item and its execution; undefined for an id
   * no execution was started with. A request whose checkpoint id another checkpoint took is FAILED (trigger again).
   */
  async triggerStatus(triggerId: string): Promise<TriggerStatus | undefined> {
    const n = checkpointIdOfTrigger(triggerId);
    if (n === undefined) return undefined;
    const { state } = this.row;
    const mine = state.pending.find((p) => p.requestId === triggerId);
    if (mine) return { status: 'IN_PROGRESS', checkpointId: mine.id };
    const execution = await this.describe(n);
    if (!execution || execution.requestId !== triggerId) return undefined;
    const request = execution.requestKind ?? 'savepoint';
    if (state.nextCheckpointId <= n) {
      if (execution.status === 'RUNNING') return { status: 'IN_PROGRESS' };
      return { status: 'FAILED', failureCause: `the coordinator did not start checkpoint ${n}: ${[execution.error, execution.cause].filter(Boolean).join(': ') || execution.status}` };
    }
    if (state.pending.some((p) => p.id === n)) return taken(n, 'a checkpoint the coordinator started itself');
    const record = state.history.find((h) => h.id === n);
    if (record) {
      if (record.kind !== request) return taken(n, `a ${record.kind}`);
      return record.status === 'COMPLETED'
        ? { status: 'COMPLETED', checkpointId: n, ...(record.externalPath === undefined ? {} : { location: record.externalPath }) }
        : { status: 'FAILED', checkpointId: n, failureCause: record.failureReason ?? `${record.kind} failed` };
    }
    // Gone from the history (it keeps the newest few): the checkpoint's status item still knows how it ended.
    const item = await this.store.getCheckpointStatus(this.job, n);
    if (!item || item.status === 'IN_PROGRESS') return execution.status === 'RUNNING' ? { status: 'IN_PROGRESS', checkpointId: n } : { status: 'FAILED', checkpointId: n, failureCause: `checkpoint ${n} left the job's history before it was seen to finish` };
    if (item.kind !== request) return taken(n, `a ${item.kind}`);
    return item.status === 'COMPLETED'
      ? { status: 'COMPLETED', checkpointId: n, ...(item.path === undefined ? {} : { location: item.path }) }
      : { status: 'FAILED', checkpointId: n, failureCause: item.reason ?? `${item.kind} failed` };
  }

  /** Cancels through {@link AwsJobControl.cancel}, as the embedded runner's REST API does through its own. */
  cancel(): Promise<void> {
    return this.reads.cancel();
  }
}

function taken(n: number, by: string): TriggerStatus {
  return { status: 'FAILED', failureCause: `checkpoint ${n} was taken by ${by} before the request reached the coordinator; trigger again` };
}
