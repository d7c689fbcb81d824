import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import type { FetchFunction } from '../../src/channels/relay/relaySender.js';
import { createDispatcher, type Delivery, type Dispatcher } from '../../src/cloud/dispatcher.js';
import { createCloudHttpApi, type CloudHttpApi } from '../../src/cloud/httpApi.js';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import { parsePolicy } from '../../src/core/policy.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { createStore } from '../../samples/store-click-and-collect/store.js';
import { parsePrometheusText } from '../support/prometheusText.js';
import { dispatcherSigningOptions, storePublicKeys, storeSigningOptions } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const TOKEN = 'test-token-0123456789abcdef';
const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const STORES = [
  { storeId: 'paris-1', bidirectional: true, ...storePublicKeys('paris-1') },
  { storeId: 'nice-3', bidirectional: false, ...storePublicKeys('nice-3') },
];
const POLICY = parsePolicy({
  operations: {
    'clickAndCollect.order': { latency: 'realtime', fallback: 'queue', relayTimeoutInMs: 2_000 },
    'stock.query': { latency: 'realtime', fallback: 'cached', relayTimeoutInMs: 2_000 },
    'price.update': { latency: 'async' },
  },
});

interface World {
  azure: Emulators;
  agents: Map<string, StoreAgent>;
  dispatcher: Dispatcher;
  api: CloudHttpApi;
  baseUrl: string;
  /** fetch with the bearer token. */
  call: (pathname: string, init?: RequestInit) => Promise<Response>;
  post: (storeId: string, body: unknown) => Promise<Response>;
}

async function world(options: { heartbeatIntervalInMs?: number; relayFetch?: FetchFunction; logger?: Logger } = {}): Promise<World> {
  const { relayFetch, ...apiOptions } = options;
  const azure = await startEmulators({
    namespaces: [
      {
        queues: [...STORES.map(({ storeId }) => ({ name: `store-${storeId}`, lockDurationInMs: 2_000 })), { name: 'cloud-inbox', requiresDuplicateDetection: true }],
      },
    ],
    hybridConnections: STORES.filter((store) => store.bidirectional).map(({ storeId }) => ({ name: `store-${storeId}` })),
  });
  closeables.push(() => azure.close());
  const agents = new Map<string, StoreAgent>();
  for (const { storeId, bidirectional } of STORES) {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-http-'));
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
    agents.set(storeId, agent);
  }
  const dispatcher = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString(), ...(relayFetch === undefined ? {} : { fetch: relayFetch }) },
    policy: POLICY,
    stores: STORES,
    ...dispatcherSigningOptions(),
  });
  closeables.push(() => dispatcher.close());
  const api = createCloudHttpApi({ dispatcher, token: TOKEN, port: 0, ...apiOptions });
  closeables.push(() => api.close());
  const { port } = await api.listen();
  const baseUrl = `http://127.0.0.1:${port}`;
  const call = (pathname: string, init: RequestInit = {}) =>
    fetch(`${baseUrl}${pathname}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers as Record<string, string> | undefined) } });
  const post = (storeId: string, body: unknown) =>
    call(`/stores/${storeId}/operations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { azure, agents, dispatcher, api, baseUrl, call, post };
}

const ORDER = { type: 'clickAndCollect.order', payload: { orderId: 'CC-1', customer: 'Ada', lines: [{ sku: 'SKU-KETTLE', quantity: 2 }] } };

interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

interface ServerSentBlock {
  /** Empty for a comment-only block. */
  event: string;
  data: string;
  comments: string[];
}

/** Reads server-sent event blocks from a fetch response until `accept` returns true for one; resolves with it. */
async function nextEvent(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  state: { buffer: string },
  accept: (block: ServerSentBlock) => boolean,
): Promise<ServerSentBlock> {
  const decoder = new TextDecoder();
  for (;;) {
    let boundary = state.buffer.indexOf('\n\n');
    while (boundary >= 0) {
      const block = state.buffer.slice(0, boundary);
      state.buffer = state.buffer.slice(boundary + 2);
      const lines = block.split('\n');
      const comments = lines.filter((line) => line.startsWith(':')).map((line) => line.slice(1).trim());
      const event = lines.find((line) => line.startsWith('event: '))?.slice('event: '.length) ?? '';
      const data = lines.filter((line) => line.startsWith('data: ')).map((line) => line.slice('data: '.length)).join('\n');
      if (accept({ event, data, comments })) return { event, data, comments };
      boundary = state.buffer.indexOf('\n\n');
    }
    const { value, done } = await reader.read();
    if (done) throw new Error('the event stream ended');
    state.buffer += decoder.decode(value, { stream: true });
  }
}

