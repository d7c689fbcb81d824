/**
 * Where the dispatcher keeps each store link's persisted chart snapshot, the chart that wrote it, and when the link
 * entered its current state (stale store announcements are judged by it). One lowdb JSON file; bursts of changes share
 * one atomic write.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Low, Memory } from 'lowdb';
import { JSONFile } from 'lowdb/node';

/** Which chart wrote a snapshot: its id and a hash of its structure. */
export interface ChartIdentity {
  id: string;
  hash: string;
}

export interface PersistedLink {
  /** xstate's persisted snapshot (JSON). */
  snapshot: unknown;
  /** Absent in files written before charts were named: such a snapshot is treated as another chart's. */
  chart?: ChartIdentity;
  enteredAtInMs: number;
}

interface LinkFile {
  links: Record<string, PersistedLink>;
}

export interface LinkStore {
  get(storeId: string): PersistedLink | undefined;
  set(storeId: string, link: PersistedLink): void;
  delete(storeId: string): void;
  /** Resolves when everything set so far is on disk. */
  flush(): Promise<void>;
  /** Writes to the file (or the memory store) so far: what tests and benchmarks count. */
  readonly writeCount: number;
}

/**
 * Writes wait this long for more changes: every call, probe and announcement changes some link, and each write
 * serialises the whole file, so at most one write a second whatever the traffic. A link's state is the breaker's
 * memory, not an operation's: a crash loses at most this much of it, and `flush()` (on close) writes at once.
 */
export const LINK_WRITE_DELAY_IN_MS = 1_000;

/** In memory when `directory` is undefined. */
export async function openLinkStore(directory: string | undefined, writeDelayInMs = LINK_WRITE_DELAY_IN_MS): Promise<LinkStore> {
  let db: Low<LinkFile>;
  if (directory === undefined) {
    db = new Low<LinkFile>(new Memory<LinkFile>(), { links: {} });
  } else {
    await mkdir(directory, { recursive: true });
    db = new Low<LinkFile>(new JSONFile<LinkFile>(path.join(directory, 'links.json')), { links: {} });
  }
  await db.read();
  let pending: Promise<void> | undefined;
  let dirty = false;
  let writeCount = 0;
  let wake: (() => void) | undefined;
  const schedule = (): Promise<void> => {
    dirty = true;
    pending ??= (async () => {
      // Let the changes of the next moment land before writing once for all of them.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, writeDelayInMs);
        timer.unref();
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
      try {
        while (dirty) {
          dirty = false;
          await db.write();
          writeCount += 1;
        }
      } finally {
        pending = undefined;
      }
    })();
    return pending;
  };
  const changed = (): void => {
    if (pending !== undefined) {
      dirty = true;
      return;
    }
    // A failed write is reported by flush(); the next change writes everything again. One handler per write, not per
    // change: a burst of changes would otherwise hold a promise each until the write.
    schedule().catch(() => undefined);
  };
  return {
    get: (storeId) => (Object.hasOwn(db.data.links, storeId) ? db.data.links[storeId] : undefined),
    set: (storeId, link) => {
      db.data.links[storeId] = link;
      changed();
    },
    delete: (storeId) => {
      if (!Object.hasOwn(db.data.links, storeId)) return;
      delete db.data.links[storeId];
      changed();
    },
    flush: () => {
      wake?.();
      return pending ?? Promise.resolve();
    },
    get writeCount() {
      return writeCount;
    },
  };
}
