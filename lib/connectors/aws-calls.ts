import { ErrorCode, FloeError, ValidationError } from '../core/errors.js';

/** How an AWS sink retries a call that failed for a reason that may pass (throttling, a server fault, no answer). */
export interface RetryOptions {
  /** Attempts at one call, the first included, before the commit fails (and is run again later). @default 10 */
  readonly maxAttempts?: number;
  /** Delay cap of the first retry in milliseconds; each further retry doubles it (full jitter), up to `maxDelayMs`. @default 50 */
  readonly baseDelayMs?: number;
  /** Largest delay cap in milliseconds. @default 5000 */
  readonly maxDelayMs?: number;
  /** Waits between retries; tests pass a fake. @default a setTimeout-based sleep */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** RetryOptions with every default filled in. */
export type ResolvedRetryOptions = Required<RetryOptions>;

/** Fills in the defaults of `retry` and validates it, naming `subject` and every problem at once. */
export function resolveRetryOptions(subject: string, retry: RetryOptions = {}): ResolvedRetryOptions {
  const r: ResolvedRetryOptions = {
    maxAttempts: retry.maxAttempts ?? 10,
    baseDelayMs: retry.baseDelayMs ?? 50,
    maxDelayMs: retry.maxDelayMs ?? 5000,
    sleep: retry.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
  };
  const problems: string[] = [];
  if (!Number.isInteger(r.maxAttempts) || r.maxAttempts < 1) problems.push(`retry.maxAttempts must be an integer >= 1, got ${r.maxAttempts}`);
  if (!(r.baseDelayMs >= 0)) problems.push(`retry.baseDelayMs must be >= 0, got ${r.baseDelayMs}`);
  if (!(r.maxDelayMs >= r.baseDelayMs)) problems.push(`retry.maxDelayMs must be >= retry.baseDelayMs, got ${r.maxDelayMs}`);
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidOptions, `${subject} options`, problems);
  return r;
}

/** Error names (service codes and SDK names) that say "try again later". */
const TRANSIENT_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'RequestThrottled',
  'RequestThrottledException',
  'KMSThrottlingException',
  'SlowDown',
  'InternalServerError',
  'InternalFailure',
  'InternalError',
  'InternalException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
]);

/** Whether an SDK error (or a per-entry error code of a batch answer) may go away on retry. */
export function isTransient(error: unknown): boolean {
  if (typeof error === 'string') return TRANSIENT_NAMES.has(error);
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { name?: unknown; $retryable?: unknown; $fault?: unknown; $metadata?: { httpStatusCode?: number } };
  if (typeof e.name === 'string' && TRANSIENT_NAMES.has(e.name)) return true;
  if (e.$retryable) return true;
  if (e.$fault === 'server') return true;
  if (e.$fault === 'client') return false;
  // No HTTP status at all: the request may not have reached the service, or its answer was lost.
  return e.$metadata !== undefined && e.$metadata.httpStatusCode === undefined;
}

/** `error`'s name and message, for error messages. */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** The delay before retry number `attempt` (1 for the first retry): full jitter under a doubling cap. */
export function retryDelay(retry: ResolvedRetryOptions, attempt: number): number {
  return Math.random() * Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (attempt - 1));
}

/**
 * Runs `call`, retrying transient failures with backoff. A terminal failure throws at once; running out of attempts
 * throws a retryable STORAGE error (the commit runs again later, from its staged records).
 */
export async function withRetries<T>(what: string, retry: ResolvedRetryOptions, call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (e) {
      if (e instanceof FloeError) throw e;
      if (!isTransient(e)) throw new FloeError(ErrorCode.Storage, `${what} failed: ${describeError(e)}`, { cause: e });
      if (attempt >= retry.maxAttempts) throw new FloeError(ErrorCode.Storage, `${what} failed ${attempt} times: ${describeError(e)}`, { cause: e, retryable: true });
      await retry.sleep(retryDelay(retry, attempt));
    }
  }
}

/** Why a batch answer says one entry was not stored. */
export interface EntryError {
  readonly code: string;
  readonly message?: string;
  /** Whether sending the entry again may succeed. @default whether `code` is a transient error's */
  readonly retryable?: boolean;
}

/**
 * Sends `items` in consecutive batches, retrying the entries a batch answer reports as failed (first, in their order,
 * before what follows them) while their failures are transient, and the whole batch when the request itself fails
 * transiently. `send` returns, for each entry it was given, the error of a failed entry (retried when `retryable`, by
 * default when its code is a transient one) or undefined when the entry was stored.
 */
export async function sendInBatches<E>(
  what: string,
  retry: ResolvedRetryOptions,
  items: readonly E[],
  takeBatch: (pending: readonly E[]) => number,
  send: (batch: readonly E[]) => Promise<ReadonlyArray<EntryError | undefined>>,
): Promise<void> {
  let pending = items;
  let attempt = 1;
  while (pending.length > 0) {
    const size = Math.max(1, takeBatch(pending));
    const batch = pending.slice(0, size);
    const rest = pending.slice(size);
    const outcome = await withRetries(what, retry, () => send(batch));
    const failed: E[] = [];
    let lastError: EntryError | undefined;
    outcome.forEach((error, i) => {
      if (!error) return;
      if (!(error.retryable ?? isTransient(error.code))) {
        throw new FloeError(ErrorCode.Storage, `${what}: an entry was refused with ${error.code}${error.message ? `: ${error.message}` : ''}`);
      }
      failed.push(batch[i]!);
      lastError = error;
    });
    if (failed.length === 0) {
      pending = rest;
      attempt = 1;
      continue;
    }
    if (attempt >= retry.maxAttempts) {
      throw new FloeError(ErrorCode.Storage, `${what}: ${failed.length} of ${batch.length} entries failed ${attempt} times, last with ${lastError!.code}`, { retryable: true });
    }
    await retry.sleep(retryDelay(retry, attempt));
    attempt++;
    pending = [...failed, ...rest];
  }
}

/** Runs `task` over `items` with at most `limit` running at once; rejects with the first failure once all started tasks settled. */
export async function forEachLimit<E>(items: readonly E[], limit: number, task: (item: E) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await task(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
}

/** UTF-8 byte length of a string. */
export const utf8Bytes = (s: string) => Buffer.byteLength(s, 'utf8');
