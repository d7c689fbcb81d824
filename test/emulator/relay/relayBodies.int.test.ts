// Request and response bodies through the real hyco-https listener: inline on the control channel up to 64 KiB,
// by rendezvous above, in both directions (spec §5, §6, §12).
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Closeables,
  echoHandler,
  patternBytes,
  readBody,
  sasToken,
  send,
  startListener,
  startTestRelay,
  type RequestHandler,
} from './relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

const KIB = 1024;

async function echoRelay(handler: RequestHandler = echoHandler) {
  const relay = await startTestRelay(closeables);
  await startListener(closeables, relay.emulator, 'hc1', handler);
  return relay;
}

describe('request and response bodies', () => {
  it('echoes a small JSON body with the hybrid connection in req.url and the relay query removed', async () => {
    const seen: { url?: string; headers?: Record<string, unknown> } = {};
    const { emulator } = await echoRelay((req, res) => {
      seen.url = req.url;
      seen.headers = { ...req.headers };
      echoHandler(req, res);
    });
    const token = encodeURIComponent(sasToken(emulator, 'hc1'));
    const response = await send(emulator, `hc1/api/echo?x=1&sb-hc-token=${token}&y=%20`, {
      token: null,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-custom': 'Hello' },
      body: JSON.stringify({ hello: 'store' }),
    });
    expect(response.status).toBe(200);
    expect(response.statusText).toBe('OK');
    expect(await response.json()).toEqual({ hello: 'store' });
    expect(response.headers.get('x-url')).toBe('/hc1/api/echo?x=1&y=%20');
    expect(response.headers.get('via')).toBe('1.1 127.0.0.1');
    expect(seen.url).toBe('/hc1/api/echo?x=1&y=%20');
    expect(seen.headers).toMatchObject({ 'content-type': 'application/json', 'x-custom': 'Hello', via: '1.1 127.0.0.1' });
    expect(seen.headers).not.toHaveProperty('servicebusauthorization');
    expect(seen.headers).not.toHaveProperty('content-length');
  });

  it.each([
    ['1 byte', 1],
    ['1 KiB', KIB],
    ['exactly 64 KiB (inline)', 64 * KIB],
    ['64 KiB + 1 (rendezvous)', 64 * KIB + 1],
    ['200 KiB (rendezvous both ways)', 200 * KIB],
    ['3 MiB', 3 * 1024 * KIB],
  ])('relays %s of raw bytes both ways unchanged', async (_name, size) => {
    const { emulator, log } = await echoRelay();
    const body = patternBytes(size, size);
    const response = await send(emulator, 'hc1/raw', { method: 'POST', body });
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer()).equals(body)).toBe(true);
    expect(emulator.counters().rendezvousRequests).toBe(size > 64 * KIB ? 1 : 0);
    expect(emulator.counters().rendezvousResponses).toBe(size > 64 * KIB ? 1 : 0);
    if (size > 64 * KIB) {
      // hyco-https never closes rendezvous sockets; the relay does once the response is through (spec §11 P13).
      expect((await log.seen('rendezvous.closed')).closeCode).toBe(1000);
      expect(emulator.rendezvousSocketCount()).toBe(0);
    }
  });

  it('sends an empty request as body:false and relays an empty response', async () => {
    const bodies: number[] = [];
    const { emulator } = await echoRelay((req, res) => {
      void readBody(req).then((body) => {
        bodies.push(body.length);
        res.end();
      });
    });
    const get = await send(emulator, 'hc1/empty');
    const post = await send(emulator, 'hc1/empty', { method: 'POST', body: '' });
    expect([get.status, post.status]).toEqual([200, 200]);
    expect(await get.text()).toBe('');
    expect(await post.text()).toBe('');
    expect(get.headers.get('content-length')).toBe('0');
    expect(bodies).toEqual([0, 0]);
  });

  it('gets no answer from hyco-https for res.end(<empty Buffer>): the sender sees 504 (documented quirk)', async () => {
    const relay = await startTestRelay(closeables, { responseTimeoutInMs: 200 });
    await startListener(closeables, relay.emulator, 'hc1', (_req, res) => res.end(Buffer.alloc(0)));
    const response = await send(relay.emulator, 'hc1/empty-buffer');
    expect(response.status).toBe(504);
    await response.body?.cancel();
  });

  it('answers a small request with a 200 KiB response over a listener-opened rendezvous', async () => {
    const big = patternBytes(200 * KIB, 3);
    const { emulator } = await echoRelay((_req, res) => {
      res.setHeader('content-type', 'application/octet-stream');
      res.end(big);
    });
    const response = await send(emulator, 'hc1/big-response');
    expect(Buffer.from(await response.arrayBuffer()).equals(big)).toBe(true);
    expect(emulator.counters()).toMatchObject({ rendezvousRequests: 0, rendezvousResponses: 1, lateRendezvous: 0 });
  });

  it('relays a chunked upload of unknown length', async () => {
    const { emulator } = await echoRelay();
    const parts = [patternBytes(40 * KIB, 1), patternBytes(40 * KIB, 2), patternBytes(10, 3)];
    const response = await send(emulator, 'hc1/chunked', {
      method: 'POST',
      body: Readable.toWeb(Readable.from(parts)),
      duplex: 'half',
    });
    expect(Buffer.from(await response.arrayBuffer()).equals(Buffer.concat(parts))).toBe(true);
    expect(emulator.counters().rendezvousRequests).toBe(1);
  });

  it('joins several res.write calls into one body, inline and by rendezvous', async () => {
    const { emulator } = await echoRelay((req, res) => {
      res.setHeader('content-type', 'text/plain');
      if (req.url === '/hc1/small') {
        res.write('part1-');
        res.write('part2-');
        res.end('part3');
        return;
      }
      res.write(Buffer.alloc(50 * KIB, 'a'));
      res.write(Buffer.alloc(50 * KIB, 'b'));
      res.end(Buffer.alloc(10, 'c'));
    });
    const small = await send(emulator, 'hc1/small');
    expect(await small.text()).toBe('part1-part2-part3');
    const large = await send(emulator, 'hc1/large');
    expect(await large.text()).toBe('a'.repeat(50 * KIB) + 'b'.repeat(50 * KIB) + 'c'.repeat(10));
  });

  it('relays a response piped from a stream', async () => {
    const chunks = ['one ', 'two ', 'three'];
    const { emulator } = await echoRelay((_req, res) => {
      Readable.from(chunks).pipe(res);
    });
    const response = await send(emulator, 'hc1/pipe');
    expect(await response.text()).toBe('one two three');
  });

  it('answers HEAD and 204 without a body, ignoring the stray empty frame hyco-https sends', async () => {
    const { emulator } = await echoRelay((req, res) => {
      if (req.method === 'HEAD') {
        res.setHeader('x-head', 'yes');
        res.end();
        return;
      }
      res.statusCode = 204;
      res.end();
    });
    const head = await send(emulator, 'hc1/head', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('x-head')).toBe('yes');
    expect(await head.text()).toBe('');
    const noContent = await send(emulator, 'hc1/none', { method: 'DELETE' });
    expect(noContent.status).toBe(204);
    expect(await noContent.text()).toBe('');
    // The channel is still in step: a following request is answered normally.
    const again = await send(emulator, 'hc1/none', { method: 'DELETE' });
    expect(again.status).toBe(204);
    expect(emulator.counters().protocolViolations).toBe(0);
  });

  it('passes status code and description through, and joins request cookies', async () => {
    let cookie: string | undefined;
    const { emulator } = await echoRelay((req, res) => {
      cookie = req.headers.cookie;
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.writeHead(418, 'Short And Stout');
      res.end('teapot');
    });
    const response = await send(emulator, 'hc1/tea', { headers: { cookie: 'x=1; y=2' } });
    expect(response.status).toBe(418);
    expect(response.statusText).toBe('Short And Stout');
    expect(await response.text()).toBe('teapot');
    expect(cookie).toBe('x=1; y=2');
    // hyco-https sends only the first value of a multi-value header (spec §11 P17); the relay forwards what it gets.
    expect(response.headers.getSetCookie()).toEqual(['a=1']);
  });
});
