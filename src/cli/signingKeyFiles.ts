/**
 * Signing keys as the store's and the cloud's configuration files name them: a private key file (PEM, PKCS #8) with
 * its key id, and public key files (PEM, SPKI) by key id. `storelink keys create` writes such files.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { StorelinkError } from '../core/errors.js';
import { generateSigningKeyPair, keyIdSchema, keyPairToPem, type SigningKey } from '../core/signing.js';
import { readTextFile } from './readTextFile.js';

const fileSchema = z.string().min(1, 'must not be empty');

/** `{ keyId, privateKeyFile }`: the key this side signs with. */
export const signingKeyConfigSchema = z.strictObject({ keyId: keyIdSchema, privateKeyFile: fileSchema });

/** `{ [keyId]: publicKeyFile }`: the keys this side trusts, at least one. */
export const trustedKeysConfigSchema = z
  .record(keyIdSchema, fileSchema)
  .refine((keys) => Object.keys(keys).length > 0, 'must name at least one public key file ({ "<keyId>": "<file>.pub.pem" })');

export type SigningKeyConfig = z.infer<typeof signingKeyConfigSchema>;

/** Reads the private key file named in a configuration (relative to `base`). */
export async function readSigningKey(config: SigningKeyConfig, base: string): Promise<SigningKey> {
  return { keyId: config.keyId, privateKey: await readTextFile(path.resolve(base, config.privateKeyFile)) };
}

/** Reads the public key files named in a configuration (relative to `base`). */
export async function readTrustedKeys(config: Readonly<Record<string, string>>, base: string): Promise<Record<string, string>> {
  const keys: Record<string, string> = {};
  for (const [keyId, file] of Object.entries(config)) keys[keyId] = await readTextFile(path.resolve(base, file));
  return keys;
}

export interface WrittenKeyPair {
  keyId: string;
  privateKeyFile: string;
  publicKeyFile: string;
}

/** The files a key pair is written to in `directory`. */
export function keyPairFiles(directory: string, keyId: string): { privateKeyFile: string; publicKeyFile: string } {
  return { privateKeyFile: path.join(directory, `${keyId}.key.pem`), publicKeyFile: path.join(directory, `${keyId}.pub.pem`) };
}

/**
 * Writes a new Ed25519 key pair: `<keyId>.key.pem` readable by its owner only (0600), `<keyId>.pub.pem` (0644).
 * Never overwrites a file: a key id names one key for good, so a rotation takes a new id.
 */
export async function writeKeyPair(directory: string, keyId: string): Promise<WrittenKeyPair> {
  const id = keyIdSchema.safeParse(keyId);
  if (!id.success) throw new TypeError(`writeKeyPair: key id "${keyId}" ${id.error.issues[0]!.message}`);
  const { privateKeyPem, publicKeyPem } = keyPairToPem(generateSigningKeyPair());
  const files = keyPairFiles(directory, keyId);
  try {
    await writeFile(files.privateKeyFile, privateKeyPem, { mode: 0o600, flag: 'wx' });
    await writeFile(files.publicKeyFile, publicKeyPem, { mode: 0o644, flag: 'wx' });
  } catch (cause) {
    const exists = (cause as NodeJS.ErrnoException).code === 'EEXIST';
    throw new StorelinkError(
      'FILE_UNREADABLE',
      exists
        ? `${(cause as NodeJS.ErrnoException).path ?? directory} already exists: a key id names one key for good, so choose a new id (a rotation takes one too)`
        : `cannot write the key pair in ${directory}: ${(cause as Error).message}`,
      { cause },
    );
  }
  return { keyId, ...files };
}
