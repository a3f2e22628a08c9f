/** Stable error codes; each names one kind of failure a caller may act on. */
export const ErrorCode = {
  InvalidJob: 'INVALID_JOB',
  InvalidOptions: 'INVALID_OPTIONS',
  CorruptManifest: 'CORRUPT_MANIFEST',
  UnsupportedManifestVersion: 'UNSUPPORTED_MANIFEST_VERSION',
  IncompatibleRestore: 'INCOMPATIBLE_RESTORE',
  ManifestExists: 'MANIFEST_EXISTS',
  CheckpointNotFound: 'CHECKPOINT_NOT_FOUND',
  CommitFenced: 'COMMIT_FENCED',
  MalformedMessage: 'MALFORMED_MESSAGE',
  ChannelGap: 'CHANNEL_GAP',
  LimitExceeded: 'LIMIT_EXCEEDED',
  UserFunction: 'USER_FUNCTION',
  JobFailed: 'JOB_FAILED',
  Storage: 'STORAGE',
  NotFound: 'NOT_FOUND',
  BadRequest: 'BAD_REQUEST',
  AwsConfiguration: 'AWS_CONFIGURATION',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base of every error Floe raises: a stable `code`, an optional `cause`, and whether retrying may help. */
export class FloeError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.name = 'FloeError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** A job definition or its options are invalid; `problems` lists every problem found, not just the first. */
export class ValidationError extends FloeError {
  readonly problems: readonly string[];
  constructor(code: ErrorCode, subject: string, problems: readonly string[]) {
    super(code, `${subject} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ValidationError';
    this.problems = problems;
  }
}

/** A conditional commit lost to a newer writer (a zombie or duplicate invocation). */
export class CommitFencedError extends FloeError {
  constructor(message: string) {
    super(ErrorCode.CommitFenced, message);
    this.name = 'CommitFencedError';
  }
}

/** User code threw while processing; the job fails over according to its restart strategy. */
export class UserFunctionError extends FloeError {
  readonly operatorUid: string;
  constructor(operatorUid: string, cause: unknown) {
    super(ErrorCode.UserFunction, `operator '${operatorUid}' threw: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
      retryable: true,
    });
    this.name = 'UserFunctionError';
    this.operatorUid = operatorUid;
  }
}

/** Most characters of a stack trace a failure cause carries (a job row holds the cause, and an item 400 KB). */
const MAX_STACK_CHARS = 2_000;

/**
 * The stack trace of the user code that threw, for a failure cause: the error a user function threw, found through
 * the causes of `error` (a `UserFunctionError` wraps it); its frames only, cut to about 2,000 characters. Undefined
 * when the failure did not come from user code (Floe's own errors name their cause in their message).
 */
export function stackOf(error: unknown): string | undefined {
  let at: unknown = error;
  for (let depth = 0; depth < 8 && at instanceof Error && !(at instanceof UserFunctionError); depth++) at = at.cause;
  const root = at instanceof UserFunctionError ? at.cause : undefined;
  const stack = root instanceof Error ? root.stack : undefined;
  if (stack === undefined) return undefined;
  const frames = stack
    .split('\n')
    .filter((line) => /^\s+at /.test(line))
    .join('\n');
  if (frames === '') return undefined;
  return frames.length <= MAX_STACK_CHARS ? frames : `${frames.slice(0, frames.lastIndexOf('\n', MAX_STACK_CHARS))}\n    …`;
}

/** A failure cause as the REST API and the CLI show it: the message, then the stack trace of the user code that threw, if it did. */
export function failureCause(message: string, error: unknown): string {
  const stack = stackOf(error);
  return stack === undefined ? message : `${message}\n${stack}`;
}
