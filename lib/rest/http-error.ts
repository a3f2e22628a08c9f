import { ErrorCode, FloeError } from '../core/errors.js';

/** An answer other than 2xx, carried as an exception from a route handler to the response writer. */
export class HttpError extends Error {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.headers = headers;
  }
}

/** The HTTP status for an error a JobControl raised: its caller's fault (4xx) or the job's (5xx). */
export function statusOf(error: unknown): number {
  if (error instanceof HttpError) return error.status;
  if (error instanceof FloeError) {
    switch (error.code) {
      case ErrorCode.BadRequest:
      case ErrorCode.InvalidOptions:
        return 400;
      case ErrorCode.NotFound:
      case ErrorCode.CheckpointNotFound:
        return 404;
      case ErrorCode.JobFailed:
        return 409;
      default:
        return 500;
    }
  }
  return 500;
}
