/**
 * The dispatcher's numbers for Prometheus (prom-client): deliveries by channel and outcome, fallbacks by reason, the
 * relay's latency as a histogram, and how many stores' links are in each chart state. Each call has its own registry,
 * so two APIs in one process keep separate counts. Counters come from `deliveries$` from the moment the metrics are
 * created, so create them before the dispatcher publishes anything. The link gauge follows `links$` and asks the
 * dispatcher only about stores it has not heard of yet: a scrape must not revive every idle link actor. Outcomes are
 * counted by outcome and lateness from `outcomes$`; the reply cache's size is read at scrape time.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Subscription } from 'rxjs';
import type { Delivery, Dispatcher, OperationOutcome } from './dispatcher.js';
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
export type MetricsSource = Pick<Dispatcher, 'deliveries$' | 'links$' | 'outcomes$' | 'inboxRejections$' | 'cachedReplyCount' | 'stores' | 'link'>;

export function createDispatcherMetrics(source: MetricsSource): DispatcherMetrics {
  const registry = new Registry();
  const registers = [registry];
  const deliveries = new Counter({
    name: 'storelink_deliveries_total',
    help: 'Operations published, by the channel that carried them last (none: not sent) and their outcome.',
    labelNames: ['channel', 'outcome'] as const,
    registers,
  });
  const fallbacks = new Counter({
    name: 'storelink_fallbacks_total',
    help: 'Real-time operations that did not complete on the relay, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });
  const relayLatency = new Histogram({
    name: 'storelink_relay_latency_seconds',
    help: 'Time to publish an operation whose last channel was the relay, in seconds.',
    buckets: [...RELAY_LATENCY_BUCKETS_IN_SECONDS],
    registers,
  });

  const outcomes = new Counter({
    name: 'storelink_outcomes_total',
    help: "Operations' final outcomes as the cloud learnt them, by outcome (done, rejected, failed) and whether they came late.",
    labelNames: ['outcome', 'late'] as const,
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

  const onDelivery = (delivery: Delivery): void => {
    deliveries.inc({ channel: delivery.channel ?? 'none', outcome: delivery.outcome });
    if (delivery.fallbackReason !== undefined) fallbacks.inc({ reason: delivery.fallbackReason });
    if (delivery.channel === 'relay') relayLatency.observe(delivery.durationInMs / 1_000);
  };
  const subscriptions: Subscription[] = [
    source.deliveries$.subscribe({ next: onDelivery }),
    source.outcomes$.subscribe({ next: (outcome: OperationOutcome) => outcomes.inc({ outcome: outcome.outcome, late: String(outcome.late) }) }),
    source.links$.subscribe({ next: (change) => linkStates.set(change.storeId, topStateOf(change.state)) }),
    source.inboxRejections$.subscribe({ next: (rejection) => inboxRejected.inc({ reason: rejection.reason }) }),
  ];

  return {
    contentType: registry.contentType,
    render: () => registry.metrics(),
    close() {
      for (const subscription of subscriptions) subscription.unsubscribe();
    },
  };
}
