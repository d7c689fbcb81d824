import { describe, expect, it } from 'vitest';
import { entityPathOf, holderOf, scopeCovers, signingKeyFor, type RuleHolder } from '../../../src/emulator/servicebus/authorization.js';
import type { SharedAccessPolicy } from '../../../src/emulator/servicebus/options.js';

const rule = (keyName: string, primaryKey: string): SharedAccessPolicy => ({ keyName, primaryKey, rights: ['Listen'] });
const holders = new Map<string, RuleHolder>([
  ['store-alpha', { path: 'store-alpha', authorizationRules: [rule('store', 'alpha-key')] }],
  ['shop/orders', { path: 'shop/orders', authorizationRules: [rule('store', 'orders-key')] }],
  ['events', { path: 'events', authorizationRules: [] }],
]);
const find = (path: string) => holders.get(path);
const namespace = [rule('cloud', 'cloud-key'), rule('store', 'namespace-store-key')];

describe('service bus emulator: which key signs for what', () => {
  it.each([
    ['sb://ns/store-alpha', 'store-alpha'],
    ['sb://ns:5672/Store-Alpha/$DeadLetterQueue', 'store-alpha/$deadletterqueue'],
    ['/events/subscriptions/s1/', 'events/subscriptions/s1'],
    ['sb://ns/', ''],
  ])('the entity path of %j is %j', (address, path) => {
    expect(entityPathOf(address)).toBe(path);
  });

  it.each([
    ['store-alpha', 'store-alpha'],
    ['store-alpha/$deadletterqueue', 'store-alpha'],
    ['events/subscriptions/s1', 'events'],
    ['shop/orders/$management', 'shop/orders'],
    ['shop', undefined],
    ['', undefined],
  ])('%j lies in %j', (path, holder) => {
    expect(holderOf(path, find)?.path).toBe(holder);
  });

  it("looks a key name up in the entity's rules first, then the namespace's policies", () => {
    expect(signingKeyFor('store', 'store-alpha/$deadletterqueue', namespace, find)).toMatchObject({ policy: { primaryKey: 'alpha-key' }, entity: { path: 'store-alpha' } });
    expect(signingKeyFor('store', 'shop/orders', namespace, find)?.policy.primaryKey).toBe('orders-key');
    expect(signingKeyFor('store', 'events', namespace, find)).toMatchObject({ policy: { primaryKey: 'namespace-store-key' }, entity: undefined });
    expect(signingKeyFor('store', '', namespace, find)?.entity).toBeUndefined();
    expect(signingKeyFor('nobody', 'store-alpha', namespace, find)).toBeUndefined();
  });

  it("confines an entity's rule to that entity; a namespace policy reaches everything", () => {
    const alphaRule = signingKeyFor('store', 'store-alpha', namespace, find)!;
    expect(scopeCovers(alphaRule, 'store-alpha/$management', find)).toBe(true);
    expect(scopeCovers(alphaRule, 'shop/orders', find)).toBe(false);
    expect(scopeCovers(alphaRule, '', find)).toBe(false);
    expect(scopeCovers(signingKeyFor('cloud', 'store-alpha', namespace, find)!, 'shop/orders', find)).toBe(true);
  });
});
