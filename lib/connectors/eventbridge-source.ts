import type { SourceConnector } from '../api/connector.js';
import { feedQueueEnvName } from '../api/connector-resources.js';
import { ErrorCode, FloeError } from '../core/errors.js';
import { sqsSource, type SqsSourceOptions } from './sqs-source.js';

/** An event as EventBridge delivers it to a queue. */
export interface EventBridgeEvent<D = unknown> {
  readonly id: string;
  readonly 'detail-type': string;
  readonly source: string;
  readonly account: string;
  /** ISO 8601, e.g. `2026-12-07T18:00:00Z`. */
  readonly time: string;
  readonly region: string;
  readonly resources: readonly string[];
  readonly detail: D;
}

/** Options of the EventBridge source: SQS source options, but the queue is the source's own. */
export interface EventBridgeSourceOptions<T> extends Omit<SqsSourceOptions<T>, 'queueUrl' | 'resolveQueueUrl' | 'parse' | 'dedupKey'> {
  /** The rule's event pattern, e.g. `{ source: ['shop'], 'detail-type': ['order'] }`. */
  readonly pattern: Readonly<Record<string, unknown>>;
  /** The event bus's name or ARN. @default 'default' */
  readonly eventBus?: string;
  /**
   * A queue you already route the events to. Without it, the deployment (FloeJob, or emulator mode) creates a queue
   * with a dead-letter queue and a rule on `eventBus` with `pattern` targeting it.
   */
  readonly queueUrl?: string;
  /** Turns an event into a record; one it throws on goes to the dead-letter queue. @default the event */
  readonly parse?: (event: EventBridgeEvent) => T;
}

/** Reads an event from a message body; throws on anything else. */
function eventOf(body: string): EventBridgeEvent {
  const event = JSON.parse(body) as EventBridgeEvent;
  if (typeof event !== 'object' || event === null || typeof event.id !== 'string') throw new Error('not an EventBridge event (no id)');
  return event;
}

/**
 * The events that match a rule's pattern, exactly once: EventBridge delivers them to a queue, which an SQS source
 * reads with everything it guarantees (deleted after the checkpoint that covers them, copies dropped). EventBridge
 * delivers at least once, and a copy it sends is another message, so copies are recognized by the event's `id`.
 */
export function eventBridgeSource<T = EventBridgeEvent>(options: EventBridgeSourceOptions<T>): SourceConnector<T> {
  const { pattern, eventBus = 'default', queueUrl, parse, ...rest } = options;
  let uid: string | undefined;
  const resolveQueueUrl = () => {
    const name = feedQueueEnvName(uid ?? '');
    const url = process.env[name];
    if (!url) {
      throw new FloeError(
        ErrorCode.InvalidJob,
        `eventbridge source '${uid}': no queue: a deployment (FloeJob) or emulator mode (floe run --aws-endpoint) creates it and sets ${name}; elsewhere give eventBridgeSource({ queueUrl })`,
      );
    }
    return url;
  };
  const inner = sqsSource<T>({
    ...rest,
    queueUrl: queueUrl ?? `(the queue of the eventbridge source on ${eventBus})`,
    ...(queueUrl === undefined ? { resolveQueueUrl } : {}),
    parse: (body) => {
      const event = eventOf(body);
      return parse ? parse(event) : (event as unknown as T);
    },
    dedupKey: (body) => eventOf(body).id,
  });
  return {
    ...inner,
    type: 'eventbridge',
    ...(queueUrl === undefined ? { feed: { kind: 'eventbridge' as const, bus: eventBus, pattern } } : {}),
    expand(raw: unknown, sourceUid: string | undefined): unknown {
      uid = sourceUid;
      return inner.expand!(raw, sourceUid);
    },
  };
}
