// Hostile or unusual input must never take the relay down (brief: validate every input at the boundary), and an
// Express-style app behind hyco-https (spec §11 P1).
import { IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { signSasString } from '../../../src/core/sas.js';
import {
  Closeables,
  echoHandler,
  patternBytes,
  readBody,
  send,
  startListener,
  startRawListener,
  startTestRelay,
} from './relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

function rawExchange(port: number, text: string): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  return new Promise((resolve) => {
    let answer = '';
    socket.on('data', (data: Buffer) => (answer += data.toString()));
    socket.on('close', () => resolve(answer));
    socket.write(text);
  });
}

describe('hostile input', () => {
  it('answers CONNECT with 405', async () => {
    const { emulator } = await startTestRelay(closeables);
    const answer = await rawExchange(emulator.port, `CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 405 CONNECT is not relayed\./);
  });

  it('refuses a token with control characters without echoing them into the status line', async () => {
    const { emulator } = await startTestRelay(closeables);
    await startListener(closeables, emulator, 'hc1', echoHandler);
    const hostile = encodeURIComponent('SharedAccessSignature sr=a&sig=b&se=1&skn=c&bad\r\nX-Injected: 1');
    const response = await send(emulator, `hc1/x?sb-hc-token=${hostile}`, { token: null });
    expect(response.status).toBe(401);
    expect(response.statusText).toBe('Unauthorized');
    expect(response.headers.get('x-injected')).toBeNull();
    expect(await response.text()).toContain('MalformedToken: Malformed SAS token: "bad');
  });

  it('accepts a renewed token that claims an expiry far beyond the range of Date', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const raw = await startRawListener(closeables, emulator, 'hc1');
    const se = '999999999999999';
    const sr = encodeURIComponent(`http://127.0.0.1:${emulator.port}/hc1`);
    const sig = encodeURIComponent(signSasString(sr, se, 'SAS_KEY_VALUE'));
    const renewed = log.next('listener.tokenRenewed');
    raw.socket.send(JSON.stringify({ renewToken: { token: `SharedAccessSignature sr=${sr}&sig=${sig}&se=${se}&skn=RootManageSharedAccessKey` } }));
    expect((await renewed).message).toContain('ms since the epoch');
    expect(emulator.listeners('hc1')[0]!.tokenExpiresAtMs).toBe(Number(se) * 1000);
  });

  it('closes with 1008 (not an internal error) on a renewToken quoting non-ASCII garbage', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const raw = await startRawListener(closeables, emulator, 'hc1');
    const rejected = log.next('listener.renewRejected');
    raw.socket.send(JSON.stringify({ renewToken: { token: `SharedAccessSignature sr=a&sig=b&se=1&skn=c&\u2603${'\u00e9'.repeat(200)}` } }));
    expect((await rejected).message).toContain('MalformedToken');
    expect(await raw.closed).toBe(1008);
    expect(log.count('listener.internalError')).toBe(0);
  });

  it('relays a request whose header JSON exceeds 32 KiB by rendezvous', async () => {
    const { emulator } = await startTestRelay(closeables);
    let seen = '';
    await startListener(closeables, emulator, 'hc1', (req, res) => {
      seen = String(req.headers['x-big']);
      res.end('big headers');
    });
    const big = 'h'.repeat(33 * 1024);
    const response = await send(emulator, 'hc1/x', { headers: { 'x-big': big } });
    expect(await response.text()).toBe('big headers');
    expect(seen).toBe(big);
    expect(emulator.counters().rendezvousRequests).toBe(1);
  });

  it('keeps working after a rendezvous upgrade without an id and one for an unknown id', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    await startListener(closeables, emulator, 'hc1', echoHandler);
    const { default: WebSocket } = await import('ws');
    for (const url of [
      `ws://127.0.0.1:${emulator.port}/$hc/hc1?sb-hc-action=request`,
      `ws://127.0.0.1:${emulator.port}/$hc/nope?sb-hc-action=request&sb-hc-id=00000000-0000-0000-0000-000000000000`,
    ]) {
      const socket = new WebSocket(url);
      const code = await new Promise<number>((resolve) => socket.once('close', (closeCode: number) => resolve(closeCode)));
      expect(code).toBe(1001);
    }
    expect(log.count('rendezvous.late')).toBe(2);
    const response = await send(emulator, 'hc1/x', { method: 'POST', body: 'ok' });
    expect(await response.text()).toBe('ok');
  });
});

