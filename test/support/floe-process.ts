/**
 * Runs `node bin/floe.js run …` as a child process for end-to-end tests: collects its `[floe]` stderr lines with
 * their times, waits for a line matching a pattern, kills it, and waits for it to exit, all with timeouts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root, where `bin/floe.js` lives (the child's working directory). */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Options of one `floe run`. */
export interface FloeRunOptions {
  /** The job file, relative to the repository root. */
  readonly jobFile: string;
  /** Arguments for the job itself, passed after `--`. */
  readonly jobArgs: readonly string[];
  /** `--checkpoint-interval`, e.g. `200ms`. @default the job's setting */
  readonly checkpointInterval?: string;
  /** `--checkpoint-dir`. @default the CLI's default */
  readonly checkpointDir?: string;
  /** `--from-checkpoint`: `latest` or a path. @default none */
  readonly fromCheckpoint?: string;
  /** `--from-savepoint`: a savepoint directory, `_metadata` file or `s3://` URL. @default none */
  readonly fromSavepoint?: string;
  /** `--parallelism`, the default parallelism of the operators. @default the job's */
  readonly parallelism?: number;
  /** `--aws-endpoint`: run in emulator mode against this endpoint. @default embedded */
  readonly awsEndpoint?: string;
  /** `--port`; 0 picks a free port, so parallel tests never meet on 8081. @default 0 */
  readonly port?: number;
  /** `--auth-token`: the token every REST request must carry. @default none */
  readonly authToken?: string;
  /** Changes to the child's environment (this process's): a value of `undefined` removes the variable. @default none */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** One stderr line and when it arrived, in ms since the process was spawned. */
export interface LogLine {
  readonly text: string;
  readonly atMs: number;
}

/** How a child process ended. */
export interface ProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A line that matched, with its index in `lines`. */
export interface LineMatch {
  readonly line: LogLine;
  readonly index: number;
  readonly match: RegExpExecArray;
}

const live = new Set<FloeProcess>();

/** A running (or finished) `floe run` child process. */
export class FloeProcess {
  /** Every stderr line so far, in order. */
  readonly lines: LogLine[] = [];
  /** Everything written to stdout. */
  stdout = '';
  /** The exit, once the process has exited. */
  exit: ProcessExit | undefined;
  readonly args: readonly string[];
  private readonly child: ChildProcess;
  private readonly startedAt = Date.now();
  private readonly exited: Promise<ProcessExit>;
  private readonly listeners = new Set<() => void>();
  private partial = '';

  private constructor(args: readonly string[], envChanges: Readonly<Record<string, string | undefined>> = {}) {
    this.args = args;
    const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: '1' };
    for (const [name, value] of Object.entries(envChanges)) {
      if (value === undefined) delete env[name];
      else env[name] = value;
    }
    this.child = spawn(process.execPath, ['bin/floe.js', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
    live.add(this);
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n');
      this.partial = parts.pop()!;
      for (const text of parts) this.push(text);
    });
    this.exited = new Promise<ProcessExit>((resolve) => {
      this.child.once('close', (code, signal) => {
        if (this.partial !== '') this.push(this.partial);
        this.partial = '';
        this.exit = { code, signal };
        live.delete(this);
        this.notify();
        resolve(this.exit);
      });
    });
  }

  /** Spawns `node bin/floe.js run <job-file> [flags] -- <job args>` in the repository root. */
  static run(options: FloeRunOptions): FloeProcess {
    const args = ['run', options.jobFile];
    if (options.checkpointInterval !== undefined) args.push('--checkpoint-interval', options.checkpointInterval);
    if (options.checkpointDir !== undefined) args.push('--checkpoint-dir', options.checkpointDir);
    if (options.fromCheckpoint !== undefined) args.push('--from-checkpoint', options.fromCheckpoint);
    if (options.fromSavepoint !== undefined) args.push('--from-savepoint', options.fromSavepoint);
    if (options.parallelism !== undefined) args.push('--parallelism', String(options.parallelism));
    if (options.awsEndpoint !== undefined) args.push('--aws-endpoint', options.awsEndpoint);
    if (options.authToken !== undefined) args.push('--auth-token', options.authToken);
    args.push('--port', String(options.port ?? 0), '--', ...options.jobArgs);
    return new FloeProcess(args, options.env);
  }

  /** Spawns `node bin/floe.js <args>` (any command) in the repository root, with `env` changed as in {@link FloeRunOptions.env}. */
  static command(args: readonly string[], env?: Readonly<Record<string, string | undefined>>): FloeProcess {
    return new FloeProcess(args, env);
  }

  /** SIGKILLs every child these helpers started that is still running (for `afterEach`). */
  static async killAll(): Promise<void> {
    await Promise.all([...live].map(async (p) => {
      p.kill();
      await p.waitForExit(10_000).catch(() => undefined);
    }));
  }

  /** The child's process id. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Milliseconds since the process was spawned. */
  elapsedMs(): number {
    return Date.now() - this.startedAt;
  }

  /** All of stderr as one string (for failure messages). */
  stderr(): string {
    return this.lines.map((l) => l.text).join('\n');
  }

  /** Stderr lines matching `pattern`. */
  matching(pattern: RegExp): LogLine[] {
    return this.lines.filter((l) => pattern.test(l.text));
  }

  /**
   * Waits for a stderr line at index `from` or later that matches `pattern`. Rejects when the process exits first
   * or after `timeoutMs`, quoting stderr. With `orExit`, resolves undefined instead of rejecting when it exits.
   */
  waitForLine(pattern: RegExp, opts: { timeoutMs?: number; from?: number; orExit?: boolean } = {}): Promise<LineMatch | undefined> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    let next = opts.from ?? 0;
    return new Promise<LineMatch | undefined>((resolve, reject) => {
      const check = () => {
        for (; next < this.lines.length; next++) {
          const line = this.lines[next]!;
          const match = new RegExp(pattern.source, pattern.flags.replace('g', '')).exec(line.text);
          if (match) return done(() => resolve({ line, index: next, match }));
        }
        if (this.exit) {
          if (opts.orExit) return done(() => resolve(undefined));
          return done(() => reject(new Error(`floe exited (${describeExit(this.exit!)}) before printing a line matching ${pattern}; stderr:\n${this.stderr()}`)));
        }
      };
      const timer = setTimeout(() => done(() => reject(new Error(`no line matching ${pattern} within ${timeoutMs}ms; stderr:\n${this.stderr()}`))), timeoutMs);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        settle();
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Sends a signal (SIGKILL by default) unless the process has already exited; returns whether it was sent. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): boolean {
    if (this.exit || this.child.exitCode !== null || this.child.signalCode !== null) return false;
    return this.child.kill(signal);
  }

  /** Waits for the process to exit; rejects after `timeoutMs` (leaving it running: call `kill` if need be). */
  waitForExit(timeoutMs = 30_000): Promise<ProcessExit> {
    if (this.exit) return Promise.resolve(this.exit);
    return new Promise<ProcessExit>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`floe did not exit within ${timeoutMs}ms; stderr:\n${this.stderr()}`)), timeoutMs);
      void this.exited.then((e) => {
        clearTimeout(timer);
        resolve(e);
      });
    });
  }

  private push(text: string): void {
    this.lines.push({ text, atMs: this.elapsedMs() });
    this.notify();
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }
}

/** "exit code 0" or "signal SIGKILL". */
export function describeExit(exit: ProcessExit): string {
  return exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
