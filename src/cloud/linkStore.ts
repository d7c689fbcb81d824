/**
 * Where the dispatcher keeps each store link's persisted chart snapshot, the chart that wrote it, and when the link
 * entered its current state (stale store announcements are judged by it).
 *
 * On disk: `links.json`, every link at the last compaction, and `links.journal`, one JSON line per link change since.
 * Bursts of changes share one append of the links that changed (the registry hands over a link only when what a
 * restart needs changed, see storeLinks.ts), so a write costs what changed, not the whole file: at 100,000 links, a
 * trip appends one line of about 400 bytes where it used to rewrite 40 MB. Once the journal outgrows the base file
 * (and at least COMPACT_AFTER_BYTES), the next write compacts: the whole set is written to a temporary file, synced,
 * and renamed over `links.json`, then the journal is emptied; each byte is rewritten at most once per journal's worth.
 *
 * A crash never leaves a half-written snapshot: the base file is only ever replaced by rename; the journal is only
 * appended to, so a crash mid-append tears its last line at most, which opening ignores. Both name a generation: the
 * journal's first line is the generation of the base it follows, and a compaction writes the base with the next one
 * before it empties the journal, so a crash between the two leaves a journal that opening knows to be already in the
 * base. Opening a store with a journal compacts it at once, so later appends never follow a torn line.
 */
