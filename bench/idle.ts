/**
 * The benchmark's idle section: what a deployed job costs while no input arrives (scale to zero), measured in
 * emulator mode on moto server over a long window, by function.
 *
 * The job is the orders job of the sources section (`sqsSource → keyBy(customer) → running total → sink`, the shape
 * of examples/orders.ts, parallelism 2, checkpoint every 2 s) over an empty queue. The window starts once the job is
 * quiet (periodic checkpoints paused) and its idle source chains have backed off to their longest delay, and lasts
 * `windowMs` (an hour in full mode).
 *
 * What is billed on AWS is counted three ways:
 * - measured: the handlers' own requests (wakes, delayed wakes and their forwarding, activity reports, the message
 *   deletes Lambda's event source mapping makes after an invocation, the source's reads of its queue, DynamoDB, S3,
 *   Step Functions executions) and the invocations' count and duration (each a Lambda invocation when deployed);
 * - left out, emulator mode's own: its pollers' receives (short polls, not Lambda's long polls), its dead-letter
 *   checks (an alarm when deployed), and its runner's reads of the job row (set to one a minute here, which stands in
 *   for the deployed ticker's read of the row's `quiet` attribute);
 * - modelled, as AWS runs them but emulator mode cannot: the ESM pollers' long polls of every queue a function
 *   consumes ({@link ESM_IDLE_RECEIVES_PER_MINUTE}), and the schedule's ticker, one Express execution a minute.
 */
import { SFNClient } from '@aws-sdk/client-sfn';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { planCheckpointSchedule } from '../infra/checkpoint-schedule.js';
import type { FloeJobProblem } from '../infra/errors.js';
import startMoto from '../test/support/moto-global-setup.js';
import { AWS_PRICES, stepFunctionsWork } from './aws.js';
import { sleep } from './harness.js';
import { completed, createQueue, mark, setUp, sqsOrders, trackDeletes, untilIdle, usageBetween, type InvocationSummary, type SourcesUsage } from './sources.js';

/**
 * ReceiveMessage requests a minute Lambda's event source mapping makes on one empty queue: AWS publishes no figure.
 * Its documentation says the pollers long-poll an inactive queue and scale back to five concurrent batches, "and can
 * optimize to as few as 2" (not with a maximum concurrency set, which FloeJob sets with reserved concurrency); each
 * long poll waits 20 s. Five pollers: 15 a minute; two: 6. The model takes the higher.
 */
export const ESM_IDLE_RECEIVES_PER_MINUTE = 15;

/** Express workflows and EventBridge Scheduler, us-east-1 list prices (no free tier). */
export const IDLE_PRICES = {
  expressPerMillionRequests: 1.0,
  /** Per GB-second of an Express execution, billed in 100 ms at 64 MB at least. */
  expressPerGbSecond: 0.00001667,
  /** A quiet job's ticker execution: a read of the row and one send, well under 100 ms; billed as 100 ms at 64 MB. */
  tickerBilledSeconds: 0.1,
  tickerMemoryGb: 64 / 1024,
  schedulerPerMillionInvocations: 1.0,
  sources: {
    stepFunctions: 'https://aws.amazon.com/step-functions/pricing/ (Express: $1.00 per million requests, $0.00001667 per GB-second for the first 1,000 hours; 100 ms and 64 MB at least)',
    scheduler: 'https://aws.amazon.com/eventbridge/pricing/ (EventBridge Scheduler: $1.00 per million invocations after 14 million free a month)',
    esm: 'https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html (pollers of an inactive queue: long polling, five concurrent batches, as few as two)',
  },
} as const;

/** Options of the idle section. */
export interface IdleConfig {
  /** Length of the measured window, in ms. */
  readonly windowMs: number;
  readonly parallelism: number;
  readonly intervalMs: number;
  /** How long to wait for the job to go quiet, in ms. */
  readonly settleTimeoutMs: number;
}

/** One function's share of the idle window, per hour. */
export interface IdleFunction {
  readonly invocations: number;
  readonly meanMs: number;
  readonly lambdaSeconds: number;
}

