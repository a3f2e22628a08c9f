import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCode, FloeError } from '../core/errors.js';
import type { JobControl } from './job-control.js';
import { MAX_BODY_BYTES, readBody } from './request-body.js';
import { guardRequest, type RequestGuardOptions } from './request-guard.js';
import { errorResponse, routeRestRequest } from './router.js';

/** Where the REST server listens. */
export interface RestServerOptions {
  /** TCP port; 0 picks a free one. */
  readonly port: number;
  /** Interface to bind. @default '127.0.0.1' (the API can stop and cancel the job, so it is not exposed beyond this machine by default) */
  readonly host?: string;
  /** When set, every request must carry `Authorization: Bearer <authToken>` (401 otherwise). @default no token: any local client may call */
  readonly authToken?: string;
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

function send(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

async function handle(control: JobControl, guard: RequestGuardOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // Checked before routing: a refused request reaches neither the job control nor the body reader.
  const refusal = guardRequest(req.method ?? 'GET', req.headers, guard);
  const answer = refusal
    ? errorResponse(refusal)
    : await routeRestRequest(() => control, { method: req.method ?? 'GET', url: req.url ?? '/', body: () => readBody(req) });
  let headers = answer.headers;
  if (answer.status >= 400 && !req.complete) {
    const declared = Number(req.headers['content-length']);
    // Drain what is left of a small body we refused, so the client sees our answer rather than a reset connection;
    // a large or unannounced one is not read: the connection closes once the answer is written.
    if (Number.isFinite(declared) && declared <= MAX_BODY_BYTES) req.resume();
    else headers = { ...headers, Connection: 'close' };
  }
  send(res, answer.status, answer.body, headers);
}

/**
 * Serves a job's control API with Flink's REST paths and shapes (lib/rest/router.ts), on 127.0.0.1 unless `host` says
 * otherwise, to local clients only: requests for another `Host`, cross-origin state changes and POSTs that are not
 * JSON are refused, and a token, when given, is required (lib/rest/request-guard.ts).
 */
export async function startRestServer(control: JobControl, options: RestServerOptions): Promise<RestServer> {
  const host = options.host ?? '127.0.0.1';
  const server = createServer((req, res) => {
    // Requests arrive only once the server listens, so its port is known by then.
    const guard: RequestGuardOptions = { port: (server.address() as AddressInfo).port, host, ...(options.authToken === undefined ? {} : { authToken: options.authToken }) };
    handle(control, guard, req, res).catch(() => res.destroy());
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
