/**
 * The certificates the emulators' TLS port presents: a development CA kept in `<dir>/ca.crt` + `ca.key` and a server
 * certificate it signs in `server.crt` + `server.key`, made on first start and reused afterwards, so the CA a developer
 * put in NODE_EXTRA_CA_CERTS stays valid across restarts. The server certificate is issued again when it is missing,
 * unreadable, not signed by the CA, close to expiry, or lacks a name now asked for. Keys come from node:crypto;
 * node-forge only builds and signs the X.509 structures (node:crypto cannot). Dates follow the real wall clock, which
 * is what every TLS peer checks them against.
 */
import { X509Certificate, createPrivateKey, generateKeyPair as generateKeyPairCallback, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { StorelinkError } from '../../core/errors.js';

const generateKeyPair = promisify(generateKeyPairCallback);

const DAY_IN_MS = 24 * 60 * 60 * 1000;
const CA_LIFETIME_IN_DAYS = 3650;
/** Browsers and some clients refuse server certificates valid for longer than ~13 months; stay below. */
const SERVER_LIFETIME_IN_DAYS = 397;
/** A certificate this close to its end is replaced on start. */
const RENEW_BEFORE_IN_DAYS = 30;
/** Issued certificates start a little in the past, so a peer whose clock lags a bit still accepts them. */
const BACKDATE_IN_MS = 60 * 60 * 1000;

/** The names every development server certificate covers. */
export const DEFAULT_SERVER_NAMES: readonly string[] = ['localhost', '127.0.0.1', '::1'];

export interface KeyAndCertificate {
  /** PEM. */
  cert: string;
  /** PEM (PKCS#8). */
  key: string;
}

export interface DevelopmentCertificates {
  /** `<dir>/ca.crt`: the file to name in NODE_EXTRA_CA_CERTS. */
  caFile: string;
  ca: KeyAndCertificate;
  server: KeyAndCertificate;
  /** SHA-256 fingerprint of the CA certificate, `AA:BB:…`. */
  caFingerprint: string;
  /** What this call did: created the CA (and so a new server certificate), issued only the server's, or neither. */
  created: { ca: boolean; server: boolean };
}

export interface DevelopmentCertificatesOptions {
  /** Directory of the four files; created (0700) if missing. */
  dir: string;
  /** Host names and IP addresses the server certificate must cover, besides the defaults. */
  names?: readonly string[];
  /** Wall clock for validity checks; only tests of expiry change it. Default `Date.now`. */
  wallClock?: () => number;
}

/** Loads the CA and server certificate from `dir`, creating or re-issuing what is missing or unfit. */
export async function ensureDevelopmentCertificates(options: DevelopmentCertificatesOptions): Promise<DevelopmentCertificates> {
  const dir = options.dir;
  const wallClock = options.wallClock ?? Date.now;
  const names = uniqueNames([...DEFAULT_SERVER_NAMES, ...(options.names ?? [])]);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const files = {
    caCert: path.join(dir, 'ca.crt'),
    caKey: path.join(dir, 'ca.key'),
    serverCert: path.join(dir, 'server.crt'),
    serverKey: path.join(dir, 'server.key'),
  };

  let ca = await readPair(files.caCert, files.caKey);
  let createdCa = false;
  if (ca === undefined || !caIsUsable(ca, wallClock())) {
    ca = await createCertificateAuthority(wallClock());
    await writePair(files.caCert, files.caKey, ca);
    createdCa = true;
  }
  let server = createdCa ? undefined : await readPair(files.serverCert, files.serverKey);
  let createdServer = false;
  if (server === undefined || !serverIsUsable(server, ca, names, wallClock())) {
    server = await issueServerCertificate(ca, names, wallClock());
    await writePair(files.serverCert, files.serverKey, server);
    createdServer = true;
  }
  return {
    caFile: files.caCert,
    ca,
    server,
    caFingerprint: new X509Certificate(ca.cert).fingerprint256,
    created: { ca: createdCa, server: createdServer },
  };
}

/** A self-signed CA for development, valid ten years from `nowInMs`. */
export async function createCertificateAuthority(nowInMs: number = Date.now()): Promise<KeyAndCertificate> {
  const keys = await newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serialNumber();
  setValidity(cert, nowInMs, CA_LIFETIME_IN_DAYS);
  const subject = [
    { name: 'commonName', value: `storelink development CA ${randomBytes(4).toString('hex')}` },
    { name: 'organizationName', value: 'storelink emulators (development only)' },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: keys.privateKeyPem };
}

/** A server certificate for `names` (host names and IP addresses) signed by `ca`. */
export async function issueServerCertificate(ca: KeyAndCertificate, names: readonly string[], nowInMs: number = Date.now()): Promise<KeyAndCertificate> {
  if (names.length === 0) throw new TypeError('issueServerCertificate: at least one name is required');
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const caKey = forge.pki.privateKeyFromPem(toPkcs1Pem(ca.key));
  const keys = await newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serialNumber();
  setValidity(cert, nowInMs, SERVER_LIFETIME_IN_DAYS);
  cert.setSubject([{ name: 'commonName', value: names[0]! }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: names.map((name) => (isIP(name) === 0 ? { type: 2, value: name } : { type: 7, ip: name })) },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: keys.privateKeyPem };
}

/**
 * Reads a certificate and key given as files (`--tls-cert`, `--tls-key`): FILE_NOT_FOUND or FILE_UNREADABLE naming
 * the file when one cannot be read, is not PEM of the right kind, or the key does not belong to the certificate.
 */
export async function readCertificateFiles(files: { certFile: string; keyFile: string }): Promise<KeyAndCertificate> {
  const cert = await readTextFile(files.certFile, 'certificate');
  const key = await readTextFile(files.keyFile, 'private key');
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (cause) {
    throw new StorelinkError('FILE_UNREADABLE', `${files.certFile}: not a PEM certificate (${(cause as Error).message})`, { cause });
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (cause) {
    throw new StorelinkError('FILE_UNREADABLE', `${files.keyFile}: not a PEM private key (${(cause as Error).message})`, { cause });
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new StorelinkError('FILE_UNREADABLE', `${files.keyFile}: this private key does not belong to the certificate in ${files.certFile}`);
  }
  return { cert, key };
}

// ---------------------------------------------------------------- checks

function caIsUsable(ca: KeyAndCertificate, nowInMs: number): boolean {
  try {
    const certificate = new X509Certificate(ca.cert);
    return certificate.ca && certificate.checkPrivateKey(createPrivateKey(ca.key)) && Date.parse(certificate.validTo) - nowInMs > RENEW_BEFORE_IN_DAYS * DAY_IN_MS;
  } catch {
    return false;
  }
}

function serverIsUsable(server: KeyAndCertificate, ca: KeyAndCertificate, names: readonly string[], nowInMs: number): boolean {
  try {
    const certificate = new X509Certificate(server.cert);
    const issuer = new X509Certificate(ca.cert);
    if (!certificate.verify(issuer.publicKey) || !certificate.checkPrivateKey(createPrivateKey(server.key))) return false;
    if (Date.parse(certificate.validTo) - nowInMs <= RENEW_BEFORE_IN_DAYS * DAY_IN_MS) return false;
    if (Date.parse(certificate.validFrom) > nowInMs) return false;
    return names.every((name) => (isIP(name) === 0 ? certificate.checkHost(name) !== undefined : certificate.checkIP(name) !== undefined));
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- helpers

function uniqueNames(names: readonly string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const raw of names) {
    const name = raw.replace(/^\[|\]$/g, '').toLowerCase();
    if (name.length === 0 || name === '0.0.0.0' || name === '::' || seen.has(name)) continue;
    seen.add(name);
    out.push(name);
  }
  return out;
}

async function newKeyPair(): Promise<{ publicKey: forge.pki.rsa.PublicKey; privateKey: forge.pki.rsa.PrivateKey; privateKeyPem: string }> {
  const pair = await generateKeyPair('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return {
    publicKey: forge.pki.publicKeyFromPem(pair.publicKey),
    privateKey: forge.pki.privateKeyFromPem(toPkcs1Pem(pair.privateKey)),
    privateKeyPem: pair.privateKey,
  };
}

/** node-forge reads RSA keys as PKCS#1 PEM; node:crypto converts whatever form the key file holds. */
function toPkcs1Pem(key: string): string {
  return createPrivateKey(key).export({ type: 'pkcs1', format: 'pem' }).toString();
}

function serialNumber(): string {
  // 16 bytes, positive (high bit clear) and with a non-zero first byte: DER wants the shortest encoding, and OpenSSL
  // refuses a certificate whose serial starts with a zero byte ("illegal padding").
  const bytes = randomBytes(16);
  bytes[0] = 0x40 | (bytes[0]! & 0x3f);
  return bytes.toString('hex');
}

function setValidity(cert: forge.pki.Certificate, nowInMs: number, days: number): void {
  cert.validity.notBefore = new Date(nowInMs - BACKDATE_IN_MS);
  cert.validity.notAfter = new Date(nowInMs + days * DAY_IN_MS);
}

async function readPair(certFile: string, keyFile: string): Promise<KeyAndCertificate | undefined> {
  try {
    return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
  } catch {
    return undefined;
  }
}

/** Writes through a temporary file, keys readable by their owner only. */
async function writePair(certFile: string, keyFile: string, pair: KeyAndCertificate): Promise<void> {
  await writeAtomically(keyFile, pair.key, 0o600);
  await writeAtomically(certFile, pair.cert, 0o644);
}

async function writeAtomically(file: string, text: string, mode: number): Promise<void> {
  const temporary = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temporary, text, { mode });
  await chmod(temporary, mode);
  await rename(temporary, file);
}

async function readTextFile(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    const notFound = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new StorelinkError(notFound ? 'FILE_NOT_FOUND' : 'FILE_UNREADABLE', `${file}: ${notFound ? `no such ${what} file` : `cannot read the ${what}: ${(cause as Error).message}`}`, {
      cause,
    });
  }
}

/** SHA-256 fingerprint of a PEM certificate, `AA:BB:…`. */
export function certificateFingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}
