import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { Delivery, InboxRejection, LinkView, OperationOutcome, OutboxReport } from '../../src/cloud/dispatcher.js';
import { createDispatcherMetrics, type DispatcherMetricsOptions, type MetricsSource } from '../../src/cloud/metrics.js';
import { StoreBacklog } from '../../src/cloud/storeBacklog.js';
import { OTHER_STORES_LABEL, StoreLabels, checkPerStoreMetrics } from '../../src/cloud/storeLabels.js';
import type { LinkChange } from '../../src/cloud/storeLinks.js';
import { parsePrometheusText, type PrometheusText } from '../support/prometheusText.js';

/** A fixed instant: these tests never read today's date. */
const T0 = Date.parse('2031-03-04T05:06:07.000Z');
const HOUR = 60 * 60_000;

function world(storeCount: number, options: Omit<DispatcherMetricsOptions, 'now'> = {}) {
  const clock = { now: T0 };
  const deliveries$ = new Subject<Delivery>();
  const outcomes$ = new Subject<OperationOutcome>();
  const backlogs = new Map<string, number>();
  const outboxReports = new Map<string, OutboxReport>();
  const storeIds = Array.from({ length: storeCount }, (_, index) => `store-${index}`);
  const source: MetricsSource = {
    deliveries$: deliveries$.asObservable(),
    outcomes$: outcomes$.asObservable(),
    links$: new Subject<LinkChange>().asObservable(),
    inboxRejections$: new Subject<InboxRejection>().asObservable(),
    cachedReplyCount: 0,
    stores: () => [],
    link: (): LinkView => {
      throw new Error('not asked');
    },
    backlogs: () => backlogs,
    outboxReports: () => outboxReports,
  };
  const metrics = createDispatcherMetrics(source, { ...options, now: () => clock.now });
  const deliver = (storeId: string, type = 'stock.query', overrides: Partial<Delivery> = {}) =>
    deliveries$.next({ operationId: 'op', storeId, type, latency: 'async', channel: 'queue', outcome: 'queued', attempts: 1, durationInMs: 1, ...overrides });
  const scrape = async (): Promise<PrometheusText> => parsePrometheusText(await metrics.render());
  return { clock, deliver, outcomes$, backlogs, outboxReports, storeIds, metrics, scrape };
}

/** The distinct values of one label over a family's samples. */
function labelValues(text: PrometheusText, family: string, label: string): Set<string> {
  return new Set(text.samples.filter((sample) => sample.name === family).map((sample) => sample.labels[label]!));
}

function sumOf(text: PrometheusText, family: string): number {
  return text.samples.filter((sample) => sample.name === family).reduce((total, sample) => total + sample.value, 0);
}

describe('metrics by store, bounded', () => {
  it('gives at most N stores their own label among 2,000, sums the rest under _other, and exposes every delivery in some series that never goes down', async () => {
    const { clock, deliver, backlogs, outboxReports, storeIds, scrape } = world(2_000, { perStore: { top: 5 } });
    const previous = new Map<string, number>();
    /** The last values of series that were dropped: what they counted stays counted, as Prometheus scraped it. */
    let vanished = 0;
    let delivered = 0;
    const labelled: Set<string>[] = [];
    for (let round = 0; round < 6; round += 1) {
      // Each round a different block of five stores is the busiest, so membership must change.
      for (const [index, storeId] of storeIds.entries()) {
        const busy = Math.floor(index / 5) === round;
        for (let count = 0; count < (busy ? 40 : 1); count += 1) deliver(storeId);
        delivered += busy ? 40 : 1;
      }
      for (const [index, storeId] of storeIds.entries()) {
        backlogs.set(storeId, index % 3);
        outboxReports.set(storeId, { pending: 1, parked: index % 2, reportedAt: new Date(clock.now).toISOString() });
      }
      clock.now += HOUR;
      const text = await scrape();
      const deliveries = text.samples.filter((sample) => sample.name === 'storelink_store_deliveries_total');
      const stores = new Set(deliveries.map((sample) => sample.labels['store']!));
      labelled.push(stores);
      expect(stores.size).toBeLessThanOrEqual(6);
      expect(stores.has(OTHER_STORES_LABEL)).toBe(true);
      // The block busiest in the round before (in the first round: the first stores heard of) has its own labels.
      for (let index = Math.max(0, round - 1) * 5; index < Math.max(0, round - 1) * 5 + 5; index += 1) expect(stores.has(`store-${index}`)).toBe(true);
      // A series that stays never goes down (Prometheus would read a counter reset); one that went was seen last time.
      for (const sample of deliveries) {
        const store = sample.labels['store']!;
        if (previous.has(store)) expect(sample.value).toBeGreaterThanOrEqual(previous.get(store)!);
      }
      for (const [store, value] of previous) if (!stores.has(store)) vanished += value;
      previous.clear();
      for (const sample of deliveries) previous.set(sample.labels['store']!, sample.value);
      // Nothing is lost: what the series show, with what the dropped ones last showed, is every delivery.
      expect(sumOf(text, 'storelink_store_deliveries_total') + vanished).toBe(delivered);
      expect(sumOf(text, 'storelink_deliveries_total')).toBe(delivered);
      // The gauges are bounded the same way, and sum to the whole.
      expect(labelValues(text, 'storelink_store_backlog', 'store').size).toBeLessThanOrEqual(6);
      expect(sumOf(text, 'storelink_store_backlog')).toBe(storeIds.reduce((total, _storeId, index) => total + (index % 3), 0));
      expect(labelValues(text, 'storelink_store_outbox_entries', 'store').size).toBeLessThanOrEqual(6);
      expect(text.value('storelink_store_outbox_entries', { store: OTHER_STORES_LABEL, state: 'parked' })).toBeGreaterThan(0);
      expect(sumOf(text, 'storelink_store_outbox_entries')).toBe(2_000 + 1_000);
    }
    // Membership did change with the traffic.
    expect(labelled[5]!.has('store-20')).toBe(true);
    expect(labelled[5]!.has('store-0')).toBe(false);
    expect(vanished).toBeGreaterThan(0);
  });

  it('labels every store with perStore "all", and none with "off"', async () => {
    const all = world(30, { perStore: 'all' });
    for (const storeId of all.storeIds) all.deliver(storeId);
    expect(labelValues(await all.scrape(), 'storelink_store_deliveries_total', 'store').size).toBe(30);
    const off = world(30, { perStore: 'off' });
    for (const storeId of off.storeIds) off.deliver(storeId);
    const text = await off.scrape();
    expect(Object.keys(text.types).filter((family) => family.startsWith('storelink_store_'))).toEqual([]);
    expect(text.value('storelink_deliveries_total', { type: 'stock.query', channel: 'queue', outcome: 'queued' })).toBe(30);
  });

  it('labels the first maxOperationTypes types and counts the rest as type="other"', async () => {
    const { deliver, outcomes$, scrape } = world(1, { maxOperationTypes: 2 });
    for (const type of ['a.one', 'b.two', 'c.three', 'd.four', 'a.one']) deliver('store-0', type);
    outcomes$.next({ operationId: 'op', storeId: 'store-0', type: 'e.five', outcome: 'done', channel: 'queue', late: true, at: new Date(T0).toISOString() });
    const text = await scrape();
    expect(text.value('storelink_deliveries_total', { type: 'a.one', channel: 'queue', outcome: 'queued' })).toBe(2);
    expect(text.value('storelink_deliveries_total', { type: 'b.two', channel: 'queue', outcome: 'queued' })).toBe(1);
    expect(text.value('storelink_deliveries_total', { type: 'other', channel: 'queue', outcome: 'queued' })).toBe(2);
    expect(text.value('storelink_outcomes_total', { type: 'other', outcome: 'done', late: 'true' })).toBe(1);
    expect(labelValues(text, 'storelink_deliveries_total', 'type')).toEqual(new Set(['a.one', 'b.two', 'other']));
  });

  it('refuses a perStore option that is not off, all or { top: N }', () => {
    expect(checkPerStoreMetrics({ top: 3 })).toEqual({ top: 3 });
    for (const wrong of [{ top: 0 }, { top: 1.5 }, 'some', {}, null]) expect(() => checkPerStoreMetrics(wrong)).toThrow(RangeError);
  });
});

