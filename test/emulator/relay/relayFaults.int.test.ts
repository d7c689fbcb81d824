// Faults: dropped and refused listeners (hyco-https reconnect and back-off, spec §4.6), delayed responses, late
// rendezvous (§6.4), senders that go away (§6.5), listeners that send garbage (§4.2) or stop answering pings (§11 P5).
import { afterEach, describe, expect, it } from 'vitest';
import {
  Closeables,
  echoHandler,
  readBody,
  requestOf,
  send,
  startListener,
  startRawListener,
  startTestRelay,
} from './relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

describe('dropped listeners', () => {
  it('a listener whose TCP connection is cut reconnects and serves again', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const listener = await startListener(closeables, emulator, 'hc1', echoHandler);
    const before = emulator.listeners('hc1')[0]!.id;
    const reconnected = listener.nextListening();
    const disconnected = log.next('listener.disconnected');
    expect(emulator.dropListeners('hc1')).toBe(1);
    expect((await disconnected).closeCode).toBe(1006);
    await reconnected;
    expect(emulator.listenerCount('hc1')).toBe(1);
    expect(emulator.listeners('hc1')[0]!.id).not.toBe(before);
    const response = await send(emulator, 'hc1/after-drop', { method: 'POST', body: 'back' });
    expect(await response.text()).toBe('back');
    expect(listener.errors).toEqual([]);
  });

  it('a listener whose channel is closed with 1011 reconnects and serves again', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const listener = await startListener(closeables, emulator, 'hc1', echoHandler);
    const reconnected = listener.nextListening();
    const disconnected = log.next('listener.disconnected');
    emulator.dropListeners('hc1', { closeCode: 1011, reason: 'internal error' });
    expect((await disconnected).closeCode).toBe(1011);
    await reconnected;
    const response = await send(emulator, 'hc1/x', { method: 'POST', body: 'again' });
    expect(await response.text()).toBe('again');
    expect(emulator.counters()).toMatchObject({ listenerConnections: 2, listenerDisconnections: 1 });
  });

  it('fails a request with 502 when its listener drops before answering', async () => {
    const { emulator } = await startTestRelay(closeables);
    let received!: () => void;
    const requestReceived = new Promise<void>((resolve) => (received = resolve));
    const listener = await startListener(closeables, emulator, 'hc1', () => received());
    const pending = send(emulator, 'hc1/never');
    await requestReceived;
    const reconnected = listener.nextListening();
    emulator.dropListeners('hc1');
    const response = await pending;
    expect(response.status).toBe(502);
    expect(await response.text()).toContain('The listener disconnected before it sent a response.');
    await reconnected;
  });

  it('refuses listeners until accepted again; hyco-https backs off and recovers', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const listener = await startListener(closeables, emulator, 'hc1', echoHandler);
    emulator.refuseListeners('hc1');
    const firstRefusal = log.next('listener.rejected', (entry) => entry.message.includes('(1 in a row)'));
    const reconnected = listener.nextListening();
    const clientError = listener.nextError();
    emulator.dropListeners('hc1');
    const refused = await firstRefusal;
    expect(refused.statusCode).toBe(503);
    expect((await clientError).message).toBe('Unexpected server response: 503');
    emulator.acceptListeners('hc1');
    const connected = await log.next('listener.connected');
    await reconnected;
    // A drop is retried at once; after that failure hyco-https waits one second (delays 0, 1, 2, 5, 10, 30 s).
    expect(connected.timeInMs - refused.timeInMs).toBeGreaterThanOrEqual(900);
    const response = await send(emulator, 'hc1/x', { method: 'POST', body: 'recovered' });
    expect(await response.text()).toBe('recovered');
  });

  it('refuses listeners for a limited time only', async () => {
    const { emulator } = await startTestRelay(closeables);
    const listener = await startListener(closeables, emulator, 'hc1', echoHandler);
    // Shorter than hyco-https' one-second back-off after a failure, longer than its immediate retry after a drop.
    emulator.refuseListeners('hc1', 900);
    const refused = listener.nextError();
    const reconnected = listener.nextListening();
    emulator.dropListeners('hc1');
    expect((await refused).message).toBe('Unexpected server response: 503');
    await reconnected;
    expect(emulator.listenerCount('hc1')).toBe(1);
  });

  it('silences listeners half-open: hyco-https believes it still listens until the relay cuts the channel (P5)', async () => {
    const { emulator, log } = await startTestRelay(closeables, { responseTimeoutInMs: 200 });
    const held: Array<() => void> = [];
    let received!: () => void;
    const requestReceived = new Promise<void>((resolve) => (received = resolve));
    const listener = await startListener(closeables, emulator, 'hc1', (req, res) => {
      if (req.url === '/hc1/held') {
        held.push(() => res.end('into the void'));
        received();
        return;
      }
      echoHandler(req, res);
    });
    const inFlight = send(emulator, 'hc1/held');
    await requestReceived;
    expect(emulator.silenceListeners('hc1')).toBe(1);
    held[0]!();
    // The answer goes into a connection the relay no longer reads: the sender times out.
    expect((await inFlight).status).toBe(504);
    const lost = await send(emulator, 'hc1/x');
    expect(lost.status).toBe(404);
    expect(await lost.text()).toContain('There are no listeners connected for the endpoint.');
    expect(emulator.counters()).toMatchObject({ listenerConnections: 1, listenerDisconnections: 0 });
    expect(listener.errors).toEqual([]);
    // Cutting the silent channel is what finally makes hyco-https reconnect.
    const reconnected = listener.nextListening();
    const cut = log.next('listener.disconnected');
    expect(emulator.dropListeners('hc1')).toBe(1);
    await cut;
    await reconnected;
    const back = await send(emulator, 'hc1/x', { method: 'POST', body: 'recovered' });
    expect(await back.text()).toBe('recovered');
  });

  it('rejects fault hooks on unknown entities', () => {
    return startTestRelay(closeables).then(({ emulator }) => {
      expect(() => emulator.dropListeners('nope')).toThrow(TypeError);
      expect(() => emulator.dropListeners('hc1', { closeCode: 1006 })).toThrow(RangeError);
      expect(() => emulator.refuseListeners('hc1', -1)).toThrow(RangeError);
      expect(() => emulator.delayResponses('hc1', Number.NaN)).toThrow(RangeError);
      expect(emulator.listenerCount('nope')).toBe(0);
    });
  });
});

