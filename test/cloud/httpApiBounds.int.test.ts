/**
 * The cloud HTTP API against hostile clients: a body nested 10,000 deep is refused cheaply, and a client that dribbles
 * its request (headers or body) a byte at a time is cut off by the configured timeouts. Real dispatcher and Service
 * Bus emulator; raw sockets for the slow clients.
 */
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatcher, type Dispatcher } from '../../src/cloud/dispatcher.js';
import type { JsonValue } from '../../src/core/json.js';
import { createCloudHttpApi, type CloudHttpApiOptions } from '../../src/cloud/httpApi.js';
import { startServiceBusEmulator } from '../../src/emulator/servicebus/index.js';
import { slowClient } from '../support/slowClient.js';
import { dispatcherSigningOptions, storePublicKeys } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const TOKEN = 'test-token-0123456789abcdef';
const STORE = 'paris-1';

async function api(options: Partial<CloudHttpApiOptions> = {}): Promise<{ port: number; dispatcher: Dispatcher }> {
  const emulator = await startServiceBusEmulator({ namespaces: [{ queues: [{ name: `store-${STORE}` }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }] });
  closeables.push(() => emulator.close());
  const dispatcher = createDispatcher({ serviceBus: { connectionString: emulator.connectionString() }, stores: [{ storeId: STORE, bidirectional: false, ...storePublicKeys(STORE) }], ...dispatcherSigningOptions() });
  closeables.push(() => dispatcher.close());
  const httpApi = createCloudHttpApi({ dispatcher, token: TOKEN, ...options });
  closeables.push(() => httpApi.close());
  return { ...(await httpApi.listen()), dispatcher };
}

function dribble(port: number, head: string, drip: string): Promise<string> {
  const client = slowClient(port, head, drip);
  closeables.push(() => Promise.resolve(client.destroy()));
  return client.closed;
}

describe('cloud HTTP API: bounds and timeouts', () => {
  it('refuses a body nested 10,000 deep with 400 OPERATION_INVALID, and keeps serving', async () => {
    const { port } = await api();
    const url = `http://127.0.0.1:${port}/stores/${STORE}/operations`;
    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const deep = await request(url, { method: 'POST', headers, body: `{"type":"price.update","payload":${'['.repeat(10_000)}${']'.repeat(10_000)}}` });
    expect(deep.statusCode).toBe(400);
    expect(await deep.body.json()).toEqual({ error: { code: 'OPERATION_INVALID', message: expect.stringContaining('deeper than 64') } });
    const fine = await request(url, { method: 'POST', headers, body: JSON.stringify({ type: 'price.update', payload: { sku: 'A', price: 1 } }) });
    expect(fine.statusCode).toBe(200);
    expect(await fine.body.json()).toMatchObject({ channel: 'queue', outcome: 'queued' });
  });

  it('refuses a payload value nested 10,000 deep given to publish as OPERATION_INVALID, not a stack overflow', async () => {
    const { dispatcher } = await api();
    let payload: JsonValue = 0;
    for (let level = 0; level < 10_000; level += 1) payload = [payload];
    await expect(dispatcher.publish({ storeId: STORE, type: 'price.update', payload })).rejects.toMatchObject({ code: 'OPERATION_INVALID', field: 'payload' });
  });

  it('cuts a client that dribbles its request headers once headersTimeoutInMs has passed', async () => {
    const { port } = await api({ headersTimeoutInMs: 300, requestTimeoutInMs: 60_000 });
    const answer = await dribble(port, 'GET /stores HTTP/1.1\r\nHost: 127.0.0.1\r\n', `authorization: Bearer ${TOKEN}${'x'.repeat(10_000)}`);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    // The API's own error shape, with a stable code.
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual({ error: { code: 'REQUEST_TIMEOUT', message: expect.stringContaining('headers') } });
  });

  it('cuts a client that dribbles its request body once requestTimeoutInMs has passed', async () => {
    const { port } = await api({ headersTimeoutInMs: 200, requestTimeoutInMs: 400 });
    const head = `POST /stores/${STORE}/operations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n`;
    const answer = await dribble(port, head, ' '.repeat(10_000));
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: 'REQUEST_TIMEOUT' } });
  });

  it('answers malformed HTTP with 400 OPERATION_INVALID in the API\'s error shape', async () => {
    const { port } = await api();
    const answer = await dribble(port, 'THIS IS NOT HTTP\r\n\r\n', '');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: 'OPERATION_INVALID' } });
  });

  it('closes an idle connection that never sends a byte once connectionTimeoutInMs has passed', async () => {
    const { port } = await api({ connectionTimeoutInMs: 300 });
    expect(await dribble(port, '', '')).toBe('');
  });

  it.each([
    [{ headersTimeoutInMs: 0 }, /headersTimeoutInMs must be a positive/],
    [{ headersTimeoutInMs: 2_000, requestTimeoutInMs: 1_000 }, /headersTimeoutInMs .* at most requestTimeoutInMs/],
    [{ keepAliveTimeoutInMs: -1 }, /keepAliveTimeoutInMs must be a positive/],
  ])('refuses timeouts %j', async (options, message) => {
    const emulator = await startServiceBusEmulator();
    closeables.push(() => emulator.close());
    const dispatcher = createDispatcher({ serviceBus: { connectionString: emulator.connectionString() }, stores: [], ...dispatcherSigningOptions() });
    closeables.push(() => dispatcher.close());
    expect(() => createCloudHttpApi({ dispatcher, token: TOKEN, ...options })).toThrow(message);
  });
});
