/**
 * The chain on provisioned configs: `storelink provision` for 20 stores against the emulators' TLS port, then three
 * stores started from their written store.json (the config reader of `storelink store`) and the cloud from the written
 * cloud.json (the config reader of `storelink cloud`), signatures on. Operations run both ways, and one store's
 * credentials reach nothing of another's. The relay's rules come from the provisioner's Config.json fragment: a first
 * run writes it, the relay starts with it, a second run (with that relay's endpoint) keeps every key.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient } from '@azure/service-bus';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { readCloudConfig } from '../../src/cli/cloudCommand.js';
import { runCli } from '../../src/cli/program.js';
import { readStoreConfig } from '../../src/cli/storeCommand.js';
import { createDispatcher } from '../../src/cloud/dispatcher.js';
import { parsePolicy } from '../../src/core/policy.js';
import { startEmulators, tlsConnectionString } from '../../src/emulator/startEmulators.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { createClickAndCollectHandlers, EXPOSED_TYPES } from '../../samples/store-click-and-collect/handlers.js';
import { openInventory } from '../../samples/store-click-and-collect/inventory.js';
import { testTlsFiles } from '../support/testTls.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});
const RETRY = { maxRetries: 0, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 5_000 };
const STORE_IDS = Array.from({ length: 20 }, (_, index) => `shop${String(index + 1).padStart(2, '0')}`);

async function cli(argv: string[], cwd: string): Promise<string> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), cwd });
  expect(code, stderr).toBe(0);
  return stdout;
}

describe('the chain on the configs storelink provision wrote', () => {
  it('20 stores provisioned; three run from their store.json and the cloud from cloud.json; operations run both ways; no store reaches another', async () => {
    const { certFile, keyFile } = testTlsFiles();
    const tls = { tlsPort: 0, tls: { certFile, keyFile }, serviceBusPort: null, relayPort: null } as const;
    const manage = { keyName: 'RootManageSharedAccessKey', primaryKey: 'manage-key', rights: ['Manage', 'Listen', 'Send'] as ('Manage' | 'Listen' | 'Send')[] };
    const azure = await startEmulators({ sharedAccessPolicies: [manage], ...tls });
    closeables.push(() => azure.close());
    const dir = await mkdtemp(path.join(tmpdir(), 'storelink-provisioned-'));
    closeables.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(path.join(dir, 'stores.json'), JSON.stringify({ stores: STORE_IDS.map((storeId) => ({ storeId, bidirectional: true })) }));
    const admin = tlsConnectionString(azure.tls!.port, manage);
    const provision = ['provision', '--stores', 'stores.json', '--out', 'out', '--connection-string', admin];

    // Run 1 writes the relay fragment; the relay namespace starts with it; run 2 points the configs at it.
    await cli(provision, dir);
    const fragment = JSON.parse(await readFile(path.join(dir, 'out', 'relay', 'hybrid-connections.json'), 'utf8')) as {
      HybridConnections: { Name: string; AuthorizationRules: { KeyName: string; PrimaryKey: string; Rights: ('Listen' | 'Send')[] }[] }[];
    };
    const relayNamespace = await startEmulators({
      sharedAccessPolicies: [manage],
      hybridConnections: fragment.HybridConnections.map((hc) => ({
        name: hc.Name,
        authorizationRules: hc.AuthorizationRules.map((rule) => ({ keyName: rule.KeyName, primaryKey: rule.PrimaryKey, rights: rule.Rights })),
      })),
      ...tls,
    });
    closeables.push(() => relayNamespace.close());
    const second = await cli([...provision, '--relay-endpoint', `sb://localhost:${relayNamespace.tls!.port}/`], dir);
    expect(second.match(/: unchanged/g)).toHaveLength(21);

    const agents = new Map<string, StoreAgent>();
    for (const storeId of STORE_IDS.slice(0, 3)) {
      const config = await readStoreConfig(path.join(dir, 'out', storeId, 'store.json'));
      const inventory = await openInventory(path.join(config.dataDir, 'inventory'));
      const agent = createStoreAgent({
        storeId: config.storeId,
        handlers: createClickAndCollectHandlers(inventory),
        expose: [...EXPOSED_TYPES],
        relay: config.relay!,
        serviceBus: { ...config.serviceBus, retry: RETRY },
        dataDir: config.dataDir,
        signing: config.signing,
        trustedCloudKeys: config.trustedCloudKeys,
      });
      closeables.push(() => agent.close());
      await agent.start();
      await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
      agents.set(storeId, agent);
    }

    await cli(['apikeys', 'create', '--name', 'ops', '--scopes', 'publish,read', '--file', path.join('out', 'cloud', 'api-keys.json')], dir);
    const cloud = await readCloudConfig(path.join(dir, 'out', 'cloud', 'cloud.json'));
    const dispatcher = createDispatcher({
      serviceBus: { ...cloud.serviceBus, retry: RETRY },
      relay: cloud.relay!,
      stores: cloud.stores.filter((store) => agents.has(store.storeId)),
      signing: cloud.signing,
      policy: parsePolicy({
        link: { failureThreshold: 2, openCooldownInMs: 300, maxCooldownInMs: 1_000, probeIntervalInMs: 60_000 },
        operations: {
          'stock.query': { latency: 'realtime', fallback: 'reject', relayTimeoutInMs: 3_000 },
          'price.update': { latency: 'async' },
        },
      }),
    });
    closeables.push(() => dispatcher.close());
    await dispatcher.start();

    for (const storeId of agents.keys()) {
      const realtime = await dispatcher.publish({ storeId, type: 'stock.query', payload: { skus: ['SKU-KETTLE'] } });
      expect(realtime).toMatchObject({ channel: 'relay', outcome: 'delivered' });
      const queued = await dispatcher.publish({ storeId, type: 'price.update', payload: { prices: { 'SKU-KETTLE': 35 } } }, { awaitReplyInMs: 15_000 });
      expect(queued).toMatchObject({ channel: 'queue', outcome: 'delivered' });
      expect(queued.reply).toBeDefined();
    }

    // shop01's own credentials, as written, reach nothing of shop02's.
    const shop01 = await readStoreConfig(path.join(dir, 'out', 'shop01', 'store.json'));
    const client = new ServiceBusClient(shop01.serviceBus.connectionString, { retryOptions: RETRY });
    closeables.push(() => client.close());
    await expect(client.createReceiver('store-shop02').peekMessages(1)).rejects.toMatchObject({ code: 'UnauthorizedAccess' });
    await expect(client.createSender('store-shop02').sendMessages({ body: 'forged' })).rejects.toMatchObject({ code: 'UnauthorizedAccess' });
  });
});
