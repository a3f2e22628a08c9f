import { randomBytes, randomUUID } from 'node:crypto';
import { CreateBucketCommand, DeleteBucketCommand, type BucketLocationConstraint, type DeleteObjectsCommandInput } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsClients } from '../../lib/adapters/aws/clients.js';
import { S3CheckpointStorage } from '../../lib/adapters/aws/s3-checkpoint-storage.js';
import { ErrorCode, FloeError } from '../../lib/core/errors.js';
import { Layout, join, resolveRelative } from '../../lib/core/manifest/layout.js';
import { MANIFEST_FORMAT_VERSION, type Manifest, type StateHandle } from '../../lib/core/manifest/model.js';
import { ManifestSerializer } from '../../lib/core/manifest/serializer.js';
import { discardOldCheckpoints, findLatestCheckpoint, listCheckpoints, loadManifest, loadRestorableManifest } from '../../lib/runtime/snapshot-catalog.js';
import type { SkippedCheckpoint } from '../../lib/core/restore-choice.js';
import { describeCheckpointStorageContract } from '../contract/checkpoint-storage.contract.js';

// Runs against the emulator that test/support/moto-global-setup.ts points AWS_ENDPOINT_URL at (or FLOE_AWS_ENDPOINT).

const clients = awsClients();
const storage = new S3CheckpointStorage({ client: clients.s3 });
const bucket = `floe-s3-${randomUUID().slice(0, 8)}`;
const root = `s3://${bucket}/floe-test`;

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (data: Uint8Array): string => new TextDecoder().decode(data);

/** Deletes everything under a location, through the storage under test. */
async function empty(location: string): Promise<void> {
  await storage.delete(await storage.list(location));
}

/** Runs `task` over `items` with at most `limit` in flight. */
async function inParallel<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await task(items[next++]!);
    }),
  );
}

/** A storage on its own client that records the command name and input of every request it sends. */
function recordingStorage(): { storage: S3CheckpointStorage; sent: { command: string; input: unknown }[] } {
  const client = awsClients().s3;
  const sent: { command: string; input: unknown }[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      sent.push({ command: context.commandName ?? '?', input: args.input });
      return next(args);
    },
    { step: 'initialize', name: 'floeTestRecorder' },
  );
  return { storage: new S3CheckpointStorage({ client }), sent };
}

beforeAll(async () => {
  const region = await clients.s3.config.region();
  // us-east-1 is the one region that refuses an explicit location constraint.
  const location = region === 'us-east-1' ? {} : { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } };
  await clients.s3.send(new CreateBucketCommand({ Bucket: bucket, ...location }));
});

afterAll(async () => {
  await empty(`s3://${bucket}`);
  await clients.s3.send(new DeleteBucketCommand({ Bucket: bucket }));
});

describeCheckpointStorageContract('S3CheckpointStorage', async () => ({ storage, root, cleanup: () => empty(root) }));

