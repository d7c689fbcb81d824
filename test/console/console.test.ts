/**
 * The operations console in headless Chromium against a real cloud: emulators, a dispatcher with its HTTP API, and
 * store agents with the sample click-and-collect store. Every wait is for a DOM change (playwright's waitFor), an
 * rxjs event, or the emulator's queue counts; none is a sleep. Skipped, saying why, where Chromium is not installed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient } from '@azure/service-bus';
import type { Browser, Page } from 'playwright-core';
import { filter, firstValueFrom } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeLinkMachine } from '../../machines/storeLink.machine.js';
import { chartModelOf } from '../../src/charts/chartModel.js';
import { writeApiKeyFile } from '../../src/cloud/apiKeyFile.js';
import { newApiKey } from '../../src/cloud/apiKeys.js';
import { createDispatcher, type Dispatcher } from '../../src/cloud/dispatcher.js';
import { createCloudHttpApi } from '../../src/cloud/httpApi.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOperation } from '../../src/core/operation.js';
import { parsePolicy } from '../../src/core/policy.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import type { OperationHandlers } from '../../src/store/executor.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { createStore } from '../../samples/store-click-and-collect/store.js';
import { deadLetter } from '../channels/servicebus/deadLetterQueueFixtures.js';
import { HAS_CHROMIUM, NO_CHROMIUM_MESSAGE, builtConsole, launchChromium } from '../support/browser.js';
import { dispatcherSigningOptions, signed, storePublicKeys, storeSigningOptions } from '../support/signingKeys.js';

const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const STORES = [
  { storeId: 'paris-1', bidirectional: true, ...storePublicKeys('paris-1') },
  { storeId: 'lyon-2', bidirectional: true, ...storePublicKeys('lyon-2') },
  { storeId: 'nice-3', bidirectional: false, ...storePublicKeys('nice-3') },
];
// A relay that fails once trips, and stays tripped for the rest of the file (a long cool-down and probe interval).
const POLICY = parsePolicy({
  link: { failureThreshold: 1, openCooldownInMs: 600_000, maxCooldownInMs: 600_000, probeIntervalInMs: 600_000, healthyProbeIntervalInMs: 1_000 },
  operations: { 'clickAndCollect.order': { latency: 'realtime', fallback: 'queue', relayTimeoutInMs: 2_000 }, 'price.update': { latency: 'async' } },
});

const closeables: (() => Promise<unknown>)[] = [];
let azure: Emulators;
let dispatcher: Dispatcher;
let browser: Browser;
let baseUrl: string;
const keys = {
  viewer: newApiKey({ name: 'viewer', scopes: ['read'], now: Date.now() }),
  operator: newApiKey({ name: 'operator', scopes: ['read', 'admin'], now: Date.now() }),
  publisher: newApiKey({ name: 'publisher', scopes: ['publish'], now: Date.now() }),
};
/** How many times nice-3's price.update handler ran, by operation id. */
const priceUpdateRuns = new Map<string, number>();
/** Resolves when nice-3's handler runs the dead-lettered operation. */
let ranDeadLettered: () => void = () => undefined;
const resubmittedRan = new Promise<void>((resolve) => (ranDeadLettered = resolve));
/** The operation dead-lettered in nice-3's queue before its store started. */
const deadLettered = signed(createOperation({ storeId: 'nice-3', type: 'price.update', payload: { prices: { 'SKU-KETTLE': 42.5 } }, latency: 'async', timeToLiveInMs: 3_600_000 }));

