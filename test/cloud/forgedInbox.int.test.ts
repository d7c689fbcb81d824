/**
 * A message in the cloud inbox counts only if the store it claims to be from signed it, and a reply only settles an
 * operation of that store. An attacker with Send on `cloud-inbox` (the emulator's namespace key, through the raw SDK)
 * forges announcements, replies and events: each is completed without effect, logged, and counted in
 * `storelink_inbox_rejected_total{reason}`. Real dispatcher, real store agent, emulators and SDKs.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient } from '@azure/service-bus';
import { filter, firstValueFrom, take, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatcher, type Dispatcher, type InboxRejection, type StoreEventMessage } from '../../src/cloud/dispatcher.js';
import { createDispatcherMetrics } from '../../src/cloud/metrics.js';
import { topStateOf } from '../../src/cloud/storeLinks.js';
import { parsePolicy } from '../../src/core/policy.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { createClickAndCollectHandlers, EXPOSED_TYPES } from '../../samples/store-click-and-collect/handlers.js';
import { openInventory } from '../../samples/store-click-and-collect/inventory.js';
import { parsePrometheusText } from '../support/prometheusText.js';
import { dispatcherSigningOptions, signedStoreMessage, storeKey, storePublicKeys, storeSigningOptions, strangerKey } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
/** paris-1 runs a store agent with a relay; lyon-2 is async-only and never runs, so its operations wait in its queue. */
const STORES = [
  { storeId: 'paris-1', bidirectional: true, ...storePublicKeys('paris-1') },
  { storeId: 'lyon-2', bidirectional: false, ...storePublicKeys('lyon-2') },
];

interface World {
  azure: Emulators;
  agent: StoreAgent;
  cloud: Dispatcher;
  /** The raw SDK with the namespace key: Send on the cloud inbox. */
  attacker: ServiceBusClient;
  rejections: InboxRejection[];
}

async function world(): Promise<World> {
  const azure = await startEmulators({
    namespaces: [{ queues: [{ name: 'store-paris-1' }, { name: 'store-lyon-2' }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }],
    hybridConnections: [{ name: 'store-paris-1' }],
  });
  closeables.push(() => azure.close());
  const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-forged-'));
  closeables.push(() => rm(dataDir, { recursive: true, force: true }));
  const agent = createStoreAgent({
    storeId: 'paris-1',
    ...storeSigningOptions('paris-1'),
    handlers: createClickAndCollectHandlers(await openInventory(path.join(dataDir, 'inventory'))),
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString() },
    expose: [...EXPOSED_TYPES],
    dataDir,
  });
  closeables.push(() => agent.close());
  await agent.start();
  await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
  const cloud = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString() },
    policy: parsePolicy({
      link: { failureThreshold: 2, openCooldownInMs: 60_000, probeIntervalInMs: 60_000 },
      operations: { 'stock.query': { latency: 'realtime', fallback: 'cached', relayTimeoutInMs: 5_000 }, 'price.update': { latency: 'async' } },
    }),
    stores: STORES,
    ...dispatcherSigningOptions(),
  });
  closeables.push(() => cloud.close());
  const rejections: InboxRejection[] = [];
  cloud.inboxRejections$.subscribe((rejection) => rejections.push(rejection));
  await cloud.start();
  // The store's own "up" announcement brings the link to healthy.
  if (topStateOf(cloud.link('paris-1').state) !== 'healthy') {
    await firstValueFrom(cloud.links$.pipe(filter((change) => change.storeId === 'paris-1' && topStateOf(change.state) === 'healthy')));
  }
  const attacker = new ServiceBusClient(azure.serviceBusConnectionString(), { retryOptions: RETRY });
  closeables.push(() => attacker.close());
  return { azure, agent, cloud, attacker, rejections };
}

function storeMessage(fields: { kind: 'reply' | 'event' | 'announcement'; type: string; storeId: string; body: unknown; correlationId?: string }) {
  return { id: randomUUID(), createdAt: new Date().toISOString(), ...fields };
}

async function forge(world: World, messages: object[]): Promise<InboxRejection[]> {
  const dropped = firstValueFrom(world.cloud.inboxRejections$.pipe(take(messages.length), toArray()));
  const sender = world.attacker.createSender('cloud-inbox');
  for (const message of messages) await sender.sendMessages({ body: message, messageId: (message as { id: string }).id });
  return dropped;
}