describe('S3CheckpointStorage on an S3 endpoint', () => {
  const at = (...parts: string[]): string => join(`s3://${bucket}`, 'floe-specific', ...parts);

  afterAll(async () => {
    await empty(at());
  });

  it('lets exactly one of two concurrent putIfAbsent calls win, over many races', async () => {
    for (let round = 0; round < 10; round++) {
      const location = at('races', `chk-${round}`, '_metadata');
      const results = await Promise.allSettled(['a', 'b'].map((w) => storage.putIfAbsent(location, bytes(`writer-${w}`))));

      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [['a', 'b'][i]] : []));
      expect(won).toHaveLength(1);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(lost.reason).toBeInstanceOf(FloeError);
      expect(lost.reason).toMatchObject({ code: ErrorCode.ManifestExists, retryable: false, message: expect.stringContaining(location) });
      expect(text(await storage.get(location))).toBe(`writer-${won[0]}`);
    }
  });

  it('round-trips a large object unchanged', async () => {
    const large = new Uint8Array(randomBytes(12 * 1024 * 1024));

    await storage.put(at('large.bin'), large);
    const read = await storage.get(at('large.bin'));

    expect(read.byteLength).toBe(large.byteLength);
    expect(Buffer.compare(Buffer.from(read), Buffer.from(large))).toBe(0);
  });

  it('lists more than one page of objects and deletes more than one batch', async () => {
    // Given more objects under one prefix than one ListObjectsV2 page or one DeleteObjects request holds
    const locations = Array.from({ length: 1005 }, (_, i) => at('many', `obj-${String(i).padStart(5, '0')}`));
    await inParallel(locations, 48, (location) => storage.put(location, bytes(location)));
    await storage.put(at('many-more', 'sibling'), bytes('not under many/'));

    // When listing them all, and deleting them all, through a client that records the requests it sends
    const requests = recordingStorage();
    const listed = await requests.storage.list(at('many'));
    await requests.storage.delete(listed);

    // Then every one comes back exactly once, and none from the sibling prefix
    expect(listed).toHaveLength(locations.length);
    expect([...listed].sort()).toEqual([...locations].sort());
    expect(requests.sent.filter((r) => r.command === 'ListObjectsV2Command')).toHaveLength(2);
    // And the delete took two requests within DeleteObjects' 1000-key limit, removing them all
    const deletes = requests.sent.filter((r) => r.command === 'DeleteObjectsCommand');
    expect(deletes.map((r) => (r.input as DeleteObjectsCommandInput).Delete?.Objects?.length)).toEqual([1000, 5]);
    expect(await storage.list(at('many'))).toEqual([]);
    expect(await storage.exists(at('many-more', 'sibling'))).toBe(true);
  });

  it('lists a bucket root and a prefix given with a trailing slash', async () => {
    await storage.put(at('slash', 'a'), bytes('a'));

    expect(await storage.list(`${at('slash')}/`)).toEqual([at('slash', 'a')]);
    expect(await storage.list(`s3://${bucket}`)).toContain(at('slash', 'a'));
    expect(await storage.list(`s3://${bucket}/`)).toContain(at('slash', 'a'));
  });

  it('refuses locations that are not s3:// URLs before calling S3', async () => {
    for (const location of ['/tmp/floe/_metadata', 'file:///tmp/x', `S3://${bucket}/x`, `s3://${bucket}`, `s3://${bucket}/dir/`]) {
      await expect(storage.put(location, bytes('x'))).rejects.toMatchObject({ code: ErrorCode.InvalidOptions, message: expect.stringContaining(location) });
    }
    await expect(storage.list('/tmp/floe')).rejects.toMatchObject({ code: ErrorCode.InvalidOptions });
  });

  it('reports a missing bucket as a terminal STORAGE error, never as a missing object or an empty listing', async () => {
    const missing = `s3://floe-missing-${randomUUID().slice(0, 8)}`;

    const read = await storage.get(`${missing}/chk-1/_metadata`).catch((e: unknown) => e);
    const list = await storage.list(`${missing}/job`).catch((e: unknown) => e);

    expect(read).toMatchObject({ code: ErrorCode.Storage, retryable: false, message: expect.stringContaining('NoSuchBucket') });
    expect(list).toMatchObject({ code: ErrorCode.Storage, retryable: false, message: expect.stringContaining('NoSuchBucket') });
  });
});

