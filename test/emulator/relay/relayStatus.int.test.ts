// The status codes the relay itself produces (spec §10), for HTTP senders and for hyco-https listeners.
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  Closeables,
  echoHandler,
  httpUrl,
  listenUri,
  sasToken,
  send,
  startListener,
  startTestRelay,
} from './relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

async function detail(response: Response): Promise<string> {
  return response.text();
}

describe('sender status codes', () => {
  it('404 Endpoint does not exist for an unknown hybrid connection', async () => {
    const { emulator } = await startTestRelay(closeables);
    const response = await send(emulator, 'nope/x');
    expect(response.status).toBe(404);
    expect(response.statusText).toBe('Endpoint does not exist.');
    const body = await detail(response);
    expect(body).toContain('<Detail>Endpoint does not exist. TrackingId:');
    expect(response.headers.get('via')).toBeNull();
  });

  it('404 There are no listeners connected, by default', async () => {
    const { emulator } = await startTestRelay(closeables);
    const response = await send(emulator, 'hc1/x');
    expect(response.status).toBe(404);
    expect(response.statusText).toBe('There are no listeners connected for the endpoint.');
    await response.body?.cancel();
  });

  it('502 for no listener when configured so', async () => {
    const { emulator } = await startTestRelay(closeables, { noListenerStatus: 502 });
    const response = await send(emulator, 'hc1/x');
    expect(response.status).toBe(502);
    expect(await detail(response)).toContain('There are no listeners connected for the endpoint.');
  });

  it.each([
    ['no token', null, 401, 'MissingToken'],
    ['a wrong key', 'wrong-key', 401, 'InvalidSignature'],
    ['an unknown key name', 'unknown-name', 401, 'InvalidSignature'],
    ['an expired token', 'expired', 401, 'ExpiredToken'],
    ['a malformed token', 'SharedAccessSignature sr=x', 401, 'MalformedToken'],
    ['a Listen-only key', 'listen-only', 403, "'Send' claim(s) are required"],
    ['a token for another entity', 'other-entity', 403, 'InvalidAudience'],
  ])('refuses a sender with %s', async (_name, kind, status, text) => {
    const { emulator } = await startTestRelay(closeables, {
      sharedAccessPolicies: [
        { keyName: 'RootManageSharedAccessKey', primaryKey: 'SAS_KEY_VALUE', rights: ['Manage'] },
        { keyName: 'listen-only', primaryKey: 'listen-key', rights: ['Listen'] },
      ],
    });
    const listener = await startListener(closeables, emulator, 'hc1', echoHandler, { keyName: 'listen-only', key: 'listen-key' });
    const tokens: Record<string, string | null> = {
      'wrong-key': sasToken(emulator, 'hc1', { key: 'not-the-key' }),
      'unknown-name': sasToken(emulator, 'hc1', { keyName: 'nobody' }),
      expired: sasToken(emulator, 'hc1', { expiresOnInSeconds: Math.floor(Date.now() / 1000) - 60 }),
      'listen-only': sasToken(emulator, 'hc1', { keyName: 'listen-only', key: 'listen-key' }),
      'other-entity': sasToken(emulator, 'hc2'),
    };
    const token = kind === null ? null : (tokens[kind] ?? kind);
    const response = await send(emulator, 'hc1/x', { token });
    expect(response.status).toBe(status);
    expect(await detail(response)).toContain(text);
    expect(listener.errors).toEqual([]);
  });

  it('accepts the token in the Authorization header and does not forward it', async () => {
    const { emulator } = await startTestRelay(closeables);
    let authorization: string | undefined = 'unset';
    await startListener(closeables, emulator, 'hc1', (req, res) => {
      authorization = req.headers.authorization;
      res.end('ok');
    });
    const response = await send(emulator, 'hc1/x', { token: null, headers: { authorization: sasToken(emulator, 'hc1') } });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('ok');
    expect(authorization).toBeUndefined();
  });

  it('lets senders in without a token when the entity does not require client authorization', async () => {
    const { emulator } = await startTestRelay(closeables, {
      hybridConnections: [{ name: 'open', requiresClientAuthorization: false }],
    });
    const seen: Record<string, unknown>[] = [];
    await startListener(closeables, emulator, 'open', (req, res) => {
      seen.push({ ...req.headers });
      res.end('open');
    });
    const anonymous = await send(emulator, 'open/x', { token: null, headers: { authorization: 'Bearer app' } });
    expect(anonymous.status).toBe(200);
    expect(await anonymous.text()).toBe('open');
    const withToken = await send(emulator, 'open/x?sb-hc-token=abc');
    expect(withToken.status).toBe(200);
    await withToken.body?.cancel();
    expect(seen[0]).toMatchObject({ authorization: 'Bearer app' });
    expect(seen[1]).not.toHaveProperty('servicebusauthorization');
  });

  it('504 when the listener does not answer in time, and ignores its late answer', async () => {
    const { emulator, log } = await startTestRelay(closeables, { responseTimeoutInMs: 200 });
    const held: Array<() => void> = [];
    let received!: () => void;
    const requestReceived = new Promise<void>((resolve) => (received = resolve));
    await startListener(closeables, emulator, 'hc1', (req, res) => {
      if (req.url === '/hc1/slow') {
        held.push(() => res.end('too late'));
        received();
        return;
      }
      res.end('fast');
    });
    const slow = await send(emulator, 'hc1/slow');
    expect(slow.status).toBe(504);
    expect(await detail(slow)).toContain(
      'The request was routed to the listener but the listener did not respond in the required time.',
    );
    await requestReceived;
    const ignored = log.next('response.late');
    held[0]!();
    expect((await ignored).message).toContain('ignored a response');
    expect(emulator.counters().lateResponses).toBe(1);
    const fast = await send(emulator, 'hc1/fast');
    expect(await fast.text()).toBe('fast');
  });

  it('413 for a declared body over the limit, before reading it', async () => {
    const { emulator } = await startTestRelay(closeables, { maxBodySizeInBytes: 1024 });
    await startListener(closeables, emulator, 'hc1', echoHandler);
    const response = await send(emulator, 'hc1/x', { method: 'POST', body: Buffer.alloc(4096) });
    expect(response.status).toBe(413);
    await response.body?.cancel();
    expect(emulator.counters().relayedRequests).toBe(0);
  });

  it('413 for a chunked body that grows over the limit', async () => {
    const { emulator } = await startTestRelay(closeables, { maxBodySizeInBytes: 1024 });
    await startListener(closeables, emulator, 'hc1', echoHandler);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(800));
        controller.enqueue(new Uint8Array(800));
        controller.close();
      },
    });
    const response = await send(emulator, 'hc1/x', { method: 'POST', body: stream, duplex: 'half' });
    expect(response.status).toBe(413);
    await response.body?.cancel();
    const ok = await send(emulator, 'hc1/x', { method: 'POST', body: Buffer.alloc(1024, 1) });
    expect(ok.status).toBe(200);
    expect((await ok.arrayBuffer()).byteLength).toBe(1024);
  });

  it.each([
    ['inline', 20 * 1024],
    ['by rendezvous', 300 * 1024],
  ])('502 for a response body over the limit (%s), and the listener keeps serving', async (_name, size) => {
    const { emulator } = await startTestRelay(closeables, { maxBodySizeInBytes: 16 * 1024 });
    await startListener(closeables, emulator, 'hc1', (req, res) => {
      if (req.url === '/hc1/huge') res.end(Buffer.alloc(size, 'x'));
      else res.end('small');
    });
    const huge = await send(emulator, 'hc1/huge');
    expect(huge.status).toBe(502);
    expect(await detail(huge)).toContain('The response body is larger than the relay accepts.');
    const small = await send(emulator, 'hc1/small');
    expect(await small.text()).toBe('small');
  });

  it('400 for garbage HTTP, and keeps serving', async () => {
    const { emulator } = await startTestRelay(closeables);
    const socket = connect(emulator.port, '127.0.0.1');
    socket.on('error', () => undefined);
    const answer = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (data: Buffer) => (text += data.toString()));
      socket.on('close', () => resolve(text));
    });
    socket.write('THIS IS NOT HTTP\r\n\r\n');
    expect(await answer).toMatch(/^HTTP\/1\.1 400/);
    const response = await send(emulator, 'hc1/x');
    expect(response.status).toBe(404);
    await response.body?.cancel();
  });

  it('survives a sender that vanishes in the middle of its body', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    await startListener(closeables, emulator, 'hc1', echoHandler);
    const abandoned = log.next('request.abandoned');
    const socket = connect(emulator.port, '127.0.0.1', () => {
      socket.write(
        `POST /hc1/x HTTP/1.1\r\nHost: 127.0.0.1:${emulator.port}\r\nServiceBusAuthorization: ${sasToken(emulator, 'hc1')}\r\n` +
          'Content-Length: 1000\r\n\r\n0123456789',
      );
    });
    socket.on('error', () => undefined);
    // The relay reads the body only after the checks; once it is reading, the sender disappears.
    await log.next('sender.bodyReading');
    socket.destroy();
    await abandoned;
    const response = await send(emulator, 'hc1/y', { method: 'POST', body: 'still here' });
    expect(await response.text()).toBe('still here');
  });
});

