/**
 * The operator Lambda's work: one vertex's SQS FIFO queue → per-subtask task steps (`SubtaskExecutor`) over the AWS
 * ports. `functions/operator.ts` only reads the environment and calls {@link createOperatorHandler}; emulator mode
 * calls it from an in-process poller. The protocol is in lib/runtime (task step) and lib/core; this file maps an SQS
 * batch onto it.
 *
 * A batch: records are sliced by `MessageGroupId` (= receiving subtask), keeping their order; slices run
 * concurrently (different subtasks), each as ONE task step over its envelopes. A malformed body is terminal: it is
 * sent to the vertex's dead-letter queue with the reason in message attributes and counted as handled. If the step
 * fails, every message of the slice that was not dead-lettered is reported in `batchItemFailures` (a FIFO group
 * must come back whole and in order, or it is reordered) and the cached executor is dropped; other slices go on.
 * Replaying a step is safe: outputs carry deterministic `seq`s and dedup ids, and the control row's conditional
 * commit fences a zombie. Snapshot writes and acks started by the step are awaited before returning (a Lambda must
 * not return with work in flight). An ack is held until its step has committed and dropped if the step failed (the
 * replay acks again). An ack that fails after its step committed cannot be retried by redelivery (the barrier is
 * consumed): it is logged, and the checkpoint's watchdog execution aborts or recovers it.
 *
 * Generation and lifecycle: read from the coordinator job row (`runtime.generation`, the run id `runtime.jobId`, and
 * whether the generation was cancelled) and cached per container for at most `runRefreshMs`; a message of a newer
 * generation reloads it, and so does every slice holding a wake (a stale container must not advance a source with
 * the old generation after a restore, nor after a cancel). Older envelopes are dropped by the step; older wakes are
 * dropped here. Once the row says the generation was CANCELED, every message of it is deleted unprocessed: no step,
 * no outputs, no state change, no next wake (so the source chains end).
 *
 * Sources are driven by wake-up messages on their own queue (see operator-wake.ts): `{"floe":"wake","gen","subtask",
 * "n"}`, `MessageGroupId` = subtask, dedup id from job/gen/subtask/n. The coordinator sends wake 0 to every source
 * subtask when a generation starts ({@link startSources}). A slice holding a current wake takes its step (which
 * reads up to `sourceChunkSize` records, so envelopes are big) and then, unless the subtask finished (end or stop
 * barrier) or its source reported end of input, sends wake n+1. Only wakes continue the chain, so a source subtask
 * has exactly one wake outstanding: steps run for barriers read a chunk too but send no wake, and several wakes in
 * one slice collapse into one.
 *
 * The chain is fenced durably: the step of wake n records n in the subtask's control row, committed with the step.
 * A wake that is not newer takes no step: the very wake last recorded (a redelivery, or the step committed but the
 * send of n+1 was lost) re-sends n+1, whose deduplication id is the same, and an older one is dropped — so a wake
 * delivered again after SQS's 5-minute deduplication window cannot start a second chain. The coordinator's tick
 * watches the chains (source-chains.ts) and re-sends the next wake of one that made no progress for a while (a wake
 * in the dead-letter queue), which the same fence makes safe.
 *
 * Pacing: a wake step that could read nothing (or a rate-limited source that may read its next record only later)
 * waits inside the invocation until the source can produce again, at most `sourceIdleWaitMs`, before sending the
 * next wake. FIFO queues have no per-message delay, and without the wait an idle chain spins: a Lambda invocation and
 * three SQS requests per round trip. A rate-limited source also waits until `sourceLingerMs` after its step began,
 * so that a slow source takes fewer, larger steps. The wait holds the subtask's message group, so a barrier behind
 * the wake waits as long at most. Slices holding wakes share one read of the job row per batch.
 *
 * Processing-time timers (timer-wakes.ts): a vertex with a keyed process function gets timer wakes
 * `{"floe":"timer","gen","subtask","due","id"}` on its queue, forwarded by the coordinator from the delayed messages its
 * steps schedule. A slice holding a current one steps with `timerWake` (the task step fires what is due, or does
 * nothing when nothing is); one of an older generation is dropped here. Timer wakes use the cached job row, like
 * envelopes.
 *
 * Backpressure (SQS has none): before a source step, a cached probe of the vertex's downstream queues
 * (downstream-backlog.ts) says whether any holds more than `maxDownstreamBacklog` messages per downstream subtask. If
 * so, the step runs with `read: false` (it still takes barriers and records its wake) and the chain pauses
 * `sourceIdleWaitMs` like an idle source before the next wake, so a barrier reaches the downstream queues behind a
 * bounded backlog. A step that may be a replay (a message of the slice delivered before, or a step of the subtask
 * that failed in this container) reads regardless: a replay of a step that read must send what it sent, not a prefix.
 * A wake the coordinator's watchdog re-sends after the original went to the dead-letter queue is a first delivery and
 * is not recognised as a replay.
 */
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { awsClients, type AwsClients } from '../../adapters/aws/clients.js';
import { StepFunctionsCheckpointExecutions } from '../../adapters/aws/step-functions-executions.js';
import { CoordinatorStoreGateway } from '../../coordination/gateway.js';
import { guardedObserver, type CoordinatorLogEntry } from '../../coordination/observer.js';
import { DynamoDbCoordinatorStore } from '../../adapters/aws/dynamodb-coordinator-store.js';
import { CoordinatorHost } from '../../coordination/host.js';
import { DynamoDbStateStore } from '../../adapters/aws/dynamodb-state-store.js';
import { decodeEnvelope, SQS_ENVELOPE_BYTES, SQS_RECORDS_PER_ENVELOPE } from '../../adapters/aws/envelope-codec.js';
import { S3CheckpointStorage } from '../../adapters/aws/s3-checkpoint-storage.js';
import type { SqsBatchResponse, SqsEvent, SqsRecord } from '../../adapters/aws/sqs-poller.js';
import { SqsQueueSender, type SqsQueueSenderOptions } from '../../adapters/aws/sqs-queue-sender.js';
import { ErrorCode, FloeError, failureCause } from '../../core/errors.js';
import { Layout } from '../../core/manifest/layout.js';
import type { ResolvedCheckpointOptions } from '../../core/options.js';
import { hasProcessingTimers, vertexById, type PhysicalPlan, type Vertex } from '../../graph/plan.js';
import type { Clock, CoordinatorGateway, Ports } from '../../ports/index.js';
import type { Envelope } from '../../core/envelope.js';
import { SubtaskExecutor, type StepResult } from '../../runtime/task-step.js';
import type { OperatorObservation, OperatorObserver } from './operator-observer.js';
import { isCanceled } from '../../core/coordinator/job-row.js';
import { IDLE_STEPS_BEFORE_BACKOFF, idleWakeDelayMs, parseWake, SOURCE_IDLE_MAX_DELAY_MS, sendWakes, type WakeMessage } from './source-wakes.js';
import { reportActivity, sendDelayedWake } from './wake-forwarder.js';
import { MAX_DELAY_SECONDS } from '../../coordination/checkpoint-tasks.js';
import { parseTimerWake, TIMER_WAKE_EARLY_MS, type TimerWakeMessage } from './timer-wakes.js';
import { SqsTimerWakeScheduler } from '../../adapters/aws/sqs-coordinator-tasks.js';
import { BACKLOG_PROBE_MS, DownstreamBacklogProbe, type BacklogReading } from '../../adapters/aws/downstream-backlog.js';
import { systemClock } from '../../adapters/local/system-clock.js';
import { RUN_REFRESH_MS } from '../../coordination/generation.js';

