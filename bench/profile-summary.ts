/**
 * Summarizes V8 CPU profiles: self and inclusive time per function, named by source file and line.
 *
 * Positions in the profile are those of the code tsx generated; `findSourceMap` (tsx registers source maps) maps them
 * back to TypeScript lines for every module loaded in this process. `bench/run.ts --profile` summarizes in the
 * profiled process itself; this file's CLI re-imports `lib/` modules to resolve a saved profile:
 *
 *   node --import tsx bench/profile-summary.ts <file.cpuprofile | dir> [--top 25] [--filter lib/]
 */
import { findSourceMap } from 'node:module';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
/** The parts of a V8 CPU profile this summary reads. */
export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self and inclusive milliseconds of one function. */
export interface HotSpot {
  readonly where: string;
  readonly selfMs: number;
  readonly totalMs: number;
}

/** A profile's hot spots, and how much of it the process spent idle or in GC. */
export interface ProfileSummary {
  readonly totalMs: number;
  readonly idleMs: number;
  readonly gcMs: number;
  /** Sorted by self time, largest first. */
  readonly spots: readonly HotSpot[];
}

function label(f: CallFrame, root: string): string {
  const name = f.functionName || '(anonymous)';
  if (f.url === '') return `${name} (native)`;
  let file = f.url;
  let line = f.lineNumber + 1;
  let col: number | undefined = f.columnNumber + 1;
  const entry = findSourceMap(f.url)?.findEntry(f.lineNumber, f.columnNumber);
  if (entry && 'originalLine' in entry && entry.originalSource) {
    file = entry.originalSource;
    line = entry.originalLine + 1;
    col = undefined;
  }
  const path = file.replace(/^file:\/\//, '');
  const shown = path.startsWith(root) ? relative(root, path) : path;
  return `${name} ${shown}:${line}${col === undefined ? '' : `:${col}`}`;
}

/** Aggregates a profile by function (source location). */
export function summarizeProfile(profile: CpuProfile, root = process.cwd()): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const labels = new Map<number, string>();
  const labelOf = (id: number) => {
    let l = labels.get(id);
    if (l === undefined) labels.set(id, (l = label(byId.get(id)!.callFrame, root)));
    return l;
  };
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let idleUs = 0;
  let gcUs = 0;
  for (const [id, us] of selfUs) {
    const name = byId.get(id)!.callFrame.functionName;
    if (name === '(idle)') idleUs += us;
    if (name === '(garbage collector)') gcUs += us;
    const key = labelOf(id);
    self.set(key, (self.get(key) ?? 0) + us);
    // Inclusive time counts a function once per stack, however deep its recursion.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = labelOf(cur);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + us);
    }
  }
  const spots = [...total.keys()]
    .map((where) => ({ where, selfMs: (self.get(where) ?? 0) / 1000, totalMs: (total.get(where) ?? 0) / 1000 }))
    .sort((a, b) => b.selfMs - a.selfMs);
  return { totalMs: (profile.endTime - profile.startTime) / 1000, idleMs: idleUs / 1000, gcMs: gcUs / 1000, spots };
}

const NOISE = /^\((root|program|idle)\)/;

/** Formats the top self-time and inclusive-time functions of a summary as text. */
export function formatSummary(title: string, s: ProfileSummary, top = 15, filter?: string): string {
  const keep = (h: HotSpot) => !NOISE.test(h.where) && (!filter || h.where.includes(filter) || h.where.startsWith('(garbage'));
  const busy = s.totalMs - s.idleMs;
  const pct = (ms: number) => `${((100 * ms) / busy).toFixed(1).padStart(5)}%`;
  const out = [`${title}: ${(s.totalMs / 1000).toFixed(1)} s profiled, ${(busy / 1000).toFixed(1)} s busy (percentages of busy time)`, '   self ms   self  function'];
  for (const h of s.spots.filter(keep).slice(0, top)) out.push(`  ${h.selfMs.toFixed(0).padStart(8)}  ${pct(h.selfMs)}  ${h.where}`);
  out.push('  total ms  total  function (inclusive)');
  for (const h of [...s.spots].filter(keep).sort((a, b) => b.totalMs - a.totalMs).slice(0, top)) out.push(`  ${h.totalMs.toFixed(0).padStart(8)}  ${pct(h.totalMs)}  ${h.where}`);
  return out.join('\n');
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' }, filter: { type: 'string' } } });
  for (const target of positionals) {
    const files = (await stat(target)).isDirectory() ? (await readdir(target)).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(target, f)) : [target];
    for (const file of files) {
      const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
      // Load the engine modules the profile ran, so their source maps resolve positions (bench/run.ts would run the benchmark).
      const urls = new Set(profile.nodes.map((n) => n.callFrame.url).filter((u) => u.startsWith(pathToFileURL(join(process.cwd(), 'lib')).href)));
      for (const url of urls) await import(url).catch(() => undefined);
      console.log(formatSummary(file, summarizeProfile(profile), Number(values.top), values.filter));
      console.log('');
    }
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
