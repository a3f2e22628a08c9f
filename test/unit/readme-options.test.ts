import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// The options reference in the README must not drift from the TSDoc on the option interfaces.
const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const options = readFileSync(new URL('../../lib/core/options.ts', import.meta.url), 'utf8');

function fieldsOf(interfaceName: string): { name: string; defaultText: string }[] {
  const body = new RegExp(`export interface ${interfaceName} \\{([\\s\\S]*?)\\n\\}`).exec(options)?.[1] ?? '';
  return [...body.matchAll(/@default ([^*]+?)\s*\*\/\s*\n\s*readonly (\w+)\?/g)].map((m) => ({ name: m[2]!, defaultText: m[1]!.trim() }));
}

function readmeRow(option: string): string | undefined {
  return readme.split('\n').find((line) => line.startsWith(`| \`${option}\``));
}

describe('README options reference', () => {
  const checkpointFields = fieldsOf('CheckpointOptions');

  it('finds the documented checkpoint options in lib/core/options.ts', () => {
    expect(checkpointFields.map((f) => f.name)).toEqual(
      expect.arrayContaining(['interval', 'timeout', 'minPause', 'maxConcurrent', 'tolerableFailures', 'mode', 'retained', 'retainOnCancel', 'incremental', 'dir']),
    );
  });

  it.each(fieldsOf('CheckpointOptions'))('has a row for checkpoint.$name with its default', ({ name, defaultText }) => {
    const row = readmeRow(`checkpoint.${name}`);
    expect(row, `README lacks a row for checkpoint.${name}`).toBeDefined();
    const value = defaultText.split(' ')[0]!.replace(/^'|'$/g, '');
    expect(row).toContain(`\`${value}\``);
  });

  it.each(['fixed-delay', 'failure-rate', 'exponential-delay', 'none'])('mentions restart strategy %s', (type) => {
    expect(readmeRow('restart.type')).toContain(type);
  });
});
