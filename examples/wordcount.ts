/**
 * Word count with a running count per word: for every input word it writes one committed line `word<TAB>n`, so for
 * each word the committed output holds exactly the counts 1..N once each.
 *
 *   floe run examples/wordcount.ts -- --input <file|dir> --output <dir>
 */
import { parseArgs } from 'node:util';
import { Job, defineJob, filesSink, filesSource, valueState } from '../lib/index.js';

export default defineJob((args) => {
  const { values } = parseArgs({
    args: [...args],
    options: {
      input: { type: 'string' },
      output: { type: 'string' },
      parallelism: { type: 'string' },
    },
  });
  if (!values.input || !values.output) throw new Error('wordcount needs --input <file|dir> and --output <dir>');
  const job = new Job('wordcount', {
    maxParallelism: 128,
    parallelism: values.parallelism ? Number(values.parallelism) : 2,
    checkpoint: { interval: '1s', retained: 3 },
    restart: { type: 'fixed-delay', attempts: 3, delay: '500ms' },
  });
  job
    .source(filesSource({ path: values.input }), { uid: 'lines', parallelism: 1 })
    .flatMap<string>((line, out) => {
      for (const word of line.split(/\s+/)) if (word !== '') out.collect(word);
    }, { name: 'Split' })
    .keyBy((word) => word)
    .process(
      {
        state: { count: valueState<number>() },
        processElement(word, ctx, out) {
          const n = (ctx.state.count.value() ?? 0) + 1;
          ctx.state.count.update(n);
          out.collect(`${word}\t${n}`);
        },
      },
      { uid: 'count', name: 'Count' },
    )
    .sinkTo(filesSink({ dir: values.output }), { uid: 'committed-lines', name: 'Files' });
  return job;
});