describe('listener status codes', () => {
  it('refuses a listener with a wrong key (401) and one with a Send-only key (403)', async () => {
    const { emulator } = await startTestRelay(closeables, {
      sharedAccessPolicies: [
        { keyName: 'RootManageSharedAccessKey', primaryKey: 'SAS_KEY_VALUE', rights: ['Manage'] },
        { keyName: 'send-only', primaryKey: 'send-key', rights: ['Send'] },
      ],
    });
    const wrong = await startListener(closeables, emulator, 'hc1', echoHandler, { key: 'wrong', noWait: true });
    expect((await wrong.nextError()).message).toBe('Unexpected server response: 401');
    wrong.server.close();
    const sendOnly = await startListener(closeables, emulator, 'hc1', echoHandler, { keyName: 'send-only', key: 'send-key', noWait: true });
    expect((await sendOnly.nextError()).message).toBe('Unexpected server response: 403');
    sendOnly.server.close();
    expect(emulator.listenerCount('hc1')).toBe(0);
    expect(emulator.counters().listenerRejections).toBeGreaterThanOrEqual(2);
  });

  it('refuses a listener for an unknown entity with 404, unless autoCreate is on', async () => {
    const { emulator } = await startTestRelay(closeables);
    const unknown = await startListener(closeables, emulator, 'shop/store-7', echoHandler, { noWait: true });
    expect((await unknown.nextError()).message).toBe('Unexpected server response: 404');
    unknown.server.close();

    const auto = await startTestRelay(closeables, { autoCreate: true });
    await startListener(closeables, auto.emulator, 'shop/store-7', echoHandler);
    expect(auto.emulator.hybridConnectionNames()).toContain('shop/store-7');
    const response = await send(auto.emulator, 'shop/store-7/orders', { method: 'POST', body: 'o1' });
    expect(await response.text()).toBe('o1');
  });

  it('refuses listeners above maxListenersPerConnection with 403', async () => {
    const { emulator } = await startTestRelay(closeables, { maxListenersPerConnection: 2 });
    await startListener(closeables, emulator, 'hc1', echoHandler);
    await startListener(closeables, emulator, 'hc1', echoHandler);
    const third = await startListener(closeables, emulator, 'hc1', echoHandler, { noWait: true });
    expect((await third.nextError()).message).toBe('Unexpected server response: 403');
    third.server.close();
    expect(emulator.listenerCount('hc1')).toBe(2);
  });

  it('accepts a listener token in the sb-hc-token query parameter', async () => {
    const { emulator } = await startTestRelay(closeables);
    const socket = new WebSocket(`${listenUri(emulator, 'hc1')}&sb-hc-token=${encodeURIComponent(sasToken(emulator, 'hc1'))}&sb-hc-id=track-1`);
    closeables.add(() => socket.terminate());
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    expect(emulator.listeners('hc1')).toMatchObject([{ trackingId: 'track-1', hybridConnection: 'hc1' }]);
  });
});

