import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatcher, type Dispatcher, type DispatcherOptions } from '../../src/cloud/dispatcher.js';
import { parsePolicy, type PolicyInput } from '../../src/core/policy.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { createClickAndCollectHandlers, EXPOSED_TYPES } from '../../samples/store-click-and-collect/handlers.js';
import { openInventory, type Inventory } from '../../samples/store-click-and-collect/inventory.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const STORES = [
  { storeId: 'paris-1', bidirectional: true },
  { storeId: 'lyon-2', bidirectional: true },
  { storeId: 'nice-3', bidirectional: false },
];
const POLICY: PolicyInput = {
  link: { failureThreshold: 2, openCooldownInMs: 300, maxCooldownInMs: 1_000, probeIntervalInMs: 60_000 },
  operations: {
    'clickAndCollect.order': { latency: 'realtime', fallback: 'queue', relayTimeoutInMs: 2_000 },
    'stock.query': { latency: 'realtime', fallback: 'cached', relayTimeoutInMs: 2_000 },
    'price.update': { latency: 'async' },
  },
};

async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-cloud-'));
  closeables.push(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

interface World {
  azure: Emulators;
  stores: Map<string, { agent: StoreAgent; inventory: Inventory }>;
}

async function world(): Promise<World> {
  const azure = await startEmulators({
    namespaces: [
      {
        queues: [
          ...STORES.map(({ storeId }) => ({ name: `store-${storeId}`, lockDurationInMs: 2_000 })),
          { name: 'cloud-inbox', requiresDuplicateDetection: true },
        ],
      },
    ],
    hybridConnections: STORES.filter((store) => store.bidirectional).map(({ storeId }) => ({ name: `store-${storeId}` })),
  });
  closeables.push(() => azure.close());
  const stores = new Map<string, { agent: StoreAgent; inventory: Inventory }>();
  for (const { storeId, bidirectional } of STORES) {
    const dataDir = await tempDir();
    const inventory = await openInventory(path.join(dataDir, 'inventory'));
    const agent = createStoreAgent({
      storeId,
      handlers: createClickAndCollectHandlers(inventory),
      serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
      ...(bidirectional ? { relay: { connectionString: azure.relayConnectionString() }, expose: [...EXPOSED_TYPES] } : {}),
      dataDir,
    });
    closeables.push(() => agent.close());
    await agent.start();
    if (bidirectional) await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
    stores.set(storeId, { agent, inventory });
  }
  return { azure, stores };
}

async function dispatcher(azure: Emulators, extra: Partial<DispatcherOptions> = {}, policy: PolicyInput = POLICY): Promise<Dispatcher> {
  const created = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString() },
    policy: parsePolicy(policy),
    stores: STORES,
    ...extra,
  });
  closeables.push(() => created.close());
  await created.start();
  return created;
}

function order(storeId: string, orderId: string, quantity = 1) {
  return { storeId, type: 'clickAndCollect.order', payload: { orderId, customer: 'Ada', lines: [{ sku: 'SKU-KETTLE', quantity }] } };
}

function linkReaches(cloud: Dispatcher, storeId: string, state: string): Promise<unknown> {
  if (cloud.link(storeId).state === JSON.stringify(state)) return Promise.resolve();
  return firstValueFrom(cloud.links$.pipe(filter((change) => change.storeId === storeId && change.state === JSON.stringify(state))));
}

/** Cuts a store's relay for good: listeners dropped and refused until `accept`. */
function cutRelay(azure: Emulators, storeId: string): () => void {
  azure.relay.refuseListeners(`store-${storeId}`);
  azure.relay.dropListeners(`store-${storeId}`);
  return () => azure.relay.acceptListeners(`store-${storeId}`);
}

