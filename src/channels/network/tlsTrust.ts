/**
 * The extra certificate authority a side trusts (`tls.caFile`), on top of Node's own roots and NODE_EXTRA_CA_CERTS.
 * Node's `ca` option replaces its trust store instead of adding to it, so the list handed to a socket is the bundled
 * roots, the NODE_EXTRA_CA_CERTS file (which Node leaves out whenever `ca` is given) and the extra file: a corporate
 * proxy's CA must not make Azure's own certificates untrusted.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { rootCertificates } from 'node:tls';

export interface TlsTrustOptions {
  /** A PEM file of one or more CA certificates to trust besides the usual ones. */
  caFile?: string;
}

/** Far more than any CA bundle; a larger file is not a certificate file. */
const MAX_CA_FILE_BYTES = 1024 * 1024;

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function readPemCertificates(file: string, where: string): string[] {
  let size: number;
  try {
    size = statSync(file).size;
  } catch (cause) {
    throw new TypeError(`${where}: cannot read ${file}: ${(cause as Error).message}`, { cause });
  }
  if (size > MAX_CA_FILE_BYTES) throw new TypeError(`${where}: ${file} is ${size} bytes, more than a CA file can be (${MAX_CA_FILE_BYTES})`);
  const text = readFileSync(file, 'utf8');
  const certificates = text.match(PEM_CERTIFICATE) ?? [];
  if (certificates.length === 0) throw new TypeError(`${where}: ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  for (const [index, pem] of certificates.entries()) {
    try {
      new X509Certificate(pem);
    } catch (cause) {
      throw new TypeError(`${where}: certificate ${index + 1} of ${file} does not parse: ${(cause as Error).message}`, { cause });
    }
  }
  return certificates;
}

/**
 * The `ca` list for sockets that must also trust `caFile`; undefined without one (Node's defaults then apply,
 * NODE_EXTRA_CA_CERTS included). Reads the files now, so a wrong path fails at start-up, not at the first connection.
 */
export function trustedCertificates(options: TlsTrustOptions | undefined, env: Readonly<Record<string, string | undefined>> = process.env): string[] | undefined {
  const caFile = options?.caFile;
  if (caFile === undefined) return undefined;
  if (typeof caFile !== 'string' || caFile.length === 0) throw new TypeError('tls.caFile must be the path of a PEM file');
  const extra = readPemCertificates(caFile, 'tls.caFile');
  const fromEnvironment = env.NODE_EXTRA_CA_CERTS;
  let inherited: string[] = [];
  if (fromEnvironment !== undefined && fromEnvironment.length > 0) {
    try {
      inherited = readPemCertificates(fromEnvironment, 'NODE_EXTRA_CA_CERTS');
    } catch {
      // Node itself only warns about an unreadable NODE_EXTRA_CA_CERTS; do the same by leaving it out.
      inherited = [];
    }
  }
  return [...rootCertificates, ...inherited, ...extra];
}
