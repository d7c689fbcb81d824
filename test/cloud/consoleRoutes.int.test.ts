import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeLinkMachine } from '../../machines/storeLink.machine.js';
import { chartModelOf } from '../../src/charts/chartModel.js';
import { writeApiKeyFile } from '../../src/cloud/apiKeyFile.js';
import { newApiKey } from '../../src/cloud/apiKeys.js';
import { createDispatcher } from '../../src/cloud/dispatcher.js';
import { createCloudHttpApi } from '../../src/cloud/httpApi.js';
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { builtConsole } from '../support/browser.js';
import { dispatcherSigningOptions, storePublicKeys } from '../support/signingKeys.js';

const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const closeables: (() => Promise<unknown>)[] = [];
const keys = {
  viewer: newApiKey({ name: 'viewer', scopes: ['read'], now: Date.now() }),
  operator: newApiKey({ name: 'operator', scopes: ['read', 'admin'], now: Date.now() }),
  publisher: newApiKey({ name: 'publisher', scopes: ['publish'], now: Date.now() }),
};
let baseUrl: string;

beforeAll(async () => {
  const work = await mkdtemp(path.join(tmpdir(), 'storelink-console-routes-'));
  closeables.push(() => rm(work, { recursive: true, force: true }));
  const built = await builtConsole();
  closeables.push(built.remove);
  const azure = await startEmulators({ namespaces: [{ queues: [{ name: 'store-nice-3' }, { name: 'cloud-inbox' }] }] });
  closeables.push(() => azure.close());
  const dispatcher = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    stores: [{ storeId: 'nice-3', bidirectional: false, ...storePublicKeys('nice-3') }],
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
  baseUrl = `http://127.0.0.1:${(await api.listen()).port}`;
});

afterAll(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const call = (pathname: string, key?: { presented: string }, init: RequestInit = {}) =>
  fetch(`${baseUrl}${pathname}`, { ...init, headers: key === undefined ? {} : { authorization: `Bearer ${key.presented}` } });

describe("the console's routes", () => {
  it('serves the built page and its assets without a key, with a policy that loads nothing from elsewhere', async () => {
    const page = await call('/console/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await page.text()).toContain('<script type="module" src="/console/console.js"></script>');
    const script = await call('/console/console.js');
    expect([script.status, script.headers.get('content-type')]).toEqual([200, 'text/javascript; charset=utf-8']);
    expect(await script.text()).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
    const redirect = await call('/console', undefined, { redirect: 'manual' });
    expect([redirect.status, redirect.headers.get('location')]).toEqual([302, '/console/']);
    const missing = await call('/console/nothing.js');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 'ROUTE_NOT_FOUND' } });
  });

  it('says who a key is, and gives the data only to read keys', async () => {
    expect(await (await call('/session', keys.publisher)).json()).toEqual({ name: 'publisher', scopes: ['publish'] });
    expect((await call('/session')).status).toBe(401);
    expect((await call('/activity')).status).toBe(401);
    const refused = await call('/activity', keys.publisher);
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ error: { code: 'API_FORBIDDEN', message: 'GET /activity needs an API key with the "read" scope' } });
    const activity = (await (await call('/activity', keys.viewer)).json()) as { stores: unknown[]; lastHour: unknown[] };
    expect(activity.stores).toEqual([
      { storeId: 'nice-3', bidirectional: false, state: 'disabled', tags: [], reason: null, lastHeardFromAt: null, relayLatencyInMs: null, backlog: 0, lastHour: { relay: 0, queue: 0, fallbacks: 0, failures: 0 } },
    ]);
    expect(activity.lastHour).toHaveLength(60);
  });

  it("answers a store's chart with its structure and current states", async () => {
    const chart = (await (await call('/stores/nice-3/chart', keys.viewer)).json()) as { state: string; activeStates: string[]; chart: { states: { id: string }[] } };
    expect(chart.state).toBe('disabled');
    expect(chart.activeStates).toEqual(['disabled']);
    expect(chart.chart.states.map(({ id }) => id)).toEqual(['starting', 'disabled', 'healthy', 'tripped', 'probing']);
    const unknown = await call('/stores/nobody/chart', keys.viewer);
    expect([unknown.status, ((await unknown.json()) as { error: { code: string } }).error.code]).toEqual([404, 'STORE_UNKNOWN']);
  });

  it('lists dead letters for read keys and resubmits them only for admin keys', async () => {
    expect(await (await call('/stores/nice-3/dead-letters', keys.viewer)).json()).toEqual({ storeId: 'nice-3', deadLetters: [] });
    const forbidden = await call('/stores/nice-3/dead-letters/1/resubmit', keys.viewer, { method: 'POST' });
    expect(forbidden.status).toBe(403);
    const missing = await call('/stores/nice-3/dead-letters/41/resubmit', keys.operator, { method: 'POST' });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 'DEAD_LETTER_NOT_FOUND', field: 'sequenceNumber' } });
    const invalid = await call('/stores/nice-3/dead-letters/abc/resubmit', keys.operator, { method: 'POST' });
    expect(invalid.status).toBe(400);
    const wrongMethod = await call('/stores/nice-3/dead-letters', keys.operator, { method: 'DELETE' });
    expect([wrongMethod.status, wrongMethod.headers.get('allow')]).toEqual([405, 'GET']);
  });
});
