import { ErrorCode, FloeError } from './errors.js';

/** An `s3://` location split into its bucket and key segments. */
interface S3Location {
  readonly bucket: string;
  readonly segments: readonly string[];
}

/** Parses `s3://bucket/a/b` (a trailing `/` allowed); a problem is returned as a string. */
function parseS3(location: string): S3Location | string {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(location);
  if (!m) return 'is not an s3:// URL of the form s3://<bucket>/<prefix>';
  const key = (m[2] ?? '').replace(/\/$/, '');
  const segments = key === '' ? [] : key.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return "has an empty, '.' or '..' segment in its key";
  return { bucket: m[1]!, segments };
}

function inside(target: S3Location, root: S3Location): boolean {
  return target.bucket === root.bucket && root.segments.every((s, i) => target.segments[i] === s);
}

/**
 * Checks that an `s3://` savepoint target lies inside one of `roots` (the job's savepoint directory, the job's prefix
 * in its checkpoint bucket: where its functions may write), segment by segment, so `s3://b/job-2` is not inside
 * `s3://b/job`. Returns the target without a trailing `/`; throws a BAD_REQUEST FloeError naming the roots otherwise.
 */
export function checkS3SavepointTarget(target: string, roots: readonly string[]): string {
  const allowed = [...new Set(roots)].map((r) => ({ root: r.replace(/\/$/, ''), parsed: parseS3(r) }));
  const where = allowed.map((a) => a.root).join(' or ');
  const parsed = parseS3(target);
  if (typeof parsed === 'string') {
    throw new FloeError(ErrorCode.BadRequest, `savepoint target '${target}' ${parsed}; savepoints of this job go under ${where}`);
  }
  if (!allowed.some((a) => typeof a.parsed !== 'string' && inside(parsed, a.parsed))) {
    throw new FloeError(ErrorCode.BadRequest, `savepoint target '${target}' is outside the job's own storage; savepoints of this job go under ${where} (where its functions may write)`);
  }
  return `s3://${parsed.bucket}${parsed.segments.map((s) => `/${s}`).join('')}`;
}
