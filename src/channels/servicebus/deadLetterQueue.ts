/**
 * Tooling over a queue's dead-letter queue: list and show by peeking (no locks taken), and resubmit messages to the
 * queue they came from. Resubmitting sends a copy with the original messageId (the store's idempotency key) and
 * completes the dead-lettered original only once that send succeeded, so a failure leaves the original in place.
 */
import type { ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusReceiver } from '@azure/service-bus';
import { parseConnectionString } from '../../core/connectionString.js';
import { StorelinkError } from '../../core/errors.js';
import { parseOperation } from '../../core/operation.js';
import { createSdkClient, networkOptionsOf, receivedMessageOf, stringOrUndefined, type RetrySettings, type ServiceBusNetworkOptions } from './serviceBusConnection.js';
import { toStorelinkError } from './serviceBusErrors.js';

export interface DeadLetterQueueOptions extends ServiceBusNetworkOptions {
  connectionString: string;
  /** The queue whose dead-letter queue this is, e.g. `store-paris-1`. */
  queue: string;
  retry?: Partial<RetrySettings>;
  /** Largest number of dead-lettered messages looked at to find the ones `show` and `resubmit` select; default 10 000. */
  scanLimit?: number;
  /** The queue's duplicate detection window, used to warn about resubmits Service Bus may drop; default 10 minutes. */
  duplicateDetectionWindowInMs?: number;
  /** The clock resubmits are judged by against that window, in ms since the epoch (tests inject one). Default `Date.now`. */
  now?: () => number;
}

/** What the body says, when it parses as an operation envelope. */
export interface DeadLetteredOperationSummary {
  id: string;
  type: string;
  storeId: string;
  expiresAt: string;
}

export interface DeadLetteredMessage {
  /** The message's sequence number in the dead-letter queue, as a decimal string (it is a 64-bit integer). */
  sequenceNumber: string;
  messageId: string | undefined;
  enqueuedAt: Date | undefined;
  /**
   * Deliveries Service Bus counted, 1 for a message dead-lettered on its first delivery (as in serviceBusConnection).
   * A resubmit that had to lock this message to reach others behind it adds one.
   */
  deliveryCount: number;
  /** `DeadLetterReason`: an error code from the store, or Service Bus's own (`MaxDeliveryCountExceeded`, …). */
  reason: string | undefined;
  description: string | undefined;
  /** Undefined when the body is not a valid operation envelope. */
  operation: DeadLetteredOperationSummary | undefined;
  body: unknown;
  applicationProperties: Record<string, unknown>;
}

export interface ListDeadLettersOptions {
  /** Most messages returned, oldest first; default 100. */
  limit?: number;
  abortSignal?: AbortSignal;
}

/** Which dead-lettered messages to resubmit. Each id matches a sequence number or, failing that, a messageId. */
export type DeadLetterSelector = { ids: readonly string[] } | { all: true } | { reason: string };

export interface ResubmittedMessage {
  message: DeadLetteredMessage;
  /**
   * The original was enqueued less than the duplicate detection window ago: if the queue has duplicate detection on,
   * Service Bus accepts the copy but silently drops it, since it keeps the original messageId.
   */
  mayBeDroppedAsDuplicate: boolean;
}

export interface FailedResubmit {
  message: DeadLetteredMessage;
  /** True when the copy reached the queue but the original could not be removed from the dead-letter queue. */
  sent: boolean;
  error: StorelinkError;
}

export interface ResubmitResult {
  resubmitted: ResubmittedMessage[];
  failed: FailedResubmit[];
  /** Ids that matched nothing, and sequence numbers that were gone or locked by another receiver when searched for. */
  notFound: string[];
}

export interface DeadLetterQueue extends AsyncDisposable {
  readonly queue: string;
  list(options?: ListDeadLettersOptions): Promise<DeadLetteredMessage[]>;
  /** The message with this sequence number, else the first with this messageId; undefined if none. */
  show(sequenceNumberOrMessageId: string, options?: { abortSignal?: AbortSignal }): Promise<DeadLetteredMessage | undefined>;
  resubmit(selector: DeadLetterSelector, options?: { abortSignal?: AbortSignal }): Promise<ResubmitResult>;
  /** Idempotent. */
  close(): Promise<void>;
}

export function createDeadLetterQueue(options: DeadLetterQueueOptions): DeadLetterQueue {
  return new SdkDeadLetterQueue(options);
}

