import { ErrorCode, ValidationError } from '../core/errors.js';
import type { Job, LogicalNode } from '../api/job.js';
import { resolveCheckpointOptions, type CheckpointOptions } from '../core/options.js';

/** Operator kinds that keep state and therefore need a `uid`. */
export function isStateful(node: LogicalNode): boolean {
  switch (node.spec.kind) {
    case 'source':
    case 'keyedProcess':
    case 'reduce':
    case 'aggregate':
    case 'window':
    case 'sink':
      return true;
    case 'process':
      return node.keyedState.length > 0;
    default:
      return false;
  }
}

/** Largest max parallelism Floe accepts (Flink's limit). */
export const UPPER_MAX_PARALLELISM = 32768;

/** What the runtime lays over the job's own settings when it plans it. */
export interface PlanOverrides {
  readonly parallelism?: number;
  /** Checkpoint options laid over the job's. */
  readonly checkpoint?: CheckpointOptions;
  /** The longest a step may run (the function timeout when deployed). */
  readonly stepTimeoutMs?: number;
  /** Whether to check sources' settings against the checkpoint timing; a deployed function skips it (its stack checked it at synth, with the stack's options). @default true */
  readonly checkTiming?: boolean;
}

/** Problems of each source's settings with the checkpoint timing the job will run with. */
function timingProblems(job: Job, overrides: PlanOverrides): string[] {
  const sources = job.nodes.flatMap((n) => (n.spec.kind === 'source' && n.spec.connector.checkTiming ? [n.spec.connector] : []));
  if (sources.length === 0 || overrides.checkTiming === false) return [];
  let checkpoint;
  try {
    checkpoint = resolveCheckpointOptions({ ...job.options.checkpoint, ...overrides.checkpoint });
  } catch {
    return []; // the checkpoint options' own problems are reported where they are resolved
  }
  const timing = { checkpointIntervalMs: checkpoint.interval, checkpointTimeoutMs: checkpoint.timeout, ...(overrides.stepTimeoutMs !== undefined ? { stepTimeoutMs: overrides.stepTimeoutMs } : {}) };
  return sources.flatMap((c) => c.checkTiming!(timing));
}

/** Checks a job before it runs and throws one ValidationError listing every problem found. */
export function validateJob(job: Job, overrides: PlanOverrides = {}): void {
  const problems: string[] = [];
  const maxParallelism = job.options.maxParallelism ?? 128;
  const defaultParallelism = overrides.parallelism ?? job.options.parallelism ?? 1;
  if (!Number.isInteger(maxParallelism) || maxParallelism < 1 || maxParallelism > UPPER_MAX_PARALLELISM) {
    problems.push(`maxParallelism must be an integer from 1 to ${UPPER_MAX_PARALLELISM}, got ${maxParallelism}`);
  }
  if (!Number.isInteger(defaultParallelism) || defaultParallelism < 1) problems.push(`parallelism must be a positive integer, got ${defaultParallelism}`);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(job.name)) problems.push(`job name '${job.name}' must start with a letter or digit and use only letters, digits, '.', '_' and '-'`);
  if (job.nodes.length === 0 || !job.nodes.some((n) => n.spec.kind === 'source')) problems.push('the job has no source');

  const seen = new Map<string, LogicalNode>();
  const consumers = new Set(job.nodes.flatMap((n) => n.inputs.map((e) => e.from)));
  for (const node of job.nodes) {
    const label = node.uid ? `operator '${node.uid}' (${node.name})` : `operator '${node.name}' (#${node.id})`;
    if (node.uid !== undefined) {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(node.uid)) problems.push(`${label}: uid must start with a letter or digit and use only letters, digits, '.', '_' and '-'`);
      const other = seen.get(node.uid);
      if (other) problems.push(`duplicate uid '${node.uid}': used by '${other.name}' (#${other.id}) and '${node.name}' (#${node.id})`);
      else seen.set(node.uid, node);
    } else if (isStateful(node)) {
      problems.push(`${label} keeps state but has no uid: give it { uid: '...' } so its state can be restored`);
    }
    if (node.requiresKeyedInput && node.inputs.some((e) => e.partitioning !== 'hash')) {
      const what = node.keyedState.length > 0 ? `keyed state (${node.keyedState.join(', ')})` : 'timers';
      problems.push(`${label} uses ${what} but its input is not keyed: call keyBy(...) before it`);
    }
    const p = node.parallelism ?? defaultParallelism;
    if (node.parallelism !== undefined && (!Number.isInteger(node.parallelism) || node.parallelism < 1)) {
      problems.push(`${label}: parallelism must be a positive integer, got ${node.parallelism}`);
    } else if (p > maxParallelism) {
      problems.push(`${label}: parallelism ${p} is above maxParallelism ${maxParallelism}`);
    }
    if (node.spec.kind !== 'sink' && !consumers.has(node.id)) problems.push(`${label} has no downstream operator: its output goes nowhere (add a sink)`);
  }
  problems.push(...timingProblems(job, overrides));
  if (problems.length > 0) throw new ValidationError(ErrorCode.InvalidJob, `job '${job.name}'`, problems);
}
