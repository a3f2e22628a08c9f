/**
 * Who may drive `floe run`'s REST API: checks on a request's headers, made before it is routed, so that only a local
 * client of the user's own can stop, cancel or savepoint the job. A web page open in the user's browser can reach
 * 127.0.0.1 too; these checks keep it out:
 *
 * - `Host` must name the loopback address and port the server listens on (`127.0.0.1:<port>`, `localhost:<port>`,
 *   `[::1]:<port>`, or the interface it was bound to): a page on a rebound DNS name (DNS rebinding) sends its own
 *   name, and is refused (403) for every method;
 * - with a token, every request needs `Authorization: Bearer <token>` (401 otherwise);
 * - a state-changing request (anything but GET, HEAD, OPTIONS) is refused (403) when it carries an `Origin` other
 *   than the server's own or a `Sec-Fetch-Site` of `cross-site` or `same-site`: both are set by browsers only;
 * - a POST, and any other state-changing request with a body, must be `Content-Type: application/json` (415
 *   otherwise). `text/plain`, form and empty-bodied POSTs are what a page can send without a CORS preflight; JSON
 *   needs one, and this server grants none. A PATCH or DELETE without a body is always preflighted by a browser, so
 *   `curl -X PATCH …/jobs/<id>?mode=cancel` keeps working.
 *
 * Flink's own `RestClusterClient` sends `Content-Type: application/json` and the `Host` of the address it was given,
 * so it passes. The control-API Lambda does not use these checks: it sits behind a function URL with IAM auth.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { HttpError } from './http-error.js';

/** What the guard checks a request against. */
export interface RequestGuardOptions {
  /** The port the server listens on. */
  readonly port: number;
  /** The interface the server is bound to; a specific address is accepted as `Host` besides the loopback names. @default '127.0.0.1' */
  readonly host?: string;
  /** When set, every request must carry `Authorization: Bearer <authToken>`. @default no token */
  readonly authToken?: string;
}

/** Methods that only read; every other method changes something and gets the cross-origin checks. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Names a `Host` header may give for the server, with the port (lowercase). */
export function allowedHosts(options: Pick<RequestGuardOptions, 'port' | 'host'>): string[] {
  const names = ['127.0.0.1', 'localhost', '[::1]'];
  const bound = (options.host ?? '127.0.0.1').toLowerCase();
  // A wildcard is no name a client can use; a specific interface is.
  if (bound !== '0.0.0.0' && bound !== '::' && bound !== '') {
    const name = bound.includes(':') ? `[${bound}]` : bound;
    if (!names.includes(name)) names.push(name);
  }
  const withPort = names.map((n) => `${n}:${options.port}`);
  // Port 80 may be left out of `Host` (RFC 9110 §7.2).
  return options.port === 80 ? [...withPort, ...names] : withPort;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function tokenMatches(given: string, expected: string): boolean {
  // Digests are of equal length, so the comparison takes the same time whatever the given token is.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = header(headers, 'content-length');
  return header(headers, 'transfer-encoding') !== undefined || (length !== undefined && length.trim() !== '0');
}

/**
 * Checks a request's method and headers; returns the refusal (an {@link HttpError}: 403, 401 or 415 with the reason)
 * or undefined when the request may go on to the router. See the file comment for the rules.
 */
export function guardRequest(method: string, headers: IncomingHttpHeaders, options: RequestGuardOptions): HttpError | undefined {
  const hosts = allowedHosts(options);
  const host = header(headers, 'host')?.trim().toLowerCase();
  if (host === undefined || !hosts.includes(host)) {
    return new HttpError(
      403,
      `Refused: Host '${host ?? ''}' is not this server; it answers only to ${hosts.join(', ')} (a request for another name may come from a web page through DNS rebinding).`,
    );
  }
  if (options.authToken !== undefined) {
    const auth = header(headers, 'authorization');
    const match = auth === undefined ? undefined : /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (!match || !tokenMatches(match[1]!, options.authToken)) {
      return new HttpError(
        401,
        `${auth === undefined ? 'Missing' : 'Wrong'} credentials: this job requires 'Authorization: Bearer <token>' with the token it was started with (floe run --auth-token or FLOE_AUTH_TOKEN); the floe CLI sends it from --auth-token or FLOE_AUTH_TOKEN.`,
        { 'WWW-Authenticate': 'Bearer' },
      );
    }
  }
  const m = method.toUpperCase();
  if (SAFE_METHODS.has(m)) return undefined;
  const site = header(headers, 'sec-fetch-site')?.trim().toLowerCase();
  if (site === 'cross-site' || site === 'same-site') {
    return new HttpError(403, `Refused: a ${m} from another site (Sec-Fetch-Site: ${site}); only local clients may change the job.`);
  }
  const origin = header(headers, 'origin');
  if (origin !== undefined && !hosts.map((h) => `http://${h}`).includes(origin.trim().toLowerCase())) {
    return new HttpError(403, `Refused: a ${m} from origin '${origin}'; only local clients may change the job (a request from a web page carries its origin).`);
  }
  if (m === 'POST' || hasBody(headers)) {
    const type = header(headers, 'content-type');
    const media = type?.split(';')[0]!.trim().toLowerCase();
    if (media !== 'application/json') {
      return new HttpError(415, `Refused: a ${m} must be sent with 'Content-Type: application/json', got ${type === undefined ? 'none' : `'${type}'`}.`);
    }
  }
  return undefined;
}
