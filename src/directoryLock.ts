/**
 * One process at a time in a directory: the store agent's data dir (`storelink.lock`) and each cloud instance's folder
 * (`cloud.lock`) are claimed with a lock file naming its holder (pid, host, who, since).
 *
 * - The file is created with its content in one step (a temp file hard-linked into place), so a reader never sees a
 *   half-written lock, and an unreadable one is never a claim in progress: it is refused and named for an operator.
 * - A lock left by a process that is gone (killed, crashed) on this host is taken over.
 * - One held by a live process, by another host (whose processes cannot be checked from here), or by this process
 *   itself (a second claim from the same process) is refused with DATA_DIR_IN_USE.
 */
import { randomUUID } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { StorelinkError } from './core/errors.js';

export interface DirectoryLock {
  readonly file: string;
  /** Removes the lock file. Idempotent. */
  release(): Promise<void>;
}

export interface DirectoryLockOptions {
  /** The lock file's name inside the directory. */
  fileName: string;
  /** Who claims it, as the refusal names it to the next claimant (e.g. "the store agent of paris-1"). */
  holder: string;
  /** The refusal's message, given where the directory is and who holds it. */
  inUse(directory: string, heldBy: string, file: string): string;
  now?: () => number;
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

/** Claims `directory` (created if missing), or rejects with DATA_DIR_IN_USE naming who holds it. */
export async function lockDirectory(directory: string, options: DirectoryLockOptions): Promise<DirectoryLock> {
  const resolved = path.resolve(directory);
  const file = path.join(resolved, options.fileName);
  const inUse = (by: string): StorelinkError => new StorelinkError('DATA_DIR_IN_USE', options.inUse(resolved, by, file));
  const holderHere = heldHere.get(file);
  if (holderHere !== undefined) throw inUse(`${holderHere} in this process (pid ${process.pid})`);
  try {
    await mkdir(resolved, { recursive: true });
  } catch (error) {
    throw new StorelinkError('FILE_UNREADABLE', `cannot create ${resolved}: ${(error as Error).message}`, { cause: error });
  }
  const content: LockContent = { pid: process.pid, host: hostname(), holder: options.holder, since: new Date((options.now ?? Date.now)()).toISOString() };
  const temp = path.join(resolved, `.${options.fileName}.${randomUUID()}.tmp`);
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
  heldHere.set(file, options.holder);
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