/** USD a month, by what is billed. */
export interface IdleCost {
  readonly sqsMeasured: number;
  readonly sqsSourceQueue: number;
  readonly dynamodb: number;
  readonly s3: number;
  readonly stepFunctionsStandard: number;
  readonly lambdaRequests: number;
  readonly lambdaDuration: number;
  /** Modelled: Lambda's pollers of every consumed queue. */
  readonly esmPolling: number;
  /** Modelled: the schedule's invocations and the ticker's Express executions, one a minute. */
  readonly ticker: number;
  /** Everything above but the two modelled lines. */
  readonly floe: number;
  readonly total: number;
}

/** The section's figures. */
export interface IdleSectionResult {
  readonly windowMs: number;
  /** Checkpoints completed in the window (0 while the job stays quiet). */
  readonly checkpoints: number;
  /** From the start until the job was quiet, in ms. */
  readonly quietAfterMs: number;
  /** Queues a function consumes (its ESM polls them): the vertices' and the coordinator-tasks queue. */
  readonly polledQueues: { readonly fifo: number; readonly standard: number };
  readonly perHour: {
    readonly sqsByPurpose: Record<string, number>;
    readonly sourceRequests: Record<string, number>;
    readonly dynamodb: Record<string, number>;
    readonly writeUnits: number;
    readonly readUnits: number;
    readonly s3: Record<string, number>;
    readonly stepFunctions: { readonly executions: number; readonly transitions: number };
    readonly functions: Record<string, IdleFunction>;
    /** Committed steps (control row writes) by vertex. */
    readonly steps: Record<string, number>;
  };
  readonly perMonth: IdleCost;
  readonly usage: SourcesUsage;
}

/** Emulator mode's own SQS requests, which a deployed job does not make (see the file's comment). */
const EMULATOR_ONLY = /^(ESM receive|dead-letter checks)/;

const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
const scale = (o: Record<string, number>, k: number) => Object.fromEntries(Object.entries(o).map(([n, v]) => [n, v * k]));

function functionsOf(invocations: Record<string, InvocationSummary>, k: number): Record<string, IdleFunction> {
  return Object.fromEntries(
    Object.entries(invocations)
      .filter(([fn]) => fn !== 'all')
      .map(([fn, i]) => [fn, { invocations: i.count * k, meanMs: i.meanMs, lambdaSeconds: (i.totalMs / 1000) * k }]),
  );
}

/**
 * Per hour and per month from one measured window. `tickerSecondsPerExecution`: how long the deployed ticker's
 * execution a minute lasts (a quiet job's: a read and a send; a busy one with a sub-minute interval: the whole minute
 * of its Wait loop; none when the schedule sends its tick straight to the queue).
 */
function figuresOf(used: SourcesUsage, windowMs: number, polledQueues: IdleSectionResult['polledQueues'], tickerSecondsPerExecution: number | undefined) {
  const k = 3_600_000 / windowMs;
  const month = AWS_PRICES.hoursPerMonth;
  const p = AWS_PRICES;
  const ours = Object.fromEntries(Object.entries(used.sqsByPurpose).filter(([purpose]) => !EMULATOR_ONLY.test(purpose)));
  const standard = sum(Object.fromEntries(Object.entries(ours).filter(([purpose]) => /tasks|ticks/.test(purpose))));
  const fifo = sum(ours) - standard;
  // Step Functions' own sends to the tasks queue (the checkpoint executions') are standard requests too.
  const sqsMeasured = ((fifo * p.sqsFifoPerMillionRequests + (standard + used.stepFunctions.sqsSends) * p.sqsStandardPerMillionRequests) / 1e6) * k * month;
  // Lambda's pollers: their long polls of every queue, plus one receive per batch they hand to a function.
  const polls = ESM_IDLE_RECEIVES_PER_MINUTE * 60 * month;
  const batches = (used.invocations.all?.count ?? 0) * k * month;
  const esmPolling = (polls * (polledQueues.fifo * p.sqsFifoPerMillionRequests + polledQueues.standard * p.sqsStandardPerMillionRequests) + batches * p.sqsFifoPerMillionRequests) / 1e6;
  const executions = 60 * month;
  const ticker =
    (executions * IDLE_PRICES.schedulerPerMillionInvocations) / 1e6 +
    (tickerSecondsPerExecution === undefined
      ? 0
      : (executions * IDLE_PRICES.expressPerMillionRequests) / 1e6 + executions * Math.max(0.1, Math.ceil(tickerSecondsPerExecution * 10) / 10) * IDLE_PRICES.tickerMemoryGb * IDLE_PRICES.expressPerGbSecond);
  const c = used.cost;
  const floe = sqsMeasured + (c.sqsSourceQueue + c.dynamodb + c.s3 + c.stepFunctions + c.lambdaRequests + c.lambdaDuration) * k * month;
  const perMonth: IdleCost = {
    sqsMeasured,
    sqsSourceQueue: c.sqsSourceQueue * k * month,
    dynamodb: c.dynamodb * k * month,
    s3: c.s3 * k * month,
    stepFunctionsStandard: c.stepFunctions * k * month,
    lambdaRequests: c.lambdaRequests * k * month,
    lambdaDuration: c.lambdaDuration * k * month,
    esmPolling,
    ticker,
    floe,
    total: floe + esmPolling + ticker,
  };
  const perHour: IdleSectionResult['perHour'] = {
    sqsByPurpose: scale(ours, k),
    sourceRequests: scale(used.source.requests, k),
    dynamodb: scale(used.runtime.dynamodb, k),
    writeUnits: used.dynamoDb.writeUnits * k,
    readUnits: used.dynamoDb.readUnits * k,
    s3: scale(used.runtime.s3, k),
    stepFunctions: { executions: used.stepFunctions.executions * k, transitions: used.stepFunctions.transitions * k },
    functions: functionsOf(used.invocations, k),
    steps: scale(used.steps, k),
  };
  return { perHour, perMonth };
}

