import { afterEach, describe, expect, it } from 'vitest';
import { SQSClient, type Message } from '@aws-sdk/client-sqs';
import { EmbeddedRunner } from '../../lib/hosts/embedded/embedded-runner.js';
import { sqsSink } from '../../lib/connectors/sqs-sink.js';
import { armInTurn, createQueue, createStaging, drainQueue, faultyS3, listKeys, serviceError, stageEpochs, withCommitCount } from '../support/aws-sinks.js';
import { FailOnce, Scratch, captureLog, countLine, expectedKeyedEvents, runOptions, runningCountsJob, type KeyedEvent, type KeyedEventsOptions } from '../support/jobs.js';

const scratch = new Scratch();
afterEach(() => scratch.cleanup());

/** Messages as `{ group, body }`, in the order received. */
const received = (messages: readonly Message[]) => messages.map((m) => ({ group: m.Attributes?.MessageGroupId, body: m.Body! }));

/** Bodies per message group, in the order received. */
function byGroup(messages: readonly Message[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const { group, body } of received(messages)) out.set(group ?? '', [...(out.get(group ?? '') ?? []), body]);
  return out;
}

/** An SQS client whose SendMessageBatch calls pass through `fail`, which answers whether this one fails. */
function sqsFailing(fail: () => boolean): SQSClient {
  const client = new SQSClient({});
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'SendMessageBatchCommand' && fail()) throw serviceError('InvalidParameterValue');
      return next(args);
    },
    { step: 'initialize', name: 'floeFaultHook' },
  );
  return client;
}

const line = (group: string, n: number) => `${group}:${n}`;

describe('sqsSink on a FIFO queue', () => {
  it('sends nothing before the commit, and a commit run again (it died after sending, or half-way) sends each message once, in group order', async () => {
    // Given 60 messages in 3 groups over two epochs, staged by a sink whose first commits die: the first after sending
    // everything (its staged parts cannot be deleted), the second after its second SendMessageBatch
    const queueUrl = await createQueue('sqs-sink', true);
    const { bucket, staging } = await createStaging('sqs-sink');
    const values = Array.from({ length: 60 }, (_, i) => ({ group: `g${i % 3}`, n: Math.floor(i / 3) }));
    const keepParts = faultyS3((command) => (command === 'DeleteObjectsCommand' ? serviceError('AccessDenied') : undefined));
    const opts = { queueUrl, staging, body: (v: (typeof values)[number]) => line(v.group, v.n), groupId: (v: (typeof values)[number]) => v.group, retry: { baseDelayMs: 1 } };
    const dying = sqsSink({ ...opts, stagingClient: keepParts });
    const staged = await stageEpochs(dying, [
      { checkpointId: 1, steps: [values.slice(0, 20), values.slice(20, 30)] },
      { checkpointId: 2, steps: [values.slice(30)] },
    ]);
    expect(await drainQueue(queueUrl)).toEqual([]);

    // When checkpoint 1's commit dies after sending, checkpoint 2's dies half-way, and both are run again (twice)
    await expect(dying.commit(staged.get(1)![0]!)).rejects.toThrow(/AccessDenied/);
    let calls = 0;
    const halfWay = sqsSink({ ...opts, client: sqsFailing(() => ++calls === 2) });
    await expect(halfWay.commit(staged.get(2)![0]!)).rejects.toThrow(/InvalidParameterValue/);
    const healthy = sqsSink(opts);
    for (const c of [1, 2, 1, 2]) await healthy.commit(staged.get(c)![0]!);

    // Then each message arrived once, each group in order, and nothing is left staged
    const groups = byGroup(await drainQueue(queueUrl));
    expect([...groups.keys()].sort()).toEqual(['g0', 'g1', 'g2']);
    for (const [g, bodies] of groups) expect(bodies, g).toEqual(Array.from({ length: 20 }, (_, n) => line(g, n)));
    expect(await listKeys(bucket, 'staging/')).toEqual([]);
    expect(healthy.exactlyOnce).toBe(true);
  });

  it('refuses at write time what SQS would refuse at commit: an oversized body, a bad group id, characters outside XML', async () => {
    const queueUrl = await createQueue('sqs-limits', true);
    const { staging } = await createStaging('sqs-limits');
    const writer = sqsSink<string>({ queueUrl, staging, maxMessageBytes: 2048, groupId: (v) => (v === 'bad group' ? 'has space' : 'g') }).createWriter({ uid: 'out', subtask: 0, runId: 'r' });
    const state = await writer.resume(undefined);
    await expect(writer.write(['x'.repeat(2049)], state)).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
    await expect(writer.write(['bad group'], state)).rejects.toThrow(/groupId must return/);
    await expect(writer.write(['\u0000'], state)).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
  });
});

