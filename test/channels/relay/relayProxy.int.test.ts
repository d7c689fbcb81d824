/**
 * Both halves of the relay channel through a real CONNECT proxy (proxy-chain) to the relay emulator's plaintext port:
 * the sender through undici's ProxyAgent, the listener's control channel and rendezvous WebSockets (hyco-https)
 * through an https-proxy-agent handed to its ws. CONNECT tunnels carry plain http and ws as well as TLS.
 */
import { firstValueFrom, filter } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { createRelayListener, type ExecuteOperation, type RelayListener, type RelayListenerOptions, type RelayListenerState } from '../../../src/channels/relay/relayListener.js';
import { createRelaySender, type RelaySender, type RelaySenderOptions } from '../../../src/channels/relay/relaySender.js';
import { createOperation, type Operation } from '../../../src/core/operation.js';
import { startRelayEmulator, type RelayEmulator } from '../../../src/emulator/relay/index.js';
import { startCountingProxy, type CountingProxy, type ProxyCredentials } from '../../support/countingProxy.js';
import { failureOf } from '../../support/failureOf.js';

const HC = 'store-lille-1';
const closeables: (() => Promise<void>)[] = [];

afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!();
});

const CREDENTIALS = { username: 'store-lille', password: 'p@ss:w%rd' };
const CLOUD_CREDENTIALS = { username: 'cloud', password: 'cloud-secret' };

async function startRelay(): Promise<RelayEmulator> {
  const emulator = await startRelayEmulator({
    sharedAccessPolicies: [
      { keyName: 'store-listen', primaryKey: 'listen-key', rights: ['Listen'] },
      { keyName: 'cloud-send', primaryKey: 'send-key', rights: ['Send'] },
    ],
    hybridConnections: [{ name: HC }],
  });
  closeables.push(() => emulator.close());
  return emulator;
}

async function startProxy(credentials?: ProxyCredentials | ProxyCredentials[]): Promise<CountingProxy> {
  const proxy = await startCountingProxy(credentials === undefined ? {} : { credentials });
  closeables.push(() => proxy.close());
  return proxy;
}

const executed: Operation[] = [];
const echo: ExecuteOperation = (operation) => {
  executed.push(operation);
  return Promise.resolve({ echo: operation.payload });
};

function listen(emulator: RelayEmulator, extra: Partial<RelayListenerOptions>): RelayListener {
  const listener = createRelayListener({
    connectionString: emulator.connectionString('store-listen'),
    hybridConnection: HC,
    expose: ['stock.query'],
    execute: echo,
    initialBackoffInMs: 20,
    maxBackoffInMs: 100,
    authRetryInMs: 60_000,
    env: {},
    ...extra,
  });
  closeables.push(() => listener.close());
  listener.start();
  return listener;
}

function sender(emulator: RelayEmulator, extra: Partial<RelaySenderOptions>): RelaySender {
  const relaySender = createRelaySender({ connectionString: emulator.connectionString('cloud-send'), hybridConnection: HC, env: {}, ...extra });
  closeables.push(() => relaySender.close());
  return relaySender;
}

function reaches(listener: RelayListener, status: RelayListenerState['status']): Promise<RelayListenerState> {
  return firstValueFrom(listener.state$.pipe(filter((state) => state.status === status)));
}

function query(payload: Operation['payload'] = { sku: 'A-1' }): Operation {
  return createOperation({ storeId: 'lille-1', type: 'stock.query', payload, latency: 'realtime', timeToLiveInMs: 60_000 });
}


afterEach(() => {
  executed.length = 0;
});

