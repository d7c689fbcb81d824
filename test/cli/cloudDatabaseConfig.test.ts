/** The `database` section of the cloud's configuration file. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCloudConfig } from '../../src/cli/cloudCommand.js';
import { withSigningKeys } from '../support/signingKeys.js';

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'storelink-database-config-'));
});
afterAll(() => rm(directory, { recursive: true, force: true }));

const CLOUD = { serviceBus: { connectionString: 'x' }, stores: [{ storeId: 'nice-1', bidirectional: false }], http: { token: 'a-token-of-16-characters' } };

async function configFile(name: string, config: Record<string, unknown>): Promise<string> {
  const file = path.join(directory, name);
  await writeFile(file, JSON.stringify(await withSigningKeys(directory, config)));
  return file;
}

describe('cloud configuration: database', () => {
  it('defaults to the embedded database (no connection string)', async () => {
    const config = await readCloudConfig(await configFile('none.json', CLOUD), {});
    expect(config.database).toEqual({});
  });

  it('reads the connection string from the environment and the retention as given', async () => {
    const file = await configFile('env.json', { ...CLOUD, database: { connectionString: 'env:STORELINK_DATABASE_URL', retentionInMs: 86_400_000 } });
    const config = await readCloudConfig(file, { STORELINK_DATABASE_URL: 'postgres://cloud:secret@db.internal:5432/storelink' });
    expect(config.database).toEqual({ connectionString: 'postgres://cloud:secret@db.internal:5432/storelink', retentionInMs: 86_400_000 });
  });

  it.each([
    [{ retentionInMs: 1_000 }, /database\.retentionInMs/],
    [{ retentionInMs: 1.5e6 + 0.5 }, /database\.retentionInMs/],
    [{ connectionString: '' }, /database\.connectionString/],
    [{ host: 'db' }, /database/],
  ])('refuses %j', async (database, message) => {
    const file = await configFile('bad.json', { ...CLOUD, database });
    await expect(readCloudConfig(file, {})).rejects.toThrow(message);
  });
});
