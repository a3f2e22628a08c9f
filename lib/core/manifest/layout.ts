/** Where things live under a checkpoint root; the same layout on local disk and in S3. */
export const Layout = {
  /** `<root>/<job>/checkpoints` */
  checkpointsDir: (root: string, job: string) => join(root, job, 'checkpoints'),
  /** `<root>/<job>/checkpoints/chk-<n>` */
  checkpointDir: (root: string, job: string, id: number) => join(root, job, 'checkpoints', `chk-${id}`),
  /** `<root>/<job>/checkpoints/shared`: state files referenced by incremental checkpoints. */
  sharedDir: (root: string, job: string) => join(root, job, 'checkpoints', 'shared'),
  /**
   * `<root>/<job>/checkpoints/spill/gen-<generation>`: envelopes subtasks hold back beyond what their control rows
   * carry; under `checkpoints/`, where the functions may delete, and removed with the checkpoints on cancel.
   */
  spillDir: (root: string, job: string, generation: number) => join(root, job, 'checkpoints', 'spill', `gen-${generation}`),
  /** `<root>/<job>/checkpoints/staging`: what sinks stage until their checkpoint completes (see SinkWriterContext.stagingDir). */
  stagingDir: (root: string, job: string) => join(root, job, 'checkpoints', 'staging'),
  /** `<dir>/savepoint-<id>` */
  savepointDir: (dir: string, savepointId: string) => join(dir, `savepoint-${savepointId}`),
  /** The manifest's name inside a snapshot directory. */
  METADATA: '_metadata',
  /** Parses a `chk-<n>` directory name. */
  parseCheckpointDirName(name: string): number | undefined {
    const m = /^chk-(\d+)$/.exec(name);
    return m ? Number(m[1]) : undefined;
  },
};

/** Joins location segments with `/`, for both file paths and `s3://` URLs. */
export function join(...parts: string[]): string {
  const [first, ...rest] = parts.filter((p) => p !== '');
  if (first === undefined) return '';
  const head = first.replace(/\/+$/, '');
  // Parts that were only slashes would otherwise leave `a//b`.
  const tail = rest.map((p) => p.replace(/^\/+|\/+$/g, '')).filter((p) => p !== '');
  // A first part of only slashes is the file-system root.
  if (head === '') return `/${tail.join('/')}`;
  return [head, ...tail].join('/');
}

/** `s3://bucket`, `file://`, …: a URL scheme with its authority (RFC 3986 schemes are case-insensitive). */
const SCHEME = /^([a-z][a-z0-9+.-]*:\/\/[^/]*)(.*)$/i;

/** Resolves a path relative to a directory, folding `..` segments (for `../shared/...` handles); an absolute `relative` (a `/` path or a URL) wins, as in `path.resolve`. */
export function resolveRelative(dir: string, relative: string): string {
  if (relative.startsWith('/') || SCHEME.test(relative)) return resolveRelative(relative, '');
  const schemeMatch = SCHEME.exec(dir);
  const prefix = schemeMatch ? schemeMatch[1]! : '';
  const rest = schemeMatch ? schemeMatch[2]! : dir;
  const rooted = rest.startsWith('/') || prefix !== '';
  const out: string[] = [];
  for (const seg of [...rest.split('/'), ...relative.split('/')]) {
    if (seg === '' || seg === '.') continue;
    if (seg !== '..') out.push(seg);
    // Above the root `..` stays at the root; above a relative directory it must be kept (`../ckpt` + `x` is `../ckpt/x`).
    else if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
    else if (!rooted) out.push('..');
  }
  if (rooted) return `${prefix}/${out.join('/')}`;
  return out.length === 0 ? '.' : out.join('/');
}