describe('sqsSink on a standard queue', () => {
  it('is at-least-once: a commit run again after it died having sent repeats what it sent, and loses nothing', async () => {
    // Given a standard queue and a commit that dies after sending (its staged parts cannot be deleted)
    const queueUrl = await createQueue('sqs-standard', false);
    const { staging } = await createStaging('sqs-standard');
    const keepParts = faultyS3((command) => (command === 'DeleteObjectsCommand' ? serviceError('AccessDenied') : undefined));
    const dying = sqsSink<string>({ queueUrl, staging, stagingClient: keepParts });
    const values = Array.from({ length: 25 }, (_, i) => `m${i}`);
    const staged = await stageEpochs(dying, [{ checkpointId: 1, steps: [values] }]);
    expect(dying.exactlyOnce).toBe(false);

    // When it is run again, now able to finish
    await expect(dying.commit(staged.get(1)![0]!)).rejects.toThrow(/AccessDenied/);
    const healthy = sqsSink<string>({ queueUrl, staging });
    await healthy.commit(staged.get(1)![0]!);
    await healthy.commit(staged.get(1)![0]!);

    // Then every message arrived twice (the second commit sent them again; the third found them committed)
    const bodies = received(await drainQueue(queueUrl)).map((m) => m.body).sort();
    expect(bodies).toEqual([...values, ...values].sort());
  });
});

describe('sqsSink in an embedded job that fails and restarts', () => {
  it('a FIFO queue ends with every running count once, in order per key, after user-code failures and commits that die', async () => {
    // Given the running-counts job (300 events, 8 keys, groups by key) whose user function throws once at three
    // points, and, after those, a commit that dies after its first SendMessageBatch and one that dies after sending all.
    // (Few events: moto's FIFO SendMessageBatch slows down with the messages a queue holds.)
    const input: KeyedEventsOptions = { count: 300, keys: 8, ratePerSecond: 600 };
    const queueUrl = await createQueue('sqs-job', true);
    const { bucket, staging } = await createStaging('sqs-job');
    let runner: EmbeddedRunner | undefined = undefined;
    const failures = [new FailOnce(50), new FailOnce(120), new FailOnce(190)];
    armInTurn(failures, () => runner?.coordinatorState().latestCompletedId ?? 0);
    const afterFailures = () => {
      const o = runner?.overview();
      return o?.state === 'RUNNING' && o.restarts >= failures.length;
    };
    // In the attempt after the failures, the first commit with a second SendMessageBatch dies there: half sent.
    let halfSent = false;
    let batchOf = { commit: 0, n: 0 };
    const client = sqsFailing(() => {
      if (halfSent || !afterFailures()) return false;
      batchOf = batchOf.commit === sink.commits ? { ...batchOf, n: batchOf.n + 1 } : { commit: sink.commits, n: 1 };
      return (halfSent = batchOf.n === 2);
    });
    let deleteDied = false;
    const stagingClient = faultyS3((command) => {
      // The first commit after the half-sent one failed its attempt — the next attempt's restore commits the carried
      // transaction — dies after sending all, before deleting its staged parts.
      if (command !== 'DeleteObjectsCommand' || deleteDied || sink.committing === 0 || !halfSent || runner!.overview().restarts < failures.length + 1) return undefined;
      deleteDied = true;
      return serviceError('InternalError');
    });
    const sink = withCommitCount(sqsSink<string>({ queueUrl, staging, stagingClient, client, groupId: (l) => l.split('\t')[0]!, retry: { baseDelayMs: 1 } }));
    const { log, text } = captureLog();
    const root = await scratch.dir();
    runner = new EmbeddedRunner(runningCountsJob({ ...input, sink, failures, name: 'sqs-counts' }), runOptions(root, log, { restart: { type: 'fixed-delay', attempts: 8, delay: 20 } }));

    // When it runs to the end of its input
    const outcome = await runner.run();

    // Then it restarted for each failure, and each key's group holds exactly its running counts 1..N, in order
    expect(outcome.state, text()).toBe('FINISHED');
    expect(failures.map((f) => f.thrown)).toEqual([true, true, true]);
    expect(halfSent, text()).toBe(true);
    // The commit that dies before deleting its parts comes only when the restore after the half-sent one has a
    // transaction left to commit: a later checkpoint's commit, running beside the half-sent one, may have applied it
    // first (commits of successive checkpoints may overlap, as on AWS). Each failure restarts the job once.
    expect(runner.overview().restarts, text()).toBe(failures.length + 1 + (deleteDied ? 1 : 0));
    const groups = byGroup(await drainQueue(queueUrl));
    expect(groups).toEqual(expectedGroups(expectedKeyedEvents(input)));
    expect(await listKeys(bucket, 'staging/')).toEqual([]);
  });
});

/** The oracle: per key, the lines `key<TAB>1` .. `key<TAB>N`, from a plain loop over the generated events. */
function expectedGroups(events: readonly KeyedEvent[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const e of events) {
    const lines = out.get(e.key) ?? [];
    lines.push(countLine(e.key, lines.length + 1));
    out.set(e.key, lines);
  }
  return out;
}
