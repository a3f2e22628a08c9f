import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { filesSource } from '../../lib/connectors/files-source.js';
import type { SourceSplit } from '../../lib/api/connector.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import { makeTempDir, removeTempDir } from '../support/builders.js';

const ctx = { now: () => 0 };
/** The reader's buffer size: lines longer than this are refused. */
const READ_BYTES = 1 << 20;

let dir: string;
beforeEach(async () => {
  dir = await makeTempDir('floe-files-');
});
afterEach(async () => {
  await removeTempDir(dir);
});

async function aFile(name: string, content: string | Buffer): Promise<string> {
  const path = join(dir, name);
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content);
  return path;
}

/** Reads a split to its end, `max` lines per read, collecting lines and the position after each read. */
async function readAll(split: SourceSplit, max: number): Promise<{ lines: string[]; reads: number; last: SourceSplit }> {
  const source = filesSource({ path: dir });
  const lines: string[] = [];
  let reads = 0;
  while (!split.done) {
    if (++reads > 100_000) throw new Error('split never finished');
    const result = await source.read(split, max, ctx);
    lines.push(...result.values);
    split = JSON.parse(JSON.stringify(result.split)) as SourceSplit;
  }
  return { lines, reads, last: split };
}

const splitOf = (file: string, offset = 0): SourceSplit => ({ id: file, position: { file, offset }, done: false });

describe('filesSource: lines', () => {
  it.each<[string, string, string[]]>([
    ['newline-terminated lines', 'a\nb\nc\n', ['a', 'b', 'c']],
    ['empty lines kept', 'a\n\nb\n', ['a', '', 'b']],
    ['CRLF line ends stripped', 'a\r\nb\r\n', ['a', 'b']],
    ['a CR inside a line kept', 'a\rb\n', ['a\rb']],
    ['a last line without newline', 'a\nb', ['a', 'b']],
    ['a CRLF file whose last line has no newline', 'a\r\nb', ['a', 'b']],
    ['a single line without newline', 'only', ['only']],
    ['an empty file', '', []],
    ['multi-byte UTF-8', 'żółw\n日本語\n🦊\n', ['żółw', '日本語', '🦊']],
  ])('reads %s', async (_case, content, expected) => {
    const file = await aFile('f.txt', content);

    const { lines, last } = await readAll(splitOf(file), 100);

    expect(lines).toEqual(expected);
    expect(last.position).toEqual({ file, offset: Buffer.byteLength(content) });
  });

  it.each([1, 2, 3, 5])('returns the same lines when read %i at a time, never more per read', async (max) => {
    const content = 'one\ntwo\r\n\nfour\nfive';
    const file = await aFile('f.txt', content);
    const source = filesSource({ path: file });

    const { lines, reads } = await readAll(splitOf(file), max);
    const first = await source.read(splitOf(file), max, ctx);

    expect(lines).toEqual(['one', 'two', '', 'four', 'five']);
    expect(first.values.length).toBeLessThanOrEqual(max);
    expect(reads).toBe(Math.ceil(5 / max));
  });

  it('checkpoints the byte offset of the next unread line and resumes there', async () => {
    const file = await aFile('f.txt', 'żółw\nb\nc\n');
    const source = filesSource({ path: file });

    const first = await source.read(splitOf(file), 2, ctx);
    const resumed = await source.read(JSON.parse(JSON.stringify(first.split)) as SourceSplit, 100, ctx);

    expect(first.values).toEqual(['żółw', 'b']);
    expect(first.split).toEqual({ id: file, position: { file, offset: Buffer.byteLength('żółw\nb\n') }, done: false });
    expect(resumed.values).toEqual(['c']);
    expect(resumed.split.done).toBe(true);
  });

  it('leaves a last line without newline unread when the read is full, and reads it next', async () => {
    const file = await aFile('f.txt', 'a\nb');
    const source = filesSource({ path: file });

    const first = await source.read(splitOf(file), 1, ctx);
    const second = await source.read(first.split, 1, ctx);

    expect([first.values, first.split.done]).toEqual([['a'], false]);
    expect([second.values, second.split.done]).toEqual([['b'], true]);
  });
});

describe('filesSource: chunk limits', () => {
  it('reads lines that cross the 1 MiB read buffer intact', async () => {
    // Given 11,000 lines of 100 bytes: the 10,486th line starts 76 bytes before the 1 MiB mark
    const expected = Array.from({ length: 11_000 }, (_, i) => String(i).padStart(99, '.'));
    const file = await aFile('big.txt', expected.join('\n') + '\n');
    expect(expected.length * 100).toBeGreaterThan(READ_BYTES);

    const { lines } = await readAll(splitOf(file), 100_000);

    expect(lines).toEqual(expected);
  });

  it('refuses a line longer than the read buffer, naming the file', async () => {
    const file = await aFile('long.txt', 'x'.repeat(READ_BYTES + 10) + '\nshort\n');
    const source = filesSource({ path: file });

    const error = await source.read(splitOf(file), 10, ctx).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(FloeError);
    expect((error as FloeError).code).toBe(ErrorCode.InvalidJob);
    expect((error as FloeError).message).toContain(`a line of '${file}' is longer than ${READ_BYTES} bytes`);
  });
});

describe('filesSource: splits', () => {
  it('makes one split per file of a directory tree, sorted, skipping names that start with . or _ at any depth', async () => {
    await aFile('b.txt', 'b\n');
    await aFile('a.txt', 'a\n');
    await aFile('nested/c.txt', 'c\n');
    await aFile('.hidden', 'x\n');
    await aFile('_SUCCESS', '');
    await aFile('_tmp/d.txt', 'x\n');
    await aFile('nested/.part-0.crc', 'x\n');
    await aFile('nested/_in-progress/e.txt', 'x\n');
    await aFile('.git/objects/f', 'x\n');

    const splits = await filesSource({ path: dir }).createSplits(4);

    expect(splits.map((s) => s.id)).toEqual([join(dir, 'a.txt'), join(dir, 'b.txt'), join(dir, 'nested', 'c.txt')]);
    expect(splits.every((s) => !s.done && (s.position as { offset: number }).offset === 0)).toBe(true);
  });

  it('reads a directory whose own name starts with _ (only names below it are checked)', async () => {
    const nested = join(dir, '_input');
    await aFile('_input/a.txt', 'a\n');

    expect((await filesSource({ path: nested }).createSplits(1)).map((s) => s.id)).toEqual([join(nested, 'a.txt')]);
  });

  it('makes one split for a single file', async () => {
    const file = await aFile('.only-file', 'a\n');
    expect((await filesSource({ path: file }).createSplits(1)).map((s) => s.id)).toEqual([file]);
  });

  it('fails with a clear message for a path that does not exist', async () => {
    const missing = join(dir, 'missing');

    const error = await filesSource({ path: missing }).createSplits(1).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(FloeError);
    expect((error as FloeError).message).toBe(`files source: cannot read '${missing}': no such file or directory`);
  });
});
