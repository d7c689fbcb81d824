/**
 * What the console's table and live chart need that no single stream says: when each store was last heard from, its
 * relay latency, its backlog (operations published to its queue whose outcome has not come back), why its link is
 * not on the relay, and what happened over the last hour (deliveries per channel, fallbacks, failures), per store and
 * for the whole cloud. Built from the dispatcher's streams as they flow, in minute buckets, so reading it costs
 * nothing in proportion to the traffic. One cloud instance's view: it counts what this instance published and learnt.
 */
import type { Subscription } from 'rxjs';
import type { Dispatcher } from './dispatcher.js';
import { topStateOf } from './storeLinks.js';

export const ACTIVITY_WINDOW_IN_MS = 60 * 60_000;
export const ACTIVITY_BUCKET_IN_MS = 60_000;
const BUCKETS = ACTIVITY_WINDOW_IN_MS / ACTIVITY_BUCKET_IN_MS;
/** Operations remembered per store as awaiting their outcome; past this the oldest are forgotten (the backlog saturates). */
export const MAX_BACKLOG_TRACKED_PER_STORE = 10_000;
/** Weight of the newest relay round trip in the store's relay latency (an exponential moving average). */
const LATENCY_WEIGHT = 0.3;

export interface ActivityCounts {
  relay: number;
  queue: number;
  fallbacks: number;
  failures: number;
}

export interface ActivityMinute extends ActivityCounts {
  /** The minute's start, ISO 8601. */
  at: string;
}

export interface StoreActivityRow {
  storeId: string;
  bidirectional: boolean;
  /** The chart's top-level state, and its tags (`relay`, `probe`). */
  state: string;
  tags: string[];
  /** Why the link is off the relay: the last fallback reason seen, `relay unavailable` when it tripped without traffic; null when on the relay or async-only. */
  reason: string | null;
  /** The last time the store answered or sent anything (an outcome, an event), ISO 8601; null if never since this instance started. */
  lastHeardFromAt: string | null;
  /** Moving average of successful relay round trips, in ms; null before the first. */
  relayLatencyInMs: number | null;
  /** Operations published to the store's queue whose outcome has not come back. */
  backlog: number;
  lastHour: ActivityCounts;
}

export interface ActivitySnapshot {
  at: string;
  stores: StoreActivityRow[];
  /** The cloud's last hour, oldest minute first, 60 entries. */
  lastHour: ActivityMinute[];
}

type ActivitySource = Pick<Dispatcher, 'links$' | 'deliveries$' | 'outcomes$' | 'events$' | 'stores' | 'link'>;

export interface StoreActivityOptions {
  /** Default `Date.now`; the dispatcher's clock in tests. */
  now?: () => number;
}

/** Sixty minute buckets in a ring, each tagged with its minute so a stale one reads as zero. */
class MinuteRing {
  readonly #minutes = new Float64Array(BUCKETS).fill(-1);
  readonly #counts = new Uint32Array(BUCKETS * 4);

  add(minute: number, field: 0 | 1 | 2 | 3): void {
    const slot = minute % BUCKETS;
    if (this.#minutes[slot] !== minute) {
      this.#minutes[slot] = minute;
      this.#counts.fill(0, slot * 4, slot * 4 + 4);
    }
    this.#counts[slot * 4 + field]! += 1;
  }

