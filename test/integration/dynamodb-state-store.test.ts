import { DynamoDBClient, QueryCommand } from '@aws-sdk/client-dynamodb';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  DynamoDbStateStore,
  StateFencedError,
  createStateTable,
  resolveDynamoDbStateStoreOptions,
  type DynamoDbStateStoreOptions,
  type DynamoDbSubtaskState,
} from '../../lib/adapters/aws/dynamodb-state-store.js';
import { subtaskPartitionKey } from '../../lib/adapters/aws/dynamodb-state-schema.js';
import { FileCheckpointStorage } from '../../lib/adapters/local/file-checkpoint-storage.js';
import { CommitFencedError, ValidationError } from '../../lib/core/errors.js';
import { resolveRelative } from '../../lib/core/manifest/layout.js';
import { keyGroupOf, keyGroupRange, serializeKey } from '../../lib/graph/key-groups.js';
import { stateEntryKey } from '../../lib/ports/index.js';
import { aControlRow, describeStateStoreContract } from '../contract/state-store.contract.js';
import { makeTempDir, removeTempDir } from '../support/builders.js';

const table = `floe-state-${process.pid}`;
const client = new DynamoDBClient({});
let jobs = 0;
const newJob = () => `job-${jobs++}`;

beforeAll(async () => {
  await createStateTable(client, table);
});

describeStateStoreContract('DynamoDbStateStore on the emulator', () => new DynamoDbStateStore({ tableName: table, job: newJob(), client }));

// ---- fixtures: a word count over the store, Lambda instances with fault injection ----

const MAX_PARALLELISM = 128;
const TASK = { vertex: 'count', subtask: 0 };
const countKey = (word: string) => stateEntryKey('count', 'count', serializeKey(word));

/** Called before each request an instance sends; may throw (the Lambda dies) or wait (it stalls). */
type Hook = (command: string, input: Record<string, unknown>) => void | Promise<void>;

/** A client whose requests pass through `hook`. */
function hookedClient(hook: Hook): DynamoDBClient {
  const c = new DynamoDBClient({});
  c.middlewareStack.add((next, context) => async (args) => {
    await hook(context.commandName ?? '', args.input as Record<string, unknown>);
    return next(args);
  }, { step: 'initialize', name: 'floeTestHook' });
  return c;
}

const skOf = (input: Record<string, unknown>) => (input['Item'] as { sk?: { S?: string } } | undefined)?.sk?.S ?? '';
const isLeafPut = (command: string, input: Record<string, unknown>) => command === 'PutItemCommand' && skOf(input).startsWith('s/');
const isCommit = (command: string, input: Record<string, unknown>) => command === 'PutItemCommand' && skOf(input) === 'control';
const isClaim = (command: string) => command === 'UpdateItemCommand';

/** A new Lambda instance of the counting subtask of `job`: its own store, client and caches. */
function lambda(job: string, hook?: Hook, options: Partial<DynamoDbStateStoreOptions> = {}): DynamoDbSubtaskState {
  return new DynamoDbStateStore({ tableName: table, job, client: hook ? hookedClient(hook) : client, ...options }).forSubtask(TASK);
}

/** One word-count step over `words`: the output lines it would send, committed with the next version. */
async function countStep(state: DynamoDbSubtaskState, words: readonly string[]): Promise<string[]> {
  const version = (await state.readControl())?.version ?? 0;
  await state.prefetch(words.map((w) => ({ keyGroup: keyGroupOf(serializeKey(w), MAX_PARALLELISM), key: serializeKey(w) })));
  const out: string[] = [];
  for (const w of words) {
    const g = keyGroupOf(serializeKey(w), MAX_PARALLELISM);
    const n = ((state.get(g, countKey(w)) as number | undefined) ?? 0) + 1;
    state.put(g, countKey(w), n);
    out.push(`${w}\t${n}`);
  }
  await state.commit(aControlRow(version + 1, { outputs: { 'sink:0': version + 1 } }));
  return out;
}

