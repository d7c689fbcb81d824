import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { Delivery, InboxRejection, KnownStore, LinkView, OperationOutcome, OutboxReport } from '../../src/cloud/dispatcher.js';
import { nestsDeeperThan } from '../../src/core/json.js';
import { RELAY_LATENCY_BUCKETS_IN_SECONDS, createDispatcherMetrics, type MetricsSource } from '../../src/cloud/metrics.js';
import type { LinkChange } from '../../src/cloud/storeLinks.js';
import { StorelinkError, cloudHttpStatusOf, type StorelinkErrorCode } from '../../src/core/errors.js';
import { parsePrometheusText } from '../support/prometheusText.js';

describe('cloudHttpStatusOf', () => {
  it.each<[StorelinkErrorCode, number]>([
    ['OPERATION_INVALID', 400],
    ['API_UNAUTHORIZED', 401],
    ['STORE_UNKNOWN', 404],
    ['ROUTE_NOT_FOUND', 404],
    ['PAYLOAD_TOO_LARGE', 413],
    ['UNEXPECTED_FAILURE', 500],
    ['SERVICE_BUS_UNAVAILABLE', 503],
    ['STORE_UNAVAILABLE', 503],
    ['ABORTED', 503],
    ['QUEUE_NOT_FOUND', 502],
    ['SERVICE_BUS_UNAUTHORIZED', 502],
    ['RELAY_UNAUTHORIZED', 502],
  ])('maps %s to %i', (code, status) => {
    expect(cloudHttpStatusOf(new StorelinkError(code, 'message'))).toBe(status);
  });
});

describe('nestsDeeperThan', () => {
  it.each<[string, number, boolean]>([
    ['{}', 1, false],
    ['{"a":[1,{"b":[]}]}', 4, false],
    ['{"a":[1,{"b":[]}]}', 3, true],
    ['"[[[[[["', 1, false],
    ['{"a":"\\"[[[["}', 1, false],
    ['{"a":"\\\\"}', 1, false],
    ['{"a":"\\\\",[[]]}', 2, true],
    [`${'['.repeat(65)}${']'.repeat(65)}`, 64, true],
    [`${'['.repeat(64)}${']'.repeat(64)}`, 64, false],
  ])('%s deeper than %i: %s', (text, depth, expected) => {
    expect(nestsDeeperThan(text, depth)).toBe(expected);
  });
});

/** A dispatcher's streams and store list, fed by the test. */
function fakeSource(stores: Omit<KnownStore, 'publicKeys'>[], states: Record<string, string>) {
  const deliveries$ = new Subject<Delivery>();
  const inboxRejections$ = new Subject<InboxRejection>();
  const links$ = new Subject<LinkChange>();
  const outcomes$ = new Subject<OperationOutcome>();
  const cache = { size: 0 };
  const backlogs = new Map<string, number>();
  const outboxReports = new Map<string, OutboxReport>();
  let linkCalls = 0;
  const source: MetricsSource = {
    deliveries$: deliveries$.asObservable(),
    links$: links$.asObservable(),
    outcomes$: outcomes$.asObservable(),
    inboxRejections$: inboxRejections$.asObservable(),
    get cachedReplyCount() {
      return cache.size;
    },
    stores: () => stores.map((store) => ({ ...store, publicKeys: {} })),
    backlogs: () => backlogs,
    outboxReports: () => outboxReports,
    link: (storeId): LinkView => {
      linkCalls += 1;
      const state = states[storeId];
      if (state === undefined) throw new StorelinkError('STORE_UNKNOWN', storeId);
      return { storeId, bidirectional: true, state, tags: [], counters: { deliveries: {}, fallbacks: {} }, backlog: 0, outbox: null };
    },
  };
  return { source, deliveries$, links$, outcomes$, inboxRejections$, cache, backlogs, outboxReports, linkCalls: () => linkCalls };
}

function delivery(overrides: Partial<Delivery>): Delivery {
  return { operationId: 'op', storeId: 'paris-1', type: 'stock.query', latency: 'realtime', channel: 'relay', outcome: 'delivered', attempts: 1, durationInMs: 1, ...overrides };
}

