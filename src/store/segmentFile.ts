/**
 * One segment file as a lowdb adapter that appends.
 *
 * lowdb's own file adapters rewrite the whole file on every `write()`: a ledger record then costs in proportion to its
 * segment. This adapter keeps lowdb's contract (`read()` returns the data, `write(data)` makes the file hold it) but
 * writes only what changed: when the records it is given are the same array it last wrote, grown at the end, it
 * appends the new records as lines; otherwise (records removed, or a file in the old format) it rewrites the segment
 * as a temp file renamed onto it, so a rewrite is always all or nothing.
 *
 * The format (version 2) is JSON lines: a header line `{"format":"storelink.ledger","version":2}`, then one record per
 * line. `JSON.stringify` never emits a raw newline, so a line is exactly one record. An append writes whole lines at
 * the end of what is known to be good; a crash can cut only the last line short (it has no newline), and that line
 * was never acknowledged, so reading ignores it and `repair()` cuts it off. Every other flaw is refused.
 *
 * Version 3 is version 2 whose lines may also be removals, `{"removed":["<id>",…]}`: the records with those ids that
 * come before the line are gone (the outbox's acknowledgements, appended rather than rewriting the segment). This
 * adapter writes and reads every line alike; the store that owns the file tells removals from records.
 *
 * Version 1 (one JSON document `{"format","version":1,"records":[…]}`, what lowdb's DataFile wrote) is still read;
 * the first write to such a segment rewrites it as version 2 (or 3).
 */
import { writeSync } from 'node:fs';
import { open, readFile, rename, truncate, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Adapter } from 'lowdb';

/** What one segment file holds. `format` names its owner so a ledger file is never read as an outbox file. */
export interface SegmentFile {
  format: string;
  version: 1 | 2 | 3;
  records: unknown[];
}

export const SEGMENT_FILE_VERSION = 2;
/** The version whose lines may be removals as well as records (see above). */
export const SEGMENT_FILE_VERSION_WITH_REMOVALS = 3;

/** A file this adapter cannot read: the message says what is wrong with it (the caller adds which file and why it matters). */
export class SegmentFileProblem extends Error {
  override readonly name = 'SegmentFileProblem';
}

export interface SegmentFileAdapterOptions {
  /** Wait for the disk (fdatasync / fsync, and the directory after a rename) before a write resolves. */
  fsync: boolean;
  /** The JSON text of a record (the caller may cache it). */
  stringify: (record: unknown) => string;
}

const NEWLINE = 0x0a;

