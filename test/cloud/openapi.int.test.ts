import { Validator } from '@seriousme/openapi-schema-validator';
import { fastify } from 'fastify';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { storeLinkMachine } from '../../machines/storeLink.machine.js';
import { chartModelOf } from '../../src/charts/chartModel.js';
import { createDispatcher } from '../../src/cloud/dispatcher.js';
import { createCloudHttpApi } from '../../src/cloud/httpApi.js';
import { RouteCatalogue, openApiDocument } from '../../src/cloud/http/openapi.js';
import { apiKeyListSchema, deliverySchema, storeLinkViewSchema, storeListSchema } from '../../src/cloud/http/responseSchemas.js';
import { silentLogger } from '../../src/core/logger.js';
import { parsePolicy } from '../../src/core/policy.js';
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { createStoreAgent } from '../../src/store/storeAgent.js';
import { createStore } from '../../samples/store-click-and-collect/store.js';
import { builtConsole } from '../support/browser.js';
import { dispatcherSigningOptions, storePublicKeys, storeSigningOptions } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const TOKEN = 'test-token-0123456789abcdef';
const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };

type Document = {
  openapi: string;
  paths: Record<string, Record<string, { summary?: string; 'x-storelink-undocumented'?: boolean; 'x-storelink-scope'?: string; security?: unknown; responses: Record<string, unknown> }>>;
};

