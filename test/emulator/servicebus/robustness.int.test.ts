import { connect, createServer, type Server, type Socket } from 'node:net';
import { isServiceBusError, type ServiceBusReceivedMessage, type ServiceBusReceiver } from '@azure/service-bus';
import { describe, expect, it } from 'vitest';
import { client, emulator, eventually, failureOf, onCleanup, queues } from './harness.js';
import type { ServiceBusEmulator } from '../../../src/emulator/servicebus/index.js';

async function drain(receiver: ServiceBusReceiver, expected: number): Promise<ServiceBusReceivedMessage[]> {
  const received: ServiceBusReceivedMessage[] = [];
  while (received.length < expected) {
    const batch = await receiver.receiveMessages(Math.min(200, expected - received.length), { maxWaitTimeInMs: 3000 });
    if (batch.length === 0) break;
    received.push(...batch);
  }
  return received;
}

/** Sends raw bytes and resolves once the emulator has closed the socket. */
async function sendRaw(port: number, payload: Buffer): Promise<void> {
  const socket = connect(port, '127.0.0.1');
  onCleanup(() => {
    socket.destroy();
    return Promise.resolve();
  });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.write(payload);
  await new Promise<void>((resolve) => socket.once('close', () => resolve()));
}

async function roundTrip(sb: ServiceBusEmulator, queue: string, body: string): Promise<void> {
  const c = client(sb.connectionString());
  await c.createSender(queue).sendMessages({ body });
  const [message] = await drain(c.createReceiver(queue, { receiveMode: 'receiveAndDelete' }), 1);
  expect(message?.body).toBe(body);
  await c.close();
}

/** A TCP proxy to the emulator that can cut a connection after a given number of client bytes. */
async function cuttingProxy(target: number): Promise<{ port: number; cutAfter(extraBytes: number): Promise<void>; cutNow(): void }> {
  let forwarded = 0;
  let limit = Infinity;
  let onCut: () => void = () => undefined;
  const cut = new Promise<void>((resolve) => (onCut = resolve));
  const pairs: Socket[] = [];
  const server: Server = createServer((downstream) => {
    const upstream = connect(target, '127.0.0.1');
    pairs.push(downstream, upstream);
    downstream.on('error', () => undefined);
    upstream.on('error', () => undefined);
    upstream.on('data', (chunk: Buffer) => downstream.write(chunk));
    downstream.on('data', (chunk: Buffer) => {
      const room = limit - forwarded;
      if (room >= chunk.length) {
        forwarded += chunk.length;
        upstream.write(chunk);
        return;
      }
      // Forward part of the chunk, then vanish without closing AMQP.
      upstream.write(chunk.subarray(0, Math.max(0, room)));
      forwarded = limit;
      upstream.destroy();
      downstream.destroy();
      onCut();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(async () => {
    for (const socket of pairs) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    cutAfter(extraBytes: number) {
      limit = forwarded + extraBytes;
      return cut;
    },
    cutNow() {
      for (const socket of pairs) socket.destroy();
    },
  };
}

describe('service bus emulator: robustness', () => {
  it('survives garbage bytes, a bad protocol header and a garbage frame', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    await sendRaw(sb.port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await sendRaw(sb.port, Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x09, 0x01, 0x00, 0x00]));
    await sendRaw(sb.port, Buffer.concat([Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x00, 0x01, 0x00, 0x00]), Buffer.from([0, 0, 0, 12, 2, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc])]));
    await roundTrip(sb, 'q1', 'still alive');
    expect(sb.activeConnections).toBe(0);
  });

  it('a sender that vanishes mid-transfer loses nothing that was acknowledged and stores nothing partial', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const proxy = await cuttingProxy(sb.port);
    const connectionString = sb.connectionString().replace(`:${sb.port};`, `:${proxy.port};`);
    const c = client(connectionString, { retryOptions: { maxRetries: 0, retryDelayInMs: 50, timeoutInMs: 2000 } });
    const sender = c.createSender('q1');
    await sender.sendMessages({ body: 'acknowledged' });
    const cut = proxy.cutAfter(20_000);
    const failed = failureOf(sender.sendMessages({ body: Buffer.alloc(100_000, 7) }));
    await cut;
    expect(await failed).toBeInstanceOf(Error);
    await eventually(() => sb.activeConnections === 0);
    expect(sb.messageCounts().q1).toBe(1);
    const [message] = await drain(client(sb.connectionString()).createReceiver('q1', { receiveMode: 'receiveAndDelete' }), 1);
    expect(message?.body).toBe('acknowledged');
  });

  it('a receiver that vanishes while holding locks gets its messages redelivered after the locks lapse', async () => {
    const sb = await emulator({ namespaces: [{ queues: [{ name: 'q1', lockDurationInMs: 300 }] }] });
    const proxy = await cuttingProxy(sb.port);
    const viaProxy = client(sb.connectionString().replace(`:${sb.port};`, `:${proxy.port};`), { retryOptions: { maxRetries: 0, retryDelayInMs: 50, timeoutInMs: 2000 } });
    const direct = client(sb.connectionString());
    await direct.createSender('q1').sendMessages([{ body: 1 }, { body: 2 }, { body: 3 }]);
    const doomed = viaProxy.createReceiver('q1', { maxAutoLockRenewalDurationInMs: 0 });
    const held = await drain(doomed, 3);
    expect(held).toHaveLength(3);
    proxy.cutNow();
    const lost = failureOf(doomed.completeMessage(held[0]!));
    const survivor = direct.createReceiver('q1');
    const again = await drain(survivor, 3);
    expect(again.map((m): unknown => m.body)).toEqual([1, 2, 3]);
    expect(again.every((m) => m.deliveryCount === 1)).toBe(true);
    for (const m of again) await survivor.completeMessage(m);
    expect(sb.messageCounts().q1).toBe(0);
    const error = await lost;
    expect(isServiceBusError(error) || error instanceof Error).toBe(true);
  });

  it('serves 50 concurrent connections without losing or duplicating a message', { timeout: 60_000 }, async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const clients = Array.from({ length: 50 }, () => client(sb.connectionString()));
    await Promise.all(
      clients.map(async (c, i) => {
        const sender = c.createSender('q1');
        for (let j = 0; j < 4; j++) {
          await sender.sendMessages(Array.from({ length: 5 }, (_, k) => ({ body: `${i}-${j * 5 + k}` })));
        }
      }),
    );
    expect(sb.activeConnections).toBe(50);
    expect(sb.messageCounts().q1).toBe(1000);
    const receivers = clients.slice(0, 10).map((c) => c.createReceiver('q1'));
    const received: string[] = [];
    await Promise.all(
      receivers.map(async (receiver) => {
        for (;;) {
          const batch = await receiver.receiveMessages(50, { maxWaitTimeInMs: 500 });
          if (batch.length === 0) return;
          for (const m of batch) {
            received.push(m.body as string);
            await receiver.completeMessage(m);
          }
        }
      }),
    );
    expect(received).toHaveLength(1000);
    expect(new Set(received).size).toBe(1000);
    expect(sb.messageCounts().q1).toBe(0);
  });
});
