import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newApiKey, type ApiKeyRecord, type ApiScope } from '../../src/cloud/apiKeys.js';
import { writeApiKeyFile } from '../../src/cloud/apiKeyFile.js';
import { createDispatcher, type Delivery } from '../../src/cloud/dispatcher.js';
import { createCloudHttpApi } from '../../src/cloud/httpApi.js';
import type { Logger } from '../../src/core/logger.js';
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { dispatcherSigningOptions, storePublicKeys } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const NOW = Date.parse('2031-03-01T09:00:00Z');
const PRICE_UPDATE = { type: 'price.update', payload: { sku: 'SKU-KETTLE', price: 39 }, awaitReplyInMs: 0 };

interface ErrorBody {
  error: { code: string; message: string };
}

/** A logger that keeps every line, bindings included, as JSON text. */
function recordingLogger(lines: string[], bindings: Record<string, unknown> = {}): Logger {
  const write = (level: string) => (object: object, message?: string) => lines.push(JSON.stringify({ level, ...bindings, ...object, message }));
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error'), child: (more) => recordingLogger(lines, { ...bindings, ...more }) };
}

async function world(options: { now?: () => number; heartbeatIntervalInMs?: number; apiKeysRecheckInMs?: number } = {}) {
  const azure = await startEmulators({ namespaces: [{ queues: [{ name: 'store-nice-3' }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }] });
  closeables.push(() => azure.close());
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-apikeys-'));
  closeables.push(() => rm(directory, { recursive: true, force: true }));
  const keysFile = path.join(directory, 'api-keys.json');
  const keys = new Map<string, { presented: string; record: ApiKeyRecord }>();
  const make = (name: string, scopes: ApiScope[], expiresAt?: number) => {
    const key = newApiKey({ name, scopes, now: NOW - 60_000, ...(expiresAt === undefined ? {} : { expiresAt }) });
    keys.set(name, key);
    return key.presented;
  };
  const save = (names: string[]) => writeApiKeyFile(keysFile, { keys: names.map((name) => keys.get(name)!.record) });
  const publisher = make('shop-backend', ['publish']);
  const reader = make('dashboard', ['read']);
  const admin = make('ops', ['admin']);
  await save(['shop-backend', 'dashboard', 'ops']);

  const dispatcher = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: { maxRetries: 1, retryDelayInMs: 50, timeoutInMs: 3_000 } },
    stores: [{ storeId: 'nice-3', bidirectional: false, ...storePublicKeys('nice-3') }],
    ...dispatcherSigningOptions(),
  });
  closeables.push(() => dispatcher.close());
  const deliveries: Delivery[] = [];
  const subscription = dispatcher.deliveries$.subscribe((delivery) => deliveries.push(delivery));
  closeables.push(() => Promise.resolve(subscription.unsubscribe()));
  const logLines: string[] = [];
  const api = createCloudHttpApi({
    dispatcher,
    apiKeysFile: keysFile,
    logger: recordingLogger(logLines),
    now: options.now ?? (() => NOW),
    ...(options.heartbeatIntervalInMs === undefined ? {} : { heartbeatIntervalInMs: options.heartbeatIntervalInMs }),
    ...(options.apiKeysRecheckInMs === undefined ? {} : { apiKeysRecheckInMs: options.apiKeysRecheckInMs }),
  });
  closeables.push(() => api.close());
  const { port } = await api.listen();
  const baseUrl = `http://127.0.0.1:${port}`;
  const call = (key: string | undefined, pathname: string, init: RequestInit = {}) =>
    fetch(`${baseUrl}${pathname}`, { ...init, headers: { ...(key === undefined ? {} : { authorization: `Bearer ${key}` }), ...(init.headers as Record<string, string>) } });
  const publish = (key: string | undefined) =>
    call(key, '/stores/nice-3/operations', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(PRICE_UPDATE) });
  return { baseUrl, keysFile, make, save, publisher, reader, admin, deliveries, logLines, call, publish };
}

async function refusal(response: Response): Promise<[number, string, string]> {
  const body = (await response.json()) as ErrorBody;
  return [response.status, body.error.code, body.error.message];
}