/** The committed counts of `words`, read by a new instance. */
async function countsOf(job: string, words: readonly string[]): Promise<Record<string, number | undefined>> {
  const state = lambda(job);
  await state.readControl();
  const unique = [...new Set(words)];
  await state.prefetch(unique.map((w) => ({ keyGroup: keyGroupOf(serializeKey(w), MAX_PARALLELISM), key: serializeKey(w) })));
  return Object.fromEntries(unique.map((w) => [w, state.get(keyGroupOf(serializeKey(w), MAX_PARALLELISM), countKey(w)) as number | undefined]));
}

/** The counts a plain loop computes: the oracle. */
function oracle(batches: readonly (readonly string[])[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const batch of batches) for (const w of batch) counts[w] = (counts[w] ?? 0) + 1;
  return counts;
}

/** A gate a hook can wait at until the test opens it. */
function gate(): { wait: () => Promise<void>; open: () => void; reached: Promise<void> } {
  let open!: () => void;
  let reached!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const arrived = new Promise<void>((r) => (reached = r));
  return {
    wait: () => {
      reached();
      return opened;
    },
    open,
    reached: arrived,
  };
}

/** Words spread over many key groups (deterministic). */
const words = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
const batches = [words('w', 60), [...words('w', 30), ...words('x', 40)], [...words('x', 40), ...words('y', 20), 'w0', 'w0']];

describe('DynamoDbStateStore: only committed state is visible', () => {
  it('shows a new instance (a new Lambda) the committed state, never a step in progress', async () => {
    const job = newJob();
    const a = lambda(job);
    await countStep(a, ['a', 'b']);

    // A step in progress in instance A: changed in memory, nothing written yet
    await a.readControl();
    await a.prefetch(['a', 'c'].map((w) => ({ keyGroup: keyGroupOf(serializeKey(w), MAX_PARALLELISM), key: serializeKey(w) })));
    a.put(keyGroupOf(serializeKey('a'), MAX_PARALLELISM), countKey('a'), 2);
    a.put(keyGroupOf(serializeKey('c'), MAX_PARALLELISM), countKey('c'), 1);

    expect(await countsOf(job, ['a', 'b', 'c'])).toEqual({ a: 1, b: 1, c: undefined });
    await a.commit(aControlRow(2));
    expect(await countsOf(job, ['a', 'b', 'c'])).toEqual({ a: 2, b: 1, c: 1 });
  });

  it('rolls back leaves a dead attempt wrote: a reader takes their undo until the next commit', async () => {
    const job = newJob();
    await countStep(lambda(job), batches[0]!);
    const dies = lambda(job, (command, input) => {
      if (isCommit(command, input)) throw new Error('Lambda timed out');
    });

    await expect(countStep(dies, batches[1]!)).rejects.toThrow('Lambda timed out');

    // Every leaf of batch 1 was written, tagged with the next version; none of it counts.
    const counts = await countsOf(job, [...batches[0]!, ...batches[1]!]);
    expect(counts).toEqual(oracle([batches[0]!]));
    expect(counts['x0']).toBeUndefined();
  });
});