describe('the cloud HTTP API over a real dispatcher, store and emulators', () => {
  it('publishes a real-time order through the relay and price updates through the queue, answering with the delivery', async () => {
    const { post } = await world();
    const order = await post('paris-1', ORDER);
    expect(order.status).toBe(200);
    expect(order.headers.get('content-type')).toContain('application/json');
    expect(await order.json()).toMatchObject({ storeId: 'paris-1', channel: 'relay', outcome: 'delivered', latency: 'realtime', attempts: 1, reply: { reserved: { 'SKU-KETTLE': 2 } } });

    const queued = (await (await post('paris-1', { type: 'price.update', payload: { prices: { 'SKU-KETTLE': 35 } } })).json()) as Delivery;
    expect(queued).toMatchObject({ channel: 'queue', outcome: 'queued', latency: 'async' });
    const answered = await post('nice-3', { type: 'price.update', payload: { prices: { 'SKU-KETTLE': 36 } }, awaitReplyInMs: 10_000 });
    expect(await answered.json()).toMatchObject({ storeId: 'nice-3', channel: 'queue', outcome: 'delivered', reply: { updated: 1 } });

    const id = '3f1c1a52-8a43-4c5e-9d0f-1b2c3d4e5f60';
    const refused = await post('paris-1', { ...ORDER, id, payload: { ...ORDER.payload, lines: [{ sku: 'SKU-KETTLE', quantity: 999 }] } });
    expect(refused.status).toBe(200);
    expect(await refused.json()).toMatchObject({ operationId: id, outcome: 'rejected', rejection: { code: 'OPERATION_REJECTED' } });
  });

  it('refuses bad requests with 400 naming the field, an unknown store with 404, and an oversized body with 413', async () => {
    const { post, call } = await world();
    const cases: [unknown, string][] = [
      [{ ...ORDER, type: 'order' }, 'type'],
      [{ type: ORDER.type }, 'payload'],
      [{ ...ORDER, latency: 'soon' }, 'latency'],
      [{ ...ORDER, awaitReplyInMs: -1 }, 'awaitReplyInMs'],
      [{ ...ORDER, id: 'not-a-uuid' }, 'id'],
      [{ ...ORDER, priority: 'high' }, ''],
    ];
    for (const [body, field] of cases) {
      const response = await post('paris-1', body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      const { error } = (await response.json()) as ErrorBody;
      expect(error.code).toBe('OPERATION_INVALID');
      if (field === '') expect(error.message).toContain('priority');
      else expect(error.field).toBe(field);
    }
    const badStore = await post('Paris', ORDER);
    expect([badStore.status, ((await badStore.json()) as ErrorBody).error.field]).toEqual([400, 'storeId']);
    const notJson = await call('/stores/paris-1/operations', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{ nope' });
    expect([notJson.status, ((await notJson.json()) as ErrorBody).error.message]).toEqual([400, expect.stringContaining('not valid JSON')]);
    const form = await call('/stores/paris-1/operations', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify(ORDER) });
    expect(form.status).toBe(415);

    const unknown = await post('brest-9', ORDER);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as ErrorBody).error).toMatchObject({ code: 'STORE_UNKNOWN' });
    expect((await call('/stores/brest-9')).status).toBe(404);

    const huge = await post('paris-1', { ...ORDER, payload: { note: 'x'.repeat(400 * 1024) } });
    expect(huge.status).toBe(413);
    expect(((await huge.json()) as ErrorBody).error.code).toBe('PAYLOAD_TOO_LARGE');
    // The connection that carried the oversized body still serves the next request.
    expect((await call('/stores')).status).toBe(200);
  });

  it('refuses a body nested deeper than 64 levels, or streamed past the limit without a Content-Length, before parsing it', async () => {
    const { call, post } = await world();
    const deep = await post('paris-1', { ...ORDER, payload: JSON.parse(`${'['.repeat(70)}${']'.repeat(70)}`) });
    expect([deep.status, ((await deep.json()) as ErrorBody).error]).toEqual([400, expect.objectContaining({ code: 'OPERATION_INVALID', message: expect.stringContaining('deeper than 64') })]);
    // Brackets inside strings are text, not nesting.
    expect((await post('paris-1', { ...ORDER, payload: { ...ORDER.payload, customer: '['.repeat(200) } })).status).toBe(200);
    const streamed = await call('/stores/paris-1/operations', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: new Blob([JSON.stringify({ ...ORDER, payload: { note: 'x'.repeat(400 * 1024) } })]).stream(),
      duplex: 'half',
    });
    expect([streamed.status, ((await streamed.json()) as ErrorBody).error.code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
  });

  it('answers 401 with WWW-Authenticate: Bearer without a token or with a wrong one, on every route', async () => {
    const { baseUrl } = await world();
    for (const [method, pathname] of [['GET', '/stores'], ['GET', '/metrics'], ['GET', '/events'], ['POST', '/stores/paris-1/operations'], ['GET', '/nowhere']]) {
      for (const authorization of [undefined, 'Bearer wrong-token-0123456789abcdef', `Basic ${TOKEN}`, `Bearer ${TOKEN}x`]) {
        const response = await fetch(`${baseUrl}${pathname}`, {
          method,
          headers: authorization === undefined ? {} : { authorization },
          ...(method === 'POST' ? { body: JSON.stringify(ORDER) } : {}),
        });
        expect(response.status, `${method} ${pathname} ${authorization}`).toBe(401);
        expect(response.headers.get('www-authenticate')).toMatch(/^Bearer/);
        expect(((await response.json()) as ErrorBody).error.code).toBe('API_UNAUTHORIZED');
      }
    }
  });

  it('answers 404 for an unknown route and 405 with Allow for a wrong method', async () => {
    const { call } = await world();
    const nowhere = await call('/operations');
    expect(nowhere.status).toBe(404);
    expect(((await nowhere.json()) as ErrorBody).error.code).toBe('ROUTE_NOT_FOUND');
    const putOperations = await call('/stores/paris-1/operations', { method: 'PUT' });
    expect([putOperations.status, putOperations.headers.get('allow')]).toEqual([405, 'POST, GET']);
    const deleteStore = await call('/stores/paris-1', { method: 'DELETE' });
    expect([deleteStore.status, deleteStore.headers.get('allow')]).toEqual([405, 'GET']);
    const postMetrics = await call('/metrics', { method: 'POST' });
    expect([postMetrics.status, postMetrics.headers.get('allow')]).toEqual([405, 'GET']);
  });

  it('lists every store with its link, and shows one with its delivery counters', async () => {
    const { call, post } = await world();
    const listed = (await (await call('/stores')).json()) as { stores: { storeId: string; state: unknown; tags: string[]; bidirectional: boolean }[] };
    expect(listed.stores).toEqual([
      expect.objectContaining({ storeId: 'paris-1', bidirectional: true, state: 'healthy', tags: ['relay'] }),
      expect.objectContaining({ storeId: 'nice-3', bidirectional: false, state: 'disabled', tags: [] }),
    ]);
    await post('paris-1', ORDER);
    const paris = await call('/stores/paris-1');
    expect(await paris.json()).toMatchObject({ storeId: 'paris-1', state: 'healthy', counters: { deliveries: { 'relay:delivered': 1 }, fallbacks: {} } });
  });

  it('serves Prometheus text that counts the deliveries made, their relay latency and the links by state', async () => {
    const { call, post } = await world();
    await post('paris-1', ORDER);
    await post('paris-1', { type: 'stock.query', payload: { skus: ['SKU-KETTLE'] } });
    await post('nice-3', ORDER);
    await post('paris-1', { type: 'price.update', payload: { prices: {} } });
    const response = await call('/metrics');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const metrics = parsePrometheusText(await response.text());
    expect(metrics.types).toMatchObject({
      storelink_deliveries_total: 'counter',
      storelink_fallbacks_total: 'counter',
      storelink_relay_latency_seconds: 'histogram',
      storelink_links: 'gauge',
    });
    expect(metrics.value('storelink_deliveries_total', { type: 'clickAndCollect.order', channel: 'relay', outcome: 'delivered' })).toBe(1);
    expect(metrics.value('storelink_deliveries_total', { type: 'stock.query', channel: 'relay', outcome: 'delivered' })).toBe(1);
    expect(metrics.value('storelink_deliveries_total', { type: 'clickAndCollect.order', channel: 'queue', outcome: 'queued' })).toBe(1);
    expect(metrics.value('storelink_deliveries_total', { type: 'price.update', channel: 'queue', outcome: 'queued' })).toBe(1);
    expect(metrics.value('storelink_fallbacks_total', { type: 'clickAndCollect.order', reason: 'relay-unavailable' })).toBe(1);
    expect(metrics.value('storelink_relay_latency_seconds_count', { type: 'clickAndCollect.order' })).toBe(1);
    expect(metrics.value('storelink_relay_latency_seconds_bucket', { type: 'stock.query', le: '+Inf' })).toBe(1);
    expect(metrics.value('storelink_relay_latency_seconds_sum', { type: 'stock.query' })).toBeGreaterThan(0);
    expect(metrics.value('storelink_store_deliveries_total', { store: 'paris-1', channel: 'relay', outcome: 'delivered' })).toBe(2);
    expect(metrics.value('storelink_store_deliveries_total', { store: 'paris-1', channel: 'queue', outcome: 'queued' })).toBe(1);
    expect(metrics.value('storelink_store_fallbacks_total', { store: 'nice-3', reason: 'relay-unavailable' })).toBe(1);
    expect(metrics.value('storelink_links', { state: 'healthy' })).toBe(1);
    expect(metrics.value('storelink_links', { state: 'disabled' })).toBe(1);
  });

  it('streams deliveries, link changes and store events as server-sent events, and ends the stream on close', async () => {
    const { call, post, agents, azure, dispatcher, api } = await world({ heartbeatIntervalInMs: 50 });
    const response = await call('/events');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const reader = response.body!.getReader();
    const state = { buffer: '' };
    closeables.push(() => reader.cancel());

    const published = post('paris-1', ORDER);
    const delivery = await nextEvent(reader, state, ({ event }) => event === 'delivery');
    const delivered = (await (await published).json()) as Delivery;
    expect(JSON.parse(delivery.data)).toMatchObject({ operationId: delivered.operationId, channel: 'relay', outcome: 'delivered' });

    void agents.get('nice-3')!.emit({ type: 'sale.recorded', body: { ticket: 'T-1', total: 12.5 } });
    const event = await nextEvent(reader, state, ({ event: name }) => name === 'store-event');
    expect(JSON.parse(event.data)).toMatchObject({ storeId: 'nice-3', type: 'sale.recorded', body: { total: 12.5 } });

    azure.relay.refuseListeners('store-paris-1');
    azure.relay.dropListeners('store-paris-1');
    const tripped = await nextEvent(reader, state, ({ event: name, data }) => name === 'link' && (JSON.parse(data) as { state: unknown }).state === 'tripped');
    expect(JSON.parse(tripped.data)).toMatchObject({ storeId: 'paris-1', previousState: 'healthy', tags: [] });
    expect(dispatcher.link('paris-1').state).toMatchObject({ tripped: {} });

    await nextEvent(reader, state, ({ comments }) => comments.includes('heartbeat'));
    await api.close();
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
    }
  });

  it('close() cuts a publish under way short with 503, and refuses new connections', async () => {
    let relayCalled: () => void = () => undefined;
    const called = new Promise<void>((resolve) => (relayCalled = resolve));
    // A relay that takes the call and never answers, until the call is aborted.
    const hangingRelay: FetchFunction = (_input, init) => {
      relayCalled();
      return new Promise((_resolve, reject) => init.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')), { once: true }));
    };
    const { post, api, baseUrl } = await world({ relayFetch: hangingRelay });
    const published = post('paris-1', ORDER);
    await called;
    await api.close();
    const response = await published;
    expect(response.status).toBe(503);
    expect(((await response.json()) as ErrorBody).error.code).toBe('ABORTED');
    await expect(fetch(`${baseUrl}/stores`, { headers: { authorization: `Bearer ${TOKEN}` } })).rejects.toThrow();
    await api.close();
  });

  it('close() does not wait for a client that is still sending its body', async () => {
    const { api, baseUrl } = await world();
    const socket = connect(Number(new URL(baseUrl).port), '127.0.0.1');
    closeables.push(() => Promise.resolve(socket.destroy()));
    await new Promise((resolve) => socket.once('connect', resolve));
    // The server cuts the connection: a reset is what the client should see.
    socket.on('error', () => undefined);
    const cut = new Promise((resolve) => socket.once('close', resolve));
    // `Expect: 100-continue` makes the server say when it holds the request, so close() surely finds it mid-body.
    const holding = new Promise((resolve) => socket.once('data', resolve));
    socket.write(`POST /stores/paris-1/operations HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 100\r\nexpect: 100-continue\r\n\r\n`);
    expect(String(await holding)).toMatch(/^HTTP\/1\.1 100 Continue/);
    socket.write('{"type":');
    await api.close();
    await cut;
  });

  it('stops following the dispatcher for an event stream whose client leaves', async () => {
    let streamEnded: (reason: unknown) => void = () => undefined;
    const ended = new Promise((resolve) => (streamEnded = resolve));
    const logger: Logger = {
      ...silentLogger,
      debug: (object, message) => {
        if (message === 'event stream ended') streamEnded((object as { reason: unknown }).reason);
      },
      child: () => logger,
    };
    const { call, post } = await world({ logger });
    const response = await call('/events');
    const reader = response.body!.getReader();
    await nextEvent(reader, { buffer: '' }, ({ comments }) => comments.includes('storelink events'));
    await reader.cancel();
    expect(await ended).toBe('client left');
    // The dispatcher and the API carry on without the stream.
    expect((await post('paris-1', ORDER)).status).toBe(200);
  });
});
