import { request } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_BODY_BYTES } from '../../lib/rest/request-body.js';
import { startRestServer, type RestServer } from '../../lib/rest/server.js';
import { JobControlBuilder, type FakeJobControl } from '../support/job-control-builder.js';

const JID = 'a5e0edd8e66b53f1b89c2041f91b8fd2';

let server: RestServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(control: FakeJobControl, authToken?: string): Promise<RestServer> {
  server = await startRestServer(control, { port: 0, ...(authToken === undefined ? {} : { authToken }) });
  return server;
}

/** One request over node:http, which (unlike fetch) sends the `Host` it is given, as a rebound DNS name would. */
function send(method: string, path: string, headers: Record<string, string>, body?: string) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: { errors?: string[]; [k: string]: unknown } }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server!.port, method, path, headers: { Host: `127.0.0.1:${server!.port}`, ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as { errors?: string[] } }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const json = { 'Content-Type': 'application/json' };
const stop = (headers: Record<string, string>, body = '{}') => send('POST', `/jobs/${JID}/stop`, headers, body);

describe('Host (DNS rebinding)', () => {
  it.each(['attacker.example', 'attacker.example:PORT', '127.0.0.1:OTHER', 'localhost', '127.0.0.2:PORT', 'localhost.:PORT'])(
    'refuses Host %s with 403 for reads and state changes, without touching the job',
    async (host) => {
      const control = new JobControlBuilder().build();
      const s = await serve(control);
      const h = host.replace('PORT', String(s.port)).replace('OTHER', String(s.port + 1));
      for (const answer of [await send('GET', '/jobs', { Host: h }), await stop({ Host: h, ...json })]) {
        expect(answer.status).toBe(403);
        expect(answer.body.errors).toHaveLength(1);
        expect(answer.body.errors![0]).toMatch(/Host .* is not this server/);
      }
      expect(control.calls).toEqual({ checkpoints: 0, savepoints: [], cancels: 0, validations: [] });
    },
  );

  it.each(['127.0.0.1:PORT', 'localhost:PORT', '[::1]:PORT', 'LocalHost:PORT'])('serves Host %s', async (host) => {
    const s = await serve(new JobControlBuilder().build());
    const answer = await send('GET', '/jobs', { Host: host.replace('PORT', String(s.port)) });
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ jobs: [{ id: JID, status: 'RUNNING' }] });
  });
});

