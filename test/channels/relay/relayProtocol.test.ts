import { describe, expect, it } from 'vitest';
import { HEALTH_PATH, operationPath, relayRouteOf } from '../../../src/channels/relay/relayProtocol.js';

const PREFIX = '/store-paris-1/';

describe('relay paths: what the sender builds is what the listener reads', () => {
  it.each(['clickAndCollect.order', 'stock.query', 'a.b-c_d'])('round-trips the operation type %s', (type) => {
    expect(relayRouteOf(`/store-paris-1${operationPath(type)}`, PREFIX)).toEqual({ kind: 'operation', type });
  });

  it.each<[string, ReturnType<typeof relayRouteOf>]>([
    [`/store-paris-1${HEALTH_PATH}`, { kind: 'health' }],
    ['/Store-Paris-1/health?sb-hc-token=x', { kind: 'health' }],
    ['/store-paris-1/operations/stock.query?x=1', { kind: 'operation', type: 'stock.query' }],
    ['/store-lyon-2/operations/stock.query', { kind: 'none' }],
    ['/store-paris-1/operations/', { kind: 'none' }],
    ['/store-paris-1/operations/a/b', { kind: 'none' }],
    ['/store-paris-1/operations/a%2Fb', { kind: 'none' }],
    ['/store-paris-1/%zz', { kind: 'none' }],
    ['/store-paris-1', { kind: 'none' }],
  ])('reads %s', (url, route) => {
    expect(relayRouteOf(url, PREFIX)).toEqual(route);
  });
});
