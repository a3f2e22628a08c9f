/**
 * The benchmark's AWS section, in emulator mode on moto server: AWS requests per 1,000 records by service for the
 * word count, the cost per million records they imply at us-east-1 list prices, and checkpoint durations at
 * parallelism 1, 4 and 16. Moto is started as the AWS integration tests start it (test/support/moto-global-setup.ts).
 */
import type { MetadataBearer } from '@smithy/types';
import { GetExecutionHistoryCommand, ListExecutionsCommand, ListStateMachinesCommand, SFNClient, type HistoryEvent } from '@aws-sdk/client-sfn';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { KinesisClient } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { awsClients, type AwsClients } from '../lib/adapters/aws/clients.js';
import { EmulatorRunner } from '../lib/hosts/emulator/emulator-runner.js';
import type { CheckpointRecord } from '../lib/core/coordinator/types.js';
import { Job, generator, valueState } from '../lib/index.js';
import startMoto from '../test/support/moto-global-setup.js';
import { discardSink, sinkCounter, vocabulary, type SinkCounter } from './jobs.js';
import { median, sleep } from './harness.js';

/** us-east-1 list prices used for the cost estimate, in USD. */
export const AWS_PRICES = {
  region: 'us-east-1',
  sqsFifoPerMillionRequests: 0.5,
  sqsBillingChunkBytes: 64 * 1024,
  dynamoDbPerMillionWriteUnits: 0.625,
  dynamoDbPerMillionReadUnits: 0.125,
  s3PutPerThousand: 0.005,
  s3GetPerThousand: 0.0004,
  stepFunctionsPerThousandTransitions: 0.025,
  sqsStandardPerMillionRequests: 0.4,
  lambdaPerMillionRequests: 0.2,
  lambdaArm64PerGbSecond: 0.0000133334,
  /** FloeJob's default `memorySize` (infra/floe-job.ts), in MB: what each deployed function is given. */
  lambdaMemoryMb: 1024,
  /** Kinesis Data Streams, provisioned mode: each shard of a stream, per hour (the stream's, whoever reads it). */
  kinesisPerShardHour: 0.015,
  /** Kinesis Data Streams, provisioned mode: per million PUT payload units (each started 25 KB of a record put). */
  kinesisPerMillionPutPayloadUnits: 0.014,
  kinesisPutPayloadUnitBytes: 25 * 1024,
  /** Hours in a month, as AWS's pricing pages and calculator count them. */
  hoursPerMonth: 730,
  sources: {
    sqs: 'https://aws.amazon.com/sqs/pricing/ (first 1B requests/month: FIFO $0.50, standard $0.40 per million; each 64 KiB chunk of a payload is one request)',
    dynamodb: 'https://aws.amazon.com/dynamodb/pricing/on-demand/ (on-demand, after the Nov 2024 50% cut; $0.625/M WRU and $0.125/M RRU as quoted by https://airbyte.com/data-engineering-resources/dynamodb-pricing, July 2025)',
    s3: 'https://aws.amazon.com/s3/pricing/ (S3 Standard: PUT/COPY/POST/LIST $0.005 per 1,000, GET/SELECT and others $0.0004 per 1,000)',
    stepFunctions: 'https://aws.amazon.com/step-functions/pricing/ (Standard workflows, $0.025 per 1,000 state transitions)',
    lambda: 'https://aws.amazon.com/lambda/pricing/ (arm64, first 7.5B GB-seconds/month: $0.0000133334 per GB-second; $0.20 per million requests; free tier not deducted)',
    kinesis:
      'https://aws.amazon.com/kinesis/data-streams/pricing/ (provisioned mode: $0.015 per shard-hour, $0.014 per million PUT payload units of 25 KB; GetRecords, GetShardIterator and ListShards are not billed; on-demand mode, billed per stream-hour and per GB written and read instead, is not modelled)',
  },
} as const;

type Service = 's3' | 'sqs' | 'dynamodb' | 'sfn' | 'kinesis';

/** What the instrumented clients counted. */
export class AwsUsage {
  /** SDK requests by service and operation. */
  readonly requests: Record<Service, Record<string, number>> = { s3: {}, sqs: {}, dynamodb: {}, sfn: {}, kinesis: {} };
  /** SQS requests as billed: one per started 64 KiB of payload. */
  sqsBilled = 0;
  /** DynamoDB write request units (1 KB), estimated from item sizes; UpdateItem from key and values sent. */
  writeUnits = 0;
  /** DynamoDB read request units (4 KB, halved for eventually consistent reads), from item sizes returned. */
  readUnits = 0;
  s3Put = 0;
  s3Get = 0;
  /** DynamoDB write units by what was written (state leaves, their undo, control rows, the job row, ...). */
  readonly writeUnitsByKind: Record<string, number> = {};
  /** Milliseconds spent in requests by service (from send to response, retries included). */
  readonly latencyMs: Record<Service, number> = { s3: 0, sqs: 0, dynamodb: 0, sfn: 0, kinesis: 0 };
  /** End times (Date.now()) and durations of the job row's conditional writes, for the checkpoint breakdown. */
  readonly jobRowWrites: { at: number; ms: number }[] = [];
  /** SQS messages sent and received by queue (name without the job prefix). */
  readonly messagesByQueue: Record<string, number> = {};
  /** Checkpoint id → when the coordinator's barrier sends for it returned (Date.now()), for the breakdown. */
  readonly barriersSentAt = new Map<number, number>();

