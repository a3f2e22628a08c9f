/**
 * A job "deployed" on the test emulator with its functions run in this process, the way FloeJob wires them on AWS:
 * one operator handler per vertex queue and the coordinator's task handler on the tasks queue (each behind a poller
 * that behaves like Lambda's SQS event source mapping), a coordinator built as functions/coordinator.ts builds it
 * (`initialize` creates the job row or finds it and records the deployed plan), and a timer that sends the ticks
 * EventBridge Scheduler would. Nothing here restores or starts a generation: that is the deployed job's own doing
 * (first tick) or `floe start`'s. Deploying again (another parallelism) is stopping one and deploying the next plan
 * on the same resources.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { AwsClients } from '../../lib/adapters/aws/clients.js';
import { StepFunctionsCheckpointExecutions } from '../../lib/adapters/aws/step-functions-executions.js';
import { DynamoDbCoordinatorStore } from '../../lib/adapters/aws/dynamodb-coordinator-store.js';
import { createCoordinatorTaskHandler } from '../../lib/hosts/lambda/coordinator-task-handler.js';
import { WakeForwarder } from '../../lib/hosts/lambda/wake-forwarder.js';
import { CoordinatorHost } from '../../lib/coordination/host.js';
import { DynamoDbStateStore } from '../../lib/adapters/aws/dynamodb-state-store.js';
import { S3CheckpointStorage } from '../../lib/adapters/aws/s3-checkpoint-storage.js';
import { SqsEventSourcePoller } from '../../lib/adapters/aws/sqs-poller.js';
import { SqsQueueSender } from '../../lib/adapters/aws/sqs-queue-sender.js';
import { createOperatorHandler } from '../../lib/hosts/lambda/operator-handler.js';
import { SourceChains } from '../../lib/hosts/lambda/source-chains.js';
import { enableMotoStepFunctionsExecution, provisionEmulatorJob, type EmulatorJobResources } from '../../lib/hosts/emulator/provision.js';
import type { ResolvedCheckpointOptions } from '../../lib/core/options.js';
import type { PhysicalPlan } from '../../lib/graph/plan.js';
import { COORDINATOR_TASK_MESSAGE_VERSION } from '../../lib/coordination/checkpoint-tasks.js';
import { systemClock } from '../../lib/adapters/local/system-clock.js';

/** Options of {@link deployInProcess}. */
export interface InProcessDeployOptions {
  readonly plan: PhysicalPlan;
  readonly clients: AwsClients;
  /** The emulator's endpoint (moto runs Step Functions executions only when asked to). */
  readonly endpoint: string;
  /** The deployment's checkpoint options; `dir` is replaced by the job's bucket. */
  readonly checkpoint: ResolvedCheckpointOptions;
  /** Keeps the resource names of parallel tests apart; the same namespace and job find the same resources. */
  readonly namespace: string;
  /** Records a source subtask reads per step. @default 1000 */
  readonly sourceChunkSize?: number;
  /** How often the schedule ticks, in ms. @default 500 */
  readonly tickMs?: number;
  /** Receives the functions' log lines. @default dropped */
  readonly log?: (line: Record<string, unknown>) => void;
}

/** A running in-process deployment. */
export interface InProcessStack {
  readonly resources: EmulatorJobResources;
  readonly checkpoint: ResolvedCheckpointOptions;
  readonly store: DynamoDbCoordinatorStore;
  /** Writes the stack outputs as `cdk deploy --outputs-file` does, under stack name `stack`; answers the file. */
  writeOutputs(file: string, stack?: string): Promise<string>;
  /** Stops the functions and the schedule (the resources stay). */
  stop(): Promise<void>;
}

