import { randomUUID } from 'node:crypto';
import { ErrorCode, FloeError } from '../core/errors.js';
import type { CheckpointStorage } from '../ports/index.js';
import type { Envelope } from '../core/envelope.js';

/** What a subtask holds back: envelopes behind a barrier during alignment, and envelopes ahead of a gap. */
export interface HeldEnvelopes {
  readonly held: readonly Envelope[];
  readonly ahead: readonly Envelope[];
}

/** A spill object as a step read it: where it is and its text, so an unchanged one is not written again. */
export interface ReadSpill {
  readonly path: string;
  readonly text: string;
}

/** Where held-back envelopes go when the control row cannot carry them, and how much it carries. */
export interface SpillOptions {
  /** Encoded bytes the control row carries itself. @default no limit */
  readonly maxInlineBytes?: number;
  /** Directory in checkpoint storage for more. @default none: more fails with LIMIT_EXCEEDED */
  readonly dir?: string;
}

/** Reads the held-back envelopes a spilled control row references. */
export async function readSpill(storage: CheckpointStorage, path: string, subtask: string): Promise<{ envelopes: HeldEnvelopes; spill: ReadSpill }> {
  let text: string;
  try {
    text = Buffer.from(await storage.get(path)).toString('utf8');
  } catch (cause) {
    throw new FloeError(ErrorCode.Storage, `subtask ${subtask}: cannot read its held-back envelopes from ${path}: ${(cause as Error).message}`, { cause, retryable: true });
  }
  return { envelopes: JSON.parse(text) as HeldEnvelopes, spill: { path, text } };
}

/**
 * Decides where held-back envelopes go at a commit: `undefined` keeps them in the control row; else the path of the
 * spill object holding them, written first under a name no other attempt uses (a zombie cannot overwrite what the
 * winning commit references), or the one read at the start of the step when nothing changed.
 */
export async function spillIfLarge(
  storage: CheckpointStorage,
  envelopes: HeldEnvelopes,
  options: SpillOptions,
  owner: { readonly subtask: string; readonly fileStem: string },
  previous: ReadSpill | undefined,
): Promise<string | undefined> {
  const limit = options.maxInlineBytes;
  const { held, ahead } = envelopes;
  if (limit === undefined || (held.length === 0 && ahead.length === 0)) return undefined;
  const text = JSON.stringify({ held, ahead });
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes <= limit) return undefined;
  if (options.dir === undefined) {
    throw new FloeError(
      ErrorCode.LimitExceeded,
      `subtask ${owner.subtask} holds back ${held.length + ahead.length} envelopes (${bytes} bytes), more than its control row carries (${limit} bytes), and has no spill directory`,
    );
  }
  if (previous !== undefined && previous.text === text) return previous.path;
  const path = `${options.dir}/${owner.fileStem}-${randomUUID()}.json`;
  await storage.put(path, Buffer.from(text, 'utf8'));
  return path;
}
