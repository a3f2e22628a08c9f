/**
 * Flink's REST API as a function: method, path, query and body in; status, headers and a JSON body out, errors in
 * Flink's `{ "errors": [...] }` shape. Independent of any transport, so `floe run`'s node:http server
 * (lib/rest/server.ts) and the control-API Lambda (functions/control-api.ts) answer every request alike.
 */
import type { CheckpointStatusResponse, ErrorBody, SavepointStatusResponse, TriggerResponse } from './flink-types.js';
import type { JobControl, JobOverview, TriggerStatus } from './job-control.js';
import { checkpointConfigInfo, checkpointDetails, checkpointingStatistics, taskCheckpointDetails } from './checkpoint-statistics.js';
import { jobDetails, jobList } from './job-details.js';
import { HttpError, statusOf } from './http-error.js';
import { checkFields, parseJsonObject } from './request-body.js';

type MaybePromise<T> = T | Promise<T>;

/**
 * What the router needs of a job: a {@link JobControl} whose answers may also arrive asynchronously, so a control
 * that reads its job from elsewhere for every request (the control-API Lambda) serves the same routes.
 */
export type RoutableJobControl = {
  readonly [K in keyof JobControl]: JobControl[K] extends (...args: infer A) => infer R ? (...args: A) => MaybePromise<Awaited<R>> : never;
};

/**
 * Hands the router the job control; called only once a request has matched a route and method, so a malformed,
 * unknown or refused request is answered without touching the job.
 */
export type JobControlSource = () => MaybePromise<RoutableJobControl>;

/** One request, as any transport delivers it. */
export interface RestRequest {
  /** HTTP method, any case. */
  readonly method: string;
  /** Path and query as on the request line, e.g. `/v1/jobs/wordcount?mode=cancel`. */
  readonly url: string;
  /** Reads the body as text; only routes that take a body call it. May reject with an {@link HttpError} (413). */
  readonly body: () => Promise<string>;
}

/** The answer to a {@link RestRequest}. */
export interface RestResponse {
  readonly status: number;
  /** Headers beyond `Content-Type` (`Allow` on a 405). */
  readonly headers: Readonly<Record<string, string>>;
  /** The JSON body, to be serialized with `JSON.stringify`. */
  readonly body: unknown;
}

type Method = 'GET' | 'POST' | 'PATCH';

interface RouteContext {
  readonly control: RoutableJobControl;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly request: RestRequest;
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

async function jsonBody(ctx: RouteContext): Promise<Record<string, unknown>> {
  return parseJsonObject(await ctx.request.body());
}

function checkpointIdParam(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new HttpError(400, `Checkpoint id must be a positive integer, got '${text}'.`);
  }
  return Number(text);
}

