import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { createRelaySender } from '../../src/channels/relay/relaySender.js';
import { readStoreConfig } from '../../src/cli/storeCommand.js';
import { runCli } from '../../src/cli/program.js';
import { createOperation } from '../../src/core/operation.js';
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { firstLine, startCliProcess, stopWith } from '../support/cliProcess.js';
import { signed, storeConfigKeys } from '../support/signingKeys.js';

const root = path.resolve(import.meta.dirname, '../..');
const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-store-cli-'));
  closeables.push(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

describe('storelink store', () => {
  it('runs the sample store from a config file, answers through the relay, and stops on SIGTERM', async () => {
    const azure = await startEmulators({ autoCreate: true });
    closeables.push(() => azure.close());
    const directory = await tempDir();
    const configFile = path.join(directory, 'store.json');
    await writeFile(
      configFile,
      JSON.stringify({
        storeId: 'nice-1',
        module: path.join(root, 'samples/store-click-and-collect/store.ts'),
        dataDir: 'data',
        serviceBus: { connectionString: 'env:TEST_SB' },
        relay: { connectionString: azure.relayConnectionString() },
        ...(await storeConfigKeys(directory, 'nice-1')),
      }),
    );
    const { child, kill } = startCliProcess(['store', '--config', configFile, '--log-level', 'info'], { TEST_SB: azure.serviceBusConnectionString() });
    closeables.push(kill);
    // The listener connects on its own schedule; its log line (JSON on stderr) says when it is there.
    const listening = new Promise<void>((resolve) =>
      createInterface({ input: child.stderr }).on('line', (text) => {
        if (text.includes('"msg":"relay listener listening"')) resolve();
      }),
    );
    const line = await firstLine(child);
    expect(line).toContain('store nice-1 running (relay: yes)');
    const sender = createRelaySender({ connectionString: azure.relayConnectionString(), hybridConnection: 'store-nice-1' });
    const query = signed(createOperation({ storeId: 'nice-1', type: 'stock.query', payload: { skus: ['SKU-KETTLE'] }, latency: 'realtime', timeToLiveInMs: 10_000 }));
    await listening;
    await expect(sender.send(query, { timeoutInMs: 5_000 })).resolves.toMatchObject({ result: { stock: { 'SKU-KETTLE': 4 } } });
    expect(await stopWith(child, 'SIGTERM')).toBe(0);
  });

  it("passes the queue's retry settings through to the store agent", async () => {
    const directory = await tempDir();
    const file = path.join(directory, 'store.json');
    const serviceBus = { connectionString: 'x', handlerRetry: { initialDelayInMs: 200, maxDelayInMs: 2_000, maxRetryWindowInMs: 30_000 }, maxDeliveryCount: 5 };
    await writeFile(file, JSON.stringify({ storeId: 'nice-1', module: 'm.ts', dataDir: 'd', serviceBus, ...(await storeConfigKeys(directory, 'nice-1')) }));
    expect((await readStoreConfig(file, {})).serviceBus).toEqual(serviceBus);
  });

  it.each([
    [{ storeId: 'nice-1', module: 'm.ts', dataDir: 'd', serviceBus: { connectionString: 'x', maxDeliveryCount: 0 } }, 'maxDeliveryCount'],
    [{ storeId: 'nice-1', module: 'm.ts', dataDir: 'd', serviceBus: { connectionString: 'x', handlerRetry: { maxRetryWindow: 1 } } }, 'maxRetryWindow'],
    [{ storeId: 'Nice', module: 'm.ts', dataDir: 'd', serviceBus: { connectionString: 'x' } }, 'storeId'],
    [{ storeId: 'nice-1', module: 'm.ts', dataDir: 'd', serviceBus: { connectionString: 'x' }, extra: 1 }, 'extra'],
    [{ storeId: 'nice-1', module: 'm.ts', dataDir: 'd', serviceBus: { connectionString: 'env:STORELINK_TEST_UNSET_VARIABLE' } }, 'STORELINK_TEST_UNSET_VARIABLE'],
    [{ storeId: 'nice-1', module: 'm.ts', dataDir: 'd', serviceBus: { connectionString: 'x' }, signing: undefined }, 'signing:'],
    [{ storeId: 'nice-1', module: 'm.ts', dataDir: 'd', serviceBus: { connectionString: 'x' }, trustedCloudKeys: {} }, 'trustedCloudKeys: must name at least one public key file'],
    [{ storeId: 'nice-1', module: 'm.ts', dataDir: 'd', serviceBus: { connectionString: 'x' }, signing: { keyId: 'k 1', privateKeyFile: 'k.pem' } }, 'signing.keyId'],
  ])('refuses a bad configuration, naming the problem (%#)', async (config, message) => {
    const directory = await tempDir();
    const file = path.join(directory, 'store.json');
    await writeFile(file, JSON.stringify({ ...(await storeConfigKeys(directory, 'nice-1')), ...config }));
    await expect(readStoreConfig(file, {})).rejects.toThrow(message);
    let stderr = '';
    const code = await runCli(['store', '--config', file], { stdout: () => undefined, stderr: (text) => (stderr += text), cwd: root });
    expect(code).toBe(1);
    expect(stderr).toContain(message);
  });

  it('exits 2 naming a key file that does not exist', async () => {
    const directory = await tempDir();
    const file = path.join(directory, 'store.json');
    const keys = await storeConfigKeys(directory, 'nice-1');
    await writeFile(file, JSON.stringify({ storeId: 'nice-1', module: 'm.ts', dataDir: 'd', serviceBus: { connectionString: 'x' }, ...keys, signing: { keyId: 'k1', privateKeyFile: 'missing.key.pem' } }));
    let stderr = '';
    expect(await runCli(['store', '--config', file], { stdout: () => undefined, stderr: (text) => (stderr += text), cwd: root })).toBe(2);
    expect(stderr).toContain('missing.key.pem: no such file');
  });

  it('exits 2 when the configuration file does not exist', async () => {
    const code = await runCli(['store', '--config', 'no/such/store.json'], { stdout: () => undefined, stderr: () => undefined, cwd: root });
    expect(code).toBe(2);
  });
});
