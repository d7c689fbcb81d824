import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { createMachine } from 'xstate';
import { storeLinkMachine } from '../../machines/storeLink.machine.js';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import { request } from 'undici';
import { createDispatcher, type Dispatcher, type DispatcherOptions, type OperationOutcome } from '../../src/cloud/dispatcher.js';
import { createCloudHttpApi } from '../../src/cloud/httpApi.js';
import { topStateOf } from '../../src/cloud/storeLinks.js';
import { parsePolicy, type PolicyInput } from '../../src/core/policy.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { createClickAndCollectHandlers, EXPOSED_TYPES } from '../../samples/store-click-and-collect/handlers.js';
import { openInventory, type Inventory } from '../../samples/store-click-and-collect/inventory.js';
import { dispatcherSigningOptions, storePublicKeys, storeSigningOptions } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const API_TOKEN = 'scenario-token-0123456789';

const STORES = [
  { storeId: 'paris-1', bidirectional: true, ...storePublicKeys('paris-1') },
  { storeId: 'lyon-2', bidirectional: true, ...storePublicKeys('lyon-2') },
  { storeId: 'nice-3', bidirectional: false, ...storePublicKeys('nice-3') },
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

/**
 * Three stores on the emulators. `storeInbox` sends the stores' replies and announcements elsewhere than the
 * dispatcher's inbox, for stories where the cloud must notice a relay's death by itself.
 */
async function world(options: { storeInbox?: string } = {}): Promise<World> {
  const azure = await startEmulators({
    namespaces: [
      {
        queues: [
          ...STORES.map(({ storeId }) => ({ name: `store-${storeId}`, lockDurationInMs: 2_000 })),
          { name: 'cloud-inbox', requiresDuplicateDetection: true },
          ...(options.storeInbox === undefined ? [] : [{ name: options.storeInbox }]),
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
      ...storeSigningOptions(storeId),
      handlers: createClickAndCollectHandlers(inventory),
      serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY, ...(options.storeInbox === undefined ? {} : { cloudInbox: options.storeInbox }) },
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
    ...dispatcherSigningOptions(),
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
  if (topStateOf(cloud.link(storeId).state) === state) return Promise.resolve();
  return firstValueFrom(cloud.links$.pipe(filter((change) => change.storeId === storeId && topStateOf(change.state) === state)));
}

/** Cuts a store's relay for good: listeners dropped and refused until `accept`. */
function cutRelay(azure: Emulators, storeId: string): () => void {
  azure.relay.refuseListeners(`store-${storeId}`);
  azure.relay.dropListeners(`store-${storeId}`);
  return () => azure.relay.acceptListeners(`store-${storeId}`);
}

/**
 * Cuts paris-1's relay, trips its breaker with two real-time orders through a first dispatcher, closes it, and starts
 * a second one on the same data directory, whose link must come back tripped.
 */
async function tripThenRestart(azure: Emulators, dataDir: string, policy: PolicyInput, afterCut: () => Promise<void> = () => Promise.resolve()) {
  const first = await dispatcher(azure, { dataDir }, policy);
  const accept = cutRelay(azure, 'paris-1');
  await afterCut();
  await first.publish(order('paris-1', 'CC-10'));
  await first.publish(order('paris-1', 'CC-11'));
  expect(topStateOf(first.link('paris-1').state)).toBe('tripped');
  await first.close();
  const second = await dispatcher(azure, { dataDir }, policy);
  expect(topStateOf(second.link('paris-1').state)).toBe('tripped');
  return { second, accept };
}

describe('cloud dispatcher with three stores (two bi-directional, one async-only)', () => {
  it('delivers a real-time operation through the relay and returns the store reply', async () => {
    const { azure, stores } = await world();
    const cloud = await dispatcher(azure);
    const delivery = await cloud.publish(order('paris-1', 'CC-1', 2));
    expect(delivery).toMatchObject({ channel: 'relay', outcome: 'delivered', attempts: 1, reply: { reserved: { 'SKU-KETTLE': 2 } } });
    expect(delivery.fallbackReason).toBeUndefined();
    expect(stores.get('paris-1')!.inventory.read().stock['SKU-KETTLE']).toBe(2);
    expect(cloud.link('paris-1')).toMatchObject({ state: { healthy: 'waiting' }, tags: ['relay'] });
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
    expect(topStateOf(cloud.link('lyon-2').state)).toBe('tripped');
    const third = await cloud.publish(order('lyon-2', 'CC-5'));
    expect(third).toMatchObject({ channel: 'queue', outcome: 'queued', attempts: 1, fallbackReason: 'relay-unavailable' });

    const reconnected = firstValueFrom(lyon.agent.state$.pipe(filter((state) => state.relay === 'reconnecting')));
    azure.relay.dropListeners('store-lyon-2');
    await reconnected;
    await firstValueFrom(lyon.agent.state$.pipe(filter((state) => state.relay === 'listening')));
    await linkReaches(cloud, 'lyon-2', 'probing');
    const trial = await cloud.publish(order('lyon-2', 'CC-6'));
    expect(trial).toMatchObject({ channel: 'relay', outcome: 'delivered', attempts: 1 });
    expect(topStateOf(cloud.link('lyon-2').state)).toBe('healthy');
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
    expect(cloud.link('nice-3')).toMatchObject({ state: 'disabled', tags: [] });
  });

  it('returns the store refusal as is, without falling back', async () => {
    const { azure } = await world();
    const cloud = await dispatcher(azure);
    const delivery = await cloud.publish(order('paris-1', 'CC-9', 99));
    expect(delivery).toMatchObject({ channel: 'relay', outcome: 'rejected', attempts: 1, rejection: { code: 'OPERATION_REJECTED' } });
    expect(topStateOf(cloud.link('paris-1').state)).toBe('healthy');
  });

  it('keeps a tripped breaker across a dispatcher restart, routes to the fallback, and probes when the cool-down ends', async () => {
    const { azure, stores } = await world();
    const dataDir = await tempDir();
    const policy: PolicyInput = { ...POLICY, link: { ...POLICY.link, openCooldownInMs: 800, maxCooldownInMs: 2_000 } };
    const paris = stores.get('paris-1')!;
    const down = firstValueFrom(paris.agent.state$.pipe(filter((state) => state.relay !== 'listening')));
    const { second, accept } = await tripThenRestart(azure, dataDir, policy, async () => void (await down));
    const routed = await second.publish(order('paris-1', 'CC-12'));
    expect(routed).toMatchObject({ channel: 'queue', attempts: 1, fallbackReason: 'relay-unavailable' });
    // The way back to healthy goes through probing (the cool-down's end or the store's "up"); its trial may succeed at
    // once, so the states are recorded from the moment the relay comes back rather than caught in passing.
    const states: string[] = [];
    const recording = second.links$.pipe(filter((change) => change.storeId === 'paris-1')).subscribe((change) => states.push(topStateOf(change.state)));
    accept();
    await firstValueFrom(paris.agent.state$.pipe(filter((state) => state.relay === 'listening')));
    await linkReaches(second, 'paris-1', 'healthy');
    recording.unsubscribe();
    expect(states.indexOf('probing')).toBeGreaterThanOrEqual(0);
    expect(states.indexOf('probing')).toBeLessThan(states.indexOf('healthy'));
    expect(await second.publish(order('paris-1', 'CC-13'))).toMatchObject({ channel: 'relay', outcome: 'delivered' });
  });

  it('a breaker tripped before a restart probes when its cool-down ends, with no announcement and no traffic', async () => {
    // The stores' announcements never reach this dispatcher: only the chart's own timer can move the link.
    const { azure } = await world({ storeInbox: 'muted-inbox' });
    const dataDir = await tempDir();
    const policy: PolicyInput = { ...POLICY, link: { ...POLICY.link, openCooldownInMs: 800, maxCooldownInMs: 2_000 } };
    const { second } = await tripThenRestart(azure, dataDir, policy);
    await linkReaches(second, 'paris-1', 'probing');
  });

  it('starts a store fresh, with a warning, when its persisted link was written by another chart', async () => {
    const { azure } = await world();
    const dataDir = await tempDir();
    const first = await dispatcher(azure, { dataDir });
    const tripped = linkReaches(first, 'paris-1', 'tripped');
    cutRelay(azure, 'paris-1');
    await tripped;
    await first.close();

    const warnings: { object: object; message: string | undefined }[] = [];
    const recording: Logger = {
      ...silentLogger,
      warn: (object, message) => void warnings.push({ object, message }),
      child: () => recording,
    };
    // The same chart, edited: a snapshot is restored only under the chart (name and structure) that wrote it.
    const edited = createMachine({ ...storeLinkMachine.config, description: 'edited by an architect' }, storeLinkMachine.implementations);
    const second = await dispatcher(azure, { dataDir, chart: edited, logger: recording });
    expect(topStateOf(second.link('paris-1').state)).not.toBe('tripped');
    expect(warnings).toContainEqual({
      object: expect.objectContaining({ storeId: 'paris-1', chart: expect.objectContaining({ id: 'storeLink' }) }),
      message: expect.stringContaining('written by another chart'),
    });
  });

  it('a healthy link whose relay dies while no traffic flows is tripped by its own health probe', async () => {
    const { azure } = await world({ storeInbox: 'muted-inbox' });
    const cloud = await dispatcher(azure, {}, { ...POLICY, link: { ...POLICY.link, healthyProbeIntervalInMs: 300 } });
    expect(topStateOf(cloud.link('paris-1').state)).toBe('healthy');
    const tripped = linkReaches(cloud, 'paris-1', 'tripped');
    cutRelay(azure, 'paris-1');
    await tripped;
    expect(cloud.link('paris-1').counters.deliveries).toEqual({});
  });

  it('a relay call answered in time is one outcome: the store also replies through its outbox, and that reply is not reported again', async () => {
    const { azure, stores } = await world();
    const cloud = await dispatcher(azure);
    const paris = stores.get('paris-1')!;
    // The store's start-up announcement is flushed first, so whatever the outbox holds next came from the call.
    await firstValueFrom(paris.agent.state$.pipe(filter((state) => state.outboxPending === 0)));
    const pending: number[] = [];
    const watching = paris.agent.state$.subscribe((state) => pending.push(state.outboxPending));
    const outcomes: OperationOutcome[] = [];
    const collecting = cloud.outcomes$.subscribe((outcome) => outcomes.push(outcome));
    const delivery = await cloud.publish(order('paris-1', 'CC-30'));
    expect(delivery).toMatchObject({ channel: 'relay', outcome: 'delivered' });
    expect(outcomes).toMatchObject([{ operationId: delivery.operationId, outcome: 'done', channel: 'relay', late: false }]);
    // A queued operation after it: the store's outbox sends its reply after the order's, and the inbox reads them in
    // that order, so once this one is reported the order's reply has been read (and dropped).
    const priced = firstValueFrom(cloud.outcomes$.pipe(filter((outcome) => outcome.type === 'price.update')));
    await cloud.publish({ storeId: 'paris-1', type: 'price.update', payload: { prices: { 'SKU-KETTLE': 30 } } });
    expect(await priced).toMatchObject({ outcome: 'done', channel: 'queue', late: true });
    watching.unsubscribe();
    collecting.unsubscribe();
    expect(Math.max(...pending)).toBeGreaterThanOrEqual(1);
    expect(outcomes.filter((outcome) => outcome.operationId === delivery.operationId)).toHaveLength(1);
  });

  it('answers GET /stores and a metrics scrape for 10,000 stores without starting an actor', async () => {
    const { azure } = await world();
    const many = Array.from({ length: 10_000 }, (_, index) => ({ storeId: `store-${index}`, bidirectional: index % 2 === 0, ...storePublicKeys('many') }));
    const cloud = await dispatcher(azure, { stores: [...STORES, ...many], relay: { connectionString: azure.relayConnectionString() } });
    const api = createCloudHttpApi({ dispatcher: cloud, token: API_TOKEN, port: 0 });
    closeables.push(() => api.close());
    const { port } = await api.listen();
    // Bi-directional stores' charts start with the dispatcher, then rest until their first probe is due: no actor
    // is live at all, and reading must start none.
    const liveAtStart = cloud.liveLinkCount;
    expect(liveAtStart).toBe(0);
    const headers = { authorization: `Bearer ${API_TOKEN}` };
    const stores = await request(`http://127.0.0.1:${port}/stores`, { headers });
    expect(stores.statusCode).toBe(200);
    const { stores: views } = (await stores.body.json()) as { stores: { state: string }[] };
    expect(views).toHaveLength(10_003);
    expect(views.filter((view) => view.state === 'healthy')).toHaveLength(5_002);
    expect(views.filter((view) => view.state === 'disabled')).toHaveLength(5_001);
    const metrics = await request(`http://127.0.0.1:${port}/metrics`, { headers });
    expect(metrics.statusCode).toBe(200);
    expect(await metrics.body.text()).toContain('storelink_links{state="disabled"} 5001');
    expect(cloud.liveLinkCount).toBe(liveAtStart);
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
