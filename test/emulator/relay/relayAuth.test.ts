import { describe, expect, it } from 'vitest';
import { createSasToken, signSasString } from '../../../src/core/sas.js';
import { authorize, hostWithoutPort, type RelayClaim } from '../../../src/emulator/relay/relayAuth.js';
import { resolveRelayEmulatorOptions } from '../../../src/emulator/relay/relayEmulatorOptions.js';

const options = resolveRelayEmulatorOptions({
  sharedAccessPolicies: [
    { keyName: 'root', primaryKey: 'root-key', secondaryKey: 'root-key-2', rights: ['Manage'] },
    { keyName: 'listen', primaryKey: 'listen-key', rights: ['Listen'] },
    { keyName: 'send', primaryKey: 'send-key', rights: ['Send'] },
  ],
  hybridConnections: [
    { name: 'hc1' },
    { name: 'shop/orders', policies: [{ keyName: 'store', primaryKey: 'store-key', rights: ['Listen', 'Send'] }] },
  ],
});
const hc1 = options.hybridConnections[0]!;
const shop = options.hybridConnections[1]!;
const NOW = 1_800_000_000_000;

function token(keyName: string, key: string, resource = 'http://127.0.0.1:9090/hc1', ttlInMs = 60_000): string {
  return createSasToken({ resource, keyName, key, expiresOnInSeconds: Math.floor((NOW + ttlInMs) / 1000) });
}

function check(tokenText: string | undefined, claim: RelayClaim = 'Send', hybridConnection = hc1, lenientAudience = true) {
  return authorize({
    token: tokenText,
    hybridConnection,
    namespacePolicies: options.policies,
    claim,
    host: '127.0.0.1',
    lenientAudience,
    clockSkewInMs: 0,
    nowInMs: NOW,
  });
}

describe('authorize', () => {
  it.each([
    ['Manage sends', token('root', 'root-key'), 'Send'],
    ['Manage listens', token('root', 'root-key'), 'Listen'],
    ['the secondary key works', token('root', 'root-key-2'), 'Send'],
    ['Listen listens', token('listen', 'listen-key'), 'Listen'],
    ['Send sends', token('send', 'send-key'), 'Send'],
    ['the namespace root audience covers every entity', token('root', 'root-key', 'http://127.0.0.1:9090/'), 'Send'],
    ['scheme, port, $hc and case are ignored', token('root', 'root-key', 'sb://127.0.0.1/$hc/HC1/'), 'Send'],
    ['an audience below the entity is accepted (lenient)', token('root', 'root-key', 'http://127.0.0.1/hc1/api/x'), 'Send'],
  ] as const)('accepts: %s', (_name, tokenText, claim) => {
    expect(check(tokenText, claim)).toMatchObject({ ok: true });
  });

  it('returns the expiry of an accepted token', () => {
    expect(check(token('root', 'root-key'))).toEqual({ ok: true, keyName: 'root', expiresAtMs: NOW + 60_000 });
  });

  it.each([
    ['no token', undefined, 401, 'MissingToken'],
    ['an empty token', '   ', 401, 'MissingToken'],
    ['a malformed token', 'Bearer abc', 401, 'MalformedToken'],
    ['an unknown key name', token('nobody', 'root-key'), 401, 'InvalidSignature'],
    ['a wrong key', token('root', 'wrong'), 401, 'InvalidSignature'],
    ['an expired token', token('root', 'root-key', undefined, -5_000), 401, 'ExpiredToken'],
    ['another entity', token('root', 'root-key', 'http://127.0.0.1/hc2'), 403, 'InvalidAudience'],
    ['another host', token('root', 'root-key', 'http://other.host/hc1'), 403, 'InvalidAudience'],
    ['a Listen-only key used to send', token('listen', 'listen-key'), 403, "'Send' claim"],
  ] as const)('refuses %s', (_name, tokenText, status, text) => {
    const result = check(tokenText);
    expect(result).toMatchObject({ ok: false, status });
    expect(!result.ok && result.description).toContain(text);
  });

  it('refuses a Send-only key used to listen', () => {
    const result = check(token('send', 'send-key'), 'Listen');
    expect(result).toMatchObject({ ok: false, status: 403 });
    expect(!result.ok && result.description).toContain("'Listen' claim");
  });

  it('refuses an audience below the entity when not lenient', () => {
    expect(check(token('root', 'root-key', 'http://127.0.0.1/hc1/api'), 'Send', hc1, false)).toMatchObject({ ok: false, status: 403 });
  });

  it('verifies the signature over sr exactly as sent (lower-case hex encoding)', () => {
    const encoded = 'http%3a%2f%2f127.0.0.1%3a9090%2fhc1';
    const se = String(Math.floor(NOW / 1000) + 60);
    const sig = encodeURIComponent(signSasString(encoded, se, 'root-key'));
    expect(check(`SharedAccessSignature sr=${encoded}&sig=${sig}&se=${se}&skn=root`)).toMatchObject({ ok: true });
  });

  it('uses entity-level policies before namespace ones, and only for that entity', () => {
    const store = token('store', 'store-key', 'http://127.0.0.1/shop/orders');
    expect(check(store, 'Listen', shop)).toMatchObject({ ok: true });
    expect(check(store, 'Send', shop)).toMatchObject({ ok: true });
    expect(check(token('store', 'store-key'), 'Send', hc1)).toMatchObject({ ok: false, status: 401 });
  });
});

describe('hostWithoutPort', () => {
  it.each([
    ['127.0.0.1:9090', '127.0.0.1'],
    ['localhost', 'localhost'],
    ['[::1]:80', '[::1]'],
    [undefined, 'fallback'],
  ])('%s -> %s', (host, expected) => {
    expect(hostWithoutPort(host, 'fallback')).toBe(expected);
  });
});
