import { afterEach, describe, expect, it } from 'vitest';
import { Job, valueState, type SinkConnector } from '../../lib/index.js';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { dynamoDbSink, type DynamoDbWrite } from '../../lib/connectors/dynamodb-sink.js';
import type { PendingCommit } from '../../lib/core/manifest/model.js';
import { armInTurn, createStaging, createTable, faultyDynamoDb, faultyS3, listKeys, scanRaw, scanTable, serviceError, stageEpochs, withCommitCount } from '../support/aws-sinks.js';
import { FailOnce, Scratch, captureLog, expectedKeyedEvents, keyedEvents, runOptions, type KeyedEvent, type KeyedEventsOptions } from '../support/jobs.js';

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

/** A write as the tests stage it: a put of `{ pk, v }` or a delete of `pk`. */
type Op = { readonly pk: string; readonly v: number } | { readonly pk: string; readonly del: true };
const put = (pk: string, v: number): Op => ({ pk, v });
const del = (pk: string): Op => ({ pk, del: true });
const itemOf = (op: Op): DynamoDbWrite => ('del' in op ? { delete: { pk: op.pk } } : { pk: op.pk, v: op.v });

/** The oracle: each transaction's writes applied once, in (checkpoint, subtask) order, by a plain loop over a map. */
function applyInOrder(transactions: ReadonlyArray<{ checkpointId: number; subtask: number; ops: readonly Op[] }>): Map<string, Record<string, unknown>> {
  const table = new Map<string, Record<string, unknown>>();
  const ordered = [...transactions].sort((a, b) => a.checkpointId - b.checkpointId || a.subtask - b.subtask);
  for (const t of ordered) for (const op of t.ops) if ('del' in op) table.delete(op.pk);
    else table.set(op.pk, { pk: op.pk, v: op.v });
  return table;
}

