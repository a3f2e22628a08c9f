import type { IncomingMessage } from 'node:http';
import { HttpError } from './http-error.js';

/** Largest request body the server reads; trigger bodies are a few dozen bytes. */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * Reads a request body as UTF-8 text; a body above {@link MAX_BODY_BYTES} is a 413 with Flink's error shape, answered
 * without reading it: at once when `Content-Length` announces more, else as soon as the bytes read pass the limit (the
 * rest is left unread; the server closes the connection after answering).
 */
export async function readBody(req: IncomingMessage): Promise<string> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > MAX_BODY_BYTES) throw tooLarge();
  // Listeners rather than `for await`: leaving an async iterator early destroys the socket, and the client would see a reset
  // instead of the 413.
  const chunks = await new Promise<Buffer[]>((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const stop = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) {
        parts.push(chunk);
        return;
      }
      stop();
      req.pause();
      reject(tooLarge());
    };
    const onEnd = () => {
      stop();
      resolve(parts);
    };
    const onError = (e: Error) => {
      stop();
      reject(e);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
  return Buffer.concat(chunks).toString('utf8');
}

/** The 413 answered to a body above {@link MAX_BODY_BYTES}, by every transport. */
export function tooLarge(): HttpError {
  return new HttpError(413, `Request body is larger than ${MAX_BODY_BYTES} bytes.`);
}

/** Parses a JSON object body; an empty body is `{}`. Anything else is a 400 with Flink's error shape. */
export function parseJsonObject(body: string): Record<string, unknown> {
  const text = body.trim();
  if (text === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `Request body is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new HttpError(400, 'Request body must be a JSON object.');
  return parsed as Record<string, unknown>;
}

/** A body field's expected type. */
type FieldType = 'string' | 'boolean';

/**
 * Checks a body against the fields a route accepts, reporting every problem at once:
 * unknown fields (a misspelt `targetDirectory` must not silently mean "the default directory") and wrong types.
 */
export function checkFields(body: Record<string, unknown>, fields: Readonly<Record<string, FieldType>>, what: string): void {
  const problems: string[] = [];
  for (const [key, value] of Object.entries(body)) {
    const type = fields[key];
    if (type === undefined) {
      const known = Object.keys(fields);
      problems.push(`unknown field '${key}' in ${what}${known.length ? ` (expected ${known.map((k) => `'${k}'`).join(', ')})` : ' (it takes no fields)'}`);
    } else if (value !== null && typeof value !== type) {
      problems.push(`field '${key}' in ${what} must be a ${type}, got ${JSON.stringify(value)}`);
    } else if (type === 'string' && value === '') {
      problems.push(`field '${key}' in ${what} must not be empty`);
    }
  }
  if (problems.length > 0) throw new HttpError(400, problems.join('; '));
}