describe('cloud dispatcher with three stores (two bi-directional, one async-only)', () => {
  it('delivers a real-time operation through the relay and returns the store reply', async () => {
    const { azure, stores } = await world();
    const cloud = await dispatcher(azure);
    const delivery = await cloud.publish(order('paris-1', 'CC-1', 2));
    expect(delivery).toMatchObject({ channel: 'relay', outcome: 'delivered', attempts: 1, reply: { reserved: { 'SKU-KETTLE': 2 } } });
    expect(delivery.fallbackReason).toBeUndefined();
    expect(stores.get('paris-1')!.inventory.read().stock['SKU-KETTLE']).toBe(2);
    expect(cloud.link('paris-1')).toMatchObject({ state: '"healthy"', tags: ['relay'] });
  });

  it('falls back to the queue within one failed call when the listeners are dropped, and runs the order once', async () => {
    const { azure, stores } = await world();
    const cloud = await dispatcher(azure);
    const paris = stores.get('paris-1')!;
    const down = firstValueFrom(paris.agent.state$.pipe(filter((state) => state.relay !== 'listening')));
    cutRelay(azure, 'paris-1');
    await down;
    const executed = firstValueFrom(paris.agent.events$.pipe(filter((event) => event.type === 'executed')));
    const delivery = await cloud.publish(order('paris-1', 'CC-2', 1), { awaitReplyInMs: 10_000 });
    expect(delivery).toMatchObject({ channel: 'queue', outcome: 'delivered', attempts: 2, fallbackReason: 'RELAY_NO_LISTENER' });
    expect(delivery.reply).toMatchObject({ reserved: { 'SKU-KETTLE': 1 } });
    expect(await executed).toMatchObject({ operationId: delivery.operationId, channel: 'queue', replayed: false });
    expect(paris.inventory.read().stock['SKU-KETTLE']).toBe(3);
  });

  it('stops calling the relay after failureThreshold failures until the cool-down ends, then one trial closes the breaker', async () => {
    const { azure, stores } = await world();
    const cloud = await dispatcher(azure, {}, { ...POLICY, link: { ...POLICY.link, openCooldownInMs: 1_500, maxCooldownInMs: 3_000 } });
    const lyon = stores.get('lyon-2')!;
    // A half-open relay: the store still believes it listens (so it announces nothing), the relay has no listener.
    azure.relay.silenceListeners('store-lyon-2');
    const first = await cloud.publish(order('lyon-2', 'CC-3'));
    const second = await cloud.publish(order('lyon-2', 'CC-4'));
    expect([first.attempts, second.attempts]).toEqual([2, 2]);
    expect(first.fallbackReason).toBe('RELAY_NO_LISTENER');
    expect(cloud.link('lyon-2').state).toBe('"tripped"');
    const third = await cloud.publish(order('lyon-2', 'CC-5'));
    expect(third).toMatchObject({ channel: 'queue', outcome: 'queued', attempts: 1, fallbackReason: 'relay-unavailable' });

    const reconnected = firstValueFrom(lyon.agent.state$.pipe(filter((state) => state.relay === 'reconnecting')));
    azure.relay.dropListeners('store-lyon-2');
    await reconnected;
    await firstValueFrom(lyon.agent.state$.pipe(filter((state) => state.relay === 'listening')));
    await linkReaches(cloud, 'lyon-2', 'probing');
    const trial = await cloud.publish(order('lyon-2', 'CC-6'));
    expect(trial).toMatchObject({ channel: 'relay', outcome: 'delivered', attempts: 1 });
    expect(cloud.link('lyon-2').state).toBe('"healthy"');
  });

  it('serves the last cached reply for a cached-fallback type while the relay is down, and rejects per a reject policy', async () => {
    const { azure, stores } = await world();
    // The dispatcher's own clock dates the cached reply: five minutes pass on it while the relay is cut.
    let cloudNow = Date.now();
    const cloud = await dispatcher(azure, { now: () => cloudNow });
    const query = { storeId: 'paris-1', type: 'stock.query', payload: { skus: ['SKU-MUG-BLUE'] } };
    const fresh = await cloud.publish(query);
    expect(fresh).toMatchObject({ channel: 'relay', outcome: 'delivered', reply: { stock: { 'SKU-MUG-BLUE': 12 } } });
    const down = firstValueFrom(stores.get('paris-1')!.agent.state$.pipe(filter((state) => state.relay !== 'listening')));
    cutRelay(azure, 'paris-1');
    await down;
    cloudNow += 5 * 60_000;
    const cached = await cloud.publish(query);
    expect(cached).toMatchObject({ channel: null, outcome: 'served-cached', reply: { stock: { 'SKU-MUG-BLUE': 12 } }, fallbackReason: 'RELAY_NO_LISTENER' });
    expect(cached.cachedAgeInMs).toBe(5 * 60_000);
    const never = await cloud.publish({ ...query, payload: { skus: ['SKU-TEA-GREEN'] } });
    expect(never).toMatchObject({ outcome: 'rejected', rejection: { code: 'NO_CACHED_REPLY' } });

    const strict = await dispatcher(azure, {}, { ...POLICY, operations: { ...POLICY.operations, 'clickAndCollect.order': { latency: 'realtime', fallback: 'reject' } } });
    const refused = await strict.publish(order('paris-1', 'CC-7'));
    expect(refused).toMatchObject({ channel: null, outcome: 'rejected', rejection: { code: 'REALTIME_UNAVAILABLE' } });
  });

  it('sends asynchronous operations through the queue even while the relay is healthy, and awaits the reply when asked', async () => {
    const { azure, stores } = await world();
    const cloud = await dispatcher(azure);
    const queued = await cloud.publish({ storeId: 'paris-1', type: 'price.update', payload: { prices: { 'SKU-KETTLE': 35 } } });
    expect(queued).toMatchObject({ channel: 'queue', outcome: 'queued', attempts: 1 });
    expect(queued.fallbackReason).toBeUndefined();
    const answered = await cloud.publish({ storeId: 'nice-3', type: 'price.update', payload: { prices: { 'SKU-KETTLE': 36 } } }, { awaitReplyInMs: 10_000 });
    expect(answered).toMatchObject({ channel: 'queue', outcome: 'delivered', reply: { updated: 1 } });
    expect(stores.get('nice-3')!.inventory.read().prices['SKU-KETTLE']).toBe(36);
  });

  it('routes real-time operations to an async-only store through the queue', async () => {
    const { azure } = await world();
    const cloud = await dispatcher(azure);
    const delivery = await cloud.publish(order('nice-3', 'CC-8'), { awaitReplyInMs: 10_000 });
    expect(delivery).toMatchObject({ channel: 'queue', outcome: 'delivered', attempts: 1, fallbackReason: 'relay-unavailable' });
    expect(cloud.link('nice-3')).toMatchObject({ state: '"disabled"', tags: [] });
  });

  it('returns the store refusal as is, without falling back', async () => {
    const { azure } = await world();
    const cloud = await dispatcher(azure);
    const delivery = await cloud.publish(order('paris-1', 'CC-9', 99));
    expect(delivery).toMatchObject({ channel: 'relay', outcome: 'rejected', attempts: 1, rejection: { code: 'OPERATION_REJECTED' } });
    expect(cloud.link('paris-1').state).toBe('"healthy"');
  });

  it('keeps a tripped breaker across a dispatcher restart, routes to the fallback, and probes when the cool-down ends', async () => {
    const { azure, stores } = await world();
    const dataDir = await tempDir();
    const policy: PolicyInput = { ...POLICY, link: { ...POLICY.link, openCooldownInMs: 800, maxCooldownInMs: 2_000 } };
    const first = await dispatcher(azure, { dataDir }, policy);
    const paris = stores.get('paris-1')!;
    const down = firstValueFrom(paris.agent.state$.pipe(filter((state) => state.relay !== 'listening')));
    const accept = cutRelay(azure, 'paris-1');
    await down;
    await first.publish(order('paris-1', 'CC-10'));
    await first.publish(order('paris-1', 'CC-11'));
    expect(first.link('paris-1').state).toBe('"tripped"');
    await first.close();

    const second = await dispatcher(azure, { dataDir }, policy);
    expect(second.link('paris-1').state).toBe('"tripped"');
    const routed = await second.publish(order('paris-1', 'CC-12'));
    expect(routed).toMatchObject({ channel: 'queue', attempts: 1, fallbackReason: 'relay-unavailable' });
    accept();
    await firstValueFrom(paris.agent.state$.pipe(filter((state) => state.relay === 'listening')));
    await linkReaches(second, 'paris-1', 'probing');
    expect(await second.publish(order('paris-1', 'CC-13'))).toMatchObject({ channel: 'relay', outcome: 'delivered' });
  });

  it('refuses an unknown store and emits deliveries and store events as streams', async () => {
    const { azure, stores } = await world();
    const cloud = await dispatcher(azure);
    await expect(cloud.publish(order('brest-9', 'CC-1'))).rejects.toMatchObject({ code: 'STORE_UNKNOWN' });
    const event = firstValueFrom(cloud.events$);
    const delivery = firstValueFrom(cloud.deliveries$);
    await stores.get('lyon-2')!.agent.emit({ type: 'sale.recorded', body: { total: 3 } });
    expect(await event).toMatchObject({ storeId: 'lyon-2', type: 'sale.recorded', body: { total: 3 } });
    await cloud.publish({ storeId: 'lyon-2', type: 'price.update', payload: { prices: {} } });
    expect(await delivery).toMatchObject({ storeId: 'lyon-2', outcome: 'queued' });
    expect(cloud.link('lyon-2').counters.deliveries).toEqual({ 'queue:queued': 1 });
  });
});