describe('cross-origin state changes', () => {
  it.each([
    ['a foreign Origin', { ...json, Origin: 'http://attacker.example' }, 403, /origin 'http:\/\/attacker.example'/],
    ['Origin null (a sandboxed page)', { ...json, Origin: 'null' }, 403, /origin 'null'/],
    ['an Origin on another port of this host', { ...json, Origin: 'http://127.0.0.1:1' }, 403, /origin/],
    ['Sec-Fetch-Site: cross-site', { ...json, 'Sec-Fetch-Site': 'cross-site' }, 403, /Sec-Fetch-Site: cross-site/],
    ['Sec-Fetch-Site: same-site', { ...json, 'Sec-Fetch-Site': 'same-site' }, 403, /Sec-Fetch-Site: same-site/],
    ['Content-Type text/plain', { 'Content-Type': 'text/plain' }, 415, /application\/json.*'text\/plain'/],
    ['a form', { 'Content-Type': 'application/x-www-form-urlencoded' }, 415, /application\/json/],
    ['multipart', { 'Content-Type': 'multipart/form-data; boundary=x' }, 415, /application\/json/],
    ['no Content-Type', {}, 415, /got none/],
  ])('refuses a stop with %s and stops nothing', async (_what, headers: Record<string, string>, status, reason) => {
    const control = new JobControlBuilder().build();
    await serve(control);
    const answer = await stop(headers);
    expect(answer.status).toBe(status);
    expect(answer.body.errors![0]).toMatch(reason);
    expect(control.calls.savepoints).toEqual([]);
    expect(control.overview().state).toBe('RUNNING');
  });

  it('refuses an empty-bodied POST without a Content-Type (what fetch with mode no-cors sends)', async () => {
    const control = new JobControlBuilder().build();
    await serve(control);
    const answer = await send('POST', `/jobs/${JID}/stop`, {});
    expect(answer.status).toBe(415);
    expect(control.calls.savepoints).toEqual([]);
  });

  it.each([
    ['no Origin (a CLI)', {}],
    ['its own Origin', { Origin: 'http://localhost:PORT', Host: 'localhost:PORT' }],
    ['Sec-Fetch-Site: same-origin', { 'Sec-Fetch-Site': 'same-origin' }],
  ])('accepts a JSON stop with %s', async (_what, headers: Record<string, string>) => {
    const control = new JobControlBuilder().build();
    const s = await serve(control);
    const h = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.replace('PORT', String(s.port))]));
    const answer = await stop({ 'Content-Type': 'application/json; charset=utf-8', ...h }, '{"drain": true}');
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    expect(control.calls.savepoints).toEqual([{ dir: undefined, termination: 'drain' }]);
  });

  it('accepts a body-less PATCH cancel without a Content-Type (browsers preflight a PATCH), and refuses one with a text body', async () => {
    const control = new JobControlBuilder().build();
    await serve(control);
    expect((await send('PATCH', `/jobs/${JID}?mode=cancel`, { 'Content-Type': 'text/plain' }, 'x')).status).toBe(415);
    expect(control.calls.cancels).toBe(0);
    expect((await send('PATCH', `/jobs/${JID}?mode=cancel`, { Origin: 'http://attacker.example' })).status).toBe(403);
    expect(control.calls.cancels).toBe(0);
    expect((await send('PATCH', `/jobs/${JID}?mode=cancel`, {})).status).toBe(202);
    expect(control.calls.cancels).toBe(1);
  });

  it('keeps reads open to any local client, with or without an Origin', async () => {
    await serve(new JobControlBuilder().build());
    expect((await send('GET', `/jobs/${JID}/checkpoints`, { Origin: 'http://attacker.example' })).status).toBe(200);
  });
});

describe('bearer token', () => {
  it.each([
    ['no Authorization', {}, /Missing credentials/],
    ['a wrong token', { Authorization: 'Bearer nope' }, /Wrong credentials/],
    ['a token of another scheme', { Authorization: 'Basic czNjcjN0' }, /Wrong credentials/],
  ])('answers 401 to %s, for reads and state changes', async (_what, headers: Record<string, string>, reason) => {
    const control = new JobControlBuilder().build();
    await serve(control, 's3cr3t');
    for (const answer of [await send('GET', '/jobs', headers), await stop({ ...json, ...headers })]) {
      expect(answer.status).toBe(401);
      expect(answer.headers['www-authenticate']).toBe('Bearer');
      expect(answer.body.errors![0]).toMatch(reason);
    }
    expect(control.calls.savepoints).toEqual([]);
  });

  it('serves requests with the right token', async () => {
    const control = new JobControlBuilder().build();
    await serve(control, 's3cr3t');
    expect((await send('GET', '/jobs', { Authorization: 'Bearer s3cr3t' })).status).toBe(200);
    expect((await stop({ ...json, Authorization: 'bearer s3cr3t' })).status).toBe(202);
    expect(control.calls.savepoints).toHaveLength(1);
  });
});

/** What a raw client saw of a request whose body it streamed: the answer, and how much it had written by then. */
interface StreamedUpload {
  readonly response: string;
  readonly writtenWhenAnswered: number;
  readonly closed: boolean;
}

/**
 * Streams a body of `total` bytes in 16 KiB chunks (chunked, or with its Content-Length announced), pausing between
 * chunks as a slow uploader does, until the server answers or `total` is written.
 */