/** Runs `body` with moto started (and `AWS_ENDPOINT_URL` pointing at it), then stops it. */
async function withMoto<T>(body: (endpoint: string) => Promise<T>): Promise<T> {
  const savedEndpoint = process.env.AWS_ENDPOINT_URL;
  const stopMoto = await startMoto();
  try {
    return await body(process.env.AWS_ENDPOINT_URL!);
  } finally {
    await stopMoto();
    if (savedEndpoint === undefined) delete process.env.AWS_ENDPOINT_URL;
    else process.env.AWS_ENDPOINT_URL = savedEndpoint;
  }
}

/** Sleeps `ms` in minutes, logging progress. */
async function measure(ms: number, what: string, log: (m: string) => void, progress: () => string): Promise<void> {
  log(`measuring ${Math.round(ms / 1000)} s ${what}`);
  for (let left = ms; left > 0; left -= 60_000) {
    await sleep(Math.min(60_000, left));
    if (left > 60_000) log(`${Math.round((ms - left + 60_000) / 1000)} s of ${Math.round(ms / 1000)}: ${progress()}`);
  }
}

/** Starts moto, runs the orders job over an empty queue until it is quiet, measures the window, stops moto. */
export async function idleSection(cfg: IdleConfig, log: (m: string) => void): Promise<IdleSectionResult> {
  return withMoto(async (endpoint) => {
    const plain = new SQSClient({ endpoint, region: AWS_PRICES.region });
    const sfn = new SFNClient({ endpoint, region: AWS_PRICES.region });
    const seen = new Set<string>();
    const queueUrl = await createQueue(plain);
    // The runner reads the job row once a minute (the deployed ticker's read); its pollers and checks are left out.
    const { sourceUsage, usage, runner, probe } = setUp(cfg, endpoint, sqsOrders(queueUrl), 'idle-hour', { refreshMs: 60_000 });
    const run = runner.run();
    try {
      const quietAfterMs = await untilIdle(runner, cfg.settleTimeoutMs, log);
      await stepFunctionsWork(sfn, seen);
      const start = mark(sourceUsage, usage, probe, runner);
      await measure(cfg.windowMs, 'of idleness', log, () => `${completed(runner) - start.checkpoints} checkpoints, ${probe.invocations.length} invocations so far`);
      const end = mark(sourceUsage, usage, probe, runner);
      await sleep(1500);
      const used = usageBetween(start, end, probe, await stepFunctionsWork(sfn, seen));
      const windowMs = end.at - start.at;
      const polledQueues = { fifo: runner.plan.vertices.length, standard: 1 };
      return { windowMs, checkpoints: end.checkpoints - start.checkpoints, quietAfterMs, polledQueues, ...figuresOf(used, windowMs, polledQueues, IDLE_PRICES.tickerBilledSeconds), usage: used };
    } finally {
      await runner.cancel();
      await run;
    }
  });
}

