/**
 * The SDK's AMQP sockets (transport 'amqp') run without Nagle's algorithm. With it on, a send after a completion on
 * the same connection waited ~43 ms each time (a credit and a disposition written back to back, the second held
 * until the broker's delayed acknowledgement of the first). Whether a socket has Nagle off cannot be read back, so
 * the test watches setNoDelay calls on the sockets that reach the emulator's AMQP port.
 */
import { Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createServiceBusConnection } from '../../../src/channels/servicebus/serviceBusConnection.js';
import { startServiceBusEmulator } from '../../../src/emulator/servicebus/index.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

describe('AMQP sockets of the Service Bus channel', () => {
  it('turns Nagle off on the socket a connection opens to the broker, then sends and receives over it', async () => {
    const emulator = await startServiceBusEmulator({ namespaces: [{ queues: [{ name: 'store-1' }] }] });
    closeables.push(() => emulator.close());
    // The socket may still be connecting when Nagle is turned off: its remote port is read once the test is done.
    const calls: { socket: Socket; noDelay: boolean }[] = [];
    const original = Object.getOwnPropertyDescriptor(Socket.prototype, 'setNoDelay')!.value as (this: Socket, noDelay?: boolean) => Socket;
    vi.spyOn(Socket.prototype, 'setNoDelay').mockImplementation(function (this: Socket, noDelay?: boolean) {
      calls.push({ socket: this, noDelay: noDelay ?? true });
      return original.call(this, noDelay);
    });
    const connection = createServiceBusConnection({ connectionString: emulator.connectionString(), transport: 'amqp' });
    closeables.push(() => connection.close());
    await connection.createSender('store-1').send({ messageId: 'op-1', body: { n: 1 } });
    const received = new Promise<unknown>((resolve) => {
      const consumer = connection.createConsumer({
        queue: 'store-1',
        handler: async (delivery) => {
          await delivery.complete();
          resolve(delivery.message.body);
        },
      });
      consumer.start();
    });
    expect(await received).toEqual({ n: 1 });
    const toBroker = calls.filter((call) => call.socket.remotePort === emulator.port);
    expect(toBroker.map((call) => call.noDelay)).toEqual([true]);
  });
});
