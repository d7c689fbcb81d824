import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { Delivery, OperationOutcome, StoreEventMessage } from '../../src/cloud/dispatcher.js';
import { ACTIVITY_BUCKET_IN_MS, StoreActivity } from '../../src/cloud/storeActivity.js';
import type { LinkChange } from '../../src/cloud/storeLinks.js';

/** A fixed instant, so the minute buckets never depend on the day the test runs. */
const START = Date.UTC(2030, 0, 15, 9, 0, 0);

function world() {
  const links$ = new Subject<LinkChange>();
  const deliveries$ = new Subject<Delivery>();
  const outcomes$ = new Subject<OperationOutcome>();
  const events$ = new Subject<StoreEventMessage>();
  const states = new Map<string, { state: string; tags: string[] }>([
    ['paris-1', { state: 'healthy', tags: ['relay'] }],
    ['nice-3', { state: 'disabled', tags: [] }],
  ]);
  const clock = { now: START };
  const activity = new StoreActivity(
    {
      links$,
      deliveries$,
      outcomes$,
      events$,
      stores: () => [
        { storeId: 'paris-1', bidirectional: true, publicKeys: {} },
        { storeId: 'nice-3', bidirectional: false, publicKeys: {} },
      ],
      link: (storeId) => ({ storeId, bidirectional: storeId === 'paris-1', ...states.get(storeId)!, counters: { deliveries: {}, fallbacks: {} }, backlog: 0, outbox: null }),
    },
    { now: () => clock.now },
  );
  const delivery = (fields: Partial<Delivery> & Pick<Delivery, 'operationId' | 'storeId' | 'channel' | 'outcome'>): Delivery => ({
    type: 'clickAndCollect.order',
    latency: 'realtime',
    attempts: 1,
    durationInMs: 10,
    ...fields,
  });
  const outcome = (operationId: string, storeId: string, kind: OperationOutcome['outcome'] = 'done'): OperationOutcome => ({
    operationId,
    storeId,
    type: 'price.update',
    outcome: kind,
    channel: 'queue',
    late: true,
    at: new Date(clock.now).toISOString(),
  });
  return { links$, deliveries$, outcomes$, events$, states, clock, activity, delivery, outcome };
}

const row = (activity: StoreActivity, storeId: string) => activity.rows().find((candidate) => candidate.storeId === storeId)!;

describe('StoreActivity', () => {
  it('counts deliveries per channel, fallbacks and failures over the last hour, per store and per minute', () => {
    const { deliveries$, outcomes$, clock, activity, delivery, outcome } = world();
    deliveries$.next(delivery({ operationId: 'a', storeId: 'paris-1', channel: 'relay', outcome: 'delivered' }));
    deliveries$.next(delivery({ operationId: 'b', storeId: 'paris-1', channel: 'queue', outcome: 'queued', fallbackReason: 'timeout', attempts: 2 }));
    deliveries$.next(delivery({ operationId: 'c', storeId: 'paris-1', channel: null, outcome: 'rejected', fallbackReason: 'relay-unavailable' }));
    clock.now += ACTIVITY_BUCKET_IN_MS;
    deliveries$.next(delivery({ operationId: 'd', storeId: 'nice-3', channel: 'queue', outcome: 'queued' }));
    outcomes$.next(outcome('d', 'nice-3', 'failed'));
    expect(row(activity, 'paris-1').lastHour).toEqual({ relay: 1, queue: 1, fallbacks: 2, failures: 1 });
    expect(row(activity, 'nice-3').lastHour).toEqual({ relay: 0, queue: 1, fallbacks: 0, failures: 1 });
    const minutes = activity.lastHour();
    expect(minutes).toHaveLength(60);
    expect(minutes.at(-2)).toEqual({ at: new Date(START).toISOString(), relay: 1, queue: 1, fallbacks: 2, failures: 1 });
    expect(minutes.at(-1)).toEqual({ at: new Date(START + ACTIVITY_BUCKET_IN_MS).toISOString(), relay: 0, queue: 1, fallbacks: 0, failures: 1 });
    // An hour on, the first minute has left the window; the second is the oldest one kept.
    clock.now += 59 * ACTIVITY_BUCKET_IN_MS;
    expect(row(activity, 'paris-1').lastHour).toEqual({ relay: 0, queue: 0, fallbacks: 0, failures: 0 });
    expect(row(activity, 'nice-3').lastHour).toEqual({ relay: 0, queue: 1, fallbacks: 0, failures: 1 });
    clock.now += ACTIVITY_BUCKET_IN_MS;
    expect(activity.lastHour().every((minute) => minute.relay + minute.queue + minute.fallbacks + minute.failures === 0)).toBe(true);
  });

  it('keeps the backlog of queued operations until their outcome comes back', () => {
    const { deliveries$, outcomes$, activity, delivery, outcome } = world();
    deliveries$.next(delivery({ operationId: 'q1', storeId: 'nice-3', channel: 'queue', outcome: 'queued' }));
    deliveries$.next(delivery({ operationId: 'q2', storeId: 'nice-3', channel: 'queue', outcome: 'queued' }));
    deliveries$.next(delivery({ operationId: 'r1', storeId: 'paris-1', channel: 'relay', outcome: 'delivered' }));
    expect([row(activity, 'nice-3').backlog, row(activity, 'paris-1').backlog]).toEqual([2, 0]);
    outcomes$.next(outcome('q1', 'nice-3'));
    expect(row(activity, 'nice-3').backlog).toBe(1);
  });

  it('says when a store was last heard from and its relay latency, a moving average of relay round trips', () => {
    const { deliveries$, events$, clock, activity, delivery } = world();
    expect(row(activity, 'paris-1')).toMatchObject({ lastHeardFromAt: null, relayLatencyInMs: null });
    deliveries$.next(delivery({ operationId: 'a', storeId: 'paris-1', channel: 'relay', outcome: 'delivered', durationInMs: 10 }));
    clock.now += 5_000;
    deliveries$.next(delivery({ operationId: 'b', storeId: 'paris-1', channel: 'relay', outcome: 'delivered', durationInMs: 20 }));
    expect(row(activity, 'paris-1')).toMatchObject({ lastHeardFromAt: new Date(START + 5_000).toISOString(), relayLatencyInMs: 13 });
    clock.now += 5_000;
    events$.next({ storeId: 'nice-3' } as StoreEventMessage);
    expect(row(activity, 'nice-3').lastHeardFromAt).toBe(new Date(START + 10_000).toISOString());
  });

  it('says why a bi-directional link is off the relay, and forgets it once the link is back', () => {
    const { links$, deliveries$, states, activity, delivery } = world();
    states.set('paris-1', { state: 'tripped', tags: [] });
    links$.next({ storeId: 'paris-1', state: 'tripped', tags: [], previousState: 'healthy' });
    expect(row(activity, 'paris-1')).toMatchObject({ state: 'tripped', reason: 'relay unavailable' });
    deliveries$.next(delivery({ operationId: 'a', storeId: 'paris-1', channel: 'queue', outcome: 'queued', fallbackReason: 'timeout' }));
    expect(row(activity, 'paris-1').reason).toBe('timeout');
    states.set('paris-1', { state: 'healthy', tags: ['relay'] });
    links$.next({ storeId: 'paris-1', state: 'healthy', tags: ['relay'], previousState: 'probing' });
    expect(row(activity, 'paris-1')).toMatchObject({ state: 'healthy', reason: null });
    // An async-only store is never "off the relay".
    expect(row(activity, 'nice-3')).toMatchObject({ state: 'disabled', reason: null });
  });
});