describe('DynamoDbStateStore: crash and replay', () => {
  type Crash = (command: string, input: Record<string, unknown>, leafPuts: number) => boolean;
  const crashes: [string, Crash][] = [
    ['before its claim', (c) => isClaim(c)],
    ['after the claim, before any leaf write', (c, _i, n) => isLeafPut(c, _i) && n === 0],
    ['after 3 leaf writes', (c, i, n) => isLeafPut(c, i) && n === 3],
    ['after every leaf write, before the commit', (c, i) => isCommit(c, i)],
  ];

  /** An instance that dies (throws from the client) at the first request `crash` picks. */
  const dyingLambda = (job: string, crash: Crash) => {
    let leafPuts = 0;
    let dead = false;
    return lambda(
      job,
      (command, input) => {
        if (dead || crash(command, input, leafPuts)) {
          dead = true;
          throw new Error('Lambda died');
        }
        if (isLeafPut(command, input)) leafPuts++;
      },
      { keyGroupsPerItem: 1, writeConcurrency: 1 },
    );
  };

  it.each(crashes)('replays a step that died %s to the result of a clean run', async (_case, crash) => {
    // Given a clean run of three batches
    const clean = newJob();
    const cleanOut: string[][] = [];
    for (const b of batches) cleanOut.push(await countStep(lambda(clean, undefined, { keyGroupsPerItem: 1 }), b));

    // When a run dies in the middle of committing batch 2, and a new instance processes batch 2 again and then 3
    const job = newJob();
    await countStep(lambda(job, undefined, { keyGroupsPerItem: 1 }), batches[0]!);
    await expect(countStep(dyingLambda(job, crash), batches[1]!)).rejects.toThrow('Lambda died');
    const successor = lambda(job, undefined, { keyGroupsPerItem: 1 });
    const replayed = await countStep(successor, batches[1]!);
    const third = await countStep(successor, batches[2]!);

    // Then the replay sends what the clean run sent, and the state is the oracle's
    expect(replayed).toEqual(cleanOut[1]);
    expect(third).toEqual(cleanOut[2]);
    expect(await countsOf(job, batches.flat())).toEqual(oracle(batches));
  });

  it('replays after two attempts in a row died while writing leaves', async () => {
    const job = newJob();
    await countStep(lambda(job, undefined, { keyGroupsPerItem: 1 }), batches[0]!);
    await expect(countStep(dyingLambda(job, (c, i, n) => isLeafPut(c, i) && n === 5), batches[1]!)).rejects.toThrow('Lambda died');
    // The second attempt gets a bigger batch (SQS may hand out more messages), and dies too
    await expect(countStep(dyingLambda(job, (c, i, n) => isLeafPut(c, i) && n === 2), [...batches[1]!, 'z1'])).rejects.toThrow('Lambda died');

    await countStep(lambda(job, undefined, { keyGroupsPerItem: 1 }), batches[1]!);

    expect(await countsOf(job, [...batches[0]!, ...batches[1]!, 'z1'])).toEqual({ ...oracle([batches[0]!, batches[1]!]), z1: undefined });
  });
});

describe('DynamoDbStateStore: rolling back deletions', () => {
  let root: string;
  const storage = new FileCheckpointStorage();
  beforeEach(async () => {
    root = await makeTempDir('floe-dynamodb-undo-');
  });
  afterEach(async () => {
    await removeTempDir(root);
  });

  const g = (w: string) => keyGroupOf(serializeKey(w), MAX_PARALLELISM);
  const begin = async (state: DynamoDbSubtaskState, ws: readonly string[]) => {
    const version = (await state.readControl())?.version ?? 0;
    await state.prefetch(ws.map((w) => ({ keyGroup: g(w), key: serializeKey(w) })));
    return version;
  };

  it('restores updated, deleted and purged entries after a dead attempt, and the replay captures the same delta', async () => {
    // Given a, b, c committed in one item, then c deleted and captured (its tombstone is then due to be purged)
    const job = newJob();
    const all = ['a', 'b', 'c', 'd'];
    const a = lambda(job, undefined, { keyGroupsPerItem: MAX_PARALLELISM });
    let v = await begin(a, all);
    for (const [i, w] of ['a', 'b', 'c'].entries()) a.put(g(w), countKey(w), i + 1);
    await a.commit(aControlRow(v + 1));
    v = await begin(a, all);
    a.put(g('c'), countKey('c'), undefined);
    const location = (id: number) => ({ dir: `${root}/chk-${id}`, sharedDir: `${root}/shared`, checkpointId: id });
    const first = a.captureSnapshot({ mode: 'incremental', checkpointId: 1, uids: ['count'], keyGroups: [0, MAX_PARALLELISM] });
    await a.commit(aControlRow(v + 1));
    await first.write(storage, location(1));

    // When an attempt deletes a, updates b, adds d, captures, and dies before its commit
    const step3 = async (state: DynamoDbSubtaskState) => {
      const base = await begin(state, all);
      state.put(g('a'), countKey('a'), undefined);
      state.put(g('b'), countKey('b'), 20);
      state.put(g('d'), countKey('d'), 4);
      const writer = state.captureSnapshot({ mode: 'incremental', checkpointId: 2, uids: ['count'], keyGroups: [0, MAX_PARALLELISM] });
      await state.commit(aControlRow(base + 1));
      return writer.write(storage, location(2));
    };
    const dies = lambda(job, (command, input) => {
      if (isCommit(command, input)) throw new Error('Lambda died');
    });
    await expect(step3(dies)).rejects.toThrow('Lambda died');

    // Then a new instance reads the committed state, and its replay captures a, b and d only
    expect(await countsOf(job, all)).toEqual({ a: 1, b: 2, c: undefined, d: undefined });
    const written = await step3(lambda(job));
    const handles = written['count']!.handles;
    expect(handles.map((h) => h.kind)).toEqual(['full', 'delta']);
    const text = new TextDecoder().decode(await storage.get(resolveRelative(location(2).dir, handles[1]!.path)));
    expect(
      text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as unknown[])
        .map(([, k, value]) => [JSON.parse((k as string).split('\u0000')[2]!) as string, value])
        .sort(),
    ).toEqual([['a', undefined], ['b', 20], ['d', 4]]);
    expect(await countsOf(job, all)).toEqual({ a: undefined, b: 20, c: undefined, d: 4 });
  });
});

