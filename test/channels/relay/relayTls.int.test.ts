/**
 * The relay channel over TLS with an extra CA (`tls.caFile`), as the demo and the whole-path benchmark run it: the
 * trust list (Node's roots plus the CA) is parsed once per pool, not once per connection.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import tls from 'node:tls';
import { firstValueFrom, filter } from 'rxjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createRelayListener } from '../../../src/channels/relay/relayListener.js';
import { createRelaySender } from '../../../src/channels/relay/relaySender.js';
import type { JsonValue } from '../../../src/core/json.js';
import { createOperation } from '../../../src/core/operation.js';
import { startEmulators } from '../../../src/emulator/startEmulators.js';

const HC = 'store-tls-1';
const closeables: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  while (closeables.length > 0) await closeables.pop()!();
});

async function listeningPair() {
  const emulators = await startEmulators({ serviceBusPort: null, relayPort: null, tlsPort: 0, hybridConnections: [{ name: HC }] });
  closeables.push(() => emulators.close());
  const { caFile } = emulators.tls!;
  expect(caFile).toBeDefined();
  const listener = createRelayListener({
    connectionString: emulators.tls!.relayConnectionString(),
    hybridConnection: HC,
    expose: ['stock.query'],
    execute: (operation) => Promise.resolve({ echo: operation.payload }),
    tls: { caFile: caFile! },
    proxy: false,
  });
  closeables.push(() => listener.close());
  const listening = firstValueFrom(listener.state$.pipe(filter((state) => state.status === 'listening')));
  listener.start();
  await listening;
  const sender = createRelaySender({ connectionString: emulators.tls!.relayConnectionString(), hybridConnection: HC, tls: { caFile: caFile! }, proxy: false });
  closeables.push(() => sender.close());
  return { emulators, sender };
}

const query = (payload: { [key: string]: JsonValue }) => createOperation({ storeId: 'tls-1', type: 'stock.query', payload, latency: 'realtime', timeToLiveInMs: 60_000 });
const withTrustList = (spy: { mock: { calls: [tls.SecureContextOptions?][] } }) => spy.mock.calls.filter(([options]) => options?.ca !== undefined);

describe('relay channel over TLS with tls.caFile', () => {
  it('opens several keep-alive connections for concurrent calls without building a secure context for each', async () => {
    const { sender } = await listeningPair();

    // From here on, only the sender's pool connects: count its sockets and the trust lists parsed for them.
    const createSecureContext = vi.spyOn(tls, 'createSecureContext');
    let connections = 0;
    const onConnected = (): void => void (connections += 1);
    subscribe('undici:client:connected', onConnected);
    closeables.push(() => void unsubscribe('undici:client:connected', onConnected));

    const operations = Array.from({ length: 8 }, (_, n) => query({ n }));
    const replies = await Promise.all(operations.map((operation) => sender.send(operation, { timeoutInMs: 10_000 })));

    expect(replies.map((reply) => reply.result)).toEqual(operations.map((operation) => ({ echo: operation.payload })));
    expect(connections).toBeGreaterThan(1);
    expect(withTrustList(createSecureContext)).toHaveLength(0);
  });

  it('takes a large request through a rendezvous socket without building a secure context for it', async () => {
    const { emulators, sender } = await listeningPair();
    await sender.send(query({ warm: true }), { timeoutInMs: 10_000 });
    const createSecureContext = vi.spyOn(tls, 'createSecureContext');
    const rendezvousBefore = emulators.relay.counters().rendezvousRequests;

    // Larger than the relay sends inline (64 KiB): the listener opens a rendezvous WebSocket to take it.
    const large = query({ note: 'x'.repeat(80 * 1024) });
    const reply = await sender.send(large, { timeoutInMs: 10_000 });

    expect(reply.result).toEqual({ echo: large.payload });
    expect(emulators.relay.counters().rendezvousRequests).toBe(rendezvousBefore + 1);
    expect(withTrustList(createSecureContext)).toHaveLength(0);
  });

  it('builds one secure context for the listeners of a process that trust the same CA (many store agents in one process)', async () => {
    const names = ['store-tls-a', 'store-tls-b'];
    const emulators = await startEmulators({ serviceBusPort: null, relayPort: null, tlsPort: 0, hybridConnections: names.map((name) => ({ name })) });
    closeables.push(() => emulators.close());
    const createSecureContext = vi.spyOn(tls, 'createSecureContext');
    const listeners = names.map((hybridConnection) =>
      createRelayListener({
        connectionString: emulators.tls!.relayConnectionString(),
        hybridConnection,
        expose: [],
        execute: () => Promise.resolve(null),
        tls: { caFile: emulators.tls!.caFile! },
        proxy: false,
      }),
    );
    for (const listener of listeners) closeables.push(() => listener.close());
    await Promise.all(
      listeners.map((listener) => {
        const listening = firstValueFrom(listener.state$.pipe(filter((state) => state.status === 'listening')));
        listener.start();
        return listening;
      }),
    );
    expect(withTrustList(createSecureContext)).toHaveLength(1);
  });
});