  total(service: Service): number {
    return Object.values(this.requests[service]).reduce((a, b) => a + b, 0);
  }

  snapshot(): AwsUsageSnapshot {
    return {
      requests: Object.fromEntries(Object.entries(this.requests).map(([k, v]) => [k, { ...v }])) as AwsUsageSnapshot['requests'],
      sqsBilled: this.sqsBilled,
      writeUnits: this.writeUnits,
      readUnits: this.readUnits,
      s3Put: this.s3Put,
      s3Get: this.s3Get,
      writeUnitsByKind: { ...this.writeUnitsByKind },
    };
  }
}

export type AwsUsageSnapshot = Pick<AwsUsage, 'sqsBilled' | 'writeUnits' | 'readUnits' | 's3Put' | 's3Get'> & {
  requests: Record<Service, Record<string, number>>;
  writeUnitsByKind: Record<string, number>;
};

/** What was used between two snapshots of the same counters. */
export function diff(a: AwsUsageSnapshot, b: AwsUsageSnapshot): AwsUsageSnapshot {
  const requests = {} as AwsUsageSnapshot['requests'];
  for (const s of Object.keys(b.requests) as Service[]) {
    requests[s] = {};
    for (const [op, n] of Object.entries(b.requests[s])) {
      const d = n - (a.requests[s]?.[op] ?? 0);
      if (d > 0) requests[s][op] = d;
    }
  }
  const writeUnitsByKind: Record<string, number> = {};
  for (const [kind, n] of Object.entries(b.writeUnitsByKind)) if (n - (a.writeUnitsByKind[kind] ?? 0) !== 0) writeUnitsByKind[kind] = n - (a.writeUnitsByKind[kind] ?? 0);
  return {
    requests,
    sqsBilled: b.sqsBilled - a.sqsBilled,
    writeUnits: b.writeUnits - a.writeUnits,
    readUnits: b.readUnits - a.readUnits,
    s3Put: b.s3Put - a.s3Put,
    s3Get: b.s3Get - a.s3Get,
    writeUnitsByKind,
  };
}

/** Approximate DynamoDB size of an attribute value, in bytes (names count where the caller adds them). */
function valueSize(v: AttributeValue): number {
  if (v.S !== undefined) return Buffer.byteLength(v.S);
  if (v.N !== undefined) return Math.ceil(v.N.length / 2) + 1;
  if (v.B !== undefined) return v.B.byteLength;
  if (v.BOOL !== undefined || v.NULL !== undefined) return 1;
  if (v.SS) return v.SS.reduce((a, s) => a + Buffer.byteLength(s), 0);
  if (v.NS) return v.NS.reduce((a, s) => a + Math.ceil(s.length / 2) + 1, 0);
  if (v.BS) return v.BS.reduce((a, s) => a + s.byteLength, 0);
  if (v.L) return 3 + v.L.reduce((a, x) => a + 1 + valueSize(x), 0);
  if (v.M) return 3 + itemSize(v.M);
  return 0;
}

/** Approximate DynamoDB size of an item (or of the key and values a request sends), in bytes. */
export function itemSize(item: Record<string, AttributeValue> | undefined): number {
  if (!item) return 0;
  let n = 0;
  for (const [k, v] of Object.entries(item)) n += Buffer.byteLength(k) + valueSize(v);
  return n;
}

const writeUnitsOf = (bytes: number) => Math.max(1, Math.ceil(bytes / 1024));
const readUnitsOf = (bytes: number, consistent: boolean) => Math.max(1, Math.ceil(bytes / 4096)) * (consistent ? 1 : 0.5);

const S3_PUT_CLASS = new Set(['PutObjectCommand', 'CopyObjectCommand', 'CreateMultipartUploadCommand', 'UploadPartCommand', 'CompleteMultipartUploadCommand', 'ListObjectsV2Command', 'ListObjectsCommand', 'ListBucketsCommand', 'CreateBucketCommand']);
const S3_FREE = new Set(['DeleteObjectCommand', 'DeleteObjectsCommand', 'DeleteBucketCommand', 'AbortMultipartUploadCommand']);

/* eslint-disable @typescript-eslint/no-explicit-any -- the middleware sees each command's own input and output */
/**
 * What a DynamoDB write is for, from its key: state table items by sort key (dynamodb-state-schema.ts), coordinator
 * items by partition key (coordinator-schema.ts).
 */