const PAGE_SIZE = 100;
/** How long one resubmit receive waits for messages that peek saw but that do not arrive (locked elsewhere, gone). */
const RECEIVE_WAIT_IN_MS = 2_000;
/** Set by Service Bus when it dead-letters; not part of the message that goes back. */
const DEAD_LETTER_PROPERTIES = new Set(['DeadLetterReason', 'DeadLetterErrorDescription', 'DeadLetterSource']);

type SdkLong = NonNullable<ServiceBusReceivedMessage['sequenceNumber']>;

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

function summaryOf(body: unknown): DeadLetteredOperationSummary | undefined {
  const parsed = parseOperation(body);
  if (!parsed.success) return undefined;
  const { id, type, storeId, expiresAt } = parsed.data;
  return { id, type, storeId, expiresAt };
}

function fromSdkMessage(message: ServiceBusReceivedMessage): DeadLetteredMessage {
  const { messageId, enqueuedAt, deliveryCount, body, applicationProperties } = receivedMessageOf(message);
  return {
    sequenceNumber: message.sequenceNumber?.toString() ?? '',
    messageId,
    enqueuedAt,
    deliveryCount,
    reason: stringOrUndefined(message.deadLetterReason),
    description: stringOrUndefined(message.deadLetterErrorDescription),
    operation: summaryOf(body),
    body,
    applicationProperties,
  };
}

/** The copy that goes back: same id, body and properties, without what Service Bus added when dead-lettering. */
function resubmissionOf(message: ServiceBusReceivedMessage): ServiceBusMessage {
  const applicationProperties = Object.fromEntries(
    Object.entries(message.applicationProperties ?? {}).filter(([key]) => !DEAD_LETTER_PROPERTIES.has(key)),
  ) as ServiceBusMessage['applicationProperties'];
  const body: unknown = message.body;
  const copy: ServiceBusMessage = { body, applicationProperties };
  if (message.messageId !== undefined) copy.messageId = message.messageId;
  if (message.contentType !== undefined) copy.contentType = message.contentType;
  if (message.correlationId !== undefined) copy.correlationId = message.correlationId;
  if (message.subject !== undefined) copy.subject = message.subject;
  if (message.replyTo !== undefined) copy.replyTo = message.replyTo;
  if (message.replyToSessionId !== undefined) copy.replyToSessionId = message.replyToSessionId;
  if (message.sessionId !== undefined) copy.sessionId = message.sessionId;
  if (message.partitionKey !== undefined) copy.partitionKey = message.partitionKey;
  if (message.to !== undefined) copy.to = message.to;
  if (message.timeToLive !== undefined) copy.timeToLive = message.timeToLive;
  return copy;
}

function selects(selector: DeadLetterSelector, message: DeadLetteredMessage): boolean {
  if ('all' in selector) return true;
  if ('reason' in selector) return message.reason === selector.reason;
  return false;
}

