import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCode, FloeError } from '../core/errors.js';
import type { JobControl, JobOverview, TriggerStatus } from './job-control.js';
import type { CheckpointStatusResponse, ErrorBody, SavepointStatusResponse, TriggerResponse } from './flink-types.js';
import { checkpointConfigInfo, checkpointDetails, checkpointingStatistics, taskCheckpointDetails } from './checkpoint-statistics.js';
import { jobDetails, jobList } from './job-details.js';
import { HttpError, statusOf } from './http-error.js';
import { checkFields, readJsonObject } from './request-body.js';

/** Where the REST server listens. */
export interface RestServerOptions {
  /** TCP port; 0 picks a free one. */
  readonly port: number;
  /** Interface to bind. @default '127.0.0.1' (the API can stop and cancel the job, so it is not exposed beyond this machine by default) */
  readonly host?: string;
}

/** A running REST server. */
export interface RestServer {
  /** The port actually bound (differs from the requested one when that was 0). */
  readonly port: number;
  /** Base URL, e.g. `http://127.0.0.1:8081`. */
  readonly url: string;
  /** Stops accepting requests and closes open connections. */
  close(): Promise<void>;
}

type Method = 'GET' | 'POST' | 'PATCH';

interface RouteContext {
  readonly control: JobControl;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly req: IncomingMessage;
  /** The job the path names (resolved from `:jobid`, by jid or by name). */
  readonly job: JobOverview;
}

interface Answer {
  readonly status: number;
  readonly body: unknown;
}

type Handler = (ctx: RouteContext) => Promise<Answer> | Answer;

interface Route {
  /** Path segments; `:name` captures one segment. */
  readonly pattern: readonly string[];
  readonly methods: Partial<Record<Method, Handler>>;
}

const ok = (body: unknown): Answer => ({ status: 200, body });
const accepted = (body: unknown): Answer => ({ status: 202, body });

function checkpointIdParam(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new HttpError(400, `Checkpoint id must be a positive integer, got '${text}'.`);
  }
  return Number(text);
}

function triggerStatusOrThrow(ctx: RouteContext, kind: 'savepoint' | 'checkpoint'): TriggerStatus {
  const id = ctx.params['triggerid']!;
  const status = ctx.control.triggerStatus(id);
  if (!status) throw new HttpError(404, `There is no ${kind} operation with triggerId=${id} for job ${ctx.job.jid}.`);
  return status;
}

function failureCause(status: TriggerStatus) {
  return { 'failure-cause': { class: 'FloeError', 'stack-trace': status.failureCause ?? 'the operation failed' } };
}

/**
 * The routes, Flink's paths and shapes. Order matters: fixed segments (`config`, `details`) come before the
 * `:triggerid` capture at the same depth.
 */
const ROUTES: readonly Route[] = [
  {
    pattern: ['jobs', ':jobid', 'checkpoints', 'config'],
    methods: { GET: (ctx) => ok(checkpointConfigInfo(ctx.control.checkpointConfig())) },
  },
  {
    pattern: ['jobs', ':jobid', 'checkpoints', 'details', ':checkpointid', 'subtasks', ':vertexid'],
    methods: {
      GET: (ctx) => {
        const id = checkpointIdParam(ctx.params['checkpointid']!);
        const vertex = ctx.params['vertexid']!;
        const details = taskCheckpointDetails(ctx.job, ctx.control.coordinatorState(), id, vertex);
        if (!details) throw new HttpError(404, `Could not find checkpointing statistics for checkpoint ${id} and vertex ${vertex}.`);
        return ok(details);
      },
    },
  },
  {
    pattern: ['jobs', ':jobid', 'checkpoints', 'details', ':checkpointid'],
    methods: {
      GET: (ctx) => {
        const id = checkpointIdParam(ctx.params['checkpointid']!);
        const details = checkpointDetails(ctx.job, ctx.control.coordinatorState(), id);
        if (!details) throw new HttpError(404, `Could not find checkpointing statistics for checkpoint ${id}.`);
        return ok(details);
      },
    },
  },
  {
    pattern: ['jobs', ':jobid', 'checkpoints', ':triggerid'],
    methods: {
      GET: (ctx) => {
        const status = triggerStatusOrThrow(ctx, 'checkpoint');
        const body: CheckpointStatusResponse =
          status.status === 'IN_PROGRESS'
            ? { status: { id: 'IN_PROGRESS' } }
            : status.status === 'COMPLETED'
              ? { status: { id: 'COMPLETED' }, operation: { checkpointId: status.checkpointId ?? -1 } }
              : { status: { id: 'COMPLETED' }, operation: failureCause(status) };
        return ok(body);
      },
    },
  },
  {
    pattern: ['jobs', ':jobid', 'checkpoints'],
    methods: {
      GET: (ctx) => ok(checkpointingStatistics(ctx.job, ctx.control.coordinatorState())),
      POST: async (ctx) => {
        const body = await readJsonObject(ctx.req);
        checkFields(body, {}, 'the checkpoint trigger request');
        const response: TriggerResponse = { 'request-id': ctx.control.triggerCheckpoint() };
        return accepted(response);
      },
    },
  },
  {
    pattern: ['jobs', ':jobid', 'savepoints', ':triggerid'],
    methods: {
      GET: (ctx) => {
        const status = triggerStatusOrThrow(ctx, 'savepoint');
        const body: SavepointStatusResponse =
          status.status === 'IN_PROGRESS'
            ? { status: { id: 'IN_PROGRESS' } }
            : status.status === 'COMPLETED'
              ? { status: { id: 'COMPLETED' }, operation: { location: status.location ?? '' } }
              : { status: { id: 'COMPLETED' }, operation: failureCause(status) };
        return ok(body);
      },
    },
  },
  {
    pattern: ['jobs', ':jobid', 'savepoints'],
    methods: {
      POST: async (ctx) => {
        const body = await readJsonObject(ctx.req);
        checkFields(body, { 'target-directory': 'string', 'cancel-job': 'boolean' }, 'the savepoint trigger request');
        const dir = (body['target-directory'] as string | null | undefined) ?? undefined;
        // Flink's cancel-with-savepoint is deprecated in favour of stop-with-savepoint; Floe treats it as a stop.
        const termination = body['cancel-job'] === true ? ('stop' as const) : undefined;
        const response: TriggerResponse = { 'request-id': ctx.control.triggerSavepoint({ dir, termination }) };
        return accepted(response);
      },
    },
  },
  {
    pattern: ['jobs', ':jobid', 'stop'],
    methods: {
      POST: async (ctx) => {
        const body = await readJsonObject(ctx.req);
        checkFields(body, { targetDirectory: 'string', drain: 'boolean' }, 'the stop request');
        const dir = (body['targetDirectory'] as string | null | undefined) ?? undefined;
        const response: TriggerResponse = {
          'request-id': ctx.control.triggerSavepoint({ dir, termination: body['drain'] === true ? 'drain' : 'stop' }),
        };
        return accepted(response);
      },
    },
  },
  {
    pattern: ['jobs', ':jobid'],
    methods: {
      GET: (ctx) => ok(jobDetails(ctx.job, Date.now())),
      PATCH: async (ctx) => {
        const mode = (ctx.query.get('mode') ?? 'cancel').toLowerCase();
        if (mode === 'stop') throw new HttpError(400, 'mode=stop is not supported; use POST /jobs/:jobid/stop to stop with a savepoint.');
        if (mode !== 'cancel') throw new HttpError(400, `Unknown termination mode '${ctx.query.get('mode')}'; the only supported value is 'cancel'.`);
        await ctx.control.cancel();
        return accepted({});
      },
    },
  },
];

