/**
 * Emulator mode: runs a job on an AWS-compatible endpoint (moto server, LocalStack, fakecloud) with the same handlers
 * the Lambdas run, called in-process by pollers that behave like Lambda's SQS event source mapping.
 *
 *     provision (idempotent) ─▶ purge queues ─▶ restore state into DynamoDB ─▶ new job row (generation + 1)
 *       ─▶ pollers: one per vertex queue (operator handler), one for the tasks queue (coordinator tasks)
 *       ─▶ start sources (wake-ups, recorded in the row) ─▶ tick timer (what the schedule sends on AWS; it also runs the
 *          source chains' watchdog) ─▶ wait for the job row's status: FINISHED, FAILING (restart) or CANCELED
 *
 * A cancel through the job row (`floe cancel --stack/--outputs`, another process) ends the run CANCELED as one
 * through this runner's own REST API does; a cancel here is written to the row too, so every reader sees it.
 *
 * The job row in the coordinator table is the truth: the REST API reads a copy refreshed a few times a second, and
 * triggers go through the coordinator store like every other event.
 */
import { randomBytes } from 'node:crypto';
import { GetQueueAttributesCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { Job } from '../../api/job.js';
import { JobStatus, isCanceled, type CoordinatorRow } from '../../core/coordinator/job-row.js';
import type { Termination } from '../../core/coordinator/types.js';
import { checkS3SavepointTarget } from '../../core/savepoint-target.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import { resolveCheckpointOptions, type CheckpointOptions } from '../../core/options.js';
import { listCheckpoints, type LoadedManifest } from '../../runtime/snapshot-catalog.js';
import { cancelJob } from '../../coordination/cancel.js';
import { COORDINATOR_TASK_MESSAGE_VERSION } from '../../coordination/checkpoint-tasks.js';
import { SinkCommitRegistry } from '../../coordination/commits.js';
import { nextGenerationRow, QUIET_AFTER_MS, QUIET_TICK_MS, removeUncommittedOutput } from '../../coordination/generation.js';
import { CoordinatorHost } from '../../coordination/host.js';
import { coordinatorLine } from '../../coordination/observer.js';
import { restoreSnapshot } from '../../coordination/restore.js';
import { type AttemptOutcome, type RunOutcome } from '../../coordination/restarts.js';
import { awsClients, type AwsClients } from '../../adapters/aws/clients.js';
import { DynamoDbCoordinatorStore } from '../../adapters/aws/dynamodb-coordinator-store.js';
import { DynamoDbStateStore } from '../../adapters/aws/dynamodb-state-store.js';
import { S3CheckpointStorage } from '../../adapters/aws/s3-checkpoint-storage.js';
import { SqsEventSourcePoller } from '../../adapters/aws/sqs-poller.js';
import { SqsQueueSender } from '../../adapters/aws/sqs-queue-sender.js';
import { StepFunctionsCheckpointExecutions } from '../../adapters/aws/step-functions-executions.js';
import { JobState, type JobControl } from '../../rest/job-control.js';
import { createCoordinatorTaskHandler } from '../lambda/coordinator-task-handler.js';
import { createOperatorHandler, type AwsJobResources } from '../lambda/operator-handler.js';
import { SourceChains } from '../lambda/source-chains.js';
import { WakeForwarder } from '../lambda/wake-forwarder.js';
import { enableMotoStepFunctionsExecution, provisionEmulatorJob, provisionFeedQueues, purgeJobQueues, type EmulatorJobResources } from './provision.js';
import { JobRun, type JobRunOptions } from '../job-run.js';

/** Options of an emulator-mode run; the job's own options are the defaults. */
export interface EmulatorRunOptions extends JobRunOptions {
  /** Endpoint URL of the emulator, e.g. `http://127.0.0.1:5000`. */
  readonly endpoint: string;
  /** Overrides of the job's checkpoint options; `dir` must be an `s3://` URL when given. @default checkpoints in the job's bucket */
  readonly checkpoint?: CheckpointOptions;
  /** Default savepoint directory (`s3://…`). @default `s3://<bucket>/<job>/savepoints` */
  readonly savepointDir?: string;
  /** Mixed into the resource names, to keep runs of the same job apart (tests). @default '' */
  readonly namespace?: string;
  /** AWS region for the clients. @default the SDK's resolution, else us-east-1 */
  readonly region?: string;
  /** AWS clients to use instead of ones built from `endpoint` and `region` (e.g. instrumented ones). @default `awsClients({ endpoint, region })` */
  readonly clients?: AwsClients;
  /** How often the job row is read for the REST API and the job's status, in ms. @default 250 */
  readonly refreshMs?: number;
  /**
   * Records a source subtask reads per step at most. Smaller than on AWS, where large steps save cost: emulators are
   * slow, and barriers reach a source only between its steps, so small steps let checkpoints cut a source's input
   * while it is being read rather than after.
   * @default 1000
   */
  readonly sourceChunkSize?: number;
  /**
   * Shortest time between the starts of two wake steps of a rate-limited source subtask (`OperatorHandlerOptions.sourceLingerMs`).
   * Longer than on AWS: an emulator serves few requests a second, and each step of a slow source costs a control row
   * commit and an envelope per downstream subtask whatever it read.
   * @default 500
   */
  readonly sourceLingerMs?: number;
  /**
   * Backpressure: messages per downstream subtask queued for a source vertex's downstream vertex above which its
   * sources hold off reading (`OperatorHandlerOptions.maxDownstreamBacklog`). Smaller than on AWS: an emulator drains
   * a queue slowly, and a barrier waits behind the whole backlog.
   * @default 4 (EMULATOR_MAX_DOWNSTREAM_BACKLOG)
   */
  readonly maxDownstreamBacklog?: number;
  /**
   * How often the runner sends the coordinator a tick (the deployed schedule's stand-in), in ms. A quiet job is ticked
   * once a minute whatever this is, as deployed.
   * @default a quarter of the checkpoint interval, from 200 ms to 1 s (1 s with periodic checkpoints off)
   */
  readonly tickIntervalMs?: number;
  /** Idle source backoff: steps in a row that read nothing before it starts (`OperatorHandlerOptions.sourceIdleStepsBeforeBackoff`). @default 10, as deployed */
  readonly sourceIdleStepsBeforeBackoff?: number;
  /** Idle source backoff: the longest delay between two wakes of an idle source, in ms; 0 turns it off (`OperatorHandlerOptions.sourceIdleMaxDelayMs`). @default 60000, as deployed */
  readonly sourceIdleMaxDelayMs?: number;
}

/** Default of {@link EmulatorRunOptions.maxDownstreamBacklog}. */
export const EMULATOR_MAX_DOWNSTREAM_BACKLOG = 4;

/**
 * SQS limits emulator mode sends within: 256 KiB per message and per SendMessageBatch, SQS's limits before they
 * became 1 MiB in 2025 and the ones emulators still enforce (fakecloud refuses a larger batch). Envelopes are cut at
 * 128 KiB, so they fit either way; deployed functions use SQS's 1 MiB.
 */
export const EMULATOR_SQS_LIMITS = { maxMessageBytes: 262_144, maxBatchBytes: 262_144 } as const;

/**
 * Runs a job in emulator mode and serves {@link JobControl} from its job row: the REST API and the CLI work as with
 * the embedded runner.
 */
export class EmulatorRunner extends JobRun implements JobControl {
  private readonly jobIdValue = randomBytes(16).toString('hex');
  private readonly clients: AwsClients;
  private row: CoordinatorRow | undefined;
  private resources: EmulatorJobResources | undefined;
  private tasks: CoordinatorHost | undefined;
  /** Messages last seen in each dead-letter queue, by URL. */
  private readonly deadLetters = new Map<string, number>();
  private wake: () => void = () => {};
  private stoppedResolve!: () => void;
  private readonly stopped = new Promise<void>((r) => (this.stoppedResolve = r));

  constructor(
    job: Job,
    private readonly options: EmulatorRunOptions,
  ) {
    // Checkpoint options are resolved again once the bucket is known; the first copy validates early and serves checkpointConfig() before.
    super(job, options);
    this.clients = options.clients ?? awsClients({ endpoint: options.endpoint, region: options.region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1') });
  }

  /** The run's job id (32 hex digits). */
  get jobId(): string {
    return this.jobIdValue;
  }

  protected currentRow(): CoordinatorRow | undefined {
    return this.row;
  }

  protected override restartCount(): number {
    return this.row?.runtime.restarts?.attempts ?? 0;
  }

  /** Provisions, restores, runs the job until its row says FINISHED or FAILING or it is cancelled, and stops the pollers. */
  async run(): Promise<RunOutcome> {
    this.started();
    try {
      return await this.runAttempts(await this.provision());
    } catch (e) {
      return this.ended({ state: 'FAILED', error: e instanceof Error ? e : new Error(String(e)) });
    } finally {
      this.stoppedResolve();
    }
  }

  /** One attempt: a new generation from `restore` (or empty), pollers and ticks until the job row says it ended. */
  protected async runAttempt(restore: LoadedManifest | undefined): Promise<AttemptOutcome> {
    const pollers: SqsEventSourcePoller[] = [];
    let ticker: NodeJS.Timeout | undefined;
    try {
      const { resources, store } = await this.prepareAttempt(restore);
      const clients = this.clients;
      const handlerResources: AwsJobResources = {
        job: resources.job,
        stateTable: resources.stateTable,
        coordinatorTable: resources.coordinatorTable,
        checkpointRoot: this.checkpointOptions.dir,
        savepointRoot: this.options.savepointDir ?? resources.savepointRoot,
        queueUrls: resources.queueUrls,
        dlqUrls: resources.dlqUrls,
        tasksQueueUrl: resources.tasksQueueUrl,
        stateMachineArn: resources.stateMachineArn,
      };
      const onError = (what: string) => (error: unknown) => this.log(`${what}: ${(error as Error).message ?? String(error)}`);
      for (const v of this.plan.vertices) {
        const handler = createOperatorHandler({
          plan: this.plan,
          vertex: v.id,
          resources: handlerResources,
          clients,
          clock: this.clock,
          checkpoint: this.checkpointOptions,
          // Moto's conditional writes are not atomic under concurrent requests; every writer is in this process.
          serializeLocalWrites: true,
          sourceChunkSize: this.options.sourceChunkSize ?? 1000,
          sourceLingerMs: this.options.sourceLingerMs ?? 500,
          maxDownstreamBacklog: this.options.maxDownstreamBacklog ?? EMULATOR_MAX_DOWNSTREAM_BACKLOG,
          ...(this.options.sourceIdleStepsBeforeBackoff === undefined ? {} : { sourceIdleStepsBeforeBackoff: this.options.sourceIdleStepsBeforeBackoff }),
          ...(this.options.sourceIdleMaxDelayMs === undefined ? {} : { sourceIdleMaxDelayMs: this.options.sourceIdleMaxDelayMs }),
          sqsLimits: EMULATOR_SQS_LIMITS,
          log: (line) => this.onHandlerLog(v.id, line),
        });
        pollers.push(
          new SqsEventSourcePoller(clients.sqs, {
            queueUrl: resources.queueUrls[v.id]!,
            handler,
            // Short polls with a pause when empty: moto spins through a long poll of a FIFO queue whose visible
            // messages all belong to groups in flight, taking the CPU the handlers' own requests need.
            waitTimeSeconds: 0,
            emptyReceiveDelayMs: 20,
            maxEmptyReceiveDelayMs: 1000,
            retryDelaySeconds: 1,
            concurrency: v.isSource ? 1 : Math.min(10, Math.max(1, v.parallelism)),
            onError: onError(`vertex ${v.id}`),
          }),
        );
      }
      pollers.push(
        new SqsEventSourcePoller(clients.sqs, {
          queueUrl: resources.tasksQueueUrl,
          handler: createCoordinatorTaskHandler({
            tasks: this.tasks!,
            sfn: clients.sfn,
            log: (e) => this.onCoordinatorLog(e),
            wakes: new WakeForwarder({ job: this.plan.job, sqs: clients.sqs, queueUrls: resources.queueUrls, tasksQueueUrl: resources.tasksQueueUrl, clock: this.clock }),
          }),
          waitTimeSeconds: 1,
          retryDelaySeconds: 1,
          concurrency: 2,
          onError: onError('coordinator tasks'),
        }),
      );
      await Promise.all(pollers.map((p) => p.start()));
      this.state = JobState.Running;
      this.row = await this.tasks!.startSources();

      // EventBridge Scheduler does not fire on emulators: send the coordinator the tick the schedule would send. A
      // quiet job (lib/core/coordinator/quiet.ts) is ticked once a minute, as the deployed ticker does.
      const tick = JSON.stringify({ v: COORDINATOR_TASK_MESSAGE_VERSION, type: 'tick', job: this.plan.job });
      const interval = this.checkpointOptions.interval;
      const tickMs = this.options.tickIntervalMs ?? Math.max(200, Math.min(1000, interval > 0 ? interval / 4 : 1000));
      let tickedAt = Number.NEGATIVE_INFINITY;
      ticker = setInterval(() => {
        const now = this.clock.now();
        if (this.row?.state.quiet?.confirmed === true && now - tickedAt < QUIET_TICK_MS) return;
        tickedAt = now;
        clients.sqs.send(new SendMessageCommand({ QueueUrl: resources.tasksQueueUrl, MessageBody: tick })).catch(onError('sending a tick'));
      }, tickMs);

      return await this.watch(store);
    } finally {
      if (ticker) clearInterval(ticker);
      await Promise.all(pollers.map((p) => p.stop()));
    }
  }

  /** Provisions the job's resources (once per run) and settles the checkpoint options on its bucket. */
  private async provision(): Promise<S3CheckpointStorage> {
    const clients = this.clients;
    if (await enableMotoStepFunctionsExecution(this.options.endpoint)) this.log('moto server detected: Step Functions execution turned on');
    const resources = await provisionEmulatorJob({ plan: this.plan, clients, checkpoint: this.checkpointOptions, namespace: this.options.namespace });
    this.resources = resources;
    const dir = this.options.checkpoint?.dir ?? resources.checkpointRoot;
    if (!dir.startsWith('s3://')) throw new FloeError(ErrorCode.InvalidOptions, `emulator mode keeps checkpoints in S3: checkpoint.dir must be an s3:// URL, got '${dir}'`);
    this.checkpointOptions = resolveCheckpointOptions({ ...this.job.options.checkpoint, ...this.options.checkpoint, dir });
    this.log(`provisioned ${resources.stateTable}, ${resources.coordinatorTable}, s3://${resources.bucket}, ${Object.keys(resources.queueUrls).length} vertex queues and the coordinator state machine`);
    // Sources' feed queues; the source finds its queue in the environment, as a deployed function does.
    const region = await clients.sqs.config.region();
    const feeds = await provisionFeedQueues(this.plan, clients, { namespace: this.options.namespace, eventBridge: new EventBridgeClient({ endpoint: this.options.endpoint, region }) });
    for (const f of feeds) {
      process.env[f.env] = f.url;
      this.log(`provisioned the feed queue of source '${f.uid}': ${f.url}`);
    }
    return new S3CheckpointStorage({ client: clients.s3 });
  }

  /** Restores (or clears) state and writes the new job row for the next generation; answers that generation. */
  private async prepareAttempt(restore: LoadedManifest | undefined): Promise<{ resources: EmulatorJobResources; store: DynamoDbCoordinatorStore; generation: number }> {
    const clients = this.clients;
    const resources = this.resources!;
    await purgeJobQueues(clients, resources);
    const storage = new S3CheckpointStorage({ client: clients.s3 });
    const store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: resources.coordinatorTable, serializeLocalWrites: true });
    const previous = await store.load(this.plan.job);
    const root = this.checkpointOptions.dir;
    const existing = await listCheckpoints(storage, root, this.plan.job);
    // Checkpoint directories without a manifest never completed: remove them.
    await storage.delete((await Promise.all(existing.filter((c) => !c.complete).map((c) => storage.list(c.dir)))).flat());
    // Every run is a new generation, restored or not, so whatever an older run left in flight is dropped.
    const generation = Math.max(previous?.runtime.generation ?? 0, restore?.manifest.generation ?? 0) + 1;

    const stateStore = new DynamoDbStateStore({ tableName: resources.stateTable, job: this.plan.job, client: clients.dynamodb });
    await stateStore.clear();
    if (restore) {
      const registry = new SinkCommitRegistry(this.plan);
      await restoreSnapshot(restore, {
        target: this.plan,
        allowNonRestoredState: this.options.allowNonRestoredState ?? false,
        state: stateStore,
        storage,
        commit: (commits) => registry.commitAll(commits),
        log: this.log,
      });
      this.restored(restore, generation);
    }
    // Output a previous run wrote but no checkpoint committed is replayed by this one.
    await removeUncommittedOutput(this.plan);

    if (previous) await store.remove(previous);
    this.tasks = new CoordinatorHost({
      plan: this.plan,
      store,
      storage,
      sender: new SqsQueueSender(
        clients.sqs,
        (vertex) => {
          const url = resources.queueUrls[vertex];
          if (!url) throw new FloeError(ErrorCode.InvalidOptions, `vertex '${vertex}' has no queue`);
          return url;
        },
        EMULATOR_SQS_LIMITS,
      ),
      executions: new StepFunctionsCheckpointExecutions({ client: clients.sfn, stateMachineArn: resources.stateMachineArn, job: this.plan.job }),
      sources: new SourceChains({
        plan: this.plan,
        queueUrls: resources.queueUrls,
        sqs: clients.sqs,
        state: stateStore,
        clock: this.clock,
        log: (e) => this.onCoordinatorLog(e),
        ...(this.options.sourceIdleMaxDelayMs === undefined ? {} : { idleMaxDelayMs: this.options.sourceIdleMaxDelayMs }),
      }),
      // The coordinator restarts the job by its strategy, as a deployed one does (this runner's ticks come every second).
      restarts: { restart: this.restartOptions, state: stateStore },
      clock: this.clock,
      log: (e) => this.onCoordinatorLog(e),
    });
    const row = nextGenerationRow({
      plan: this.plan,
      options: this.checkpointOptions,
      jobId: this.jobIdValue,
      savepointDir: this.options.savepointDir ?? resources.savepointRoot,
      now: this.clock.now(),
      generation,
      usedIds: [existing[existing.length - 1]?.id ?? 0, (previous?.state.nextCheckpointId ?? 1) - 1],
      ...(restore ? { restored: restore.manifest } : {}),
      // A restart within this run keeps the counts and the history, as the embedded runner does.
      ...(this.row ? { previous: this.row } : {}),
      // The handlers cache the job row as deployed ones do: an idle job stops its periodic checkpoints.
      quietAfterMs: QUIET_AFTER_MS,
    });
    this.row = await store.create(row);
    return { resources, store, generation };
  }

  /** Reads the job row until it says the job ended, or the job is cancelled. */
  private async watch(store: DynamoDbCoordinatorStore): Promise<AttemptOutcome> {
    const refreshMs = this.options.refreshMs ?? 250;
    let dlqCheckAt = 0;
    for (;;) {
      if (this.clock.now() >= dlqCheckAt) {
        dlqCheckAt = this.clock.now() + 5000;
        await this.reportDeadLetters();
      }
      if (this.cancelRequested) return { state: 'CANCELED' };
      try {
        const row = await store.load(this.plan.job);
        if (row) this.row = row;
      } catch (e) {
        this.log(`reading the job row failed: ${(e as Error).message}`);
      }
      if (this.row && isCanceled(this.row)) {
        this.log('job cancelled through its job row');
        return { state: 'CANCELED' };
      }
      const status = this.row?.jobStatus;
      if (status?.status === JobStatus.Finished) {
        const lastTermination = this.row?.state.history.find((h) => h.status === 'COMPLETED' && h.termination !== undefined)?.termination;
        return { state: 'FINISHED', ...(status.detail !== undefined && lastTermination !== 'end' ? { savepoint: status.detail } : {}) };
      }
      if (status?.status === JobStatus.Failed) {
        return { state: 'FAILED', error: new FloeError(ErrorCode.JobFailed, status.detail ?? 'the coordinator failed the job') };
      }
      // FAILING: the coordinator restarts the job by its restart strategy; RUNNING again once the new generation is.
      if (this.state === JobState.Running || this.state === JobState.Restarting) this.state = status?.status === JobStatus.Failing ? JobState.Restarting : JobState.Running;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, refreshMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /**
   * Says so when a dead-letter queue got messages: on AWS an alarm would fire; here nobody else looks. A message that
   * failed over and over is one a FIFO group cannot get past, so the job may stall behind it.
   */
  private async reportDeadLetters(): Promise<void> {
    const resources = this.resources;
    if (!resources) return;
    const queues: [string, string][] = [...Object.entries(resources.dlqUrls).map(([v, url]): [string, string] => [`vertex '${v}'`, url]), ['the coordinator-tasks queue', resources.tasksDlqUrl]];
    await Promise.all(
      queues.map(async ([what, url]) => {
        try {
          const res = await this.clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages'] }));
          const count = Number(res.Attributes?.ApproximateNumberOfMessages ?? 0);
          if (count > (this.deadLetters.get(url) ?? 0)) this.log(`${count} message(s) in the dead-letter queue of ${what} (${url}); the job may stall behind them`);
          this.deadLetters.set(url, count);
        } catch (e) {
          this.log(`reading the dead-letter queue of ${what} failed: ${(e as Error).message}`);
        }
      }),
    );
  }

  /** Coordinator lines worth a human's eye (completions, warnings and errors), as the embedded runner prints them. */
  private onCoordinatorLog(entry: Record<string, unknown>, where?: string): void {
    const line = coordinatorLine(entry);
    if (line !== undefined) this.log(where && entry.level !== 'info' ? `${where}: ${line}` : line);
  }

  /** Counts records for the REST overview from the handler's step lines, and passes the coordinator's lines on. */
  private onHandlerLog(vertex: string, line: Record<string, unknown>): void {
    const m = this.metrics.get(vertex);
    if (m && line.message === 'step') {
      if (typeof line.recordsIn === 'number') m.recordsIn += line.recordsIn;
      if (typeof line.recordsOut === 'number') m.recordsOut += line.recordsOut;
      return;
    }
    this.onCoordinatorLog(line, `vertex ${vertex}`);
  }

  // JobControl

  private trigger(kind: 'checkpoint' | 'savepoint', dir?: string, termination?: Termination): string {
    const tasks = this.tasks;
    if (!tasks || this.state !== JobState.Running) {
      throw new FloeError(ErrorCode.BadRequest, `job '${this.plan.job}' is ${this.state}; it takes ${kind}s only while RUNNING`);
    }
    const requestId = randomBytes(16).toString('hex');
    this.requests.add(requestId);
    const request = { requestId, kind, ...(dir === undefined ? {} : { dir }), ...(termination === undefined ? {} : { termination }) };
    tasks.dispatch({ type: 'trigger', now: this.clock.now(), request }).catch((e: Error) => this.requests.failed(requestId, e.message));
    return requestId;
  }

  triggerCheckpoint(): string {
    return this.trigger('checkpoint');
  }

  /** Checks that a savepoint target is an `s3://` location under the job's savepoint directory or its prefix in the job's bucket. */
  async validateSavepointTarget(dir: string | undefined): Promise<string> {
    const resources = this.resources;
    if (!resources) throw new FloeError(ErrorCode.BadRequest, `job '${this.plan.job}' is ${this.state}; it takes savepoints only while RUNNING`);
    const root = this.options.savepointDir ?? resources.savepointRoot;
    return checkS3SavepointTarget(dir ?? root, [root, `s3://${resources.bucket}/${this.plan.job}`]);
  }

  triggerSavepoint(options: { dir?: string; termination?: Extract<Termination, 'stop' | 'drain'> }): string {
    return this.trigger('savepoint', options.dir ?? this.options.savepointDir ?? this.resources?.savepointRoot, options.termination);
  }

  async cancel(): Promise<void> {
    const resources = this.resources;
    if (resources && this.row && (this.state === JobState.Running || this.state === JobState.Restarting)) {
      // Recorded in the job row as well, so that readers of the row (`floe checkpoints --outputs`) see it.
      const store = new DynamoDbCoordinatorStore({ client: this.clients.dynamodb, tableName: resources.coordinatorTable, serializeLocalWrites: true });
      await cancelJob(store, this.plan.job, this.clock.now()).catch((e: Error) => this.log(`recording the cancel in the job row failed: ${e.message}`));
    }
    this.cancelRequested = true;
    this.wake();
    if (this.state === JobState.Created || this.checkpointOptions.retainOnCancel) return;
    // Snapshots still being written would land after the deletion: let the pollers wind down first.
    await this.stopped;
    await this.deleteCheckpoints(new S3CheckpointStorage({ client: this.clients.s3 }));
  }
}