/** The AWS resources of one job, by name or URL. */
export interface AwsJobResources {
  readonly job: string;
  readonly stateTable: string;
  readonly coordinatorTable: string;
  /** `s3://bucket/prefix`: checkpoints live under `<job>/checkpoints/` in it. */
  readonly checkpointRoot: string;
  readonly savepointRoot?: string;
  /** Vertex id → its FIFO input queue URL. */
  readonly queueUrls: Readonly<Record<string, string>>;
  /** Vertex id → the dead-letter queue (FIFO) of its input queue. */
  readonly dlqUrls: Readonly<Record<string, string>>;
  /**
   * The coordinator-tasks queue (standard): a vertex with processing-time timers schedules its timer wakes there
   * (timer-wakes.ts). Empty: no timer wakes are scheduled, and a quiet subtask fires its processing-time timers only
   * when some message reaches it.
   */
  readonly tasksQueueUrl: string;
  /** The coordinator state machine; empty: no watchdog executions are started (tests). */
  readonly stateMachineArn: string;
}

/** Options of {@link createOperatorHandler}. */
export interface OperatorHandlerOptions {
  readonly plan: PhysicalPlan;
  /** The vertex whose queue this handler consumes. */
  readonly vertex: string;
  readonly resources: AwsJobResources;
  /** @default `awsClients()` */
  readonly clients?: AwsClients;
  /** @default the system clock */
  readonly clock?: Clock;
  /** The job's resolved checkpoint options (mode and incremental matter here). */
  readonly checkpoint: ResolvedCheckpointOptions;
  /** Serialize this process's job-row writes (moto's conditional writes are not atomic). @default false */
  readonly serializeLocalWrites?: boolean;
  /** Records a source subtask reads per step at most. @default 20000 */
  readonly sourceChunkSize?: number;
  /** Encoded bytes of records packed into one data envelope at most. @default 131072 (SQS_ENVELOPE_BYTES) */
  readonly maxEnvelopeBytes?: number;
  /**
   * Longest a wake step of a source that can read nothing now waits in the invocation before sending the next wake;
   * a rate-limited source's next-record time shortens it. 0 sends the next wake at once (an idle chain then spins).
   * @default 1000
   */
  readonly sourceIdleWaitMs?: number;
  /**
   * Scale to zero: after this many steps in a row read nothing, an idle source chain backs off — its next wake goes
   * through the coordinator-tasks queue with a delay of 1 s, then 2 s, 4 s … up to `sourceIdleMaxDelayMs`, instead of
   * waiting in the invocation (see `idleWakeDelayMs`). The first step that reads ends the backoff.
   * @default 10 (IDLE_STEPS_BEFORE_BACKOFF)
   */
  readonly sourceIdleStepsBeforeBackoff?: number;
  /**
   * Longest delay of a backed-off idle source's next wake, in ms: how late an idle source notices new input at most
   * (plus two queue hops). 0 turns the backoff off (an idle source steps about once a `sourceIdleWaitMs`). The
   * coordinator's watchdog must allow for it (`SourceChainsOptions.idleMaxDelayMs`).
   * @default 60000 (SOURCE_IDLE_MAX_DELAY_MS)
   */
  readonly sourceIdleMaxDelayMs?: number;
  /**
   * Shortest time from the start of a rate-limited source subtask's wake step to its next one: a step after which
   * the source must wait for its rate waits (within `sourceIdleWaitMs`) until this long after it started before
   * sending the next wake, so a slow source reads several records per step. Every step sends one envelope to each downstream subtask
   * its records hash to and commits its control row: steps per second, not records, set a slow source's request
   * rate, and with a keyed edge its envelopes grow with the square of the parallelism. A barrier waits at most this
   * long behind the pause. 0 steps as soon as one record may be read.
   * @default 0
   */
  readonly sourceLingerMs?: number;
  /**
   * Backpressure: messages (visible plus in flight) per downstream subtask in a source vertex's downstream queue above
   * which its source subtasks hold off reading (their steps still take barriers) and pause `sourceIdleWaitMs` before
   * the next wake. A barrier then waits behind about this many envelopes per downstream subtask. `Infinity` turns
   * backpressure off.
   * @default 100 (DEFAULT_MAX_DOWNSTREAM_BACKLOG)
   */
  readonly maxDownstreamBacklog?: number;
  /**
   * Limits of the SQS sends (message and SendMessageBatch bytes). @default SQS's own (1 MiB each); emulator mode
   * passes the 256 KiB that emulators still enforce for a batch.
   */
  readonly sqsLimits?: Pick<SqsQueueSenderOptions, 'maxMessageBytes' | 'maxBatchBytes'>;
  /**
   * Envelopes a subtask keeps that arrived ahead of a gap in their channel (SQS FIFO hands redeliveries back after
   * newer messages on some emulators); one more fails the job over with CHANNEL_GAP. A subtask that receives nothing
   * more cannot notice a gap: its next checkpoint then times out, and the failure budget fails the job over.
   * @default 64 (DEFAULT_MAX_ENVELOPES_AHEAD)
   */
  readonly maxEnvelopesAhead?: number;
  /** How long a gap may stay open before the next step fails the job over with CHANNEL_GAP. @default 900000 (15 minutes) */
  readonly gapTimeoutMs?: number;
  /**
   * How long a container reuses one reading of its downstream queues' backlog: the probe costs at most one
   * `GetQueueAttributes` per downstream queue per this long per container.
   * @default 1000
   */
  readonly backlogProbeMs?: number;
  /**
   * How long a container trusts its copy of the job row's generation and status before reading it again (slices with
   * a wake always read it). Bounds how long a non-source vertex goes on processing after a cancel.
   * @default 5000
   */
  readonly runRefreshMs?: number;
  /**
   * Receives of a message before its queue moves it to the dead-letter queue (the queue's redrive policy). A step that
   * fails on the last of them fails the job over (the job row says FAILING with the error) rather than let the queue
   * dead-letter an envelope, which would open a gap no receiver can fill; a step whose error follows from its input
   * (LIMIT_EXCEEDED, CHANNEL_GAP) fails the job at once.
   * @default 5 (FloeJob's and emulator mode's default)
   */
  readonly maxReceiveCount?: number;
  /** One JSON-able object per log line. @default JSON lines on stdout */
  readonly log?: (line: Record<string, unknown>) => void;
  /** Told of batches, steps, dead-lettered messages, acks and the coordinator effects they run, for metrics. @default none */
  readonly observer?: OperatorObserver;
}