describe('DynamoDbStateStore: zombie invocations', () => {
  let job: string;
  beforeEach(async () => {
    job = newJob();
    await countStep(lambda(job), batches[0]!);
  });

  it('fences a zombie that claimed and stalled before its leaf writes; the successor wins', async () => {
    // Given A claimed and stalls at its leaf writes
    const stall = gate();
    const a = lambda(job, async (command, input) => {
      if (isLeafPut(command, input)) await stall.wait();
    });
    const zombie = countStep(a, batches[1]!);
    await stall.reached;

    // When successor B processes the batch (with one more message) and commits
    await countStep(lambda(job), [...batches[1]!, 'b-only']);
    stall.open();

    // Then A's writes and commit are refused, and B's state is the committed one
    await expect(zombie).rejects.toBeInstanceOf(StateFencedError);
    expect(await countsOf(job, [...batches[0]!, ...batches[1]!, 'b-only'])).toEqual(oracle([batches[0]!, [...batches[1]!, 'b-only']]));
  });

  it('fences a zombie that wrote all its leaves and stalled before its commit; the successor wins', async () => {
    const stall = gate();
    const a = lambda(job, async (command, input) => {
      if (isCommit(command, input)) await stall.wait();
    });
    const zombie = countStep(a, [...batches[1]!, 'a-only']);
    await stall.reached;

    await countStep(lambda(job), [...batches[1]!, 'b-only']);
    stall.open();

    await expect(zombie).rejects.toBeInstanceOf(StateFencedError);
    expect(await countsOf(job, [...batches[0]!, ...batches[1]!, 'a-only', 'b-only'])).toEqual({ ...oracle([batches[0]!, [...batches[1]!, 'b-only']]), 'a-only': undefined });
    // And the next step builds on B's state
    await countStep(lambda(job), batches[2]!);
    expect(await countsOf(job, batches.flat())).toEqual(oracle(batches));
  });

  it('lets the first attempt to claim win: one that read the state before that claim is fenced at its own claim', async () => {
    // Given B has read the committed state, then A claims, writes its leaves and stalls before its commit
    const b = lambda(job);
    await b.readControl();
    await b.prefetch(batches[1]!.map((w) => ({ keyGroup: keyGroupOf(serializeKey(w), MAX_PARALLELISM), key: serializeKey(w) })));
    const stall = gate();
    const a = lambda(job, async (command, input) => {
      if (isCommit(command, input)) await stall.wait();
    });
    const first = countStep(a, batches[1]!);
    await stall.reached;

    // When B counts its batch and commits
    for (const w of batches[1]!) {
      const g = keyGroupOf(serializeKey(w), MAX_PARALLELISM);
      b.put(g, countKey(w), ((b.get(g, countKey(w)) as number | undefined) ?? 0) + 100);
    }
    await expect(b.commit(aControlRow(2))).rejects.toBeInstanceOf(StateFencedError);

    // Then A, which claimed first, commits
    stall.open();
    await first;
    expect(await countsOf(job, [...batches[0]!, ...batches[1]!])).toEqual(oracle([batches[0]!, batches[1]!]));
  });

  it('fences an attempt that read the state before another committed, at its claim', async () => {
    const b = lambda(job);
    await b.readControl();
    await b.prefetch(['w0'].map((w) => ({ keyGroup: keyGroupOf(serializeKey(w), MAX_PARALLELISM), key: serializeKey(w) })));
    await countStep(lambda(job), batches[1]!);

    b.put(keyGroupOf(serializeKey('w0'), MAX_PARALLELISM), countKey('w0'), 1000);

    await expect(b.commit(aControlRow(2))).rejects.toBeInstanceOf(CommitFencedError);
    expect(await countsOf(job, ['w0'])).toEqual({ w0: 2 });
  });

  it('fences a stale attempt as soon as it reads a leaf written by a newer claim, before it computes anything', async () => {
    const stale = lambda(job);
    await stale.readControl();
    await countStep(lambda(job), batches[1]!);

    await expect(stale.prefetch(batches[1]!.map((w) => ({ keyGroup: keyGroupOf(serializeKey(w), MAX_PARALLELISM), key: serializeKey(w) })))).rejects.toBeInstanceOf(StateFencedError);
  });

  it('recognizes its own claim and commit when their responses were lost and the SDK sent them again', async () => {
    let drop = new Set(['UpdateItemCommand', 'PutItemCommand:control']);
    const lossy = new DynamoDBClient({});
    lossy.middlewareStack.add((next, context) => async (args) => {
      const result = await next(args);
      const name = context.commandName === 'PutItemCommand' ? `PutItemCommand:${skOf(args.input as Record<string, unknown>)}` : (context.commandName ?? '');
      if (drop.has(name)) {
        drop = new Set([...drop].filter((d) => d !== name));
        throw Object.assign(new Error('socket hang up'), { name: 'TimeoutError', code: 'ECONNRESET', $metadata: {} });
      }
      return result;
    }, { step: 'deserialize', name: 'loseResponses' });
    const state = new DynamoDbStateStore({ tableName: table, job, client: lossy }).forSubtask(TASK);

    await countStep(state, batches[1]!);

    expect(drop.size).toBe(0);
    expect(await countsOf(job, [...batches[0]!, ...batches[1]!])).toEqual(oracle([batches[0]!, batches[1]!]));
  });
});

