import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckpointAck, Clock, CoordinatorGateway, QueueSender, TaskAddress } from '../../lib/ports/index.js';
import { ENVELOPE_VERSION, EnvelopeKind, type BarrierInfo, type ChannelEnd, type Envelope, type StreamRecord } from '../../lib/core/envelope.js';
import { keyGroupOf, serializeKey } from '../../lib/graph/key-groups.js';

// Shared fixtures for unit tests of the runtime and its local adapters. Every builder has safe defaults;
// a test overrides only what it is about.

/** A clock that moves only when the test says so. */
export class FakeClock implements Clock {
  constructor(private t = 1_000_000) {}
  now(): number {
    return this.t;
  }
  /** Moves time forward by `ms`. */
  advance(ms: number): void {
    this.t += ms;
  }
  /** Sets the time. */
  set(t: number): void {
    this.t = t;
  }
}

/** A CoordinatorGateway that records every call. */
export class RecordingCoordinator implements CoordinatorGateway {
  readonly acks: CheckpointAck[] = [];
  readonly declines: { checkpointId: number; task: TaskAddress; reason: string }[] = [];
  readonly finishedSources: TaskAddress[] = [];
  async acknowledge(ack: CheckpointAck): Promise<void> {
    this.acks.push(ack);
  }
  async decline(checkpointId: number, task: TaskAddress, reason: string): Promise<void> {
    this.declines.push({ checkpointId, task, reason });
  }
  async sourceFinished(task: TaskAddress): Promise<void> {
    this.finishedSources.push(task);
  }
  readonly failures: { task: TaskAddress; reason: string }[] = [];
  async failTask(task: TaskAddress, reason: string): Promise<void> {
    this.failures.push({ task, reason });
  }
}

/**
 * A QueueSender that records what it is given and then holds the sender until `open()` is called: lets a test stop
 * a task step between "outputs sent" and "control row committed" without sleeping.
 */
export class GatedSender implements QueueSender {
  readonly sent: Envelope[] = [];
  private release!: () => void;
  private readonly gate = new Promise<void>((r) => (this.release = r));
  private signalEntered!: () => void;
  /** Resolves once a send is waiting at the gate. */
  readonly entered = new Promise<void>((r) => (this.signalEntered = r));
  async send(envelopes: readonly Envelope[]): Promise<void> {
    this.sent.push(...envelopes);
    this.signalEntered();
    await this.gate;
  }
  /** Lets waiting and later sends through. */
  open(): void {
    this.release();
  }
}

/** A fresh temporary directory; remove it with `removeTempDir`. */
export async function makeTempDir(prefix = 'floe-unit-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Removes a directory made by `makeTempDir`. */
export async function removeTempDir(dir: string | undefined): Promise<void> {
  if (dir) await rm(dir, { recursive: true, force: true });
}

/** A record on a keyed edge: value, serialized key and key group, as an upstream subtask routes it. */
export function keyedRecord(value: unknown, key: unknown, maxParallelism: number, t?: number): StreamRecord {
  const k = serializeKey(key);
  const g = keyGroupOf(k, maxParallelism);
  return t === undefined ? { v: value, k, g } : { v: value, t, k, g };
}

/** What an envelope builder needs beyond its kind; `from`, `to` and `seq` are required since they are what a test is usually about. */
export interface EnvelopeParts {
  readonly from: ChannelEnd;
  readonly to: ChannelEnd;
  readonly seq: number;
  readonly job?: string;
  readonly gen?: number;
  readonly epoch?: number;
}

function header(p: EnvelopeParts) {
  return { v: ENVELOPE_VERSION, job: p.job ?? 'job', gen: p.gen ?? 1, from: p.from, to: p.to, seq: p.seq, epoch: p.epoch ?? 0 } as const;
}

/** A data envelope. */
export function dataEnvelope(p: EnvelopeParts, records: readonly StreamRecord[]): Envelope {
  return { ...header(p), kind: EnvelopeKind.Data, records };
}

/** A watermark envelope. */
export function watermarkEnvelope(p: EnvelopeParts, watermark: number): Envelope {
  return { ...header(p), kind: EnvelopeKind.Watermark, watermark };
}

/** A barrier envelope (or, with `end`, an end-of-input barrier). */
export function barrierEnvelope(p: EnvelopeParts, barrier: BarrierInfo, end = false): Envelope {
  return { ...header(p), kind: end ? EnvelopeKind.End : EnvelopeKind.Barrier, barrier };
}

/** A checkpoint barrier with its snapshot location under `root`: `<root>/checkpoints/chk-<n>` and a sibling `shared`. */
export function checkpointBarrier(root: string, checkpointId: number, overrides: Partial<BarrierInfo> = {}): BarrierInfo {
  return {
    checkpointId,
    kind: 'checkpoint',
    timestamp: 0,
    location: `${root}/checkpoints/chk-${checkpointId}`,
    sharedLocation: `${root}/checkpoints/shared`,
    ...overrides,
  };
}