describe('dispatcher metrics', () => {
  it('counts deliveries and fallbacks, fills the relay histogram cumulatively and counts links by state', async () => {
    const { source, deliveries$, links$, linkCalls } = fakeSource(
      [
        { storeId: 'paris-1', bidirectional: true },
        { storeId: 'lyon-2', bidirectional: true },
        { storeId: 'nice-3', bidirectional: false },
      ],
      { 'paris-1': 'healthy', 'lyon-2': 'healthy', 'nice-3': 'disabled' },
    );
    const metrics = createDispatcherMetrics(source);
    deliveries$.next(delivery({ durationInMs: 0.4 }));
    deliveries$.next(delivery({ durationInMs: 30 }));
    deliveries$.next(delivery({ durationInMs: 9_000, outcome: 'rejected' }));
    deliveries$.next(delivery({ channel: 'queue', outcome: 'queued', fallbackReason: 'RELAY_NO_LISTENER', attempts: 2, durationInMs: 2_000 }));
    deliveries$.next(delivery({ channel: null, outcome: 'served-cached', fallbackReason: 'relay-unavailable' }));

    const first = parsePrometheusText(await metrics.render());
    expect(first.value('storelink_deliveries_total', { type: 'stock.query', channel: 'relay', outcome: 'delivered' })).toBe(2);
    expect(first.value('storelink_deliveries_total', { type: 'stock.query', channel: 'relay', outcome: 'rejected' })).toBe(1);
    expect(first.value('storelink_deliveries_total', { type: 'stock.query', channel: 'queue', outcome: 'queued' })).toBe(1);
    expect(first.value('storelink_deliveries_total', { type: 'stock.query', channel: 'none', outcome: 'served-cached' })).toBe(1);
    expect(first.value('storelink_fallbacks_total', { type: 'stock.query', reason: 'RELAY_NO_LISTENER' })).toBe(1);
    expect(first.value('storelink_fallbacks_total', { type: 'stock.query', reason: 'relay-unavailable' })).toBe(1);
    // Only relay deliveries feed the histogram: 0.4 ms, 30 ms and 9 s.
    expect(first.value('storelink_relay_latency_seconds_bucket', { type: 'stock.query', le: '0.001' })).toBe(1);
    expect(first.value('storelink_relay_latency_seconds_bucket', { type: 'stock.query', le: '0.025' })).toBe(1);
    expect(first.value('storelink_relay_latency_seconds_bucket', { type: 'stock.query', le: '0.05' })).toBe(2);
    expect(first.value('storelink_relay_latency_seconds_bucket', { type: 'stock.query', le: '5' })).toBe(2);
    expect(first.value('storelink_relay_latency_seconds_bucket', { type: 'stock.query', le: '+Inf' })).toBe(3);
    expect(first.value('storelink_relay_latency_seconds_count', { type: 'stock.query' })).toBe(3);
    expect(first.value('storelink_relay_latency_seconds_sum', { type: 'stock.query' })).toBeCloseTo(9.0304, 6);
    expect(first.samples.filter((sample) => sample.name === 'storelink_relay_latency_seconds_bucket')).toHaveLength(RELAY_LATENCY_BUCKETS_IN_SECONDS.length + 1);
    expect(first.value('storelink_links', { state: 'healthy' })).toBe(2);
    expect(first.value('storelink_links', { state: 'disabled' })).toBe(1);
    expect(linkCalls()).toBe(3);

    // Later states come from links$, without asking the dispatcher (which would revive idle link actors).
    links$.next({ storeId: 'paris-1', state: 'tripped', tags: [], previousState: 'healthy' });
    links$.next({ storeId: 'lyon-2', state: 'tripped', tags: [], previousState: 'healthy' });
    const second = parsePrometheusText(await metrics.render());
    expect(second.value('storelink_links', { state: 'tripped' })).toBe(2);
    expect(second.value('storelink_links', { state: 'healthy' })).toBe(0);
    expect(linkCalls()).toBe(3);

    metrics.close();
    deliveries$.next(delivery({}));
    expect(parsePrometheusText(await metrics.render()).value('storelink_deliveries_total', { type: 'stock.query', channel: 'relay', outcome: 'delivered' })).toBe(2);
  });

  it('counts outcomes by outcome and lateness, and reads the reply cache size at scrape time', async () => {
    const { source, deliveries$, outcomes$, cache } = fakeSource([], {});
    const metrics = createDispatcherMetrics(source);
    const outcome = (overrides: Partial<OperationOutcome>): OperationOutcome => ({
      operationId: 'op',
      storeId: 'paris-1',
      type: 'clickAndCollect.order',
      outcome: 'done',
      channel: 'queue',
      late: false,
      at: '2026-11-28T10:00:00.000Z',
      ...overrides,
    });
    outcomes$.next(outcome({}));
    outcomes$.next(outcome({ late: true }));
    outcomes$.next(outcome({ late: true }));
    outcomes$.next(outcome({ outcome: 'failed', failure: { code: 'OPERATION_EXPIRED', message: 'expired', executed: false }, late: true }));
    deliveries$.next(delivery({ channel: 'queue', outcome: 'failed', failure: { code: 'REPLY_TOO_LARGE', message: 'too large', executed: true } }));
    cache.size = 7;
    const parsed = parsePrometheusText(await metrics.render());
    expect(parsed.value('storelink_outcomes_total', { type: 'clickAndCollect.order', outcome: 'done', late: 'false' })).toBe(1);
    expect(parsed.value('storelink_outcomes_total', { type: 'clickAndCollect.order', outcome: 'done', late: 'true' })).toBe(2);
    expect(parsed.value('storelink_outcomes_total', { type: 'clickAndCollect.order', outcome: 'failed', late: 'true' })).toBe(1);
    expect(parsed.value('storelink_outcomes_total', { type: 'clickAndCollect.order', outcome: 'rejected', late: 'false' })).toBeUndefined();
    expect(parsed.value('storelink_deliveries_total', { type: 'stock.query', channel: 'queue', outcome: 'failed' })).toBe(1);
    expect(parsed.value('storelink_reply_cache_entries', {})).toBe(7);
    cache.size = 2;
    expect(parsePrometheusText(await metrics.render()).value('storelink_reply_cache_entries', {})).toBe(2);
    metrics.close();
  });

  it('counts the inbox messages dropped, by reason', async () => {
    const { source, inboxRejections$ } = fakeSource([{ storeId: 'paris-1', bidirectional: true }], {});
    const metrics = createDispatcherMetrics(source);
    const rejection = { storeId: 'paris-1', kind: 'announcement' as const, type: 'store.announced', messageId: 'm', message: 'forged' };
    inboxRejections$.next({ ...rejection, reason: 'unsigned' });
    inboxRejections$.next({ ...rejection, reason: 'unsigned' });
    inboxRejections$.next({ ...rejection, reason: 'wrong-store' });
    const parsed = parsePrometheusText(await metrics.render());
    expect(parsed.value('storelink_inbox_rejected_total', { reason: 'unsigned' })).toBe(2);
    expect(parsed.value('storelink_inbox_rejected_total', { reason: 'wrong-store' })).toBe(1);
    expect(parsed.value('storelink_inbox_rejected_total', { reason: 'bad-signature' })).toBeUndefined();
    metrics.close();
  });

  it('escapes label values and labels a nested chart state by its top-level state', async () => {
    const { source, deliveries$, links$ } = fakeSource([{ storeId: 'paris-1', bidirectional: true }], {});
    const metrics = createDispatcherMetrics(source);
    deliveries$.next(delivery({ channel: 'queue', outcome: 'queued', fallbackReason: 'odd "reason"\\ with\na line feed' }));
    links$.next({ storeId: 'paris-1', state: { maintenance: 'waiting' }, tags: [], previousState: undefined });
    const text = await metrics.render();
    const parsed = parsePrometheusText(text);
    expect(parsed.value('storelink_fallbacks_total', { type: 'stock.query', reason: 'odd "reason"\\ with\na line feed' })).toBe(1);
    expect(parsed.value('storelink_links', { state: 'maintenance' })).toBe(1);
    metrics.close();
  });

  it('keeps the counts of two metrics in one process apart', async () => {
    const one = fakeSource([{ storeId: 'paris-1', bidirectional: true }], { 'paris-1': '"healthy"' });
    const other = fakeSource([{ storeId: 'paris-1', bidirectional: true }], { 'paris-1': '"healthy"' });
    const first = createDispatcherMetrics(one.source);
    const second = createDispatcherMetrics(other.source);
    one.deliveries$.next(delivery({}));
    expect(parsePrometheusText(await first.render()).value('storelink_deliveries_total', { type: 'stock.query', channel: 'relay', outcome: 'delivered' })).toBe(1);
    expect(parsePrometheusText(await second.render()).value('storelink_deliveries_total', { type: 'stock.query', channel: 'relay', outcome: 'delivered' })).toBeUndefined();
    first.close();
    second.close();
  });

  it('renders empty families before anything happened, and skips links a stopped dispatcher cannot show', async () => {
    const { source } = fakeSource([{ storeId: 'paris-1', bidirectional: true }], {});
    const parsed = parsePrometheusText(await createDispatcherMetrics(source).render());
    expect(Object.keys(parsed.types)).toEqual([
      'storelink_deliveries_total',
      'storelink_fallbacks_total',
      'storelink_relay_latency_seconds',
      'storelink_outcomes_total',
      'storelink_inbox_rejected_total',
      'storelink_reply_cache_entries',
      'storelink_links',
      'storelink_store_deliveries_total',
      'storelink_store_fallbacks_total',
      'storelink_store_outcomes_total',
      'storelink_store_backlog',
      'storelink_store_outbox_entries',
    ]);
    // Labelled by type, the histogram has no series until a type is seen.
    expect(parsed.samples.filter((sample) => sample.name.startsWith('storelink_relay_latency_seconds'))).toEqual([]);
    expect(parsed.samples.filter((sample) => sample.name === 'storelink_links')).toEqual([]);
  });
});
