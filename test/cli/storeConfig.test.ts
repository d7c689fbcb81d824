/** `storelink store --config`: the relay section's reply hold (README "The store agent"). */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readStoreConfig } from '../../src/cli/storeCommand.js';
import { storeConfigKeys } from '../support/signingKeys.js';

const directories: string[] = [];
afterEach(async () => {
  while (directories.length > 0) await rm(directories.pop()!, { recursive: true, force: true });
});

async function configFile(relay: Record<string, unknown>): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-store-config-'));
  directories.push(directory);
  const file = path.join(directory, 'store.json');
  const config = {
    storeId: 'paris-1',
    module: 'store.ts',
    dataDir: 'data',
    serviceBus: { connectionString: 'Endpoint=sb://localhost;SharedAccessKeyName=store;SharedAccessKey=dev;UseDevelopmentEmulator=true' },
    relay: { connectionString: 'Endpoint=sb://relay.localhost/;SharedAccessKeyName=listen;SharedAccessKey=dev', ...relay },
    ...(await storeConfigKeys(directory, 'paris-1')),
  };
  await writeFile(file, JSON.stringify(config));
  return file;
}

describe('store configuration: relay.replyHoldInMs', () => {
  it('is passed on as given, 0 included', async () => {
    expect((await readStoreConfig(await configFile({ replyHoldInMs: 500 }))).relay).toMatchObject({ replyHoldInMs: 500 });
    expect((await readStoreConfig(await configFile({ replyHoldInMs: 0 }))).relay).toMatchObject({ replyHoldInMs: 0 });
    expect((await readStoreConfig(await configFile({}))).relay?.replyHoldInMs).toBeUndefined();
  });

  it('refuses a negative, fractional or absurd hold, naming the field', async () => {
    for (const replyHoldInMs of [-1, 2.5, 3_600_000, '2000']) {
      await expect(readStoreConfig(await configFile({ replyHoldInMs }))).rejects.toThrow(/relay\.replyHoldInMs/);
    }
  });
});