describe('upgrades', () => {
  async function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
    const socket = new WebSocket(url, { headers });
    return new Promise((resolve, reject) => {
      socket.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        socket.terminate();
      });
      socket.once('open', () => reject(new Error('upgrade unexpectedly accepted')));
      socket.once('error', () => undefined);
    });
  }

  it('400 for an upgrade outside /$hc/ or with an unknown action', async () => {
    const { emulator } = await startTestRelay(closeables);
    expect(await upgradeStatus(httpUrl(emulator, 'hc1').replace('http', 'ws'))).toBe(400);
    expect(await upgradeStatus(`ws://127.0.0.1:${emulator.port}/$hc/hc1?sb-hc-action=dance`)).toBe(400);
  });

  it('refuses WebSocket senders: 404 unknown, 401 without token, then no listener, then 501', async () => {
    const { emulator } = await startTestRelay(closeables);
    const base = `ws://127.0.0.1:${emulator.port}/$hc`;
    const auth = { ServiceBusAuthorization: sasToken(emulator, 'hc1') };
    expect(await upgradeStatus(`${base}/nope?sb-hc-action=connect`, auth)).toBe(404);
    expect(await upgradeStatus(`${base}/hc1?sb-hc-action=connect`)).toBe(401);
    expect(await upgradeStatus(`${base}/hc1?sb-hc-action=connect`, auth)).toBe(404);
    await startListener(closeables, emulator, 'hc1', echoHandler);
    expect(await upgradeStatus(`${base}/hc1?sb-hc-action=connect`, auth)).toBe(501);
    expect(await upgradeStatus(`${base}/hc1?sb-hc-action=accept&sb-hc-id=x`)).toBe(410);
  });

  it('400 for an upgrade request that is not a valid WebSocket handshake', async () => {
    const { emulator } = await startTestRelay(closeables);
    const socket = connect(emulator.port, '127.0.0.1');
    socket.on('error', () => undefined);
    const answer = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (data: Buffer) => (text += data.toString()));
      socket.on('close', () => resolve(text));
    });
    socket.write(
      `GET /$hc/hc1?sb-hc-action=listen HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        `ServiceBusAuthorization: ${sasToken(emulator, 'hc1')}\r\n\r\n`,
    );
    expect(await answer).toMatch(/^HTTP\/1\.1 400/);
    expect(emulator.listenerCount('hc1')).toBe(0);
  });
});
