import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLOUD_LOCK_FILE, INSTANCE_ID_FILE, claimInstanceDir } from '../../src/cloud/instanceDir.js';

const made: string[] = [];
afterEach(async () => {
  await Promise.all(made.splice(0).map((directory) => rm(directory, { recursive: true, force: true })));
});

async function dataDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-instance-dir-'));
  made.push(directory);
  return directory;
}

async function exitedPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await once(child, 'exit');
  return child.pid!;
}

describe("a cloud instance's folder", () => {
  it('gives each configured instance its own locked folder and refuses a second holder of one, naming it', async () => {
    const root = await dataDir();
    const a = await claimInstanceDir({ dataDir: root, instanceId: 'a' });
    const b = await claimInstanceDir({ dataDir: root, instanceId: 'b' });
    expect(a.linkDir).toBe(path.join(root, 'instances', 'a'));
    expect(b.linkDir).toBe(path.join(root, 'instances', 'b'));
    const twin = claimInstanceDir({ dataDir: root, instanceId: 'a' });
    await expect(twin).rejects.toMatchObject({ code: 'DATA_DIR_IN_USE' });
    await expect(twin).rejects.toThrow(/cloud instance a .*give each instance its own instanceId/);
    await a.release();
    const again = await claimInstanceDir({ dataDir: root, instanceId: 'a' });
    await again.release();
    await b.release();
  });

  it('keeps a made-up instance id across restarts when none is configured', async () => {
    const root = await dataDir();
    const first = await claimInstanceDir({ dataDir: root });
    await first.release();
    const second = await claimInstanceDir({ dataDir: root });
    await second.release();
    expect(second.instanceId).toBe(first.instanceId);
    expect((await readFile(path.join(root, INSTANCE_ID_FILE), 'utf8')).trim()).toBe(first.instanceId);
  });

  it('takes over a lock left by a process that is gone', async () => {
    const root = await dataDir();
    const folder = path.join(root, 'instances', 'a');
    await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, CLOUD_LOCK_FILE), JSON.stringify({ pid: await exitedPid(), host: hostname(), holder: 'cloud instance a', since: 'earlier' }));
    const claimed = await claimInstanceDir({ dataDir: root, instanceId: 'a' });
    expect(JSON.parse(await readFile(path.join(folder, CLOUD_LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid });
    await claimed.release();
  });

  // A lock file with no readable holder is what a reader sees while another process is creating one with open+write:
  // taking it over then lets two live instances share one folder. The lock is created whole (linked into place), so
  // an unreadable one is never ours half-written: it is refused and named, for an operator to remove.
  it('refuses a lock file whose holder cannot be read instead of taking it over', async () => {
    const root = await dataDir();
    const folder = path.join(root, 'instances', 'a');
    await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, CLOUD_LOCK_FILE), '');
    const claim = claimInstanceDir({ dataDir: root, instanceId: 'a' });
    await expect(claim).rejects.toMatchObject({ code: 'DATA_DIR_IN_USE' });
    await expect(claim).rejects.toThrow(`remove ${path.join(folder, CLOUD_LOCK_FILE)}`);
  });
});
