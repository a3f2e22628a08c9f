import { createHash } from 'node:crypto';
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand, type KinesisClient, type Shard, type _Record } from '@aws-sdk/client-kinesis';

// An in-process Kinesis data stream with the service's resharding semantics, for what moto 5.2.5 does not model: a
// split or merged shard is closed (it takes no more records, and reading it to its end returns no next iterator and
// its child shards), records go to the open shard whose hash key range holds the key's MD5, and sequence numbers
// are large and increase across the stream. Only the calls the Kinesis source makes are served.

const HASH_MAX = (1n << 128n) - 1n;
const SEQ_BASE = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898n;

interface FakeShard {
  readonly id: string;
  readonly start: bigint;
  readonly end: bigint;
  readonly parent?: string;
  readonly adjacentParent?: string;
  readonly records: _Record[];
  open: boolean;
}

/** Knobs for faults a real stream shows: short and empty GetRecords responses. */
export interface FakeKinesisOptions {
  /** Records a GetRecords call returns at most, whatever its Limit (Kinesis returns fewer than asked at its size limits). @default no limit */
  readonly maxPerCall?: number;
  /** Every n-th GetRecords call returns no records and MillisBehindLatest > 0, without moving (as Kinesis does while it catches up). @default never */
  readonly emptyEvery?: number;
  /** Shards per ListShards page. @default 2 */
  readonly pageSize?: number;
}

export class FakeKinesis {
  readonly shards: FakeShard[] = [];
  readonly calls = { ListShards: 0, GetShardIterator: 0, GetRecords: 0 };
  private seq = 0n;
  private nextShard = 0;

  constructor(
    readonly name: string,
    shardCount: number,
    private readonly options: FakeKinesisOptions = {},
  ) {
    const step = (HASH_MAX + 1n) / BigInt(shardCount);
    for (let i = 0; i < shardCount; i++) this.addShard(BigInt(i) * step, i === shardCount - 1 ? HASH_MAX : BigInt(i + 1) * step - 1n);
  }

  get arn(): string {
    return `arn:aws:kinesis:us-east-1:123456789012:stream/${this.name}`;
  }

  /** The client the source talks to. */
  get client(): KinesisClient {
    return { send: (command: unknown) => this.send(command) } as unknown as KinesisClient;
  }

  /** The open shard a partition key goes to. */
  shardFor(partitionKey: string): FakeShard {
    const hash = BigInt(`0x${createHash('md5').update(partitionKey).digest('hex')}`);
    return this.shards.find((s) => s.open && s.start <= hash && hash <= s.end)!;
  }

  put(partitionKey: string, data: string, arrival = Date.now()): string {
    this.seq += 1n;
    const SequenceNumber = String(SEQ_BASE + this.seq * 1000n);
    this.shardFor(partitionKey).records.push({ SequenceNumber, PartitionKey: partitionKey, Data: new TextEncoder().encode(data), ApproximateArrivalTimestamp: new Date(arrival) });
    return SequenceNumber;
  }

  /** Splits an open shard at the middle of its range; returns the children's ids. */
  split(shardId: string): [string, string] {
    const p = this.open(shardId);
    p.open = false;
    const mid = (p.start + p.end + 1n) / 2n;
    return [this.addShard(p.start, mid - 1n, p.id).id, this.addShard(mid, p.end, p.id).id];
  }

  /** Merges two adjacent open shards (`shardId` becomes the child's ParentShardId, `adjacent` its AdjacentParentShardId). */
  merge(shardId: string, adjacent: string): string {
    const a = this.open(shardId);
    const b = this.open(adjacent);
    if (a.end + 1n !== b.start && b.end + 1n !== a.start) throw new Error(`${shardId} and ${adjacent} are not adjacent`);
    a.open = false;
    b.open = false;
    return this.addShard(a.start < b.start ? a.start : b.start, a.end > b.end ? a.end : b.end, a.id, b.id).id;
  }

  private open(id: string): FakeShard {
    const s = this.shards.find((x) => x.id === id);
    if (!s?.open) throw new Error(`no open shard ${id}`);
    return s;
  }

  private addShard(start: bigint, end: bigint, parent?: string, adjacentParent?: string): FakeShard {
    const s: FakeShard = { id: `shardId-${String(this.nextShard++).padStart(12, '0')}`, start, end, records: [], open: true, ...(parent ? { parent } : {}), ...(adjacentParent ? { adjacentParent } : {}) };
    this.shards.push(s);
    return s;
  }

  private shard(id: string | undefined): FakeShard {
    const s = this.shards.find((x) => x.id === id);
    if (!s) throw Object.assign(new Error(`Shard ${id} does not exist`), { name: 'ResourceNotFoundException' });
    return s;
  }