async function triggerStatusOrThrow(ctx: RouteContext, kind: 'savepoint' | 'checkpoint'): Promise<TriggerStatus> {
  const id = ctx.params['triggerid']!;
  const status = await ctx.control.triggerStatus(id);
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
    methods: { GET: async (ctx) => ok(checkpointConfigInfo(await ctx.control.checkpointConfig())) },
  },
  {
    pattern: ['jobs', ':jobid', 'checkpoints', 'details', ':checkpointid', 'subtasks', ':vertexid'],
    methods: {
      GET: async (ctx) => {
        const id = checkpointIdParam(ctx.params['checkpointid']!);
        const vertex = ctx.params['vertexid']!;
        const details = taskCheckpointDetails(ctx.job, await ctx.control.coordinatorState(), id, vertex);
        if (!details) throw new HttpError(404, `Could not find checkpointing statistics for checkpoint ${id} and vertex ${vertex}.`);
        return ok(details);
      },
    },
  },
  {
    pattern: ['jobs', ':jobid', 'checkpoints', 'details', ':checkpointid'],
    methods: {
      GET: async (ctx) => {
        const id = checkpointIdParam(ctx.params['checkpointid']!);
        const details = checkpointDetails(ctx.job, await ctx.control.coordinatorState(), id);
        if (!details) throw new HttpError(404, `Could not find checkpointing statistics for checkpoint ${id}.`);
        return ok(details);
      },
    },
  },
  {
    pattern: ['jobs', ':jobid', 'checkpoints', ':triggerid'],
    methods: {
      GET: async (ctx) => {
        const status = await triggerStatusOrThrow(ctx, 'checkpoint');
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
      GET: async (ctx) => ok(checkpointingStatistics(ctx.job, await ctx.control.coordinatorState())),
      POST: async (ctx) => {
        const body = await jsonBody(ctx);
        checkFields(body, {}, 'the checkpoint trigger request');
        const response: TriggerResponse = { 'request-id': await ctx.control.triggerCheckpoint() };
        return accepted(response);
      },
    },
  },
  {
    pattern: ['jobs', ':jobid', 'savepoints', ':triggerid'],
    methods: {
      GET: async (ctx) => {
        const status = await triggerStatusOrThrow(ctx, 'savepoint');
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
        const body = await jsonBody(ctx);
        checkFields(body, { 'target-directory': 'string', 'cancel-job': 'boolean' }, 'the savepoint trigger request');
        const dir = await ctx.control.validateSavepointTarget((body['target-directory'] as string | null | undefined) ?? undefined);
        // Flink's cancel-with-savepoint is deprecated in favour of stop-with-savepoint; Floe treats it as a stop.
        const termination = body['cancel-job'] === true ? ('stop' as const) : undefined;
        const response: TriggerResponse = { 'request-id': await ctx.control.triggerSavepoint({ dir, termination }) };
        return accepted(response);
      },
    },
  },
  {
    pattern: ['jobs', ':jobid', 'stop'],
    methods: {
      POST: async (ctx) => {
        const body = await jsonBody(ctx);
        checkFields(body, { targetDirectory: 'string', drain: 'boolean' }, 'the stop request');
        const dir = await ctx.control.validateSavepointTarget((body['targetDirectory'] as string | null | undefined) ?? undefined);
        const response: TriggerResponse = {
          'request-id': await ctx.control.triggerSavepoint({ dir, termination: body['drain'] === true ? 'drain' : 'stop' }),
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

async function resolveJob(control: RoutableJobControl, id: string): Promise<JobOverview> {
  const overview = await control.overview();
  if (id === overview.jid || id === overview.name) return overview;
  throw new HttpError(404, `Job ${id} not found.`);
}

async function route(source: JobControlSource, request: RestRequest): Promise<Answer> {
  const { segments, query } = pathSegments(request.url || '/');
  const method = (request.method || 'GET').toUpperCase();
  if (segments.length === 1 && segments[0] === 'jobs') {
    if (method !== 'GET') throw new HttpError(405, `Method ${method} is not allowed on /jobs.`, { Allow: 'GET' });
    return ok(jobList(await (await source()).overview()));
  }
  for (const r of ROUTES) {
    const params = match(r.pattern, segments);
    if (!params) continue;
    const handler = r.methods[method as Method];
    if (!handler) {
      const allowed = Object.keys(r.methods).join(', ');
      throw new HttpError(405, `Method ${method} is not allowed on /${segments.join('/')}; allowed: ${allowed}.`, { Allow: allowed });
    }
    const control = await source();
    const job = await resolveJob(control, params['jobid']!);
    return handler({ control, params, query, request, job });
  }
  throw new HttpError(404, `Not found: /${segments.join('/')}`);
}

/** The answer to a refused or failed request, in Flink's error shape: an {@link HttpError}'s status, else by `statusOf`. */
export function errorResponse(error: unknown): RestResponse {
  const status = statusOf(error);
  const message = error instanceof Error ? error.message : String(error);
  const body: ErrorBody = { errors: [status >= 500 ? `Internal server error: ${message}` : message] };
  return { status, headers: error instanceof HttpError ? error.headers : {}, body };
}

/**
 * Answers one request of Flink's REST API from a job control. Never rejects: a refused request is a 4xx, a failure
 * of the job control a 5xx (a {@link FloeError}'s code decides which, see `statusOf`), both with Flink's error body.
 */
export async function routeRestRequest(control: JobControlSource, request: RestRequest): Promise<RestResponse> {
  try {
    const answer = await route(control, request);
    return { status: answer.status, headers: {}, body: answer.body };
  } catch (error) {
    return errorResponse(error);
  }
}
