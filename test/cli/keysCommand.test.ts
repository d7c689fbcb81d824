import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { Signer, Verifier } from '../../src/core/signing.js';

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'storelink-keys-'));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), cwd: directory });
  return { code, stdout, stderr };
}

describe('storelink keys', () => {
  it('creates an Ed25519 key pair, the private key readable by its owner only, that signs and verifies', async () => {
    const result = await run('keys', 'create', '--out', 'keys', '--id', 'cloud-2025-06');
    expect(result.code).toBe(0);
    const privateKeyFile = path.join(directory, 'keys', 'cloud-2025-06.key.pem');
    const publicKeyFile = path.join(directory, 'keys', 'cloud-2025-06.pub.pem');
    expect(result.stdout).toContain(privateKeyFile);
    expect(result.stdout).toContain('"trustedCloudKeys"');
    expect((await stat(privateKeyFile)).mode & 0o777).toBe(0o600);
    const privateKey = await readFile(privateKeyFile, 'utf8');
    expect(privateKey).toContain('BEGIN PRIVATE KEY');
    const signature = new Signer({ keyId: 'cloud-2025-06', privateKey }, 'operation', 'test').sign({ id: 'op-1' });
    expect(new Verifier({ 'cloud-2025-06': await readFile(publicKeyFile, 'utf8') }, 'operation', 'test').verify({ id: 'op-1' }, signature).valid).toBe(true);
  });

  it('never overwrites a key: the same id again fails and leaves the first key as it was', async () => {
    await run('keys', 'create', '--out', '.', '--id', 'store-paris-1');
    const before = await readFile(path.join(directory, 'store-paris-1.key.pem'), 'utf8');
    const again = await run('keys', 'create', '--out', '.', '--id', 'store-paris-1');
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists: a key id names one key for good');
    expect(await readFile(path.join(directory, 'store-paris-1.key.pem'), 'utf8')).toBe(before);
  });

  it('rotate writes the new pair and says how to roll over: trust, switch, then drop the old key', async () => {
    const result = await run('keys', 'rotate', '--out', '.', '--id', 'cloud-2025-07');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/1\. trust it[\s\S]*2\. sign with it[\s\S]*3\. once nothing signed with the old key/);
  });

  it('exits 2 for a key id that is not one', async () => {
    const result = await run('keys', 'create', '--out', '.', '--id', '../escape');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('expected a key id');
  });
});