function match(pattern: readonly string[], segments: readonly string[]): Record<string, string> | undefined {
  if (pattern.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const s = segments[i]!;
    if (p.startsWith(':')) params[p.slice(1)] = s;
    else if (p !== s) return undefined;
  }
  return params;
}

function pathSegments(rawUrl: string): { segments: string[]; query: URLSearchParams } {
  const url = new URL(rawUrl, 'http://localhost');
  let segments: string[];
  try {
    segments = url.pathname.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s));
  } catch {
    throw new HttpError(400, `Malformed path '${url.pathname}'.`);
  }
  // Flink serves its API both unversioned and under /v1.
  if (segments[0] === 'v1') segments.shift();
  return { segments, query: url.searchParams };
}

function resolveJob(control: JobControl, id: string): JobOverview {
  const overview = control.overview();
  if (id === overview.jid || id === overview.name) return overview;
  throw new HttpError(404, `Job ${id} not found.`);
}

async function route(control: JobControl, req: IncomingMessage): Promise<Answer> {
  const { segments, query } = pathSegments(req.url ?? '/');
  const method = (req.method ?? 'GET').toUpperCase();
  if (segments.length === 1 && segments[0] === 'jobs') {
    if (method !== 'GET') throw new HttpError(405, `Method ${method} is not allowed on /jobs.`, { Allow: 'GET' });
    return ok(jobList(control.overview()));
  }
  for (const r of ROUTES) {
    const params = match(r.pattern, segments);
    if (!params) continue;
    const handler = r.methods[method as Method];
    if (!handler) {
      const allowed = Object.keys(r.methods).join(', ');
      throw new HttpError(405, `Method ${method} is not allowed on /${segments.join('/')}; allowed: ${allowed}.`, { Allow: allowed });
    }
    const job = resolveJob(control, params['jobid']!);
    return handler({ control, params, query, req, job });
  }
  throw new HttpError(404, `Not found: /${segments.join('/')}`);
}

function send(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

async function handle(control: JobControl, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const answer = await route(control, req);
    send(res, answer.status, answer.body);
  } catch (error) {
    const status = statusOf(error);
    const message = error instanceof Error ? error.message : String(error);
    const body: ErrorBody = { errors: [status >= 500 ? `Internal server error: ${message}` : message] };
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // Drain what is left of a request we refused, so the client sees our answer rather than a reset connection.
    req.resume();
    send(res, status, body, error instanceof HttpError ? error.headers : {});
  }
}

/** Serves a job's control API with Flink's REST paths and shapes, on 127.0.0.1 unless `host` says otherwise. */
export async function startRestServer(control: JobControl, options: RestServerOptions): Promise<RestServer> {
  const host = options.host ?? '127.0.0.1';
  const server = createServer((req, res) => {
    handle(control, req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      const message =
        e.code === 'EADDRINUSE'
          ? `port ${options.port} on ${host} is already in use; pick another with --port (0 picks a free one)`
          : `the REST server could not listen on ${host}:${options.port}: ${e.message}`;
      reject(new FloeError(ErrorCode.InvalidOptions, message, { cause: e }));
    };
    server.once('error', onError);
    server.listen(options.port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  let closing: Promise<void> | undefined;
  return {
    port,
    url,
    close: () =>
      (closing ??= new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeAllConnections();
      })),
  };
}