/** Default records per source step on AWS: large, so envelopes are big and SQS and Lambda costs are per batch. */
export const AWS_SOURCE_CHUNK_SIZE = 20_000;

/** Default of {@link OperatorHandlerOptions.sourceIdleWaitMs}. */
export const SOURCE_IDLE_WAIT_MS = 1000;

/** Default of {@link OperatorHandlerOptions.maxDownstreamBacklog}: messages per downstream subtask. */
export const DEFAULT_MAX_DOWNSTREAM_BACKLOG = 100;

/** Encoded bytes of held-back envelopes (alignment, gaps) a subtask's DynamoDB control row carries itself; more are spilled to S3. */
export const INLINE_HELD_BYTES = 64 * 1024;

/** Error codes of a step that fails the same way on every delivery of its input: the job fails over at once. */
const HOPELESS_CODES: ReadonlySet<string> = new Set([ErrorCode.LimitExceeded, ErrorCode.ChannelGap]);

/** Default of {@link OperatorHandlerOptions.maxReceiveCount}. */
export const DEFAULT_MAX_RECEIVE_COUNT = 5;


/** Message attributes a dead-lettered message carries. */
export const DeadLetterAttr = { Code: 'FloeErrorCode', Reason: 'FloeErrorReason', MessageId: 'FloeSourceMessageId', Vertex: 'FloeVertex' } as const;

/** Longest reason put in a dead-letter attribute. */
const MAX_REASON = 4096;

const jsonLines = (line: Record<string, unknown>) => console.log(JSON.stringify({ time: new Date().toISOString(), ...line }));

/** One decoded record of a slice. */
type Item =
  | { readonly record: SqsRecord; readonly kind: 'envelope'; readonly envelope: Envelope }
  | { readonly record: SqsRecord; readonly kind: 'wake'; readonly wake: WakeMessage }
  | { readonly record: SqsRecord; readonly kind: 'timer'; readonly timer: TimerWakeMessage }
  | { readonly record: SqsRecord; readonly kind: 'malformed'; readonly error: FloeError };

interface CachedExecutor {
  readonly executor: SubtaskExecutor;
  readonly gen: number;
  readonly flags: {
    /** The subtask's source reported end of input through this executor: its wake chain ends. */
    sourceExhausted: boolean;
    /** Resolves once the running step has committed (true) or failed (false); acks of its snapshots wait for it. */
    committed: Promise<boolean>;
    /** The quiet (its `since`) this executor reported `activity` for already. */
    reportedQuiet?: number;
  };
  /** Steps of one executor run one at a time. */
  tail: Promise<unknown>;
}

interface RunInfo {
  readonly generation: number;
  readonly jobId: string;
  /** The generation was cancelled: its messages are dropped. */
  readonly canceled: boolean;
  /** The job is quiet since then (lib/core/coordinator/quiet.ts): a step that did work reports `activity`. */
  readonly quietSince?: number;
}

