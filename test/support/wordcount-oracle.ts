/**
 * The word count's oracle for end-to-end tests: a deterministic input generator, the expected result computed by a
 * plain loop over that input (no Floe code involved), a reader of the committed output, and a precise comparison
 * that names every gap, repeat and stray line.
 */
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';

/** Options of the generated input. */
export interface WordInputOptions {
  /** Seed of the PRNG; the same seed gives byte-identical files. @default 20260101 */
  readonly seed?: number;
  /** Number of files. @default 6 */
  readonly files?: number;
  /** Words in all files together (approximately: whole lines are written). @default 300_000 */
  readonly words?: number;
  /** Size of the vocabulary. @default 5_000 */
  readonly vocabulary?: number;
}

/** What was generated. */
export interface WordInput {
  readonly dir: string;
  readonly files: readonly string[];
  readonly words: number;
  readonly bytes: number;
}

/** A small, fast, seedable PRNG (mulberry32): returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random integer in [lo, hi]. */
export function randomInt(random: () => number, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo + 1));
}

const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'ti', 'vo', 'ze', 'da', 'fe', 'gu', 'ha', 'ji', 'po', 'qu', 'be', 'xo', 'yu', 'wa'];
// A few non-ASCII syllables, so multi-byte UTF-8 crosses the source's read buffers and the sink's byte counts.
const RARE_SYLLABLES = ['é', 'ß', 'ñø', 'ü', 'λα', '東'];

function makeVocabulary(random: () => number, size: number): string[] {
  const words = new Set<string>();
  while (words.size < size) {
    let w = '';
    const n = randomInt(random, 1, 4);
    for (let i = 0; i < n; i++) w += random() < 0.03 ? RARE_SYLLABLES[randomInt(random, 0, RARE_SYLLABLES.length - 1)]! : SYLLABLES[randomInt(random, 0, SYLLABLES.length - 1)]!;
    words.add(w);
  }
  return [...words];
}

/** Whitespace between words: mostly one space, sometimes runs of spaces and tabs (the job splits on `\s+`). */
function separator(random: () => number): string {
  const r = random();
  if (r < 0.9) return ' ';
  if (r < 0.95) return '\t';
  return ' '.repeat(randomInt(random, 2, 4)) + (random() < 0.5 ? '\t' : '');
}

/**
 * Writes `files` text files of random lines into `dir`: words drawn from a skewed distribution (a few words occur
 * tens of thousands of times, most a few dozen times), 0–16 words per line with leading, trailing and repeated
 * whitespace, some empty lines, some CRLF line ends, and a last file without a final newline.
 */
export async function generateWordInput(dir: string, options: WordInputOptions = {}): Promise<WordInput> {
  const random = mulberry32(options.seed ?? 20260101);
  const fileCount = options.files ?? 6;
  const total = options.words ?? 300_000;
  const vocabulary = makeVocabulary(random, options.vocabulary ?? 5_000);
  await mkdir(dir, { recursive: true });
  const perFile = Math.ceil(total / fileCount);
  const files: string[] = [];
  let words = 0;
  let bytes = 0;
  for (let f = 0; f < fileCount; f++) {
    const lines: string[] = [];
    let inFile = 0;
    while (inFile < perFile) {
      const n = random() < 0.04 ? 0 : randomInt(random, 1, 16);
      let line = random() < 0.05 ? separator(random) : '';
      for (let i = 0; i < n; i++) {
        // Skewed: the square pulls indexes towards the start of the vocabulary.
        const u = random();
        line += (i > 0 ? separator(random) : '') + vocabulary[Math.floor(u * u * vocabulary.length)]!;
      }
      if (random() < 0.05) line += separator(random);
      if (random() < 0.02) line += '\r';
      lines.push(line);
      inFile += n;
    }
    const last = f === fileCount - 1;
    const text = lines.join('\n') + (last ? '' : '\n');
    const name = `words-${String(f).padStart(2, '0')}.txt`;
    await writeFile(join(dir, name), text);
    files.push(join(dir, name));
    words += inFile;
    bytes += Buffer.byteLength(text);
  }
  return { dir, files, words, bytes };
}

/** Files a directory holds recursively, skipping names that start with `.` or `_` (as the files source does). */
async function visibleFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const full = join(entry.parentPath, entry.name);
    if (relative(root, full).split('/').some((seg) => seg.startsWith('.') || seg.startsWith('_'))) continue;
    out.push(full);
  }
  return out.sort();
}

