import { ErrorCode, FloeError } from '../core/errors.js';
import type {
  CheckpointConfigInfo,
  CheckpointingStatistics,
  CheckpointStatistics,
  CheckpointStatusResponse,
  ErrorBody,
  JobDetailsInfo,
  JobIdsWithStatusOverview,
  SavepointStatusResponse,
  TriggerResponse,
} from './flink-types.js';

/** The port `floe run` serves on unless told otherwise (Flink's `rest.port` default). */
export const DEFAULT_REST_PORT = 8081;

/** Where the client finds the REST API: `url` wins; otherwise `http://127.0.0.1:<port>`. */
export interface RestClientOptions {
  /** Base URL such as `http://127.0.0.1:8081`. */
  readonly url?: string;
  /** Port on 127.0.0.1. @default 8081 */
  readonly port?: number;
  /** The fetch to use. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /** Sent as `Authorization: Bearer <authToken>` with every request, for a job started with a token. @default none */
  readonly authToken?: string;
}

/** How long and how often to poll an asynchronous operation. */
export interface PollOptions {
  /** Give up after this many milliseconds. @default Infinity (the checkpoint timeout bounds a savepoint already) */
  readonly timeoutMs?: number;
  /** First pause between polls; it doubles up to one second. @default 100 */
  readonly intervalMs?: number;
}

/** An error answer from the REST API, with its HTTP status. */
export class RestError extends FloeError {
  readonly status: number;
  constructor(status: number, message: string) {
    super(status === 404 ? ErrorCode.NotFound : status < 500 ? ErrorCode.BadRequest : ErrorCode.JobFailed, message);
    this.name = 'RestError';
    this.status = status;
  }
}

/** The base URL from `--url` or `--port`, without a trailing slash. */
export function resolveBaseUrl(options: Pick<RestClientOptions, 'url' | 'port'>): string {
  if (options.url !== undefined) return options.url.replace(/\/+$/, '');
  return `http://127.0.0.1:${options.port ?? DEFAULT_REST_PORT}`;
}

