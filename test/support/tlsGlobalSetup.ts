/**
 * vitest globalSetup: one test CA for the whole run, trusted by every test worker. Node reads NODE_EXTRA_CA_CERTS
 * only when a process starts, and hyco-https and ws take no `ca` per call, so the CA is made here, before the workers
 * are forked (they inherit the variable), with the emulators' own development-CA code. A test gives the emulators the
 * server certificate it signed through `testTlsFiles()` (`tls: { certFile, keyFile }`). A NODE_EXTRA_CA_CERTS already
 * set is kept: the file the workers get holds both.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureDevelopmentCertificates } from '../../src/emulator/tls/index.js';
import { TEST_TLS_ENV } from './testTls.js';

let dir: string | undefined;
const saved: Record<string, string | undefined> = {};

export async function setup(): Promise<void> {
  dir = await mkdtemp(path.join(tmpdir(), 'storelink-test-ca-'));
  const certificates = await ensureDevelopmentCertificates({ dir });
  const earlier = process.env.NODE_EXTRA_CA_CERTS;
  const bundle = path.join(dir, 'trusted.pem');
  const earlierText = earlier === undefined ? '' : await readFile(earlier, 'utf8').catch(() => '');
  await writeFile(bundle, `${earlierText.trimEnd()}\n${certificates.ca.cert}`.trimStart());
  const values: Record<string, string> = {
    NODE_EXTRA_CA_CERTS: bundle,
    [TEST_TLS_ENV.caFile]: certificates.caFile,
    [TEST_TLS_ENV.certFile]: path.join(dir, 'server.crt'),
    [TEST_TLS_ENV.keyFile]: path.join(dir, 'server.key'),
  };
  for (const [name, value] of Object.entries(values)) {
    saved[name] = process.env[name];
    process.env[name] = value;
  }
}

export async function teardown(): Promise<void> {
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}
