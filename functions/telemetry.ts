/**
 * Structured logs and metrics of the Floe Lambdas through Powertools for AWS Lambda. lib/ knows nothing of
 * Powertools: it logs through a `log` callback and reports what it did through an observer (see functions/metrics.ts);
 * this module gives the handlers the Powertools `Logger` those callbacks write to and the `Metrics` the observers
 * count into, and flushes the metrics as one CloudWatch EMF object per `Metrics` instance, once per invocation.
 *
 * Configuration comes from Powertools' own environment variables, which FloeJob sets: `POWERTOOLS_SERVICE_NAME`
 * (default `floe`), `POWERTOOLS_LOG_LEVEL` (default `INFO`), `POWERTOOLS_METRICS_NAMESPACE` (default `Floe`);
 * `POWERTOOLS_METRICS_DISABLED` turns metrics off.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';

/** Service name of the logs when `POWERTOOLS_SERVICE_NAME` is not set. */
export const DEFAULT_SERVICE_NAME = 'floe';

/** CloudWatch namespace of the metrics when `POWERTOOLS_METRICS_NAMESPACE` is not set. */
export const DEFAULT_METRICS_NAMESPACE = 'Floe';

/** A metric's unit, as CloudWatch knows it. */
export type Unit = typeof MetricUnit.Count | typeof MetricUnit.Milliseconds | typeof MetricUnit.Bytes;

/**
 * Metrics of one dimension set, collected over one invocation: counts are summed into one value per name (so a batch
 * reports `numRecordsIn: 5120`, not 10 values to add up), samples keep every value (a step duration per step).
 * Counts named in `always` are published every invocation, as 0 when nothing happened, so alarms and dashboards
 * see quiet periods as zero rather than as missing data.
 */
export class InvocationMetrics {
  private readonly counts = new Map<string, number>();
  private readonly samples: { name: string; unit: Unit; value: number }[] = [];

  constructor(
    readonly metrics: Metrics,
    private readonly always: readonly string[] = [],
  ) {}

  /** Adds `n` to the count `name`. */
  count(name: string, n = 1): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + n);
  }

  /** Records one value of `name`. */
  sample(name: string, unit: Unit, value: number): void {
    this.samples.push({ name, unit, value });
  }

  /**
   * Publishes what was collected since the last flush as one EMF line on stdout, and starts over. `complete` is false
   * when the invocation threw (Lambda's own Errors metric counts it): its zeros would claim a batch that did not happen.
   */
  flush(complete = true): void {
    if (complete) for (const name of this.always) if (!this.counts.has(name)) this.counts.set(name, 0);
    for (const [name, n] of this.counts) this.metrics.addMetric(name, MetricUnit.Count, n);
    for (const s of this.samples) this.metrics.addMetric(s.name, s.unit, s.value);
    this.counts.clear();
    this.samples.length = 0;
    // Publishing with nothing stored only warns; nothing stored means nothing to say.
    if (this.metrics.hasStoredMetrics()) this.metrics.publishStoredMetrics();
  }
}

/** The Powertools side of one function: its logger and its metrics by dimension set. */
export interface HandlerTelemetry {
  readonly logger: Logger;
  /** Metrics of this function's own work: dimensions `job`, and `vertex` for an operator. */
  readonly metrics: InvocationMetrics;
  /**
   * Checkpoint metrics of the whole job (dimension `job` only), wherever they happen: an operator's last ack completes
   * a checkpoint. The same instance as `metrics` in a function without a vertex (the coordinator).
   */
  readonly jobMetrics: InvocationMetrics;
  /** The `log` callback lib/ writes to: `level` picks the logger method, `message` is the message, other fields become keys. */
  readonly log: (line: Record<string, unknown>) => void;
}

/** Options of {@link createTelemetry}. */
export interface TelemetryOptions {
  /** The function's environment (Powertools variables, see the module doc). */
  readonly env: NodeJS.ProcessEnv;
  /** The job name: a persistent log key and a metric dimension. */
  readonly job: string;
  /** The vertex an operator function consumes: a persistent log key and a metric dimension. @default none (the coordinator) */
  readonly vertex?: string;
  /** Counts published every invocation, also as 0. @default [] */
  readonly always?: readonly string[];
}

/** Builds the logger and metrics of a function; keys and dimensions that are empty (a broken environment) are left out. */
export function createTelemetry(options: TelemetryOptions): HandlerTelemetry {
  const { env } = options;
  const keys = Object.fromEntries(Object.entries({ job: options.job, vertex: options.vertex }).filter((e): e is [string, string] => !!e[1]));
  const logger = new Logger({ serviceName: env.POWERTOOLS_SERVICE_NAME || DEFAULT_SERVICE_NAME, persistentKeys: keys });
  const namespace = env.POWERTOOLS_METRICS_NAMESPACE || DEFAULT_METRICS_NAMESPACE;
  const metricsWith = (dimensions: Record<string, string>): Metrics => {
    const metrics = new Metrics({ namespace, logger });
    // Powertools adds a `service` dimension by default; Floe's dimensions are the job and the vertex only.
    metrics.clearDefaultDimensions();
    metrics.setDefaultDimensions(dimensions);
    return metrics;
  };
  const metrics = new InvocationMetrics(metricsWith(keys), options.always);
  const jobMetrics = keys.vertex === undefined ? metrics : new InvocationMetrics(metricsWith(keys.job === undefined ? {} : { job: keys.job }));
  return { logger, metrics, jobMetrics, log: logTo(logger) };
}

/** A lib/ `log` callback that writes to a Powertools logger. */
export function logTo(logger: Logger): (line: Record<string, unknown>) => void {
  return (line) => {
    // `level` and `message` are the logger's own keys; `time` duplicates its `timestamp`.
    const { level, message, time: _time, ...keys } = line;
    const text = typeof message === 'string' ? message : JSON.stringify(message ?? '');
    if (level === 'error') logger.error(text, keys);
    else if (level === 'warn') logger.warn(text, keys);
    else if (level === 'debug') logger.debug(text, keys);
    else logger.info(text, keys);
  };
}

/**
 * Runs one invocation: adds the Lambda context to the logs (request id, function name, cold start), and publishes
 * the invocation's metrics once at its end, whether it returned or threw (then without the always-published zeros).
 */
export async function withInvocation<T>(telemetry: HandlerTelemetry, context: Context | undefined, run: () => Promise<T>): Promise<T> {
  if (context) telemetry.logger.addContext(context);
  let complete = false;
  try {
    const result = await run();
    complete = true;
    return result;
  } finally {
    for (const metrics of new Set([telemetry.metrics, telemetry.jobMetrics])) metrics.flush(complete);
  }
}
