/**
 * The dispatcher's numbers in the Prometheus text exposition format 0.0.4: deliveries by channel and outcome,
 * fallbacks by reason, the relay's latency as a histogram, and how many stores' links are in each chart state.
 * Counters come from `deliveries$` from the moment the metrics are created, so create them before the dispatcher
 * publishes anything. The link gauge follows `links$` and asks the dispatcher only about stores it has not heard of
 * yet: a scrape must not revive every idle link actor.
 */
import type { Subscription } from 'rxjs';
import type { StateValue } from 'xstate';
import type { Delivery, Dispatcher } from './dispatcher.js';

/** Upper bounds of the relay latency histogram, in seconds: a loopback relay call is ~0.5 ms, Azure's limit 60 s. */
export const RELAY_LATENCY_BUCKETS_IN_SECONDS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
]);

export interface DispatcherMetrics {
  /** The current values as Prometheus text format 0.0.4. */
  render(): string;
  /** Stops following the dispatcher's streams; idempotent. */
  close(): void;
}

/** What the metrics read from a dispatcher; a narrow view so tests can feed them directly. */
export type MetricsSource = Pick<Dispatcher, 'deliveries$' | 'links$' | 'stores' | 'link'>;

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Escapes a label value as the text format requires: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelsOf(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([name, value]) => `${name}="${escapeLabelValue(value)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** Prometheus reads Go floats: `+Inf`, `-Inf`, `NaN` and decimal or exponent notation. */
function formatNumber(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  if (Number.isNaN(value)) return 'NaN';
  return String(value);
}

/** A chart state as a label: its top-level state (`{ "tripped": "waiting" }` is `tripped`), which bounds the label values. */
export function stateLabelOf(state: StateValue): string {
  return typeof state === 'string' ? state : (Object.keys(state)[0] ?? '');
}

class Counter {
  readonly #values = new Map<string, { labels: Record<string, string>; value: number }>();

  add(labels: Record<string, string>, amount = 1): void {
    const key = labelsOf(labels);
    const entry = this.#values.get(key);
    if (entry === undefined) this.#values.set(key, { labels, value: amount });
    else entry.value += amount;
  }

  lines(name: string): string[] {
    return [...this.#values.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, entry]) => `${name}${key} ${formatNumber(entry.value)}`);
  }
}

class Histogram {
  readonly #bounds: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.#counts = bounds.map(() => 0);
  }

  observe(value: number): void {
    this.#sum += value;
    this.#count += 1;
    const index = this.#bounds.findIndex((bound) => value <= bound);
    if (index >= 0) this.#counts[index]! += 1;
  }

  lines(name: string): string[] {
    let cumulative = 0;
    const buckets = this.#bounds.map((bound, index) => {
      cumulative += this.#counts[index]!;
      return `${name}_bucket${labelsOf({ le: formatNumber(bound) })} ${cumulative}`;
    });
    return [...buckets, `${name}_bucket{le="+Inf"} ${this.#count}`, `${name}_sum ${formatNumber(this.#sum)}`, `${name}_count ${this.#count}`];
  }
}

function family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string, samples: string[]): string {
  const escapedHelp = help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  return [`# HELP ${name} ${escapedHelp}`, `# TYPE ${name} ${type}`, ...samples].join('\n');
}

export function createDispatcherMetrics(source: MetricsSource): DispatcherMetrics {
  const deliveries = new Counter();
  const fallbacks = new Counter();
  const relayLatency = new Histogram(RELAY_LATENCY_BUCKETS_IN_SECONDS);
  const linkStates = new Map<string, string>();
  // A state once seen keeps its series at 0 when it empties, so a dashboard sees it drop rather than vanish.
  const seenStates = new Set<string>();

  const onDelivery = (delivery: Delivery): void => {
    deliveries.add({ channel: delivery.channel ?? 'none', outcome: delivery.outcome });
    if (delivery.fallbackReason !== undefined) fallbacks.add({ reason: delivery.fallbackReason });
    if (delivery.channel === 'relay') relayLatency.observe(delivery.durationInMs / 1_000);
  };
  const subscriptions: Subscription[] = [
    source.deliveries$.subscribe({ next: onDelivery }),
    source.links$.subscribe({ next: (change) => linkStates.set(change.storeId, stateLabelOf(change.state)) }),
  ];

  const countLinks = (): Map<string, number> => {
    const counts = new Map<string, number>();
    for (const { storeId } of source.stores()) {
      let state = linkStates.get(storeId);
      if (state === undefined) {
        try {
          state = stateLabelOf(source.link(storeId).state);
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

  return {
    render() {
      const links = [...countLinks().entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([state, count]) => `storelink_links${labelsOf({ state })} ${count}`);
      return `${[
        family('storelink_deliveries_total', 'counter', 'Operations published, by the channel that carried them last (none: not sent) and their outcome.', deliveries.lines('storelink_deliveries_total')),
        family('storelink_fallbacks_total', 'counter', 'Real-time operations that did not complete on the relay, by reason.', fallbacks.lines('storelink_fallbacks_total')),
        family('storelink_relay_latency_seconds', 'histogram', 'Time to publish an operation whose last channel was the relay, in seconds.', relayLatency.lines('storelink_relay_latency_seconds')),
        family('storelink_links', 'gauge', "Known stores, by the state of their link's chart.", links),
      ].join('\n')}\n`;
    },
    close() {
      for (const subscription of subscriptions) subscription.unsubscribe();
    },
  };
}
