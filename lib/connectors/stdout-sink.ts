import type { SinkConnector } from '../api/connector.js';

/** Prints each record as a line on standard output, as it arrives (at-least-once: a restart may print a record again). */
export function stdoutSink<T>(format: (value: T) => string = (v) => (typeof v === 'string' ? v : JSON.stringify(v))): SinkConnector<T> {
  return {
    type: 'stdout',
    exactlyOnce: false,
    createWriter() {
      return {
        async resume() {
          return null;
        },
        async write(values) {
          process.stdout.write(values.map((v) => format(v)).join('\n') + '\n');
          return null;
        },
        async preCommit() {
          return { state: null, pendingCommits: [] };
        },
      };
    },
    async commit() {},
  };
}