function networkCode(error: unknown): string | undefined {
  let e: unknown = error;
  for (let depth = 0; e && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A typed client for Floe's REST API (Flink's paths and shapes), used by the CLI. */
export class RestClient {
  readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;
  private readonly authToken: string | undefined;

  constructor(options: RestClientOptions = {}) {
    this.baseUrl = resolveBaseUrl(options);
    this.fetchImpl = options.fetch ?? globalThis.fetch;
    this.authToken = options.authToken;
  }

  /** `GET /jobs` */
  jobs(): Promise<JobIdsWithStatusOverview> {
    return this.request('GET', '/jobs');
  }

  /** `GET /jobs/:id`; `job` is the jid or the job's name. */
  job(job: string): Promise<JobDetailsInfo> {
    return this.request('GET', `/jobs/${encodeURIComponent(job)}`);
  }

  /** `GET /jobs/:id/checkpoints` */
  checkpoints(job: string): Promise<CheckpointingStatistics> {
    return this.request('GET', `/jobs/${encodeURIComponent(job)}/checkpoints`);
  }

  /** `GET /jobs/:id/checkpoints/config` */
  checkpointConfig(job: string): Promise<CheckpointConfigInfo> {
    return this.request('GET', `/jobs/${encodeURIComponent(job)}/checkpoints/config`);
  }

  /** `GET /jobs/:id/checkpoints/details/:n` */
  checkpointDetails(job: string, checkpointId: number): Promise<CheckpointStatistics> {
    return this.request('GET', `/jobs/${encodeURIComponent(job)}/checkpoints/details/${checkpointId}`);
  }

  /** `POST /jobs/:id/checkpoints`; returns the trigger id. */
  async triggerCheckpoint(job: string): Promise<string> {
    const r: TriggerResponse = await this.request('POST', `/jobs/${encodeURIComponent(job)}/checkpoints`, {});
    return r['request-id'];
  }

  /** `GET /jobs/:id/checkpoints/:triggerid` */
  checkpointStatus(job: string, triggerId: string): Promise<CheckpointStatusResponse> {
    return this.request('GET', `/jobs/${encodeURIComponent(job)}/checkpoints/${encodeURIComponent(triggerId)}`);
  }

  /** `POST /jobs/:id/savepoints`; returns the trigger id. */
  async triggerSavepoint(job: string, options: { targetDirectory?: string; cancelJob?: boolean } = {}): Promise<string> {
    const body: Record<string, unknown> = {};
    if (options.targetDirectory !== undefined) body['target-directory'] = options.targetDirectory;
    if (options.cancelJob !== undefined) body['cancel-job'] = options.cancelJob;
    const r: TriggerResponse = await this.request('POST', `/jobs/${encodeURIComponent(job)}/savepoints`, body);
    return r['request-id'];
  }

  /** `GET /jobs/:id/savepoints/:triggerid` (also the status of a stop). */
  savepointStatus(job: string, triggerId: string): Promise<SavepointStatusResponse> {
    return this.request('GET', `/jobs/${encodeURIComponent(job)}/savepoints/${encodeURIComponent(triggerId)}`);
  }

  /** `POST /jobs/:id/stop`: stop with a savepoint; returns the trigger id. */
  async stop(job: string, options: { targetDirectory?: string; drain?: boolean } = {}): Promise<string> {
    const body: Record<string, unknown> = {};
    if (options.targetDirectory !== undefined) body['targetDirectory'] = options.targetDirectory;
    if (options.drain !== undefined) body['drain'] = options.drain;
    const r: TriggerResponse = await this.request('POST', `/jobs/${encodeURIComponent(job)}/stop`, body);
    return r['request-id'];
  }

  /** `PATCH /jobs/:id?mode=cancel` */
  async cancel(job: string): Promise<void> {
    await this.request('PATCH', `/jobs/${encodeURIComponent(job)}?mode=cancel`);
  }

  /** Polls a savepoint (or stop) trigger until it completes; returns the savepoint's location or throws its failure. */
  async awaitSavepoint(job: string, triggerId: string, poll: PollOptions = {}): Promise<string> {
    const status = await this.poll(() => this.savepointStatus(job, triggerId), poll, 'savepoint');
    const op = status.operation;
    if (op && 'location' in op) return op.location;
    throw new FloeError(ErrorCode.JobFailed, `savepoint failed: ${op ? op['failure-cause']['stack-trace'] : 'no result reported'}`);
  }

  /** Polls a checkpoint trigger until it completes; returns the checkpoint id or throws its failure. */
  async awaitCheckpoint(job: string, triggerId: string, poll: PollOptions = {}): Promise<number> {
    const status = await this.poll(() => this.checkpointStatus(job, triggerId), poll, 'checkpoint');
    const op = status.operation;
    if (op && 'checkpointId' in op) return op.checkpointId;
    throw new FloeError(ErrorCode.JobFailed, `checkpoint failed: ${op ? op['failure-cause']['stack-trace'] : 'no result reported'}`);
  }

  private async poll<T extends { status: { id: string } }>(get: () => Promise<T>, options: PollOptions, what: string): Promise<T> {
    const deadline = Date.now() + (options.timeoutMs ?? Infinity);
    let interval = options.intervalMs ?? 100;
    for (;;) {
      const status = await get();
      if (status.status.id === 'COMPLETED') return status;
      if (Date.now() + interval > deadline) {
        throw new FloeError(ErrorCode.JobFailed, `the ${what} did not complete within ${options.timeoutMs}ms; it may still complete`);
      }
      await sleep(interval);
      interval = Math.min(interval * 2, 1000);
    }
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = `${this.baseUrl}${path}`;
    let response: Response;
    try {
      response = await this.fetchImpl(url, {
        method,
        headers: {
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
          ...(this.authToken === undefined ? {} : { Authorization: `Bearer ${this.authToken}` }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      const code = networkCode(e);
      if (code === 'ECONNREFUSED') {
        throw new FloeError(ErrorCode.NotFound, `no Floe job answers at ${this.baseUrl}; is \`floe run\` running? use --port or --url`, { cause: e });
      }
      if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') {
        throw new FloeError(ErrorCode.NotFound, `${this.baseUrl} closed the connection before answering ${method} ${path}; the job may have shut down`, { cause: e });
      }
      const cause = (e as { cause?: unknown }).cause;
      const why = code ?? (cause instanceof Error ? cause.message : (e as Error).message);
      throw new FloeError(ErrorCode.NotFound, `could not reach ${this.baseUrl} (${why}); use --port or --url`, { cause: e });
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch {
      throw new RestError(response.status, `${method} ${path} answered ${response.status} with a body that is not JSON; is ${this.baseUrl} a Floe job?`);
    }
    if (!response.ok) {
      const errors = (parsed as Partial<ErrorBody>).errors;
      const message = Array.isArray(errors) && errors.length > 0 ? errors.join('; ') : `${method} ${path} answered ${response.status}`;
      throw new RestError(response.status, message);
    }
    return parsed as T;
  }
}
