/**
 * Backpressure for sources on AWS. SQS has none: a sender is never made to wait, so a source whose downstream
 * operator is slower fills that operator's queue without bound, and a checkpoint barrier sent after the backlog waits
 * behind all of it. A source subtask's wake step therefore asks this probe first whether its vertex's downstream
 * queues are backed up, and holds its source off (a step with `read: false`) while they are.
 *
 * The probe reads `ApproximateNumberOfMessages` (visible) plus `ApproximateNumberOfMessagesNotVisible` (in flight)
 * of each downstream queue with `GetQueueAttributes`, and keeps the answer for `cacheMs`: the source subtasks of one
 * container share it, so it costs at most one request per downstream queue per `cacheMs` per container. Both
 * numbers are approximate (eventually consistent on SQS), which is enough for a bound. A queue holds the messages of
 * every subtask of its vertex, so the bound is per downstream subtask times that vertex's parallelism. A failed probe
 * does not hold a source off: the failure is logged and kept for `cacheMs` too (a missing permission must not double
 * the request rate), and the source reads as it would without backpressure.
 */
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { ErrorCode, FloeError } from '../../core/errors.js';
import type { Clock } from '../../ports/index.js';

/** One downstream queue the probe watches. */
export interface DownstreamQueue {
  /** The downstream vertex. */
  readonly vertex: string;
  readonly queueUrl: string;
  /** The downstream vertex's parallelism: its queue's bound is this many times the per-subtask bound. */
  readonly parallelism: number;
}

/** Options of {@link DownstreamBacklogProbe}. */
export interface DownstreamBacklogProbeOptions {
  readonly sqs: SQSClient;
  readonly queues: readonly DownstreamQueue[];
  /** Messages (visible plus in flight) per downstream subtask above which the source holds off; `Infinity` never does. */
  readonly maxBacklogPerSubtask: number;
  /** How long an answer is reused. @default 1000 */
  readonly cacheMs?: number;
  readonly clock: Clock;
  /** Told of a failed probe. */
  readonly onError: (error: Error) => void;
}

/** What one probe found. */
export interface BacklogReading {
  /** Some downstream queue holds more than its bound: hold the source off. */
  readonly backedUp: boolean;
  /** Messages per downstream vertex (visible plus in flight); empty when the probe failed. */
  readonly messages: Readonly<Record<string, number>>;
  /** The probe failed: the source reads as usual. */
  readonly failed: boolean;
}

/** Default of {@link DownstreamBacklogProbeOptions.cacheMs}. */
export const BACKLOG_PROBE_MS = 1000;

/** A cached, shared probe of a source vertex's downstream queues (see the module's comment). */
export class DownstreamBacklogProbe {
  private readonly cacheMs: number;
  private last: { at: number; reading: Promise<BacklogReading> } | undefined;
  /** `GetQueueAttributes` requests sent, for tests and measurements. */
  requests = 0;

  constructor(private readonly options: DownstreamBacklogProbeOptions) {
    this.cacheMs = options.cacheMs ?? BACKLOG_PROBE_MS;
    if (!(options.maxBacklogPerSubtask > 0)) throw new FloeError(ErrorCode.InvalidOptions, `maxDownstreamBacklog must be > 0, got ${options.maxBacklogPerSubtask}`);
    if (!(this.cacheMs >= 0)) throw new FloeError(ErrorCode.InvalidOptions, `backlogProbeMs must be >= 0, got ${this.cacheMs}`);
  }

  /** Whether the probe asks anything at all: no downstream queue, or no bound, never holds a source off. */
  get enabled(): boolean {
    return this.options.queues.length > 0 && Number.isFinite(this.options.maxBacklogPerSubtask);
  }

  /** The latest reading, probing again once the cached one is `cacheMs` old; concurrent callers share one probe. */
  read(): Promise<BacklogReading> {
    if (!this.enabled) return Promise.resolve({ backedUp: false, messages: {}, failed: false });
    const now = this.options.clock.now();
    if (this.last && now - this.last.at < this.cacheMs) return this.last.reading;
    const reading = this.probe();
    this.last = { at: now, reading };
    return reading;
  }

  private async probe(): Promise<BacklogReading> {
    const { sqs, queues, maxBacklogPerSubtask } = this.options;
    try {
      const counts = await Promise.all(
        queues.map(async (q) => {
          this.requests++;
          const res = await sqs.send(
            new GetQueueAttributesCommand({ QueueUrl: q.queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
          );
          const attr = (name: 'ApproximateNumberOfMessages' | 'ApproximateNumberOfMessagesNotVisible') => Number(res.Attributes?.[name] ?? 0) || 0;
          return attr('ApproximateNumberOfMessages') + attr('ApproximateNumberOfMessagesNotVisible');
        }),
      );
      const messages: Record<string, number> = {};
      let backedUp = false;
      queues.forEach((q, i) => {
        messages[q.vertex] = counts[i]!;
        if (counts[i]! > maxBacklogPerSubtask * q.parallelism) backedUp = true;
      });
      return { backedUp, messages, failed: false };
    } catch (e) {
      this.options.onError(e as Error);
      return { backedUp: false, messages: {}, failed: true };
    }
  }
}
