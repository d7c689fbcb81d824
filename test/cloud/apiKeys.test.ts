import { describe, expect, it } from 'vitest';
import { ApiKeyRing, MAX_API_KEY_FILE_BYTES, hashOfApiKey, newApiKey, parseApiKeyFile } from '../../src/cloud/apiKeys.js';

const NOW = Date.parse('2031-03-01T09:00:00Z');

describe('API keys', () => {
  it('makes a 256-bit secret under the name, and a record with its SHA-256 hash, never the secret', () => {
    const { presented, record } = newApiKey({ name: 'backend', scopes: ['read', 'publish'], now: NOW, expiresAt: NOW + 1_000 });
    const [name, secret] = presented.split('.') as [string, string];
    expect(name).toBe('backend');
    expect(Buffer.from(secret, 'base64url')).toHaveLength(32);
    expect(record).toEqual({ name: 'backend', scopes: ['publish', 'read'], hash: hashOfApiKey(presented), createdAt: '2031-03-01T09:00:00.000Z', expiresAt: '2031-03-01T09:00:01.000Z' });
    expect(JSON.stringify(record)).not.toContain(secret);
    expect(newApiKey({ name: 'backend', scopes: ['read'], now: NOW }).presented).not.toBe(presented);
  });

  it('authenticates by name then hash, until the key expires', () => {
    const key = newApiKey({ name: 'backend', scopes: ['publish'], now: NOW, expiresAt: NOW + 1_000 });
    const other = newApiKey({ name: 'other', scopes: ['read'], now: NOW });
    const ring = new ApiKeyRing({ keys: [key.record, other.record] });
    expect(ring.authenticate(key.presented, NOW + 999)).toEqual({ name: 'backend', scopes: ['publish'] });
    expect(ring.authenticate(key.presented, NOW + 1_000)).toBeUndefined();
    // The other key's secret under this key's name is not this key.
    expect(ring.authenticate(`backend.${other.presented.split('.')[1]}`, NOW)).toBeUndefined();
    expect(ring.authenticate(`nobody.${key.presented.split('.')[1]}`, NOW)).toBeUndefined();
    expect(ring.authenticate('', NOW)).toBeUndefined();
    expect(ring.list().map(({ name }) => name)).toEqual(['backend', 'other']);
  });

  it('turns the deprecated single token into a key named "token" with every scope', () => {
    const ring = new ApiKeyRing({ keys: [] }, { legacyToken: 'a-long-legacy-token-0123' });
    expect(ring.authenticate('a-long-legacy-token-0123', NOW)).toEqual({ name: 'token', scopes: ['publish', 'read', 'admin'] });
    expect(ring.authenticate('a-long-legacy-token-012', NOW)).toBeUndefined();
  });

  it.each([
    ['not JSON', '{', 'not valid JSON'],
    ['a duplicate name', JSON.stringify({ keys: [0, 1].map(() => ({ name: 'x', scopes: ['read'], hash: `sha256:${'0'.repeat(64)}`, createdAt: '2030-01-01T00:00:00Z' })) }), 'keys[1].name: "x" is listed twice'],
    ['an unknown scope', JSON.stringify({ keys: [{ name: 'x', scopes: ['write'], hash: `sha256:${'0'.repeat(64)}`, createdAt: '2030-01-01T00:00:00Z' }] }), 'keys[0].scopes[0]'],
    ['no scope', JSON.stringify({ keys: [{ name: 'x', scopes: [], hash: `sha256:${'0'.repeat(64)}`, createdAt: '2030-01-01T00:00:00Z' }] }), 'at least one scope'],
    ['a stored secret', JSON.stringify({ keys: [{ name: 'x', scopes: ['read'], secret: 'abc', hash: `sha256:${'0'.repeat(64)}`, createdAt: '2030-01-01T00:00:00Z' }] }), 'secret'],
    ['too many bytes', `{"keys":[]${' '.repeat(MAX_API_KEY_FILE_BYTES)}}`, `larger than ${MAX_API_KEY_FILE_BYTES} bytes`],
  ])('refuses a key file with %s', (_what, text, message) => {
    expect(() => parseApiKeyFile(text, 'keys.json')).toThrow(message);
  });
});