/** The oracle: occurrences of every word in the input, by a plain loop (split on whitespace, ignore empty). */
export async function countWords(inputDir: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const file of await visibleFiles(inputDir)) {
    for (const word of (await readFile(file, 'utf8')).split(/\s+/)) {
      if (word === '') continue;
      counts.set(word, (counts.get(word) ?? 0) + 1);
    }
  }
  return counts;
}

/** Whether a file name in the sink's directory is committed output: uncommitted files start with `.` or `_`. */
export function isCommittedName(name: string): boolean {
  return !name.startsWith('.') && !name.startsWith('_');
}

/** Lines of the committed output, by word. */
export interface CommittedOutput {
  /** Every running count seen for a word, in file order. */
  readonly counts: Map<string, number[]>;
  /** Committed files read. */
  readonly files: readonly string[];
  /** Files skipped as uncommitted (names starting with `.` or `_`), e.g. `.inprogress-…`. */
  readonly skipped: readonly string[];
  /** Lines that are not `word<TAB>positive-integer`, with where they are. */
  readonly malformed: readonly string[];
  readonly lines: number;
}

/** Reads the committed files of the files sink's output directory; in-progress and other hidden files are ignored. */
export async function readCommittedOutput(outputDir: string): Promise<CommittedOutput> {
  const names = (await readdir(outputDir).catch(() => [] as string[])).sort();
  const counts = new Map<string, number[]>();
  const files: string[] = [];
  const skipped: string[] = [];
  const malformed: string[] = [];
  let lines = 0;
  for (const name of names) {
    if (!isCommittedName(name)) {
      skipped.push(name);
      continue;
    }
    files.push(name);
    const text = await readFile(join(outputDir, name), 'utf8');
    if (text.length > 0 && !text.endsWith('\n')) malformed.push(`${name}: last line has no newline (a torn write?)`);
    const body = text.endsWith('\n') ? text.slice(0, -1) : text;
    if (body === '') continue;
    body.split('\n').forEach((line, i) => {
      lines++;
      const tab = line.lastIndexOf('\t');
      const word = line.slice(0, tab);
      const n = Number(line.slice(tab + 1));
      if (tab <= 0 || !Number.isInteger(n) || n < 1 || /\s/.test(word)) {
        malformed.push(`${name}:${i + 1}: ${JSON.stringify(line)}`);
        return;
      }
      let seen = counts.get(word);
      if (!seen) counts.set(word, (seen = []));
      seen.push(n);
    });
  }
  return { counts, files, skipped, malformed, lines };
}

/** What the sink's hidden in-progress files hold: output written but not committed (yet). */
export interface UncommittedOutput {
  readonly files: ReadonlyArray<{ name: string; bytes: number }>;
  /** Complete `word<TAB>n` lines (a torn last line, cut by a kill mid-write, is left out). */
  readonly lines: ReadonlyArray<{ word: string; n: number }>;
}

/** Reads the `.inprogress-…` files of the files sink's output directory. */
export async function readInProgressOutput(outputDir: string): Promise<UncommittedOutput> {
  const names = (await readdir(outputDir).catch(() => [] as string[])).filter((n) => n.startsWith('.inprogress-')).sort();
  const files: Array<{ name: string; bytes: number }> = [];
  const lines: Array<{ word: string; n: number }> = [];
  for (const name of names) {
    const text = await readFile(join(outputDir, name), 'utf8');
    files.push({ name, bytes: Buffer.byteLength(text) });
    const complete = text.slice(0, text.lastIndexOf('\n') + 1);
    for (const line of complete.split('\n')) {
      const tab = line.lastIndexOf('\t');
      const n = Number(line.slice(tab + 1));
      if (tab > 0 && Number.isInteger(n) && n > 0) lines.push({ word: line.slice(0, tab), n });
    }
  }
  return { files, lines };
}

/** Everything that differs between the committed output and the oracle. */
export interface WordCountDiff {
  /** Counts in 1..N that never appear: lost output. */
  readonly gaps: ReadonlyArray<{ word: string; missing: number[]; expected: number }>;
  /** Counts that appear more than once: output committed twice. */
  readonly repeats: ReadonlyArray<{ word: string; counts: Array<{ n: number; times: number }> }>;
  /** Counts above N for a word of the input: the word was counted too often. */
  readonly beyond: ReadonlyArray<{ word: string; counts: number[]; expected: number }>;
  /** Words that are not in the input at all. */
  readonly unexpected: ReadonlyArray<{ word: string; counts: number[] }>;
  readonly malformed: readonly string[];
  /** Total committed lines, and the total the oracle expects (the number of words in the input). */
  readonly lines: number;
  readonly expectedLines: number;
  readonly ok: boolean;
}