class SdkDeadLetterQueue implements DeadLetterQueue {
  readonly queue: string;
  readonly #client: ServiceBusClient;
  readonly #scanLimit: number;
  readonly #duplicateWindowInMs: number;
  readonly #now: () => number;
  /**
   * The SDK takes peek start points as `Long`, and without one continues from a position it keeps per entity and
   * client, shared by every receiver and every concurrent call: a second `list()` would carry on where the first
   * stopped, and a `show()` during a `list()` would move its pages. So every peek names its start point. storelink does
   * not depend on the `long` package: start points are derived from a sequence number the SDK returned. Until one
   * was returned the SDK's position is still at its start, so the first peek may omit it; peeks run one at a time so
   * that stays true.
   */
  #longTemplate: SdkLong | undefined;
  #peeking: Promise<unknown> = Promise.resolve();
  #peeker: ServiceBusReceiver | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: DeadLetterQueueOptions) {
    parseConnectionString(options.connectionString);
    if (typeof options.queue !== 'string' || options.queue.length === 0) throw new TypeError('queue must name the queue whose dead-letter queue to use');
    this.queue = options.queue;
    this.#scanLimit = positiveInteger('scanLimit', options.scanLimit ?? 10_000);
    this.#duplicateWindowInMs = options.duplicateDetectionWindowInMs ?? 10 * 60_000;
    if (options.now !== undefined && typeof options.now !== 'function') {
      throw new TypeError('createDeadLetterQueue: now must be a function returning ms since the epoch');
    }
    this.#now = options.now ?? Date.now;
    this.#client = createSdkClient(options.connectionString, {
      ...networkOptionsOf(options),
      ...(options.retry === undefined ? {} : { retry: options.retry }),
    });
  }

  #assertOpen(): void {
    if (this.#closing !== undefined) throw new StorelinkError('SERVICE_BUS_UNAVAILABLE', 'the dead-letter queue is closed', { retryable: false });
  }

  /** Peeks `count` messages from sequence number `from` (from the oldest if `from` is `'1'`), one call at a time. */
  #peek(count: number, from: SdkLong | string, abortSignal: AbortSignal | undefined): Promise<ServiceBusReceivedMessage[]> {
    const run = this.#peeking.then(() => this.#peekNow(count, from, abortSignal));
    this.#peeking = run.catch(() => undefined);
    return run;
  }

  async #peekNow(count: number, from: SdkLong | string, abortSignal: AbortSignal | undefined): Promise<ServiceBusReceivedMessage[]> {
    this.#assertOpen();
    this.#peeker ??= this.#client.createReceiver(this.queue, { subQueueType: 'deadLetter', receiveMode: 'peekLock' });
    const fromSequenceNumber = typeof from === 'string' ? this.#longTemplate?.multiply(0).add(from) : from;
    if (fromSequenceNumber === undefined && from !== '1') {
      // No Long to name the start point yet: learn one from the oldest message (the SDK's position is at the start).
      const oldest = await this.#peekNow(1, '1', abortSignal);
      if (oldest.length === 0) return [];
      return this.#peekNow(count, from, abortSignal);
    }
    try {
      const peeked = await this.#peeker.peekMessages(count, {
        ...(fromSequenceNumber === undefined ? {} : { fromSequenceNumber }),
        ...(abortSignal === undefined ? {} : { abortSignal }),
      });
      this.#longTemplate ??= peeked[0]?.sequenceNumber;
      return peeked;
    } catch (error) {
      throw toStorelinkError(error, `peeking the dead-letter queue of ${this.queue}`);
    }
  }

  /** Peeks page by page, oldest first, until `limit` messages or the end; `stop` ends early. */
  async #scan(limit: number, abortSignal: AbortSignal | undefined, stop?: (message: DeadLetteredMessage) => boolean): Promise<DeadLetteredMessage[]> {
    const found: DeadLetteredMessage[] = [];
    let from: SdkLong | string = '1';
    while (found.length < limit) {
      const page = await this.#peek(Math.min(PAGE_SIZE, limit - found.length), from, abortSignal);
      const last = page.at(-1)?.sequenceNumber;
      if (last === undefined) break;
      from = last.add(1);
      for (const sdkMessage of page) {
        const message = fromSdkMessage(sdkMessage);
        found.push(message);
        if (stop?.(message) === true) return found;
      }
    }
    return found;
  }

  list(options: ListDeadLettersOptions = {}): Promise<DeadLetteredMessage[]> {
    const limit = positiveInteger('limit', options.limit ?? 100);
    return this.#scan(limit, options.abortSignal);
  }

  async show(sequenceNumberOrMessageId: string, options: { abortSignal?: AbortSignal } = {}): Promise<DeadLetteredMessage | undefined> {
    const wanted = String(sequenceNumberOrMessageId);
    if (/^\d{1,19}$/.test(wanted)) {
      const [first] = await this.#peek(1, wanted, options.abortSignal);
      if (first !== undefined && first.sequenceNumber?.toString() === wanted) return fromSdkMessage(first);
    }
    const scanned = await this.#scan(this.#scanLimit, options.abortSignal, (message) => message.messageId === wanted);
    const last = scanned.at(-1);
    return last?.messageId === wanted ? last : undefined;
  }

  async resubmit(selector: DeadLetterSelector, options: { abortSignal?: AbortSignal } = {}): Promise<ResubmitResult> {
    const ids = 'ids' in selector ? [...new Set(selector.ids.map(String))] : undefined;
    if (ids !== undefined && ids.length === 0) throw new TypeError('resubmit: give at least one sequence number or messageId');
    if ('reason' in selector && (typeof selector.reason !== 'string' || selector.reason.length === 0)) {
      throw new TypeError('resubmit: reason must be a non-empty dead-letter reason');
    }
    const abortSignal = options.abortSignal;
    const snapshot = await this.#scan(this.#scanLimit, abortSignal);
    const result: ResubmitResult = { resubmitted: [], failed: [], notFound: [] };
    const targets = new Map<string, DeadLetteredMessage>();
    if (ids === undefined) {
      for (const message of snapshot) if (selects(selector, message)) targets.set(message.sequenceNumber, message);
    } else {
      for (const id of ids) {
        const bySequence = snapshot.find((message) => message.sequenceNumber === id);
        const matches = bySequence === undefined ? snapshot.filter((message) => message.messageId === id) : [bySequence];
        if (matches.length === 0) result.notFound.push(id);
        for (const message of matches) targets.set(message.sequenceNumber, message);
      }
    }
    if (targets.size === 0) return result;
    await this.#move(snapshot, targets, result, abortSignal);
    return result;
  }

  /**
   * Receives the dead-letter queue in peek-lock, oldest first, until every target has been seen. Locks on the others
   * are held until the end (so they are not received again) and then released; a target is sent back and only then
   * completed. Bounded by the snapshot: at most as many messages as it held are received.
   */
  async #move(snapshot: DeadLetteredMessage[], targets: Map<string, DeadLetteredMessage>, result: ResubmitResult, abortSignal: AbortSignal | undefined) {
    this.#assertOpen();
    const receiver = this.#client.createReceiver(this.queue, { subQueueType: 'deadLetter', receiveMode: 'peekLock' });
    const sender = this.#client.createSender(this.queue);
    const held: ServiceBusReceivedMessage[] = [];
    const pending = new Map(targets);
    const lastTargetIndex = snapshot.reduce((last, message, index) => (targets.has(message.sequenceNumber) ? index : last), -1);
    let received = 0;
    let stopped: StorelinkError | undefined;
    try {
      while (pending.size > 0 && received <= lastTargetIndex && stopped === undefined) {
        let batch: ServiceBusReceivedMessage[];
        try {
          batch = await receiver.receiveMessages(Math.min(PAGE_SIZE, lastTargetIndex + 1 - received), {
            maxWaitTimeInMs: RECEIVE_WAIT_IN_MS,
            ...(abortSignal === undefined ? {} : { abortSignal }),
          });
        } catch (error) {
          stopped = toStorelinkError(error, `receiving from the dead-letter queue of ${this.queue}`);
          break;
        }
        if (batch.length === 0) break;
        received += batch.length;
        for (const sdkMessage of batch) {
          const sequenceNumber = sdkMessage.sequenceNumber?.toString() ?? '';
          const target = pending.get(sequenceNumber);
          if (target === undefined || stopped !== undefined) {
            held.push(sdkMessage);
            continue;
          }
          pending.delete(sequenceNumber);
          try {
            await sender.sendMessages(resubmissionOf(sdkMessage), abortSignal === undefined ? {} : { abortSignal });
          } catch (error) {
            stopped = toStorelinkError(error, `sending message ${target.messageId ?? sequenceNumber} back to ${this.queue}`);
            result.failed.push({ message: target, sent: false, error: stopped });
            held.push(sdkMessage);
            continue;
          }
          try {
            await receiver.completeMessage(sdkMessage);
          } catch (error) {
            const failure = toStorelinkError(error, `removing message ${target.messageId ?? sequenceNumber} from the dead-letter queue of ${this.queue}`);
            result.failed.push({ message: target, sent: true, error: failure });
            continue;
          }
          const enqueuedAt = target.enqueuedAt?.getTime();
          result.resubmitted.push({
            message: target,
            mayBeDroppedAsDuplicate: enqueuedAt === undefined || this.#now() - enqueuedAt < this.#duplicateWindowInMs,
          });
        }
      }
    } finally {
      // Released now rather than when their locks lapse, so the store's tooling and other readers see them at once.
      await Promise.allSettled(held.map((message) => receiver.abandonMessage(message)));
      await Promise.allSettled([receiver.close(), sender.close()]);
    }
    for (const [sequenceNumber, message] of pending) {
      if (stopped === undefined) result.notFound.push(sequenceNumber);
      else result.failed.push({ message, sent: false, error: stopped });
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#peeker?.close().catch(() => undefined);
      await this.#client.close();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