  countsAt(minute: number): ActivityCounts {
    const slot = minute % BUCKETS;
    if (this.#minutes[slot] !== minute) return { relay: 0, queue: 0, fallbacks: 0, failures: 0 };
    const base = slot * 4;
    return { relay: this.#counts[base]!, queue: this.#counts[base + 1]!, fallbacks: this.#counts[base + 2]!, failures: this.#counts[base + 3]! };
  }

  total(currentMinute: number): ActivityCounts {
    const sum = { relay: 0, queue: 0, fallbacks: 0, failures: 0 };
    for (let minute = currentMinute - BUCKETS + 1; minute <= currentMinute; minute += 1) {
      const counts = this.countsAt(minute);
      sum.relay += counts.relay;
      sum.queue += counts.queue;
      sum.fallbacks += counts.fallbacks;
      sum.failures += counts.failures;
    }
    return sum;
  }
}

interface PerStore {
  heardAt?: number;
  relayLatencyInMs?: number;
  reason?: string;
  /** Operation ids published to the queue and not yet answered, in publish order. */
  pending: Set<string>;
  ring?: MinuteRing;
}

const RELAY = 0;
const QUEUE = 1;
const FALLBACK = 2;
const FAILURE = 3;

export class StoreActivity {
  readonly #source: ActivitySource;
  readonly #now: () => number;
  readonly #stores = new Map<string, PerStore>();
  readonly #cloud = new MinuteRing();
  readonly #subscriptions: Subscription[] = [];

  constructor(source: ActivitySource, options: StoreActivityOptions = {}) {
    this.#source = source;
    this.#now = options.now ?? Date.now;
    this.#subscriptions.push(
      source.deliveries$.subscribe((delivery) => {
        const store = this.#store(delivery.storeId);
        const minute = this.#minute();
        if (delivery.channel === 'relay') this.#count(store, minute, RELAY);
        if (delivery.channel === 'queue') this.#count(store, minute, QUEUE);
        if (delivery.fallbackReason !== undefined) {
          this.#count(store, minute, FALLBACK);
          store.reason = delivery.fallbackReason;
        }
        // A fallback's own refusal: nothing reached the store, so no outcome will count it.
        if (delivery.outcome === 'rejected' && delivery.channel === null) this.#count(store, minute, FAILURE);
        if (delivery.channel === 'relay' && delivery.outcome !== 'failed' && delivery.fallbackReason === undefined) {
          store.heardAt = this.#now();
          store.relayLatencyInMs =
            store.relayLatencyInMs === undefined ? delivery.durationInMs : store.relayLatencyInMs + LATENCY_WEIGHT * (delivery.durationInMs - store.relayLatencyInMs);
        }
        if (delivery.outcome === 'queued') this.#awaiting(store, delivery.operationId);
      }),
      source.outcomes$.subscribe((outcome) => {
        const store = this.#store(outcome.storeId);
        store.heardAt = this.#now();
        store.pending.delete(outcome.operationId);
        if (outcome.outcome !== 'done') this.#count(store, this.#minute(), FAILURE);
      }),
      source.events$.subscribe((event) => {
        this.#store(event.storeId).heardAt = this.#now();
      }),
      source.links$.subscribe((change) => {
        const store = this.#store(change.storeId);
        if (change.tags.includes('relay')) delete store.reason;
        else store.reason ??= 'relay unavailable';
      }),
    );
  }

  /** Every known store's row, in the dispatcher's store order. */
  rows(): StoreActivityRow[] {
    const minute = this.#minute();
    return this.#source.stores().map(({ storeId, bidirectional }) => {
      const link = this.#source.link(storeId);
      const store = this.#stores.get(storeId);
      const onRelay = link.tags.includes('relay');
      return {
        storeId,
        bidirectional,
        state: topStateOf(link.state),
        tags: link.tags,
        reason: !bidirectional || onRelay ? null : (store?.reason ?? 'relay unavailable'),
        lastHeardFromAt: store?.heardAt === undefined ? null : new Date(store.heardAt).toISOString(),
        relayLatencyInMs: store?.relayLatencyInMs === undefined ? null : Math.round(store.relayLatencyInMs * 100) / 100,
        backlog: store?.pending.size ?? 0,
        lastHour: store?.ring?.total(minute) ?? { relay: 0, queue: 0, fallbacks: 0, failures: 0 },
      };
    });
  }

  /** The cloud's last hour, oldest minute first. */
  lastHour(): ActivityMinute[] {
    const current = this.#minute();
    const minutes: ActivityMinute[] = [];
    for (let minute = current - BUCKETS + 1; minute <= current; minute += 1) {
      minutes.push({ at: new Date(minute * ACTIVITY_BUCKET_IN_MS).toISOString(), ...this.#cloud.countsAt(minute) });
    }
    return minutes;
  }

  snapshot(): ActivitySnapshot {
    return { at: new Date(this.#now()).toISOString(), stores: this.rows(), lastHour: this.lastHour() };
  }

  close(): void {
    for (const subscription of this.#subscriptions) subscription.unsubscribe();
  }

  #minute(): number {
    return Math.floor(this.#now() / ACTIVITY_BUCKET_IN_MS);
  }

  #store(storeId: string): PerStore {
    let store = this.#stores.get(storeId);
    if (store === undefined) {
      store = { pending: new Set() };
      this.#stores.set(storeId, store);
    }
    return store;
  }

  #count(store: PerStore, minute: number, field: 0 | 1 | 2 | 3): void {
    (store.ring ??= new MinuteRing()).add(minute, field);
    this.#cloud.add(minute, field);
  }

  #awaiting(store: PerStore, operationId: string): void {
    store.pending.add(operationId);
    if (store.pending.size > MAX_BACKLOG_TRACKED_PER_STORE) store.pending.delete(store.pending.values().next().value!);
  }
}
