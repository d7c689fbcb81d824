/** The `metrics` section of the cloud's configuration file: which stores and types `GET /metrics` labels. */
import { describe, expect, it } from 'vitest';
import { readCloudConfig } from '../../src/cli/cloudCommand.js';
import { MINIMAL_CLOUD_CONFIG as CLOUD, cloudConfigFiles } from '../support/cloudConfigFiles.js';

const configFile = cloudConfigFiles('storelink-metrics-config-');

describe('cloud configuration: metrics', () => {
  it('leaves the defaults to the HTTP API when the section is absent', async () => {
    const config = await readCloudConfig(await configFile('none.json', CLOUD), {});
    expect(config.metrics).toEqual({});
  });

  it.each([
    [{ perStore: 'off' }, { perStore: 'off' }],
    [{ perStore: 'all', maxOperationTypes: 20 }, { perStore: 'all', maxOperationTypes: 20 }],
    [{ perStore: { top: 200 } }, { perStore: { top: 200 } }],
  ])('reads %j', async (metrics, expected) => {
    const config = await readCloudConfig(await configFile('good.json', { ...CLOUD, metrics }), {});
    expect(config.metrics).toEqual(expected);
  });

  it.each([
    [{ perStore: 'some' }, /metrics\.perStore/],
    [{ perStore: { top: 0 } }, /metrics\.perStore\.top/],
    [{ perStore: { top: 2.5 } }, /metrics\.perStore: expected "off", "all" or \{ "top": N \} with N a whole number/],
    [{ perStore: { top: 5, bottom: 1 } }, /metrics\.perStore/],
    [{ maxOperationTypes: -1 }, /metrics\.maxOperationTypes/],
    [{ byStore: 'all' }, /metrics/],
  ])('refuses %j, naming the field', async (metrics, message) => {
    const file = await configFile('bad.json', { ...CLOUD, metrics });
    await expect(readCloudConfig(file, {})).rejects.toThrow(message);
  });
});
