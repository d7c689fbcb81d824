/**
 * The dispatcher's numbers for Prometheus (prom-client). By operation type, always: deliveries by channel and outcome,
 * fallbacks by reason, outcomes by outcome and lateness, the relay's latency as a histogram (label `type`; past
 * `maxOperationTypes` distinct types, the rest count as `type="other"`, which no type can be called: types are
 * dot-namespaced). By store, as far as cardinality allows (`perStore`): deliveries, fallbacks and outcomes, the
 * backlog (queued operations without their outcome yet) and the outbox depth each store reports — for every store
 * (`all`), none (`off`), or by default the 50 busiest (`{ top: 50 }`, by recent deliveries) with the rest summed under
 * `store="_other"` (a name no store can have: store ids start with a letter or digit). Also how many stores' links are
 * in each chart state, inbox messages dropped, and the reply cache's size.
 *
 * Each call has its own registry, so two APIs in one process keep separate counts. Counters come from `deliveries$`
 * and `outcomes$` from the moment the metrics are created, so create them before the dispatcher publishes anything.
 * The link gauge follows `links$` and asks the dispatcher only about stores it has not heard of yet: a scrape must
 * not revive every idle link actor. Backlogs and outbox depths are read at scrape time.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Subscription } from 'rxjs';
import type { Delivery, Dispatcher, OperationOutcome } from './dispatcher.js';
import { OTHER_STORES_LABEL, StoreLabels, type PerStoreMetrics } from './storeLabels.js';
import { topStateOf } from './storeLinks.js';

/** Upper bounds of the relay latency histogram, in seconds: a loopback relay call is ~0.5 ms, Azure's limit 60 s. */
export const RELAY_LATENCY_BUCKETS_IN_SECONDS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
]);

export interface DispatcherMetrics {
  /** The Content-Type of what `render()` returns. */
  readonly contentType: string;
  /** The current values as Prometheus text format 0.0.4. */
  render(): Promise<string>;
  /** Stops following the dispatcher's streams; idempotent. */
  close(): void;
}

/** What the metrics read from a dispatcher; a narrow view so tests can feed them directly. */
export type MetricsSource = Pick<
  Dispatcher,
  'deliveries$' | 'links$' | 'outcomes$' | 'inboxRejections$' | 'cachedReplyCount' | 'stores' | 'link' | 'backlogs' | 'outboxReports'
>;

export type { PerStoreMetrics } from './storeLabels.js';

export interface DispatcherMetricsOptions {
  /** Which stores get a `store` label of their own: `off`, `all`, or `{ top: N }` busiest (default 50). */
  perStore?: PerStoreMetrics;
  /** Distinct operation types with a `type` label of their own, first come; default 100. */
  maxOperationTypes?: number;
  /** The clock recent traffic is ranked by; default `Date.now`. */
  now?: () => number;
}

export const DEFAULT_MAX_OPERATION_TYPES = 100;
/** The `type` of operations past `maxOperationTypes`: no operation type is one word without a dot. */
export const OTHER_TYPES_LABEL = 'other';

/** Counts by store label, then by the rest of the labels: a store's series are dropped together when it loses its label. */
class StoreCounts {
  readonly #byStore = new Map<string, Map<string, { labels: Record<string, string>; value: number }>>();

  inc(store: string, labels: Record<string, string>): void {
    let series = this.#byStore.get(store);
    if (series === undefined) {
      series = new Map();
      this.#byStore.set(store, series);
    }
    const key = JSON.stringify(labels);
    const entry = series.get(key);
    if (entry === undefined) series.set(key, { labels: { store, ...labels }, value: 1 });
    else entry.value += 1;
  }

  drop(store: string): void {
    this.#byStore.delete(store);
  }

