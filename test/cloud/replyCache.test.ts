import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/core/policy.js';
import { ReplyCache, stableJson } from '../../src/cloud/replyCache.js';

const policy = parsePolicy({
  operations: {
    'stock.query': { latency: 'realtime', fallback: 'cached', maxCachedReplies: 3, cachedReplyMaxAgeInMs: 60_000 },
    'clickAndCollect.order': { latency: 'realtime', fallback: 'queue' },
  },
});
const query = (sku: string) => ({ storeId: 'paris-1', type: 'stock.query', payload: { skus: [sku] } });

function cacheAt(start = 1_000_000) {
  const clock = { now: start };
  return { cache: new ReplyCache(policy, () => clock.now), clock };
}

describe('reply cache', () => {
  it('serves the last reply of a cached-fallback type with its age, for an equal payload whatever its key order', () => {
    const { cache, clock } = cacheAt();
    cache.remember({ storeId: 'paris-1', type: 'stock.query', payload: { a: 1, b: 2 } }, { stock: 5 });
    clock.now += 1_500;
    expect(cache.get({ storeId: 'paris-1', type: 'stock.query', payload: { b: 2, a: 1 } })).toEqual({ reply: { stock: 5 }, ageInMs: 1_500 });
    expect(cache.get({ storeId: 'lyon-2', type: 'stock.query', payload: { a: 1, b: 2 } })).toBeUndefined();
  });

  it('keeps nothing for a type whose fallback is not cached', () => {
    const { cache } = cacheAt();
    cache.remember({ storeId: 'paris-1', type: 'clickAndCollect.order', payload: {} }, { accepted: true });
    expect(cache.size).toBe(0);
  });

  it('holds at most maxCachedReplies per type, dropping the least recently used (4,000 distinct queries keep 3)', () => {
    const { cache } = cacheAt();
    for (let n = 0; n < 4_000; n += 1) cache.remember(query(`SKU-${n}`), { n });
    expect(cache.size).toBe(3);
    expect(cache.get(query('SKU-3999'))).toMatchObject({ reply: { n: 3999 } });
    expect(cache.get(query('SKU-0'))).toBeUndefined();

    // A read counts as a use: the oldest unread entry goes first.
    const { cache: used } = cacheAt();
    for (const sku of ['A', 'B', 'C']) used.remember(query(sku), { sku });
    used.get(query('A'));
    used.remember(query('D'), { sku: 'D' });
    expect(used.get(query('B'))).toBeUndefined();
    expect(used.get(query('A'))).toMatchObject({ reply: { sku: 'A' } });
  });

  it('does not serve a reply older than cachedReplyMaxAgeInMs, and forgets it', () => {
    const { cache, clock } = cacheAt();
    cache.remember(query('A'), { sku: 'A' });
    clock.now += 60_000;
    expect(cache.get(query('A'))).toMatchObject({ ageInMs: 60_000 });
    clock.now += 1;
    expect(cache.get(query('A'))).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('writes JSON with sorted keys', () => {
    expect(stableJson({ b: [1, { d: 1, c: 2 }], a: null })).toBe('{"a":null,"b":[1,{"c":2,"d":1}]}');
  });
});