describe('garbage from listeners', () => {
  /** Seeded so a failure can be replayed. */
  function* garbage(seed: number): Generator<string | Buffer> {
    let state = seed;
    const next = (): number => (state = (state * 1103515245 + 12345) & 0x7fffffff);
    const values: unknown[] = [null, true, -1, 1e308, 'x', [], {}, { a: { b: [1, 'c'] } }, '\u2603'.repeat(50)];
    const pickValue = (): unknown => values[next() % values.length];
    for (let index = 0; index < 60; index += 1) {
      switch (next() % 6) {
        case 0:
          yield patternBytes(1 + (next() % 300), next());
          break;
        case 1:
          yield patternBytes(1 + (next() % 300), next()).toString('latin1');
          break;
        case 2:
          yield JSON.stringify({ response: { requestId: pickValue(), statusCode: pickValue(), responseHeaders: pickValue(), body: pickValue() } });
          break;
        case 3:
          yield JSON.stringify({ renewToken: { token: pickValue() } });
          break;
        case 4:
          yield JSON.stringify({ response: { requestId: `unknown-${index}`, statusCode: 200 + (next() % 400), body: next() % 2 === 0 } });
          break;
        default:
          yield JSON.stringify(pickValue());
      }
    }
  }

  it('survives seeded random garbage on control channels and keeps serving', async () => {
    const { emulator, log } = await startTestRelay(closeables, { hybridConnections: [{ name: 'hc1' }, { name: 'junk' }] });
    await startListener(closeables, emulator, 'hc1', echoHandler);
    let raw = await startRawListener(closeables, emulator, 'junk');
    for (const message of garbage(20261128)) {
      if (raw.socket.readyState !== raw.socket.OPEN) raw = await startRawListener(closeables, emulator, 'junk');
      raw.socket.send(message);
      // The relay is still answering on another entity after every message.
      const probe = await send(emulator, 'hc1/probe', { method: 'POST', body: 'probe' });
      expect(await probe.text()).toBe('probe');
    }
    const internalErrors = log.entries.filter((entry) => entry.event.endsWith('.internalError'));
    expect(internalErrors).toEqual([]);
    expect(emulator.counters().protocolViolations).toBeGreaterThan(10);
    expect(emulator.counters().lateResponses).toBeGreaterThan(0);
    expect(emulator.counters().relayErrors).toBe(0);
  });
});

describe('an Express-style app behind hyco-https (spec §11 P1)', () => {
  // Express replaces the prototype of req (`setPrototypeOf(req, app.request)`). hyco-https 1.4.5 then calls
  // `req.handleBody` for an inline body (≤ 64 KiB) and crashes the listener process with "handleBody is not a
  // function": #56 fixed only the rendezvous path (observed while writing this test). Pinning handleBody as an own
  // property before the swap avoids the crash. The relay delivers small bodies inline as Azure does, so the bug shows
  // locally as it would in production. (Express also swaps res to Node's http.ServerResponse, whose methods do not work
  // on hyco-https' response object; only the request side is reproduced here.)
  it('serves inline and rendezvous bodies when handleBody is pinned before the prototype swap', async () => {
    const { emulator } = await startTestRelay(closeables);
    const appRequest = Object.create(IncomingMessage.prototype) as object;
    await startListener(closeables, emulator, 'hc1', (req, res) => {
      const hycoRequest = req as IncomingMessage & { handleBody?: unknown };
      hycoRequest.handleBody = (Object.getPrototypeOf(req) as { handleBody?: unknown }).handleBody;
      Object.setPrototypeOf(req, appRequest);
      void readBody(req).then((body) => {
        // The route sees the hybrid connection name in the URL (spec §11 P2).
        res.setHeader('x-route', req.url === '/hc1/orders' ? 'matched' : 'missed');
        res.end(body);
      });
    });
    for (const body of [Buffer.from('{"order":1}'), patternBytes(100 * 1024)]) {
      const response = await send(emulator, 'hc1/orders', { method: 'POST', body });
      expect(response.headers.get('x-route')).toBe('matched');
      expect(Buffer.from(await response.arrayBuffer()).equals(body)).toBe(true);
    }
  });
});