  *series(): Iterable<{ labels: Record<string, string>; value: number }> {
    for (const series of this.#byStore.values()) yield* series.values();
  }
}

export function createDispatcherMetrics(source: MetricsSource, options: DispatcherMetricsOptions = {}): DispatcherMetrics {
  const maxTypes = options.maxOperationTypes ?? DEFAULT_MAX_OPERATION_TYPES;
  if (!Number.isSafeInteger(maxTypes) || maxTypes < 0) throw new RangeError(`createDispatcherMetrics: maxOperationTypes must be a whole number, 0 or more, got ${maxTypes}`);
  const storeLabels = new StoreLabels({ now: options.now ?? Date.now, ...(options.perStore === undefined ? {} : { perStore: options.perStore }) });
  const types = new Set<string>();
  const typeLabel = (type: string): string => {
    if (types.has(type)) return type;
    if (types.size >= maxTypes) return OTHER_TYPES_LABEL;
    types.add(type);
    return type;
  };

  const registry = new Registry();
  const registers = [registry];
  const deliveries = new Counter({
    name: 'storelink_deliveries_total',
    help: 'Operations published, by operation type, the channel that carried them last (none: not sent) and their outcome.',
    labelNames: ['type', 'channel', 'outcome'] as const,
    registers,
  });
  const fallbacks = new Counter({
    name: 'storelink_fallbacks_total',
    help: 'Real-time operations that did not complete on the relay, by operation type and reason.',
    labelNames: ['type', 'reason'] as const,
    registers,
  });
  const relayLatency = new Histogram({
    name: 'storelink_relay_latency_seconds',
    help: 'Time to publish an operation whose last channel was the relay, in seconds, by operation type.',
    labelNames: ['type'] as const,
    buckets: [...RELAY_LATENCY_BUCKETS_IN_SECONDS],
    registers,
  });

  const outcomes = new Counter({
    name: 'storelink_outcomes_total',
    help: "Operations' final outcomes as the cloud learnt them, by operation type, outcome (done, rejected, failed) and whether they came late.",
    labelNames: ['type', 'outcome', 'late'] as const,
    registers,
  });
  const inboxRejected = new Counter({
    name: 'storelink_inbox_rejected_total',
    help: 'Cloud inbox messages dropped without effect, by reason: unsigned, unknown-key, bad-signature (not signed by the store they claim), wrong-store (a reply about another store\'s operation), unknown-store.',
    labelNames: ['reason'] as const,
    registers,
  });
  new Gauge({
    name: 'storelink_reply_cache_entries',
    help: 'Replies held by the reply cache (bounded per operation type by the policy).',
    registers,
    collect() {
      this.set(source.cachedReplyCount);
    },
  });

  const linkStates = new Map<string, string>();
  // A state once seen keeps its series at 0 when it empties, so a dashboard sees it drop rather than vanish.
  const seenStates = new Set<string>();
  const countLinks = (): Map<string, number> => {
    const counts = new Map<string, number>();
    for (const { storeId } of source.stores()) {
      let state = linkStates.get(storeId);
      if (state === undefined) {
        try {
          state = topStateOf(source.link(storeId).state);
        } catch {
          // Not started yet (or closed): the link has no state to count.
          continue;
        }
        linkStates.set(storeId, state);
      }
      counts.set(state, (counts.get(state) ?? 0) + 1);
      seenStates.add(state);
    }
    for (const state of seenStates) if (!counts.has(state)) counts.set(state, 0);
    return counts;
  };
  new Gauge({
    name: 'storelink_links',
    help: "Known stores, by the state of their link's chart.",
    labelNames: ['state'] as const,
    registers,
    // Counted at scrape time from what links$ told us, so the gauge needs no bookkeeping of its own.
    collect() {
      this.reset();
      for (const [state, count] of countLinks()) this.set({ state }, count);
    },
  });

  const storeDeliveries = new StoreCounts();
  const storeFallbacks = new StoreCounts();
  const storeOutcomes = new StoreCounts();
  if (storeLabels.enabled) {
    /** A counter whose values are the counts kept by store label, set at each scrape. */
    const storeCounter = (name: string, help: string, labelNames: readonly string[], counts: StoreCounts) =>
      new Counter({
        name,
        help,
        labelNames: ['store', ...labelNames],
        registers,
        collect() {
          this.reset();
          for (const { labels, value } of counts.series()) this.inc(labels, value);
        },
      });
    const others = `stores without a label of their own count as store="${OTHER_STORES_LABEL}"`;
    storeCounter('storelink_store_deliveries_total', `Operations published, by store, channel and outcome (${others}).`, ['channel', 'outcome'], storeDeliveries);
    storeCounter('storelink_store_fallbacks_total', `Real-time operations that did not complete on the relay, by store and reason (${others}).`, ['reason'], storeFallbacks);
    storeCounter('storelink_store_outcomes_total', `Final outcomes as the cloud learnt them, by store, outcome and lateness (${others}).`, ['outcome', 'late'], storeOutcomes);
    /** Sums per store label: a store without its own label adds to the shared one. */
    const byLabel = (values: Iterable<[string, number]>): Map<string, number> => {
      const sums = new Map<string, number>();
      for (const [storeId, value] of values) {
        const label = storeLabels.labelOf(storeId);
        sums.set(label, (sums.get(label) ?? 0) + value);
      }
      return sums;
    };
    // A store once shown keeps its series at 0 when its backlog drains (while it keeps its label), so a dashboard sees it drop.
    const seenBacklogs = new Set<string>();
    new Gauge({
      name: 'storelink_store_backlog',
      help: `Operations put on a store's queue whose outcome this instance has not learnt yet (and not expired), by store (${others}).`,
      labelNames: ['store'] as const,
      registers,
      collect() {
        this.reset();
        const sums = byLabel(source.backlogs());
        for (const store of seenBacklogs) {
          if (!sums.has(store) && (store === OTHER_STORES_LABEL || storeLabels.labelOf(store) === store)) sums.set(store, 0);
          else if (!sums.has(store)) seenBacklogs.delete(store);
        }
        for (const [store, count] of sums) {
          seenBacklogs.add(store);
          this.set({ store }, count);
        }
      },
    });
    new Gauge({
      name: 'storelink_store_outbox_entries',
      help: `Entries in each store's outbox as its last report said, by store and state: pending (waiting to be sent) or parked (set aside) (${others}).`,
      labelNames: ['store', 'state'] as const,
      registers,
      collect() {
        this.reset();
        const reports = [...source.outboxReports()];
        for (const [store, count] of byLabel(reports.map(([storeId, report]) => [storeId, report.pending]))) this.set({ store, state: 'pending' }, count);
        for (const [store, count] of byLabel(reports.map(([storeId, report]) => [storeId, report.parked]))) this.set({ store, state: 'parked' }, count);
      },
    });
  }

  const onDelivery = (delivery: Delivery): void => {
    const type = typeLabel(delivery.type);
    const channel = delivery.channel ?? 'none';
    deliveries.inc({ type, channel, outcome: delivery.outcome });
    if (delivery.fallbackReason !== undefined) fallbacks.inc({ type, reason: delivery.fallbackReason });
    if (delivery.channel === 'relay') relayLatency.observe({ type }, delivery.durationInMs / 1_000);
    if (!storeLabels.enabled) return;
    storeLabels.record(delivery.storeId);
    const store = storeLabels.labelOf(delivery.storeId);
    storeDeliveries.inc(store, { channel, outcome: delivery.outcome });
    if (delivery.fallbackReason !== undefined) storeFallbacks.inc(store, { reason: delivery.fallbackReason });
  };
  const onOutcome = (outcome: OperationOutcome): void => {
    const late = String(outcome.late);
    outcomes.inc({ type: typeLabel(outcome.type), outcome: outcome.outcome, late });
    if (storeLabels.enabled) storeOutcomes.inc(storeLabels.labelOf(outcome.storeId), { outcome: outcome.outcome, late });
  };
  const subscriptions: Subscription[] = [
    source.deliveries$.subscribe({ next: onDelivery }),
    source.outcomes$.subscribe({ next: onOutcome }),
    source.links$.subscribe({ next: (change) => linkStates.set(change.storeId, topStateOf(change.state)) }),
    source.inboxRejections$.subscribe({ next: (rejection) => inboxRejected.inc({ reason: rejection.reason }) }),
  ];

  return {
    contentType: registry.contentType,
    render: async () => {
      const text = await registry.metrics();
      // Which stores have a label of their own is decided again after each scrape: a store that lost its label has had
      // its last count scraped, and its series go; one that gained a label starts its series from 0 at the next scrape.
      for (const storeId of storeLabels.rerank()) for (const counts of [storeDeliveries, storeFallbacks, storeOutcomes]) counts.drop(storeId);
      return text;
    },
    close() {
      for (const subscription of subscriptions) subscription.unsubscribe();
    },
  };
}