async function startWorld(): Promise<void> {
  const work = await mkdtemp(path.join(tmpdir(), 'storelink-console-test-'));
  closeables.push(() => rm(work, { recursive: true, force: true }));
  const built = await builtConsole();
  closeables.push(built.remove);
  azure = await startEmulators({
    namespaces: [
      { queues: [...STORES.map(({ storeId }) => ({ name: `store-${storeId}`, lockDurationInMs: 2_000 })), { name: 'cloud-inbox', requiresDuplicateDetection: true }] },
    ],
    hybridConnections: STORES.filter((store) => store.bidirectional).map(({ storeId }) => ({ name: `store-${storeId}` })),
  });
  closeables.push(() => azure.close());
  // Dead-lettered before its store starts, so the store's consumer never sees it first.
  const client = new ServiceBusClient(azure.serviceBusConnectionString(), { retryOptions: RETRY });
  try {
    await deadLetter(client, 'store-nice-3', [{ messageId: deadLettered.id, body: deadLettered, reason: 'HANDLER_FAILED', description: 'the price database was restarting' }]);
  } finally {
    await client.close();
  }
  for (const { storeId, bidirectional } of STORES) {
    const dataDir = path.join(work, storeId);
    const store = await createStore({ storeId, dataDir, logger: silentLogger });
    const priceUpdate = store.handlers['price.update']!;
    const handlers: OperationHandlers =
      storeId !== 'nice-3'
        ? store.handlers
        : {
            ...store.handlers,
            'price.update': {
              payload: priceUpdate.payload,
              handle: (payload, context) => {
                priceUpdateRuns.set(context.operation.id, (priceUpdateRuns.get(context.operation.id) ?? 0) + 1);
                if (context.operation.id === deadLettered.id) ranDeadLettered();
                return priceUpdate.handle(payload, context);
              },
            },
          };
    const agent: StoreAgent = createStoreAgent({
      storeId,
      ...storeSigningOptions(storeId),
      handlers,
      serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
      ...(bidirectional ? { relay: { connectionString: azure.relayConnectionString() }, expose: store.expose ?? [] } : {}),
      dataDir,
    });
    closeables.push(() => agent.close());
    await agent.start();
    if (bidirectional) await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
  }
  dispatcher = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString() },
    policy: POLICY,
    stores: STORES,
    ...dispatcherSigningOptions(),
  });
  closeables.push(() => dispatcher.close());
  const apiKeysFile = path.join(work, 'api-keys.json');
  await writeApiKeyFile(apiKeysFile, { keys: [keys.viewer.record, keys.operator.record, keys.publisher.record] });
  const api = createCloudHttpApi({
    dispatcher,
    apiKeysFile,
    console: { assetsDir: built.assetsDir, chart: chartModelOf(storeLinkMachine) },
    deadLetters: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
  });
  closeables.push(() => api.close());
  const { port } = await api.listen();
  baseUrl = `http://127.0.0.1:${port}`;
  browser = await launchChromium();
  closeables.push(() => browser.close());
}

async function signedInPage(key: string): Promise<Page> {
  const page = await browser.newPage();
  closeables.push(() => page.close());
  page.on('pageerror', (error) => {
    throw error;
  });
  await page.goto(`${baseUrl}/console/`);
  await page.fill('#api-key', key);
  await page.click('#sign-in button[type=submit]');
  return page;
}

/** An attribute of every element the selector matches, in document order. */
async function attributes(page: Page, selector: string, name: string): Promise<(string | null)[]> {
  return Promise.all((await page.locator(selector).all()).map((element) => element.getAttribute(name)));
}

