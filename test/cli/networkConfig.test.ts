/** The network fields of the store's and the cloud's configuration files: transport, endpoint, proxy, CA, HTTPS. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCloudConfig } from '../../src/cli/cloudCommand.js';
import { readStoreConfig } from '../../src/cli/storeCommand.js';
import { issueTestCertificates, type TestCertificates } from '../support/testCertificates.js';
import { withSigningKeys } from '../support/signingKeys.js';

let directory: string;
let certificates: TestCertificates;
beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'storelink-network-config-'));
  certificates = await issueTestCertificates();
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
  await certificates.remove();
});

const STORE = { storeId: 'nice-1', module: 'm.ts', dataDir: 'd', serviceBus: { connectionString: 'x' } };
const CLOUD = { serviceBus: { connectionString: 'x' }, stores: [{ storeId: 'nice-1', bidirectional: false }], http: { token: 'a-token-of-16-characters' } };

async function configFile(name: string, config: unknown): Promise<string> {
  const file = path.join(directory, name);
  await writeFile(file, JSON.stringify(await withSigningKeys(directory, config as Record<string, unknown>)));
  return file;
}

describe('store configuration: network fields', () => {
  it('reads transport, endpoint, the proxy (password from the environment) and a CA path relative to the file', async () => {
    const file = await configFile('store.json', {
      ...STORE,
      serviceBus: { connectionString: 'x', transport: 'websockets', endpointAddress: 'https://sb-gateway.example.com:443' },
      proxy: { url: 'http://proxy.corp:3128', username: 'store', password: 'env:STORE_PROXY_PASSWORD', noProxy: ['.corp'] },
      tls: { caFile: 'certs/corp-ca.pem' },
    });
    const config = await readStoreConfig(file, { STORE_PROXY_PASSWORD: 'from-env' });
    expect(config.serviceBus).toMatchObject({ transport: 'websockets', endpointAddress: 'https://sb-gateway.example.com:443' });
    expect(config.proxy).toEqual({ url: 'http://proxy.corp:3128', username: 'store', password: 'from-env', noProxy: ['.corp'] });
    expect(config.tls).toEqual({ caFile: path.join(directory, 'certs/corp-ca.pem') });
    expect((await readStoreConfig(await configFile('no-proxy.json', { ...STORE, proxy: false }), {})).proxy).toBe(false);
  });

  it.each([
    [{ ...STORE, serviceBus: { connectionString: 'x', transport: 'tcp' } }, "expected 'websockets'"],
    [{ ...STORE, serviceBus: { connectionString: 'x', endpointAddress: 'gateway:443' } }, 'expected a scheme, host and port'],
    [{ ...STORE, serviceBus: { connectionString: 'x', transport: 'amqp' }, proxy: { url: 'http://p:1' } }, 'AMQP over TCP cannot go through an HTTPS proxy'],
    [{ ...STORE, proxy: { url: 'http://p:1', user: 'x' } }, 'user'],
    [{ ...STORE, proxy: true }, 'proxy'],
    [{ ...STORE, tls: { caFile: '' } }, 'tls.caFile'],
  ])('refuses a bad network field, naming it (%#)', async (config, message) => {
    await expect(readStoreConfig(await configFile('bad-store.json', config), {})).rejects.toThrow(message);
  });
});

describe('cloud configuration: network fields and HTTPS', () => {
  it('reads the certificate and key of http.tls relative to the file, and the proxy and CA for the channels', async () => {
    const file = path.join(certificates.dir, 'cloud.json');
    await writeFile(file, JSON.stringify(await withSigningKeys(certificates.dir, { ...CLOUD, serviceBus: { connectionString: 'x', transport: 'websockets' }, proxy: { url: 'http://proxy:3128' }, tls: { caFile: 'ca.crt' }, http: { ...CLOUD.http, tls: { certFile: 'server.crt', keyFile: 'server.key' } } })));
    const config = await readCloudConfig(file, {});
    expect(config.http.tls).toEqual({ cert: certificates.cert, key: certificates.key });
    expect(config.serviceBus.transport).toBe('websockets');
    expect(config.proxy).toEqual({ url: 'http://proxy:3128' });
    expect(config.tls).toEqual({ caFile: certificates.caFile });
  });

  it('refuses a certificate file that holds no certificate, and a missing key file', async () => {
    const swapped = path.join(certificates.dir, 'swapped.json');
    await writeFile(swapped, JSON.stringify(await withSigningKeys(certificates.dir, { ...CLOUD, http: { ...CLOUD.http, tls: { certFile: 'server.key', keyFile: 'server.key' } } })));
    await expect(readCloudConfig(swapped, {})).rejects.toThrow(/http\.tls\.certFile server\.key holds no PEM certificate/);
    const missing = path.join(certificates.dir, 'missing.json');
    await writeFile(missing, JSON.stringify(await withSigningKeys(certificates.dir, { ...CLOUD, http: { ...CLOUD.http, tls: { certFile: 'server.crt', keyFile: 'nowhere.pem' } } })));
    await expect(readCloudConfig(missing, {})).rejects.toThrow(/nowhere\.pem/);
  });
});