/** Every operation of the document as `METHOD /path/{param}`. */
function operationsOf(document: Document): string[] {
  return Object.entries(document.paths).flatMap(([pathName, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${pathName}`));
}

/** The operations of the document that lack their entry (summary and a success or redirect answer written next to the route). */
function undocumented(document: Document): string[] {
  return Object.entries(document.paths).flatMap(([pathName, methods]) =>
    Object.entries(methods)
      .filter(([, operation]) => operation['x-storelink-undocumented'] === true || !Object.keys(operation.responses).some((status) => status.startsWith('2') || status.startsWith('3')))
      .map(([method]) => `${method.toUpperCase()} ${pathName}`),
  );
}

async function world() {
  const azure = await startEmulators({
    namespaces: [{ queues: [{ name: 'store-paris-1', lockDurationInMs: 2_000 }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }],
    hybridConnections: [{ name: 'store-paris-1' }],
  });
  closeables.push(() => azure.close());
  const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-openapi-'));
  closeables.push(() => rm(dataDir, { recursive: true, force: true }));
  const store = await createStore({ storeId: 'paris-1', dataDir, logger: silentLogger });
  const agent = createStoreAgent({
    storeId: 'paris-1',
    ...storeSigningOptions('paris-1'),
    handlers: store.handlers,
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString() },
    expose: store.expose ?? [],
    dataDir,
  });
  closeables.push(() => agent.close());
  await agent.start();
  await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
  const dispatcher = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString() },
    policy: parsePolicy({ operations: { 'stock.query': { latency: 'realtime', fallback: 'cached', relayTimeoutInMs: 2_000 } } }),
    stores: [{ storeId: 'paris-1', bidirectional: true, ...storePublicKeys('paris-1') }],
    ...dispatcherSigningOptions(),
  });
  closeables.push(() => dispatcher.close());
  // With the console, so that its routes are served and must be in the document too.
  const built = await builtConsole();
  closeables.push(built.remove);
  const api = createCloudHttpApi({ dispatcher, token: TOKEN, console: { assetsDir: built.assetsDir, chart: chartModelOf(storeLinkMachine) } });
  closeables.push(() => api.close());
  const { port } = await api.listen();
  const call = (pathname: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${port}${pathname}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers as Record<string, string> | undefined) } });
  return { call, port };
}

describe('GET /openapi.json', () => {
  it('is a valid OpenAPI 3.1 document listing every route the API serves, each with its entry, scope and error shape', async () => {
    const { call, port } = await world();
    const response = await call('/openapi.json');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const document = (await response.json()) as Document;

    const validator = new Validator();
    const result = await validator.validate(document);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');

    expect(operationsOf(document).sort()).toEqual(
      [
        'GET /activity',
        'GET /api-keys',
        'GET /console',
        'GET /console/',
        'GET /console/{file}',
        'GET /events',
        'GET /metrics',
        'GET /openapi.json',
        'GET /operations/{id}',
        'GET /session',
        'GET /stores',
        'GET /stores/{storeId}',
        'GET /stores/{storeId}/chart',
        'GET /stores/{storeId}/dead-letters',
        'GET /stores/{storeId}/operations',
        'POST /stores/{storeId}/dead-letters/{sequenceNumber}/resubmit',
        'POST /stores/{storeId}/operations',
      ].sort(),
    );
    expect(undocumented(document)).toEqual([]);
    const scopes = Object.fromEntries(operationsOf(document).map((name) => {
      const [method, pathName] = name.split(' ') as [string, string];
      return [name, document.paths[pathName]![method.toLowerCase()]!['x-storelink-scope']];
    }));
    expect(scopes).toEqual({
      'GET /activity': 'read',
      'GET /console': 'public',
      'GET /console/': 'public',
      'GET /console/{file}': 'public',
      'GET /session': 'authenticated',
      'GET /stores/{storeId}/chart': 'read',
      'GET /stores/{storeId}/dead-letters': 'read',
      'GET /operations/{id}': 'read',
      'GET /stores/{storeId}/operations': 'read',
      'POST /stores/{storeId}/dead-letters/{sequenceNumber}/resubmit': 'admin',
      'GET /api-keys': 'admin',
      'GET /events': 'read',
      'GET /metrics': 'read',
      'GET /openapi.json': 'read',
      'GET /stores': 'read',
      'GET /stores/{storeId}': 'read',
      'POST /stores/{storeId}/operations': 'publish',
    });
    const publish = document.paths['/stores/{storeId}/operations']!.post! as unknown as {
      security: unknown;
      requestBody: { content: { 'application/json': { schema: { properties: Record<string, unknown>; required: string[]; additionalProperties: boolean } } } };
      parameters: { name: string; in: string; schema: { pattern?: string; maxLength?: number } }[];
      responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
    };
    expect(publish.security).toEqual([{ apiKey: ['publish'] }]);
    // The console's static files need no key at all.
    expect((document.paths['/console/']!.get! as unknown as { security: unknown }).security).toEqual([]);
    // The request body is the zod schema that validates it: its fields, the required ones, no others.
    const body = publish.requestBody.content['application/json'].schema;
    expect(Object.keys(body.properties).sort()).toEqual(['awaitReplyInMs', 'id', 'latency', 'payload', 'timeToLiveInMs', 'type']);
    expect(body.required.sort()).toEqual(['payload', 'type']);
    expect(body.additionalProperties).toBe(false);
    expect(publish.parameters).toEqual([expect.objectContaining({ name: 'storeId', in: 'path', schema: expect.objectContaining({ maxLength: 64, pattern: expect.any(String) }) })]);
    for (const status of ['400', '401', '403', '404', '413', '500', '503']) {
      expect(publish.responses[status]?.content?.['application/json']?.schema, status).toEqual({ $ref: '#/components/schemas/Error' });
    }

    // The document says what the server answers: real answers parse with the schemas it was made from.
    const delivered = await call('/stores/paris-1/operations', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'stock.query', payload: { skus: ['SKU-KETTLE'] } }) });
    expect(delivered.status).toBe(200);
    expect(deliverySchema.strict().parse(await delivered.json()).outcome).toBe('delivered');
    storeListSchema.parse(await (await call('/stores')).json());
    expect(storeLinkViewSchema.strict().parse(await (await call('/stores/paris-1')).json()).storeId).toBe('paris-1');
    apiKeyListSchema.parse(await (await call('/api-keys')).json());
    const refused: unknown = await (await fetch(`http://127.0.0.1:${port}/openapi.json`)).json();
    const errorSchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
    expect(errorSchema.parse(refused).error.code).toBe('API_UNAUTHORIZED');
  });
});

describe('the route catalogue', () => {
  it('lists a route registered without an OpenAPI entry as undocumented, and leaves out the ones marked openapi: false', async () => {
    const app = fastify({ exposeHeadRoutes: false });
    const catalogue = new RouteCatalogue();
    app.addHook('onRoute', (route) => catalogue.add(route));
    app.get('/documented', { config: { scope: 'read', openapi: { summary: 'Documented', response: { description: 'ok', schema: z.object({ ok: z.boolean() }) } } } }, () => ({ ok: true }));
    app.get('/forgotten/:id', { config: { scope: 'read' } }, () => ({}));
    app.delete('/documented', { config: { scope: 'authenticated', openapi: false } }, () => ({}));
    await app.ready();
    const document = openApiDocument(catalogue, { title: 'test', version: '1.0.0' }) as Document;
    expect(operationsOf(document).sort()).toEqual(['GET /documented', 'GET /forgotten/{id}']);
    expect(undocumented(document)).toEqual(['GET /forgotten/{id}']);
    expect((await new Validator().validate(document as unknown as Record<string, unknown>)).valid).toBe(true);
    await app.close();
  });
});