describe('relay channel through an HTTPS (CONNECT) proxy', () => {
  it('carries the listener (control channel and rendezvous) and the sender through an authenticating proxy, operations both ways', async () => {
    const emulator = await startRelay();
    // The store and the cloud use their own credentials, so the proxy tells their tunnels apart.
    const proxy = await startProxy([CREDENTIALS, CLOUD_CREDENTIALS]);
    const listener = listen(emulator, { proxy: { url: proxy.url, ...CREDENTIALS } });
    await reaches(listener, 'listening');
    const storeTunnels = () => proxy.tunnels.filter((tunnel) => tunnel.username === CREDENTIALS.username);
    // The control channel is one tunnel to the relay's port.
    expect(storeTunnels()).toHaveLength(1);

    const relay = sender(emulator, { proxy: { url: proxy.url, ...CLOUD_CREDENTIALS } });
    const small = query();
    await expect(relay.send(small, { timeoutInMs: 5_000 })).resolves.toMatchObject({ result: { echo: { sku: 'A-1' } } });
    expect(storeTunnels()).toHaveLength(1);
    // Above 64 KiB the relay hands the request over a rendezvous WebSocket, which the listener opens: through the proxy too.
    const large = query({ sku: 'B-2', note: 'x'.repeat(100 * 1024) });
    await expect(relay.send(large, { timeoutInMs: 5_000 })).resolves.toMatchObject({ result: { echo: { sku: 'B-2' } } });
    expect(storeTunnels()).toHaveLength(2);

    expect(executed.map((operation) => operation.id)).toEqual([small.id, large.id]);
    const cloudTunnels = proxy.tunnels.filter((tunnel) => tunnel.username === CLOUD_CREDENTIALS.username);
    expect(cloudTunnels.length).toBeGreaterThanOrEqual(1);
    expect(proxy.tunnels).toHaveLength(storeTunnels().length + cloudTunnels.length);
    // Every one a CONNECT to the relay's address.
    expect(proxy.tunnels.every((tunnel) => tunnel.connect && tunnel.hostname === '127.0.0.1' && tunnel.port === emulator.port)).toBe(true);
    expect(proxy.refused).toBe(0);
  });

  it('takes the proxy from HTTPS_PROXY (credentials in the URL) when no proxy option is given', async () => {
    const emulator = await startRelay();
    const proxy = await startProxy(CREDENTIALS);
    const authority = `${encodeURIComponent(CREDENTIALS.username)}:${encodeURIComponent(CREDENTIALS.password)}@127.0.0.1:${proxy.port}`;
    const env = { HTTPS_PROXY: `http://${authority}` };
    await reaches(listen(emulator, { env }), 'listening');
    await expect(sender(emulator, { env }).send(query(), { timeoutInMs: 5_000 })).resolves.toMatchObject({ result: { echo: { sku: 'A-1' } } });
    expect(proxy.tunnelsTo(emulator.port).length).toBeGreaterThanOrEqual(2);
    expect(proxy.refused).toBe(0);
  });

  it('fails clearly with wrong proxy credentials, on both sides, and never shows the password', async () => {
    const emulator = await startRelay();
    const proxy = await startProxy(CREDENTIALS);
    const wrong = { url: proxy.url, username: CREDENTIALS.username, password: 'not-the-password' };

    const listener = listen(emulator, { proxy: wrong });
    const failed = await reaches(listener, 'authFailed');
    expect(failed.lastFailure).toEqual({ kind: 'unauthorized', message: expect.stringContaining('refused the credentials (407 Proxy Authentication Required)') });
    expect(failed.lastFailure?.message).not.toContain('not-the-password');
    expect(failed.lastFailure?.message).toContain(`${CREDENTIALS.username}:***@127.0.0.1:${proxy.port}`);

    const error = await failureOf(sender(emulator, { proxy: wrong }).send(query(), { timeoutInMs: 5_000 }));
    expect(error.code).toBe('RELAY_UNREACHABLE');
    expect(error.message).toMatch(/the proxy http:\/\/store-lille:\*\*\*@127\.0\.0\.1:\d+ refused the credentials \(407 Proxy Authentication Required\): check proxy\.username and proxy\.password/);
    expect(error.message).not.toContain('not-the-password');

    expect(proxy.refused).toBeGreaterThanOrEqual(2);
    expect(proxy.tunnels).toEqual([]);
    expect(executed).toEqual([]);
  });

  it('goes around the proxy for a host in NO_PROXY (option and environment alike)', async () => {
    const emulator = await startRelay();
    const proxy = await startProxy();
    await reaches(listen(emulator, { proxy: { url: proxy.url, noProxy: ['localhost', '127.0.0.1'] } }), 'listening');
    await expect(sender(emulator, { env: { https_proxy: proxy.url, no_proxy: `example.com, 127.0.0.1:${emulator.port}` } }).send(query(), { timeoutInMs: 5_000 }))
      .resolves.toMatchObject({ result: { echo: { sku: 'A-1' } } });
    expect(proxy.tunnels).toEqual([]);
    // A NO_PROXY entry for another port does not exempt this one.
    await expect(sender(emulator, { env: { https_proxy: proxy.url, no_proxy: '127.0.0.1:1' } }).send(query(), { timeoutInMs: 5_000 })).resolves.toBeDefined();
    expect(proxy.tunnelsTo(emulator.port)).toHaveLength(1);
  });

  it('leaves everything direct with proxy: false, whatever HTTPS_PROXY says', async () => {
    const emulator = await startRelay();
    const proxy = await startProxy();
    const env = { HTTPS_PROXY: proxy.url };
    await reaches(listen(emulator, { env, proxy: false }), 'listening');
    await expect(sender(emulator, { env, proxy: false }).send(query(), { timeoutInMs: 5_000 })).resolves.toBeDefined();
    expect(proxy.tunnels).toEqual([]);
  });
});
