/**
 * The cloud HTTP API serving HTTPS itself, with a certificate issued at test time by a throw-away CA: a client that
 * trusts the CA gets its answers, one that does not is refused at the handshake, and the timeouts still hold.
 */
import { Agent, request } from 'undici';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { createDispatcher } from '../../src/cloud/dispatcher.js';
import { createCloudHttpApi, type CloudHttpApiOptions } from '../../src/cloud/httpApi.js';
import { startServiceBusEmulator } from '../../src/emulator/servicebus/index.js';
import { issueTestCertificates, type TestCertificates } from '../support/testCertificates.js';
import { dispatcherSigningOptions, storePublicKeys } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const TOKEN = 'test-token-0123456789abcdef';
const STORE = 'paris-1';
let certificates: TestCertificates;
beforeAll(async () => {
  certificates = await issueTestCertificates();
});
afterAll(() => certificates.remove());

async function api(options: Partial<CloudHttpApiOptions>): Promise<number> {
  const emulator = await startServiceBusEmulator({ namespaces: [{ queues: [{ name: `store-${STORE}` }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }] });
  closeables.push(() => emulator.close());
  const dispatcher = createDispatcher({ serviceBus: { connectionString: emulator.connectionString() }, stores: [{ storeId: STORE, bidirectional: false, ...storePublicKeys(STORE) }], ...dispatcherSigningOptions() });
  closeables.push(() => dispatcher.close());
  const httpApi = createCloudHttpApi({ dispatcher, token: TOKEN, ...options });
  closeables.push(() => httpApi.close());
  return (await httpApi.listen()).port;
}

function agent(ca?: string): Agent {
  const created = new Agent({ connect: ca === undefined ? {} : { ca } });
  closeables.push(() => created.close());
  return created;
}

describe('cloud HTTP API over HTTPS', () => {
  it('answers a client that trusts its CA, over TLS', async () => {
    const port = await api({ tls: { cert: certificates.cert, key: certificates.key } });
    const response = await request(`https://127.0.0.1:${port}/stores`, { headers: { authorization: `Bearer ${TOKEN}` }, dispatcher: agent(certificates.caCert) });
    expect(response.statusCode).toBe(200);
    expect(await response.body.json()).toMatchObject({ stores: [{ storeId: STORE }] });
    const byName = await request(`https://localhost:${port}/stores`, { headers: { authorization: `Bearer ${TOKEN}` }, dispatcher: agent(certificates.caCert) });
    expect(byName.statusCode).toBe(200);
    await byName.body.dump();
  });

  it('is refused by a client that does not trust the certificate, and speaks no plain HTTP on that port', async () => {
    const port = await api({ tls: { cert: certificates.cert, key: certificates.key } });
    await expect(request(`https://127.0.0.1:${port}/stores`, { headers: { authorization: `Bearer ${TOKEN}` }, dispatcher: agent() })).rejects.toMatchObject({
      code: expect.stringMatching(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY/),
    });
    await expect(request(`http://127.0.0.1:${port}/stores`, { headers: { authorization: `Bearer ${TOKEN}` }, dispatcher: agent() })).rejects.toThrow();
  });

  it('refuses tls without a key', () => {
    expect(() => createCloudHttpApi({ dispatcher: {} as never, token: TOKEN, tls: { cert: certificates.cert } as never })).toThrow(/tls needs both cert and key/);
  });
});
