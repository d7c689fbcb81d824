// Token lifetime on live control channels (spec §3.4, §11 P3/P4), renewal, and the emulator's own lifecycle.
import hycoHttps from 'hyco-https';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startRelayEmulator } from '../../../src/emulator/relay/index.js';
import {
  Closeables,
  echoHandler,
  httpUrl,
  listenUri,
  requestOf,
  sasToken,
  send,
  startListener,
  startRawListener,
  startTestRelay,
} from './relayTestKit.js';

const closeables = new Closeables();
afterEach(async () => {
  vi.useRealTimers();
  await closeables.drain();
});

/** A token valid for about `seconds` more seconds (expiry has a one-second resolution). */
function secondsFromNow(seconds: number): number {
  return Math.floor(Date.now() / 1000) + seconds;
}

describe('listener token lifetime', () => {
  it('closes a control channel with 1008 once its token has expired plus the grace period', async () => {
    const { emulator, log } = await startTestRelay(closeables, { tokenExpiryGraceInMs: 300 });
    const expiresOnInSeconds = secondsFromNow(2);
    const raw = await startRawListener(closeables, emulator, 'hc1', { token: sasToken(emulator, 'hc1', { expiresOnInSeconds }) });
    expect(emulator.listeners('hc1')[0]!.tokenExpiresAtMs).toBe(expiresOnInSeconds * 1000);
    const expired = await log.next('listener.tokenExpired');
    expect(await raw.closed).toBe(1008);
    expect(expired.timeInMs).toBeGreaterThanOrEqual(expiresOnInSeconds * 1000 + 300);
    expect(emulator.counters().expiredListeners).toBe(1);
  });

  it('a hyco-https listener with a fixed string token is dropped at expiry and then refused with 401 (P4)', async () => {
    const { emulator, log } = await startTestRelay(closeables, { tokenExpiryGraceInMs: 0 });
    const fixedToken = hycoHttps.createRelayToken(listenUri(emulator, 'hc1'), 'RootManageSharedAccessKey', 'SAS_KEY_VALUE', 2);
    const listener = await startListener(closeables, emulator, 'hc1', echoHandler, { fixedToken });
    const refused = listener.nextError();
    const gone = log.next('listener.disconnected');
    await log.next('listener.tokenExpired');
    expect((await gone).closeCode).toBe(1008);
    expect((await refused).message).toBe('Unexpected server response: 401');
    expect(emulator.listenerCount('hc1')).toBe(0);
  });

  it('accepts a valid renewToken and moves the expiry; closes with 1008 on an invalid one', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const raw = await startRawListener(closeables, emulator, 'hc1', { token: sasToken(emulator, 'hc1', { timeToLiveInMs: 60_000 }) });
    const renewed = log.next('listener.tokenRenewed');
    const later = secondsFromNow(7200);
    raw.socket.send(JSON.stringify({ renewToken: { token: sasToken(emulator, 'hc1', { expiresOnInSeconds: later }) } }));
    await renewed;
    expect(emulator.listeners('hc1')[0]).toMatchObject({ tokenExpiresAtMs: later * 1000, tokenRenewals: 1 });
    // The channel still works after the renewal: the relay never answers a renewToken.
    const pending = send(emulator, 'hc1/after-renew');
    const request = requestOf(await raw.next());
    raw.socket.send(JSON.stringify({ response: { requestId: request.id, statusCode: 200, body: true } }));
    raw.socket.send(Buffer.from('renewed'));
    expect(await (await pending).text()).toBe('renewed');
    const rejected = log.next('listener.renewRejected');
    raw.socket.send(JSON.stringify({ renewToken: { token: sasToken(emulator, 'hc1', { key: 'wrong' }) } }));
    await rejected;
    expect(await raw.closed).toBe(1008);
  });

  it('hyco-https renews its token on the control channel (its one-hour interval run on fake setInterval)', async () => {
    const { emulator, log } = await startTestRelay(closeables, { tokenExpiryGraceInMs: 0 });
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    let minted = 0;
    // The first token lives two seconds, renewed ones an hour.
    await startListener(closeables, emulator, 'hc1', echoHandler, { tokenSeconds: () => (++minted === 1 ? 2 : 3600) });
    const first = emulator.listeners('hc1')[0]!;
    const renewed = log.next('listener.tokenRenewed');
    vi.advanceTimersByTime(60 * 60 * 1000);
    await renewed;
    const after = emulator.listeners('hc1')[0]!;
    expect(after).toMatchObject({ id: first.id, tokenRenewals: 1 });
    expect(after.tokenExpiresAtMs).toBeGreaterThan(first.tokenExpiresAtMs + 3000 * 1000);
    // A hand-driven listener whose token expires one second after the first token shows that the first expiry has
    // passed; the renewed hyco-https listener is still there.
    const control = await startRawListener(closeables, emulator, 'hc1', {
      token: sasToken(emulator, 'hc1', { expiresOnInSeconds: first.tokenExpiresAtMs / 1000 + 1 }),
    });
    const controlGone = log.next('listener.disconnected', (entry) => entry.closeCode === 1008);
    expect(await control.closed).toBe(1008);
    await controlGone;
    expect(emulator.listeners('hc1').map((listener) => listener.id)).toEqual([first.id]);
    expect(minted).toBe(2);
  });
});

