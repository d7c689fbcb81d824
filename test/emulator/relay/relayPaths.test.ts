import { describe, expect, it } from 'vitest';
import {
  autoCreatedName,
  decodePath,
  joinTarget,
  queryValue,
  resolveEntity,
  splitRequestTarget,
  stripRelayQuery,
} from '../../../src/emulator/relay/relayPaths.js';

describe('splitRequestTarget', () => {
  it.each([
    ['/hc1/a?x=1', { path: '/hc1/a', query: 'x=1' }],
    ['/hc1', { path: '/hc1', query: undefined }],
    ['/hc1?', { path: '/hc1', query: '' }],
    ['http://127.0.0.1:9/hc1/a?b', { path: '/hc1/a', query: 'b' }],
    ['http://host', { path: '/', query: undefined }],
    ['/hc1#frag', { path: '/hc1', query: undefined }],
  ])('splits %s', (target, expected) => {
    expect(splitRequestTarget(target)).toEqual(expected);
  });

  it('rejects a target that is neither origin nor absolute form', () => {
    expect(splitRequestTarget('*')).toBeUndefined();
    expect(splitRequestTarget('hc1/a')).toBeUndefined();
  });
});

describe('decodePath', () => {
  it('decodes segment by segment and refuses bad encoding', () => {
    expect(decodePath('/a%20b/c%2Fd')).toBe('/a b/c/d');
    expect(decodePath('/bad%zz')).toBeUndefined();
  });
});

describe('resolveEntity', () => {
  const entities = [{ name: 'hc1' }, { name: 'shop/orders' }, { name: 'shop' }];

  it.each([
    ['hc1', 'hc1', ''],
    ['HC1/api/x', 'hc1', '/api/x'],
    ['shop/orders/42', 'shop/orders', '/42'],
    ['shop/ordersX', 'shop', '/ordersX'],
    ['shop', 'shop', ''],
  ])('resolves %s to the longest name', (path, name, suffix) => {
    const match = resolveEntity(entities, path);
    expect(match?.entity.name).toBe(name);
    expect(match?.suffix).toBe(suffix);
  });

  it('needs a whole-segment match', () => {
    expect(resolveEntity(entities, 'hc10')).toBeUndefined();
    expect(resolveEntity(entities, '')).toBeUndefined();
  });
});

describe('autoCreatedName', () => {
  it('takes the whole path for a listener and the first segment for a sender', () => {
    expect(autoCreatedName('a/b/', true)).toBe('a/b');
    expect(autoCreatedName('a/b', false)).toBe('a');
    expect(autoCreatedName('', false)).toBeUndefined();
    expect(autoCreatedName('$hc/x', true)).toBeUndefined();
  });
});

describe('queryValue', () => {
  it('finds a parameter case-insensitively and decodes it', () => {
    expect(queryValue('a=1&SB-HC-TOKEN=x%20y', 'sb-hc-token')).toBe('x y');
    expect(queryValue('a=1', 'b')).toBeUndefined();
    expect(queryValue(undefined, 'a')).toBeUndefined();
    expect(queryValue('a=%zz', 'a')).toBeUndefined();
  });
});

describe('stripRelayQuery', () => {
  it.each([
    ['x=1&sb-hc-token=abc&y=2', 'x=1&y=2'],
    ['sb-hc-token=abc', undefined],
    ['sb-hc-foo&x=%41', 'sb-hc-foo&x=%41'],
    ['a=1&&b=2&sb-hc-id=9', 'a=1&&b=2'],
    ['', ''],
    ['Sb-Hc-Token=1&z', 'z'],
  ])('strips %s to %s', (query, expected) => {
    expect(stripRelayQuery(query)).toBe(expected);
  });

  it('keeps an absent query absent', () => {
    expect(stripRelayQuery(undefined)).toBeUndefined();
    expect(joinTarget('/hc1', undefined)).toBe('/hc1');
    expect(joinTarget('/hc1', 'a=1')).toBe('/hc1?a=1');
  });
});
