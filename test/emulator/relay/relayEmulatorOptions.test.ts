import { describe, expect, it } from 'vitest';
import { resolveRelayEmulatorOptions, type RelayEmulatorOptions } from '../../../src/emulator/relay/relayEmulatorOptions.js';

describe('resolveRelayEmulatorOptions', () => {
  it('fills the documented defaults', () => {
    const resolved = resolveRelayEmulatorOptions({ hybridConnections: [{ name: 'hc1' }] });
    expect(resolved).toMatchObject({
      host: '127.0.0.1',
      port: 0,
      autoCreate: false,
      noListenerStatus: 404,
      responseTimeoutInMs: 60_000,
      maxListenersPerConnection: 25,
      tokenExpiryGraceInMs: 300_000,
      lenientAudience: true,
      now: Date.now,
    });
    expect(resolved.policies.get('RootManageSharedAccessKey')).toEqual({
      keyName: 'RootManageSharedAccessKey',
      keys: ['SAS_KEY_VALUE'],
      canListen: true,
      canSend: true,
    });
    expect(resolved.hybridConnections[0]).toMatchObject({ name: 'hc1', requiresClientAuthorization: true });
  });

  it.each([
    [{ port: 70_000 }, RangeError, 'port'],
    [{ responseTimeoutInMs: 0 }, RangeError, 'responseTimeoutInMs'],
    [{ noListenerStatus: 500 }, TypeError, 'noListenerStatus'],
    [{ hybridConnections: [{ name: '/bad' }] }, TypeError, 'hybridConnections.0.name'],
    [{ hybridConnections: [{ name: '$hc/x' }] }, TypeError, 'hybridConnections.0.name'],
    [{ hybridConnections: [{ name: 'a' }, { name: 'A' }] }, TypeError, 'declared twice'],
    [{ sharedAccessPolicies: [{ keyName: 'k', primaryKey: 'v', rights: [] }] }, RangeError, 'rights'],
    [{ sharedAccessPolicies: [{ keyName: 'k', primaryKey: 'v', rights: ['Admin'] }] }, TypeError, 'rights'],
    [{ logger: 'console' }, TypeError, 'logger'],
    [{ now: 1_800_000_000_000 }, TypeError, 'option now: must be a function'],
    [{ unknownOption: true }, TypeError, 'unknownOption'],
  ])('refuses %j', (options, ErrorType, text) => {
    expect(() => resolveRelayEmulatorOptions(options as unknown as RelayEmulatorOptions)).toThrow(ErrorType);
    expect(() => resolveRelayEmulatorOptions(options as unknown as RelayEmulatorOptions)).toThrow(text);
  });
});
