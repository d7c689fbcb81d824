/**
 * The Service Bus SDK over WebSockets through a real CONNECT proxy, against the plaintext emulator: what is checked is
 * the route, the SDK's WebSocket reaching the proxy as a CONNECT to the emulator's host and port with the proxy's
 * credentials (the TLS handshake that follows fails on the plaintext AMQP port). Over the emulators' TLS port, end to
 * end: test/scenarios/outbound443.scenario.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createDeadLetterQueue } from '../../../src/channels/servicebus/deadLetterQueue.js';
import { createServiceBusConnection, type ServiceBusConnectionOptions } from '../../../src/channels/servicebus/serviceBusConnection.js';
import { isStorelinkError } from '../../../src/core/errors.js';
import { startServiceBusEmulator, type ServiceBusEmulator } from '../../../src/emulator/servicebus/index.js';
import { startCountingProxy, type CountingProxy } from '../../support/countingProxy.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const CREDENTIALS = { username: 'store-lille', password: 'proxy-secret' };
const ONE_ATTEMPT = { maxRetries: 0, retryDelayInMs: 50, maxRetryDelayInMs: 50, timeoutInMs: 3_000 };

async function startEmulator(): Promise<ServiceBusEmulator> {
  const emulator = await startServiceBusEmulator({ namespaces: [{ queues: [{ name: 'store-1' }] }] });
  closeables.push(() => emulator.close());
  return emulator;
}

async function startProxy(): Promise<CountingProxy> {
  const proxy = await startCountingProxy({ credentials: CREDENTIALS });
  closeables.push(() => proxy.close());
  return proxy;
}

function connect(options: ServiceBusConnectionOptions) {
  const connection = createServiceBusConnection({ retry: ONE_ATTEMPT, ...options });
  closeables.push(() => connection.close());
  return connection;
}

describe('Service Bus over WebSockets through an HTTPS proxy', () => {
  it("sends the SDK's WebSocket through the proxy as a CONNECT to the namespace's host and port", async () => {
    const emulator = await startEmulator();
    const proxy = await startProxy();
    const connection = connect({ connectionString: emulator.connectionString(), transport: 'websockets', proxy: { url: proxy.url, ...CREDENTIALS } });
    const sent = connection.createSender('store-1').send({ messageId: 'm-1', body: { hello: 'proxy' } }).then(
      () => undefined,
      (error: unknown) => error,
    );
    const tunnel = await proxy.tunnelWhere((candidate) => candidate.port === emulator.port);
    expect(tunnel).toMatchObject({ hostname: '127.0.0.1', port: emulator.port, connect: true, username: CREDENTIALS.username });
    // TLS over the plaintext AMQP port cannot succeed; the route is what this test is about.
    const error = await sent;
    expect(isStorelinkError(error)).toBe(true);
    expect(proxy.refused).toBe(0);
  });

  it('connects to the endpoint address, not the connection string host, through the proxy', async () => {
    const emulator = await startEmulator();
    const proxy = await startProxy();
    const connection = connect({
      connectionString: 'Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE',
      endpointAddress: `https://127.0.0.1:${emulator.port}`,
      transport: 'websockets',
      proxy: { url: proxy.url, ...CREDENTIALS },
    });
    void connection.createSender('store-1').send({ messageId: 'm-2', body: {} }).catch(() => undefined);
    await expect(proxy.tunnelWhere((candidate) => candidate.port === emulator.port)).resolves.toMatchObject({ hostname: '127.0.0.1', connect: true });
    expect(proxy.tunnels.some((candidate) => candidate.hostname.includes('contoso'))).toBe(false);
  });

  it("refuses a proxy with transport 'amqp' when the connection (or the dead-letter tool) is created", async () => {
    const emulator = await startEmulator();
    const proxy = { url: 'http://127.0.0.1:9', ...CREDENTIALS };
    expect(() => createServiceBusConnection({ connectionString: emulator.connectionString(), transport: 'amqp', proxy })).toThrow(/cannot go through an HTTPS proxy/);
    expect(() => createDeadLetterQueue({ connectionString: emulator.connectionString(), queue: 'store-1', proxy })).toThrow(/cannot go through an HTTPS proxy/);
  });
});
