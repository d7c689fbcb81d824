/**
 * The outbox: the store's durable queue of what it owes the cloud (replies, store events, announcements). Events are
 * appended while Service Bus may be unreachable, and sent in order, oldest first, once it is; an event leaves the
 * outbox only when the cloud side acknowledged it, so a crash between send and acknowledgement resends it (the
 * event id becomes the message id, and Service Bus duplicate detection drops the resend).
 *
 * Two exceptions to "oldest first", so that nothing can hold the rest up:
 * - an announcement (the relay's state) is newest-wins: a newer one replaces the one not yet sent, and the pending
 *   announcement is sent before everything else;
 * - an event that can never be sent (the flusher decides) is parked: moved to `parked-*.json` files beside the outbox
 *   files, where it waits for someone to resubmit or discard it.
 *
 * An id is never both pending and parked once the outbox is open: moves write the new place before clearing the old
 * one, and a crash between the two is settled at open in favour of pending (sending again is harmless; losing is not).
 */
import { z } from 'zod';
import type { Logger } from '../core/logger.js';
import { StorelinkError } from '../core/errors.js';
import { storeMessageSchema, type StoreMessage } from '../core/storeMessage.js';
import { nonEmptyStringSchema, strictFields, timestampSchema, validate } from '../core/validation.js';
import { SegmentedStore, checkDirectory, checkLogger, checkOptionFields, checkSegmentSize, describeValue, frozenJsonCopy, type Segment } from './segmentedStore.js';

/** An event waiting in the outbox: a store message for the cloud inbox. */
export type OutboxEvent = StoreMessage;

/** An event set aside because it could not be sent, with why. */
export const parkedEventSchema = strictFields({
  event: storeMessageSchema,
  /** The error code of the failed send, e.g. PAYLOAD_TOO_LARGE. */
  code: nonEmptyStringSchema,
  message: z.string({ error: 'must be a string' }),
  parkedAt: timestampSchema,
});

export type ParkedEvent = z.infer<typeof parkedEventSchema>;

/** Why the flusher parks an event. */
export interface ParkReason {
  code: string;
  message: string;
}

export interface AppendOptions {
  /**
   * Keep the event back from `peek()` for this long (ms, whole, positive): a relay answer's reply, which the cloud may
   * confirm meanwhile (acknowledgeHeldReplies). The hold lives in memory only: after a restart the event is sent.
   */
  holdForInMs?: number;
}

export interface OutboxOptions {
  directory: string;
  /**
   * Events per segment file (records written, acknowledged or not); an acknowledgement appends a line to each segment
   * it touches. Default 1000.
   */
  segmentSize?: number;
  /** Dates parked events, in ms since the epoch. Default `Date.now`. */
  now?: () => number;
  logger?: Logger;
}

