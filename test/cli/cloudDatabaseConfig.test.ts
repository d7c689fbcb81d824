/** The `database` section of the cloud's configuration file. */
import { describe, expect, it } from 'vitest';
import { readCloudConfig } from '../../src/cli/cloudCommand.js';
import { MINIMAL_CLOUD_CONFIG as CLOUD, cloudConfigFiles } from '../support/cloudConfigFiles.js';

const configFile = cloudConfigFiles('storelink-database-config-');

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
