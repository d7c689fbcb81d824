/** The `metrics` section of the cloud's configuration file: which stores and types `GET /metrics` labels. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCloudConfig } from '../../src/cli/cloudCommand.js';
import { withSigningKeys } from '../support/signingKeys.js';

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'storelink-metrics-config-'));
});
afterAll(() => rm(directory, { recursive: true, force: true }));

const CLOUD = { serviceBus: { connectionString: 'x' }, stores: [{ storeId: 'nice-1', bidirectional: false }], http: { token: 'a-token-of-16-characters' } };

async function configFile(name: string, config: Record<string, unknown>): Promise<string> {
  const file = path.join(directory, name);
  await writeFile(file, JSON.stringify(await withSigningKeys(directory, config)));
  return file;
}

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