  private checkStream(input: { StreamName?: string; StreamARN?: string }): void {
    if (input.StreamName !== undefined ? input.StreamName !== this.name : input.StreamARN !== this.arn) {
      throw Object.assign(new Error(`Stream ${input.StreamName ?? input.StreamARN} not found`), { name: 'ResourceNotFoundException' });
    }
  }

  private toShard(s: FakeShard): Shard {
    return {
      ShardId: s.id,
      ...(s.parent ? { ParentShardId: s.parent } : {}),
      ...(s.adjacentParent ? { AdjacentParentShardId: s.adjacentParent } : {}),
      HashKeyRange: { StartingHashKey: String(s.start), EndingHashKey: String(s.end) },
      SequenceNumberRange: { StartingSequenceNumber: s.records[0]?.SequenceNumber ?? String(SEQ_BASE), ...(s.open ? {} : { EndingSequenceNumber: s.records.at(-1)?.SequenceNumber ?? String(SEQ_BASE) }) },
    };
  }

  private iterator(shard: string, index: number): string {
    return Buffer.from(JSON.stringify({ shard, index })).toString('base64');
  }

  private async send(command: unknown): Promise<unknown> {
    await Promise.resolve();
    if (command instanceof ListShardsCommand) {
      this.calls.ListShards++;
      const input = command.input;
      if (input.NextToken !== undefined && (input.StreamName !== undefined || input.StreamARN !== undefined)) {
        throw Object.assign(new Error('NextToken and StreamName cannot be provided together'), { name: 'InvalidArgumentException' });
      }
      const from = input.NextToken !== undefined ? Number(input.NextToken) : (this.checkStream(input), 0);
      const size = this.options.pageSize ?? 2;
      const page = this.shards.slice(from, from + size).map((s) => this.toShard(s));
      return { Shards: page, ...(from + size < this.shards.length ? { NextToken: String(from + size) } : {}) };
    }
    if (command instanceof GetShardIteratorCommand) {
      this.calls.GetShardIterator++;
      const input = command.input;
      this.checkStream(input);
      const s = this.shard(input.ShardId);
      const bySeq = (pred: (seq: bigint) => boolean) => {
        const i = s.records.findIndex((r) => pred(BigInt(r.SequenceNumber!)));
        return i === -1 ? s.records.length : i;
      };
      let index: number;
      switch (input.ShardIteratorType) {
        case 'TRIM_HORIZON':
          index = 0;
          break;
        case 'LATEST':
          index = s.records.length;
          break;
        case 'AT_TIMESTAMP': {
          const at = (input.Timestamp as Date).getTime();
          const i = s.records.findIndex((r) => r.ApproximateArrivalTimestamp!.getTime() >= at);
          index = i === -1 ? s.records.length : i;
          break;
        }
        case 'AFTER_SEQUENCE_NUMBER':
          index = bySeq((q) => q > BigInt(input.StartingSequenceNumber!));
          break;
        case 'AT_SEQUENCE_NUMBER':
          index = bySeq((q) => q >= BigInt(input.StartingSequenceNumber!));
          break;
        default:
          throw Object.assign(new Error(`bad iterator type ${input.ShardIteratorType}`), { name: 'InvalidArgumentException' });
      }
      return { ShardIterator: this.iterator(s.id, index) };
    }
    if (command instanceof GetRecordsCommand) {
      const n = ++this.calls.GetRecords;
      const { shard, index } = JSON.parse(Buffer.from(command.input.ShardIterator!, 'base64').toString()) as { shard: string; index: number };
      const s = this.shard(shard);
      if (this.options.emptyEvery !== undefined && n % this.options.emptyEvery === 0 && index < s.records.length) {
        return { Records: [], NextShardIterator: this.iterator(shard, index), MillisBehindLatest: 1000 };
      }
      const limit = Math.min(command.input.Limit ?? 10_000, this.options.maxPerCall ?? Infinity);
      const records = s.records.slice(index, index + limit);
      const next = index + records.length;
      if (!s.open && next >= s.records.length) {
        const children = this.shards.filter((c) => c.parent === s.id || c.adjacentParent === s.id);
        return {
          Records: records,
          MillisBehindLatest: 0,
          ChildShards: children.map((c) => ({ ShardId: c.id, ParentShards: [c.parent!, ...(c.adjacentParent ? [c.adjacentParent] : [])], HashKeyRange: this.toShard(c).HashKeyRange })),
        };
      }
      return { Records: records, NextShardIterator: this.iterator(shard, next), MillisBehindLatest: next < s.records.length ? 1000 : 0 };
    }
    throw new Error(`the fake Kinesis stream does not serve ${(command as object).constructor.name}`);
  }
}
