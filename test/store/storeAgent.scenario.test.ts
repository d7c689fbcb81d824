import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient, type ServiceBusReceivedMessage } from '@azure/service-bus';
import { filter, firstValueFrom, take, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { createRelaySender } from '../../src/channels/relay/relaySender.js';
import { createOperation, type Operation } from '../../src/core/operation.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { startServiceBusEmulator } from '../../src/emulator/servicebus/index.js';
import { createStoreAgent, type StoreAgent, type StoreAgentEvent } from '../../src/store/storeAgent.js';
import { createClickAndCollectHandlers, EXPOSED_TYPES } from '../../samples/store-click-and-collect/handlers.js';
import { openInventory, type Inventory } from '../../samples/store-click-and-collect/inventory.js';
import { signed, signedBody, storeSigningOptions } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const STORE = 'paris-1';
const QUEUE = `store-${STORE}`;
const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const QUEUES = [
  { name: QUEUE, lockDurationInMs: 2_000 },
  { name: 'cloud-inbox', requiresDuplicateDetection: true },
];

async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-store-'));
  closeables.push(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

async function emulators(): Promise<Emulators> {
  const started = await startEmulators({ namespaces: [{ queues: QUEUES }], hybridConnections: [{ name: QUEUE }] });
  closeables.push(() => started.close());
  return started;
}

function cloudClient(connectionString: string): ServiceBusClient {
  const client = new ServiceBusClient(connectionString, { retryOptions: RETRY });
  closeables.push(() => client.close());
  return client;
}

async function startStore(options: { serviceBus: string; relay?: string; dataDir: string; inventory: Inventory }): Promise<StoreAgent> {
  const agent = createStoreAgent({
    storeId: STORE,
    ...storeSigningOptions(STORE),
    handlers: createClickAndCollectHandlers(options.inventory),
    serviceBus: { connectionString: options.serviceBus, retry: RETRY },
    ...(options.relay === undefined ? {} : { relay: { connectionString: options.relay }, expose: [...EXPOSED_TYPES] }),
    dataDir: options.dataDir,
  });
  closeables.push(() => agent.close());
  await agent.start();
  return agent;
}

/** An order as the cloud sends it: signed, overrides included. */
function order(overrides: Partial<Operation> = {}, quantity = 2): Operation {
  return signed({
    ...createOperation({
      storeId: STORE,
      type: 'clickAndCollect.order',
      payload: { orderId: 'CC-1', customer: 'Ada', lines: [{ sku: 'SKU-KETTLE', quantity }] },
      latency: 'realtime',
      timeToLiveInMs: 60_000,
      replyTo: 'cloud-inbox',
    }),
    ...overrides,
  });
}

function executions(agent: StoreAgent, count: number): Promise<StoreAgentEvent[]> {
  return firstValueFrom(agent.events$.pipe(filter((event) => event.type === 'executed'), take(count), toArray()));
}

/** Receives `count` messages from the cloud inbox (or the store queue's dead-letter queue) and completes them. */
async function receive(client: ServiceBusClient, queue: string, count: number, subQueue?: 'deadLetter'): Promise<ServiceBusReceivedMessage[]> {
  const receiver = client.createReceiver(queue, subQueue === undefined ? {} : { subQueueType: subQueue });
  const messages: ServiceBusReceivedMessage[] = [];
  while (messages.length < count) {
    const batch = await receiver.receiveMessages(count - messages.length, { maxWaitTimeInMs: 5_000 });
    if (batch.length === 0) throw new Error(`only ${messages.length} of ${count} messages arrived in ${queue}`);
    for (const message of batch) await receiver.completeMessage(message);
    messages.push(...batch);
  }
  await receiver.close();
  return messages;
}

function replies(messages: ServiceBusReceivedMessage[]): ServiceBusReceivedMessage[] {
  return messages.filter((message) => message.subject === 'reply');
}

describe('store agent: one executor for both channels', () => {
  it('runs an operation delivered through the relay and then the queue once, returning the same result both times', async () => {
    const azure = await emulators();
    const dataDir = await tempDir();
    const inventory = await openInventory(path.join(dataDir, 'inventory'));
    const agent = await startStore({ serviceBus: azure.serviceBusConnectionString(), relay: azure.relayConnectionString(), dataDir, inventory });
    await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
    const operation = order();
    const executed = executions(agent, 2);

    const viaRelay = await createRelaySender({ connectionString: azure.relayConnectionString(), hybridConnection: QUEUE }).send(operation, { timeoutInMs: 5_000 });
    const client = cloudClient(azure.serviceBusConnectionString());
    await client.createSender(QUEUE).sendMessages({ body: operation, messageId: operation.id });

    const [first, second] = await executed;
    expect(first).toMatchObject({ operationId: operation.id, channel: 'relay', outcome: 'done', replayed: false });
    expect(second).toMatchObject({ operationId: operation.id, channel: 'queue', outcome: 'done', replayed: true });
    const inbox = await receive(client, 'cloud-inbox', 2);
    // The relay answered over HTTP; the queue delivery, a replay, answers through the cloud inbox.
    expect(inbox.map((message) => message.subject).sort()).toEqual(['announcement', 'reply']);
    const reply = replies(inbox);
    expect(reply).toHaveLength(1);
    expect(reply[0]!.correlationId).toBe(operation.id);
    expect((reply[0]!.body as { body: unknown }).body).toEqual({ outcome: 'done', result: viaRelay.result });
    expect(viaRelay.result).toMatchObject({ reserved: { 'SKU-KETTLE': 2 } });
    expect(inventory.read().stock['SKU-KETTLE']).toBe(2);
    expect(inventory.read().tickets).toHaveLength(1);
  });

  it('runs the handler once when the same id arrives on both channels at the same moment', async () => {
    const azure = await emulators();
    const dataDir = await tempDir();
    const inventory = await openInventory(path.join(dataDir, 'inventory'));
    const agent = await startStore({ serviceBus: azure.serviceBusConnectionString(), relay: azure.relayConnectionString(), dataDir, inventory });
    await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
    const operation = order({}, 1);
    const executed = executions(agent, 2);
    const client = cloudClient(azure.serviceBusConnectionString());
    const [viaRelay] = await Promise.all([
      createRelaySender({ connectionString: azure.relayConnectionString(), hybridConnection: QUEUE }).send(operation, { timeoutInMs: 5_000 }),
      client.createSender(QUEUE).sendMessages({ body: operation, messageId: operation.id }),
    ]);
    const events = await executed;
    expect(events.filter((event) => event.type === 'executed' && !event.replayed)).toHaveLength(1);
    expect(viaRelay.result).toMatchObject({ reserved: { 'SKU-KETTLE': 1 } });
    expect(inventory.read().stock['SKU-KETTLE']).toBe(3);
  });

  it('records a refusal and returns the same refusal on a redelivery', async () => {
    const azure = await emulators();
    const dataDir = await tempDir();
    const inventory = await openInventory(path.join(dataDir, 'inventory'));
    const agent = await startStore({ serviceBus: azure.serviceBusConnectionString(), relay: azure.relayConnectionString(), dataDir, inventory });
    await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
    const tooMany = order({}, 50);
    const relay = createRelaySender({ connectionString: azure.relayConnectionString(), hybridConnection: QUEUE });
    await expect(relay.send(tooMany, { timeoutInMs: 5_000 })).rejects.toMatchObject({ code: 'OPERATION_REJECTED', message: expect.stringContaining('insufficient stock') });
    await expect(relay.send(tooMany, { timeoutInMs: 5_000 })).rejects.toMatchObject({ code: 'OPERATION_REJECTED' });
    expect(inventory.read().stock['SKU-KETTLE']).toBe(4);
  });

  it('dead-letters invalid, expired, misrouted and unknown-type operations with their reasons', async () => {
    const azure = await emulators();
    const dataDir = await tempDir();
    const inventory = await openInventory(path.join(dataDir, 'inventory'));
    const agent = await startStore({ serviceBus: azure.serviceBusConnectionString(), dataDir, inventory });
    const client = cloudClient(azure.serviceBusConnectionString());
    const past = new Date(Date.now() - 60_000).toISOString();
    const bad = [
      { body: signedBody({ not: 'an operation' }), reason: 'OPERATION_INVALID', says: 'id' },
      { body: order({ createdAt: new Date(Date.now() - 120_000).toISOString(), expiresAt: past }), reason: 'OPERATION_EXPIRED', says: 'expired' },
      { body: order({ storeId: 'lyon-2' }), reason: 'OPERATION_MISROUTED', says: 'lyon-2' },
      { body: order({ type: 'loyalty.award' }), reason: 'OPERATION_TYPE_UNKNOWN', says: 'loyalty.award' },
      { body: order({ payload: { orderId: 'X', customer: 'Y', lines: [] } }), reason: 'OPERATION_INVALID', says: 'payload.lines' },
    ];
    const deadLettered = firstValueFrom(agent.events$.pipe(filter((event) => event.type === 'dead-lettered'), take(bad.length), toArray()));
    await client.createSender(QUEUE).sendMessages(bad.map(({ body }, index) => ({ body, messageId: `bad-${index}` })));
    await deadLettered;
    const dead = await receive(client, QUEUE, bad.length, 'deadLetter');
    const byId = new Map(dead.map((message) => [message.messageId, message]));
    bad.forEach(({ reason, says }, index) => {
      const message = byId.get(`bad-${index}`);
      expect(message?.deadLetterReason, `bad-${index}`).toBe(reason);
      expect(message?.deadLetterErrorDescription, `bad-${index}`).toContain(says);
    });
  });

  it('with no retry window, abandons an operation whose handler fails for a moment, and runs it on the next delivery', async () => {
    const azure = await emulators();
    const dataDir = await tempDir();
    let calls = 0;
    const agent = createStoreAgent({
      storeId: STORE,
      ...storeSigningOptions(STORE),
      handlers: {
        'price.update': {
          payload: { safeParse: (value: unknown) => ({ success: true as const, data: value }) },
          handle: () => {
            calls += 1;
            if (calls === 1) throw new Error('database busy');
            return { applied: true };
          },
        },
      },
      // In-process retries are handlerRetry.scenario.test.ts's story; this one is the queue's own redelivery.
      serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY, handlerRetry: { maxRetryWindowInMs: 0 } },
      dataDir,
    });
    closeables.push(() => agent.close());
    await agent.start();
    const events = firstValueFrom(agent.events$.pipe(filter((event) => event.type === 'failed' || event.type === 'executed'), take(2), toArray()));
    const operation = signed(createOperation({ storeId: STORE, type: 'price.update', payload: { prices: {} }, latency: 'async', timeToLiveInMs: 60_000 }));
    await cloudClient(azure.serviceBusConnectionString()).createSender(QUEUE).sendMessages({ body: operation, messageId: operation.id });
    const [failed, executed] = await events;
    expect(failed).toMatchObject({ type: 'failed', operationId: operation.id, error: { code: 'HANDLER_FAILED' } });
    expect(executed).toMatchObject({ type: 'executed', operationId: operation.id, replayed: false });
    expect(calls).toBe(2);
  });

  it('announces its relay to the cloud inbox, and store events follow in order', async () => {
    const azure = await emulators();
    const dataDir = await tempDir();
    const inventory = await openInventory(path.join(dataDir, 'inventory'));
    const agent = await startStore({ serviceBus: azure.serviceBusConnectionString(), relay: azure.relayConnectionString(), dataDir, inventory });
    await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
    await agent.emit({ type: 'sale.recorded', body: { ticket: 'T-1', total: 12.5 } });
    const inbox = await receive(cloudClient(azure.serviceBusConnectionString()), 'cloud-inbox', 2);
    expect(inbox.map((message) => [message.subject, (message.body as { type: string }).type, (message.body as { body: unknown }).body])).toEqual([
      ['announcement', 'store.announced', { relay: 'up', outbox: { pending: 0, parked: 0 } }],
      ['event', 'sale.recorded', { ticket: 'T-1', total: 12.5 }],
    ]);
    expect(inbox[0]!.applicationProperties).toMatchObject({ storeId: STORE, kind: 'announcement' });
  });
});

describe('store agent: one injected clock', () => {
  it('judges expiry, dates its ledger entries and dates its events by the clock it is given, not the machine’s', async () => {
    const azure = await emulators();
    const dataDir = await tempDir();
    const inventory = await openInventory(path.join(dataDir, 'inventory'));
    // Two hours ahead of the machine: an operation valid for one more minute by the machine's clock has expired here.
    const storeNow = Date.now() + 2 * 3_600_000;
    const agent = createStoreAgent({
      storeId: STORE,
      ...storeSigningOptions(STORE),
      handlers: createClickAndCollectHandlers(inventory),
      serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
      dataDir,
      now: () => storeNow,
    });
    closeables.push(() => agent.close());
    await agent.start();
    const client = cloudClient(azure.serviceBusConnectionString());
    const expiredHere = order({ latency: 'async' });
    const validHere = signed(
      createOperation(
        { storeId: STORE, type: 'stock.query', payload: { skus: ['SKU-KETTLE'] }, latency: 'async', timeToLiveInMs: 60_000, replyTo: 'cloud-inbox' },
        { nowInMs: storeNow },
      ),
    );
    const deadLettered = firstValueFrom(agent.events$.pipe(filter((event) => event.type === 'dead-lettered')));
    const executed = executions(agent, 1);
    await client.createSender(QUEUE).sendMessages([expiredHere, validHere].map((body) => ({ body, messageId: body.id })));
    expect(await deadLettered).toMatchObject({ operationId: expiredHere.id, reason: 'OPERATION_EXPIRED' });
    expect(await executed).toMatchObject([{ operationId: validHere.id, outcome: 'done' }]);

    await agent.emit({ type: 'sale.recorded', body: { ticket: 'T-2' } });
    // The async-only store's relay announcement, the report of the expired order, the stock reply and the event: all
    // dated by the store's clock.
    const inbox = await receive(client, 'cloud-inbox', 4);
    expect(inbox.map((message) => message.subject)).toEqual(['announcement', 'reply', 'reply', 'event']);
    expect(inbox[1]!.body).toMatchObject({ correlationId: expiredHere.id, body: { outcome: 'failed', executed: false, error: { code: 'OPERATION_EXPIRED' } } });
    const createdAt = inbox.map((message) => (message.body as { createdAt: string }).createdAt);
    expect(createdAt).toEqual(Array.from({ length: 4 }, () => new Date(storeNow).toISOString()));
  });
});

describe('store agent: the outbox while Service Bus is down', () => {
  it('accumulates events, then flushes them in order once Service Bus is back: none lost, none duplicated', async () => {
    const dataDir = await tempDir();
    const busDir = await tempDir();
    const namespaces = [{ queues: QUEUES }];
    const first = await startServiceBusEmulator({ namespaces, dataDir: busDir });
    const port = first.port;
    const connectionString = first.connectionString();
    const inventory = await openInventory(path.join(dataDir, 'inventory'));
    const agent = await startStore({ serviceBus: connectionString, dataDir, inventory });
    await firstValueFrom(agent.events$.pipe(filter((event) => event.type === 'outbox.flushed' && event.pending === 0)));
    await first.close();

    const failing = firstValueFrom(agent.events$.pipe(filter((event) => event.type === 'outbox.error')));
    for (let n = 0; n < 20; n += 1) await agent.emit({ type: 'sale.recorded', body: { n } });
    await failing;
    expect(agent.state.outboxPending).toBe(20);

    const second = await startServiceBusEmulator({ namespaces, dataDir: busDir, port });
    closeables.push(() => second.close());
    await firstValueFrom(agent.events$.pipe(filter((event) => event.type === 'outbox.flushed' && event.pending === 0)));
    const inbox = await receive(cloudClient(connectionString), 'cloud-inbox', 21);
    const sales = inbox.filter((message) => message.subject === 'event').map((message) => (message.body as { body: { n: number } }).body.n);
    expect(sales).toEqual(Array.from({ length: 20 }, (_, n) => n));
    expect(new Set(inbox.map((message) => message.messageId)).size).toBe(inbox.length);
    const [extra] = await cloudClient(connectionString).createReceiver('cloud-inbox').peekMessages(1);
    expect(extra).toBeUndefined();
  });
});
