import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import rhea, { type Connection } from 'rhea';
import { describe, expect, it } from 'vitest';
import { startServiceBusEmulator, type ServiceBusEmulatorOptions } from '../../../src/emulator/servicebus/index.js';
import { client, emulator, onCleanup, queues, tempDir } from './harness.js';

describe('service bus emulator: lifecycle and connection handling', () => {
  it('accepts Endpoint=sb://localhost:PORT', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString().replace('127.0.0.1', 'localhost'));
    await c.createSender('q1').sendMessages({ body: 'via localhost' });
    const [message] = await c.createReceiver('q1', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 3000 });
    expect(message?.body).toBe('via localhost');
  });

  const hasIpv6Loopback = Object.values(networkInterfaces()).some((list) => list?.some((entry) => entry.address === '::1'));

  it.runIf(hasIpv6Loopback)('listens on both 127.0.0.1 and ::1 when the host is localhost', async () => {
    const sb = await emulator({ host: 'localhost', namespaces: queues('q1') });
    expect(sb.connectionString()).toContain(`sb://localhost:${sb.port};`);
    for (const host of ['127.0.0.1', '::1']) {
      const socket = connect(sb.port, host);
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      socket.destroy();
    }
    const c = client(sb.connectionString());
    await c.createSender('q1').sendMessages({ body: 'dual stack' });
    expect(sb.messageCounts().q1).toBe(1);
  });

  it('sends heartbeats when the client asks for them through its idle timeout', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const container = rhea.create_container();
    const connection: Connection = container.connect({ host: '127.0.0.1', port: sb.port, idle_time_out: 100, reconnect: false });
    onCleanup(() => {
      connection.close();
      return Promise.resolve();
    });
    await new Promise<void>((resolve) => connection.once('connection_open', () => resolve()));
    // With no traffic at all, only heartbeats (empty frames, every 50 ms) can arrive on the socket.
    const socket = (connection as unknown as { socket: NodeJS.EventEmitter }).socket;
    let frames = 0;
    await new Promise<void>((resolve) => {
      socket.on('data', () => {
        frames += 1;
        if (frames === 3) resolve();
      });
    });
    expect(connection.is_open()).toBe(true);
  });

  it('closes clients with amqp:connection:forced, and an SDK client carries on after a restart on the same port', async () => {
    const dataDir = await tempDir();
    const first = await startServiceBusEmulator({ dataDir, namespaces: queues('q1') });
    const port = first.port;
    const c = client(first.connectionString(), { retryOptions: { maxRetries: 3, retryDelayInMs: 50, timeoutInMs: 3000 } });
    const sender = c.createSender('q1');
    await sender.sendMessages({ body: 'before' });
    await first.close();
    const second = await emulator({ dataDir, port, namespaces: queues('q1') });
    await sender.sendMessages({ body: 'after' });
    expect(second.messageCounts().q1).toBe(2);
    const got = await c.createReceiver('q1', { receiveMode: 'receiveAndDelete' }).receiveMessages(2, { maxWaitTimeInMs: 3000 });
    expect(got.map((m): unknown => m.body)).toEqual(['before', 'after']);
  });

  it('a streaming receiver (subscribe) recovers by itself after the emulator restarts', async () => {
    const dataDir = await tempDir();
    const first = await startServiceBusEmulator({ dataDir, namespaces: queues('q1') });
    const port = first.port;
    const c = client(first.connectionString(), { retryOptions: { maxRetries: 2, retryDelayInMs: 50, timeoutInMs: 2000 } });
    const receiver = c.createReceiver('q1');
    const bodies: unknown[] = [];
    const errors: Error[] = [];
    let onBody: (() => void) | undefined;
    receiver.subscribe({
      processMessage: (message) => {
        bodies.push(message.body);
        onBody?.();
        return Promise.resolve();
      },
      processError: (args) => {
        errors.push(args.error);
        return Promise.resolve();
      },
    });
    const firstBody = new Promise<void>((resolve) => (onBody = resolve));
    await c.createSender('q1').sendMessages({ body: 'before restart' });
    await firstBody;
    await first.close();
    await emulator({ dataDir, port, namespaces: queues('q1') });
    const secondBody = new Promise<void>((resolve) => (onBody = resolve));
    await c.createSender('q1').sendMessages({ body: 'after restart' });
    await secondBody;
    expect(bodies).toEqual(['before restart', 'after restart']);
    await receiver.close();
  });

  it('closes when its abort signal fires, and close() stays idempotent', async () => {
    const controller = new AbortController();
    const sb = await emulator({ namespaces: queues('q1'), abortSignal: controller.signal });
    const c = client(sb.connectionString());
    await c.createSender('q1').sendMessages({ body: 1 });
    expect(sb.activeConnections).toBe(1);
    controller.abort();
    await sb.close();
    await sb[Symbol.asyncDispose]();
    expect(sb.activeConnections).toBe(0);
    await expect(startServiceBusEmulator({ abortSignal: controller.signal })).rejects.toThrow();
  });

  it.each([
    [{ port: 70000 }, RangeError, /port/],
    [{ namespaces: [{ queues: [{ name: 'a', forwardTo: 'missing' }] }] }, TypeError, /forwardTo names "missing"/],
    [{ namespaces: [{ queues: [{ name: 'a' }, { name: 'A' }] }] }, TypeError, /already used/],
    [{ namespaces: [{ queues: [{ name: 'a', lockDurationInMs: -1 }] }] }, RangeError, /lockDurationInMs/],
    [{ sharedAccessPolicies: [] }, TypeError, /at least one policy/],
    [{ namespaces: [{ topics: [{ name: 't', subscriptions: [{ name: 's', rules: [{ name: 'r', sqlFilter: 'a = ' }] }] }] }] }, TypeError, /rules\[0\]/],
    [{ now: 1_800_000_000_000 } as unknown as ServiceBusEmulatorOptions, TypeError, /now must be a function/],
    [{ now: null } as unknown as ServiceBusEmulatorOptions, TypeError, /now must be a function .*got null/],
  ])('rejects bad options with a message that says what to change (%#)', async (options, type, message) => {
    const failure = startServiceBusEmulator(options);
    await expect(failure).rejects.toThrow(type);
    await expect(failure).rejects.toThrow(message);
  });
});