describe('slow and late answers', () => {
  it('delays responses without turning them into 504', async () => {
    const { emulator } = await startTestRelay(closeables, { responseTimeoutInMs: 100 });
    await startListener(closeables, emulator, 'hc1', echoHandler);
    emulator.delayResponses('hc1', 150);
    const started = Date.now();
    const response = await send(emulator, 'hc1/x', { method: 'POST', body: 'slow' });
    expect(await response.text()).toBe('slow');
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    emulator.delayResponses('hc1', 0);
  });

  it('accepts then closes a rendezvous that arrives after the request timed out, and the listener survives', async () => {
    const { emulator, log } = await startTestRelay(closeables, { responseTimeoutInMs: 150 });
    const held: Array<() => void> = [];
    let received!: () => void;
    const requestReceived = new Promise<void>((resolve) => (received = resolve));
    await startListener(closeables, emulator, 'hc1', (req, res) => {
      if (req.url === '/hc1/slow-and-big') {
        held.push(() => res.end(Buffer.alloc(200 * 1024, 'z')));
        received();
        return;
      }
      res.end('alive');
    });
    const timedOut = await send(emulator, 'hc1/slow-and-big');
    expect(timedOut.status).toBe(504);
    await timedOut.body?.cancel();
    await requestReceived;
    const late = log.next('rendezvous.late');
    // hyco-https now opens a response rendezvous for a request the relay has forgotten (spec §6.4).
    held[0]!();
    await late;
    expect(emulator.counters().lateRendezvous).toBe(1);
    const response = await send(emulator, 'hc1/ping');
    expect(await response.text()).toBe('alive');
  });

  it('drops a request whose sender went away, and ignores the answer that follows', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const held: Array<() => void> = [];
    let received!: () => void;
    const requestReceived = new Promise<void>((resolve) => (received = resolve));
    await startListener(closeables, emulator, 'hc1', (req, res) => {
      if (req.url === '/hc1/abandoned') {
        held.push(() => res.end('nobody listens'));
        received();
        return;
      }
      void readBody(req).then((body) => res.end(body));
    });
    const controller = new AbortController();
    const abandonedRequest = send(emulator, 'hc1/abandoned', { signal: controller.signal });
    await requestReceived;
    const abandoned = log.next('request.abandoned');
    controller.abort();
    await expect(abandonedRequest).rejects.toThrow();
    await abandoned;
    expect(emulator.pendingRequestCount()).toBe(0);
    const ignored = log.next('response.late');
    held[0]!();
    await ignored;
    const response = await send(emulator, 'hc1/next', { method: 'POST', body: 'in step' });
    expect(await response.text()).toBe('in step');
  });
});