/** Builds the handler of one vertex's queue; executors, clients and ports live as long as the handler (a Lambda container). */
export function createOperatorHandler(options: OperatorHandlerOptions): (event: SqsEvent) => Promise<SqsBatchResponse> {
  const { plan, resources, checkpoint } = options;
  const vertex = vertexById(plan, options.vertex);
  if (resources.job !== plan.job) throw new FloeError(ErrorCode.InvalidOptions, `resources are for job '${resources.job}', the plan is '${plan.job}'`);
  const clients = options.clients ?? awsClients();
  const clock = options.clock ?? systemClock;
  const log = options.log ?? jsonLines;
  const observe = guardedObserver<OperatorObservation>(options.observer, (entry) => log({ ...entry }));
  const chunk = options.sourceChunkSize ?? AWS_SOURCE_CHUNK_SIZE;
  const idleWaitMs = options.sourceIdleWaitMs ?? SOURCE_IDLE_WAIT_MS;
  const refreshMs = options.runRefreshMs ?? RUN_REFRESH_MS;
  const lingerMs = options.sourceLingerMs ?? 0;
  const idleSteps = options.sourceIdleStepsBeforeBackoff ?? IDLE_STEPS_BEFORE_BACKOFF;
  const idleMaxDelayMs = options.sourceIdleMaxDelayMs ?? SOURCE_IDLE_MAX_DELAY_MS;
  if (!(idleWaitMs >= 0) || !(refreshMs >= 0) || !(lingerMs >= 0) || !(idleSteps >= 0) || !(idleMaxDelayMs >= 0)) {
    throw new FloeError(
      ErrorCode.InvalidOptions,
      `sourceIdleWaitMs, sourceLingerMs, runRefreshMs, sourceIdleStepsBeforeBackoff and sourceIdleMaxDelayMs must be >= 0, got ${idleWaitMs}, ${lingerMs}, ${refreshMs}, ${idleSteps} and ${idleMaxDelayMs}`,
    );
  }
  if (idleMaxDelayMs > MAX_DELAY_SECONDS * 1000) {
    throw new FloeError(ErrorCode.InvalidOptions, `sourceIdleMaxDelayMs must be at most ${MAX_DELAY_SECONDS * 1000} (SQS's longest delay), got ${idleMaxDelayMs}`);
  }
  const ports = buildPorts(options, clients, clock, log, observe);
  const probe = vertex.isSource ? backlogProbe(options, vertex, clients, clock, log) : undefined;
  /** Subtasks whose last step failed in this container: their next step may be a replay, and reads. */
  const replaying = new Set<number>();
  const executors = new Map<number, CachedExecutor>();
  let run: Promise<RunInfo> | undefined;
  let runLoadedAt = 0;

  const loadRun = (): Promise<RunInfo> => {
    runLoadedAt = clock.now();
    const p = ports.coordinatorStore.require(plan.job).then(
      (row): RunInfo => ({
        generation: row.runtime.generation,
        jobId: row.runtime.jobId,
        canceled: isCanceled(row),
        ...(row.state.quiet === undefined ? {} : { quietSince: row.state.quiet.since }),
      }),
    );
    run = p;
    p.catch(() => {
      if (run === p) run = undefined;
    });
    return p;
  };

  /**
   * The run's generation: cached, reloaded when asked to or when a message is newer. `fresh` answers a read of the
   * row begun after the batch arrived, shared by the batch's slices (one read per batch, not one per wake).
   */
  const runFor = async (newestGen: number, fresh: (() => Promise<RunInfo>) | undefined): Promise<RunInfo> => {
    let info = fresh ? await fresh() : !run || clock.now() - runLoadedAt >= refreshMs ? await loadRun() : await run;
    if (newestGen > info.generation) info = await loadRun();
    if (newestGen > info.generation) {
      throw new FloeError(ErrorCode.Storage, `message of generation ${newestGen} arrived, but the job row of '${plan.job}' is at generation ${info.generation}`, { retryable: true });
    }
    return info;
  };

  /**
   * Whether a source subtask resumes restored state: a restore writes operator state (the source's splits) but no
   * control row, and the executor must then keep the splits rather than assign initial ones. A source the restored
   * snapshot did not have (or a first start) has no operator state.
   */
  const restoredSourceUids = async (subtask: number): Promise<Set<string>> => {
    const source = vertex.operators[0]!;
    if (!vertex.isSource) return new Set();
    const store = ports.task.state.forSubtask({ vertex: vertex.id, subtask });
    if ((await store.readControl()) !== undefined) return new Set();
    return store.getOperatorState(source.uid).length > 0 ? new Set([source.uid]) : new Set();
  };

  const executorFor = async (subtask: number, info: RunInfo): Promise<CachedExecutor> => {
    const cached = executors.get(subtask);
    if (cached && cached.gen === info.generation) return cached;
    const restoredUids = await restoredSourceUids(subtask);
    const raced = executors.get(subtask);
    if (raced && raced.gen === info.generation) return raced;
    const flags: CachedExecutor['flags'] = { sourceExhausted: false, committed: Promise.resolve(false) };
    const coordinator: CoordinatorGateway = {
      // A snapshot's ack may be ready before its step commits; an ack of a step that never committed must not count
      // (the step is replayed and acks again), or a checkpoint could complete with the pending sink commits of an
      // attempt whose sink writes the replay redoes.
      acknowledge: async (ack) => {
        if (await flags.committed) {
          const result = await ports.gateway.receiveAcknowledge(ack);
          observe({ type: 'ack', subtask, checkpointId: ack.checkpointId, result });
        } else {
          log({ level: 'warn', message: `ack of checkpoint ${ack.checkpointId} dropped: its step did not commit`, job: plan.job, vertex: vertex.id, subtask });
          observe({ type: 'ack', subtask, checkpointId: ack.checkpointId, result: 'dropped' });
        }
      },
      decline: async (id, task, reason) => {
        await ports.gateway.decline(id, task, reason);
        observe({ type: 'decline', subtask, checkpointId: id });
      },
      sourceFinished: async (task) => {
        flags.sourceExhausted = true;
        await ports.gateway.sourceFinished(task);
      },
      failTask: (task, reason) => ports.gateway.failTask(task, reason, info.generation),
    };
    const executor = new SubtaskExecutor(
      {
        plan,
        vertex,
        subtask,
        gen: info.generation,
        runId: info.jobId,
        mode: checkpoint.mode,
        incremental: checkpoint.incremental,
        restoredUids,
        sourceChunkSize: chunk,
        maxRecordsPerEnvelope: SQS_RECORDS_PER_ENVELOPE,
        maxEnvelopeBytes: options.maxEnvelopeBytes ?? SQS_ENVELOPE_BYTES,
        // A DynamoDB item holds 400 KB: envelopes held back beyond this go to S3 next to the checkpoints.
        maxInlineHeldBytes: INLINE_HELD_BYTES,
        ...(options.maxEnvelopesAhead === undefined ? {} : { maxEnvelopesAhead: options.maxEnvelopesAhead }),
        ...(options.gapTimeoutMs === undefined ? {} : { gapTimeoutMs: options.gapTimeoutMs }),
        spillDir: Layout.spillDir(resources.checkpointRoot, plan.job, info.generation),
        stagingDir: Layout.stagingDir(resources.checkpointRoot, plan.job),
      },
      { ...ports.task, coordinator },
    );
    const entry: CachedExecutor = { executor, gen: info.generation, flags, tail: Promise.resolve() };
    executors.set(subtask, entry);
    return entry;
  };

  /** Runs one step on an executor after its previous one; awaits the snapshots the step started. */
  const stepOn = (entry: CachedExecutor, envelopes: readonly Envelope[], wake: number | undefined, read = true, timerWake?: number): Promise<{ result: StepResult; ackFailures: string[] }> => {
    const next = entry.tail.then(async () => {
      let settle!: (committed: boolean) => void;
      entry.flags.committed = new Promise<boolean>((resolve) => (settle = resolve));
      let result: StepResult;
      try {
        result = await entry.executor.step(envelopes, { ...(wake === undefined ? {} : { wake }), ...(read ? {} : { read }), ...(timerWake === undefined ? {} : { timerWake }) });
      } catch (e) {
        settle(false);
        throw e;
      }
      settle(true);
      const settled = await Promise.allSettled(result.pendingSnapshots);
      const ackFailures = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected').map((s) => String((s.reason as Error)?.message ?? s.reason));
      return { result, ackFailures };
    });
    entry.tail = next.catch(() => undefined);
    return next;
  };

  const deadLetter = async (item: Item & { kind: 'malformed' }, group: string): Promise<void> => {
    const url = resources.dlqUrls[vertex.id];
    if (!url) throw new FloeError(ErrorCode.InvalidOptions, `no dead-letter queue URL for vertex '${vertex.id}'`);
    const { record, error } = item;
    const text = (value: string) => ({ DataType: 'String', StringValue: value });
    await clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: url,
        // An empty body cannot be sent; SQS never delivers one, but a hand-built event might.
        MessageBody: record.body === '' ? '(empty body)' : record.body,
        MessageGroupId: group,
        MessageDeduplicationId: `dlq.${record.messageId}`.slice(0, 128).replace(/[^\x21-\x7E]/g, '_'),
        MessageAttributes: {
          [DeadLetterAttr.Code]: text(error.code),
          [DeadLetterAttr.Reason]: text(error.message.slice(0, MAX_REASON)),
          [DeadLetterAttr.MessageId]: text(record.messageId || '(none)'),
          [DeadLetterAttr.Vertex]: text(vertex.id),
        },
      }),
    );
  };

  const maxReceiveCount = options.maxReceiveCount ?? DEFAULT_MAX_RECEIVE_COUNT;

  /**
   * Fails the job over when a failed step cannot succeed by redelivery: its error follows from the input itself (a
   * service limit, a channel gap), or the slice's messages were delivered as often as the queue allows before it
   * dead-letters them. Any other error — a storage failure, a fenced commit, user code — may pass on a redelivery. Told to the coordinator like an ack, so the job row says FAILING with the operator and the error.
   */
  const failJobIfHopeless = async (subtask: number, generation: number | undefined, error: Error, items: readonly Item[], context: Record<string, unknown>): Promise<void> => {
    const code = (error as FloeError).code;
    // A fenced commit means a successor took over: its step, not this one, decides.
    if (generation === undefined || code === ErrorCode.CommitFenced) return;
    const terminal = error instanceof FloeError && HOPELESS_CODES.has(code);
    const deliveries = Math.max(1, ...items.map((i) => Number(i.record.attributes?.ApproximateReceiveCount ?? 1)));
    if (!terminal && deliveries < maxReceiveCount) return;
    const why = terminal ? error.message : `${error.message} (failed on all ${deliveries} deliveries its queue allows)`;
    log({ level: 'error', message: `failing the job over: subtask ${vertex.id}:${subtask} cannot get past its input: ${why}`, ...context, code });
    try {
      // The cause the job row records carries the stack trace of the code that threw (user code's, for a user function).
      await ports.gateway.failTask({ vertex: vertex.id, subtask }, failureCause(why, error), generation);
    } catch (e) {
      log({ level: 'error', message: `recording the failure in the job row failed: ${(e as Error).message}`, ...context });
    }
  };

  /** Handles one group's records in order; answers the message ids to retry. */
  const handleSlice = async (group: string, items: readonly Item[], freshRun: () => Promise<RunInfo>): Promise<string[]> => {
    const started = clock.now();
    const subtask = Number(group);
    const context = { job: plan.job, vertex: vertex.id, subtask: group };
    // Dead-letter malformed messages in order; a failed dead-letter send fails that message and all after it.
    let cut = items.length;
    let deadLettered = 0;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (item.kind !== 'malformed') continue;
      try {
        await deadLetter(item, group);
        deadLettered++;
        log({ level: 'warn', message: `message sent to the dead-letter queue: ${item.error.message}`, ...context, messageId: item.record.messageId, code: item.error.code });
        observe({ type: 'deadLettered', subtask, messageId: item.record.messageId, code: item.error.code });
      } catch (e) {
        log({ level: 'error', message: `dead-lettering message ${item.record.messageId} failed: ${(e as Error).message}`, ...context });
        cut = i;
        break;
      }
    }
    const live = items.slice(0, cut).filter((i) => i.kind !== 'malformed');
    const failedIds = (from: readonly Item[]) => from.map((i) => i.record.messageId);
    const rest = items.slice(cut);
    if (live.length === 0) return failedIds(rest);

    const envelopes = live.flatMap((i) => (i.kind === 'envelope' ? [i.envelope] : []));
    const wakes = live.flatMap((i) => (i.kind === 'wake' ? [i.wake] : []));
    const timers = live.flatMap((i) => (i.kind === 'timer' ? [i.timer] : []));
    /** The generation of the executor a step ran on, once one did: only such a step's failure may fail the job. */
    let stepGeneration: number | undefined;
    try {
      const newest = Math.max(...envelopes.map((e) => e.gen), ...wakes.map((w) => w.gen), ...timers.map((t) => t.gen));
      let info = await runFor(newest, wakes.length > 0 ? freshRun : undefined);
      // A cached "cancelled" may be stale: `floe start` takes a cancelled job to a new generation, whose messages must
      // not be dropped. Messages are dropped only on a read of the row begun after this batch arrived.
      if (info.canceled && wakes.length === 0) info = await runFor(newest, freshRun);
      if (info.canceled) {
        // Nothing newer than the row's generation is here (runFor), and that generation was cancelled: delete it all.
        executors.delete(subtask);
        log({ level: 'info', message: 'messages of a cancelled job dropped', ...context, gen: info.generation, messages: live.length, durationMs: clock.now() - started });
        return failedIds(rest);
      }
      const current = wakes.filter((w) => w.gen === info.generation);
      // A timer wake of a generation the job moved past: its timers were restored into the new one, which wakes them.
      const currentTimers = timers.filter((t) => t.gen === info.generation);
      const staleWakes = wakes.length - current.length + timers.length - currentTimers.length;
      // Only stale wakes: nothing to do for this generation (its chain was started anew).
      if (envelopes.length === 0 && current.length === 0 && currentTimers.length === 0) {
        log({ level: 'info', message: 'stale wakes dropped', ...context, gen: info.generation, messages: live.length, dropped: staleWakes, durationMs: clock.now() - started });
        return failedIds(rest);
      }
      const entry = await executorFor(subtask, info);
      stepGeneration = entry.gen;
      const wake = current.length > 0 ? Math.max(...current.map((w) => w.n)) : undefined;
      // Backpressure: hold the source off while its downstream queues are backed up, unless this may be a replay.
      const redelivered = live.some((i) => Number(i.record.attributes?.ApproximateReceiveCount ?? 1) > 1);
      let backlog: BacklogReading | undefined;
      if (probe?.enabled && !redelivered && !replaying.has(subtask)) backlog = await probe.read();
      const heldOff = backlog?.backedUp === true;
      const timerWake = currentTimers.length > 0 ? Math.max(...currentTimers.map((t) => t.due)) : undefined;
      // A timer wake the coordinator forwarded a little before it is due (it forwards within TIMER_WAKE_EARLY_MS, and
      // clocks differ): wait it out, so the step finds the timer due.
      const early = timerWake === undefined || envelopes.length > 0 ? 0 : Math.min(TIMER_WAKE_EARLY_MS, timerWake - clock.now());
      if (early > 0) await new Promise((resolve) => setTimeout(resolve, early));
      let outcome;
      try {
        outcome = await stepOn(entry, envelopes, wake, !heldOff, timerWake);
      } catch (e) {
        if (executors.get(subtask) === entry) executors.delete(subtask);
        if (probe) replaying.add(subtask);
        throw e;
      }
      replaying.delete(subtask);
      const { result, ackFailures } = outcome;
      let wakeSent: number | undefined;
      let pausedMs = 0;
      let delayedMs = 0;
      let idle = 0;
      // A stale wake's chain has moved on; a repeated one re-sends the next wake (same deduplication id) in case it was lost.
      if (wake !== undefined && result.wake !== 'stale' && !result.finished && !entry.flags.sourceExhausted) {
        const before = current.find((w) => w.n === wake)?.idle ?? 0;
        // Steps in a row that read nothing (held off by backpressure is not idle): an idle chain backs off.
        idle = result.wake !== 'new' ? before : result.idle && !heldOff ? before + 1 : 0;
        delayedMs = result.wake === 'new' && resources.tasksQueueUrl !== '' ? idleWakeDelayMs(idle, idleSteps, idleMaxDelayMs) : 0;
        pausedMs = result.wake !== 'new' || delayedMs > 0 ? 0 : heldOff ? idleWaitMs : pauseOf(result, started, clock.now(), idleWaitMs, lingerMs);
        if (pausedMs > 0) await new Promise((resolve) => setTimeout(resolve, pausedMs));
        wakeSent = wake + 1;
        if (delayedMs > 0) {
          await sendDelayedWake(clients.sqs, resources.tasksQueueUrl, { job: plan.job, vertex: vertex.id, gen: info.generation, subtask, n: wakeSent, idle }, clock.now(), delayedMs);
        } else {
          await sendWakes(clients.sqs, queueUrlOf(resources, vertex.id), plan.job, [{ gen: info.generation, subtask, n: wakeSent, ...(idle > 0 ? { idle } : {}) }]);
        }
      }
      // Work since the last barrier while the job looks quiet: periodic checkpoints must resume to commit it. A send
      // that fails fails the batch; its redelivery finds the work still counted in the control row and reports again.
      if (info.quietSince !== undefined && result.workSinceBarrier > 0 && entry.flags.reportedQuiet !== info.quietSince && resources.tasksQueueUrl !== '') {
        await reportActivity(clients.sqs, resources.tasksQueueUrl, { job: plan.job, vertex: vertex.id, subtask, gen: info.generation });
        entry.flags.reportedQuiet = info.quietSince;
        log({ level: 'info', message: 'work while the job is quiet: activity reported', ...context, gen: info.generation, work: result.workSinceBarrier });
      }
      for (const reason of ackFailures) log({ level: 'error', message: `checkpoint acknowledgement failed after the step committed: ${reason}`, ...context });
      observe({
        type: 'step',
        subtask,
        generation: info.generation,
        messages: live.length,
        recordsIn: result.recordsIn,
        recordsOut: result.recordsOut,
        dropped: result.dropped + staleWakes,
        barriers: result.pendingSnapshots.length,
        ackFailures: ackFailures.length,
        durationMs: clock.now() - started,
      });
      log({
        level: 'info',
        message: 'step',
        ...context,
        gen: info.generation,
        messages: live.length,
        envelopes: envelopes.length,
        wakes: wakes.length,
        ...(timers.length > 0 ? { timerWakes: timers.length } : {}),
        ...(result.timer === undefined ? {} : { timer: result.timer }),
        ...(result.timerWakeScheduled === undefined ? {} : { timerWakeScheduled: result.timerWakeScheduled }),
        deadLettered,
        recordsIn: result.recordsIn,
        recordsOut: result.recordsOut,
        dropped: result.dropped + staleWakes,
        snapshots: result.pendingSnapshots.length,
        finished: result.finished,
        idle: result.idle,
        ...(result.wake === undefined ? {} : { wake: result.wake }),
        ...(wakeSent === undefined ? {} : { nextWake: wakeSent }),
        ...(pausedMs > 0 ? { pausedMs } : {}),
        ...(delayedMs > 0 ? { delayedMs, idle } : {}),
        ...(heldOff ? { heldOff, backlog: backlog!.messages } : {}),
        durationMs: clock.now() - started,
      });
      return failedIds(rest);
    } catch (e) {
      const error = e as Error;
      await failJobIfHopeless(subtask, stepGeneration, error, [...live, ...rest], context);
      log({
        level: 'error',
        message: `step failed, ${live.length + rest.length} messages come back: ${error.name}: ${error.message}`,
        ...context,
        code: (e as FloeError).code,
        retryable: (e as FloeError).retryable,
        durationMs: clock.now() - started,
      });
      observe({ type: 'stepFailed', subtask, messages: live.length + rest.length, ...((e as FloeError).code === undefined ? {} : { code: (e as FloeError).code }), durationMs: clock.now() - started });
      return failedIds([...live, ...rest]);
    }
  };

  return async (event: SqsEvent): Promise<SqsBatchResponse> => {
    const slices = new Map<string, Item[]>();
    for (const record of event.Records) {
      const item = decodeRecord(record, vertex);
      const group = record.attributes?.MessageGroupId ?? groupOf(item);
      let slice = slices.get(group);
      if (!slice) slices.set(group, (slice = []));
      slice.push(item);
    }
    for (const [group, items] of slices) {
      // A record whose group is not a subtask of this vertex, or that names another receiver, cannot be processed.
      const subtask = Number(group);
      const valid = Number.isInteger(subtask) && subtask >= 0 && subtask < vertex.parallelism;
      slices.set(
        group,
        items.map((item) => {
          if (item.kind === 'malformed') return item;
          const to = item.kind === 'envelope' ? item.envelope.to : { op: vertex.id, subtask: item.kind === 'wake' ? item.wake.subtask : item.timer.subtask };
          if (valid && to.op === vertex.id && to.subtask === subtask && (item.kind !== 'envelope' || item.envelope.job === plan.job)) return item;
          const what = item.kind === 'envelope' ? `envelope for ${item.envelope.job}/${to.op}:${to.subtask}` : `${item.kind === 'timer' ? 'timer wake' : 'wake'} for subtask ${to.subtask}`;
          return malformed(item.record, `message ${item.record.messageId} in group '${group}' of vertex '${vertex.id}' (parallelism ${vertex.parallelism}) is a misrouted ${what}`);
        }),
      );
    }
    let fresh: Promise<RunInfo> | undefined;
    const freshRun = () => (fresh ??= loadRun());
    const failed = (await Promise.all([...slices].map(([group, items]) => handleSlice(group, items, freshRun)))).flat();
    observe({ type: 'batch', messages: event.Records.length, failed: failed.length });
    return { batchItemFailures: failed.map((itemIdentifier) => ({ itemIdentifier })) };
  };
}

