/**
 * The coordinator's side of the sources' wake-up chains (operator-wake.ts, operator-handler.ts): it starts a
 * generation's chains and watches them.
 *
 * Start: wake 0 to every source subtask, with the chain's own deduplication ids, so starting twice sends nothing
 * new. `CoordinatorHost` records in the job row that it was done, so the first tick after a deploy (or after a
 * restore into a new generation) starts the job, and later ticks do not.
 *
 * Watchdog: a chain is one wake message at a time; if that message reaches the dead-letter queue (or is lost), the
 * source stops for good. Every step of a wake records the wake's number and time in the subtask's control row, so
 * the coordinator can read how far each chain got. A running, unfinished source subtask whose last wake step is older
 * than `stallMs` plus the longest backoff of an idle chain (or that never took one since the generation's sources were
 * started) is sent its next wake again,
 * with a deduplication id of its own (a re-send inside SQS's 5-minute window would be dropped otherwise). This is
 * safe however wrong the guess: if the chain was alive after all, the copy waits behind the live wake in the
 * subtask's message group and is refused by the control row's fence (a wake that is not newer takes no step), or
 * re-sends a next wake SQS already holds.
 *
 *     wake n ─▶ DLQ          tick: control row says wake n-1 at t, now - t > stallMs ─▶ wake n (tagged) ─▶ chain goes on
 */
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { CoordinatorRow } from '../../core/coordinator/job-row.js';
import type { SourceChainDriver } from '../../coordination/host.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import type { PhysicalPlan } from '../../graph/plan.js';
import type { Clock, ControlRow, StateStore } from '../../ports/index.js';
import { sendWakes, SOURCE_IDLE_MAX_DELAY_MS } from './source-wakes.js';
import { sendTimerWakes } from './timer-wakes.js';
import { hasProcessingTimers } from '../../graph/plan.js';
import type { CoordinatorLog } from '../../coordination/observer.js';
import { systemClock } from '../../adapters/local/system-clock.js';

/** Default of {@link SourceChainsOptions.stallMs}. */
export const SOURCE_STALL_MS = 120_000;

/** Default of {@link SourceChainsOptions.watchEveryMs}. */
export const SOURCE_WATCH_EVERY_MS = 30_000;

/**
 * How often the watchdog reads the control rows of a quiet job (lib/core/coordinator/quiet.ts), in ms: its chains
 * step once a minute at most, and each look costs a read of every source's and timer vertex's control rows.
 */
export const QUIET_WATCH_EVERY_MS = 300_000;

/** Options of {@link SourceChains}. */
export interface SourceChainsOptions {
  readonly plan: PhysicalPlan;
  /** Vertex id → input queue URL; every source vertex needs one. */
  readonly queueUrls: Readonly<Record<string, string>>;
  readonly sqs: SQSClient;
  /** The operators' state, whose control rows tell how far each chain got. Without it the watchdog does nothing. @default none */
  readonly state?: StateStore;
  /** A chain whose last wake step is older than this (plus `idleMaxDelayMs`) is woken again, in ms. @default 120000 */
  readonly stallMs?: number;
  /**
   * The longest delay a backed-off idle chain puts between two wakes (the operator handler's `sourceIdleMaxDelayMs`):
   * such a chain is not stalled until its last step is `stallMs` older than that. @default 60000
   */
  readonly idleMaxDelayMs?: number;
  /** The control rows are read at most this often (ticks may come every second), in ms. @default 30000 */
  readonly watchEveryMs?: number;
  /** @default the system clock */
  readonly clock?: Clock;
  /** @default nothing is logged */
  readonly log?: CoordinatorLog;
}

/** A chain the watchdog woke again (or a subtask whose overdue timer it woke). */
export interface RewokenChain {
  /** `<vertex>:<subtask>` */
  readonly task: string;
  /** The wake number sent (for a timer wake: the timer's due time). */
  readonly n: number;
  /** How long the chain had made no progress, in ms. */
  readonly stalledMs: number;
}