export interface Outbox {
  /**
   * Adds an event after every other one; resolves once it is on disk. Appending an id that is still in the outbox
   * adds nothing (the first event stays) and resolves once that one is on disk. An announcement replaces the pending
   * one (if any) unless that one is dated later, in which case the older newcomer is dropped.
   */
  append(event: OutboxEvent, options?: AppendOptions): Promise<void>;
  /**
   * Up to `limit` events not yet acknowledged and not held back: the pending announcement first, then the others
   * oldest first (frozen copies).
   */
  peek(limit: number): OutboxEvent[];
  /** How long until the next held event may be sent, in ms (0 when one may be sent now); undefined when none is held. */
  nextReleaseInMs(): number | undefined;
  /**
   * Removes the held replies to these operations for good (the cloud confirmed it has their outcomes), as long as they
   * are still in the outbox; resolves with how many went, once the removal is on disk. Other events are never touched.
   */
  acknowledgeHeldReplies(operationIds: readonly string[]): Promise<number>;
  /** Removes events for good: peek() stops returning them at once; resolves once the removal is on disk. Unknown ids are ignored. */
  acknowledge(ids: readonly string[]): Promise<void>;
  /**
   * Moves a pending event to the parked area with the reason; resolves with the parked record once the move is on
   * disk, or undefined when no such event is pending.
   */
  park(id: string, reason: ParkReason): Promise<ParkedEvent | undefined>;
  /** The parked events, in the order they were parked (frozen copies). */
  parked(): ParkedEvent[];
  /**
   * Moves a parked event back to the end of the pending ones. Resolves `resubmitted`, `superseded` (an announcement
   * older than the pending one: dropped instead), or undefined when no such event is parked.
   */
  resubmit(id: string): Promise<'resubmitted' | 'superseded' | undefined>;
  /** Deletes a parked event for good; resolves whether there was one. */
  discard(id: string): Promise<boolean>;
  /** Events not yet acknowledged (parked ones not included). */
  readonly size: number;
  /** Events parked. */
  readonly parkedSize: number;
  /** Segment files written since open: one write serves every change made while the previous one was running. */
  readonly writes: number;
  /** Waits for pending writes, then releases the files. Idempotent; `append()` and `acknowledge()` reject afterwards. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const OPTION_FIELDS: ReadonlySet<string> = new Set(['directory', 'segmentSize', 'now', 'logger']);

/** Where each record of a store is, by id, to remove one without scanning them all. */
function indexById<T extends object>(store: SegmentedStore<T>, idOf: (record: T) => string, what: string): Map<string, Segment<T>> {
  const segmentOf = new Map<string, Segment<T>>();
  for (const segment of store.segments) {
    for (const record of segment.records) {
      const id = idOf(record);
      const other = segmentOf.get(id);
      if (other !== undefined) {
        // Removing by id could not tell the two apart; the files were edited or merged by hand.
        throw new StorelinkError('FILE_UNREADABLE', `${what} id ${id} appears twice, in ${other.file} and ${segment.file}; remove one of them by hand`);
      }
      segmentOf.set(id, segment);
    }
  }
  return segmentOf;
}

class SegmentedOutbox implements Outbox {
  readonly #store: SegmentedStore<OutboxEvent>;
  readonly #parkedStore: SegmentedStore<ParkedEvent>;
  readonly #now: () => number;
  readonly #logger: Logger;
  /** Where each pending event is, to acknowledge it without scanning the whole outbox. */
  readonly #segmentOf: Map<string, Segment<OutboxEvent>>;
  readonly #parkedSegmentOf: Map<string, Segment<ParkedEvent>>;
  /** The one pending announcement, sent before everything else. */
  #announcement: OutboxEvent | undefined;
  /**
   * Events held back, by id, with when they may go (this outbox's clock), in the order they were held: the holds
   * are all as long, so the first to end is the first in the map.
   */
  readonly #holds = new Map<string, number>();
  /** Replies appended with a hold and still in the outbox, by the operation they answer (their correlation id). */
  readonly #heldReplyOf = new Map<string, string>();
  /** The same replies the other way round: the operation each held reply's event id answers. */
  readonly #operationOfHeldReply = new Map<string, string>();
  #closing: Promise<void> | undefined;

  constructor(store: SegmentedStore<OutboxEvent>, parkedStore: SegmentedStore<ParkedEvent>, now: () => number, logger: Logger) {
    this.#store = store;
    this.#parkedStore = parkedStore;
    this.#now = now;
    this.#logger = logger;
    this.#segmentOf = indexById(store, (event) => event.id, 'outbox event');
    this.#parkedSegmentOf = indexById(parkedStore, (parked) => parked.event.id, 'parked outbox event');
  }

