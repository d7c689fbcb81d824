import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { ApiKeyRing, parseApiKeyFile } from '../../src/cloud/apiKeys.js';

const directories: string[] = [];
afterEach(async () => {
  while (directories.length > 0) await rm(directories.pop()!, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-apikeys-cli-'));
  directories.push(directory);
  return directory;
}

async function cli(directory: string, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), cwd: directory });
  return { code, stdout, stderr };
}

describe('storelink apikeys', () => {
  it('creates keys printing each secret once, lists them without secrets, and revokes them', async () => {
    const directory = await tempDir();
    const backend = await cli(directory, 'apikeys', 'create', '--name', 'backend', '--scopes', 'read,publish');
    expect(backend.code).toBe(0);
    const presented = backend.stdout.trim();
    expect(presented).toMatch(/^backend\.[A-Za-z0-9_-]{43}$/);
    expect(backend.stderr).toContain('created API key "backend" (publish, read)');
    const dashboard = await cli(directory, 'apikeys', 'create', '--name', 'dashboard', '--scopes', 'read', '--expires-at', '9999-12-31T00:00:00Z');
    expect(dashboard.code).toBe(0);

    const file = path.join(directory, 'api-keys.json');
    const text = await readFile(file, 'utf8');
    const secret = presented.split('.')[1]!;
    expect(text).not.toContain(secret);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const ring = new ApiKeyRing(parseApiKeyFile(text, file));
    expect(ring.authenticate(presented, 0)).toEqual({ name: 'backend', scopes: ['publish', 'read'] });
    expect(ring.authenticate(dashboard.stdout.trim(), 0)).toEqual({ name: 'dashboard', scopes: ['read'] });

    const listed = await cli(directory, 'apikeys', 'list');
    expect(listed.code).toBe(0);
    const lines = listed.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+SCOPES\s+CREATED\s+EXPIRES$/);
    expect(lines[1]).toMatch(/^backend\s+publish,read\s+\d{4}-\d\d-\d\dT[\d:.]+Z\s+never$/);
    expect(lines[2]).toMatch(/^dashboard\s+read\s+\S+\s+9999-12-31T00:00:00.000Z$/);
    const json = await cli(directory, 'apikeys', 'list', '--json');
    expect((JSON.parse(json.stdout) as { keys: object[] }).keys).toEqual([
      { name: 'backend', scopes: ['publish', 'read'], createdAt: expect.any(String) },
      { name: 'dashboard', scopes: ['read'], createdAt: expect.any(String), expiresAt: '9999-12-31T00:00:00.000Z' },
    ]);
    expect(backend.stderr).not.toContain(secret);
    for (const output of [listed, json, dashboard]) expect(output.stdout + output.stderr).not.toContain(secret);
    expect(json.stdout).not.toContain('sha256');

    const revoked = await cli(directory, 'apikeys', 'revoke', '--name', 'backend');
    expect([revoked.code, revoked.stdout]).toEqual([0, 'revoked API key "backend"; 1 key left\n']);
    expect(new ApiKeyRing(parseApiKeyFile(await readFile(file, 'utf8'), file)).authenticate(presented, 0)).toBeUndefined();
    expect((await cli(directory, 'apikeys', 'list')).stdout).not.toContain('backend');
  });

  it('writes to --file, relative to the working directory', async () => {
    const directory = await tempDir();
    expect((await cli(directory, 'apikeys', 'create', '--name', 'ops', '--scopes', 'admin', '--file', 'cloud-keys.json')).code).toBe(0);
    expect(parseApiKeyFile(await readFile(path.join(directory, 'cloud-keys.json'), 'utf8'), 'cloud-keys.json').keys.map(({ name }) => name)).toEqual(['ops']);
  });

  it.each([
    [['create', '--name', 'a.b', '--scopes', 'read'], 2, 'letters, digits'],
    [['create', '--name', 'x', '--scopes', 'read,write'], 2, 'expected one of publish, read, admin'],
    [['create', '--name', 'x', '--scopes', 'read,read'], 2, 'lists a scope twice'],
    [['create', '--name', 'x', '--scopes', 'read', '--expires-at', 'soon'], 2, 'expected an ISO 8601 date'],
    [['create', '--name', 'x', '--scopes', 'read', '--expires-at', '2001-01-01'], 1, 'is not in the future'],
    [['create', '--name', 'taken', '--scopes', 'read'], 1, 'already has a key named "taken"'],
    [['revoke', '--name', 'nobody'], 1, 'has no key named "nobody"'],
  ])('refuses apikeys %j with exit %i', async (argv, expected, message) => {
    const directory = await tempDir();
    expect((await cli(directory, 'apikeys', 'create', '--name', 'taken', '--scopes', 'publish')).code).toBe(0);
    const before = await readFile(path.join(directory, 'api-keys.json'), 'utf8');
    const result = await cli(directory, 'apikeys', ...argv);
    expect(result.stderr).toContain(message);
    expect(result.code).toBe(expected);
    expect(await readFile(path.join(directory, 'api-keys.json'), 'utf8')).toBe(before);
  });

  it('refuses to list or revoke in a missing or invalid key file', async () => {
    const directory = await tempDir();
    const missing = await cli(directory, 'apikeys', 'list');
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringContaining('no such file')]);
    await writeFile(path.join(directory, 'api-keys.json'), JSON.stringify({ keys: [{ name: 'x', scopes: ['read'], hash: 'plain-secret', createdAt: '2030-01-01T00:00:00Z' }] }));
    const invalid = await cli(directory, 'apikeys', 'revoke', '--name', 'x');
    expect([invalid.code, invalid.stderr]).toEqual([1, expect.stringContaining('keys[0].hash: expected "sha256:" and 64 hex digits')]);
  });
});
