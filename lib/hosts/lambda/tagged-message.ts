/**
 * The messages besides envelopes that reach a vertex's queue — a source's wake (`{"floe":"wake",…}`, source-wakes.ts)
 * and a timer wake (`{"floe":"timer",…}`, timer-wakes.ts) — are JSON objects tagged by their `floe` field. One reader
 * for both: a body without the tag is not one (it may be an envelope); one with the tag whose fields do not fit its
 * schema is a terminal MALFORMED_MESSAGE naming every problem.
 */
import { z } from 'zod';
import { ErrorCode, FloeError } from '../../core/errors.js';

/** A non-negative integer field. */
export const count = z.number().int().nonnegative();

/** Reads a message tagged `floe: tag` from `body` with `schema`, or undefined when the body is not such a message. */
export function parseTaggedMessage<T>(body: string, tag: string, schema: z.ZodType<T>, what: string): T | undefined {
  // Cheap test first: most bodies on a vertex queue are envelopes.
  if (!body.includes(`"${tag}"`)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null || (raw as { floe?: unknown }).floe !== tag) return undefined;
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(body)'}: ${i.message}`);
  throw new FloeError(ErrorCode.MalformedMessage, `${what} needs non-negative integer fields (${problems.join('; ')}), got ${body.slice(0, 200)}`);
}