describe('snapshot catalog on s3:// roots', () => {
  const catalogRoot = `s3://${bucket}/floe-catalog`;
  const job = 'wordcount';

  function aManifest(checkpointId: number, keyedState: StateHandle[]): Manifest {
    return {
      formatVersion: MANIFEST_FORMAT_VERSION,
      job,
      jobId: 'job-1',
      graphFingerprint: 'fp-1',
      checkpointId,
      kind: 'checkpoint',
      format: 'native',
      generation: 0,
      triggeredAt: 1_000 * checkpointId,
      completedAt: 1_000 * checkpointId + 10,
      maxParallelism: 128,
      endOfInput: false,
      operators: [
        {
          uid: 'count',
          name: 'Count',
          parallelism: 1,
          stateful: true,
          subtasks: [
            {
              subtask: 0,
              keyGroups: [0, 128],
              keyedState,
              operatorState: [],
              pendingCommits: [],
              stats: { ackTimestamp: 1, alignmentMs: 0, syncMs: 0, asyncMs: 0, startDelayMs: 0, stateSize: 1, fullSize: 1 },
            },
          ],
        },
      ],
    };
  }

  /** A state file in the shared directory, named the way the state stores name them, and its handle from a checkpoint dir. */
  async function sharedFile(checkpointId: number, kind: StateHandle['kind']): Promise<{ location: string; handle: StateHandle }> {
    const file = `count-0-chk${checkpointId}-${randomBytes(4).toString('hex')}.jsonl`;
    const location = join(Layout.sharedDir(catalogRoot, job), file);
    await storage.put(location, bytes('{}\n'));
    return { location, handle: { path: `../shared/${file}`, kind, size: 3, entries: 1, keyGroups: [0, 128] } };
  }

  afterAll(async () => {
    await empty(catalogRoot);
  });

  it('lists, loads and discards checkpoints whose manifests and state files live in S3', async () => {
    // Given checkpoints 1, 2, 3 and 10 complete (an incremental chain), 11 still in flight
    const full = await sharedFile(1, 'full');
    const delta2 = await sharedFile(2, 'delta');
    const delta3 = await sharedFile(3, 'delta');
    const full10 = await sharedFile(10, 'full');
    const chains: Record<number, StateHandle[]> = {
      1: [full.handle],
      2: [full.handle, delta2.handle],
      3: [full.handle, delta2.handle, delta3.handle],
      10: [full10.handle],
    };
    for (const [id, chain] of Object.entries(chains)) {
      const dir = Layout.checkpointDir(catalogRoot, job, Number(id));
      await storage.put(join(dir, 'state', 'extra'), bytes('checkpoint-private'));
      await storage.putIfAbsent(join(dir, Layout.METADATA), ManifestSerializer.serialize(aManifest(Number(id), chain)));
    }
    await storage.put(join(Layout.checkpointDir(catalogRoot, job, 11), 'state', 'partial'), bytes('in flight'));

    // Then the catalog sees them, with s3:// directories
    const listed = await listCheckpoints(storage, catalogRoot, job);
    expect(listed).toEqual([
      { id: 1, dir: Layout.checkpointDir(catalogRoot, job, 1), complete: true },
      { id: 2, dir: Layout.checkpointDir(catalogRoot, job, 2), complete: true },
      { id: 3, dir: Layout.checkpointDir(catalogRoot, job, 3), complete: true },
      { id: 10, dir: Layout.checkpointDir(catalogRoot, job, 10), complete: true },
      { id: 11, dir: Layout.checkpointDir(catalogRoot, job, 11), complete: false },
    ]);
    const byDir = await loadManifest(storage, Layout.checkpointDir(catalogRoot, job, 3));
    const byFile = await loadManifest(storage, join(Layout.checkpointDir(catalogRoot, job, 3), Layout.METADATA));
    expect(byDir).toEqual(byFile);
    expect(byDir.dir).toBe(Layout.checkpointDir(catalogRoot, job, 3));
    expect(byDir.manifest.operators[0]!.subtasks[0]!.keyedState).toEqual(chains[3]);
    expect((await findLatestCheckpoint(storage, catalogRoot, job))?.manifest.checkpointId).toBe(10);
    await expect(loadManifest(storage, Layout.checkpointDir(catalogRoot, job, 11))).rejects.toMatchObject({ code: ErrorCode.CheckpointNotFound });

    // When only the newest two completed checkpoints are retained
    await discardOldCheckpoints(storage, catalogRoot, job, 2);

    // Then 1 and 2 are gone, 3, 10 and the in-flight 11 stay, and so do exactly the shared files 3 and 10 reference
    expect((await listCheckpoints(storage, catalogRoot, job)).map((c) => c.id)).toEqual([3, 10, 11]);
    const shared = await storage.list(Layout.sharedDir(catalogRoot, job));
    expect([...shared].sort()).toEqual([full.location, delta2.location, delta3.location, full10.location].sort());
    const restored = await loadManifest(storage, Layout.checkpointDir(catalogRoot, job, 3));
    for (const handle of restored.manifest.operators[0]!.subtasks[0]!.keyedState) {
      expect(await storage.exists(resolveRelative(restored.dir, handle.path))).toBe(true);
    }

    // And with one retained, the chain of 3 is no longer referenced: only 10's file is kept
    await discardOldCheckpoints(storage, catalogRoot, job, 1);
    expect((await listCheckpoints(storage, catalogRoot, job)).map((c) => c.id)).toEqual([10, 11]);
    expect(await storage.list(Layout.sharedDir(catalogRoot, job))).toEqual([full10.location]);
  });

  it('finds the newest restorable checkpoint in S3, passing over newer ones that are corrupt, and refuses when none is', async () => {
    // Given checkpoints 1 and 2 intact (2's state file inside its own directory), and newer ones that are not:
    // 3 references a shared file that is gone, 4 has an unknown formatVersion, 5 is not JSON
    const fallbackRoot = join(catalogRoot, 'fallback');
    const dir = (id: number) => Layout.checkpointDir(fallbackRoot, job, id);
    const metadata = (id: number) => join(dir(id), Layout.METADATA);
    const shared = join(Layout.sharedDir(fallbackRoot, job), 'count-0-chk1-00aa.jsonl');
    await storage.put(shared, bytes('{}\n'));
    await storage.put(join(dir(2), 'state', 'count-0-chk2-00bb.jsonl'), bytes('{}\n'));
    const handle = (path: string): StateHandle => ({ path, kind: 'full', size: 3, entries: 1, keyGroups: [0, 128] });
    await storage.put(metadata(1), ManifestSerializer.serialize(aManifest(1, [handle('../shared/count-0-chk1-00aa.jsonl')])));
    await storage.put(metadata(2), ManifestSerializer.serialize(aManifest(2, [handle('../shared/count-0-chk1-00aa.jsonl'), handle('state/count-0-chk2-00bb.jsonl')])));
    await storage.put(metadata(3), ManifestSerializer.serialize(aManifest(3, [handle('../shared/count-0-chk3-00cc.jsonl')])));
    await storage.put(metadata(4), bytes(JSON.stringify({ ...aManifest(4, []), formatVersion: 2 })));
    await storage.put(metadata(5), bytes('{"formatVersion": 1,'));

    // When the latest checkpoint is looked for, through a storage that records its requests
    const recording = recordingStorage();
    const skipped: SkippedCheckpoint[] = [];
    const latest = await findLatestCheckpoint(recording.storage, fallbackRoot, job, { onSkip: (c) => skipped.push(c) });

    // Then it is 2, and 5, 4 and 3 were skipped, newest first, each with its problem
    expect(latest?.manifest.checkpointId).toBe(2);
    expect(latest?.dir).toBe(dir(2));
    expect(skipped.map((c) => [c.id, c.location])).toEqual([5, 4, 3].map((id) => [id, metadata(id)]));
    expect(skipped[0]!.reason).toMatch(/is corrupt: not valid JSON/);
    expect(skipped[1]!.reason).toMatch(/has formatVersion 2, but this Floe reads only formatVersion 1/);
    expect(skipped[2]!.reason).toBe(`${metadata(3)} references a state file that does not exist: ${join(Layout.sharedDir(fallbackRoot, job), 'count-0-chk3-00cc.jsonl')}`);
    // Checking the state files cost listings, not a request per file; 1 was never read
    expect(recording.sent.filter((r) => r.command === 'HeadObjectCommand').map((r) => r.input)).toEqual([
      expect.objectContaining({ Key: expect.stringMatching(/count-0-chk3-00cc\.jsonl$/) }),
    ]);
    expect(recording.sent.filter((r) => r.command === 'GetObjectCommand').map((r) => (r.input as { Key: string }).Key)).toEqual(
      [5, 4, 3, 2].map((id) => expect.stringContaining(`chk-${id}/_metadata`)),
    );

    // And an explicit path to 3 is refused for its missing file
    await expect(loadRestorableManifest(storage, dir(3))).rejects.toMatchObject({ code: ErrorCode.CorruptManifest, message: expect.stringContaining('count-0-chk3-00cc.jsonl') });

    // And with 1 and 2 gone, the lookup refuses, listing every problem, instead of answering "no checkpoint"
    await storage.delete([metadata(1), metadata(2)]);
    const refused = await findLatestCheckpoint(storage, fallbackRoot, job).catch((e: unknown) => e as FloeError);
    expect(refused).toBeInstanceOf(FloeError);
    expect((refused as FloeError).code).toBe(ErrorCode.CorruptManifest);
    const message = (refused as FloeError).message;
    for (const id of [5, 4, 3]) expect(message).toContain(`checkpoint ${id}: ${metadata(id)}`);
    expect(message.split('\n')).toHaveLength(4);
  });
});