function streamUpload(port: number, total: number, framing: 'chunked' | 'content-length'): Promise<StreamedUpload> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let response = '';
    let written = 0;
    let writtenWhenAnswered: number | undefined;
    let closed = false;
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      response += c;
      writtenWhenAnswered ??= written;
    });
    // A reset after the answer is the server refusing the rest; it is not the test's failure.
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      resolve({ response, writtenWhenAnswered: writtenWhenAnswered ?? written, closed });
    });
    socket.on('connect', async () => {
      socket.write(
        `POST /jobs/${JID}/savepoints HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
          (framing === 'chunked' ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${total}\r\n`) +
          '\r\n',
      );
      const chunk = 'x'.repeat(16 * 1024);
      try {
        while (writtenWhenAnswered === undefined && written < total && !closed) {
          socket.write(framing === 'chunked' ? `${chunk.length.toString(16)}\r\n${chunk}\r\n` : chunk);
          written += chunk.length;
          await new Promise((r) => setTimeout(r, 2));
        }
      } catch (e) {
        reject(e as Error);
      }
      // Given up: the server never answered.
      if (writtenWhenAnswered === undefined) socket.destroy();
    });
  });
}

describe('oversized bodies', () => {
  // 200 MB announced; the client gives up after 8 MB without an answer, which the old reader (reading to the end) never gave.
  const total = 200 * 1024 * 1024;
  const giveUp = 8 * 1024 * 1024;

  it('answers 413 as soon as a streamed body passes the limit, having read little past it, and closes the connection', async () => {
    const control = new JobControlBuilder().build();
    const s = await serve(control);
    const upload = await streamUpload(s.port, giveUp, 'chunked');
    expect(upload.response).toMatch(/^HTTP\/1\.1 413 /);
    expect(upload.response).toMatch(/larger than 65536 bytes/);
    expect(upload.writtenWhenAnswered).toBeGreaterThan(MAX_BODY_BYTES);
    expect(upload.writtenWhenAnswered).toBeLessThan(MAX_BODY_BYTES + 1024 * 1024);
    expect(upload.closed).toBe(true);
    expect(control.calls.savepoints).toEqual([]);
  });

  it('answers 413 at once to a Content-Length above the limit, before any of the body is sent', async () => {
    const s = await serve(new JobControlBuilder().build());
    const answered = await new Promise<string>((resolve) => {
      const socket = connect(s.port, '127.0.0.1', () => {
        socket.write(`POST /jobs/${JID}/savepoints HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nContent-Type: application/json\r\nContent-Length: ${total}\r\n\r\n`);
      });
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (c: string) => (text += c));
      socket.on('error', () => {});
      socket.on('close', () => resolve(text));
    });
    expect(answered).toMatch(/^HTTP\/1\.1 413 /);
    expect(answered).toMatch(/connection: close/i);
   }, 10_000);

  it('does not read the body of a request it refuses for its headers', async () => {
    const control = new JobControlBuilder().build();
    const s = await serve(control);
    // A foreign Host with a body announced at 200 MB: refused, and the connection closed rather than drained.
    const upload = await new Promise<StreamedUpload>((resolve) => {
      const socket = connect(s.port, '127.0.0.1');
      let response = '';
      let written = 0;
      let answeredAt: number | undefined;
      socket.setEncoding('utf8');
      socket.on('data', (c: string) => {
        response += c;
        answeredAt ??= written;
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve({ response, writtenWhenAnswered: answeredAt ?? written, closed: true }));
      socket.on('connect', async () => {
        socket.write(`POST /jobs/${JID}/stop HTTP/1.1\r\nHost: attacker.example\r\nContent-Type: application/json\r\nContent-Length: ${total}\r\n\r\n`);
        const chunk = 'x'.repeat(16 * 1024);
        while (answeredAt === undefined && written < giveUp && !socket.destroyed) {
          socket.write(chunk);
          written += chunk.length;
          await new Promise((r) => setTimeout(r, 2));
        }
        if (answeredAt === undefined) socket.destroy();
      });
    });
    expect(upload.response).toMatch(/^HTTP\/1\.1 403 /);
    expect(upload.writtenWhenAnswered).toBeLessThan(1024 * 1024);
    expect(control.calls.savepoints).toEqual([]);
  });
});