/** Options of the rate run. */
export interface RateConfig {
  /** Orders a second sent to the queue. */
  readonly rate: number;
  readonly windowMs: number;
  readonly parallelism: number;
  readonly intervalMs: number;
}

/** The rate run's figures. */
export interface RateSectionResult extends Omit<IdleSectionResult, 'quietAfterMs'> {
  readonly rate: number;
  /** Orders sent during the window, and deleted by the source (each once its checkpoint completed) by its end. */
  readonly sent: number;
  readonly deleted: number;
}

/**
 * The same job at a steady rate: `rate` orders a second sent to its queue from the first checkpoint on, measured over
 * `windowMs` after a minute of warm-up. The runner ticks the coordinator as the deployed schedule would (every
 * interval below a minute, else once a minute).
 */
export async function rateSection(cfg: RateConfig, log: (m: string) => void): Promise<RateSectionResult> {
  return withMoto(async (endpoint) => {
    const plain = new SQSClient({ endpoint, region: AWS_PRICES.region });
    const sfn = new SFNClient({ endpoint, region: AWS_PRICES.region });
    const seen = new Set<string>();
    const queueUrl = await createQueue(plain);
    const problems: FloeJobProblem[] = [];
    const schedule = planCheckpointSchedule(cfg.intervalMs, problems);
    if (!schedule) throw new Error(`rate: checkpoint interval ${cfg.intervalMs} ms cannot be scheduled on AWS: ${problems.map((p) => p.message).join('; ')}`);
    const tickIntervalMs = schedule.tickSeconds > 0 ? schedule.tickSeconds * 1000 : 60_000;
    const { sourceUsage, usage, runner, probe, sourceClient } = setUp(cfg, endpoint, sqsOrders(queueUrl), 'rate', { refreshMs: 60_000, tickIntervalMs });
    const deleted = trackDeletes(sourceClient);
    const run = runner.run();
    let sent = 0;
    let feeding = true;
    const feeder = (async () => {
      const t0 = performance.now();
      let n = 0;
      while (feeding) {
        const due = Math.floor(((performance.now() - t0) / 1000) * cfg.rate);
        // Batches of 10 sent side by side, so the emulator's latency holds the rate back less.
        const sends: Promise<unknown>[] = [];
        while (n < due) {
          const from = n;
          const batch = Array.from({ length: Math.min(10, due - n) }, (_, i) => ({ Id: String(i), MessageBody: JSON.stringify({ customer: `c${(from + i) % 100}`, amount: 1 + ((from + i) % 9) }) }));
          n += batch.length;
          sends.push(plain.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: batch })).then(() => (sent += batch.length)));
        }
        await Promise.all(sends);
        await sleep(100);
      }
    })();
    try {
      while (completed(runner) === 0) await sleep(250);
      log(`warming up for 60 s at ${cfg.rate} orders a second`);
      await sleep(60_000);
      await stepFunctionsWork(sfn, seen);
      const start = mark(sourceUsage, usage, probe, runner);
      const sentAt = sent;
      await measure(cfg.windowMs, `at ${cfg.rate} orders a second`, log, () => `${completed(runner) - start.checkpoints} checkpoints, ${sent - sentAt} orders sent, ${deleted.size} deleted`);
      const end = mark(sourceUsage, usage, probe, runner);
      const sentInWindow = sent - sentAt;
      await sleep(1500);
      const used = usageBetween(start, end, probe, await stepFunctionsWork(sfn, seen));
      const windowMs = end.at - start.at;
      const polledQueues = { fifo: runner.plan.vertices.length, standard: 1 };
      return {
        rate: cfg.rate,
        sent: sentInWindow,
        deleted: deleted.size,
        windowMs,
        checkpoints: end.checkpoints - start.checkpoints,
        polledQueues,
        ...figuresOf(used, windowMs, polledQueues, schedule.tickSeconds > 0 ? 60 : undefined),
        usage: used,
      };
    } finally {
      feeding = false;
      await feeder;
      await runner.cancel();
      await run;
    }
  });
}