/** Provisions (or finds) the job's resources and runs its functions in this process. */
export async function deployInProcess(options: InProcessDeployOptions): Promise<InProcessStack> {
  const { plan, clients } = options;
  await enableMotoStepFunctionsExecution(options.endpoint);
  const resources = await provisionEmulatorJob({ plan, clients, checkpoint: options.checkpoint, namespace: options.namespace });
  const checkpoint: ResolvedCheckpointOptions = { ...options.checkpoint, dir: resources.checkpointRoot };
  const log = options.log ?? (() => {});
  const store = new DynamoDbCoordinatorStore({ client: clients.dynamodb, tableName: resources.coordinatorTable, serializeLocalWrites: true });
  const storage = new S3CheckpointStorage({ client: clients.s3 });
  const state = new DynamoDbStateStore({ tableName: resources.stateTable, job: plan.job, client: clients.dynamodb });
  const tasks = new CoordinatorHost({ clock: systemClock,
    plan,
    store,
    storage,
    sender: new SqsQueueSender(clients.sqs, (v) => resources.queueUrls[v]!),
    executions: new StepFunctionsCheckpointExecutions({ client: clients.sfn, stateMachineArn: resources.stateMachineArn, job: plan.job }),
    sources: new SourceChains({ plan, queueUrls: resources.queueUrls, sqs: clients.sqs, state, log }),
    log,
  });
  await tasks.initialize({ options: checkpoint, jobId: randomBytes(16).toString('hex'), savepointDir: resources.savepointRoot });

  const onError = (what: string) => (e: unknown) => log({ level: 'error', message: `${what}: ${(e as Error).message}` });
  const pollers = plan.vertices.map(
    (v) =>
      new SqsEventSourcePoller(clients.sqs, {
        queueUrl: resources.queueUrls[v.id]!,
        handler: createOperatorHandler({
          plan,
          vertex: v.id,
          resources: { ...resources, checkpointRoot: checkpoint.dir },
          clients,
          checkpoint,
          serializeLocalWrites: true,
          sourceChunkSize: options.sourceChunkSize ?? 1000,
          log,
        }),
        waitTimeSeconds: 0,
        emptyReceiveDelayMs: 20,
        maxEmptyReceiveDelayMs: 500,
        retryDelaySeconds: 1,
        concurrency: v.isSource ? 1 : Math.min(10, v.parallelism),
        onError: onError(`vertex ${v.id}`),
      }),
  );
  pollers.push(
    new SqsEventSourcePoller(clients.sqs, {
      queueUrl: resources.tasksQueueUrl,
      handler: createCoordinatorTaskHandler({
        tasks,
        sfn: clients.sfn,
        log,
        wakes: new WakeForwarder({ job: plan.job, sqs: clients.sqs, queueUrls: resources.queueUrls, tasksQueueUrl: resources.tasksQueueUrl, clock: systemClock }),
      }),
      waitTimeSeconds: 1,
      retryDelaySeconds: 1,
      concurrency: 2,
      onError: onError('coordinator tasks'),
    }),
  );
  await Promise.all(pollers.map((p) => p.start()));
  const tick = JSON.stringify({ v: COORDINATOR_TASK_MESSAGE_VERSION, type: 'tick', job: plan.job });
  const ticker = setInterval(() => {
    clients.sqs.send(new SendMessageCommand({ QueueUrl: resources.tasksQueueUrl, MessageBody: tick })).catch(onError('tick'));
  }, options.tickMs ?? 500);

  return {
    resources,
    checkpoint,
    store,
    async writeOutputs(file, stack = 'FloeStack') {
      await writeFile(
        file,
        JSON.stringify({
          [stack]: {
            FloeJobName: plan.job,
            FloeCheckpointBucket: resources.bucket,
            FloeCoordinatorTable: resources.coordinatorTable,
            FloeStateTable: resources.stateTable,
            FloeStateMachineArn: resources.stateMachineArn,
            FloeCoordinatorQueueUrl: resources.tasksQueueUrl,
            FloeSavepointDir: resources.savepointRoot,
          },
        }),
      );
      return file;
    },
    async stop() {
      clearInterval(ticker);
      await Promise.all(pollers.map((p) => p.stop()));
    },
  };
}
