/**
 * `storelink doctor` against the real emulators, the real SDK and hyco-https: a healthy least-privilege store gives
 * all ✔ and exit 0; each fault gives its ✗ row and exit 1.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createRelayListener } from '../../src/channels/relay/relayListener.js';
import { runCli } from '../../src/cli/program.js';
import type { DoctorReport } from '../../src/doctor/checkup.js';
import { startEmulators, type Emulators, type EmulatorsOptions } from '../../src/emulator/index.js';
import { startCountingProxy } from '../support/countingProxy.js';
import { issueTestCertificates } from '../support/testCertificates.js';
import { withSigningKeys } from '../support/signingKeys.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const key = () => randomBytes(32).toString('base64');

/** Keys of a least-privilege setup, as far as the emulators can express one (see the README). */
const KEYS = {
  // Service Bus policies are namespace-level in the emulator; one store key needs Listen (its queue) and Send (the inbox).
  store: { keyName: 'store-paris-1', primaryKey: key(), rights: ['Listen', 'Send'] as ('Listen' | 'Send')[] },
  cloud: { keyName: 'cloud', primaryKey: key(), rights: ['Listen', 'Send'] as ('Listen' | 'Send')[] },
  sendOnly: { keyName: 'send-only', primaryKey: key(), rights: ['Send'] as ('Listen' | 'Send')[] },
  listenOnly: { keyName: 'listen-only', primaryKey: key(), rights: ['Listen'] as ('Listen' | 'Send')[] },
  // The relay has per-hybrid-connection policies: the store listens, the cloud sends.
  storeRelay: { keyName: 'paris-1-listen', primaryKey: key(), rights: ['Listen'] as ('Listen' | 'Send')[] },
  cloudRelay: { keyName: 'cloud-send', primaryKey: key(), rights: ['Send'] as ('Listen' | 'Send')[] },
};

async function leastPrivilegeEmulators(extra: EmulatorsOptions = {}): Promise<Emulators> {
  const emulators = await startEmulators({
    ...extra,
    namespaces: [{ name: 'sbemulatorns', queues: [{ name: 'store-paris-1' }, { name: 'cloud-inbox' }] }],
    hybridConnections: [{ name: 'store-paris-1', requiresClientAuthorization: true, policies: [KEYS.storeRelay, KEYS.cloudRelay] }],
    sharedAccessPolicies: [KEYS.store, KEYS.cloud, KEYS.sendOnly, KEYS.listenOnly],
  });
  cleanups.push(() => emulators.close());
  return emulators;
}

function connectionString(port: number, policy: { keyName: string; primaryKey: string }, host = '127.0.0.1', development = true): string {
  return `Endpoint=sb://${host}:${port}/;SharedAccessKeyName=${policy.keyName};SharedAccessKey=${policy.primaryKey}${development ? ';UseDevelopmentEmulator=true' : ''}`;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'storelink-doctor-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function writeConfig(config: Record<string, unknown>): Promise<string> {
  const dir = await tempDir();
  const file = path.join(dir, 'config.json');
  await writeFile(file, JSON.stringify(await withSigningKeys(dir, config)));
  return file;
}

function storeConfig(serviceBus: string, relay?: string, extra: Record<string, unknown> = {}) {
  return {
    storeId: 'paris-1',
    module: './store.ts',
    dataDir: './data',
    serviceBus: { connectionString: serviceBus },
    ...(relay === undefined ? {} : { relay: { connectionString: relay } }),
    ...extra,
  };
}

async function doctor(args: string[], now?: () => number): Promise<{ code: number; stdout: string; stderr: string; report: DoctorReport | undefined }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['doctor', ...args], {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    cwd: process.cwd(),
    ...(now === undefined ? {} : { now }),
  });
  let report: DoctorReport | undefined;
  if (args.includes('--json') && stdout.length > 0) report = JSON.parse(stdout) as DoctorReport;
  return { code, stdout, stderr, report };
}

function row(report: DoctorReport | undefined, id: string) {
  const found = report?.checks.find((check) => check.id === id);
  if (found === undefined) throw new Error(`no check ${id} in ${JSON.stringify(report?.checks.map((check) => check.id))}`);
  return found;
}

