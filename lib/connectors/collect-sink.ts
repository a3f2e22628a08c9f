import type { SinkConnector, SinkWriter } from '../api/connector.js';
import type { PendingCommit } from '../core/manifest/model.js';

/** An exactly-once in-memory sink for tests: records become visible in `committed` when their checkpoint completes. */
export interface CollectSink<T> extends SinkConnector<T> {
  /** Records of completed checkpoints, in commit order. */
  readonly committed: T[];
}

interface CollectCommit extends PendingCommit {
  readonly sink: 'collect';
  readonly collector: string;
  readonly id: string;
  readonly values: unknown[];
}

const registry = new Map<string, { committed: unknown[]; done: Set<string> }>();

/** Creates (or, by name, finds again) an in-memory collector; its pending records travel in the checkpoint. */
export function collectSink<T>(name: string): CollectSink<T> {
  let target = registry.get(name);
  if (!target) registry.set(name, (target = { committed: [], done: new Set() }));
  const t = target;
  return {
    type: 'collect',
    exactlyOnce: true,
    committed: t.committed as T[],
    createWriter(ctx): SinkWriter<T> {
      return {
        async resume(state) {
          return (state as { pending: unknown[] } | undefined) ?? { pending: [] };
        },
        async write(values, state) {
          return { pending: [...(state as { pending: unknown[] }).pending, ...values] };
        },
        async preCommit(state, checkpointId) {
          const pending = (state as { pending: unknown[] }).pending;
          const commits: CollectCommit[] = pending.length === 0 ? [] : [{ sink: 'collect', collector: name, id: `${ctx.uid}-${ctx.subtask}-${checkpointId}-${ctx.runId}`, values: pending }];
          return { state: { pending: [] }, pendingCommits: commits };
        },
      };
    },
    async commit(pending) {
      const c = pending as CollectCommit;
      const r = registry.get(c.collector);
      if (!r || r.done.has(c.id)) return;
      r.done.add(c.id);
      r.committed.push(...c.values);
    },
  };
}

/** Forgets a collector (between tests). */
export function resetCollector(name: string): void {
  registry.delete(name);
}
