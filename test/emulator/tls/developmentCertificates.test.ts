import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureDevelopmentCertificates, readCertificateFiles } from '../../../src/emulator/tls/index.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'storelink-devca-'));
  dirs.push(dir);
  return dir;
}

const DAY_IN_MS = 24 * 60 * 60 * 1000;

describe('the development CA', () => {
  it('is created on first use with keys readable by their owner only, and reused afterwards', async () => {
    const dir = await tempDir();
    const first = await ensureDevelopmentCertificates({ dir });
    expect(first.created).toEqual({ ca: true, server: true });
    expect((await stat(path.join(dir, 'ca.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(dir, 'server.key'))).mode & 0o777).toBe(0o600);
    const ca = new X509Certificate(await readFile(first.caFile));
    const server = new X509Certificate(first.server.cert);
    expect(ca.ca).toBe(true);
    expect(server.verify(ca.publicKey)).toBe(true);
    for (const host of ['localhost']) expect(server.checkHost(host)).toBe(host);
    for (const ip of ['127.0.0.1', '::1']) expect(server.checkIP(ip)).toBe(ip);

    const second = await ensureDevelopmentCertificates({ dir });
    expect(second.created).toEqual({ ca: false, server: false });
    expect(second.caFingerprint).toBe(first.caFingerprint);
    expect(second.server.cert).toBe(first.server.cert);
  });

  it('issues the server certificate again, under the same CA, when a name is asked for that it lacks', async () => {
    const dir = await tempDir();
    const first = await ensureDevelopmentCertificates({ dir });
    expect(new X509Certificate(first.server.cert).checkHost('store-server.local')).toBeUndefined();
    const second = await ensureDevelopmentCertificates({ dir, names: ['store-server.local'] });
    expect(second.created).toEqual({ ca: false, server: true });
    expect(second.caFingerprint).toBe(first.caFingerprint);
    const server = new X509Certificate(await readFile(path.join(dir, 'server.crt')));
    expect(server.checkHost('store-server.local')).toBe('store-server.local');
    expect(server.checkHost('localhost')).toBe('localhost');
  });

  it('issues the server certificate again when it is close to expiry or unreadable, keeping the CA', async () => {
    const dir = await tempDir();
    const first = await ensureDevelopmentCertificates({ dir });
    const validTo = Date.parse(new X509Certificate(first.server.cert).validTo);
    const later = await ensureDevelopmentCertificates({ dir, wallClock: () => validTo - 10 * DAY_IN_MS });
    expect(later.created).toEqual({ ca: false, server: true });
    expect(later.caFingerprint).toBe(first.caFingerprint);

    await writeFile(path.join(dir, 'server.crt'), 'not a certificate');
    const repaired = await ensureDevelopmentCertificates({ dir });
    expect(repaired.created).toEqual({ ca: false, server: true });
    expect(new X509Certificate(await readFile(path.join(dir, 'server.crt'))).verify(new X509Certificate(first.ca.cert).publicKey)).toBe(true);
  });

  it('makes a new CA (and server certificate) when the CA key is gone', async () => {
    const dir = await tempDir();
    const first = await ensureDevelopmentCertificates({ dir });
    await rm(path.join(dir, 'ca.key'));
    const second = await ensureDevelopmentCertificates({ dir });
    expect(second.created).toEqual({ ca: true, server: true });
    expect(second.caFingerprint).not.toBe(first.caFingerprint);
  });
});

describe('given certificate files', () => {
  it('are read when the key belongs to the certificate', async () => {
    const dir = await tempDir();
    await ensureDevelopmentCertificates({ dir });
    const pair = await readCertificateFiles({ certFile: path.join(dir, 'server.crt'), keyFile: path.join(dir, 'server.key') });
    expect(pair.cert).toMatch(/BEGIN CERTIFICATE/);
  });

  it.each([
    ['a missing certificate', 'missing.crt', 'server.key', 'FILE_NOT_FOUND', 'missing.crt'],
    ['a certificate that is not PEM', 'garbage.crt', 'server.key', 'FILE_UNREADABLE', 'garbage.crt'],
    ['a key that is not PEM', 'server.crt', 'garbage.crt', 'FILE_UNREADABLE', 'garbage.crt'],
    ['a key of another certificate', 'server.crt', 'ca.key', 'FILE_UNREADABLE', 'does not belong'],
  ])('refuse %s with a code and the file named', async (_label, certName, keyName, code, mentioned) => {
    const dir = await tempDir();
    await ensureDevelopmentCertificates({ dir });
    await writeFile(path.join(dir, 'garbage.crt'), 'hello');
    const failure = readCertificateFiles({ certFile: path.join(dir, certName), keyFile: path.join(dir, keyName) });
    await expect(failure).rejects.toMatchObject({ name: 'StorelinkError', code, message: expect.stringContaining(mentioned) });
  });
});