import { appendFile, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

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

export interface LinkStore {
  get(storeId: string): PersistedLink | undefined;
  set(storeId: string, link: PersistedLink): void;
  delete(storeId: string): void;
  /** Resolves when everything set so far is on disk. */
  flush(): Promise<void>;
  /** Writes to the file (or the memory store) so far: what tests and benchmarks count. */
  readonly writeCount: number;
  /** Bytes written to disk so far (journal appends and compactions). */
  readonly bytesWritten: number;
}

/**
 * Writes wait this long for more changes: a burst of link changes (a relay outage trips many links) shares one append.
 * A link's state is the breaker's memory, not an operation's: a crash loses at most this much of it, and `flush()`
 * (on close) writes at once.
 */
export const LINK_WRITE_DELAY_IN_MS = 1_000;

/** The journal is compacted into the base file once it is larger than the base file and at least this large. */
export const COMPACT_AFTER_BYTES = 1024 * 1024;

export interface LinkStoreFileOptions {
  writeDelayInMs?: number;
  /** Default COMPACT_AFTER_BYTES. */
  compactAfterBytes?: number;
}

const BASE_FILE = 'links.json';
const JOURNAL_FILE = 'links.journal';
const TEMPORARY_FILE = '.links.json.tmp';

/** A journal line: a link's whole persisted state, or its removal. The first line is `{ generation }`. */
type JournalLine = { s: string; l: PersistedLink } | { s: string; d: 1 };

interface BaseFile {
  /** Absent in files written before the journal: generation 0. */
  generation?: number;
  links: Record<string, PersistedLink>;
}

async function readIfThere(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Applies the journal's whole lines in order, if it follows the base of `generation`; a torn last line (a crash
 * mid-append) ends it. Returns whether it followed that base.
 */
function replay(links: Map<string, PersistedLink>, journal: string, generation: number): boolean {
  const end = journal.lastIndexOf('\n');
  if (end < 0) return false;
  const [header, ...lines] = journal.slice(0, end).split('\n');
  try {
    if ((JSON.parse(header!) as { generation?: unknown }).generation !== generation) return false;
  } catch {
    return false;
  }
  for (const text of lines) {
    let line: JournalLine;
    try {
      line = JSON.parse(text) as JournalLine;
    } catch {
      // Lines that end in a newline were written whole; this cannot happen short of a damaged disk: stop here.
      return true;
    }
    if ('d' in line) links.delete(line.s);
    else links.set(line.s, line.l);
  }
  return true;
}

/** In memory when `directory` is undefined. A number for `options` is the write delay (the older signature). */
export async function openLinkStore(directory: string | undefined, options: LinkStoreFileOptions | number = {}): Promise<LinkStore> {
  const { writeDelayInMs = LINK_WRITE_DELAY_IN_MS, compactAfterBytes = COMPACT_AFTER_BYTES } = typeof options === 'number' ? { writeDelayInMs: options } : options;
  const links = new Map<string, PersistedLink>();
  const changed = new Set<string>();
  let writeCount = 0;
  let bytesWritten = 0;
  let baseBytes = 0;
  let journalBytes = 0;
  let generation = 0;

  const base = directory === undefined ? undefined : path.join(directory, BASE_FILE);
  const journal = directory === undefined ? undefined : path.join(directory, JOURNAL_FILE);
  const temporary = directory === undefined ? undefined : path.join(directory, TEMPORARY_FILE);

  const header = () => `${JSON.stringify({ generation })}\n`;
  /** The whole set into the base file of the next generation, by rename, then a journal that follows it. */
  const compact = async (): Promise<void> => {
    const next = generation + 1;
    const text = JSON.stringify({ generation: next, links: Object.fromEntries(links) } satisfies BaseFile);
    const handle = await open(temporary!, 'w');
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary!, base!);
    generation = next;
    await writeFile(journal!, header());
    baseBytes = Buffer.byteLength(text);
    journalBytes = 0;
    bytesWritten += baseBytes;
  };

  if (directory !== undefined) {
    await mkdir(directory, { recursive: true });
    // A temporary file left by a crash mid-compaction was never renamed: the base file is the older, whole one.
    await rm(temporary!, { force: true });
    const baseText = await readIfThere(base!);
    if (baseText !== undefined) {
      baseBytes = Buffer.byteLength(baseText);
      const parsed = JSON.parse(baseText) as BaseFile;
      generation = parsed.generation ?? 0;
      for (const [storeId, link] of Object.entries(parsed.links)) links.set(storeId, link);
    }
    const journalText = await readIfThere(journal!);
    if (journalText !== undefined && replay(links, journalText, generation)) await compact();
    // A journal of another generation is already in the base (a crash between a compaction's rename and its reset).
    else await writeFile(journal!, header());
  }

  const write = async (): Promise<void> => {
    const storeIds = [...changed];
    changed.clear();
    try {
      await writeChanges(storeIds);
    } catch (error) {
      // Written again with the next change (or flush): nothing set is dropped by a failed write.
      for (const storeId of storeIds) changed.add(storeId);
      throw error;
    }
    writeCount += 1;
  };
  const writeChanges = async (storeIds: readonly string[]): Promise<void> => {
    if (directory !== undefined) {
      if (journalBytes > Math.max(baseBytes, compactAfterBytes)) {
        await compact();
      } else {
        let text = '';
        for (const storeId of storeIds) {
          const link = links.get(storeId);
          text += `${JSON.stringify(link === undefined ? { s: storeId, d: 1 } : { s: storeId, l: link })}\n`;
        }
        await appendFile(journal!, text, 'utf8');
        const bytes = Buffer.byteLength(text);
        journalBytes += bytes;
        bytesWritten += bytes;
      }
    }
  };

  let pending: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  const schedule = (): Promise<void> => {
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
        while (changed.size > 0) await write();
      } finally {
        pending = undefined;
      }
    })();
    return pending;
  };
  const note = (storeId: string): void => {
    changed.add(storeId);
    if (pending !== undefined) return;
    // A failed write is reported by flush(); the next change writes again. One handler per write, not per change.
    schedule().catch(() => undefined);
  };
  return {
    get: (storeId) => links.get(storeId),
    set: (storeId, link) => {
      links.set(storeId, link);
      note(storeId);
    },
    delete: (storeId) => {
      if (!links.delete(storeId)) return;
      note(storeId);
    },
    flush: () => {
      wake?.();
      return pending ?? Promise.resolve();
    },
    get writeCount() {
      return writeCount;
    },
    get bytesWritten() {
      return bytesWritten;
    },
  };
}
