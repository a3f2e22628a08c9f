/** Where things live under a checkpoint root; the same layout on local disk and in S3. */
export const Layout = {
  /** `<root>/<job>/checkpoints` */
  checkpointsDir: (root: string, job: string) => join(root, job, 'checkpoints'),
  /** `<root>/<job>/checkpoints/chk-<n>` */
  checkpointDir: (root: string, job: string, id: number) => join(root, job, 'checkpoints', `chk-${id}`),
  /** `<root>/<job>/checkpoints/shared`: state files referenced by incremental checkpoints. */
  sharedDir: (root: string, job: string) => join(root, job, 'checkpoints', 'shared'),
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
  return parts
    .filter((p) => p !== '')
    .map((p, i) => (i === 0 ? p.replace(/\/+$/, '') : p.replace(/^\/+|\/+$/g, '')))
    .join('/');
}

/** Resolves a path relative to a directory, folding `..` segments (for `../shared/...` handles). */
export function resolveRelative(dir: string, relative: string): string {
  const schemeMatch = /^([a-z0-9]+:\/\/[^/]*)(.*)$/.exec(dir);
  const prefix = schemeMatch ? schemeMatch[1]! : '';
  const rest = schemeMatch ? schemeMatch[2]! : dir;
  const absolute = rest.startsWith('/');
  const out: string[] = [];
  for (const seg of [...rest.split('/'), ...relative.split('/')]) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return prefix + (absolute || prefix ? '/' : '') + out.join('/');
}
