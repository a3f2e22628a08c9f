/**
 * Flink's REST API for a deployed job, as a Lambda handler of HTTP events in payload format 2.0 (a Lambda function URL
 * or an API Gateway HTTP API): the event becomes a {@link RestRequest}, lib/rest/router.ts answers it as `floe run`'s
 * server does, and the answer becomes the function's result.
 */
import { ErrorCode, FloeError } from '../../core/errors.js';
import { MAX_BODY_BYTES, tooLarge } from '../../rest/request-body.js';
import { routeRestRequest, type JobControlSource, type RestRequest, type RestResponse } from '../../rest/router.js';

/** The fields of an HTTP event (payload format 2.0) the control API reads. */
export interface HttpEventV2 {
  readonly version?: string;
  /** The path, without the query string. */
  readonly rawPath?: string;
  /** The query string, without `?`. */
  readonly rawQueryString?: string;
  readonly headers?: Readonly<Record<string, string | undefined>>;
  readonly body?: string;
  /** True when `body` is base64 (Lambda encodes bodies that are not text). */
  readonly isBase64Encoded?: boolean;
  readonly requestContext?: { readonly http?: { readonly method?: string; readonly path?: string }; readonly requestId?: string };
}

/** A function result in payload format 2.0. */
export interface HttpResultV2 {
  readonly statusCode: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly isBase64Encoded: false;
}

/** One structured log entry of the control API; `message` says what happened, the other fields are for queries. */
export interface ControlApiLogEntry {
  readonly level: 'info' | 'warn' | 'error';
  readonly message: string;
  readonly [field: string]: unknown;
}

/** Options of {@link createControlApiHandler}. */
export interface ControlApiHandlerOptions {
  /** The job control of one request; called once per request that matched a route. */
  readonly control: JobControlSource;
  /** Where each answered request is logged. @default no logging */
  readonly log?: (entry: ControlApiLogEntry) => void;
}

/** Reads an HTTP event as a {@link RestRequest}; anything but an HTTP event of payload format 2.0 is a MALFORMED_MESSAGE. */
export function restRequestOf(event: unknown): RestRequest {
  if (typeof event !== 'object' || event === null) throw new FloeError(ErrorCode.MalformedMessage, 'the control API expects an HTTP event (payload format 2.0), got no object');
  const e = event as HttpEventV2;
  const method = e.requestContext?.http?.method;
  const path = e.rawPath ?? e.requestContext?.http?.path;
  if (typeof method !== 'string' || typeof path !== 'string') {
    throw new FloeError(ErrorCode.MalformedMessage, 'the control API expects an HTTP event (payload format 2.0) with requestContext.http.method and rawPath');
  }
  const query = e.rawQueryString ? `?${e.rawQueryString}` : '';
  return {
    method,
    // The router parses the URL; a path that does not start with '/' would read as a host.
    url: `${path.startsWith('/') ? '' : '/'}${path}${query}`,
    body: async () => {
      const raw = e.body ?? '';
      const bytes = e.isBase64Encoded ? Buffer.from(raw, 'base64') : Buffer.from(raw, 'utf8');
      if (bytes.length > MAX_BODY_BYTES) throw tooLarge();
      return bytes.toString('utf8');
    },
  };
}

/** Writes a {@link RestResponse} as a function result, JSON as the node:http server writes it. */
export function httpResultOf(response: RestResponse): HttpResultV2 {
  return {
    statusCode: response.status,
    headers: { 'Content-Type': 'application/json; charset=utf-8', ...response.headers },
    body: JSON.stringify(response.body),
    isBase64Encoded: false,
  };
}

/** The Lambda handler of the control API: one HTTP event in, one answer of Flink's REST API out; see the file comment. */
export function createControlApiHandler(options: ControlApiHandlerOptions): (event: unknown) => Promise<HttpResultV2> {
  const log = options.log ?? (() => {});
  return async (event) => {
    const request = restRequestOf(event);
    const started = Date.now();
    const response = await routeRestRequest(options.control, request);
    const requestId = (event as HttpEventV2).requestContext?.requestId;
    log({
      level: response.status >= 500 ? 'error' : response.status >= 400 ? 'warn' : 'info',
      message: `${request.method.toUpperCase()} ${request.url} ${response.status}`,
      method: request.method.toUpperCase(),
      path: request.url,
      status: response.status,
      durationMs: Date.now() - started,
      ...(requestId === undefined ? {} : { requestId }),
      ...(response.status >= 400 ? { errors: (response.body as { errors?: unknown }).errors } : {}),
    });
    return httpResultOf(response);
  };
}
