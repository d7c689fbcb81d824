import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Connection strings for the samples: the environment's, or those of `storelink emulator` on its default ports with
 * the emulators' published development key.
 */
export const SERVICE_BUS =
  process.env['STORELINK_SERVICEBUS'] ??
  'Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true';

export const RELAY =
  process.env['STORELINK_RELAY'] ??
  'Endpoint=sb://127.0.0.1:9352;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true';

/**
 * The samples' signing keys, made once with `storelink keys create` (see click-and-collect/README.md step 0) in
 * `.storelink/keys/` at the project root: the cloud signs operations with `cloud-sample`, store paris-1 signs what it
 * sends with `store-paris-1`. Never checked in: a private key stays where it was made.
 */
const KEYS_DIR = fileURLToPath(new URL('../.storelink/keys/', import.meta.url));

function keyFile(name: string): string {
  const file = path.join(KEYS_DIR, name);
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: create the samples' keys first (samples/click-and-collect/README.md, step 0)`);
  }
  return readFileSync(file, 'utf8');
}

/** What the sample cloud passes createDispatcher: its key, and store paris-1's public key. */
export function sampleCloudKeys(): { signing: { keyId: string; privateKey: string }; paris1PublicKeys: Record<string, string> } {
  return {
    signing: { keyId: 'cloud-sample', privateKey: keyFile('cloud-sample.key.pem') },
    paris1PublicKeys: { 'store-paris-1': keyFile('store-paris-1.pub.pem') },
  };
}
