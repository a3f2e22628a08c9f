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
