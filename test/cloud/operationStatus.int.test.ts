import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { filter, firstValueFrom } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FetchFunction } from '../../src/channels/relay/relaySender.js';
import { createDispatcher, type Delivery, type Dispatcher, type OperationOutcome, type OperationStatus } from '../../src/cloud/dispatcher.js';
import { createCloudHttpApi } from '../../src/cloud/httpApi.js';
import { operationStatusSchema } from '../../src/cloud/http/responseSchemas.js';
import { isStorelinkError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { parsePolicy } from '../../src/core/policy.js';
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { createStoreAgent } from '../../src/store/storeAgent.js';
import { createStore } from '../../samples/store-click-and-collect/store.js';
import { dispatcherSigningOptions, storePublicKeys, storeSigningOptions } from '../support/signingKeys.js';

const TOKEN = 'test-token-0123456789abcdef';
const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const STORES = [
  { storeId: 'paris-1', bidirectional: true, ...storePublicKeys('paris-1') },
  { storeId: 'nice-3', bidirectional: false, ...storePublicKeys('nice-3') },
];
const POLICY = parsePolicy({ operations: { 'clickAndCollect.order': { latency: 'realtime', fallback: 'queue', relayTimeoutInMs: 2_000 } } });
const STATUS_FIELDS = ['channel', 'deliveredAt', 'durationInMs', 'fallback', 'id', 'instanceId', 'lateOutcomes', 'latency', 'outcome', 'outcomeAt', 'publishedAt', 'status', 'storeId', 'type'];

let orders = 0;
function order(): { type: string; payload: unknown } {
  orders += 1;
  return { type: 'clickAndCollect.order', payload: { orderId: `CC-${orders}`, customer: 'Ada', lines: [{ sku: 'SKU-KETTLE', quantity: 1 }] } };
}

const closeables: (() => Promise<unknown>)[] = [];
/** Relay calls that carried an operation, by operation id (health probes carry none). */
const relayCalls = new Map<string, number>();
let dispatcher: Dispatcher;
let call: (pathname: string, init?: RequestInit) => Promise<Response>;
let post: (storeId: string, body: unknown) => Promise<Response>;

// One cloud, two stores and the emulators for the whole file: each test uses its own operations.
beforeAll(async () => {
  const azure = await startEmulators({
    namespaces: [
      {
        queues: [...STORES.map(({ storeId }) => ({ name: `store-${storeId}`, lockDurationInMs: 2_000 })), { name: 'cloud-inbox', requiresDuplicateDetection: true }],
      },
    ],
    hybridConnections: [{ name: 'store-paris-1' }],
  });
  closeables.push(() => azure.close());
  for (const { storeId, bidirectional } of STORES) {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-status-'));
    closeables.push(() => rm(dataDir, { recursive: true, force: true }));
    const store = await createStore({ storeId, dataDir, logger: silentLogger });
    const agent = createStoreAgent({
      storeId,
      ...storeSigningOptions(storeId),
      handlers: store.handlers,
      serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
      ...(bidirectional ? { relay: { connectionString: azure.relayConnectionString() }, expose: store.expose ?? [] } : {}),
      dataDir,
    });
    closeables.push(() => agent.close());
    await agent.start();
    if (bidirectional) await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
  }
  const countingFetch: FetchFunction = (input, init) => {
    const id = typeof init.body === 'string' ? /"id":"([0-9a-f-]{36})"/.exec(init.body)?.[1] : undefined;
    if (id !== undefined) relayCalls.set(id, (relayCalls.get(id) ?? 0) + 1);
    return fetch(input, init);
  };
  dispatcher = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString(), fetch: countingFetch },
    policy: POLICY,
    stores: STORES,
    ...dispatcherSigningOptions(),
    database: {},
    instanceId: 'cloud-a',
  });
  closeables.push(() => dispatcher.close());
  const api = createCloudHttpApi({ dispatcher, token: TOKEN, port: 0 });
  closeables.push(() => api.close());
  const { port } = await api.listen();
  call = (pathname, init = {}) =>
    fetch(`http://127.0.0.1:${port}${pathname}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers as Record<string, string> | undefined) } });
  post = (storeId, body) => call(`/stores/${storeId}/operations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}, 120_000);

