/** `storelink keys create|rotate`: Ed25519 key pairs for signing operations (the cloud) and store messages (a store). */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { keyId } from './optionParsers.js';
import type { CliIo } from './program.js';
import { writeKeyPair, type WrittenKeyPair } from './signingKeyFiles.js';

function written(pair: WrittenKeyPair): string {
  return [
    `key ${pair.keyId}:`,
    `  private key ${pair.privateKeyFile} (mode 0600: keep it on the machine that signs, never copy it elsewhere)`,
    `  public key  ${pair.publicKeyFile} (give it to the other side)`,
    '',
  ].join('\n');
}

const SIGNING = [
  'Where the files go:',
  '  a cloud key:  the cloud config names it in "signing": { "keyId", "privateKeyFile" }; each store config lists its',
  '                public key in "trustedCloudKeys": { "<keyId>": "<file>.pub.pem" }.',
  '  a store key:  the store config names it in "signing"; the cloud config lists its public key in that store\'s',
  '                "publicKeys": { "<keyId>": "<file>.pub.pem" }.',
  '',
].join('\n');

const ROLLING = [
  'To roll over to this key, in this order:',
  '  1. trust it: add its public key, beside the old one, where the other side lists trusted keys (a store\'s',
  '     "trustedCloudKeys" for a cloud key; the cloud\'s "publicKeys" of the store for a store key), and restart that side;',
  '  2. sign with it: point "signing" at the new key id and private key file, and restart the signing side;',
  '  3. once nothing signed with the old key can still arrive (the longest time to live of a queued operation, or the',
  '     time a store\'s outbox may hold a message), remove the old public key from the trusted set and delete the old',
  '     private key.',
  '',
].join('\n');

export function addKeysCommand(program: Command, io: CliIo): void {
  const keys = program.command('keys').description('create and rotate the Ed25519 keys that sign operations and store messages');
  keys
    .command('create')
    .description('write a new key pair: <id>.key.pem (0600) and <id>.pub.pem')
    .requiredOption('--out <dir>', 'directory to write the key files to (created if missing)')
    .requiredOption('--id <keyId>', 'the key id (1 to 64 letters, digits, ".", "_" or "-"), e.g. cloud-2025-06 or store-paris-1-a', keyId)
    .action(async (options: { out: string; id: string }) => {
      const directory = path.resolve(io.cwd, options.out);
      await mkdir(directory, { recursive: true });
      io.stdout(written(await writeKeyPair(directory, options.id)) + SIGNING);
    });
  keys
    .command('rotate')
    .description('write the key pair that replaces a key (a new id), and explain how to roll over to it')
    .requiredOption('--out <dir>', 'directory to write the key files to (created if missing)')
    .requiredOption('--id <newKeyId>', 'the new key id: never reuse an old one', keyId)
    .action(async (options: { out: string; id: string }) => {
      const directory = path.resolve(io.cwd, options.out);
      await mkdir(directory, { recursive: true });
      io.stdout(written(await writeKeyPair(directory, options.id)) + ROLLING);
    });
}