describe('dynamoDbSink on the emulator', () => {
  it('stages an epoch outside the table, pre-commits a small reference, and applies the last write per key at commit', async () => {
    // Given a table and a sink staging in S3
    const table = await createTable('ddb-stage');
    const { bucket, staging } = await createStaging('ddb-stage');
    const sink = dynamoDbSink<Op>({ table, staging, item: itemOf });

    // When 2,000 writes over 50 keys (each key put several times, some deleted last) are written in 4 steps and pre-committed
    const ops: Op[] = Array.from({ length: 2_000 }, (_, i) => (i % 13 === 0 && i > 1_900 ? del(`k${i % 50}`) : put(`k${i % 50}`, i)));
    const steps = [ops.slice(0, 500), ops.slice(500, 1_000), ops.slice(1_000, 1_500), ops.slice(1_500)];
    const pending = (await stageEpochs(sink, [{ checkpointId: 3, steps }])).get(3)!;

    // Then nothing is in the table yet, the staged parts are in S3, and the pending commit is a small reference
    expect(await scanRaw(table)).toEqual([]);
    expect((await listKeys(bucket, 'staging/')).length).toBe(4);
    expect(pending).toHaveLength(1);
    expect(JSON.stringify(pending).length).toBeLessThan(1_000);

    // When it commits
    await sink.commit(pending[0]!);

    // Then the table holds each key's last write, and the staged parts are gone
    expect(await scanTable(table)).toEqual(applyInOrder([{ checkpointId: 3, subtask: 0, ops }]));
    expect(await listKeys(bucket, 'staging/')).toEqual([]);
  });

  // Commits whose staged parts cannot be deleted (as if each died right after applying its writes) stay re-runnable, so
  // every order below really applies each transaction again: out of order, twice, and interleaved across subtasks.
  const orders: Array<[string, string[]]> = [
    ['in order', ['5/0', '5/1', '6/0', '6/1', '7/0']],
    ['in order, each twice', ['5/0', '5/0', '5/1', '5/1', '6/0', '6/0', '6/1', '6/1', '7/0', '7/0']],
    ['chk 5 re-run after chk 6 applied', ['5/0', '5/1', '6/0', '6/1', '5/0', '5/1']],
    ['newest first', ['7/0', '6/1', '6/0', '5/1', '5/0']],
    ['interleaved, then all again reversed', ['6/1', '5/0', '7/0', '5/1', '6/0', '7/0', '6/1', '6/0', '5/1', '5/0']],
  ];

  it.each(orders)('commits applied %s leave the table as each applied once in checkpoint order', async (_name, order) => {
    // Given transactions of checkpoints 5, 6 and 7 from subtasks 0 and 1 that write, overwrite, delete and re-create
    // the same keys, pre-committed by a sink whose staged parts survive every commit
    const table = await createTable('ddb-order');
    const { staging } = await createStaging('ddb-order');
    const keepParts = faultyS3((command) => (command === 'DeleteObjectsCommand' ? serviceError('AccessDenied') : undefined));
    const sink = dynamoDbSink<Op>({ table, staging, stagingClient: keepParts, item: itemOf });
    const txns: Record<string, { checkpointId: number; subtask: number; ops: Op[] }> = {
      '5/0': { checkpointId: 5, subtask: 0, ops: [put('a', 1), put('b', 1), put('c', 1), put('d', 1), put('a', 2)] },
      '5/1': { checkpointId: 5, subtask: 1, ops: [put('e', 1), put('a', 51), del('f')] },
      '6/0': { checkpointId: 6, subtask: 0, ops: [put('a', 3), del('b'), put('f', 6)] },
      '6/1': { checkpointId: 6, subtask: 1, ops: [del('c'), put('e', 61), put('g', 61)] },
      '7/0': { checkpointId: 7, subtask: 0, ops: [put('b', 7), del('e'), put('c', 7), put('c', 8)] },
    };
    const pending = new Map<string, PendingCommit>();
    for (const subtask of [0, 1]) {
      const epochs = [5, 6, 7].filter((c) => txns[`${c}/${subtask}`]).map((c) => ({ checkpointId: c, steps: [txns[`${c}/${subtask}`]!.ops] }));
      const staged = await stageEpochs(sink, epochs, { subtask });
      for (const [c, commits] of staged) pending.set(`${c}/${subtask}`, commits[0]!);
    }

    // When they are committed in this order (each commit applies its writes, then fails to delete its parts)
    for (const id of order) await expect(sink.commit(pending.get(id)!)).rejects.toThrow(/AccessDenied/);

    // Then the table is the oracle's: every transaction once, in checkpoint order (subtask order within one)
    const applied = [...new Set(order)].map((id) => txns[id]!);
    expect(await scanTable(table)).toEqual(applyInOrder(applied));
  });

  it('a delete is a tombstone an older put landing later cannot undo; with deletes: remove it can', async () => {
    for (const deletes of ['tombstone', 'remove'] as const) {
      // Given a put of checkpoint 5 and a delete of checkpoint 6 of the same key
      const table = await createTable(`ddb-${deletes}`);
      const { staging } = await createStaging(`ddb-${deletes}`);
      const keepParts = faultyS3((command) => (command === 'DeleteObjectsCommand' ? serviceError('AccessDenied') : undefined));
      const sink = dynamoDbSink<Op>({ table, staging, stagingClient: keepParts, item: itemOf, deletes });
      const staged = await stageEpochs(sink, [
        { checkpointId: 5, steps: [[put('k', 5)]] },
        { checkpointId: 6, steps: [[del('k')]] },
      ]);

      // When the put is applied again after the delete (a late re-run of checkpoint 5's commit)
      for (const c of [5, 6, 5]) await sink.commit(staged.get(c)![0]!).catch(() => {});

      // Then the key stays deleted only with tombstones: which is why they are the default, and `remove` is not exactly-once
      const items = await scanRaw(table);
      if (deletes === 'tombstone') {
        expect(sink.exactlyOnce).toBe(true);
        expect(await scanTable(table)).toEqual(new Map());
        expect(items).toEqual([{ pk: 'k', _floeDeleted: true, _floeCheckpoint: 6, _floeRun: 'r1', _floeSubtask: 0 }]);
      } else {
        expect(sink.exactlyOnce).toBe(false);
        expect([...(await scanTable(table)).values()]).toEqual([{ pk: 'k', v: 5 }]);
      }
    }
  });

  it('a composite key, binary and set attributes survive staging, and an item over 400 KB fails its step', async () => {
    const table = await createTable('ddb-types', true);
    const { staging } = await createStaging('ddb-types');
    const sink = dynamoDbSink<Record<string, unknown>>({ table, staging });
    const item = { pk: 'p', sk: 1, bin: new Uint8Array([0, 1, 254, 255]), tags: new Set(['x', 'y']), nested: { list: [1, 'two', { three: true }], none: null } };
    const staged = await stageEpochs(sink, [{ checkpointId: 1, steps: [[item, { pk: 'p', sk: 2, v: 'kept' }, { delete: { pk: 'p', sk: 2 } }, { pk: 'p', sk: 3 }]] }]);
    await sink.commit(staged.get(1)![0]!);
    const rows = await scanTable(table);
    expect(rows.get('p#1')).toEqual({ pk: 'p', sk: 1, bin: new Uint8Array([0, 1, 254, 255]), tags: new Set(['x', 'y']), nested: { list: [1, 'two', { three: true }], none: null } });
    expect(rows.has('p#2')).toBe(false);
    expect(rows.get('p#3')).toEqual({ pk: 'p', sk: 3 });

    const writer = sink.createWriter({ uid: 'out', subtask: 0, runId: 'r2' });
    const state = await writer.resume(undefined);
    await expect(writer.write([{ pk: 'big', sk: 1, blob: 'x'.repeat(410 * 1024) }], state)).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
    await expect(writer.write([{ pk: 'no sort key' }], state)).rejects.toThrow(/lacks key attribute 'sk'/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Through the embedded runtime, with failures

/**
 * The upserts job: per key a running count, written as `{ pk, n }`, and deleted at every 7th event of the key. (Only
 * the count: which event is a key's n-th depends on how the two source subtasks interleave, the count does not.)
 */
interface Upsert {
  readonly key: string;
  readonly n: number;
}

function upsertsJob(o: KeyedEventsOptions & { failures: readonly FailOnce[]; sink: SinkConnector<Upsert> }): Job {
  const job = new Job('dynamodb-upserts', { parallelism: 2, maxParallelism: 128 });
  job
    .source(keyedEvents(o), { uid: 'events' })
    .keyBy((e) => e.key)
    .process(
      {
        state: { n: valueState<number>() },
        processElement(e: KeyedEvent, ctx, out) {
          for (const f of o.failures) f.check(e.i);
          const n = (ctx.state.n.value() ?? 0) + 1;
          ctx.state.n.update(n);
          out.collect({ key: e.key, n });
        },
      },
      { uid: 'count' },
    )
    .sinkTo(o.sink, { uid: 'out' });
  return job;
}

const upsertItem = (u: Upsert): DynamoDbWrite => (u.n % 7 === 0 ? { delete: { pk: u.key } } : { pk: u.key, n: u.n });

/** The oracle: a plain loop over the generated events, keeping what the table must end with. */
function upsertsOracle(events: readonly KeyedEvent[]): Map<string, Record<string, unknown>> {
  const n = new Map<string, number>();
  const table = new Map<string, Record<string, unknown>>();
  for (const e of events) {
    const c = (n.get(e.key) ?? 0) + 1;
    n.set(e.key, c);
    if (c % 7 === 0) table.delete(e.key);
    else table.set(e.key, { pk: e.key, n: c });
  }
  return table;
}

describe('dynamoDbSink in an embedded job that fails and restarts', () => {
  it('ends with exactly the oracle table after user-code failures, a commit that dies after applying, and throttling', async () => {
    // Given a job over 2,400 events of 30 keys whose user function throws once at three points, a staging client whose
    // first DeleteObjects after those fails (the commit dies after applying its writes), and a table that throttles
    const input: KeyedEventsOptions = { count: 2_400, keys: 30, ratePerSecond: 1_500 };
    const table = await createTable('ddb-job');
    const { bucket, staging } = await createStaging('ddb-job');
    let runner: EmbeddedRunner | undefined = undefined;
    const failures = [new FailOnce(400), new FailOnce(1_000), new FailOnce(1_600)];
    armInTurn(failures, () => runner?.coordinatorState().latestCompletedId ?? 0);
    let commitDied = false;
    const stagingClient = faultyS3((command) => {
      // Only in the attempt after the last user failure, once it runs (not in a restore's commits, nor in a dying attempt).
      const overview = runner?.overview();
      if (command !== 'DeleteObjectsCommand' || sink.committing === 0 || commitDied || overview?.state !== 'RUNNING' || overview.restarts < failures.length) return undefined;
      commitDied = true;
      return serviceError('InternalError', 'client');
    });
    let puts = 0;
    let throttled = 0;
    const client = faultyDynamoDb((command) => {
      if (command !== 'PutItemCommand' || ++puts % 97 !== 0) return undefined;
      throttled++;
      return serviceError('ProvisionedThroughputExceededException', 'client');
    });
    const sink = withCommitCount(dynamoDbSink<Upsert>({ table, staging, stagingClient, client, item: upsertItem, key: ['pk'], retry: { baseDelayMs: 1 } }));
    const { log, text } = captureLog();
    const root = await scratch.dir();
    runner = new EmbeddedRunner(upsertsJob({ ...input, failures, sink }), runOptions(root, log, { restart: { type: 'fixed-delay', attempts: 6, delay: 20 } }));

    // When it runs to the end of its input
    const outcome = await runner.run();

    // Then it restarted for each failure, and the table is exactly the oracle's
    expect(outcome.state, text()).toBe('FINISHED');
    expect(failures.map((f) => f.thrown)).toEqual([true, true, true]);
    expect(commitDied, text()).toBe(true);
    expect(throttled).toBeGreaterThan(0);
    expect(runner.overview().restarts, text()).toBe(4);
    expect(await scanTable(table)).toEqual(upsertsOracle(expectedKeyedEvents(input)));
    // ...and nothing is left staged: committed parts were deleted, those of failed attempts dropped on restore
    expect(await listKeys(bucket, 'staging/')).toEqual([]);
  });
});