/** Starts and watches the wake chains of a job's source subtasks. */
export class SourceChains implements SourceChainDriver {
  private readonly plan: PhysicalPlan;
  private readonly sqs: SQSClient;
  private readonly state: StateStore | undefined;
  private readonly stallMs: number;
  private readonly idleMaxDelayMs: number;
  private readonly watchEveryMs: number;
  private readonly clock: Clock;
  private readonly log: CoordinatorLog;
  private readonly sources: readonly { readonly vertex: string; readonly parallelism: number; readonly queueUrl: string }[];
  /** Vertices with processing-time timers whose queue this driver may send to: woken when a generation starts. */
  private readonly timerVertices: readonly { readonly vertex: string; readonly parallelism: number; readonly queueUrl: string }[];
  private lastWatch = Number.NEGATIVE_INFINITY;

  constructor(options: SourceChainsOptions) {
    this.plan = options.plan;
    this.sqs = options.sqs;
    this.state = options.state;
    this.stallMs = options.stallMs ?? SOURCE_STALL_MS;
    this.idleMaxDelayMs = options.idleMaxDelayMs ?? SOURCE_IDLE_MAX_DELAY_MS;
    this.watchEveryMs = options.watchEveryMs ?? SOURCE_WATCH_EVERY_MS;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? (() => {});
    const problems: string[] = [];
    if (!(this.stallMs > 0)) problems.push(`stallMs must be > 0, got ${this.stallMs}`);
    if (!(this.idleMaxDelayMs >= 0)) problems.push(`idleMaxDelayMs must be >= 0, got ${this.idleMaxDelayMs}`);
    if (!(this.watchEveryMs >= 0)) problems.push(`watchEveryMs must be >= 0, got ${this.watchEveryMs}`);
    this.sources = options.plan.vertices
      .filter((v) => v.isSource)
      .map((v) => {
        const queueUrl = options.queueUrls[v.id];
        if (!queueUrl) problems.push(`no queue URL for source vertex '${v.id}'`);
        return { vertex: v.id, parallelism: v.parallelism, queueUrl: queueUrl ?? '' };
      });
    if (problems.length > 0) throw new FloeError(ErrorCode.InvalidOptions, `source chains of '${options.plan.job}': ${problems.join('; ')}`);
    this.timerVertices = options.plan.vertices
      .filter((v) => hasProcessingTimers(v) && options.queueUrls[v.id] !== undefined)
      .map((v) => ({ vertex: v.id, parallelism: v.parallelism, queueUrl: options.queueUrls[v.id]! }));
  }

  /**
   * Sends wake 0 to every source subtask of `generation`, and a first timer wake to every subtask of a vertex with
   * processing-time timers: a restored one may hold timers, and nothing else steps it before input arrives (its
   * step fires what is due and schedules the wake of the next one).
   */
  async start(generation: number): Promise<void> {
    await Promise.all([
      ...this.sources.map((s) =>
        sendWakes(
          this.sqs,
          s.queueUrl,
          this.plan.job,
          Array.from({ length: s.parallelism }, (_, subtask) => ({ gen: generation, subtask, n: 0 })),
        ),
      ),
      ...this.timerVertices.map((t) =>
        sendTimerWakes(
          this.sqs,
          t.queueUrl,
          this.plan.job,
          Array.from({ length: t.parallelism }, (_, subtask) => ({ gen: generation, subtask, due: 0, id: 0 })),
        ),
      ),
    ]);
  }

  /** The watchdog on a tick: reads the control rows (at most every `watchEveryMs`; a quiet job's every 5 minutes) and re-wakes stalled chains. */
  async watch(row: CoordinatorRow): Promise<void> {
    const now = this.clock.now();
    const every = row.state.quiet?.confirmed === true ? Math.max(this.watchEveryMs, QUIET_WATCH_EVERY_MS) : this.watchEveryMs;
    if (!this.state || now - this.lastWatch < every) return;
    this.lastWatch = now;
    await this.rewakeStalled(row);
    await this.rewakeOverdueTimers(row);
  }

