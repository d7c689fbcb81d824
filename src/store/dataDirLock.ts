/**
 * One process at a time in a store's data dir. The store agent holds `storelink.lock` while it runs, and the
 * `storelink outbox` commands take it while they edit the outbox, so neither rewrites files the other has in memory.
 *
 * The lock file names its holder (pid, host). A lock left by a process that is gone (killed, crashed) is taken over;
 * one held by a live process, or by another host (whose processes cannot be checked from here), is refused with
 * DATA_DIR_IN_USE. The file is created with its content in one step (a temp file linked into place), so a reader
 * never sees a half-written lock.
 */
import { randomUUID } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { StorelinkError } from '../core/errors.js';

export const DATA_DIR_LOCK_FILE = 'storelink.lock';

export interface DataDirLock {
  readonly file: string;
  /** Removes the lock file. Idempotent. */
  release(): Promise<void>;
}

interface LockContent {
  pid: number;
  host: string;
  holder: string;
  since: string;
}

/** Lock files this process holds: its own pid in a lock file does not make it stale while the lock is held here. */
const heldHere = new Map<string, string>();

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return !isErrno(error, 'ESRCH');
  }
}

async function readLock(file: string): Promise<LockContent | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
  try {
    const content = JSON.parse(text) as Partial<LockContent>;
    if (typeof content.pid === 'number' && typeof content.host === 'string') {
      return { pid: content.pid, host: content.host, holder: String(content.holder ?? '?'), since: String(content.since ?? '?') };
    }
  } catch {
    // Not ours, or damaged: reported below as held by an unknown process.
  }
  return { pid: -1, host: '?', holder: 'an unreadable lock file', since: '?' };
}

/**
 * Takes the lock of `dataDir` (created if missing) for `holder` (e.g. "store agent"), or rejects with DATA_DIR_IN_USE
 * naming who holds it.
 */
export async function lockDataDir(dataDir: string, holder: string, now: () => number = Date.now): Promise<DataDirLock> {
  const directory = path.resolve(dataDir);
  const file = path.join(directory, DATA_DIR_LOCK_FILE);
  const inUse = (by: string): StorelinkError =>
    new StorelinkError('DATA_DIR_IN_USE', `the data dir ${directory} is in use by ${by}; stop it first (or, if it is gone, remove ${file})`);
  const holderHere = heldHere.get(file);
  if (holderHere !== undefined) throw inUse(`${holderHere} in this process (pid ${process.pid})`);
  try {
    await mkdir(directory, { recursive: true });
  } catch (error) {
    throw new StorelinkError('FILE_UNREADABLE', `cannot create the data dir ${directory}: ${(error as Error).message}`, { cause: error });
  }
  const content: LockContent = { pid: process.pid, host: hostname(), holder, since: new Date(now()).toISOString() };
  const temp = path.join(directory, `.${DATA_DIR_LOCK_FILE}.${randomUUID()}.tmp`);
  await writeFile(temp, `${JSON.stringify(content)}\n`, 'utf8');
  try {
    // A few tries: after removing a lock whose holder is gone, or one that vanished while being read.
    for (let attempt = 1; ; attempt += 1) {
      try {
        await link(temp, file);
        break;
      } catch (error) {
        if (!isErrno(error, 'EEXIST')) throw error;
      }
      const current = await readLock(file);
      const describe = current === undefined ? 'another process' : `${current.holder} (pid ${current.pid} on ${current.host}, since ${current.since})`;
      if (attempt >= 3) throw inUse(describe);
      if (current === undefined) continue;
      const stale = current.host === content.host && current.pid > 0 && (current.pid === process.pid || !isAlive(current.pid));
      if (!stale) throw inUse(describe);
      await unlink(file).catch((error: unknown) => {
        if (!isErrno(error, 'ENOENT')) throw error;
      });
    }
  } finally {
    await unlink(temp).catch(() => undefined);
  }
  heldHere.set(file, holder);
  let released: Promise<void> | undefined;
  return {
    file,
    release: () =>
      (released ??= (async () => {
        heldHere.delete(file);
        await unlink(file).catch((error: unknown) => {
          if (!isErrno(error, 'ENOENT')) throw error;
        });
      })()),
  };
}
