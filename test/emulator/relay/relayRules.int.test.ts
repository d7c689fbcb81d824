/**
 * Hybrid connection authorization rules, set from the emulators' Config.json and passed through startEmulators: a
 * rule's key is valid on its own hybrid connection only. Real hyco-https listeners and fetch senders.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseEmulatorsConfig } from '../../../src/emulator/emulatorsConfig.js';
import { startEmulators } from '../../../src/emulator/startEmulators.js';
import type { RelayEmulator } from '../../../src/emulator/relay/index.js';
import { Closeables, echoHandler, sasToken, send, startListener } from './relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

const CONFIG = {
  UserConfig: {
    Namespaces: [
      {
        Name: 'sbemulatorns',
        Queues: [],
        SharedAccessPolicies: [{ Name: 'cloud', Key: 'cloud-key', Rights: ['Send'] }],
        HybridConnections: [
          { Name: 'store-alpha', AuthorizationRules: [{ KeyName: 'store', PrimaryKey: 'alpha-key', Rights: ['Listen'] }] },
          { Name: 'store-beta', AuthorizationRules: [{ KeyName: 'store', PrimaryKey: 'beta-key', SecondaryKey: 'beta-key-2', Rights: ['Listen'] }] },
        ],
      },
    ],
  },
};

async function relayFromConfig(): Promise<RelayEmulator> {
  const config = parseEmulatorsConfig(CONFIG, 'Config.json');
  const emulators = await startEmulators({
    namespaces: config.namespaces,
    hybridConnections: config.hybridConnections,
    ...(config.sharedAccessPolicies === undefined ? {} : { sharedAccessPolicies: config.sharedAccessPolicies }),
  });
  closeables.add(() => emulators.close());
  return emulators.relay;
}

describe('relay emulator: hybrid connection rules from Config.json', () => {
  it('parses AuthorizationRules of a hybrid connection into its authorizationRules', () => {
    expect(parseEmulatorsConfig(CONFIG).hybridConnections[1]).toEqual({
      name: 'store-beta',
      requiresClientAuthorization: true,
      authorizationRules: [{ keyName: 'store', primaryKey: 'beta-key', secondaryKey: 'beta-key-2', rights: ['Listen'] }],
    });
    const tooMany = structuredClone(CONFIG);
    tooMany.UserConfig.Namespaces[0]!.HybridConnections[0]!.AuthorizationRules = Array.from({ length: 13 }, (_, i) => ({ KeyName: `k${i}`, PrimaryKey: 'x', Rights: ['Listen'] }));
    expect(() => parseEmulatorsConfig(tooMany)).toThrow(/at most 12 rules/);
  });

  it("a rule's key listens on its own hybrid connection and is refused (401) on another's", async () => {
    const relay = await relayFromConfig();
    const own = await startListener(closeables, relay, 'store-alpha', echoHandler, { keyName: 'store', key: 'alpha-key' });
    expect(own.errors).toEqual([]);
    const answered = await send(relay, 'store-alpha/ping', { method: 'POST', body: 'hi', token: sasToken(relay, 'store-alpha', { keyName: 'cloud', key: 'cloud-key' }) });
    expect(answered.status).toBe(200);
    expect(await answered.text()).toBe('hi');

    const rogue = await startListener(closeables, relay, 'store-beta', echoHandler, { keyName: 'store', key: 'alpha-key', noWait: true });
    expect((await rogue.nextError()).message).toBe('Unexpected server response: 401');
    rogue.server.close();
    expect(relay.listeners('store-beta')).toEqual([]);
    // beta's own secondary key is still good there.
    await startListener(closeables, relay, 'store-beta', echoHandler, { keyName: 'store', key: 'beta-key-2' });
    expect(relay.listeners('store-beta')).toHaveLength(1);
  });

  it("a Listen rule's key cannot call a hybrid connection as a sender (403, no Send claim)", async () => {
    const relay = await relayFromConfig();
    await startListener(closeables, relay, 'store-alpha', echoHandler, { keyName: 'store', key: 'alpha-key' });
    const refused = await send(relay, 'store-alpha/ping', { method: 'POST', body: 'x', token: sasToken(relay, 'store-alpha', { keyName: 'store', key: 'alpha-key' }) });
    expect(refused.status).toBe(403);
    expect(await refused.text()).toMatch(/'Send' claim/);
  });
});