describe('cloud HTTP API keys and scopes', () => {
  it('answers 401 API_UNAUTHORIZED for a missing, unknown or wrong key, on every route', async () => {
    const { baseUrl, publisher } = await world();
    const [name, secret] = publisher.split('.') as [string, string];
    const wrong = [undefined, `stranger.${secret}`, `${name}.${'A'.repeat(secret.length)}`, `${name}.${secret}x`, secret, name, `${name}.`, `Basic ${publisher}`];
    for (const [method, pathname] of [['POST', '/stores/nice-3/operations'], ['GET', '/stores'], ['GET', '/events'], ['GET', '/metrics'], ['GET', '/api-keys'], ['GET', '/nowhere']] as const) {
      for (const key of wrong) {
        const response = await fetch(`${baseUrl}${pathname}`, {
          method,
          headers: key === undefined ? {} : { authorization: key.startsWith('Basic ') ? key : `Bearer ${key}` },
          ...(method === 'POST' ? { body: JSON.stringify(PRICE_UPDATE) } : {}),
        });
        const [status, code] = await refusal(response);
        expect([status, code], `${method} ${pathname} with ${key}`).toEqual([401, 'API_UNAUTHORIZED']);
        expect(response.headers.get('www-authenticate')).toMatch(/^Bearer realm="storelink"/);
      }
    }
  });

  it('refuses POST operations with 403 API_FORBIDDEN naming the publish scope to a key without it, and publishes with a publish key', async () => {
    const { publisher, reader, admin, deliveries, publish } = await world();
    for (const key of [reader, admin]) {
      const response = await publish(key);
      const [status, code, message] = await refusal(response);
      expect([status, code]).toEqual([403, 'API_FORBIDDEN']);
      expect(message).toContain('"publish" scope');
      expect(message).not.toMatch(/dashboard|ops/);
      expect(response.headers.get('www-authenticate')).toBe('Bearer realm="storelink", error="insufficient_scope", scope="publish"');
    }
    const published = await publish(publisher);
    expect(published.status).toBe(200);
    const delivery = (await published.json()) as Delivery;
    expect(delivery).toMatchObject({ storeId: 'nice-3', channel: 'queue', outcome: 'queued' });
    // Only the publish key's operation went out.
    expect(deliveries.map(({ operationId }) => operationId)).toEqual([delivery.operationId]);
  });

  it('lets a read key read stores, a store, metrics and the event stream, and nothing else', async () => {
    const { publisher, reader, call, publish } = await world();
    expect(await (await call(reader, '/stores')).json()).toMatchObject({ stores: [{ storeId: 'nice-3' }] });
    expect(await (await call(reader, '/stores/nice-3')).json()).toMatchObject({ storeId: 'nice-3' });
    const metrics = await call(reader, '/metrics');
    expect([metrics.status, await metrics.text()]).toEqual([200, expect.stringContaining('storelink_')]);

    const controller = new AbortController();
    closeables.push(() => Promise.resolve(controller.abort()));
    const events = await call(reader, '/events', { signal: controller.signal });
    expect([events.status, events.headers.get('content-type')]).toEqual([200, 'text/event-stream; charset=utf-8']);
    const reader$ = events.body!.getReader();
    const published = (await (await publish(publisher)).json()) as Delivery;
    let text = '';
    while (!text.includes(`"operationId":"${published.operationId}"`)) {
      const chunk = await reader$.read();
      if (chunk.done) throw new Error(`the event stream ended before the delivery; it said: ${text}`);
      text += new TextDecoder().decode(chunk.value as Uint8Array);
    }
    expect(text).toContain('event: delivery');

    expect((await refusal(await publish(reader))).slice(0, 2)).toEqual([403, 'API_FORBIDDEN']);
    const [status, code, message] = await refusal(await call(reader, '/api-keys'));
    expect([status, code, message]).toEqual([403, 'API_FORBIDDEN', 'GET /api-keys needs an API key with the "admin" scope']);
  });

  it('keeps the admin route to admin keys: a publish or read key is refused, an admin key lists names and scopes, never a hash', async () => {
    const { publisher, reader, admin, call } = await world();
    for (const key of [publisher, reader]) {
      const response = await call(key, '/api-keys');
      expect((await refusal(response)).slice(0, 2)).toEqual([403, 'API_FORBIDDEN']);
      expect(response.headers.get('www-authenticate')).toContain('scope="admin"');
    }
    // A publish key reads nothing either: scopes are independent.
    expect((await refusal(await call(publisher, '/stores'))).slice(0, 2)).toEqual([403, 'API_FORBIDDEN']);
    const listed = await call(admin, '/api-keys');
    const text = await listed.text();
    expect(JSON.parse(text)).toEqual({
      keys: [
        { name: 'shop-backend', scopes: ['publish'], createdAt: '2031-03-01T08:59:00.000Z' },
        { name: 'dashboard', scopes: ['read'], createdAt: '2031-03-01T08:59:00.000Z' },
        { name: 'ops', scopes: ['admin'], createdAt: '2031-03-01T08:59:00.000Z' },
      ],
    });
    expect(text).not.toContain('sha256');
    // Any valid key learns only that there is nothing at a path, or which methods a path serves.
    expect((await refusal(await call(reader, '/nowhere'))).slice(0, 2)).toEqual([404, 'ROUTE_NOT_FOUND']);
    expect((await call(reader, '/stores/nice-3/operations', { method: 'PUT' })).status).toBe(405);
  });

  it('with apiKeysRecheckInMs 0, takes a key added to the file at once, refuses a removed one at once, and refuses all while the file is unusable', async () => {
    const { keysFile, make, save, publisher, call, publish } = await world({ apiKeysRecheckInMs: 0 });
    const added = make('new-backend', ['publish', 'read']);
    expect((await call(added, '/stores')).status).toBe(401);
    await save(['shop-backend', 'dashboard', 'ops', 'new-backend']);
    expect((await publish(added)).status).toBe(200);
    expect((await publish(publisher)).status).toBe(200);

    // Revoked: the very next request is refused.
    await save(['dashboard', 'ops', 'new-backend']);
    expect((await refusal(await publish(publisher))).slice(0, 2)).toEqual([401, 'API_UNAUTHORIZED']);
    expect((await call(added, '/stores')).status).toBe(200);

    // Written in place rather than renamed (an editor): seen too.
    const text = await readFile(keysFile, 'utf8');
    await writeFile(keysFile, JSON.stringify({ keys: (JSON.parse(text) as { keys: ApiKeyRecord[] }).keys.filter((key) => key.name !== 'new-backend') }));
    expect((await call(added, '/stores')).status).toBe(401);

    // Half-written or gone: nobody is let in on the strength of an older copy, until the file is whole again.
    await writeFile(keysFile, '{"keys": [');
    expect((await refusal(await call(added, '/stores'))).slice(0, 2)).toEqual([503, 'API_KEYS_UNAVAILABLE']);
    await rm(keysFile);
    expect((await refusal(await call(added, '/stores'))).slice(0, 2)).toEqual([503, 'API_KEYS_UNAVAILABLE']);
    await save(['new-backend']);
    expect((await call(added, '/stores')).status).toBe(200);
  });

  it('ends an open event stream at its next heartbeat once its key is revoked, and keeps the streams of valid keys', async () => {
    const { make, save, reader, call } = await world({ heartbeatIntervalInMs: 50, apiKeysRecheckInMs: 0 });
    const grafana = make('grafana', ['read']);
    await save(['dashboard', 'grafana']);
    const controller = new AbortController();
    closeables.push(() => Promise.resolve(controller.abort()));
    const [revoked, kept] = await Promise.all([reader, grafana].map((key) => call(key, '/events', { signal: controller.signal })));
    const revokedReader = revoked!.body!.getReader();
    const keptReader = kept!.body!.getReader();
    expect(new TextDecoder().decode((await revokedReader.read()).value as Uint8Array)).toContain(': storelink events');
    await save(['grafana']);
    let chunk = await revokedReader.read();
    while (!chunk.done) chunk = await revokedReader.read();
    expect(chunk.done).toBe(true);
    // The other stream still beats.
    let text = '';
    while (!text.includes(': heartbeat')) {
      const next = await keptReader.read();
      expect(next.done).toBe(false);
      text += new TextDecoder().decode(next.value as Uint8Array);
    }
  });

  it('refuses a key from its expiry on, by the injected clock', async () => {
    let now = NOW;
    const { make, save, call } = await world({ now: () => now, apiKeysRecheckInMs: 0 });
    const expiring = make('temp', ['read'], NOW + 60_000);
    await save(['temp']);
    expect((await call(expiring, '/stores')).status).toBe(200);
    now = NOW + 60_000;
    expect((await refusal(await call(expiring, '/stores'))).slice(0, 2)).toEqual([401, 'API_UNAUTHORIZED']);
  });

  it('never writes a secret to the log or the key file, and logs which key each request used', async () => {
    const { keysFile, publisher, reader, logLines, call, publish } = await world();
    await publish(publisher);
    await call(reader, '/stores');
    await publish(reader);
    await call(`${publisher}x`, '/stores');
    const secrets = [publisher, reader].map((key) => key.split('.')[1]!);
    const file = await readFile(keysFile, 'utf8');
    for (const secret of secrets) {
      expect(file).not.toContain(secret);
      for (const line of logLines) expect(line).not.toContain(secret);
    }
    const answered = logLines.map((line) => JSON.parse(line) as { message?: string; apiKey?: string; status?: number }).filter((line) => line.message === 'request answered');
    expect(answered.map(({ apiKey, status }) => [apiKey, status])).toEqual([
      ['shop-backend', 200],
      ['dashboard', 200],
      ['dashboard', 403],
      [undefined, 401],
    ]);
  });
});