/** Sends the first wake-up message to every source subtask (job start / after restore). */
export async function startSources(options: { plan: PhysicalPlan; resources: AwsJobResources; clients?: AwsClients; generation: number }): Promise<void> {
  const { plan, resources, generation } = options;
  const clients = options.clients ?? awsClients();
  await Promise.all(
    plan.vertices
      .filter((v) => v.isSource)
      .map((v) =>
        sendWakes(
          clients.sqs,
          queueUrlOf(resources, v.id),
          plan.job,
          Array.from({ length: v.parallelism }, (_, subtask) => ({ gen: generation, subtask, n: 0 })),
        ),
      ),
  );
}

/**
 * How long a wake step waits before the next wake: until a rate-limited source may read again but no sooner than
 * `lingerMs` after the step started (not at all when it may read now and did read), or the whole bound when it read
 * nothing; never longer than the bound.
 */
function pauseOf(result: StepResult, startedAt: number, now: number, boundMs: number, lingerMs: number): number {
  if (boundMs <= 0) return 0;
  // A rate-limited source whose next quantum is due later waits for it (and lingers); one that may read now is behind
  // its rate and steps again at once — unless it read nothing (its splits had no data): then it is idle like any other,
  // or it would spin.
  if (result.sourceReadyAt !== undefined && result.sourceReadyAt > now) return Math.min(boundMs, Math.max(result.sourceReadyAt, startedAt + lingerMs) - now);
  return result.idle ? boundMs : 0;
}