describe.skipIf(!HAS_CHROMIUM)(`the operations console in headless Chromium${HAS_CHROMIUM ? '' : ` (${NO_CHROMIUM_MESSAGE})`}`, () => {
  beforeAll(startWorld, 60_000);
  afterAll(async () => {
    while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
  });

  it('refuses a key without the read scope, and an unknown key, saying why', async () => {
    const page = await signedInPage(keys.publisher.presented);
    await page.waitForSelector('#sign-in-error:has-text("no read scope")');
    expect(await page.textContent('#sign-in-error')).toBe('The key "publisher" has no read scope (it has: publish); the console needs a key with the read scope.');
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    await page.fill('#api-key', 'viewer.not-the-secret-at-all');
    await page.click('#sign-in button[type=submit]');
    await page.waitForSelector('#sign-in-error:has-text("unknown, revoked or expired")');
    expect(await page.locator('#stores').count()).toBe(0);
  });

  it('opens with a read key, lists every store with its mode and link, and keeps the key out of every URL', async () => {
    const page = await signedInPage(keys.viewer.presented);
    const requested: string[] = [];
    page.on('request', (request) => requested.push(request.url()));
    await page.waitForSelector('#store-count:has-text("3 of 3 stores")');
    const rows = [];
    for (const row of await page.locator('#store-rows .grid-row:not([hidden])').all()) {
      rows.push({ storeId: await row.getAttribute('data-store-id'), cells: (await row.locator('> span').allTextContents()).slice(0, 3) });
    }
    expect(rows.sort((a, b) => String(a.storeId).localeCompare(String(b.storeId)))).toEqual([
      { storeId: 'lyon-2', cells: ['lyon-2', 'real-time', expect.stringMatching(/^(healthy|starting)$/)] },
      { storeId: 'nice-3', cells: ['nice-3', 'async', 'disabled'] },
      { storeId: 'paris-1', cells: ['paris-1', 'real-time', expect.stringMatching(/^(healthy|starting)$/)] },
    ]);
    await page.waitForSelector('#stream[data-stream="open"]');
    expect(await page.evaluate("sessionStorage.getItem('storelink.console.apiKey')")).toBe(keys.viewer.presented);
    const secret = keys.viewer.presented.split('.')[1]!;
    expect(requested.filter((url) => url.includes(secret))).toEqual([]);
    // Filtering keeps only the matching rows in the DOM.
    await page.fill('#store-filter', 'async');
    await page.waitForSelector('#store-count:has-text("1 of 3 stores")');
    expect(await attributes(page, '#store-rows .grid-row:not([hidden])', 'data-store-id')).toEqual(['nice-3']);
  });

  it("draws a store's chart with its current state highlighted", async () => {
    const page = await signedInPage(keys.viewer.presented);
    await page.waitForSelector('#store-count:has-text("3 of 3 stores")');
    await page.click('#store-rows .grid-row[data-store-id="paris-1"]');
    await page.waitForSelector('#store-chart');
    const expected = await (await fetch(`${baseUrl}/stores/paris-1/chart`, { headers: { authorization: `Bearer ${keys.viewer.presented}` } })).json() as { activeStates: string[] };
    expect(expected.activeStates[0]).toBe('healthy');
    const drawn = await attributes(page, '#store-chart g.state', 'data-state-id');
    expect(drawn).toEqual(expect.arrayContaining(['starting', 'disabled', 'healthy', 'healthy.waiting', 'healthy.checking', 'tripped', 'tripped.cooldown.running', 'probing']));
    const active = await attributes(page, '#store-chart g.state.active', 'data-state-id');
    // The chart may have moved between healthy.waiting and healthy.checking since; the top state is healthy either way.
    expect(active[0]).toBe('healthy');
    expect(active).toHaveLength(2);
    expect(['healthy.waiting', 'healthy.checking']).toContain(active[1]);
    expect(await page.locator('#store-chart g.transition').count()).toBeGreaterThan(5);
  });

  it('shows a store tripped when its relay is cut, as the link event arrives', async () => {
    const page = await signedInPage(keys.viewer.presented);
    await page.waitForSelector('#store-rows .grid-row[data-store-id="lyon-2"][data-state="healthy"]');
    await page.waitForSelector('#stream[data-stream="open"]');
    azure.relay.refuseListeners('store-lyon-2');
    azure.relay.dropListeners('store-lyon-2');
    await page.waitForSelector('#store-rows .grid-row[data-store-id="lyon-2"][data-state="tripped"]');
    expect(await page.textContent('#store-rows .grid-row[data-store-id="lyon-2"] > span:nth-child(4)')).not.toBe('');
    expect(await page.textContent('#store-rows .grid-row[data-store-id="paris-1"] > span:nth-child(3)')).toBe('healthy');
    await page.waitForSelector('#overview-legend [data-legend-state="tripped"]:has-text("tripped 1")');
    // Its page draws the tripped state highlighted.
    await page.click('#store-rows .grid-row[data-store-id="lyon-2"]');
    await page.waitForSelector('#store-chart g.state.active[data-state-id="tripped"]');
  });

  it('resubmits a dead-lettered operation from the page for an admin key, and the store runs it once', async () => {
    const viewer = await signedInPage(keys.viewer.presented);
    await viewer.waitForSelector('#store-count:has-text("3 of 3 stores")');
    await viewer.evaluate("location.hash = '#/stores/nice-3'");
    await viewer.waitForSelector(`#dead-letters tr[data-sequence-number]`);
    expect(await viewer.locator('[data-resubmit]').count()).toBe(0);
    expect(await viewer.textContent('#dead-letters-note')).toBe('Resubmitting needs a key with the admin scope.');

    const page = await signedInPage(keys.operator.presented);
    await page.waitForSelector('#store-count:has-text("3 of 3 stores")');
    await page.evaluate("location.hash = '#/stores/nice-3'");
    const button = await page.waitForSelector('#dead-letters [data-resubmit]');
    expect(await page.textContent('#dead-letters tbody')).toContain(`price.update ${deadLettered.id.slice(0, 8)}`);
    expect(priceUpdateRuns.get(deadLettered.id)).toBeUndefined();
    await button.click();
    await page.waitForSelector(`#dead-letters-note:has-text("Resubmitted ${deadLettered.id}")`);
    await page.waitForSelector('#no-dead-letters');
    await resubmittedRan;
    // The store completes the message once its ledger holds the result: poll the emulator's counts (no event says so).
    while ((azure.serviceBus.messageCounts()['store-nice-3'] ?? 0) > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(priceUpdateRuns.get(deadLettered.id)).toBe(1);
    const left = await (await fetch(`${baseUrl}/stores/nice-3/dead-letters`, { headers: { authorization: `Bearer ${keys.viewer.presented}` } })).json();
    expect(left).toEqual({ storeId: 'nice-3', deadLetters: [] });
  });
});