describe('emulator lifecycle', () => {
  it('describes itself and builds development connection strings', async () => {
    const { emulator } = await startTestRelay(closeables, {
      sharedAccessPolicies: [
        { keyName: 'RootManageSharedAccessKey', primaryKey: 'SAS_KEY_VALUE', rights: ['Manage'] },
        { keyName: 'sender', primaryKey: 'send-key', rights: ['Send'] },
      ],
    });
    expect(emulator.host).toBe('127.0.0.1');
    expect(emulator.port).toBeGreaterThan(0);
    expect(emulator.endpoint).toBe(`sb://127.0.0.1:${emulator.port}`);
    expect(emulator.connectionString()).toBe(
      `Endpoint=sb://127.0.0.1:${emulator.port}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true`,
    );
    expect(emulator.connectionString('sender')).toContain('SharedAccessKeyName=sender;SharedAccessKey=send-key;');
    expect(() => emulator.connectionString('nobody')).toThrow(TypeError);
    expect(emulator.hybridConnectionNames()).toEqual(['hc1']);
  });

  it('closes idempotently, answers requests in flight with 503, and disposes asynchronously', async () => {
    const { emulator, log } = await startTestRelay(closeables);
    const raw = await startRawListener(closeables, emulator, 'hc1');
    const pending = send(emulator, 'hc1/in-flight');
    await raw.next();
    const first = emulator.close();
    expect(emulator.close()).toBe(first);
    await first;
    await emulator[Symbol.asyncDispose]();
    expect((await pending).status).toBe(503);
    expect(await raw.closed).toBe(1006);
    expect(log.count('emulator.closed')).toBe(1);
    await expect(fetch(httpUrl(emulator, 'hc1/x'))).rejects.toThrow();
  });

  it('restarts on the same port, and hyco-https reconnects to the new instance', async () => {
    const first = await startTestRelay(closeables);
    const port = first.emulator.port;
    const listener = await startListener(closeables, first.emulator, 'hc1', echoHandler);
    const reconnected = listener.nextListening();
    await first.emulator.close();
    const second = await startTestRelay(closeables, { port });
    expect(second.emulator.port).toBe(port);
    await reconnected;
    const response = await send(second.emulator, 'hc1/x', { method: 'POST', body: 'second life' });
    expect(await response.text()).toBe('second life');
    // Close the listener while it is connected, so no back-off timer outlives the test (spec §11 P14).
    await listener.close();
    await second.emulator.close();
  });

  it('closes when its abort signal fires, and refuses to start with an aborted one', async () => {
    const controller = new AbortController();
    const { emulator, log } = await startTestRelay(closeables, { abortSignal: controller.signal });
    const closed = log.next('emulator.closed');
    controller.abort();
    await closed;
    await expect(fetch(httpUrl(emulator, 'hc1/x'))).rejects.toThrow();
    await expect(startRelayEmulator({ abortSignal: AbortSignal.abort() })).rejects.toThrow();
  });

  it('reports a port already in use', async () => {
    const { emulator } = await startTestRelay(closeables);
    await expect(startRelayEmulator({ port: emulator.port })).rejects.toThrow(/EADDRINUSE/);
  });
});