describe('DynamoDbStateStore: large steps and snapshots', () => {
  let root: string;
  const storage = new FileCheckpointStorage();
  beforeEach(async () => {
    root = await makeTempDir('floe-dynamodb-state-');
  });
  afterEach(async () => {
    await removeTempDir(root);
  });

  it('commits a step that changes thousands of entries in more than 100 items, splitting items that grow too large', async () => {
    // Given items of one key group each, split above 1 KB
    const job = newJob();
    const options = { keyGroupsPerItem: 1, maxItemBytes: 1024 };
    const hash = (i: number, seed: number) => (Math.imul(i + seed, 2654435761) >>> 0).toString(36);
    const many = Array.from({ length: 12000 }, (_, i) => `e${i}-${hash(i, 1)}${hash(i, 7)}${hash(i, 13)}`);
    let leafPuts = 0;
    const state = lambda(
      job,
      (c, i) => {
        if (isLeafPut(c, i)) leafPuts++;
      },
      options,
    );

    // When one step counts all of them, and a second step counts a third of them again
    await countStep(state, many);
    const firstPuts = leafPuts;
    await countStep(state, many.slice(0, 1000));

    // Then more than 100 items were written at once, items were split, and a new instance reads every count
    expect(firstPuts).toBeGreaterThan(200);
    const parts = await client.send(
      new QueryCommand({ TableName: table, KeyConditionExpression: 'pk = :pk AND begins_with(sk, :s)', ExpressionAttributeValues: { ':pk': { S: subtaskPartitionKey(job, TASK) }, ':s': { S: 's/' } }, Select: 'COUNT' }),
    );
    expect(parts.Count).toBeGreaterThan(MAX_PARALLELISM);
    expect(await countsOf(job, many)).toEqual(oracle([many, many.slice(0, 1000)]));

    // And a full capture, restored by another subtask, holds them all
    const reader = lambda(job, undefined, options);
    await reader.readControl();
    const written = await reader.captureSnapshot({ mode: 'full', checkpointId: 1, uids: ['count'], keyGroups: [0, MAX_PARALLELISM] }).write(storage, { dir: `${root}/chk-1`, checkpointId: 1 });
    expect(written['count']!.handles[0]!.entries).toBe(12000);
    const restored = new DynamoDbStateStore({ tableName: table, job: newJob(), client, ...options }).forSubtask(TASK);
    await restored.restore({ storage, manifestDir: `${root}/chk-1`, keyGroups: [0, MAX_PARALLELISM], operators: { count: { keyedState: [written['count']!.handles], operatorState: [] } } });
    await restored.readControl();
    await restored.prefetch(many.map((w) => ({ keyGroup: keyGroupOf(serializeKey(w), MAX_PARALLELISM), key: serializeKey(w) })));
    expect(many.filter((w, i) => restored.get(keyGroupOf(serializeKey(w), MAX_PARALLELISM), countKey(w)) !== (i < 1000 ? 2 : 1))).toEqual([]);
  });

  it('puts changes committed by earlier instances into the next incremental capture of a new one', async () => {
    const job = newJob();
    const options = { keyGroupsPerItem: 1 };
    const location = (id: number) => ({ dir: `${root}/chk-${id}`, sharedDir: `${root}/shared`, checkpointId: id });
    const capture = async (state: DynamoDbSubtaskState, id: number, ws: string[]) => {
      const version = (await state.readControl())?.version ?? 0;
      await state.prefetch(ws.map((w) => ({ keyGroup: keyGroupOf(serializeKey(w), MAX_PARALLELISM), key: serializeKey(w) })));
      const writer = state.captureSnapshot({ mode: 'incremental', checkpointId: id, uids: ['count'], keyGroups: [0, MAX_PARALLELISM] });
      await state.commit(aControlRow(version + 1));
      return writer.write(storage, location(id));
    };
    // Given instance A counted a, b, c and captured checkpoint 1, then counted b again
    const a = lambda(job, undefined, options);
    await countStep(a, ['a', 'b', 'c']);
    await capture(a, 1, []);
    await countStep(a, ['b']);

    // When instance B counts d and captures checkpoint 2
    const b = lambda(job, undefined, options);
    await countStep(b, ['d']);
    const written = await capture(b, 2, []);

    // Then the delta holds b and d, and not a or c
    const handles = written['count']!.handles;
    expect(handles.map((h) => h.kind)).toEqual(['full', 'delta']);
    const text = new TextDecoder().decode(await storage.get(resolveRelative(location(2).dir, handles[1]!.path)));
    const delta = text.trim().split('\n').map((l) => JSON.parse(l) as [number, string, number]).map(([, k, v]) => [JSON.parse(k.split('\u0000')[2]!) as string, v]);
    expect(delta.sort()).toEqual([
      ['b', 2],
      ['d', 1],
    ]);
  });

  it('deletes the items of the previous incarnation on restore', async () => {
    const job = newJob();
    await countStep(lambda(job), batches[0]!);
    const state = lambda(job);

    await state.restore({ storage, manifestDir: root, keyGroups: [0, MAX_PARALLELISM], operators: {} });

    const left = await client.send(
      new QueryCommand({ TableName: table, KeyConditionExpression: 'pk = :pk AND begins_with(sk, :s)', ExpressionAttributeValues: { ':pk': { S: subtaskPartitionKey(job, TASK) }, ':s': { S: 's/' } }, Select: 'COUNT' }),
    );
    expect(left.Count).toBe(0);
    expect(await countsOf(job, batches[0]!)).toEqual(Object.fromEntries(batches[0]!.map((w) => [w, undefined])));
  });
});

