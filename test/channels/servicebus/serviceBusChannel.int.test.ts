import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient } from '@azure/service-bus';
import { filter, firstValueFrom, take, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createServiceBusConnection,
  type QueueConsumerEvent,
  type QueueDelivery,
  type ServiceBusConnection,
} from '../../../src/channels/servicebus/serviceBusConnection.js';
import { failureOf } from '../../support/failureOf.js';
import { startServiceBusEmulator, type ServiceBusEmulator, type ServiceBusEmulatorOptions } from '../../../src/emulator/servicebus/index.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const FAST = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };

async function startEmulator(options: ServiceBusEmulatorOptions = {}): Promise<ServiceBusEmulator> {
  const emulator = await startServiceBusEmulator({ namespaces: [{ queues: [{ name: 'store-1' }, { name: 'store-2', maxDeliveryCount: 2 }] }], ...options });
  closeables.push(() => emulator.close());
  return emulator;
}

function connect(connectionString: string): ServiceBusConnection {
  const connection = createServiceBusConnection({ connectionString, retry: FAST });
  closeables.push(() => connection.close());
  return connection;
}

function rawClient(connectionString: string): ServiceBusClient {
  const client = new ServiceBusClient(connectionString, { retryOptions: FAST });
  closeables.push(() => client.close());
  return client;
}


/** Collects deliveries until `count` have been handled by `settle`. */
function consume(connection: ServiceBusConnection, queue: string, count: number, settle: (delivery: QueueDelivery, index: number) => Promise<void>, concurrency = 1) {
  const seen: QueueDelivery['message'][] = [];
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const consumer = connection.createConsumer({
    queue,
    concurrency,
    handler: async (delivery) => {
      const index = seen.length;
      seen.push(delivery.message);
      await settle(delivery, index);
      if (seen.length >= count) done();
    },
  });
  consumer.start();
  return { consumer, seen, finished };
}