function failedIds(report: DoctorReport | undefined): string[] {
  return (report?.checks ?? []).filter((check) => !check.ok).map((check) => check.id);
}

function healthyStore(emulators: Emulators, extra: Record<string, unknown> = {}) {
  return storeConfig(connectionString(emulators.serviceBus.port, KEYS.store), connectionString(emulators.relay.port, KEYS.storeRelay), extra);
}

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

describe('storelink doctor (store)', () => {
  it('gives all ✔ and exit 0 for a healthy least-privilege store, as a table and as JSON', async () => {
    const emulators = await leastPrivilegeEmulators();
    const file = await writeConfig(healthyStore(emulators));

    const json = await doctor(['--config', file, '--json']);
    expect(json.stderr).toBe('');
    expect(failedIds(json.report)).toEqual([]);
    expect(json.code).toBe(0);
    expect(json.report!.target).toBe('store');
    expect(json.report!.ok).toBe(true);
    expect(json.report!.checks.map((check) => check.id)).toEqual([
      'servicebus.dns', 'servicebus.tcp', 'servicebus.tls',
      'relay.dns', 'relay.tcp', 'relay.tls',
      'clock',
      'servicebus.listen', 'servicebus.send', 'servicebus.rights',
      'relay.listen', 'relay.self-call',
    ]);
    expect(row(json.report, 'servicebus.tls').detail).toContain('plaintext (development)');
    expect(row(json.report, 'servicebus.rights').detail).toContain('no Manage');
    expect(row(json.report, 'relay.self-call').detail).toContain('403');

    const table = await doctor(['--config', file]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^\s+CHECK\s+FOUND\s+TO DO$/);
    const rows = lines.slice(1, 13);
    expect(rows.every((line) => line.startsWith('✔  '))).toBe(true);
    // Aligned: every FOUND column starts where the header's does.
    const found = lines[0]!.indexOf('FOUND');
    expect(rows.every((line) => line[found - 1] === ' ' && line[found] !== ' ')).toBe(true);
    expect(lines.at(-1)).toBe('store: all 12 checks passed');
  });

  it("says the emulators' development key is a namespace-wide Manage key: ✗ on both channels, exit 1", async () => {
    const emulators = await startEmulators({ namespaces: [{ queues: [{ name: 'store-paris-1' }, { name: 'cloud-inbox' }] }], hybridConnections: [{ name: 'store-paris-1' }] });
    cleanups.push(() => emulators.close());
    const file = await writeConfig(storeConfig(emulators.serviceBusConnectionString(), emulators.relayConnectionString()));

    const { code, report } = await doctor(['--config', file, '--json']);
    expect(code).toBe(1);
    expect(failedIds(report)).toEqual(['servicebus.rights', 'relay.self-call']);
    expect(row(report, 'servicebus.rights').detail).toContain('holds Manage');
    expect(row(report, 'servicebus.rights').advice).toContain("the emulators' published development key");
    expect(row(report, 'relay.self-call').detail).toContain('holds Send');
    expect(row(report, 'relay.self-call').advice).toContain('Listen only');
  });

  it('a wrong key: ✗ on Listen and Send, exit 1', async () => {
    const emulators = await leastPrivilegeEmulators();
    const wrong = { keyName: KEYS.store.keyName, primaryKey: key() };
    const file = await writeConfig(storeConfig(connectionString(emulators.serviceBus.port, wrong), connectionString(emulators.relay.port, { keyName: KEYS.storeRelay.keyName, primaryKey: key() })));

    const { code, report, stdout } = await doctor(['--config', file, '--json']);
    expect(code).toBe(1);
    expect(failedIds(report)).toEqual(['servicebus.listen', 'servicebus.send', 'servicebus.rights', 'relay.listen', 'relay.self-call']);
    expect(row(report, 'servicebus.listen').detail).toContain('was refused Listen on store-paris-1');
    expect(row(report, 'servicebus.listen').advice).toContain('a wrong key, or a policy without Listen');
    expect(row(report, 'servicebus.rights').detail).toContain('not tried');
    expect(row(report, 'relay.listen').detail).toContain('refused the listener');
    expect(row(report, 'relay.listen').advice).toContain('a wrong key, or a policy without Listen');
    expect(stdout).not.toContain(wrong.primaryKey);
  });

  it.each([
    ['without Listen', KEYS.sendOnly, 'servicebus.listen', 'was refused Listen on store-paris-1'],
    ['without Send', KEYS.listenOnly, 'servicebus.send', 'was refused Send on cloud-inbox'],
  ])('a policy %s: its ✗ row, exit 1', async (_label, policy, failing, detail) => {
    const emulators = await leastPrivilegeEmulators();
    const file = await writeConfig(storeConfig(connectionString(emulators.serviceBus.port, policy), connectionString(emulators.relay.port, KEYS.storeRelay)));

    const { code, report } = await doctor(['--config', file, '--json']);
    expect(code).toBe(1);
    expect(failedIds(report)).toEqual([failing, 'servicebus.rights']);
    expect(row(report, failing).detail).toContain(detail);
  });

  it('an unknown hybrid connection: ✗ on the relay listener, exit 1', async () => {
    const emulators = await leastPrivilegeEmulators();
    const config = healthyStore(emulators);
    const file = await writeConfig({ ...config, relay: { ...config.relay, hybridConnection: 'store-nowhere' } });

    const { code, report } = await doctor(['--config', file, '--json']);
    expect(code).toBe(1);
    expect(failedIds(report)).toEqual(['relay.listen', 'relay.self-call']);
    expect(row(report, 'relay.listen').advice).toContain('no hybrid connection store-nowhere');
  });

  it('a closed port: ✗ on TCP and what depends on it, exit 1', async () => {
    const emulators = await leastPrivilegeEmulators();
    const port = await closedPort();
    const file = await writeConfig(storeConfig(connectionString(emulators.serviceBus.port, KEYS.store), connectionString(port, KEYS.storeRelay)));

    const { code, report } = await doctor(['--config', file, '--json']);
    expect(code).toBe(1);
    expect(failedIds(report)).toEqual(['relay.tcp', 'relay.tls', 'clock', 'relay.listen', 'relay.self-call']);
    expect(row(report, 'relay.tcp').detail).toContain('ECONNREFUSED');
    expect(row(report, 'relay.tcp').advice).toContain(`nothing listens on 127.0.0.1:${port}`);
    expect(row(report, 'relay.tls').detail).toBe('not tried: relay.tcp did not pass');
  });

  it('an untrusted certificate on the relay endpoint: ✗ on TLS, exit 1', async () => {
    const emulators = await leastPrivilegeEmulators();
    // A CA of its own, which nothing here trusts.
    const certificates = await issueTestCertificates();
    cleanups.push(() => certificates.remove());
    const server = https.createServer({ cert: certificates.cert, key: certificates.key }, (_request, response) => response.end('hello'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const { port } = server.address() as net.AddressInfo;
    const file = await writeConfig(storeConfig(connectionString(emulators.serviceBus.port, KEYS.store), connectionString(port, KEYS.storeRelay, 'localhost', false)));

    const { code, report } = await doctor(['--config', file, '--json']);
    expect(code).toBe(1);
    expect(row(report, 'relay.tcp').ok).toBe(true);
    const tls = row(report, 'relay.tls');
    expect(tls.ok).toBe(false);
    expect(tls.detail).toMatch(/^not trusted \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\): issued to "localhost" by "storelink development CA [0-9a-f]+"/);
    expect(tls.advice).toContain('tls.caFile');
  });

  it('a silent endpoint (accepts TCP, never answers) does not hang: its checks run out of time, exit 1', async () => {
    const held = new Set<net.Socket>();
    const silent = net.createServer((socket) => held.add(socket)).listen(0, '127.0.0.1');
    await once(silent, 'listening');
    cleanups.push(() => new Promise((resolve) => {
      for (const socket of held) socket.destroy();
      silent.close(resolve);
    }));
    const { port } = silent.address() as net.AddressInfo;
    // Both channels point at it, in production form (TLS): every check past TCP waits for an answer that never comes.
    const file = await writeConfig(storeConfig(connectionString(port, KEYS.store, 'localhost', false), connectionString(port, KEYS.storeRelay, 'localhost', false)));

    const { code, report } = await doctor(['--config', file, '--json', '--timeout-in-ms', '1000']);
    expect(code).toBe(1);
    expect(failedIds(report)).toEqual(['servicebus.tls', 'relay.tls', 'clock', 'servicebus.listen', 'servicebus.send', 'servicebus.rights', 'relay.listen', 'relay.self-call']);
    expect(row(report, 'relay.tls').detail).toBe('no answer within 1000 ms');
    expect(row(report, 'relay.listen').detail).toBe('no answer within 1000 ms');
    expect(row(report, 'clock').detail).toBe('not tried: relay.tls did not pass');
  });

  it('a skewed clock: ✗ on the clock, exit 1', async () => {
    const emulators = await leastPrivilegeEmulators();
    const file = await writeConfig(healthyStore(emulators));

    const { code, report } = await doctor(['--config', file, '--json'], () => Date.now() + 11 * 60_000);
    expect(code).toBe(1);
    expect(failedIds(report)).toEqual(['clock']);
    expect(row(report, 'clock').detail).toMatch(/is 1[01] min ahead of the Date of 127\.0\.0\.1/);
    expect(row(report, 'clock').advice).toContain('SAS tokens');
  });

  it('takes HTTPS_PROXY as the channels do: the relay through it, Service Bus over AMQP/TCP directly', async () => {
    const emulators = await leastPrivilegeEmulators();
    const proxy = await startCountingProxy();
    cleanups.push(() => proxy.close());
    const file = await writeConfig(healthyStore(emulators));
    vi.stubEnv('HTTPS_PROXY', proxy.url);
    vi.stubEnv('NO_PROXY', '');
    cleanups.push(() => Promise.resolve(vi.unstubAllEnvs()));
    const { code, report } = await doctor(['--config', file, '--json']);
    expect(failedIds(report)).toEqual([]);
    expect(code).toBe(0);
    expect(row(report, 'relay.tcp').detail).toBe(`connected through the proxy ${proxy.url} (CONNECT 127.0.0.1:${emulators.relay.port} → 200)`);
    // A development connection string means the store's transport is AMQP over TCP, which HTTPS_PROXY does not speak for.
    expect(row(report, 'servicebus.tcp').detail).toBe(`connected to 127.0.0.1:${emulators.serviceBus.port} directly (plaintext AMQP, development emulator)`);
    expect(proxy.tunnelsTo(emulators.relay.port).length).toBeGreaterThan(0);
    expect(proxy.tunnelsTo(emulators.serviceBus.port)).toEqual([]);
  });

  it('is a usage error (exit 2) without --config or with a missing file', async () => {
    expect((await doctor([])).code).toBe(2);
    const missing = await doctor(['--config', '/nonexistent/store.json']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('/nonexistent/store.json');
  });
});

describe('storelink doctor (store) on the TLS port, the production way', () => {
  /**
   * The emulators' TLS port only (plaintext ports closed), with their own development CA, which nothing but the
   * configuration's tls.caFile trusts; production-form connection strings, Service Bus over WebSockets.
   */
  async function tlsOnly(peers: number[] = []) {
    const emulators = await leastPrivilegeEmulators({ serviceBusPort: null, relayPort: null, tlsPort: 0, onTlsConnection: (peer) => peers.push(peer.port) });
    const tls = emulators.tls!;
    const config = storeConfig(connectionString(tls.port, KEYS.store, 'localhost', false), connectionString(tls.port, KEYS.storeRelay, 'localhost', false), {
      serviceBus: { connectionString: connectionString(tls.port, KEYS.store, 'localhost', false), transport: 'websockets' },
    });
    return { emulators, tls, config };
  }

  it('gives all ✔ and exit 0 through the configured proxy, trusting the CA of tls.caFile, every connection through the proxy', async () => {
    const peers: number[] = [];
    const { tls, config } = await tlsOnly(peers);
    const proxy = await startCountingProxy();
    cleanups.push(() => proxy.close());
    const file = await writeConfig({ ...config, proxy: { url: proxy.url }, tls: { caFile: tls.caFile } });

    const { code, report, stderr } = await doctor(['--config', file, '--json']);
    expect(stderr).toBe('');
    expect(failedIds(report)).toEqual([]);
    expect(code).toBe(0);
    expect(report!.checks).toHaveLength(12);
    expect(row(report, 'servicebus.tcp').detail).toBe(`connected through the proxy ${proxy.url} (CONNECT localhost:${tls.port} → 200)`);
    expect(row(report, 'servicebus.tls').detail).toMatch(/^trusted, names localhost: issued to "localhost"/);
    expect(row(report, 'relay.tls').detail).toMatch(/^trusted, names localhost/);
    expect(row(report, 'clock').detail).toContain('agrees with the Date of localhost');
    expect(row(report, 'servicebus.listen').detail).toContain('has Listen on store-paris-1');
    expect(row(report, 'relay.listen').detail).toContain('registered a listener on store-paris-1');
    // The probes (Service Bus SDK, relay listener and sender) went the channels' way too: nothing reached the TLS port directly.
    const proxied = new Set(proxy.tunnels.map((tunnel) => tunnel.localPort));
    expect(peers.length).toBeGreaterThan(0);
    expect(peers.filter((port) => !proxied.has(port))).toEqual([]);
  });

  it('without the CA: the TLS ✗ rows say to trust it with NODE_EXTRA_CA_CERTS or tls.caFile, exit 1', async () => {
    const { config } = await tlsOnly();
    const file = await writeConfig({ ...config, proxy: false });

    const { code, report } = await doctor(['--config', file, '--json']);
    expect(code).toBe(1);
    for (const id of ['servicebus.tls', 'relay.tls']) {
      const tls = row(report, id);
      expect(tls.ok).toBe(false);
      expect(tls.detail).toMatch(/^not trusted \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\): issued to "localhost"/);
      expect(tls.advice).toContain('NODE_EXTRA_CA_CERTS');
      expect(tls.advice).toContain('tls.caFile');
    }
    expect(row(report, 'servicebus.tcp').ok).toBe(true);
  });
});

describe('storelink doctor --cloud', () => {
  function cloudConfig(emulators: Emulators, httpPort: number) {
    return {
      serviceBus: { connectionString: connectionString(emulators.serviceBus.port, KEYS.cloud) },
      relay: { connectionString: connectionString(emulators.relay.port, KEYS.cloudRelay) },
      stores: [{ storeId: 'paris-1', bidirectional: true }],
      http: { host: '127.0.0.1', port: httpPort, token: 'x'.repeat(32) },
    };
  }

  it("calls a connected store through the relay (a round trip): all ✔, exit 0", async () => {
    const emulators = await leastPrivilegeEmulators();
    const listener = createRelayListener({
      connectionString: connectionString(emulators.relay.port, KEYS.storeRelay),
      hybridConnection: 'store-paris-1',
      expose: [],
      execute: () => Promise.reject(new Error('nothing exposed')),
    });
    cleanups.push(() => listener.close());
    const listening = new Promise<void>((resolve) => listener.state$.subscribe((state) => state.status === 'listening' && resolve()));
    listener.start();
    await listening;
    const file = await writeConfig(cloudConfig(emulators, await closedPort()));

    const { code, report } = await doctor(['--cloud', '--config', file, '--json']);
    expect(failedIds(report)).toEqual([]);
    expect(code).toBe(0);
    expect(report!.target).toBe('cloud');
    expect(report!.checks.map((check) => check.id)).toEqual([
      'servicebus.dns', 'servicebus.tcp', 'servicebus.tls', 'relay.dns', 'relay.tcp', 'relay.tls', 'clock',
      'servicebus.listen', 'servicebus.send.store-paris-1', 'servicebus.rights', 'relay.send.store-paris-1', 'http.port',
    ]);
    expect(row(report, 'relay.send.store-paris-1').detail).toContain('answered its health check through the relay');
  });

  it('no listener on a store hybrid connection, and the API port taken: ✗ rows, exit 1', async () => {
    const emulators = await leastPrivilegeEmulators();
    const taken = net.createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    cleanups.push(() => new Promise((resolve) => taken.close(resolve)));
    const file = await writeConfig(cloudConfig(emulators, (taken.address() as net.AddressInfo).port));

    const { code, report } = await doctor(['--cloud', '--config', file, '--json']);
    expect(code).toBe(1);
    expect(failedIds(report)).toEqual(['relay.send.store-paris-1', 'http.port']);
    expect(row(report, 'relay.send.store-paris-1').advice).toContain('store paris-1 is not connected to the relay');
    expect(row(report, 'http.port').detail).toContain('EADDRINUSE');
  });
});
