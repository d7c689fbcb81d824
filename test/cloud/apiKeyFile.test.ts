import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { API_KEY_RECHECK_IN_MS, apiKeysFromFile, writeApiKeyFile } from '../../src/cloud/apiKeyFile.js';
import { newApiKey } from '../../src/cloud/apiKeys.js';
import { silentLogger } from '../../src/core/logger.js';

const NOW = Date.parse('2031-03-01T09:00:00Z');
const directories: string[] = [];

afterEach(async () => {
  for (const directory of directories.splice(0)) await rm(directory, { recursive: true, force: true });
});

async function keyFile() {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-apikeyfile-'));
  directories.push(directory);
  return path.join(directory, 'api-keys.json');
}

describe('API key file', () => {
  it('looks at the file at most once per recheck interval: a rotation takes effect within it, and not a request before', async () => {
    const file = await keyFile();
    const old = newApiKey({ name: 'backend-2030', scopes: ['publish'], now: NOW });
    const rotated = newApiKey({ name: 'backend-2031', scopes: ['publish'], now: NOW });
    await writeApiKeyFile(file, { keys: [old.record] });
    let clock = 1_000;
    const source = apiKeysFromFile(file, silentLogger, { clock: () => clock });
    expect((await source.current()).authenticate(old.presented, NOW)?.name).toBe('backend-2030');

    // Rotated on disk: until the interval has run, the API has not looked (the file may even be gone meanwhile).
    await writeApiKeyFile(file, { keys: [rotated.record] });
    clock += API_KEY_RECHECK_IN_MS - 1;
    const cached = await source.current();
    expect(cached.authenticate(old.presented, NOW)?.name).toBe('backend-2030');
    expect(cached.authenticate(rotated.presented, NOW)).toBeUndefined();

    // From the interval on: the new key works, the old one is refused.
    clock += 1;
    const fresh = await source.current();
    expect(fresh.authenticate(rotated.presented, NOW)?.name).toBe('backend-2031');
    expect(fresh.authenticate(old.presented, NOW)).toBeUndefined();

    // A file that became unusable is refused from the next look on, not trusted from the older copy.
    await rm(file);
    expect((await source.current()).authenticate(rotated.presented, NOW)?.name).toBe('backend-2031');
    clock += API_KEY_RECHECK_IN_MS;
    await expect(source.current()).rejects.toMatchObject({ code: 'API_KEYS_UNAVAILABLE' });
  });

  it('with recheckAfterInMs 0, looks at the file on every call', async () => {
    const file = await keyFile();
    const old = newApiKey({ name: 'backend-2030', scopes: ['publish'], now: NOW });
    const rotated = newApiKey({ name: 'backend-2031', scopes: ['publish'], now: NOW });
    await writeApiKeyFile(file, { keys: [old.record] });
    const source = apiKeysFromFile(file, silentLogger, { recheckAfterInMs: 0, clock: () => 0 });
    expect((await source.current()).authenticate(old.presented, NOW)?.name).toBe('backend-2030');
    await writeApiKeyFile(file, { keys: [rotated.record] });
    expect((await source.current()).authenticate(rotated.presented, NOW)?.name).toBe('backend-2031');
    expect(() => apiKeysFromFile(file, silentLogger, { recheckAfterInMs: -1 })).toThrow(RangeError);
  });
});
