/**
 * One process at a time in a store's data dir. The store agent holds `storelink.lock` while it runs, and the
 * `storelink outbox` commands take it while they edit the outbox, so neither rewrites files the other has in memory.
 * How the lock is taken, refused and taken over: src/directoryLock.ts.
 */
import { lockDirectory, type DirectoryLock } from '../directoryLock.js';

export const DATA_DIR_LOCK_FILE = 'storelink.lock';

export type DataDirLock = DirectoryLock;

/**
 * Takes the lock of `dataDir` (created if missing) for `holder` (e.g. "store agent"), or rejects with DATA_DIR_IN_USE
 * naming who holds it.
 */
export function lockDataDir(dataDir: string, holder: string, now: () => number = Date.now): Promise<DataDirLock> {
  return lockDirectory(dataDir, {
    fileName: DATA_DIR_LOCK_FILE,
    holder,
    now,
    inUse: (directory, heldBy, file) => `the data dir ${directory} is in use by ${heldBy}; stop it first (or, if it is gone, remove ${file})`,
  });
}