/** The temp file of a rewrite, named as steno (lowdb's writer) names its own, so one cleanup rule covers both. */
export function tempFileOf(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export class SegmentFileAdapter implements Adapter<SegmentFile> {
  readonly file: string;
  readonly #options: SegmentFileAdapterOptions;
  /** The records array whose first #persisted records are the file's lines; undefined when the file must be rewritten. */
  #written: unknown[] | undefined;
  #persisted = 0;
  /** Bytes of the file known to be good: appends go exactly there. */
  #size = 0;
  /** Bytes after #size that are not ours (a torn line, or what a failed append left): cut before the next append. */
  #dirtyTail = false;
  #tornBytes = 0;
  #handle: FileHandle | undefined;

  constructor(file: string, options: SegmentFileAdapterOptions) {
    this.file = file;
    this.#options = options;
  }

  /** Bytes of a torn last line found by `read()` (0 when the file ended cleanly). */
  get tornBytes(): number {
    return this.#tornBytes;
  }

  async read(): Promise<SegmentFile | null> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
    const headerEnd = bytes.indexOf(NEWLINE);
    const header = parseHeader(bytes.toString('utf8', 0, headerEnd === -1 ? bytes.length : headerEnd));
    if (header === undefined) return this.#readVersion1(bytes);
    if (headerEnd === -1) throw new SegmentFileProblem('has a version 2 header without its end of line (a file is created whole, so this is not a torn write)');
    const end = bytes.lastIndexOf(NEWLINE) + 1;
    const records: unknown[] = [];
    if (end > headerEnd + 1) {
      const lines = bytes.toString('utf8', headerEnd + 1, end - 1).split('\n');
      lines.forEach((line, index) => {
        try {
          records.push(JSON.parse(line));
        } catch (error) {
          throw new SegmentFileProblem(`has a line that is not JSON at line ${index + 2} (${(error as Error).message}), before the end of the file`);
        }
      });
    }
    this.#written = records;
    this.#persisted = records.length;
    this.#size = end;
    this.#tornBytes = bytes.length - end;
    this.#dirtyTail = this.#tornBytes > 0;
    return { format: header.format, version: header.version, records };
  }

  /** Cuts off a torn last line found by `read()`, so that the next append starts on a line of its own. */
  async repair(): Promise<void> {
    if (this.#tornBytes === 0) return;
    await this.#closeHandle();
    await truncate(this.file, this.#size);
    this.#dirtyTail = false;
  }

  async write(data: SegmentFile): Promise<void> {
    // Taken now: records pushed while this write runs belong to the next one.
    const records = data.records;
    const count = records.length;
    if (records === this.#written && count >= this.#persisted) {
      if (count > this.#persisted) await this.#append(records, count);
      return;
    }
    await this.#rewrite(data.format, data.version === 1 ? SEGMENT_FILE_VERSION : data.version, records.slice(0, count));
    this.#written = records;
    this.#persisted = count;
  }

  /** Deletes the file (a segment nobody needs any more). */
  async delete(): Promise<void> {
    await this.#closeHandle();
    try {
      await unlink(this.file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (this.#options.fsync) await syncDirectory(path.dirname(this.file));
  }

  /** Releases the open file, if any (the next append reopens it). */
  release(): Promise<void> {
    return this.#closeHandle();
  }

  async #append(records: unknown[], count: number): Promise<void> {
    const lines: string[] = [];
    for (let i = this.#persisted; i < count; i++) lines.push(this.#options.stringify(records[i]));
    const bytes = Buffer.from(`${lines.join('\n')}\n`, 'utf8');
    try {
      this.#handle ??= await open(this.file, 'r+');
      if (this.#dirtyTail) {
        await this.#handle.truncate(this.#size);
        this.#dirtyTail = false;
      }
      let written = 0;
      if (this.#options.fsync) {
        while (written < bytes.length) {
          const { bytesWritten } = await this.#handle.write(bytes, written, bytes.length - written, this.#size + written);
          written += bytesWritten;
        }
        await this.#handle.datasync();
      } else {
        // Without fsync an append only hands a few hundred bytes to the page cache, which a synchronous write does in
        // microseconds; the thread pool's round trip cost more than the write (the same durability either way).
        while (written < bytes.length) written += writeSync(this.#handle.fd, bytes, written, bytes.length - written, this.#size + written);
      }
    } catch (error) {
      // Part of the lines may be in the file: the next append cuts them and writes them again.
      this.#dirtyTail = true;
      await this.#closeHandle().catch(() => undefined);
      throw error;
    }
    this.#size += bytes.length;
    this.#persisted = count;
  }

  async #rewrite(format: string, version: 2 | 3, records: unknown[]): Promise<void> {
    const lines = [JSON.stringify({ format, version })];
    for (const record of records) lines.push(this.#options.stringify(record));
    const bytes = Buffer.from(`${lines.join('\n')}\n`, 'utf8');
    // The open handle would keep writing to the file the rename replaces.
    await this.#closeHandle();
    const temp = tempFileOf(this.file);
    const handle = await open(temp, 'w');
    try {
      await handle.writeFile(bytes);
      if (this.#options.fsync) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, this.file);
    if (this.#options.fsync) await syncDirectory(path.dirname(this.file));
    this.#size = bytes.length;
    this.#dirtyTail = false;
  }

  async #closeHandle(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }

  /** The whole file as one JSON document; the caller checks that it is a version 1 segment of its own format. */
  #readVersion1(bytes: Buffer): SegmentFile {
    try {
      // Not #written: the first write rewrites the file in version 2.
      return JSON.parse(bytes.toString('utf8')) as SegmentFile;
    } catch (error) {
      throw new SegmentFileProblem(`cannot be read as JSON (${(error as Error).message})`);
    }
  }
}

function parseHeader(line: string): { format: string; version: 2 | 3 } | undefined {
  // Cheap test first: a version 1 file's first line is the start of one JSON document, never a complete object.
  if (!line.startsWith('{"format":')) return undefined;
  let header: unknown;
  try {
    header = JSON.parse(line);
  } catch {
    return undefined;
  }
  const { version } = isPlainObject(header) ? header : {};
  if (!isPlainObject(header) || (version !== SEGMENT_FILE_VERSION && version !== SEGMENT_FILE_VERSION_WITH_REMOVALS) || typeof header.format !== 'string' || 'records' in header) return undefined;
  return { format: header.format, version };
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