  /**
   * Sends a timer wake again to every subtask of the row's generation whose earliest processing-time timer (the
   * control row's `timerAt`) is more than `stallMs` overdue: its wake was lost or dead-lettered, and a quiet subtask
   * would never fire it. Harmless if the wake was only slow: the step finds nothing due, or fires the timer once.
   */
  async rewakeOverdueTimers(row: CoordinatorRow): Promise<RewokenChain[]> {
    const state = this.state;
    if (!state || row.runtime.sourcesStartedAt === undefined) return [];
    const now = this.clock.now();
    const generation = row.runtime.generation;
    const rewoken: RewokenChain[] = [];
    for (const t of this.timerVertices) {
      const wakes: { gen: number; subtask: number; due: number; id: number }[] = [];
      await Promise.all(
        Array.from({ length: t.parallelism }, async (_, subtask) => {
          const control = await state.forSubtask({ vertex: t.vertex, subtask }).readControl();
          if (control === undefined || control.gen !== generation || control.finished || control.timerAt === undefined) return;
          const overdueMs = now - control.timerAt;
          if (overdueMs <= this.stallMs) return;
          wakes.push({ gen: generation, subtask, due: Math.max(0, control.timerAt), id: control.version });
          rewoken.push({ task: `${t.vertex}:${subtask}`, n: control.timerAt, stalledMs: overdueMs });
        }),
      );
      if (wakes.length > 0) await sendTimerWakes(this.sqs, t.queueUrl, this.plan.job, wakes, `r${now}`);
    }
    for (const r of rewoken) {
      this.log({
        level: 'warn',
        message: `processing-time timer of ${r.task} is ${Math.round(r.stalledMs / 1000)}s overdue (its wake may be in the dead-letter queue): sent a timer wake again`,
        job: this.plan.job,
        task: r.task,
        timerAt: r.n,
        generation,
      });
    }
    return rewoken;
  }

  /**
   * Re-sends the next wake of every unfinished source chain of the row's generation whose last wake step is older
   * than `stallMs`; answers what it sent. The caller checks that the job is running.
   */
  async rewakeStalled(row: CoordinatorRow): Promise<RewokenChain[]> {
    const state = this.state;
    if (!state) return [];
    const now = this.clock.now();
    const generation = row.runtime.generation;
    const startedAt = row.runtime.sourcesStartedAt;
    if (startedAt === undefined) return [];
    const finished = new Set(row.state.finishedSources);
    const rewoken: RewokenChain[] = [];
    for (const s of this.sources) {
      const wakes: { gen: number; subtask: number; n: number }[] = [];
      await Promise.all(
        Array.from({ length: s.parallelism }, async (_, subtask) => {
          const task = `${s.vertex}:${subtask}`;
          if (finished.has(task)) return;
          const control: ControlRow | undefined = await state.forSubtask({ vertex: s.vertex, subtask }).readControl();
          const mine = control !== undefined && control.gen === generation ? control : undefined;
          if (mine?.finished) return;
          const lastWake = mine?.wake;
          const progressAt = Math.max(mine?.wakeAt ?? startedAt, startedAt);
          const stalledMs = now - progressAt;
          // A backed-off idle chain's next wake may be up to idleMaxDelayMs away by design.
          if (stalledMs < this.stallMs + this.idleMaxDelayMs) return;
          const n = lastWake === undefined ? 0 : lastWake + 1;
          wakes.push({ gen: generation, subtask, n });
          rewoken.push({ task, n, stalledMs });
        }),
      );
      if (wakes.length === 0) continue;
      await sendWakes(this.sqs, s.queueUrl, this.plan.job, wakes, `r${now}`);
    }
    for (const r of rewoken) {
      this.log({
        level: 'warn',
        message: `source chain of ${r.task} made no progress for ${Math.round(r.stalledMs / 1000)}s (its wake may be in the dead-letter queue): sent wake ${r.n} again`,
        job: this.plan.job,
        task: r.task,
        wake: r.n,
        generation,
      });
    }
    return rewoken;
  }
}
