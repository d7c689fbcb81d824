/**
 * Signing keys for tests: generated once when the file loads (never checked in), one cloud key and one key per store
 * id, and the option fragments that hand them to createStoreAgent, createDispatcher and the store's queue.
 */
import type { KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Signer, Verifier, generateSigningKeyPair, keyPairToPem, operationSignedFields, storeMessageSignedFields, type SigningKeyPair } from '../../src/core/signing.js';
import type { Operation } from '../../src/core/operation.js';

export interface TestKey extends SigningKeyPair {
  keyId: string;
}

function testKey(keyId: string): TestKey {
  return { keyId, ...generateSigningKeyPair() };
}

/** The cloud's key: what every test dispatcher signs with and every test store trusts. */
export const CLOUD_KEY: TestKey = testKey('cloud-test');

const storeKeys = new Map<string, TestKey>();

/** The key of store `storeId` (the same one for the whole test run). */
export function storeKey(storeId: string): TestKey {
  let key = storeKeys.get(storeId);
  if (key === undefined) {
    key = testKey(`store-${storeId}`);
    storeKeys.set(storeId, key);
  }
  return key;
}

/** A key nobody trusts (same id shape as a real one), to sign forgeries with. */
export function strangerKey(keyId = 'stranger'): TestKey {
  return testKey(keyId);
}

/** The keys fragment of createStoreAgent's options for store `storeId`: its own key, and the cloud's public key. */
export function storeSigningOptions(storeId: string, cloudKeys: readonly TestKey[] = [CLOUD_KEY]): {
  signing: { keyId: string; privateKey: KeyObject };
  trustedCloudKeys: Record<string, KeyObject>;
} {
  const key = storeKey(storeId);
  return {
    signing: { keyId: key.keyId, privateKey: key.privateKey },
    trustedCloudKeys: Object.fromEntries(cloudKeys.map((cloud) => [cloud.keyId, cloud.publicKey])),
  };
}

/** The keys fragment of createDispatcher's options. */
export function dispatcherSigningOptions(key: TestKey = CLOUD_KEY): { signing: { keyId: string; privateKey: KeyObject } } {
  return { signing: { keyId: key.keyId, privateKey: key.privateKey } };
}

/** A KnownStore's `publicKeys`: the store's public key. */
export function storePublicKeys(storeId: string): { publicKeys: Record<string, KeyObject> } {
  const key = storeKey(storeId);
  return { publicKeys: { [key.keyId]: key.publicKey } };
}

/** The operation as the cloud sends it: signed (by the cloud's key unless another is given). */
export function signed<T extends Operation>(operation: T, key: TestKey = CLOUD_KEY): T {
  const { signature: _old, ...fields } = operation;
  return { ...fields, signature: new Signer(key, 'operation', 'test').sign(operationSignedFields(fields)) } as T;
}

/** Any object signed as an operation envelope would be, whatever it holds (to test checks made after the signature). */
export function signedBody<T extends object>(body: T, key: TestKey = CLOUD_KEY): T & { signature: { keyId: string; value: string } } {
  return { ...body, signature: new Signer(key, 'operation', 'test').sign(operationSignedFields(body)) };
}

/** A store message as store `storeId` (or another key) would sign it. */
export function signedStoreMessage<T extends object>(message: T, key: TestKey): T & { signature: { keyId: string; value: string } } {
  return { ...message, signature: new Signer(key, 'store-message', 'test').sign(storeMessageSignedFields(message)) };
}

/** The executor's `cloudKeys`: a verifier trusting these cloud keys (the test cloud key by default). */
export function cloudVerifier(keys: readonly TestKey[] = [CLOUD_KEY]): Verifier {
  return new Verifier(Object.fromEntries(keys.map((key) => [key.keyId, key.publicKey])), 'operation', 'test');
}

/** Writes a test key as the files `storelink keys create` writes (`<keyId>.key.pem`, `<keyId>.pub.pem`) in `directory`. */
export async function writeKeyFiles(directory: string, key: TestKey): Promise<{ keyId: string; privateKeyFile: string; publicKeyFile: string }> {
  const { privateKeyPem, publicKeyPem } = keyPairToPem(key);
  const privateKeyFile = path.join(directory, `${key.keyId}.key.pem`);
  const publicKeyFile = path.join(directory, `${key.keyId}.pub.pem`);
  await writeFile(privateKeyFile, privateKeyPem, { mode: 0o600 });
  await writeFile(publicKeyFile, publicKeyPem);
  return { keyId: key.keyId, privateKeyFile, publicKeyFile };
}

/**
 * The key files of a store configuration for store `storeId`, written in `directory`: the store's key to sign with
 * and the test cloud key to trust, as the config's `signing` and `trustedCloudKeys`.
 */
export async function storeConfigKeys(directory: string, storeId: string): Promise<{ signing: { keyId: string; privateKeyFile: string }; trustedCloudKeys: Record<string, string> }> {
  const own = await writeKeyFiles(directory, storeKey(storeId));
  const cloud = await writeKeyFiles(directory, CLOUD_KEY);
  return { signing: { keyId: own.keyId, privateKeyFile: own.privateKeyFile }, trustedCloudKeys: { [cloud.keyId]: cloud.publicKeyFile } };
}

/**
 * A store or cloud configuration with its key files written in `directory` (where the configuration file goes, so
 * the paths are relative to it): a store configuration (it has `storeId`) gets `signing` and `trustedCloudKeys`; a cloud
 * configuration gets `signing` and each store's `publicKeys`. Keys the configuration already names are kept.
 */
export async function withSigningKeys(directory: string, config: Record<string, unknown>): Promise<Record<string, unknown>> {
  const cloud = await writeKeyFiles(directory, CLOUD_KEY);
  if (typeof config['storeId'] === 'string') {
    const own = await writeKeyFiles(directory, storeKey(config['storeId']));
    return {
      signing: { keyId: own.keyId, privateKeyFile: path.basename(own.privateKeyFile) },
      trustedCloudKeys: { [cloud.keyId]: path.basename(cloud.publicKeyFile) },
      ...config,
    };
  }
  const stores = Array.isArray(config['stores']) ? (config['stores'] as Record<string, unknown>[]) : [];
  return {
    signing: { keyId: cloud.keyId, privateKeyFile: path.basename(cloud.privateKeyFile) },
    ...config,
    stores: await Promise.all(
      stores.map(async (entry) => {
        const store = await writeKeyFiles(directory, storeKey(String(entry['storeId'])));
        return { publicKeys: { [store.keyId]: path.basename(store.publicKeyFile) }, ...entry };
      }),
    ),
  };
}
