/**
 * A store agent behind an HTTPS proxy: its relay listener works end to end through the proxy, and its Service Bus
 * connection, given a production-form connection string, defaults to AMQP over WebSockets through the same proxy
 * (counted at the proxy as a CONNECT to the plaintext Service Bus port, where TLS then fails: the queue side stops at
 * the route here). The whole of it, over the emulators' TLS port with the plaintext ports closed, is
 * test/scenarios/outbound443.scenario.test.ts.
 */
import { firstValueFrom, filter } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createRelaySender } from '../../src/channels/relay/relaySender.js';
import { createOperation } from '../../src/core/operation.js';
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { defineHandler } from '../../src/store/executor.js';
import { createStoreAgent } from '../../src/store/storeAgent.js';
import { startCountingProxy } from '../support/countingProxy.js';
import { signed, storeSigningOptions } from '../support/signingKeys.js';
import { closing, onCleanup, tempDir } from './harness.js';

describe('store agent through an HTTPS proxy', () => {
  it('listens on the relay through the proxy and opens Service Bus over WebSockets through it by default', async () => {
    const azure = closing(await startEmulators({ autoCreate: true }));
    const proxy = await startCountingProxy({ credentials: { username: 'store', password: 'secret' } });
    onCleanup(() => proxy.close());
    // Production form: no UseDevelopmentEmulator, so the store's default transport applies (WebSockets).
    const serviceBus = azure.serviceBusConnectionString().replace(/;UseDevelopmentEmulator=true/i, '');
    const agent = closing(
      createStoreAgent({
        storeId: 'lille-1',
        handlers: { 'stock.query': defineHandler(z.object({ sku: z.string() }), ({ sku }) => ({ sku, quantity: 3 })) },
        expose: ['stock.query'],
        serviceBus: { connectionString: serviceBus, retry: { maxRetries: 0, timeoutInMs: 2_000 } },
        relay: { connectionString: azure.relayConnectionString() },
        proxy: { url: proxy.url, username: 'store', password: 'secret' },
        dataDir: await tempDir(),
        ...storeSigningOptions('lille-1'),
      }),
    );
    await agent.start();
    await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));

    const operation = signed(createOperation({ storeId: 'lille-1', type: 'stock.query', payload: { sku: 'A-1' }, latency: 'realtime', timeToLiveInMs: 60_000 }));
    const sender = closing(createRelaySender({ connectionString: azure.relayConnectionString(), hybridConnection: 'store-lille-1', proxy: false }));
    await expect(sender.send(operation, { timeoutInMs: 5_000 })).resolves.toMatchObject({ result: { sku: 'A-1', quantity: 3 } });

    expect(proxy.tunnelsTo(azure.relay.port)).toHaveLength(1);
    await expect(proxy.tunnelWhere((tunnel) => tunnel.port === azure.serviceBus.port)).resolves.toMatchObject({ hostname: '127.0.0.1', connect: true, username: 'store' });
    expect(proxy.tunnels.every((tunnel) => tunnel.port === azure.relay.port || tunnel.port === azure.serviceBus.port)).toBe(true);
  });
});