describe('DynamoDbStateStore: write units of a word count', () => {
  /** Zipf-distributed words of a vocabulary, from a seeded generator; only those of subtask 0 of 2. */
  function zipfWords(vocabulary: number, count: number, seed: number): string[] {
    let s = seed >>> 0;
    const random = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const weights = Array.from({ length: vocabulary }, (_, i) => 1 / (i + 1));
    const total = weights.reduce((a, b) => a + b, 0);
    const cumulative: number[] = [];
    weights.reduce((acc, w, i) => (cumulative[i] = acc + w / total), 0);
    const [lo, hi] = keyGroupRange(0, 2, MAX_PARALLELISM);
    const out: string[] = [];
    while (out.length < count) {
      const r = random();
      let a = 0;
      let b = vocabulary - 1;
      while (a < b) {
        const m = (a + b) >> 1;
        if (cumulative[m]! < r) a = m + 1;
        else b = m;
      }
      const word = `word${a}`;
      const g = keyGroupOf(serializeKey(word), MAX_PARALLELISM);
      if (g >= lo && g < hi) out.push(word);
    }
    return out;
  }

  /** Runs 12 steps of `perStep` records on a new job; the mean write units and items per step over the last 6. */
  async function measure(perStep: number, vocabulary: number): Promise<{ units: number; items: number; per100: number }> {
    const state = lambda(newJob());
    const units: number[] = [];
    const items: number[] = [];
    for (let i = 0; i < 12; i++) {
      const before = state.usage();
      await countStep(state, zipfWords(vocabulary, perStep, i + 1));
      const after = state.usage();
      units.push(after.writeUnits - before.writeUnits);
      items.push(after.itemWrites - before.itemWrites);
    }
    const mean = (xs: number[]) => xs.slice(6).reduce((a, b) => a + b, 0) / 6;
    const result = { units: mean(units), items: mean(items), per100: (mean(units) / perStep) * 100 };
    console.log(
      `word count, ${perStep} records/step, Zipf vocabulary of ${vocabulary}: ${result.units.toFixed(1)} write units and ${result.items.toFixed(1)} item writes per step at steady state = ${result.per100.toFixed(2)} units per 100 records (units per step: ${units.join(' ')})`,
    );
    return result;
  }

  it('writes under 1 unit per 100 records at steady state with full Lambda batches (10 messages of 512 records)', async () => {
    const { per100 } = await measure(5120, 10_000);

    expect(per100).toBeLessThan(1);
  });

  it('writes about the compressed size of the state a step touches: fewer units for a smaller vocabulary', async () => {
    const large = await measure(1024, 10_000);
    const small = await measure(1024, 1_000);

    expect(small.units).toBeLessThan(large.units);
    expect(small.items).toBeLessThanOrEqual(large.items);
  });
});

describe('resolveDynamoDbStateStoreOptions', () => {
  it('fills defaults', () => {
    expect(resolveDynamoDbStateStoreOptions({ tableName: 'floe-state', job: 'wordcount' })).toMatchObject({ keyGroupsPerItem: 16, maxItemBytes: 16384, writeConcurrency: 16, maxCachedItems: 4096 });
  });

  it('reports every problem at once, by field', () => {
    let error: unknown;
    try {
      resolveDynamoDbStateStoreOptions({ tableName: 'x', job: '', keyGroupsPerItem: 0, maxItemBytes: 500 * 1024, writeConcurrency: 1.5 });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).problems.map((p) => p.split(' ')[0])).toEqual(['tableName', 'job', 'keyGroupsPerItem', 'maxItemBytes', 'writeConcurrency']);
  });
});
