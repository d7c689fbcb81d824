/**
 * A throw-away CA and a server certificate it signs (localhost, 127.0.0.1, ::1), made at test time in a temp dir by
 * the emulators' own development-CA code (never a committed key), and trusted by nothing until a test says so. For
 * the CA every test worker trusts, see tlsGlobalSetup.ts and testTlsFiles().
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureDevelopmentCertificates } from '../../src/emulator/tls/index.js';

export interface TestCertificates {
  caCert: string;
  cert: string;
  key: string;
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  remove(): Promise<void>;
}

/** A new CA (each call makes another) and its server certificate, as ca.crt, server.crt and server.key in a temp dir. */
export async function issueTestCertificates(): Promise<TestCertificates> {
  const dir = await mkdtemp(path.join(tmpdir(), 'storelink-tls-'));
  try {
    const made = await ensureDevelopmentCertificates({ dir });
    return {
      caCert: made.ca.cert,
      cert: made.server.cert,
      key: made.server.key,
      dir,
      caFile: made.caFile,
      certFile: path.join(dir, 'server.crt'),
      keyFile: path.join(dir, 'server.key'),
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
