/**
 * Where the dispatcher keeps each store link's persisted chart snapshot, and when the link entered its current state
 * (charts have no clock, so the dispatcher needs it to resume `after` timers after a restart or an eviction). One
 * lowdb JSON file; bursts of changes share one atomic write.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Low, Memory } from 'lowdb';
import { JSONFile } from 'lowdb/node';

export interface PersistedLink {
  /** xstate's persisted snapshot (JSON). */
  snapshot: unknown;
  /** The snapshot's state value, serialised: tells whether the state changed. */
  stateKey: string;
  enteredAtInMs: number;
}

interface LinkFile {
  links: Record<string, PersistedLink>;
}

export interface LinkStore {
  get(storeId: string): PersistedLink | undefined;
  set(storeId: string, link: PersistedLink): void;
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
      void schedule();
    },
    flush: () => pending ?? Promise.resolve(),
  };
}