  /** Settles what a crash part-way through a move or a replacement left: one place per id, one pending announcement. */
  async settle(): Promise<void> {
    for (const id of this.#segmentOf.keys()) {
      if (this.#parkedSegmentOf.has(id)) this.#removeParked(id);
    }
    const announcements = this.#pendingRecords().filter((event) => event.kind === 'announcement');
    this.#announcement = announcements.at(-1);
    this.#removePending(announcements.slice(0, -1).map((event) => event.id));
    await Promise.all([this.#parkedStore.commit(), this.#store.commit()]);
  }

  get size(): number {
    return this.#segmentOf.size;
  }

  get parkedSize(): number {
    return this.#parkedSegmentOf.size;
  }

  get writes(): number {
    return this.#store.writes;
  }

  async append(event: OutboxEvent, options: AppendOptions = {}): Promise<void> {
    const checked = validate(storeMessageSchema, event);
    if (!checked.success) throw new TypeError(`outbox event${checked.problem}`);
    const { holdForInMs } = options;
    if (holdForInMs !== undefined && (!Number.isSafeInteger(holdForInMs) || holdForInMs <= 0)) {
      throw new RangeError(`outbox.append: holdForInMs must be a positive whole number of milliseconds, got ${describeValue(holdForInMs)}`);
    }
    this.#assertOpen('append');
    if (this.#segmentOf.has(event.id)) {
      this.#logger.debug({ eventId: event.id }, 'outbox already holds this event; keeping the first');
      await this.#store.commit();
      return;
    }
    const previous = checked.data.kind === 'announcement' ? this.#announcement : undefined;
    if (previous !== undefined && Date.parse(previous.createdAt) > Date.parse(checked.data.createdAt)) {
      this.#logger.debug({ eventId: event.id, pending: previous.id }, 'a later announcement is pending; dropping this older one');
      await this.#store.commit();
      return;
    }
    // The parsed event has the schema's field order, so the files read the same whatever order the caller used.
    const stored = frozenJsonCopy(checked.data);
    this.#segmentOf.set(stored.id, this.#store.append(stored));
    if (stored.kind === 'announcement') this.#announcement = stored;
    if (holdForInMs !== undefined && stored.kind !== 'announcement') {
      this.#holds.set(stored.id, this.#now() + holdForInMs);
      if (stored.kind === 'reply' && stored.correlationId !== undefined) {
        this.#heldReplyOf.set(stored.correlationId, stored.id);
        this.#operationOfHeldReply.set(stored.id, stored.correlationId);
      }
    }
    await this.#store.commit();
    // Only once the newer one is on disk: a crash in between leaves both, and opening keeps the newer.
    if (previous !== undefined) {
      this.#removePending([previous.id]);
      await this.#store.commit();
    }
    // The same event again (a replayed operation's reply): pending now, so no longer parked.
    if (this.#parkedSegmentOf.has(stored.id)) {
      this.#removeParked(stored.id);
      await this.#parkedStore.commit();
    }
  }

  peek(limit: number): OutboxEvent[] {
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0) {
      throw new RangeError(`outbox.peek(limit) takes a whole number of events, 0 or more, got ${describeValue(limit)}`);
    }
    const announcement = this.#announcement;
    const events: OutboxEvent[] = announcement === undefined || limit === 0 ? [] : [announcement];
    this.#endHolds();
    const holds = this.#holds;
    for (const segment of this.#store.segments) {
      for (const event of segment.records) {
        if (events.length >= limit) return events;
        if (event !== announcement && (holds.size === 0 || !holds.has(event.id))) events.push(event);
      }
    }
    return events;
  }

  nextReleaseInMs(): number | undefined {
    this.#endHolds();
    for (const until of this.#holds.values()) return Math.max(0, until - this.#now());
    return undefined;
  }

  /** Forgets the holds that are over (they end in the order they began). */
  #endHolds(): void {
    if (this.#holds.size === 0) return;
    const now = this.#now();
    for (const [id, until] of this.#holds) {
      if (until > now) return;
      this.#holds.delete(id);
    }
  }

  async acknowledgeHeldReplies(operationIds: readonly string[]): Promise<number> {
    const untrusted: unknown = operationIds;
    if (!Array.isArray(untrusted) || untrusted.some((id) => typeof id !== 'string')) {
      throw new TypeError(`outbox.acknowledgeHeldReplies(operationIds) takes an array of operation id strings, got ${describeValue(operationIds)}`);
    }
    this.#assertOpen('acknowledgeHeldReplies');
    const ids: string[] = [];
    for (const operationId of operationIds) {
      const id = this.#heldReplyOf.get(operationId);
      if (id !== undefined) ids.push(id);
    }
    if (ids.length === 0) return 0;
    this.#removePending(ids);
    await this.#store.commit();
    return ids.length;
  }

  async park(id: string, reason: ParkReason): Promise<ParkedEvent | undefined> {
    if (typeof id !== 'string') throw new TypeError(`outbox.park(id, reason) takes an event id string, got ${describeValue(id)}`);
    const checkedReason = validate(strictFields({ code: nonEmptyStringSchema, message: z.string({ error: 'must be a string' }) }), reason);
    if (!checkedReason.success) throw new TypeError(`outbox.park(id, reason): reason${checkedReason.problem}`);
    this.#assertOpen('park');
    const event = this.#pendingEvent(id);
    if (event === undefined) return undefined;
    const parked = frozenJsonCopy<ParkedEvent>({ event, ...checkedReason.data, parkedAt: new Date(this.#now()).toISOString() });
    // Parked first, then no longer pending: a crash in between leaves it pending, to be tried (and parked) again.
    if (this.#parkedSegmentOf.has(id)) this.#removeParked(id);
    this.#parkedSegmentOf.set(id, this.#parkedStore.append(parked));
    await this.#parkedStore.commit();
    this.#removePending([id]);
    await this.#store.commit();
    return parked;
  }

  parked(): ParkedEvent[] {
    return this.#parkedStore.segments.flatMap((segment) => segment.records);
  }

  async resubmit(id: string): Promise<'resubmitted' | 'superseded' | undefined> {
    if (typeof id !== 'string') throw new TypeError(`outbox.resubmit(id) takes an event id string, got ${describeValue(id)}`);
    this.#assertOpen('resubmit');
    const parked = this.#parkedRecord(id);
    if (parked === undefined) return undefined;
    const { event } = parked;
    const pending = this.#announcement;
    const superseded = event.kind === 'announcement' && pending !== undefined && Date.parse(pending.createdAt) > Date.parse(event.createdAt);
    if (!superseded && !this.#segmentOf.has(id)) {
      this.#segmentOf.set(id, this.#store.append(event));
      if (event.kind === 'announcement') this.#announcement = event;
      await this.#store.commit();
      if (pending !== undefined && event.kind === 'announcement') this.#removePending([pending.id]);
      await this.#store.commit();
    }
    this.#removeParked(id);
    await this.#parkedStore.commit();
    return superseded ? 'superseded' : 'resubmitted';
  }

  async discard(id: string): Promise<boolean> {
    if (typeof id !== 'string') throw new TypeError(`outbox.discard(id) takes an event id string, got ${describeValue(id)}`);
    this.#assertOpen('discard');
    if (!this.#parkedSegmentOf.has(id)) return false;
    this.#removeParked(id);
    await this.#parkedStore.commit();
    return true;
  }

  #pendingRecords(): OutboxEvent[] {
    return this.#store.segments.flatMap((segment) => segment.records);
  }

  #pendingEvent(id: string): OutboxEvent | undefined {
    return this.#segmentOf.get(id)?.records.find((event) => event.id === id);
  }

  #parkedRecord(id: string): ParkedEvent | undefined {
    return this.#parkedSegmentOf.get(id)?.records.find((parked) => parked.event.id === id);
  }

  #removeParked(id: string): void {
    const segment = this.#parkedSegmentOf.get(id);
    if (segment === undefined) return;
    this.#parkedSegmentOf.delete(id);
    this.#parkedStore.removeRecords(segment, (parked) => parked.event.id === id);
  }

  /** Forgets pending events in memory; the caller commits. */
  #removePending(ids: readonly string[]): void {
    const bySegment = new Map<Segment<OutboxEvent>, Set<string>>();
    for (const id of ids) {
      const segment = this.#segmentOf.get(id);
      if (segment === undefined) continue;
      this.#segmentOf.delete(id);
      if (this.#announcement?.id === id) this.#announcement = undefined;
      this.#forgetHold(id);
      let set = bySegment.get(segment);
      if (set === undefined) bySegment.set(segment, (set = new Set()));
      set.add(id);
    }
    for (const [segment, removed] of bySegment) this.#store.removeRecords(segment, (event) => removed.has(event.id));
  }

  #forgetHold(id: string): void {
    if (this.#operationOfHeldReply.size === 0 && this.#holds.size === 0) return;
    this.#holds.delete(id);
    const operationId = this.#operationOfHeldReply.get(id);
    if (operationId === undefined) return;
    this.#operationOfHeldReply.delete(id);
    if (this.#heldReplyOf.get(operationId) === id) this.#heldReplyOf.delete(operationId);
  }

  async acknowledge(ids: readonly string[]): Promise<void> {
    const untrusted: unknown = ids;
    if (!Array.isArray(untrusted) || untrusted.some((id) => typeof id !== 'string')) {
      throw new TypeError(`outbox.acknowledge(ids) takes an array of event id strings, got ${describeValue(ids)}`);
    }
    this.#assertOpen('acknowledge');
    this.#removePending(ids);
    // Also when nothing was removed here: the same ids may have been acknowledged by a call whose write is pending.
    await this.#store.commit();
  }

  close(): Promise<void> {
    this.#closing ??= Promise.all([this.#store.close(), this.#parkedStore.close()]).then(() => undefined);
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #assertOpen(method: string): void {
    if (this.#store.closed) throw new StorelinkError('STORE_UNAVAILABLE', `the outbox is closed: ${method}() is not possible after close()`);
  }
}

/** Opens (creating if needed) the outbox in `options.directory`, with every event not yet acknowledged and every parked one. */
export async function openOutbox(options: OutboxOptions): Promise<Outbox> {
  const fields = checkOptionFields(options, 'OutboxOptions', OPTION_FIELDS);
  const directory = checkDirectory(fields.directory, 'OutboxOptions');
  const segmentSize = checkSegmentSize(fields.segmentSize, 'OutboxOptions');
  if (fields.now !== undefined && typeof fields.now !== 'function') throw new TypeError('OutboxOptions.now must be a function returning ms since the epoch');
  const now = (fields.now as (() => number) | undefined) ?? Date.now;
  const logger = checkLogger(fields.logger, 'OutboxOptions').child({ component: 'outbox' });
  // Acknowledgements are appended as removal lines (every flush makes one): see segmentedStore.ts. Parking is rare,
  // so the parked store rewrites.
  const store = await SegmentedStore.open<OutboxEvent>({ directory, kind: 'outbox', segmentSize, recordSchema: storeMessageSchema, logger, recordId: (event) => event.id });
  let parkedStore: SegmentedStore<ParkedEvent> | undefined;
  try {
    parkedStore = await SegmentedStore.open<ParkedEvent>({ directory, kind: 'parked', segmentSize, recordSchema: parkedEventSchema, logger });
    const outbox = new SegmentedOutbox(store, parkedStore, now, logger);
    await outbox.settle();
    return outbox;
  } catch (error) {
    await store.close().catch(() => undefined);
    await parkedStore?.close().catch(() => undefined);
    throw error;
  }
}
