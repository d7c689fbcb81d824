import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DATA_DIR_LOCK_FILE, lockDataDir } from '../../src/store/dataDirLock.js';
import { createStoreAgent } from '../../src/store/storeAgent.js';
import { onCleanup, tempDir } from './harness.js';
import { storeSigningOptions } from '../support/signingKeys.js';

async function exitedPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await once(child, 'exit');
  return child.pid!;
}

async function lockFileBy(directory: string, pid: number, host = hostname()): Promise<void> {
  await writeFile(path.join(directory, DATA_DIR_LOCK_FILE), JSON.stringify({ pid, host, holder: 'a store agent', since: '2026-01-01T00:00:00.000Z' }));
}

describe('the data dir lock', () => {
  it('refuses a second holder while the first holds it, naming the first, and is free again once released', async () => {
    const directory = await tempDir();
    const first = await lockDataDir(directory, 'the store agent of paris-1');
    const refused = lockDataDir(directory, 'storelink outbox');
    await expect(refused).rejects.toMatchObject({ code: 'DATA_DIR_IN_USE' });
    await expect(refused).rejects.toThrow('in use by the store agent of paris-1 in this process');
    await first.release();
    await first.release();
    const second = await lockDataDir(directory, 'storelink outbox');
    await second.release();
    expect(await readdir(directory)).toEqual([]);
  });

  it('takes over a lock left by a process that is gone', async () => {
    const directory = await tempDir();
    await lockFileBy(directory, await exitedPid());
    const lock = await lockDataDir(directory, 'storelink outbox');
    onCleanup(() => lock.release());
    expect(lock.file).toBe(path.join(directory, DATA_DIR_LOCK_FILE));
  });

  it.each<[string, () => Promise<[number, string]>]>([
    ['a live process on this host', () => Promise.resolve([process.ppid, hostname()])],
    ['a process on another host', async () => [await exitedPid(), `not-${hostname()}`]],
  ])('refuses a lock held by %s', async (_name, holder) => {
    const directory = await tempDir();
    const [pid, host] = await holder();
    await lockFileBy(directory, pid, host);
    const refused = lockDataDir(directory, 'storelink outbox');
    await expect(refused).rejects.toMatchObject({ code: 'DATA_DIR_IN_USE' });
    await expect(refused).rejects.toThrow(`a store agent (pid ${pid} on ${host}`);
  });

  it('keeps a store agent from starting in a data dir someone else holds', async () => {
    const dataDir = await tempDir();
    const held = await lockDataDir(dataDir, 'storelink outbox');
    onCleanup(() => held.release());
    const agent = createStoreAgent({
      storeId: 'paris-1',
      ...storeSigningOptions('paris-1'),
      handlers: {},
      serviceBus: { connectionString: 'Endpoint=sb://127.0.0.1/;SharedAccessKeyName=k;SharedAccessKey=v' },
      dataDir,
    });
    onCleanup(() => agent.close());
    await expect(agent.start()).rejects.toMatchObject({ code: 'DATA_DIR_IN_USE', message: expect.stringContaining('storelink outbox') });
    expect(await readdir(dataDir)).toEqual([DATA_DIR_LOCK_FILE]);
  });
});
