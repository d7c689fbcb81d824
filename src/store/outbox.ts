/**
 * The outbox: the store's durable queue of what it owes the cloud (replies, store events, announcements). Events are
 * appended while Service Bus may be unreachable, and sent in order, oldest first, once it is; an event leaves the
 * outbox only when the cloud side acknowledged it, so a crash between send and acknowledgement resends it (the
 * event id becomes the message id, and Service Bus duplicate detection drops the resend).
 */
import type { Logger } from '../core/logger.js';
import { StorelinkError } from '../core/errors.js';
import { storeMessageSchema, type StoreMessage } from '../core/storeMessage.js';
import { validate } from '../core/validation.js';
import { SegmentedStore, checkDirectory, checkLogger, checkOptionFields, checkSegmentSize, describeValue, frozenJsonCopy, type Segment } from './segmentedStore.js';

/** An event waiting in the outbox: a store message for the cloud inbox. */
export type OutboxEvent = StoreMessage;

export interface OutboxOptions {
  directory: string;
  /** Events per segment file; a write rewrites at most one segment per segment touched. Default 1000. */
  segmentSize?: number;
  logger?: Logger;
}

export interface Outbox {
  /**
   * Adds an event after every other one; resolves once it is on disk. Appending an id that is still in the outbox
   * adds nothing (the first event stays) and resolves once that one is on disk.
   */
  append(event: OutboxEvent): Promise<void>;
  /** Up to `limit` events not yet acknowledged, oldest first (frozen copies). */
  peek(limit: number): OutboxEvent[];
  /** Removes events for good: peek() stops returning them at once; resolves once the removal is on disk. Unknown ids are ignored. */
  acknowledge(ids: readonly string[]): Promise<void>;
  /** Events not yet acknowledged. */
  readonly size: number;
  /** Segment files written since open: one write serves every change made while the previous one was running. */
  readonly writes: number;
  /** Waits for pending writes, then releases the files. Idempotent; `append()` and `acknowledge()` reject afterwards. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const OPTION_FIELDS: ReadonlySet<string> = new Set(['directory', 'segmentSize', 'logger']);

class SegmentedOutbox implements Outbox {
  readonly #store: SegmentedStore<OutboxEvent>;
  readonly #logger: Logger;
  /** Where each pending event is, to acknowledge it without scanning the whole outbox. */
  readonly #segmentOf = new Map<string, Segment<OutboxEvent>>();

  constructor(store: SegmentedStore<OutboxEvent>, logger: Logger) {
    this.#store = store;
    this.#logger = logger;
    for (const segment of store.segments) {
      for (const event of segment.records) {
        const other = this.#segmentOf.get(event.id);
        if (other !== undefined) {
          // Acknowledging by id could not tell the two apart; the files were edited or merged by hand.
          throw new StorelinkError(
            'FILE_UNREADABLE',
            `outbox event id ${event.id} appears twice, in ${other.file} and ${segment.file}; remove one of them by hand`,
          );
        }
        this.#segmentOf.set(event.id, segment);
      }
    }
  }

  get size(): number {
    return this.#segmentOf.size;
  }

  get writes(): number {
    return this.#store.writes;
  }

  async append(event: OutboxEvent): Promise<void> {
    const checked = validate(storeMessageSchema, event);
    if (!checked.success) throw new TypeError(`outbox event${checked.problem}`);
    this.#assertOpen('append');
    if (this.#segmentOf.has(event.id)) {
      this.#logger.debug({ eventId: event.id }, 'outbox already holds this event; keeping the first');
      await this.#store.commit();
      return;
    }
    // The parsed event has the schema's field order, so the files read the same whatever order the caller used.
    const stored = frozenJsonCopy(checked.data);
    this.#segmentOf.set(stored.id, this.#store.append(stored));
    await this.#store.commit();
  }

  peek(limit: number): OutboxEvent[] {
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0) {
      throw new RangeError(`outbox.peek(limit) takes a whole number of events, 0 or more, got ${describeValue(limit)}`);
    }
    const events: OutboxEvent[] = [];
    for (const segment of this.#store.segments) {
      for (const event of segment.records) {
        if (events.length >= limit) return events;
        events.push(event);
      }
    }
    return events;
  }

  async acknowledge(ids: readonly string[]): Promise<void> {
    const untrusted: unknown = ids;
    if (!Array.isArray(untrusted) || untrusted.some((id) => typeof id !== 'string')) {
      throw new TypeError(`outbox.acknowledge(ids) takes an array of event id strings, got ${describeValue(ids)}`);
    }
    this.#assertOpen('acknowledge');
    const bySegment = new Map<Segment<OutboxEvent>, Set<string>>();
    for (const id of ids) {
      const segment = this.#segmentOf.get(id);
      if (segment === undefined) continue;
      this.#segmentOf.delete(id);
      let set = bySegment.get(segment);
      if (set === undefined) bySegment.set(segment, (set = new Set()));
      set.add(id);
    }
    for (const [segment, acknowledged] of bySegment) this.#store.removeRecords(segment, (event) => acknowledged.has(event.id));
    // Also when nothing was removed here: the same ids may have been acknowledged by a call whose write is pending.
    await this.#store.commit();
  }

  close(): Promise<void> {
    return this.#store.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #assertOpen(method: string): void {
    if (this.#store.closed) throw new StorelinkError('STORE_UNAVAILABLE', `the outbox is closed: ${method}() is not possible after close()`);
  }
}

/** Opens (creating if needed) the outbox in `options.directory`, with every event not yet acknowledged. */
export async function openOutbox(options: OutboxOptions): Promise<Outbox> {
  const fields = checkOptionFields(options, 'OutboxOptions', OPTION_FIELDS);
  const directory = checkDirectory(fields.directory, 'OutboxOptions');
  const segmentSize = checkSegmentSize(fields.segmentSize, 'OutboxOptions');
  const logger = checkLogger(fields.logger, 'OutboxOptions').child({ component: 'outbox' });
  const store = await SegmentedStore.open<OutboxEvent>({ directory, kind: 'outbox', segmentSize, recordSchema: storeMessageSchema, logger });
  try {
    return new SegmentedOutbox(store, logger);
  } catch (error) {
    await store.close().catch(() => undefined);
    throw error;
  }
}
