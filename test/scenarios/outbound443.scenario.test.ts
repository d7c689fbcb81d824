/**
 * Issue 13's first promise, end to end: a store that has only outbound 443. The emulators serve nothing but their TLS
 * port (plaintext ports closed), with a development CA of their own that no environment variable trusts; the store
 * agent connects with production-form connection strings, Service Bus over WebSockets, trusting that CA through
 * `tls.caFile`, through an authenticating CONNECT proxy; the dispatcher (cloud side) reaches the same TLS port through
 * a proxy of its own. Queued operations with their reply, real-time operations through the relay and store events
 * all flow, and every connection the TLS port accepted is one a proxy opened: nothing reached the emulators directly.
 */
import { firstValueFrom, filter } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createDispatcher } from '../../src/cloud/dispatcher.js';
import { parsePolicy } from '../../src/core/policy.js';
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { defineHandler } from '../../src/store/executor.js';
import { createStoreAgent } from '../../src/store/storeAgent.js';
import { startCountingProxy } from '../support/countingProxy.js';
import { closing, onCleanup, tempDir } from '../store/harness.js';
import { dispatcherSigningOptions, storePublicKeys, storeSigningOptions } from '../support/signingKeys.js';

const RETRY = { maxRetries: 2, retryDelayInMs: 50, maxRetryDelayInMs: 500, timeoutInMs: 5_000 };
const STORE_PROXY_USER = { username: 'store-lille-1', password: 'proxy-secret' };

describe('a store with outbound 443 only: TLS, WebSockets, a proxy, no plaintext port', () => {
  it('runs operations both ways and store events, every connection through a proxy', async () => {
    const accepted: { address: string; port: number }[] = [];
    const azure = closing(
      await startEmulators({
        serviceBusPort: null,
        relayPort: null,
        tlsPort: 0,
        namespaces: [{ queues: [{ name: 'store-lille-1' }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }],
        hybridConnections: [{ name: 'store-lille-1' }],
        onTlsConnection: (peer) => accepted.push(peer),
      }),
    );
    const tls = azure.tls!;
    // The plaintext ports are closed: no port, and no development-form connection string to give out.
    expect([azure.serviceBus.port, azure.relay.port]).toEqual([0, 0]);
    expect(() => azure.serviceBusConnectionString()).toThrow(/no plaintext port/);
    expect(() => azure.relayConnectionString()).toThrow(/no plaintext port/);
    // A CA of the emulators' own (not the test run's NODE_EXTRA_CA_CERTS one): only tls.caFile makes it trusted.
    expect(tls.caFile).toBeDefined();
    expect(process.env.NODE_EXTRA_CA_CERTS ?? '').not.toBe(tls.caFile);

    const storeProxy = await startCountingProxy({ credentials: STORE_PROXY_USER });
    onCleanup(() => storeProxy.close());
    const cloudProxy = await startCountingProxy();
    onCleanup(() => cloudProxy.close());

    const agent = closing(
      createStoreAgent({
        storeId: 'lille-1',
        handlers: {
          'stock.query': defineHandler(z.object({ sku: z.string() }), ({ sku }) => ({ sku, quantity: 7 })),
          'price.update': defineHandler(z.object({ sku: z.string(), price: z.number() }), ({ sku, price }) => ({ updated: sku, price })),
        },
        expose: ['stock.query'],
        serviceBus: { connectionString: tls.serviceBusConnectionString(), transport: 'websockets', retry: RETRY },
        relay: { connectionString: tls.relayConnectionString() },
        proxy: { url: storeProxy.url, ...STORE_PROXY_USER },
        tls: { caFile: tls.caFile! },
        dataDir: await tempDir(),
        ...storeSigningOptions('lille-1'),
      }),
    );
    await agent.start();
    await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));

    const cloud = closing(
      createDispatcher({
        serviceBus: { connectionString: tls.serviceBusConnectionString(), transport: 'websockets', retry: RETRY },
        relay: { connectionString: tls.relayConnectionString() },
        proxy: { url: cloudProxy.url },
        tls: { caFile: tls.caFile! },
        policy: parsePolicy({
          operations: {
            'stock.query': { latency: 'realtime', fallback: 'reject', relayTimeoutInMs: 5_000 },
            'price.update': { latency: 'async' },
          },
        }),
        stores: [{ storeId: 'lille-1', bidirectional: true, ...storePublicKeys('lille-1') }],
        ...dispatcherSigningOptions(),
      }),
    );
    await cloud.start();

    // Real time, through the relay (the store's listener over wss through its proxy).
    const realtime = await cloud.publish({ storeId: 'lille-1', type: 'stock.query', payload: { sku: 'SKU-KETTLE' } });
    expect(realtime).toMatchObject({ channel: 'relay', outcome: 'delivered', reply: { sku: 'SKU-KETTLE', quantity: 7 } });
    // Queued, with its reply back through the cloud inbox (Service Bus over wss both ways).
    const queued = await cloud.publish({ storeId: 'lille-1', type: 'price.update', payload: { sku: 'SKU-KETTLE', price: 35 } }, { awaitReplyInMs: 15_000 });
    expect(queued).toMatchObject({ channel: 'queue', outcome: 'delivered', reply: { updated: 'SKU-KETTLE', price: 35 } });
    // A store event, store → cloud.
    const event = firstValueFrom(cloud.events$.pipe(filter((candidate) => candidate.type === 'sale.recorded')));
    await agent.emit({ type: 'sale.recorded', body: { ticket: 'T-443', total: 12.5 } });
    expect(await event).toMatchObject({ storeId: 'lille-1', type: 'sale.recorded', body: { ticket: 'T-443', total: 12.5 } });

    // The store's proxy carried the store's connections, all to the TLS port by the connection strings' host name,
    // with the store's credentials: at least the relay's control channel and the Service Bus WebSocket.
    expect(storeProxy.refused).toBe(0);
    expect(storeProxy.tunnels.length).toBeGreaterThanOrEqual(2);
    expect(storeProxy.tunnels.every((tunnel) => tunnel.connect && tunnel.hostname === 'localhost' && tunnel.port === tls.port)).toBe(true);
    expect(storeProxy.tunnels.every((tunnel) => tunnel.username === STORE_PROXY_USER.username)).toBe(true);
    expect(cloudProxy.tunnels.length).toBeGreaterThanOrEqual(2);
    expect(cloudProxy.tunnels.every((tunnel) => tunnel.connect && tunnel.port === tls.port)).toBe(true);

    // Every connection the TLS port accepted left one of the two proxies: its remote port is a proxy's upstream port.
    const proxied = (): Set<number> => new Set([...storeProxy.tunnels, ...cloudProxy.tunnels].map((tunnel) => tunnel.localPort!));
    expect(accepted.length).toBeGreaterThanOrEqual(4);
    await expect.poll(() => accepted.filter((peer) => !proxied().has(peer.port))).toEqual([]);
    // And every tunnel the store's proxy opened arrived at the TLS port.
    await expect.poll(() => storeProxy.tunnels.filter((tunnel) => !accepted.some((peer) => peer.port === tunnel.localPort))).toEqual([]);
  });
});
