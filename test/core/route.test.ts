import { describe, expect, it } from 'vitest';
import { route, type RouteDecision, type TaggedSnapshot } from '../../src/core/route.js';
import { parsePolicy, type Fallback } from '../../src/core/policy.js';
import type { Latency } from '../../src/core/operation.js';

const policy = parsePolicy({
  operations: {
    'clickAndCollect.order': { latency: 'realtime', fallback: 'queue' },
    'promo.flash': { latency: 'realtime', fallback: 'reject' },
    'stock.query': { latency: 'realtime', fallback: 'cached' },
  },
});

const TYPE_BY_FALLBACK: Record<Fallback, string> = {
  queue: 'clickAndCollect.order',
  reject: 'promo.flash',
  cached: 'stock.query',
};

function snapshotWith(tags: readonly string[]): TaggedSnapshot {
  return { hasTag: (tag) => tags.includes(tag) };
}

/** What a real-time operation gets, per tag set and whether the trial call is taken; `fallback` stands for the type's. */
const REALTIME_TABLE: [tags: string[], trialInFlight: boolean, action: 'relay' | 'fallback', reason: RouteDecision['reason'], trial: boolean][] = [
  [[], false, 'fallback', 'relay-unavailable', false],
  [[], true, 'fallback', 'relay-unavailable', false],
  [['relay'], false, 'relay', 'relay-available', false],
  [['relay'], true, 'relay', 'relay-available', false],
  [['relay', 'probe'], false, 'relay', 'relay-trial', true],
  [['relay', 'probe'], true, 'fallback', 'trial-in-flight', false],
  // A chart that tags `probe` without `relay` breaks the contract; the router still never uses the relay for it.
  [['probe'], false, 'fallback', 'relay-unavailable', false],
  [['probe'], true, 'fallback', 'relay-unavailable', false],
];

const FALLBACK_CASES = (['queue', 'reject', 'cached'] as const).flatMap((fallback) =>
  REALTIME_TABLE.map(([tags, trialInFlight, action, reason, trial]) => ({ tags, trialInFlight, fallback, action, reason, trial })),
);

describe('route', () => {
  it.each(FALLBACK_CASES)(
    'realtime $fallback-fallback type with tags $tags (trial in flight: $trialInFlight) → $action, $reason',
    ({ tags, trialInFlight, fallback, action, reason, trial }) => {
      const decision = route(snapshotWith(tags), { type: TYPE_BY_FALLBACK[fallback], latency: 'realtime' }, policy, { trialInFlight });
      expect(decision).toEqual({
        action: action === 'relay' ? 'relay' : fallback,
        reason,
        fallback: action === 'fallback',
        trial,
      });
    },
  );

  const tagSets = [[], ['relay'], ['probe'], ['relay', 'probe']];
  it.each(
    (['queue', 'reject', 'cached'] as const).flatMap((fallback) => tagSets.map((tags) => ({ fallback, tags }))),
  )('async $fallback-fallback type with tags $tags → queue, never a fallback', ({ fallback, tags }) => {
    expect(route(snapshotWith(tags), { type: TYPE_BY_FALLBACK[fallback], latency: 'async' }, policy)).toEqual({
      action: 'queue',
      reason: 'async-latency',
      fallback: false,
      trial: false,
    });
  });

  it('uses the operation latency, not the type default', () => {
    const latency: Latency = 'async';
    expect(route(snapshotWith(['relay']), { type: 'stock.query', latency }, policy).action).toBe('queue');
    expect(route(snapshotWith(['relay']), { type: 'price.update', latency: 'realtime' }, policy).action).toBe('relay');
  });

  it('falls back per operationDefaults for a type the policy does not list', () => {
    const strict = parsePolicy({ operationDefaults: { fallback: 'reject' } });
    expect(route(snapshotWith([]), { type: 'price.update', latency: 'realtime' }, strict).action).toBe('reject');
  });

  it('treats a missing trialInFlight option as no trial in flight', () => {
    expect(route(snapshotWith(['relay', 'probe']), { type: 'stock.query', latency: 'realtime' }, policy).trial).toBe(true);
  });
});