describe('Service Bus channel against the emulator, with the real SDK', () => {
  it('sends a message and delivers it once to a consumer that completes it', async () => {
    const emulator = await startEmulator();
    const connection = connect(emulator.connectionString());
    await connection.createSender('store-1').send({ messageId: 'op-1', body: { type: 'price.update' }, correlationId: 'c-1', replyTo: 'cloud-inbox', subject: 'operation', applicationProperties: { storeId: 'store-1' } });
    const { seen, finished } = consume(connection, 'store-1', 1, (delivery) => delivery.complete());
    await finished;
    expect(seen).toEqual([
      expect.objectContaining({ messageId: 'op-1', body: { type: 'price.update' }, correlationId: 'c-1', replyTo: 'cloud-inbox', subject: 'operation', applicationProperties: { storeId: 'store-1' }, deliveryCount: 1 }),
    ]);
    const [left] = await rawClient(emulator.connectionString()).createReceiver('store-1').peekMessages(1);
    expect(left).toBeUndefined();
  });

  it('delivers a batch of 500 in order to a consumer of concurrency 1', async () => {
    const emulator = await startEmulator();
    const connection = connect(emulator.connectionString());
    const messages = Array.from({ length: 500 }, (_, n) => ({ messageId: `op-${n}`, body: { n } }));
    await connection.createSender('store-1').send(messages);
    const { seen, finished } = consume(connection, 'store-1', 500, (delivery) => delivery.complete());
    await finished;
    expect(seen.map((message) => (message.body as { n: number }).n)).toEqual(messages.map((_, n) => n));
  });

  it('with concurrency 1, gives the next message once a handler starts completing, never before', async () => {
    const emulator = await startEmulator();
    const connection = connect(emulator.connectionString());
    await connection.createSender('store-1').send([{ messageId: 'op-1', body: 1 }, { messageId: 'op-2', body: 2 }]);
    const steps: string[] = [];
    let secondStarted!: () => void;
    const second = new Promise<void>((resolve) => (secondStarted = resolve));
    let firstDone!: () => void;
    const first = new Promise<void>((resolve) => (firstDone = resolve));
    const { finished } = consume(connection, 'store-1', 2, async (delivery, index) => {
      steps.push(`start ${index}`);
      if (index === 1) {
        secondStarted();
        await delivery.complete();
        return;
      }
      steps.push('completing 0');
      const completion = delivery.complete();
      // The first handler holds on until the second has started: that happens only if completing freed its place.
      await second;
      await completion;
      steps.push('completed 0');
      firstDone();
    });
    await Promise.all([finished, first]);
    expect(steps.slice(0, 3)).toEqual(['start 0', 'completing 0', 'start 1']);
    expect(steps).toContain('completed 0');
    const [left] = await rawClient(emulator.connectionString()).createReceiver('store-1').peekMessages(1);
    expect(left).toBeUndefined();
  });

  it('redelivers a message whose handler failed, with a higher delivery count', async () => {
    const emulator = await startEmulator();
    const connection = connect(emulator.connectionString());
    await connection.createSender('store-1').send({ messageId: 'op-1', body: 'x' });
    const { seen, finished } = consume(connection, 'store-1', 2, async (delivery, index) => {
      if (index === 0) throw new Error('handler crashed');
      await delivery.complete();
    });
    await finished;
    expect(seen.map((message) => [message.messageId, message.deliveryCount])).toEqual([
      ['op-1', 1],
      ['op-1', 2],
    ]);
  });

  it('dead-letters with a reason and a description', async () => {
    const emulator = await startEmulator();
    const connection = connect(emulator.connectionString());
    await connection.createSender('store-1').send({ messageId: 'op-bad', body: {} });
    const { finished } = consume(connection, 'store-1', 1, (delivery) => delivery.deadLetter({ reason: 'OPERATION_INVALID', description: '"id" must be a UUID' }));
    await finished;
    const [dead] = await rawClient(emulator.connectionString()).createReceiver('store-1', { subQueueType: 'deadLetter' }).receiveMessages(1, { maxWaitTimeInMs: 3_000 });
    expect(dead).toMatchObject({ messageId: 'op-bad', deadLetterReason: 'OPERATION_INVALID', deadLetterErrorDescription: '"id" must be a UUID' });
  });

  it('refuses to settle a message twice', async () => {
    const emulator = await startEmulator();
    const connection = connect(emulator.connectionString());
    await connection.createSender('store-1').send({ messageId: 'op-1', body: 1 });
    let second: unknown;
    const { finished } = consume(connection, 'store-1', 1, async (delivery) => {
      await delivery.complete();
      second = await delivery.complete().catch((error: unknown) => error);
    });
    await finished;
    expect(second).toBeInstanceOf(TypeError);
  });

  it('sets the Service Bus time to live from timeToLiveInMs', async () => {
    const emulator = await startEmulator();
    const connection = connect(emulator.connectionString());
    await connection.createSender('store-1').send({ messageId: 'op-ttl', body: 1, timeToLiveInMs: 120_000 });
    const [peeked] = await rawClient(emulator.connectionString()).createReceiver('store-1').peekMessages(1);
    expect(peeked?.timeToLive).toBe(120_000);
  });

  it.each([
    ['an unknown queue', (emulator: ServiceBusEmulator) => ({ connectionString: emulator.connectionString(), queue: 'store-nowhere', body: 1 }), 'QUEUE_NOT_FOUND', false],
    ['a wrong key', (emulator: ServiceBusEmulator) => ({ connectionString: emulator.connectionString().replace('SAS_KEY_VALUE', 'wrong'), queue: 'store-1', body: 1 }), 'SERVICE_BUS_UNAUTHORIZED', false],
    ['a message over 256 KiB', (emulator: ServiceBusEmulator) => ({ connectionString: emulator.connectionString(), queue: 'store-1', body: 'x'.repeat(300 * 1024) }), 'PAYLOAD_TOO_LARGE', false],
  ])('maps sending to %s to its code', async (_label, setup, code, retryable) => {
    const emulator = await startEmulator();
    const { connectionString, queue, body } = setup(emulator);
    const error = await failureOf(connect(connectionString).createSender(queue).send({ messageId: 'm', body }));
    expect(error.code).toBe(code);
    expect(error.retryable).toBe(retryable);
  });

  it('reports receiver errors as events and keeps trying, without erroring the stream', async () => {
    const emulator = await startEmulator();
    const connection = connect(emulator.connectionString());
    const consumer = connection.createConsumer({ queue: 'store-nowhere', handler: () => Promise.resolve(), restartDelayInMs: 20 });
    const events = firstValueFrom(
      consumer.events$.pipe(
        filter((event) => event.type !== 'receiving'),
        take(4),
        toArray(),
      ),
    );
    consumer.start();
    const seen = await events;
    const errors = seen.filter((event): event is Extract<QueueConsumerEvent, { type: 'error' }> => event.type === 'error');
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]!.error.code).toBe('QUEUE_NOT_FOUND');
    expect(seen.some((event) => event.type === 'restarting')).toBe(true);
    let completed = false;
    consumer.events$.subscribe({ complete: () => (completed = true) });
    await consumer.close();
    expect(completed).toBe(true);
  });

  it('keeps consuming across an emulator restart on the same port and data directory', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-sb-'));
    closeables.push(() => rm(dataDir, { recursive: true, force: true }));
    const queuesConfig = [{ queues: [{ name: 'store-1' }] }];
    const first = await startServiceBusEmulator({ namespaces: queuesConfig, dataDir });
    const connectionString = first.connectionString();
    const connection = connect(connectionString);
    const received: string[] = [];
    let arrived: (id: string) => void = () => undefined;
    const consumer = connection.createConsumer({
      queue: 'store-1',
      restartDelayInMs: 20,
      handler: async (delivery) => {
        received.push(delivery.message.messageId!);
        await delivery.complete();
        arrived(delivery.message.messageId!);
      },
    });
    consumer.start();
    const sender = connection.createSender('store-1');
    const firstArrival = new Promise<string>((resolve) => (arrived = resolve));
    await sender.send({ messageId: 'before', body: 1 });
    expect(await firstArrival).toBe('before');

    await first.close();
    const second = await startServiceBusEmulator({ namespaces: queuesConfig, dataDir, port: first.port });
    closeables.push(() => second.close());
    const secondArrival = new Promise<string>((resolve) => (arrived = resolve));
    await sender.send({ messageId: 'after', body: 2 });
    expect(await secondArrival).toBe('after');
    expect(received).toEqual(['before', 'after']);
  });

  it('closes everything it created, idempotently', async () => {
    const emulator = await startEmulator();
    const connection = createServiceBusConnection({ connectionString: emulator.connectionString(), retry: FAST });
    const consumer = connection.createConsumer({ queue: 'store-1', handler: () => Promise.resolve() });
    const receiving = firstValueFrom(consumer.events$.pipe(filter((event) => event.type === 'receiving')));
    consumer.start();
    await receiving;
    await connection.createSender('store-1').send({ messageId: 'm', body: 1 });
    await connection.close();
    await connection.close();
    expect(() => connection.createSender('store-1')).toThrow(expect.objectContaining({ code: 'SERVICE_BUS_UNAVAILABLE' }));
    expect(emulator.activeConnections).toBe(0);
  });
});