describe('StoreLabels', () => {
  it('keeps a member against a newcomer of about the same traffic, and lets a clearly busier one take its place', () => {
    const clock = { now: T0 };
    const labels = new StoreLabels({ perStore: { top: 1 }, now: () => clock.now });
    for (let count = 0; count < 10; count += 1) labels.record('first');
    for (let count = 0; count < 11; count += 1) labels.record('second');
    expect(labels.rerank()).toEqual([]);
    expect(labels.labelOf('first')).toBe('first');
    expect(labels.labelOf('second')).toBe(OTHER_STORES_LABEL);
    for (let count = 0; count < 20; count += 1) labels.record('second');
    expect(labels.rerank()).toEqual(['first']);
    expect(labels.labelOf('second')).toBe('second');
    expect(labels.labelOf('first')).toBe(OTHER_STORES_LABEL);
  });

  it('forgets old traffic: a store busy long ago gives way to one busy now', () => {
    const clock = { now: T0 };
    const labels = new StoreLabels({ perStore: { top: 1 }, now: () => clock.now, halfLifeInMs: HOUR });
    for (let count = 0; count < 100; count += 1) labels.record('yesterday');
    clock.now += 24 * HOUR;
    for (let count = 0; count < 5; count += 1) labels.record('today');
    expect(labels.rerank()).toEqual(['yesterday']);
    expect(labels.labelOf('today')).toBe('today');
  });
});

describe('StoreBacklog', () => {
  it('counts queued operations per store until their outcome or their expiry, bounded in how many it tracks', () => {
    const clock = { now: T0 };
    const backlog = new StoreBacklog({ now: () => clock.now, maxTracked: 3 });
    const at = (offsetInMs: number) => new Date(T0 + offsetInMs).toISOString();
    backlog.queued('op-1', 'paris-1', at(60_000));
    backlog.queued('op-1', 'paris-1', at(60_000));
    backlog.queued('op-2', 'paris-1', at(10_000));
    backlog.queued('op-3', 'nice-3', at(60_000));
    expect(Object.fromEntries(backlog.counts())).toEqual({ 'paris-1': 2, 'nice-3': 1 });
    backlog.settled('op-1');
    backlog.settled('unknown');
    expect(backlog.countOf('paris-1')).toBe(1);
    clock.now += 10_000;
    expect(backlog.countOf('paris-1')).toBe(0);
    expect(Object.fromEntries(backlog.counts())).toEqual({ 'nice-3': 1 });
    for (const id of ['op-4', 'op-5', 'op-6']) backlog.queued(id, 'lyon-2', at(60_000));
    expect(backlog.forgotten).toBe(1);
    expect(Object.fromEntries(backlog.counts())).toEqual({ 'lyon-2': 3 });
  });
});