/** The backlog probe of a source vertex's downstream queues, one per handler (container). */
function backlogProbe(options: OperatorHandlerOptions, vertex: Vertex, clients: AwsClients, clock: Clock, log: (line: Record<string, unknown>) => void): DownstreamBacklogProbe {
  const downstream = [...new Set(vertex.outputs.map((e) => e.to))];
  return new DownstreamBacklogProbe({
    sqs: clients.sqs,
    queues: downstream.map((id) => ({ vertex: id, queueUrl: queueUrlOf(options.resources, id), parallelism: vertexById(options.plan, id).parallelism })),
    maxBacklogPerSubtask: options.maxDownstreamBacklog ?? DEFAULT_MAX_DOWNSTREAM_BACKLOG,
    cacheMs: options.backlogProbeMs ?? BACKLOG_PROBE_MS,
    clock,
    onError: (e) => log({ level: 'warn', message: `backlog probe of the downstream queues failed, the source reads as usual: ${e.name}: ${e.message}`, job: options.plan.job, vertex: vertex.id }),
  });
}

function queueUrlOf(resources: AwsJobResources, vertex: string): string {
  const url = resources.queueUrls[vertex];
  if (!url) throw new FloeError(ErrorCode.InvalidOptions, `no queue URL for vertex '${vertex}'`);
  return url;
}