/**
 * Compares the committed output with the oracle, word by word. With `partial` (output of a run that has not
 * finished), a word's committed counts must be a prefix 1..k of 1..N: gaps are only counted below the highest count
 * seen, and the total number of lines is not checked.
 */
export function compareWithOracle(output: CommittedOutput, oracle: ReadonlyMap<string, number>, opts: { partial?: boolean } = {}): WordCountDiff {
  const gaps: Array<{ word: string; missing: number[]; expected: number }> = [];
  const repeats: Array<{ word: string; counts: Array<{ n: number; times: number }> }> = [];
  const beyond: Array<{ word: string; counts: number[]; expected: number }> = [];
  const unexpected: Array<{ word: string; counts: number[] }> = [];
  let expectedLines = 0;
  for (const [word, expected] of oracle) {
    expectedLines += expected;
    const times = new Map<number, number>();
    for (const n of output.counts.get(word) ?? []) times.set(n, (times.get(n) ?? 0) + 1);
    const missing: number[] = [];
    const upTo = opts.partial ? Math.min(expected, [...times.keys()].reduce((a, b) => Math.max(a, b), 0)) : expected;
    for (let n = 1; n <= upTo; n++) if (!times.has(n)) missing.push(n);
    if (missing.length > 0) gaps.push({ word, missing, expected });
    const twice = [...times].filter(([, t]) => t > 1).map(([n, t]) => ({ n, times: t }));
    if (twice.length > 0) repeats.push({ word, counts: twice.sort((a, b) => a.n - b.n) });
    const over = [...times.keys()].filter((n) => n > expected).sort((a, b) => a - b);
    if (over.length > 0) beyond.push({ word, counts: over, expected });
  }
  for (const [word, counts] of output.counts) if (!oracle.has(word)) unexpected.push({ word, counts });
  const ok = gaps.length + repeats.length + beyond.length + unexpected.length + output.malformed.length === 0 && (opts.partial || output.lines === expectedLines);
  return { gaps, repeats, beyond, unexpected, malformed: output.malformed, lines: output.lines, expectedLines, ok };
}

/** Compresses sorted integers into ranges: [1,2,3,7] → "1-3, 7". */
function ranges(ns: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < ns.length; ) {
    let j = i;
    while (j + 1 < ns.length && ns[j + 1] === ns[j]! + 1) j++;
    parts.push(i === j ? `${ns[i]}` : `${ns[i]}-${ns[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

/** A failure message that says exactly what went wrong: totals, then up to `limit` examples of each kind. */
export function describeDiff(diff: WordCountDiff, limit = 15): string {
  if (diff.ok) return `committed output agrees with the oracle (${diff.lines} of ${diff.expectedLines} lines)`;
  const out = [`committed output differs from the oracle: ${diff.lines} committed lines, ${diff.expectedLines} expected`];
  const section = <T>(title: string, items: readonly T[], show: (item: T) => string, total?: number) => {
    if (items.length === 0) return;
    out.push(`${title}: ${items.length} word(s)${total !== undefined ? `, ${total} line(s)` : ''}`);
    for (const item of items.slice(0, limit)) out.push(`  ${show(item)}`);
    if (items.length > limit) out.push(`  … and ${items.length - limit} more`);
  };
  const gapTotal = diff.gaps.reduce((s, g) => s + g.missing.length, 0);
  const repeatTotal = diff.repeats.reduce((s, r) => s + r.counts.reduce((t, c) => t + c.times - 1, 0), 0);
  section('GAPS (counts never committed)', diff.gaps, (g) => `${JSON.stringify(g.word)} (N=${g.expected}) missing ${ranges(g.missing)}`, gapTotal);
  const byTimes = (counts: ReadonlyArray<{ n: number; times: number }>) =>
    [...new Set(counts.map((c) => c.times))].sort((a, b) => a - b).map((t) => `${ranges(counts.filter((c) => c.times === t).map((c) => c.n))} ${t}×`).join('; ');
  section('REPEATS (counts committed more than once)', diff.repeats, (r) => `${JSON.stringify(r.word)}: ${byTimes(r.counts)}`, repeatTotal);
  section('BEYOND N (counts higher than the occurrences in the input)', diff.beyond, (b) => `${JSON.stringify(b.word)} (N=${b.expected}): ${ranges(b.counts)}`);
  section('UNEXPECTED WORDS (not in the input)', diff.unexpected, (u) => `${JSON.stringify(u.word)}: ${ranges([...u.counts].sort((a, b) => a - b))}`);
  section('MALFORMED LINES', diff.malformed, (m) => m);
  return out.join('\n');
}
