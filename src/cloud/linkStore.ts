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
}

/** In memory when `directory` is undefined. */
export async function openLinkStore(directory: string | undefined): Promise<LinkStore> {
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
  const schedule = (): Promise<void> => {
    dirty = true;
    pending ??= (async () => {
      // Let a burst of changes land before writing once for all of them.
      await new Promise((resolve) => setImmediate(resolve));
      while (dirty) {
        dirty = false;
        await db.write();
      }
      pending = undefined;
    })();
    return pending;
  };
  return {
    get: (storeId) => (Object.hasOwn(db.data.links, storeId) ? db.data.links[storeId] : undefined),
    set: (storeId, link) => {
      db.data.links[storeId] = link;
      // A failed write is reported by flush(); the next change writes everything again.
      schedule().catch(() => undefined);
    },
    delete: (storeId) => {
      if (!Object.hasOwn(db.data.links, storeId)) return;
      delete db.data.links[storeId];
      // A failed write is reported by flush(); the next change writes everything again.
      schedule().catch(() => undefined);
    },
    flush: () => pending ?? Promise.resolve(),
  };
}
