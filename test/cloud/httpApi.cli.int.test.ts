import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { API_KEY_RECHECK_IN_MS } from '../../src/cloud/apiKeyFile.js';
import { runCli } from '../../src/cli/program.js';
import { silentLogger } from '../../src/core/logger.js';
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { createStoreAgent } from '../../src/store/storeAgent.js';
import { createStore } from '../../samples/store-click-and-collect/store.js';
import { firstLine, startCliProcess } from '../support/cliProcess.js';
import { storeSigningOptions, withSigningKeys } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!();
});

const TOKEN = 'cli-token-0123456789abcdef';

/**
 * The key files a cloud configuration names, written in `directory`: the cloud's key, and store paris-1's public key
 * for each store listed (unless a store or the config says otherwise), relative to the configuration file.
 */
async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-cloud-cli-'));
  closeables.push(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

function startCli(args: string[], env: NodeJS.ProcessEnv): ChildProcessWithoutNullStreams {
  const { child, kill } = startCliProcess(args, env);
  closeables.push(kill);
  return child;
}

/** Runs `storelink apikeys create` in `directory` and returns the key it printed. */
async function createKey(directory: string, name: string, scopes: string): Promise<string> {
  let stdout = '';
  const code = await runCli(['apikeys', 'create', '--name', name, '--scopes', scopes, '--file', 'keys/api-keys.json'], {
    stdout: (text) => (stdout += text),
    stderr: () => undefined,
    cwd: directory,
  });
  expect(code).toBe(0);
  return stdout.trim();
}

describe('storelink cloud', () => {
  // A child process that loads the CLI, opens its PGlite operation records and connects both channels before its
  // first line: under a full parallel run that alone can take most of the default 20 s.
  it('runs the dispatcher and its HTTP API from a configuration file, prints its URL, and stops on SIGTERM with exit 0', async () => {
    const azure = await startEmulators({
      namespaces: [{ queues: [{ name: 'store-paris-1' }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }],
      hybridConnections: [{ name: 'store-paris-1' }],
    });
    closeables.push(() => azure.close());
    const storeDir = await tempDir();
    const store = await createStore({ storeId: 'paris-1', dataDir: storeDir, logger: silentLogger });
    const agent = createStoreAgent({
      storeId: 'paris-1',
      ...storeSigningOptions('paris-1'),
      handlers: store.handlers,
      expose: store.expose ?? [],
      serviceBus: { connectionString: azure.serviceBusConnectionString() },
      relay: { connectionString: azure.relayConnectionString() },
      dataDir: storeDir,
    });
    closeables.push(() => agent.close());
    await agent.start();
    await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));

    const directory = await tempDir();
    await mkdir(path.join(directory, 'keys'));
    const backend = await createKey(directory, 'backend', 'publish,read');
    const dashboard = await createKey(directory, 'dashboard', 'read');
    await writeFile(path.join(directory, 'policy.json'), JSON.stringify({ operations: { 'clickAndCollect.order': { latency: 'realtime', fallback: 'queue' } } }));
    const configFile = path.join(directory, 'cloud.json');
    await writeFile(
      configFile,
      JSON.stringify(
        await withSigningKeys(directory, {
          serviceBus: { connectionString: 'env:TEST_STORELINK_SERVICEBUS' },
          relay: { connectionString: azure.relayConnectionString() },
          policy: 'policy.json',
          chart: 'storeLink',
          stores: [{ storeId: 'paris-1', bidirectional: true }],
          dataDir: 'links',
          http: { port: 0, apiKeysFile: 'keys/api-keys.json' },
        }),
      ),
    );
    const child = startCli(['cloud', '--config', configFile, '--log-level', 'silent'], {
      TEST_STORELINK_SERVICEBUS: azure.serviceBusConnectionString(),
    });
    let stdout = '';
    const line = await firstLine(child);
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const url = /(http:\/\/127\.0\.0\.1:\d+)/.exec(line)?.[1];
    expect(line).toContain('cloud dispatcher for 1 store serving http://127.0.0.1:');
    expect(url).toBeDefined();
    const headers = { authorization: `Bearer ${backend}`, 'content-type': 'application/json' };

    const stores = await fetch(`${url}/stores`, { headers });
    expect(await stores.json()).toMatchObject({ stores: [{ storeId: 'paris-1', state: 'healthy' }] });
    const order = { type: 'clickAndCollect.order', payload: { orderId: 'CC-1', customer: 'Ada', lines: [{ sku: 'SKU-KETTLE', quantity: 1 }] } };
    const published = await fetch(`${url}/stores/paris-1/operations`, { method: 'POST', headers, body: JSON.stringify(order) });
    expect(await published.json()).toMatchObject({ channel: 'relay', outcome: 'delivered', reply: { reserved: { 'SKU-KETTLE': 1 } } });
    expect((await fetch(`${url}/stores`)).status).toBe(401);
    expect((await fetch(`${url}/stores/paris-1/operations`, { method: 'POST', headers: { ...headers, authorization: `Bearer ${dashboard}` }, body: JSON.stringify(order) })).status).toBe(403);
    // Revoked through the command line while the cloud runs: refused within API_KEY_RECHECK_IN_MS (no event says when
    // the cloud looked at the file again, so the test polls, for far longer than the bound).
    expect(await runCli(['apikeys', 'revoke', '--name', 'backend', '--file', 'keys/api-keys.json'], { stdout: () => undefined, stderr: () => undefined, cwd: directory })).toBe(0);
    const deadline = performance.now() + 20 * API_KEY_RECHECK_IN_MS;
    let status = (await fetch(`${url}/stores`, { headers })).status;
    while (status === 200 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, API_KEY_RECHECK_IN_MS / 5));
      status = (await fetch(`${url}/stores`, { headers })).status;
    }
    expect(status).toBe(401);
    expect((await fetch(`${url}/stores`, { headers: { authorization: `Bearer ${dashboard}` } })).status).toBe(200);

    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(stdout).toBe('');
  }, 90_000);

  it.each([
    ['no/such/cloud.json', undefined, 2, 'no such file'],
    ['cloud.json', { stores: [{ storeId: 'paris-1', bidirectional: false }], serviceBus: { connectionString: 'x' }, http: { token: 'short' } }, 1, 'http.token must be at least 16'],
    ['cloud.json', { stores: [{ storeId: 'paris-1', bidirectional: true }], serviceBus: { connectionString: 'x' }, http: { token: TOKEN } }, 1, 'relay: is required'],
    [
      'cloud.json',
      { stores: [{ storeId: 'paris-1', bidirectional: false }, { storeId: 'paris-1', bidirectional: false }], serviceBus: { connectionString: 'x' }, http: { token: TOKEN } },
      1,
      'stores[1].storeId: "paris-1" is listed twice',
    ],
    ['cloud.json', { stores: [], serviceBus: { connectionString: 'x' }, http: { token: TOKEN } }, 1, 'stores: must list at least one store'],
    ['cloud.json', { stores: [{ storeId: 'paris-1', bidirectional: false }], serviceBus: { connectionString: 'x' }, http: {} }, 1, 'http.apiKeysFile: is required'],
    ['cloud.json', { stores: [{ storeId: 'paris-1', bidirectional: false }], serviceBus: { connectionString: 'x' }, http: { token: TOKEN, apiKeysFile: 'k.json' } }, 1, 'not both'],
    ['cloud.json', { stores: [{ storeId: 'paris-1', bidirectional: false }], serviceBus: { connectionString: 'x' }, http: { port: 0, apiKeysFile: 'no-keys.json' } }, 1, 'the API key file cannot be used'],
    ['cloud.json', { stores: [{ storeId: 'paris-1', bidirectional: false }], serviceBus: { connectionString: 'x' }, http: { token: 'env:TEST_STORELINK_UNSET_TOKEN' } }, 1, 'TEST_STORELINK_UNSET_TOKEN, which is not set'],
    ['cloud.json', { stores: [{ storeId: 'paris-1', bidirectional: false }], serviceBus: { connectionString: 'x' }, policy: { operations: { 'stock.query': { fallback: 'later' } } }, http: { token: TOKEN } }, 1, 'invalid policy'],
    ['cloud.json', { stores: [{ storeId: 'paris-1', bidirectional: false }], serviceBus: { connectionString: 'x' }, chart: 'noSuchChart', http: { token: TOKEN } }, 2, 'neither a built-in chart'],
    [
      'cloud.json',
      { stores: [{ storeId: 'paris-1', bidirectional: false }], serviceBus: { connectionString: 'x' }, chart: path.resolve('test/fixtures/unknownTag.machine.ts'), http: { token: TOKEN } },
      1,
      'breaks the routing contract',
    ],
    ['cloud.json', { stores: [{ storeId: 'paris-1', bidirectional: false }], serviceBus: { connectionString: 'x' }, signing: undefined, http: { token: TOKEN } }, 1, 'signing:'],
    ['cloud.json', { stores: [{ storeId: 'paris-1', bidirectional: false, publicKeys: {} }], serviceBus: { connectionString: 'x' }, http: { token: TOKEN } }, 1, 'stores[0].publicKeys: must name at least one public key file'],
    [
      'cloud.json',
      { stores: [{ storeId: 'paris-1', bidirectional: false, publicKeys: { k1: 'missing.pub.pem' } }], serviceBus: { connectionString: 'x' }, http: { token: TOKEN } },
      2,
      'missing.pub.pem: no such file',
    ],
  ])('refuses %s (%j) with exit %i', async (file, config, expected, message) => {
    const directory = await tempDir();
    if (config !== undefined) await writeFile(path.join(directory, file), JSON.stringify(await withSigningKeys(directory, config)));
    let stderr = '';
    const code = await runCli(['cloud', '--config', file, '--log-level', 'silent'], { stdout: () => undefined, stderr: (text) => (stderr += text), cwd: directory });
    expect(stderr).toContain(message);
    expect(code).toBe(expected);
  });
});