function writeKind(op: string, key: Record<string, AttributeValue> | undefined): string {
  const sk = key?.sk?.S;
  if (sk !== undefined) {
    if (sk.startsWith('s/')) return op === 'DeleteItemCommand' ? 'state leaf deletes' : 'state leaves';
    if (sk === 'control') return op === 'UpdateItemCommand' ? 'state control row: claim' : 'state control row: commit';
    if (sk === 'chain') return 'state snapshot chain';
    return 'state, other';
  }
  const pk = key?.pk?.S ?? '';
  if (/^job#[^#]*$/.test(pk)) return 'coordinator job row';
  if (/#chk#\d+$/.test(pk)) return 'coordinator checkpoint status';
  return 'coordinator, other';
}

function addWrite(usage: AwsUsage, kind: string, units: number): void {
  usage.writeUnits += units;
  usage.writeUnitsByKind[kind] = (usage.writeUnitsByKind[kind] ?? 0) + units;
}

function countDynamoDb(usage: AwsUsage, op: string, input: any, output: any): void {
  switch (op) {
    case 'PutItemCommand': {
      const kind = writeKind(op, input.Item);
      const units = writeUnitsOf(itemSize(input.Item));
      if (kind === 'state leaves' && input.Item.u?.B) {
        // The undo copy's share: what the write would have cost without it.
        const { u: _undo, ...rest } = input.Item;
        const without = writeUnitsOf(itemSize(rest));
        addWrite(usage, kind, without);
        addWrite(usage, 'state leaf undo copies', units - without);
      } else addWrite(usage, kind, units);
      break;
    }
    case 'UpdateItemCommand':
      addWrite(usage, writeKind(op, input.Key), writeUnitsOf(itemSize(input.Key) + itemSize(input.ExpressionAttributeValues)));
      break;
    case 'DeleteItemCommand':
      addWrite(usage, writeKind(op, input.Key), 1);
      break;
    case 'BatchWriteItemCommand':
      for (const reqs of Object.values(input.RequestItems ?? {}) as any[]) for (const r of reqs) addWrite(usage, 'batch writes (restore, clean-up)', r.PutRequest ? writeUnitsOf(itemSize(r.PutRequest.Item)) : 1);
      // Unprocessed items are sent again and counted then.
      for (const reqs of Object.values(output?.UnprocessedItems ?? {}) as any[]) for (const r of reqs) addWrite(usage, 'batch writes (restore, clean-up)', -(r.PutRequest ? writeUnitsOf(itemSize(r.PutRequest.Item)) : 1));
      break;
    case 'TransactWriteItemsCommand':
      for (const t of input.TransactItems ?? []) addWrite(usage, 'transactions', 2 * (t.Put ? writeUnitsOf(itemSize(t.Put.Item)) : 1));
      break;
    case 'GetItemCommand':
      usage.readUnits += readUnitsOf(itemSize(output?.Item), input.ConsistentRead === true);
      break;
    case 'BatchGetItemCommand': {
      const consistent = Object.values(input.RequestItems ?? {}).some((r: any) => r.ConsistentRead === true);
      for (const items of Object.values(output?.Responses ?? {}) as any[]) for (const it of items) usage.readUnits += readUnitsOf(itemSize(it), consistent);
      break;
    }
    case 'QueryCommand':
    case 'ScanCommand':
      usage.readUnits += readUnitsOf((output?.Items ?? []).reduce((a: number, it: any) => a + itemSize(it), 0), input.ConsistentRead === true);
      break;
  }
}

/** Bytes of an SQS request's payload as SQS bills it (bodies and message attributes). */
export function sqsPayload(op: string, input: any, output: any): number {
  const attrs = (m: any) => Object.entries(m ?? {}).reduce((a: number, [k, v]: [string, any]) => a + Buffer.byteLength(k) + Buffer.byteLength(v.StringValue ?? '') + (v.BinaryValue?.byteLength ?? 0) + Buffer.byteLength(v.DataType ?? ''), 0);
  if (op === 'SendMessageCommand') return Buffer.byteLength(input.MessageBody ?? '') + attrs(input.MessageAttributes);
  if (op === 'SendMessageBatchCommand') return (input.Entries ?? []).reduce((a: number, e: any) => a + Buffer.byteLength(e.MessageBody ?? '') + attrs(e.MessageAttributes), 0);
  if (op === 'ReceiveMessageCommand') return (output?.Messages ?? []).reduce((a: number, m: any) => a + Buffer.byteLength(m.Body ?? '') + attrs(m.MessageAttributes), 0);
  return 0;
}

/** Adds the counting middleware of `service` to a client. */
function addCounter(usage: AwsUsage, service: Service, client: { middlewareStack: { add: (mw: any, o: any) => void } }): void {
  client.middlewareStack.add(
    (next: any, context: any) => async (args: any) => {
      const op: string = context.commandName ?? 'unknown';
      // Wall-clock times, to compare with the checkpoint history's timestamps.
      const t0 = Date.now();
      const result: { output: MetadataBearer } = await next(args);
      const t1 = Date.now();
      usage.requests[service][op] = (usage.requests[service][op] ?? 0) + 1;
      usage.latencyMs[service] += t1 - t0;
      if (service === 'dynamodb' && op === 'UpdateItemCommand' && writeKind(op, args.input.Key) === 'coordinator job row') usage.jobRowWrites.push({ at: t1, ms: t1 - t0 });
      if (service === 'sqs' && (op === 'ReceiveMessageCommand' || op === 'SendMessageBatchCommand' || op === 'SendMessageCommand')) {
        const queue = String(args.input.QueueUrl ?? '').replace(/^.*\//, '').slice(-24);
        const n = op === 'ReceiveMessageCommand' ? ((result.output as any).Messages?.length ?? 0) : op === 'SendMessageBatchCommand' ? (args.input.Entries?.length ?? 0) : 1;
        const key = `${op === 'ReceiveMessageCommand' ? 'received' : 'sent'} ${queue}`;
        usage.messagesByQueue[key] = (usage.messagesByQueue[key] ?? 0) + n;
      }
      if (service === 'sqs' && op === 'SendMessageBatchCommand') {
        for (const e of args.input.Entries ?? []) {
          // The coordinator's barrier envelopes come from `$coordinator`; their epoch is the checkpoint id.
          if (typeof e.MessageBody !== 'string' || !e.MessageBody.includes('"$coordinator"')) continue;
          const epoch = Number(/"epoch":(\d+)/.exec(e.MessageBody)?.[1]);
          if (Number.isInteger(epoch)) usage.barriersSentAt.set(epoch, Math.max(usage.barriersSentAt.get(epoch) ?? 0, t1));
        }
      }
      if (service === 'sqs') usage.sqsBilled += Math.max(1, Math.ceil(sqsPayload(op, args.input, result.output) / AWS_PRICES.sqsBillingChunkBytes));
      if (service === 'dynamodb') countDynamoDb(usage, op, args.input, result.output);
      if (service === 's3' && !S3_FREE.has(op)) {
        if (S3_PUT_CLASS.has(op)) usage.s3Put++;
        else usage.s3Get++;
      }
      return result;
    },
    { step: 'initialize', name: `floeBenchCounter-${service}` },
  );
}

/** Adds a counting middleware to each client (S3, SQS, DynamoDB, Step Functions). */
export function instrumentedClients(endpoint: string, usage: AwsUsage): AwsClients {
  const clients = awsClients({ endpoint, region: AWS_PRICES.region });
  addCounter(usage, 's3', clients.s3);
  addCounter(usage, 'sqs', clients.sqs);
  addCounter(usage, 'dynamodb', clients.dynamodb);
  addCounter(usage, 'sfn', clients.sfn);
  return clients;
}

/**
 * A Kinesis client with the counting middleware, over HTTP/1.1 as `kinesisSource` builds its own (the SDK's default
 * for Kinesis is HTTP/2, which moto does not speak): pass it as the source's `client`.
 */
export function instrumentedKinesisClient(endpoint: string, usage: AwsUsage): KinesisClient {
  const client = new KinesisClient({ endpoint, region: AWS_PRICES.region, requestHandler: new NodeHttpHandler() });
  addCounter(usage, 'kinesis', client);
  return client;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/** What Step Functions did inside the executions (not visible to the SDK): state transitions and service integrations. */
export interface StepFunctionsWork {
  executions: number;
  transitions: number;
  sqsSends: number;
  dynamoDbGets: number;
}

/** Reads the history of every execution not in `seen` (and adds them to it). */
export async function stepFunctionsWork(sfn: SFNClient, seen: Set<string>): Promise<StepFunctionsWork> {
  const work: StepFunctionsWork = { executions: 0, transitions: 0, sqsSends: 0, dynamoDbGets: 0 };
  const machines = (await sfn.send(new ListStateMachinesCommand({}))).stateMachines ?? [];
  for (const m of machines) {
    let token: string | undefined;
    do {
      const page = await sfn.send(new ListExecutionsCommand({ stateMachineArn: m.stateMachineArn!, nextToken: token }));
      for (const e of page.executions ?? []) {
        if (seen.has(e.executionArn!)) continue;
        seen.add(e.executionArn!);
        work.executions++;
        const events: HistoryEvent[] = [];
        let t: string | undefined;
        do {
          const h = await sfn.send(new GetExecutionHistoryCommand({ executionArn: e.executionArn!, nextToken: t, maxResults: 1000 }));
          events.push(...(h.events ?? []));
          t = h.nextToken;
        } while (t);
        for (const ev of events) {
          if (ev.type?.endsWith('StateEntered')) work.transitions++;
          if (ev.type === 'TaskScheduled') {
            const d = ev.taskScheduledEventDetails;
            if (d?.resourceType === 'sqs') work.sqsSends++;
            if (d?.resourceType === 'dynamodb') work.dynamoDbGets++;
          }
        }
      }
      token = page.nextToken;
    } while (token);
  }
  return work;
}

/** Word count over generated text (10-word lines from the vocabulary); bounded when `lines` is finite. */
function awsWordCountJob(o: { parallelism: number; vocabularySize: number; wordsPerLine: number; lines: number; interval: number; ratePerSecond?: number; counter: SinkCounter }): Job {
  const words = vocabulary(o.vocabularySize);
  const job = new Job('bench-aws-wordcount', { maxParallelism: 128, parallelism: o.parallelism, checkpoint: { interval: o.interval }, restart: { type: 'none' } });
  job
    .source(
      generator<string>({
        count: o.lines,
        ...(o.ratePerSecond !== undefined ? { ratePerSecond: o.ratePerSecond } : {}),
        generate: (_index, random) => {
          let line = words[Math.floor(random() * words.length)]!;
          for (let i = 1; i < o.wordsPerLine; i++) line += ' ' + words[Math.floor(random() * words.length)]!;
          return line;
        },
      }),
      { uid: 'lines' },
    )
    .flatMap<string>((line, out) => {
      for (const word of line.split(' ')) if (word !== '') out.collect(word);
    }, { name: 'Split' })
    .keyBy((word) => word)
    .process(
      {
        state: { count: valueState<number>() },
        processElement(word, ctx, out) {
          const n = (ctx.state.count.value() ?? 0) + 1;
          ctx.state.count.update(n);
          out.collect(`${word}\t${n}`);
        },
      },
      { uid: 'count', name: 'Count' },
    )
    .sinkTo(discardSink<string>(o.counter), { uid: 'sink', name: 'Discard' });
  return job;
}

export interface AwsConfig {
  /** Words counted after the fill, at steady state: what the cost figures are per. */
  readonly words: number;
  /** Words counted first, to create the vocabulary's keys (measured and reported apart). */
  readonly fillWords: number;
  /** Lines per source step (EmulatorRunOptions.sourceChunkSize) in the cost run. */
  readonly sourceChunkSize: number;
  /** Backpressure bound (EmulatorRunOptions.maxDownstreamBacklog) of every run. @default emulator mode's */
  readonly maxDownstreamBacklog?: number;
  readonly vocabulary: number;
  readonly wordsPerLine: number;
  readonly parallelism: number;
  readonly intervalMs: number;
  readonly checkpointParallelisms: readonly number[];
  readonly checkpointsPerRun: number;
  readonly timeoutMs: number;
  /** Run the cost measurement (off: checkpoint durations only). */
  readonly cost: boolean;
}

export interface AwsCostResult {
  /** Words of the steady-state phase, which the figures below are per. */
  readonly words: number;
  readonly lines: number;
  readonly runMs: number;
  /** The fill phase (keys created): words and billed units per 1,000 of them. */
  readonly fill: { readonly words: number; readonly writeUnitsPer1000: number; readonly sqsBilledPer1000: number; readonly writeUnitsByKind: Record<string, number> };
  readonly checkpointsCompleted: number;
  readonly usage: AwsUsageSnapshot;
  readonly stepFunctions: StepFunctionsWork;
  /** Billed units per 1,000 words, by service. */
  readonly per1000: { sqsRequests: number; sqsBilled: number; dynamoDbRequests: number; writeUnits: number; readUnits: number; s3Requests: number; s3Put: number; s3Get: number; sfnApiRequests: number; sfnTransitions: number };
  /** USD per million words. */
  readonly costPerMillion: { sqs: number; dynamodb: number; s3: number; stepFunctions: number; total: number };
}

/**
 * Where one checkpoint's time went, in ms from its trigger, from the acks' statistics (each subtask's start delay,
 * alignment, sync and async times, and when it acknowledged) and from the instrumented clients.
 */
export interface CheckpointBreakdown {
  readonly id: number;
  readonly totalMs: number;
  /** The coordinator's barrier sends to the sources' queues returned. */
  readonly barriersSentMs: number | undefined;
  /** The first and the last source subtask took the barrier (a step for its wake or barrier). */
  readonly sourceBarrierMs: readonly [number, number];
  /** The first and the last downstream subtask had the barrier on every input channel (aligned). */
  readonly alignedMs: readonly [number, number];
  /** The last source subtask and the last downstream subtask acknowledged (snapshot written, ack sent). */
  readonly lastSourceAckMs: number;
  readonly lastAckMs: number;
  /** Longest alignment of a downstream subtask (first barrier → last barrier). */
  readonly maxAlignmentMs: number;
  /** Job row writes from the trigger to completion, and their mean latency. */
  readonly jobRowWrites: number;
  readonly jobRowWriteMeanMs: number;
}

export interface AwsCheckpointResult {
  readonly parallelism: number;
  /** Where the time of each completed checkpoint went. */
  readonly breakdown: readonly CheckpointBreakdown[];
  /** Requests per second and mean latency by service over the run (provisioning included). */
  readonly requests: Record<string, { perSecond: number; meanMs: number }>;
  /** The first checkpoint's end-to-end duration (it waits for the job's start); undefined when none completed. */
  readonly firstMs: number | undefined;
  /** End-to-end durations of the checkpoints after the first. */
  readonly durationsMs: number[];
  readonly medianMs: number;
  readonly failed: number;
}

/** Source rate of the checkpoint runs: low enough that barriers do not queue behind data on moto. */
export const CHECKPOINT_RUN_LINES_PER_SECOND = 200;

const logLine = (m: string) => process.stderr.write(`[bench] ${m}\n`);

async function costRun(cfg: AwsConfig, endpoint: string, usage: AwsUsage, seen: Set<string>): Promise<AwsCostResult> {
  const lines = Math.ceil((cfg.fillWords + cfg.words) / cfg.wordsPerLine);
  const counter = sinkCounter();
  const job = awsWordCountJob({ parallelism: cfg.parallelism, vocabularySize: cfg.vocabulary, wordsPerLine: cfg.wordsPerLine, lines, interval: cfg.intervalMs, counter });
  const clients = instrumentedClients(endpoint, usage);
  const runner = new EmulatorRunner(job, { endpoint, clients, namespace: 'cost', sourceChunkSize: cfg.sourceChunkSize, ...backlogOf(cfg), log: (m) => logLine(`aws cost: ${m}`) });
  const run = runner.run();
  // Provisioning, purging and restoring are per-run, not per-record: count from the moment the job runs.
  while (runner.overview().state === 'CREATED' || runner.overview().state === 'RESTARTING') await sleep(20);
  const start = usage.snapshot();
  const t0 = performance.now();
  const timer = setTimeout(() => void runner.cancel(), cfg.timeoutMs);
  // The steady phase starts once the sink has seen the fill's words: every key then exists (each word was drawn
  // fillWords / vocabulary times on average), and a step rewrites leaves of full size.
  let filled: { usage: AwsUsageSnapshot; words: number } | undefined;
  let ended = false;
  void run.finally(() => (ended = true));
  while (!ended) {
    if (!filled && counter.records >= cfg.fillWords) filled = { usage: usage.snapshot(), words: counter.records };
    await sleep(10);
  }
  const outcome = await run;
  clearTimeout(timer);
  const runMs = performance.now() - t0;
  if (outcome.state !== 'FINISHED') throw new Error(`aws cost run ended ${outcome.state}: ${outcome.error?.message ?? `timed out after ${cfg.timeoutMs} ms`}`);
  if (!filled) throw new Error(`aws cost run: the sink saw ${counter.records} words, fewer than the ${cfg.fillWords} of the fill`);
  const end = usage.snapshot();
  const used = diff(filled.usage, end);
  const fillUsed = diff(start, filled.usage);
  const sfn = await stepFunctionsWork(new SFNClient({ endpoint, region: AWS_PRICES.region }), seen);
  const words = lines * cfg.wordsPerLine - filled.words;
  const k = 1000 / words;
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  // Step Functions works per checkpoint, not per record: its executions are spread over the phases by words.
  const share = words / (lines * cfg.wordsPerLine);
  // Step Functions' own sqs:sendMessage and dynamodb:getItem calls are billed by SQS and DynamoDB.
  const sqsBilled = used.sqsBilled + sfn.sqsSends * share;
  const readUnits = used.readUnits + sfn.dynamoDbGets * share;
  const transitions = sfn.transitions * share;
  const per1000 = {
    sqsRequests: (sum(used.requests.sqs) + sfn.sqsSends * share) * k,
    sqsBilled: sqsBilled * k,
    dynamoDbRequests: (sum(used.requests.dynamodb) + sfn.dynamoDbGets * share) * k,
    writeUnits: used.writeUnits * k,
    readUnits: readUnits * k,
    s3Requests: sum(used.requests.s3) * k,
    s3Put: used.s3Put * k,
    s3Get: used.s3Get * k,
    sfnApiRequests: sum(used.requests.sfn) * k,
    sfnTransitions: transitions * k,
  };
  const m = 1e6 / words;
  const p = AWS_PRICES;
  const cost = {
    sqs: ((sqsBilled * m) / 1e6) * p.sqsFifoPerMillionRequests,
    dynamodb: ((used.writeUnits * m) / 1e6) * p.dynamoDbPerMillionWriteUnits + ((readUnits * m) / 1e6) * p.dynamoDbPerMillionReadUnits,
    s3: ((used.s3Put * m) / 1000) * p.s3PutPerThousand + ((used.s3Get * m) / 1000) * p.s3GetPerThousand,
    stepFunctions: ((transitions * m) / 1000) * p.stepFunctionsPerThousandTransitions,
    total: 0,
  };
  cost.total = cost.sqs + cost.dynamodb + cost.s3 + cost.stepFunctions;
  const checkpointsCompleted = runner.coordinatorState().history.filter((h) => h.status === 'COMPLETED').length;
  const fill = {
    words: filled.words,
    writeUnitsPer1000: (fillUsed.writeUnits * 1000) / filled.words,
    sqsBilledPer1000: (fillUsed.sqsBilled * 1000) / filled.words,
    writeUnitsByKind: fillUsed.writeUnitsByKind,
  };
  return { words, lines, runMs, fill, checkpointsCompleted, usage: used, stepFunctions: sfn, per1000, costPerMillion: cost };
}

function breakdownOf(record: Pick<CheckpointRecord, 'id' | 'triggeredAt' | 'finishedAt' | 'acks'>, sourceTasks: ReadonlySet<string>, usage: AwsUsage): CheckpointBreakdown {
  const t0 = record.triggeredAt;
  const end = record.finishedAt ?? NaN;
  const src = { arrive: [] as number[], ack: [] as number[] };
  const down = { aligned: [] as number[], alignment: [] as number[], ack: [] as number[] };
  for (const [task, ack] of Object.entries(record.acks)) {
    const stats = Object.values(ack.operators)[0]?.stats;
    if (!stats) continue;
    if (sourceTasks.has(task)) {
      src.arrive.push(stats.startDelayMs);
      src.ack.push(stats.ackTimestamp - t0);
    } else {
      down.aligned.push(stats.startDelayMs + stats.alignmentMs);
      down.alignment.push(stats.alignmentMs);
      down.ack.push(stats.ackTimestamp - t0);
    }
  }
  const max = (v: number[]) => (v.length === 0 ? NaN : Math.max(...v));
  const min = (v: number[]) => (v.length === 0 ? NaN : Math.min(...v));
  const writes = usage.jobRowWrites.filter((w) => w.at >= t0 && w.at <= end);
  const sent = usage.barriersSentAt.get(record.id);
  return {
    id: record.id,
    totalMs: end - t0,
    barriersSentMs: sent === undefined ? undefined : sent - t0,
    sourceBarrierMs: [min(src.arrive), max(src.arrive)],
    alignedMs: [min(down.aligned), max(down.aligned)],
    lastSourceAckMs: max(src.ack),
    lastAckMs: max([...src.ack, ...down.ack]),
    maxAlignmentMs: max(down.alignment),
    jobRowWrites: writes.length,
    jobRowWriteMeanMs: writes.length === 0 ? NaN : writes.reduce((a, w) => a + w.ms, 0) / writes.length,
  };
}

/** One line of a checkpoint's breakdown for the log. */
export function formatBreakdown(b: CheckpointBreakdown): string {
  const r = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? '?' : String(Math.round(n)));
  return (
    `chk ${b.id} ${r(b.totalMs)} ms: barriers sent ${r(b.barriersSentMs)}, sources took them ${r(b.sourceBarrierMs[0])}..${r(b.sourceBarrierMs[1])}, ` +
    `sources acked by ${r(b.lastSourceAckMs)}, downstream aligned ${r(b.alignedMs[0])}..${r(b.alignedMs[1])} (longest alignment ${r(b.maxAlignmentMs)}), ` +
    `last ack ${r(b.lastAckMs)}, completed ${r(b.totalMs)}; ${b.jobRowWrites} job row writes of ${r(b.jobRowWriteMeanMs)} ms mean`
  );
}

const backlogOf = (cfg: AwsConfig) => (cfg.maxDownstreamBacklog === undefined ? {} : { maxDownstreamBacklog: cfg.maxDownstreamBacklog });

async function checkpointRun(cfg: AwsConfig, endpoint: string, parallelism: number): Promise<AwsCheckpointResult> {
  const counter = sinkCounter();
  const job = awsWordCountJob({ parallelism, vocabularySize: cfg.vocabulary, wordsPerLine: cfg.wordsPerLine, lines: Infinity, interval: cfg.intervalMs, ratePerSecond: CHECKPOINT_RUN_LINES_PER_SECOND, counter });
  const usage = new AwsUsage();
  const clients = instrumentedClients(endpoint, usage);
  const runner = new EmulatorRunner(job, { endpoint, clients, namespace: `chk-p${parallelism}`, parallelism, ...backlogOf(cfg), log: (m) => logLine(`aws p${parallelism}: ${m}`) });
  const started = performance.now();
  const run = runner.run();
  const completed = (): CheckpointRecord[] => runner.coordinatorState().history.filter((h) => h.status === 'COMPLETED' && h.kind === 'checkpoint');
  const deadline = performance.now() + cfg.timeoutMs;
  let ended = false;
  void run.then(() => (ended = true));
  // The first checkpoint also waits for the start (provisioning done, pollers and wake chains starting, the first
  // steps' backlog): it is the warm-up, reported apart; the ones after it are the steady-state figure.
  while (!ended && completed().length < cfg.checkpointsPerRun + 1 && performance.now() < deadline) await sleep(100);
  const history = runner.coordinatorState().history;
  const pending = runner.coordinatorState().pending;
  const seconds = (performance.now() - started) / 1000;
  await runner.cancel();
  const outcome = await run;
  if (outcome.state === 'FAILED') throw new Error(`aws checkpoint run (parallelism ${parallelism}) failed: ${outcome.error?.message}`);
  const done = history.filter((h) => h.status === 'COMPLETED' && h.kind === 'checkpoint').sort((a, b) => a.id - b.id);
  const all = done.map((h) => (h.finishedAt ?? NaN) - h.triggeredAt);
  const sourceTasks = new Set(runner.plan.vertices.filter((v) => v.isSource).flatMap((v) => Array.from({ length: v.parallelism }, (_, i) => `${v.id}:${i}`)));
  const breakdown = done.map((h) => breakdownOf(h, sourceTasks, usage));
  for (const b of breakdown) logLine(`aws p${parallelism}: ${formatBreakdown(b)}`);
  for (const p of pending) {
    // A checkpoint still pending at the cap: which subtasks it waits for.
    const missing = runner.coordinatorState().tasks.filter((t) => !(t in p.acks));
    logLine(`aws p${parallelism}: chk ${p.id} still pending after ${Math.round(Date.now() - p.triggeredAt)} ms, ${Object.keys(p.acks).length} acks, waiting for ${missing.join(' ')}`);
    logLine(`aws p${parallelism}: so far ${formatBreakdown(breakdownOf({ ...p, finishedAt: Date.now() }, sourceTasks, usage))}`);
  }
  const requests: AwsCheckpointResult['requests'] = {};
  for (const s of ['sqs', 'dynamodb', 's3', 'sfn'] as const) {
    const n = usage.total(s);
    requests[s] = { perSecond: n / seconds, meanMs: n === 0 ? 0 : usage.latencyMs[s] / n };
  }
  logLine(`aws p${parallelism}: requests/s (mean ms) ${Object.entries(requests).map(([s, r]) => `${s} ${r.perSecond.toFixed(1)} (${r.meanMs.toFixed(0)})`).join(', ')}; sqs ${JSON.stringify(usage.requests.sqs)}; dynamodb ${JSON.stringify(usage.requests.dynamodb)}; messages ${JSON.stringify(usage.messagesByQueue)}`);
  const durationsMs = all.slice(1);
  return { parallelism, firstMs: all[0], durationsMs, medianMs: median(durationsMs), failed: history.filter((h) => h.status === 'FAILED').length, breakdown, requests };
}

/** Starts moto, runs the cost measurement and the checkpoint durations, stops moto. */
export async function awsSection(cfg: AwsConfig): Promise<{ endpoint: string; cost: AwsCostResult | undefined; checkpoints: AwsCheckpointResult[] }> {
  const savedEndpoint = process.env.AWS_ENDPOINT_URL;
  const stopMoto = await startMoto();
  const endpoint = process.env.AWS_ENDPOINT_URL!;
  try {
    const cost = cfg.cost ? await costRun(cfg, endpoint, new AwsUsage(), new Set()) : undefined;
    if (cost) logLine(
      `aws cost: ${cost.fill.words} + ${cost.words} words in ${Math.round(cost.runMs)} ms, ${cost.checkpointsCompleted} checkpoints; steady state ${cost.per1000.sqsBilled.toFixed(2)} SQS / ${cost.per1000.writeUnits.toFixed(2)} WCU per 1,000 words (fill ${cost.fill.sqsBilledPer1000.toFixed(2)} / ${cost.fill.writeUnitsPer1000.toFixed(2)})`,
    );
    const checkpoints: AwsCheckpointResult[] = [];
    for (const p of cfg.checkpointParallelisms) {
      const r = await checkpointRun(cfg, endpoint, p);
      logLine(`aws checkpoints at parallelism ${p}: first ${r.firstMs === undefined ? 'none' : Math.round(r.firstMs)} ms, then ${r.durationsMs.map((d) => Math.round(d)).join(', ')} ms`);
      checkpoints.push(r);
    }
    return { endpoint, cost, checkpoints };
  } finally {
    await stopMoto();
    if (savedEndpoint === undefined) delete process.env.AWS_ENDPOINT_URL;
    else process.env.AWS_ENDPOINT_URL = savedEndpoint;
  }
}
