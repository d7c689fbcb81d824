/**
 * The relay emulator against slow clients (slowloris): request headers dribbled on the HTTP and the WebSocket upgrade
 * paths, a sender's body dribbled, and a connection that never sends a byte, are each cut by their timeout.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startRelayEmulator, type RelayEmulatorOptions } from '../../../src/emulator/relay/index.js';
import { slowClient, type SlowClient } from '../../support/slowClient.js';
import { Closeables, echoHandler, startListener } from './relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

async function emulator(options: RelayEmulatorOptions, withListener = false): Promise<number> {
  const relay = await startRelayEmulator({ hybridConnections: [{ name: 'store-1', requiresClientAuthorization: false }], ...options });
  closeables.add(() => relay.close());
  // With a listener connected the emulator reads a sender's body (without one it answers 404 first).
  if (withListener) await startListener(closeables, relay, 'store-1', echoHandler);
  return relay.port;
}

function slow(port: number, head: string, drip: string): SlowClient {
  const client = slowClient(port, head, drip);
  closeables.add(() => client.destroy());
  return client;
}

describe('relay emulator: slow clients', () => {
  it('answers 408 and cuts a sender dribbling its request headers after headersTimeoutInMs', async () => {
    const port = await emulator({ headersTimeoutInMs: 300, requestTimeoutInMs: 60_000 });
    const client = slow(port, 'POST /store-1/operations HTTP/1.1\r\nHost: 127.0.0.1\r\n', `x-slow: ${'x'.repeat(10_000)}`);
    expect(await client.closed).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('cuts a listener dribbling its WebSocket upgrade after headersTimeoutInMs', async () => {
    const port = await emulator({ headersTimeoutInMs: 300, requestTimeoutInMs: 60_000 });
    const head = 'GET /$hc/store-1?sb-hc-action=listen HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n';
    const client = slow(port, head, `Sec-WebSocket-Version: 13${' '.repeat(10_000)}`);
    expect(await client.closed).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('answers 408 and cuts a sender dribbling its body after requestTimeoutInMs', async () => {
    const port = await emulator({ headersTimeoutInMs: 200, requestTimeoutInMs: 400 }, true);
    const head = 'POST /store-1/operations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n';
    const client = slow(port, head, ' '.repeat(10_000));
    expect(await client.closed).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('closes a connection that sends nothing after idleTimeoutInMs', async () => {
    const port = await emulator({ idleTimeoutInMs: 300, responseTimeoutInMs: 200 });
    expect(await slow(port, '', '').closed).toBe('');
  });

  it.each([
    [{ headersTimeoutInMs: 2_000, requestTimeoutInMs: 1_000 }, /headersTimeoutInMs .*at most requestTimeoutInMs/],
    [{ idleTimeoutInMs: 1_000, responseTimeoutInMs: 5_000 }, /idleTimeoutInMs .*longer than responseTimeoutInMs/],
    [{ headersTimeoutInMs: 0 }, /headersTimeoutInMs/],
  ])('refuses timeouts %j', async (options, message) => {
    await expect(startRelayEmulator(options)).rejects.toThrow(message);
  });
});