function malformed(record: SqsRecord, message: string, cause?: unknown): Item {
  return { record, kind: 'malformed', error: new FloeError(ErrorCode.MalformedMessage, message, { cause }) };
}

/** Decodes a record into an envelope or a wake; anything else is malformed (terminal). */
function decodeRecord(record: SqsRecord, vertex: Vertex): Item {
  const source = `message ${record.messageId}`;
  try {
    const wake = parseWake(record.body);
    if (wake) {
      if (!vertex.isSource) return malformed(record, `${source}: a wake message reached vertex '${vertex.id}', which is not a source`);
      return { record, kind: 'wake', wake };
    }
    const timer = parseTimerWake(record.body);
    if (timer) {
      // A source steps on its own wakes, and advances processing time in each.
      if (vertex.isSource) return malformed(record, `${source}: a timer wake reached vertex '${vertex.id}', which is a source`);
      return { record, kind: 'timer', timer };
    }
    return { record, kind: 'envelope', envelope: decodeEnvelope(record.body, source) };
  } catch (e) {
    if (e instanceof FloeError && e.code === ErrorCode.MalformedMessage) return { record, kind: 'malformed', error: e };
    return malformed(record, `${source}: ${(e as Error).message}`, e);
  }
}

/** The group of a record without a `MessageGroupId` (not from a FIFO queue): its receiving subtask, if known. */
function groupOf(item: Item): string {
  if (item.kind === 'envelope') return String(item.envelope.to.subtask);
  if (item.kind === 'wake') return String(item.wake.subtask);
  if (item.kind === 'timer') return String(item.timer.subtask);
  return '';
}