describe('the cloud inbox takes only what its stores signed', () => {
  it("drops forged announcements: a healthy store's real-time mode stays on and its queries still go through the relay", async () => {
    const w = await world();
    const metrics = createDispatcherMetrics(w.cloud);
    closeables.push(() => Promise.resolve(metrics.close()));
    const announcement = (relay: string) => storeMessage({ kind: 'announcement', type: 'store.announced', storeId: 'paris-1', body: { relay } });
    const impostor = { ...strangerKey(), keyId: storeKey('paris-1').keyId };
    const dropped = await forge(w, [
      announcement('disabled'),
      signedStoreMessage(announcement('down'), strangerKey('store-paris-1-rogue')),
      signedStoreMessage(announcement('down'), impostor),
      signedStoreMessage(announcement('down'), storeKey('lyon-2')),
      { ...announcement('disabled'), signature: { keyId: storeKey('paris-1').keyId, value: 'not base64url at all' } },
    ]);
    // The inbox takes several messages at once, so the order they are dropped in is not the order they were sent in.
    expect(dropped.map((rejection) => rejection.reason).sort()).toEqual(['bad-signature', 'bad-signature', 'unknown-key', 'unknown-key', 'unsigned']);
    expect(topStateOf(w.cloud.link('paris-1').state)).toBe('healthy');
    const query = await w.cloud.publish({ storeId: 'paris-1', type: 'stock.query', payload: { skus: ['SKU-KETTLE'] } });
    expect(query).toMatchObject({ channel: 'relay', outcome: 'delivered' });
    const counted = parsePrometheusText(await metrics.render());
    expect(counted.value('storelink_inbox_rejected_total', { reason: 'unsigned' })).toBe(1);
    expect(counted.value('storelink_inbox_rejected_total', { reason: 'unknown-key' })).toBe(2);
    expect(counted.value('storelink_inbox_rejected_total', { reason: 'bad-signature' })).toBe(2);

    // The same announcement signed by the store itself does move the link: the path the forgeries took is live.
    const moved = firstValueFrom(w.cloud.links$.pipe(filter((change) => change.storeId === 'paris-1')));
    await w.attacker.createSender('cloud-inbox').sendMessages({ body: signedStoreMessage(announcement('down'), storeKey('paris-1')) });
    expect(topStateOf((await moved).state)).not.toBe('healthy');
  });

  it("drops forged replies — unsigned, under another store's id, or settling another store's operation — and the publisher waits for the real one", async () => {
    const w = await world();
    const operationId = randomUUID();
    const publishing = w.cloud.publish({ id: operationId, storeId: 'lyon-2', type: 'price.update', payload: { prices: { 'SKU-KETTLE': 1 } } }, { awaitReplyInMs: 60_000 });
    const settledEarly: unknown[] = [];
    void publishing.then((delivery) => settledEarly.push(delivery));
    // The publisher is waiting once its operation is in lyon-2's queue.
    const receiver = w.attacker.createReceiver('store-lyon-2');
    await expect.poll(async () => (await receiver.peekMessages(1)).length).toBe(1);
    await receiver.close();
    const rejected = { outcome: 'rejected', error: { code: 'OPERATION_REJECTED', message: 'forged' } };
    const reply = (storeId: string) => storeMessage({ kind: 'reply', type: 'price.update', storeId, correlationId: operationId, body: rejected });
    const dropped = await forge(w, [
      reply('lyon-2'),
      // Claims lyon-2, signed by paris-1 (a stolen store key speaks for its own store only).
      signedStoreMessage(reply('lyon-2'), storeKey('paris-1')),
      // Signed by paris-1 as paris-1, about lyon-2's operation.
      signedStoreMessage(reply('paris-1'), storeKey('paris-1')),
    ]);
    expect(dropped.map((rejection) => rejection.reason).sort()).toEqual(['unknown-key', 'unsigned', 'wrong-store']);
    expect(dropped.find((rejection) => rejection.reason === 'wrong-store')?.message).toContain('sent to store "lyon-2"');
    expect(settledEarly).toEqual([]);

    const outcome = firstValueFrom(w.cloud.outcomes$.pipe(filter((reported) => reported.operationId === operationId)));
    await w.attacker
      .createSender('cloud-inbox')
      .sendMessages({ body: signedStoreMessage(storeMessage({ kind: 'reply', type: 'price.update', storeId: 'lyon-2', correlationId: operationId, body: { outcome: 'done', result: { applied: 1 } } }), storeKey('lyon-2')) });
    expect(await publishing).toMatchObject({ operationId, channel: 'queue', outcome: 'delivered', reply: { applied: 1 } });
    expect(await outcome).toMatchObject({ storeId: 'lyon-2', outcome: 'done' });
  });

  it('drops forged store events: events$ carries only what the store signed', async () => {
    const w = await world();
    const seen: StoreEventMessage[] = [];
    w.cloud.events$.subscribe((event) => seen.push(event));
    const event = (storeId: string) => storeMessage({ kind: 'event', type: 'sale.recorded', storeId, body: { total: 9_999 } });
    const dropped = await forge(w, [event('paris-1'), signedStoreMessage(event('paris-1'), { ...strangerKey(), keyId: storeKey('paris-1').keyId }), event('nowhere-9')]);
    expect(dropped.map((rejection) => rejection.reason).sort()).toEqual(['bad-signature', 'unknown-store', 'unsigned']);
    const genuine = firstValueFrom(w.cloud.events$);
    await w.agent.emit({ type: 'sale.recorded', body: { total: 12.5 } });
    expect(await genuine).toMatchObject({ storeId: 'paris-1', type: 'sale.recorded', body: { total: 12.5 } });
    expect(seen.map((received) => received.body)).toEqual([{ total: 12.5 }]);
  });
});