describe('protocol edge cases with hand-driven listeners', () => {
  it('correlates a response that arrives on another control channel of the same entity', async () => {
    const { emulator } = await startTestRelay(closeables);
    const first = await startRawListener(closeables, emulator, 'hc1');
    const second = await startRawListener(closeables, emulator, 'hc1');
    const pending = send(emulator, 'hc1/cross');
    const message = await Promise.race([first.next().then((m) => ({ m, other: second })), second.next().then((m) => ({ m, other: first }))]);
    const request = requestOf(message.m);
    expect(request).toMatchObject({ method: 'GET', requestTarget: '/hc1/cross', body: false });
    message.other.socket.send(
      JSON.stringify({ response: { requestId: request.id, statusCode: '200', statusDescription: 'Crossed', responseHeaders: { 'x-a': 'b' }, body: true } }),
    );
    message.other.socket.send(Buffer.from('crossed'));
    const response = await pending;
    expect(response.status).toBe(200);
    expect(response.statusText).toBe('Crossed');
    expect(response.headers.get('x-a')).toBe('b');
    expect(await response.text()).toBe('crossed');
  });

  it('sends the rendezvous notice without method or body for a large request', async () => {
    const { emulator } = await startTestRelay(closeables);
    const raw = await startRawListener(closeables, emulator, 'hc1');
    const pending = send(emulator, 'hc1/big', { method: 'PUT', body: Buffer.alloc(70 * 1024, 1) });
    const notice = (await raw.next()).text as { request: Record<string, unknown> };
    expect(Object.keys(notice.request).sort()).toEqual(['address', 'id']);
    expect(notice.request.address).toBe(`ws://127.0.0.1:${emulator.port}/$hc/hc1?sb-hc-action=request&sb-hc-id=${String(notice.request.id)}`);
    // The id alone is not enough: a rendezvous on another entity's path is accepted and closed.
    const { default: WebSocket } = await import('ws');
    const wrongPath = new WebSocket(`ws://127.0.0.1:${emulator.port}/$hc/other?sb-hc-action=request&sb-hc-id=${String(notice.request.id)}`);
    expect(await new Promise<number>((resolve) => wrongPath.once('close', (code: number) => resolve(code)))).toBe(1001);
    // Nobody opens the rendezvous: closing the control channel fails the request.
    raw.socket.close();
    const response = await pending;
    expect(response.status).toBe(502);
    await response.body?.cancel();
  });

  it('delivers a large request over the rendezvous socket, and fails it with 502 when that socket vanishes mid-response', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const raw = await startRawListener(closeables, emulator, 'hc1');
    const body = Buffer.alloc(100 * 1024, 7);
    const pending = send(emulator, 'hc1/upload?a=1', { method: 'POST', body, headers: { 'x-order': '42' } });
    const notice = requestOf(await raw.next());
    const { default: WebSocket } = await import('ws');
    const rendezvous = new WebSocket(notice.address, { perMessageDeflate: false });
    const messages: Array<{ data: Buffer; isBinary: boolean }> = [];
    const gotBody = new Promise<void>((resolve) => {
      rendezvous.on('message', (data: Buffer, isBinary: boolean) => {
        messages.push({ data, isBinary });
        if (isBinary) resolve();
      });
    });
    await gotBody;
    const request = (JSON.parse(messages[0]!.data.toString()) as { request: Record<string, unknown> }).request;
    expect(request).toMatchObject({ id: notice.id, method: 'POST', requestTarget: '/hc1/upload?a=1', body: true });
    expect(request.requestHeaders).toMatchObject({ 'x-order': '42' });
    expect(messages[1]!.data.equals(body)).toBe(true);
    rendezvous.send(JSON.stringify({ response: { requestId: notice.id, statusCode: 200, body: true } }));
    const failed = log.next('request.failed');
    rendezvous.terminate();
    const response = await pending;
    expect(response.status).toBe(502);
    await response.body?.cancel();
    expect((await failed).statusCode).toBe(502);
  });

  it('fails the request with 502 and closes a rendezvous socket that carries garbage', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const raw = await startRawListener(closeables, emulator, 'hc1');
    const pending = send(emulator, 'hc1/big', { method: 'POST', body: Buffer.alloc(80 * 1024, 1) });
    const notice = requestOf(await raw.next());
    const { default: WebSocket } = await import('ws');
    const rendezvous = new WebSocket(notice.address, { perMessageDeflate: false });
    closeables.add(() => rendezvous.terminate());
    const closed = new Promise<number>((resolve) => rendezvous.once('close', (code: number) => resolve(code)));
    await new Promise((resolve) => rendezvous.once('open', resolve));
    const violation = log.next('rendezvous.protocolViolation');
    rendezvous.send('{"renewToken":{"token":"not here"}}');
    await violation;
    expect((await pending).status).toBe(502);
    expect(await closed).toBe(1008);
  });

  it.each([
    ['text that is not JSON', 'this is not json'],
    ['JSON that is no known message', '{"hello":"relay"}'],
    ['a binary message when no body is awaited', Buffer.from('surprise')],
  ])('closes a control channel that sends %s (1008) and keeps serving others', async (_name, payload) => {
    const { emulator, log } = await startTestRelay(closeables);
    const bad = await startRawListener(closeables, emulator, 'hc1');
    const violation = log.next('listener.protocolViolation');
    bad.socket.send(payload);
    await violation;
    expect(await bad.closed).toBe(1008);
    expect(emulator.counters().protocolViolations).toBe(1);
    await startListener(closeables, emulator, 'hc1', echoHandler);
    const response = await send(emulator, 'hc1/x', { method: 'POST', body: 'fine' });
    expect(await response.text()).toBe('fine');
  });

  it('fails the request with 502 when the listener answers with an informational status', async () => {
    const { emulator } = await startTestRelay(closeables);
    const raw = await startRawListener(closeables, emulator, 'hc1');
    const pending = send(emulator, 'hc1/x');
    const request = requestOf(await raw.next());
    raw.socket.send(JSON.stringify({ response: { requestId: request.id, statusCode: 101, body: false } }));
    const response = await pending;
    expect(response.status).toBe(502);
    await response.body?.cancel();
  });

  it('drops invalid response headers instead of failing', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const raw = await startRawListener(closeables, emulator, 'hc1');
    const pending = send(emulator, 'hc1/x');
    const request = requestOf(await raw.next());
    const dropped = log.next('response.headersDropped');
    raw.socket.send(
      JSON.stringify({
        response: { requestId: request.id, statusCode: 200, responseHeaders: { 'bad header': 'x', 'x-ok': 'yes', 'x-bad': 'a\nb' }, body: false },
      }),
    );
    const response = await pending;
    expect(response.status).toBe(200);
    expect(response.headers.get('x-ok')).toBe('yes');
    expect((await dropped).message).toContain('bad header');
    await response.body?.cancel();
  });

  it('tolerates the unsolicited pongs of hyco-https keepAliveTimeout', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const listener = await startListener(closeables, emulator, 'hc1', echoHandler, { keepAliveTimeout: { asMilliseconds: () => 10 } });
    const id = emulator.listeners('hc1')[0]!.id;
    let pongs = 0;
    await log.next('listener.pong', () => (pongs += 1) >= 3);
    const response = await send(emulator, 'hc1/x', { method: 'POST', body: 'kept alive' });
    expect(await response.text()).toBe('kept alive');
    expect(emulator.listeners('hc1').map((channel) => channel.id)).toEqual([id]);
    expect(emulator.counters().protocolViolations).toBe(0);
    expect(listener.errors).toEqual([]);
  });

  it('terminates a listener that stops answering pings, and keeps a live hyco-https listener', async () => {
    const { emulator, log } = await startTestRelay(closeables, { pingIntervalInMs: 50 });
    await startListener(closeables, emulator, 'hc1', echoHandler);
    const silent = await startRawListener(closeables, emulator, 'hc1', { autoPong: false });
    const unresponsive = log.next('listener.unresponsive');
    const disconnected = log.next('listener.disconnected');
    expect(emulator.listenerCount('hc1')).toBe(2);
    await unresponsive;
    await disconnected;
    expect(await silent.closed).toBe(1006);
    expect(emulator.listenerCount('hc1')).toBe(1);
    expect(emulator.counters().unresponsiveListeners).toBe(1);
    const response = await send(emulator, 'hc1/x', { method: 'POST', body: 'pong' });
    expect(await response.text()).toBe('pong');
  });
});
