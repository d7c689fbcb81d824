/**
 * `storelink provision` for 20 stores against the emulators' TLS port (the management API, real
 * ServiceBusAdministrationClient), then the written credentials tried with the real SDK: each store's work, and
 * nothing of another store's; a second run changes nothing.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient } from '@azure/service-bus';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { readStoreConfig } from '../../src/cli/storeCommand.js';
import { startEmulators, tlsConnectionString } from '../../src/emulator/startEmulators.js';
import { testTlsFiles } from '../support/testTls.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});
const RETRY = { maxRetries: 0, timeoutInMs: 5_000 };
const STORE_IDS = Array.from({ length: 20 }, (_, index) => `s${String(index + 1).padStart(2, '0')}`);

async function cli(argv: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), cwd });
  return { code, stdout, stderr };
}

function client(connectionString: string): ServiceBusClient {
  const sb = new ServiceBusClient(connectionString, { retryOptions: RETRY });
  closeables.push(() => sb.close());
  return sb;
}

describe('storelink provision', () => {
  it('provisions 20 stores through the management API; each store config holds only its own rights; a second run changes nothing', async () => {
    const { certFile, keyFile } = testTlsFiles();
    const emulators = await startEmulators({
      sharedAccessPolicies: [{ keyName: 'RootManageSharedAccessKey', primaryKey: 'manage-key', rights: ['Manage', 'Listen', 'Send'] }],
      tlsPort: 0,
      tls: { certFile, keyFile },
      serviceBusPort: null,
      relayPort: null,
    });
    closeables.push(() => emulators.close());
    const dir = await mkdtemp(path.join(tmpdir(), 'storelink-provision-'));
    closeables.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(path.join(dir, 'stores.json'), JSON.stringify({ module: './store.js', stores: STORE_IDS.map((storeId, index) => ({ storeId, bidirectional: index < 2 })) }));
    const admin = tlsConnectionString(emulators.tls!.port, { keyName: 'RootManageSharedAccessKey', primaryKey: 'manage-key' });

    const first = await cli(['provision', '--stores', 'stores.json', '--out', 'out', '--connection-string', admin], dir);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('queue cloud-inbox: created');
    expect(first.stdout.match(/: created/g)).toHaveLength(21);

    // The store config is one `storelink store` reads; it names no namespace key.
    const alphaFile = path.join(dir, 'out', 's01', 'store.json');
    const alpha = await readStoreConfig(alphaFile);
    expect(alpha.storeId).toBe('s01');
    expect(alpha.serviceBus.connectionString).toContain('SharedAccessKeyName=store;');
    expect(alpha.serviceBus.cloudInboxConnectionString).toContain('SharedAccessSignature=');
    expect(alpha.relay?.connectionString).toContain('SharedAccessKeyName=store;');
    expect(JSON.stringify(alpha)).not.toContain('manage-key');
    expect((await readStoreConfig(path.join(dir, 'out', 's03', 'store.json'))).relay).toBeUndefined();
    const cloud = JSON.parse(await readFile(path.join(dir, 'out', 'cloud', 'cloud.json'), 'utf8')) as { serviceBus: { connectionString: string }; stores: unknown[] };
    expect(cloud.stores).toHaveLength(20);
    const relayRules = JSON.parse(await readFile(path.join(dir, 'out', 'relay', 'hybrid-connections.json'), 'utf8')) as { HybridConnections: { Name: string }[] };
    expect(relayRules.HybridConnections.map((hc) => hc.Name)).toEqual(['store-s01', 'store-s02']);
    const azScript = path.join(dir, 'out', 'relay', 'az-relay.sh');
    expect(await readFile(azScript, 'utf8')).toContain("az relay hyco create --resource-group \"$RESOURCE_GROUP\" --namespace-name \"$RELAY_NAMESPACE\" --name 'store-s01'");
    expect(await readFile(azScript, 'utf8')).toContain('/hybridConnections/store-s02/authorizationRules/store/regenerateKeys?api-version=2021-11-01');
    execFileSync('sh', ['-n', azScript]); // parses as a shell script

    // The cloud sends to s01's queue (Send there), s01 receives it (Listen there) and answers on the inbox (its token).
    const cloudClient = client(cloud.serviceBus.connectionString);
    await cloudClient.createSender('store-s01').sendMessages({ body: 'for s01', messageId: 'op-1' });
    const store = client(alpha.serviceBus.connectionString);
    const [message] = await store.createReceiver('store-s01', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 5_000 });
    expect(message?.body).toBe('for s01');
    await client(alpha.serviceBus.cloudInboxConnectionString!).createSender('cloud-inbox').sendMessages({ body: 'reply', messageId: 'r-1' });
    const [reply] = await cloudClient.createReceiver('cloud-inbox', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 5_000 });
    expect(reply?.body).toBe('reply');

    // s01's credentials reach nothing of s02's, and cannot read the inbox; the cloud's cannot read a store's queue.
    await cloudClient.createSender('store-s02').sendMessages({ body: 'for s02' });
    await expect(store.createReceiver('store-s02').peekMessages(1)).rejects.toMatchObject({ code: 'UnauthorizedAccess' });
    await expect(store.createSender('store-s02').sendMessages({ body: 'forged' })).rejects.toMatchObject({ code: 'UnauthorizedAccess' });
    await expect(client(alpha.serviceBus.cloudInboxConnectionString!).createSender('store-s02').sendMessages({ body: 'forged' })).rejects.toMatchObject({ code: 'UnauthorizedAccess' });
    await expect(store.createReceiver('cloud-inbox').peekMessages(1)).rejects.toMatchObject({ code: 'UnauthorizedAccess' });
    await expect(cloudClient.createReceiver('store-s02').peekMessages(1)).rejects.toMatchObject({ code: 'UnauthorizedAccess' });
    expect(emulators.serviceBus.messageCounts()['store-s02']).toBe(1);
    // Store queues have duplicate detection: the same operation id sent twice is kept once.
    await cloudClient.createSender('store-s03').sendMessages([{ body: 'op', messageId: 'same' }, { body: 'op', messageId: 'same' }]);
    expect(emulators.serviceBus.messageCounts()['store-s03']).toBe(1);

    // A second run: every queue unchanged, no file rewritten, the same keys.
    const before = await readFile(alphaFile, 'utf8');
    const keyBefore = await readFile(path.join(dir, 'out', 's01', 'keys', 's01-1.key.pem'), 'utf8');
    const second = await cli(['provision', '--stores', 'stores.json', '--out', 'out', '--connection-string', admin], dir);
    expect(second.code).toBe(0);
    expect(second.stdout.match(/: unchanged/g)).toHaveLength(21);
    expect(second.stdout).toContain('0 file(s) written');
    expect(await readFile(alphaFile, 'utf8')).toBe(before);
    expect(await readFile(path.join(dir, 'out', 's01', 'keys', 's01-1.key.pem'), 'utf8')).toBe(keyBefore);
  });
});
