/**
 * A throw-away CA and a server certificate it signs, made at test time (never a committed key): keys from node:crypto,
 * X.509 from node-forge. Dated by the real wall clock, as TLS verification reads it.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import forge from 'node-forge';

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

function keyPair(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

function certificate(options: {
  subject: string;
  publicPem: string;
  issuer: { name: string; privatePem: string };
  ca: boolean;
  altNames?: { type: number; value?: string; ip?: string }[];
}): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(options.publicPem);
  cert.serialNumber = `01${randomBytes(8).toString('hex')}`;
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 60 * 60_000);
  cert.validity.notAfter = new Date(now + 24 * 60 * 60_000);
  cert.setSubject([{ name: 'commonName', value: options.subject }]);
  cert.setIssuer([{ name: 'commonName', value: options.issuer.name }]);
  const extensions: object[] = [{ name: 'basicConstraints', cA: options.ca, critical: true }];
  if (options.ca) extensions.push({ name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true });
  else extensions.push({ name: 'keyUsage', digitalSignature: true, keyEncipherment: true }, { name: 'extKeyUsage', serverAuth: true });
  if (options.altNames !== undefined) extensions.push({ name: 'subjectAltName', altNames: options.altNames });
  cert.setExtensions(extensions);
  cert.sign(forge.pki.privateKeyFromPem(options.issuer.privatePem), forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

/** A CA and a certificate for localhost, 127.0.0.1 and ::1, written to a temp dir as ca.pem, cert.pem, key.pem. */
export async function issueTestCertificates(caName = 'storelink test CA'): Promise<TestCertificates> {
  const caKeys = keyPair();
  const caCert = certificate({ subject: caName, publicPem: caKeys.publicPem, issuer: { name: caName, privatePem: caKeys.privatePem }, ca: true });
  const serverKeys = keyPair();
  const cert = certificate({
    subject: 'localhost',
    publicPem: serverKeys.publicPem,
    issuer: { name: caName, privatePem: caKeys.privatePem },
    ca: false,
    altNames: [
      { type: 2, value: 'localhost' },
      { type: 7, ip: '127.0.0.1' },
      { type: 7, ip: '::1' },
    ],
  });
  const dir = await mkdtemp(path.join(tmpdir(), 'storelink-tls-'));
  const caFile = path.join(dir, 'ca.pem');
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  await Promise.all([writeFile(caFile, caCert), writeFile(certFile, cert), writeFile(keyFile, serverKeys.privatePem)]);
  return { caCert, cert, key: serverKeys.privatePem, dir, caFile, certFile, keyFile, remove: () => rm(dir, { recursive: true, force: true }) };
}