interface HandlerPorts {
  /** The ports of a task step, but for the coordinator gateway, which each executor wraps. */
  readonly task: Omit<Ports, 'coordinator'>;
  readonly gateway: CoordinatorStoreGateway;
  readonly coordinatorStore: DynamoDbCoordinatorStore;
}

/** The AWS ports of one handler: state in DynamoDB, envelopes over SQS, snapshots in S3, acks to the job row. */
function buildPorts(options: OperatorHandlerOptions, clients: AwsClients, clock: Clock, log: (line: Record<string, unknown>) => void, observer: OperatorObserver): HandlerPorts {
  const { plan, resources } = options;
  const storage = new S3CheckpointStorage({ client: clients.s3 });
  const queue = new SqsQueueSender(clients.sqs, (v) => queueUrlOf(resources, v), options.sqsLimits);
  const state = new DynamoDbStateStore({ tableName: resources.stateTable, job: plan.job, client: clients.dynamodb });
  const coordinatorStore = new DynamoDbCoordinatorStore({
    client: clients.dynamodb,
    tableName: resources.coordinatorTable,
    ...(options.serializeLocalWrites === undefined ? {} : { serializeLocalWrites: options.serializeLocalWrites }),
  });
  const tasks = new CoordinatorHost({
    plan,
    store: coordinatorStore,
    storage,
    sender: queue,
    ...(resources.stateMachineArn ? { executions: new StepFunctionsCheckpointExecutions({ client: clients.sfn, stateMachineArn: resources.stateMachineArn, job: plan.job }) } : {}),
    clock,
    log: (entry: CoordinatorLogEntry) => log({ ...entry }),
    observer,
  });
  const gateway = new CoordinatorStoreGateway({ job: plan.job, store: coordinatorStore, effects: tasks, clock });
  // A quiet subtask steps only when a message reaches it: one whose processing-time timers are due is woken.
  const timers = hasProcessingTimers(vertexById(plan, options.vertex)) && resources.tasksQueueUrl !== '';
  const timerWakes = timers ? new SqsTimerWakeScheduler({ sqs: clients.sqs, queueUrl: resources.tasksQueueUrl, job: plan.job, clock }) : undefined;
  return { task: { clock, queue, state, storage, ...(timerWakes ? { timerWakes } : {}) }, gateway, coordinatorStore };
}
