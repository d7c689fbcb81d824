/**
 * Cloud configuration files for tests of `readCloudConfig`: one temporary folder per test file (removed after it),
 * the smallest valid configuration, and a writer that adds signing key files.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { withSigningKeys } from './signingKeys.js';

/** The smallest cloud configuration `readCloudConfig` accepts, but for its signing keys. */
export const MINIMAL_CLOUD_CONFIG = {
  serviceBus: { connectionString: 'x' },
  stores: [{ storeId: 'nice-1', bidirectional: false }],
  http: { token: 'a-token-of-16-characters' },
};

/** Registers the folder's hooks; the function returned writes `name` there, with key files, and returns its path. */
export function cloudConfigFiles(prefix: string): (name: string, config: Record<string, unknown>) => Promise<string> {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(path.join(tmpdir(), prefix));
  });
  afterAll(() => rm(directory, { recursive: true, force: true }));
  return async (name, config) => {
    const file = path.join(directory, name);
    await writeFile(file, JSON.stringify(await withSigningKeys(directory, config)));
    return file;
  };
}