afterAll(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

async function json<T>(response: Response, status = 200): Promise<T> {
  const body = (await response.json()) as T;
  expect({ status: response.status, body }).toMatchObject({ status });
  return body;
}

describe('GET /operations/:id', () => {
  it('answers a real-time order delivered on the relay as done, with its reply, channel, timings and publisher', async () => {
    const delivery = await json<Delivery>(await post('paris-1', { ...order(), awaitReplyInMs: 5_000 }));
    expect(delivery).toMatchObject({ channel: 'relay', outcome: 'delivered' });
    const status = await json<OperationStatus>(await call(`/operations/${delivery.operationId}`));
    expect(Object.keys(status).sort()).toEqual(STATUS_FIELDS);
    // The answer is what the OpenAPI document says it is, field for field.
    operationStatusSchema.strict().parse(status);
    expect(status).toMatchObject({
      id: delivery.operationId,
      storeId: 'paris-1',
      type: 'clickAndCollect.order',
      latency: 'realtime',
      status: 'done',
      channel: 'relay',
      fallback: null,
      outcome: { operationId: delivery.operationId, outcome: 'done', channel: 'relay', late: false, reply: delivery.reply },
      lateOutcomes: 0,
      instanceId: 'cloud-a',
    });
    expect(Date.parse(status.deliveredAt!)).toBeGreaterThanOrEqual(Date.parse(status.publishedAt));
    expect(status.durationInMs).toBeGreaterThan(0);
  });

  it('answers a queued operation as queued, then done with a late outcome once the store replies', async () => {
    const body = order();
    const id = crypto.randomUUID();
    const late = firstValueFrom(dispatcher.outcomes$.pipe(filter((outcome: OperationOutcome) => outcome.operationId === id)));
    const delivery = await json<Delivery>(await post('nice-3', { ...body, id }));
    expect(delivery).toMatchObject({ channel: 'queue', outcome: 'queued' });
    const outcome = await late;
    expect(outcome.late).toBe(true);
    const status = await json<OperationStatus>(await call(`/operations/${id}`));
    expect(status).toMatchObject({ status: 'done', channel: 'queue', lateOutcomes: 1, outcome: { outcome: 'done', channel: 'queue', late: true } });
    operationStatusSchema.strict().parse(status);
    expect(status.outcomeAt).not.toBeNull();
  });

  it('answers a repeated publish of an answered id from the record, without calling the store again', async () => {
    const id = crypto.randomUUID();
    const body = { ...order(), id, awaitReplyInMs: 5_000 };
    const first = await json<Delivery>(await post('paris-1', body));
    expect(first).toMatchObject({ channel: 'relay', outcome: 'delivered', attempts: 1 });
    expect(relayCalls.get(id)).toBe(1);
    const again = await json<Delivery>(await post('paris-1', body));
    expect(again).toMatchObject({ operationId: id, channel: 'relay', outcome: 'delivered', attempts: 0, reply: first.reply });
    expect(relayCalls.get(id)).toBe(1);
    const elsewhere = await json<{ error: { code: string; field: string } }>(await post('nice-3', body), 409);
    expect(elsewhere.error).toMatchObject({ code: 'OPERATION_ID_CONFLICT', field: 'id', operationId: id });
  });

  it('says OPERATION_NOT_FOUND for an id nobody published', async () => {
    const body = await json<{ error: { code: string } }>(await call(`/operations/${crypto.randomUUID()}`), 404);
    expect(body.error.code).toBe('OPERATION_NOT_FOUND');
  });
});

describe('GET /stores/:storeId/operations', () => {
  it("pages a store's history newest first, each operation once, and none from another store", async () => {
    const ids: string[] = [];
    for (let index = 0; index < 3; index += 1) ids.push((await json<Delivery>(await post('nice-3', order()))).operationId);
    await json<Delivery>(await post('paris-1', { ...order(), awaitReplyInMs: 5_000 }));
    const seen: OperationStatus[] = [];
    let cursor: string | null = null;
    do {
      const page: { operations: OperationStatus[]; nextCursor: string | null } = await json(await call(`/stores/nice-3/operations?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`));
      expect(page.operations.length).toBeLessThanOrEqual(2);
      seen.push(...page.operations);
      cursor = page.nextCursor;
    } while (cursor !== null);
    expect(seen.every((status) => status.storeId === 'nice-3')).toBe(true);
    expect(new Set(seen.map((status) => status.id)).size).toBe(seen.length);
    expect(seen.map((status) => status.id)).toEqual(expect.arrayContaining(ids));
    const ordering = seen.map((status) => [status.publishedAt, status.id].join(' '));
    expect(ordering).toEqual([...ordering].sort().reverse());
    const none = await json<{ operations: unknown[]; nextCursor: null }>(await call(`/stores/nice-3/operations?since=${encodeURIComponent('2999-01-01T00:00:00Z')}`));
    expect(none).toEqual({ operations: [], nextCursor: null });
    const recent = await json<{ operations: OperationStatus[] }>(await call(`/stores/nice-3/operations?since=${encodeURIComponent(seen.at(-1)!.publishedAt)}&limit=500`));
    expect(recent.operations.map((status) => status.id)).toEqual(seen.map((status) => status.id));
  });

  it.each([
    ['/stores/nice-3/operations?since=yesterday', 400, 'OPERATION_INVALID', 'since'],
    ['/stores/nice-3/operations?since=2031-05-04T10:00:00', 400, 'OPERATION_INVALID', 'since'],
    ['/stores/nice-3/operations?limit=0', 400, 'OPERATION_INVALID', 'limit'],
    ['/stores/nice-3/operations?limit=501', 400, 'OPERATION_INVALID', 'limit'],
    ['/stores/nice-3/operations?limit=ten', 400, 'OPERATION_INVALID', 'limit'],
    ['/stores/nice-3/operations?limit=1.5', 400, 'OPERATION_INVALID', 'limit'],
    ['/stores/nice-3/operations?limit=2&limit=3', 400, 'OPERATION_INVALID', 'limit'],
    ['/stores/nice-3/operations?cursor=', 400, 'OPERATION_INVALID', 'cursor'],
    ['/stores/nice-3/operations?cursor=bm90LWEtY3Vyc29y', 400, 'OPERATION_INVALID', 'cursor'],
    [`/stores/nice-3/operations?cursor=${'x'.repeat(201)}`, 400, 'OPERATION_INVALID', 'cursor'],
    ['/stores/nice-3/operations?colour=red', 400, 'OPERATION_INVALID', undefined],
    ['/stores/lyon-9/operations', 404, 'STORE_UNKNOWN', 'storeId'],
    ['/operations/not-a-uuid', 400, 'OPERATION_INVALID', 'id'],
  ])('%s → %i %s', async (pathname, status, code, field) => {
    const body = await json<{ error: { code: string; field?: string; message: string } }>(await call(pathname), status);
    expect(body.error.code).toBe(code);
    expect(body.error.field).toBe(field);
  });

  it('needs an API key, and serves only GET on /operations/:id', async () => {
    const id = crypto.randomUUID();
    const anonymous = await fetch(new URL(`/operations/${id}`, (await call('/stores')).url));
    expect(anonymous.status).toBe(401);
    const deleted = await call(`/operations/${id}`, { method: 'DELETE' });
    expect(deleted.status).toBe(405);
    expect(deleted.headers.get('allow')).toBe('GET');
  });
});

describe('a dispatcher without a database', () => {
  it('keeps no records and says so', async () => {
    const bare = createDispatcher({ serviceBus: { connectionString: 'Endpoint=sb://127.0.0.1/;SharedAccessKeyName=k;SharedAccessKey=a2V5' }, stores: [STORES[1]!], ...dispatcherSigningOptions() });
    const failure = await bare.operation(crypto.randomUUID()).catch((error: unknown) => error);
    expect(isStorelinkError(failure, 'ROUTE_NOT_FOUND')).toBe(true);
    await bare.close();
  });
});
