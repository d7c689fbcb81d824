import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createDispatcher, type Dispatcher } from '../../src/cloud/dispatcher.js';
import { createCloudHttpApi } from '../../src/cloud/httpApi.js';
import { silentLogger } from '../../src/core/logger.js';
import { parsePolicy } from '../../src/core/policy.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { createStore } from '../../samples/store-click-and-collect/store.js';
import { parsePrometheusText, type PrometheusText } from '../support/prometheusText.js';
import { dispatcherSigningOptions, storePublicKeys, storeSigningOptions } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const TOKEN = 'test-token-0123456789abcdef';
const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
/** Small enough that a 20 KiB store event can never be sent: the store parks it. */
const INBOX_MAX_MESSAGE_BYTES = 16 * 1024;
const STORES = [
  { storeId: 'paris-1', bidirectional: true, ...storePublicKeys('paris-1') },
  { storeId: 'nice-3', bidirectional: false, ...storePublicKeys('nice-3') },
];

async function startAgent(azure: Emulators, storeId: string, bidirectional: boolean, dataDir: string): Promise<StoreAgent> {
  const store = await createStore({ storeId, dataDir, logger: silentLogger });
  const agent = createStoreAgent({
    storeId,
    ...storeSigningOptions(storeId),
    handlers: store.handlers,
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    ...(bidirectional ? { relay: { connectionString: azure.relayConnectionString() }, expose: store.expose ?? [] } : {}),
    // Checked often, so the test does not wait long for a report.
    outboxReportIntervalInMs: 50,
    dataDir,
  });
  closeables.push(() => agent.close());
  await agent.start();
  if (bidirectional) await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
  return agent;
}

async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-store-metrics-'));
  closeables.push(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

async function world() {
  const azure = await startEmulators({
    namespaces: [
      {
        queues: [
          ...STORES.map(({ storeId }) => ({ name: `store-${storeId}`, lockDurationInMs: 2_000 })),
          { name: 'cloud-inbox', requiresDuplicateDetection: true, maxMessageSizeInBytes: INBOX_MAX_MESSAGE_BYTES },
        ],
      },
    ],
    hybridConnections: [{ name: 'store-paris-1' }],
  });
  closeables.push(() => azure.close());
  const dispatcher: Dispatcher = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString() },
    policy: parsePolicy({ operations: { 'stock.query': { latency: 'realtime', fallback: 'queue', relayTimeoutInMs: 2_000 } } }),
    stores: STORES,
    ...dispatcherSigningOptions(),
  });
  closeables.push(() => dispatcher.close());
  const api = createCloudHttpApi({ dispatcher, token: TOKEN });
  closeables.push(() => api.close());
  const { port } = await api.listen();
  const call = (pathname: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${port}${pathname}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...(init.headers as Record<string, string> | undefined) } });
  const metrics = async (): Promise<PrometheusText> => parsePrometheusText(await (await call('/metrics')).text());
  const store = async (storeId: string) => (await call(`/stores/${storeId}`)).json() as Promise<{ backlog: number; outbox: { pending: number; parked: number; reportedAt: string } | null }>;
  return { azure, dispatcher, call, metrics, store };
}

describe('metrics by operation type and store, backlog and outbox depth', () => {
  it('labels real deliveries and outcomes by type and store, counts a queued operation as backlog until its store runs it, and shows the outbox depth a store reports', async () => {
    const { azure, dispatcher, call, metrics, store } = await world();
    const paris = await startAgent(azure, 'paris-1', true, await tempDir());

    // A real-time stock query through the relay to paris-1; an async one queued for nice-3, whose store is not running.
    const relayed = await call('/stores/paris-1/operations', { method: 'POST', body: JSON.stringify({ type: 'stock.query', payload: { skus: ['SKU-KETTLE'] } }) });
    expect(((await relayed.json()) as { channel: string; outcome: string })).toMatchObject({ channel: 'relay', outcome: 'delivered' });
    const queued = (await (await call('/stores/nice-3/operations', { method: 'POST', body: JSON.stringify({ type: 'stock.query', latency: 'async', payload: { skus: ['SKU-KETTLE'] } }) })).json()) as { operationId: string; outcome: string };
    expect(queued.outcome).toBe('queued');

    const before = await metrics();
    expect(before.value('storelink_deliveries_total', { type: 'stock.query', channel: 'relay', outcome: 'delivered' })).toBe(1);
    expect(before.value('storelink_deliveries_total', { type: 'stock.query', channel: 'queue', outcome: 'queued' })).toBe(1);
    expect(before.value('storelink_relay_latency_seconds_count', { type: 'stock.query' })).toBe(1);
    expect(before.value('storelink_store_deliveries_total', { store: 'paris-1', channel: 'relay', outcome: 'delivered' })).toBe(1);
    expect(before.value('storelink_store_deliveries_total', { store: 'nice-3', channel: 'queue', outcome: 'queued' })).toBe(1);
    expect(before.value('storelink_store_backlog', { store: 'nice-3' })).toBe(1);
    expect(before.value('storelink_store_backlog', { store: 'paris-1' })).toBeUndefined();
    expect((await store('nice-3')).backlog).toBe(1);
    expect((await store('paris-1')).backlog).toBe(0);

    // nice-3 starts and runs it: its reply is the late outcome, and the backlog drains.
    const outcome = firstValueFrom(dispatcher.outcomes$.pipe(filter((learnt) => learnt.operationId === queued.operationId)));
    await startAgent(azure, 'nice-3', false, await tempDir());
    expect(await outcome).toMatchObject({ storeId: 'nice-3', outcome: 'done', late: true });
    const after = await metrics();
    expect(after.value('storelink_outcomes_total', { type: 'stock.query', outcome: 'done', late: 'true' })).toBe(1);
    expect(after.value('storelink_store_outcomes_total', { store: 'nice-3', outcome: 'done', late: 'true' })).toBe(1);
    expect(after.value('storelink_store_outcomes_total', { store: 'paris-1', outcome: 'done', late: 'false' })).toBe(1);
    expect(after.value('storelink_store_backlog', { store: 'nice-3' })).toBe(0);
    expect((await store('nice-3')).backlog).toBe(0);

    // A store event too large for the inbox is parked at paris-1; the store's next report carries it to the cloud.
    const parked = firstValueFrom(paris.events$.pipe(filter((event) => event.type === 'outbox.parked')));
    await paris.emit({ type: 'receipt.printed', body: { receipt: 'x'.repeat(20 * 1024) } });
    expect(await parked).toMatchObject({ type: 'outbox.parked', entryType: 'receipt.printed' });
    // No event says a report reached the cloud: ask until it has (the store checks every 50 ms).
    await vi.waitFor(async () => expect((await store('paris-1')).outbox).toMatchObject({ pending: 0, parked: 1 }), { timeout: 10_000, interval: 50 });
    const reported = await metrics();
    expect(reported.value('storelink_store_outbox_entries', { store: 'paris-1', state: 'parked' })).toBe(1);
    expect(reported.value('storelink_store_outbox_entries', { store: 'paris-1', state: 'pending' })).toBe(0);
    expect(Date.parse((await store('paris-1')).outbox!.reportedAt)).not.toBeNaN();
    // nice-3 announced itself at start (relay disabled), with its empty outbox.
    expect((await store('nice-3')).outbox).toMatchObject({ pending: 0, parked: 0 });
  });
});
