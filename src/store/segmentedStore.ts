/**
 * The storage under the ledger and the outbox: records kept in memory and in bounded segment files, each a lowdb
 * database whose adapter (`segmentFile.ts`) appends.
 *
 * A record added at the end is appended to the open segment as one line: its cost does not depend on the history.
 * Removing records from a segment rewrites that segment alone (temp file + rename), and a segment holds at most
 * `segmentSize` records, so that cost is bounded too. A store given `recordId` (the outbox) instead appends a removal
 * line naming the ids (segment file version 3), and rewrites (compacts) a segment only when that pays: a segment
 * left with no live record is deleted once it is no longer the one appended to, and one that is not the open segment
 * is compacted once its removed records outnumber its live ones, so a file holds at most `segmentSize` record lines
 * (the open one) or about four lines per live record (the others). Writes are group commits: every change made while a write is in
 * flight goes into the next write, so one append (and, with `fsync`, one flush to the disk) serves many callers.
 */
import { mkdir, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { Low } from 'lowdb';
import type { z } from 'zod';
import { StorelinkError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { unknownFieldsPhrase, validate } from '../core/validation.js';
import { SEGMENT_FILE_VERSION, SEGMENT_FILE_VERSION_WITH_REMOVALS, SegmentFileAdapter, SegmentFileProblem, type SegmentFile } from './segmentFile.js';

export type { SegmentFile } from './segmentFile.js';

/** One segment as its owner sees it: read-only; changes go through the store so that they get written. */
export interface Segment<T> {
  readonly number: number;
  readonly file: string;
  readonly records: readonly T[];
}

export interface SegmentedStoreOptions<T> {
  directory: string;
  /** Names the files (`<kind>-000000000001.json`) and appears in messages. */
  kind: 'ledger' | 'outbox' | 'parked';
  segmentSize: number;
  /** What every record read back from disk must be. */
  recordSchema: z.ZodType<T>;
  logger: Logger;
  /** Flush every write to the disk before it resolves (survives a power loss, not only a process crash). Default false. */
  fsync?: boolean;
  /**
   * Keep each record's JSON text after it was written, for the rewrites that removing records causes (the outbox's
   * acknowledgements). An owner that only appends passes false and saves that memory. Default true.
   */
  keepRecordText?: boolean;
  /**
   * A record's unique id: given, removing records appends a removal line instead of rewriting the segment (see
   * above). Without it removals rewrite.
   */
  recordId?: (record: T) => string;
}

/** A removal line of a version 3 segment: the records before it with these ids are gone. */
interface Removal {
  removed: string[];
}

interface StoredSegment<T extends object> extends Segment<T> {
  /** The live records. */
  records: T[];
  /**
   * The file's lines after its header, in order, as the adapter appends them: records and removals. The same array as
   * `records` for a store without `recordId`; a new array makes the next write a rewrite.
   */
  lines: (T | Removal)[];
  /** Record lines in `lines` (live or removed since). */
  recordLines: number;
  /** `lines` is a new array the next write rewrites the file with (compaction, or a file of an older version). */
  rewriting: boolean;
  readonly database: Low<SegmentFile>;
  readonly adapter: SegmentFileAdapter;
}

function isRemoval(line: unknown): line is Removal {
  if (!isPlainObject(line)) return false;
  const keys = Object.keys(line);
  return keys.length === 1 && keys[0] === 'removed' && Array.isArray(line.removed) && line.removed.every((id) => typeof id === 'string');
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((onResolve, onReject) => {
    resolve = onResolve;
    reject = onReject;
  });
  // A batch nobody waits for (its changes came from a retry after a failed write) must not crash the process.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** Directories (per kind) open in this process: two stores writing the same files would undo each other's writes. */
const openDirectories = new Set<string>();

const SEGMENT_NUMBER_WIDTH = 12;

/** The JSON text of each record, computed once: a record never changes, and a segment is rewritten many times. */
const recordJson = new WeakMap<object, string>();

/**
 * Copies a JSON value through its JSON text and freezes the copy, so that what is kept in memory is exactly what is
 * on disk (and will be after a restart), and neither the caller nor a reader can change it afterwards.
 */
export function frozenJsonCopy<T extends object>(value: T): T {
  const json = JSON.stringify(value);
  const copy = deepFreeze(JSON.parse(json) as T);
  recordJson.set(copy, json);
  return copy;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

function jsonOf(record: object): string {
  let json = recordJson.get(record);
  if (json === undefined) {
    json = JSON.stringify(record);
    recordJson.set(record, json);
  }
  return json;
}

/** The JSON text of a record, forgetting the cached copy: for records written once and never again. */
function takeJsonOf(record: object): string {
  const json = recordJson.get(record);
  if (json === undefined) return JSON.stringify(record);
  recordJson.delete(record);
  return json;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || prototype === null;
}

export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

// Option checks shared by openLedger and openOutbox.

export const DEFAULT_SEGMENT_SIZE = 1000;
const MAX_SEGMENT_SIZE = 1_000_000;

export function checkSegmentSize(value: unknown, owner: string): number {
  if (value === undefined) return DEFAULT_SEGMENT_SIZE;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_SEGMENT_SIZE) {
    throw new RangeError(`${owner}.segmentSize must be a whole number of records from 1 to ${MAX_SEGMENT_SIZE}, got ${describeValue(value)}`);
  }
  return value;
}

export function checkDirectory(value: unknown, owner: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new TypeError(`${owner}.directory must be the path of a directory (a non-empty string), got ${describeValue(value)}`);
  }
  return value;
}

export function checkLogger(value: unknown, owner: string): Logger {
  if (value === undefined) return silentLogger;
  const methods = ['debug', 'info', 'warn', 'error', 'child'] as const;
  if (typeof value !== 'object' || value === null || methods.some((name) => typeof (value as Record<string, unknown>)[name] !== 'function')) {
    throw new TypeError(`${owner}.logger must be a pino-style logger with ${methods.join(', ')} methods`);
  }
  return value as Logger;
}

export function checkOptionFields(options: unknown, owner: string, known: ReadonlySet<string>): Record<string, unknown> {
  if (!isPlainObject(options)) throw new TypeError(`${owner} must be an options object such as { directory: './data/${owner.replace(/Options$/, '').toLowerCase()}' }`);
  const unknown = Object.keys(options).filter((key) => !known.has(key));
  if (unknown.length > 0) throw new TypeError(`${owner} ${unknownFieldsPhrase(unknown, known)}`);
  return options;
}

function isErrnoException(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

/**
 * Ordered records in segment files `<kind>-<number>.json`. Records are added at the end (to the last segment, or a
 * new one when it is full); the owner may remove records from any segment or drop a whole segment. Changes are in
 * memory at once and on disk after the `commit()` that follows them resolves.
 */
export class SegmentedStore<T extends object> {
  readonly #options: SegmentedStoreOptions<T>;
  readonly #registration: string;
  readonly #segments: StoredSegment<T>[] = [];
  #nextNumber = 1;
  readonly #dirty = new Set<StoredSegment<T>>();
  readonly #doomed = new Set<StoredSegment<T>>();
  /** The batch collecting changes for the next write, and whether that write is already scheduled. */
  #nextBatch: Deferred | undefined;
  #scheduled = false;
  /** The write in progress, if any: it holds every change made before it started that is not in #dirty/#doomed. */
  #writing: Promise<void> | undefined;
  #writes = 0;
  #closing: Promise<void> | undefined;

  private constructor(options: SegmentedStoreOptions<T>, registration: string) {
    this.#options = options;
    this.#registration = registration;
  }

  /** Reads every segment of `kind` in `directory` (creating the directory if needed). */
  static async open<T extends object>(options: SegmentedStoreOptions<T>): Promise<SegmentedStore<T>> {
    const directory = path.resolve(options.directory);
    const registration = `${options.kind}\0${directory}`;
    if (openDirectories.has(registration)) {
      throw new Error(`the ${options.kind} in ${directory} is already open in this process: close it first, or share the open one`);
    }
    openDirectories.add(registration);
    const store = new SegmentedStore<T>({ ...options, directory }, registration);
    try {
      await store.#load();
      return store;
    } catch (error) {
      openDirectories.delete(registration);
      throw error;
    }
  }

  get segments(): readonly Segment<T>[] {
    return this.#segments;
  }

  /** Segment file writes since open (an append, or a rewrite of a whole segment), one per segment per group commit. */
  get writes(): number {
    return this.#writes;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  isFull(segment: Segment<T>): boolean {
    const stored = segment as StoredSegment<T>;
    return (stored.recordLines ?? segment.records.length) >= this.#options.segmentSize;
  }

  /** Adds a record after every other one. The record must not change afterwards (see `frozenJsonCopy`). */
  append(record: T): Segment<T> {
    let tail = this.#segments.at(-1);
    if (tail === undefined || this.isFull(tail)) {
      // A full segment whose records were all removed (as removal lines) is no longer needed once another is open.
      if (tail !== undefined && tail.records.length === 0) this.dropSegment(tail);
      tail = this.#createSegment(this.#nextNumber++, []);
      this.#segments.push(tail);
    }
    tail.records.push(record);
    if (tail.lines !== tail.records) tail.lines.push(record);
    tail.recordLines += 1;
    this.#dirty.add(tail);
    return tail;
  }

  /** Removes the records `remove` picks from a segment; a segment left empty is deleted unless it is the last one. */
  removeRecords(segment: Segment<T>, remove: (record: T) => boolean): void {
    const stored = this.#stored(segment);
    const recordId = this.#options.recordId;
    if (recordId === undefined) {
      stored.records = stored.records.filter((record) => !remove(record));
      stored.lines = stored.records;
      stored.recordLines = stored.records.length;
    } else {
      const removed: string[] = [];
      stored.records = stored.records.filter((record) => {
        if (!remove(record)) return true;
        removed.push(recordId(record));
        return false;
      });
      if (removed.length === 0) return;
      const tail = this.#segments.at(-1);
      const mostlyDead = stored !== tail && stored.records.length > 0 && stored.recordLines - stored.records.length > stored.records.length;
      if (stored.rewriting || mostlyDead) {
        // Rewritten as its live records: due anyway, or mostly dead and no longer appended to (compaction).
        stored.lines = [...stored.records];
        stored.recordLines = stored.records.length;
        stored.rewriting = true;
      } else {
        stored.lines.push({ removed });
      }
    }
    // The open segment stays until it is full, even empty: appends go on there.
    if (stored.records.length === 0 && stored !== this.#segments.at(-1)) this.dropSegment(stored);
    else this.#dirty.add(stored);
  }

  /** Forgets a segment and deletes its file. */
  dropSegment(segment: Segment<T>): void {
    const stored = this.#stored(segment);
    this.#segments.splice(this.#segments.indexOf(stored), 1);
    this.#dirty.delete(stored);
    this.#doomed.add(stored);
  }

  /**
   * Resolves once every change made before the call is on disk: with the next group write, or at once when there is
   * nothing left to write. Rejects when that write fails (the changes stay in memory and are written by a later one).
   */
  commit(): Promise<void> {
    if (this.#dirty.size === 0 && this.#doomed.size === 0) return this.#writing ?? Promise.resolve();
    this.#nextBatch ??= deferred();
    this.#schedule();
    return this.#nextBatch.promise;
  }

  /** Writes what is pending, closes the files and releases the directory. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        await this.commit();
      } finally {
        await Promise.all(this.#segments.map((segment) => segment.adapter.release().catch(() => undefined)));
        openDirectories.delete(this.#registration);
      }
    })();
    return this.#closing;
  }

  #stored(segment: Segment<T>): StoredSegment<T> {
    const stored = segment as StoredSegment<T>;
    if (!this.#segments.includes(stored)) throw new Error(`${this.#options.kind} segment ${segment.file} is not part of this store`);
    return stored;
  }

  #fileName(number: number): string {
    return `${this.#options.kind}-${String(number).padStart(SEGMENT_NUMBER_WIDTH, '0')}.json`;
  }

  #createSegment(number: number, records: T[]): StoredSegment<T> {
    const file = path.join(this.#options.directory, this.#fileName(number));
    const stringify = this.#options.keepRecordText === false ? takeJsonOf : jsonOf;
    const adapter = new SegmentFileAdapter(file, { fsync: this.#options.fsync === true, stringify: (record) => stringify(record as object) });
    const database = new Low<SegmentFile>(adapter, { format: this.#format, version: this.#version, records });
    return { number, file, records, lines: records, recordLines: records.length, rewriting: false, database, adapter };
  }

  /** The version this store writes: 3 when removals are lines. */
  get #version(): 2 | 3 {
    return this.#options.recordId === undefined ? SEGMENT_FILE_VERSION : SEGMENT_FILE_VERSION_WITH_REMOVALS;
  }

  get #format(): string {
    return `storelink.${this.#options.kind}`;
  }

  async #load(): Promise<void> {
    const { directory, kind, logger } = this.#options;
    let names: string[];
    try {
      await mkdir(directory, { recursive: true });
      names = await readdir(directory);
    } catch (error) {
      throw new StorelinkError('FILE_UNREADABLE', `cannot open the ${kind} directory ${directory}: ${(error as Error).message}`, { cause: error });
    }
    // Exactly the width this store writes, so a file name always maps back to one segment number and vice versa.
    const segmentName = new RegExp(`^${kind}-(\\d{${SEGMENT_NUMBER_WIDTH}})\\.json$`);
    // A rewrite writes `.<name>.tmp` and renames it (as steno did for version 1 files); one left behind is a write
    // that never completed (nobody was told it had), so it carries nothing that was promised.
    const tempName = new RegExp(`^\\.${kind}-\\d{${SEGMENT_NUMBER_WIDTH}}\\.json\\.tmp$`);
    const numbers: number[] = [];
    for (const name of names) {
      const match = segmentName.exec(name);
      if (match !== null) numbers.push(Number(match[1]));
      else if (name.startsWith(`${kind}-`) && name.endsWith('.json')) {
        logger.warn({ file: name }, `ignoring a file that looks like a ${kind} segment but is not named like one`);
      } else if (tempName.test(name)) {
        logger.debug({ file: name }, 'removing the temp file of an unfinished write');
        await unlink(path.join(directory, name)).catch((error: unknown) => {
          if (!isErrnoException(error, 'ENOENT')) throw error;
        });
      }
    }
    numbers.sort((a, b) => a - b);
    for (const number of numbers) {
      const segment = this.#createSegment(number, []);
      await this.#readSegment(segment);
      this.#segments.push(segment);
    }
    this.#nextNumber = (numbers.at(-1) ?? 0) + 1;
    logger.debug({ segments: numbers.length, records: this.#segments.reduce((sum, s) => sum + s.records.length, 0) }, `${kind} loaded`);
  }

  /** Reads the segment's file into its records (and lines). */
  async #readSegment(segment: StoredSegment<T>): Promise<void> {
    const { kind } = this.#options;
    const unreadable = (what: string, cause?: unknown): StorelinkError =>
      new StorelinkError(
        'FILE_UNREADABLE',
        `${kind} segment ${segment.file} ${what}; it holds ${kind} history, so it is not skipped: repair or restore it, or move it aside knowingly`,
        { cause },
      );
    try {
      await segment.database.read();
    } catch (error) {
      if (error instanceof SegmentFileProblem) throw unreadable(error.message, error);
      throw unreadable(`cannot be read (${(error as Error).message})`, error);
    }
    const content = segment.database.data as unknown;
    const version = isPlainObject(content) ? content.version : undefined;
    const removals = this.#options.recordId !== undefined;
    const known = removals ? [1, SEGMENT_FILE_VERSION, SEGMENT_FILE_VERSION_WITH_REMOVALS] : [1, SEGMENT_FILE_VERSION];
    if (!isPlainObject(content) || content.format !== this.#format || !known.includes(version as number) || !Array.isArray(content.records)) {
      throw unreadable(`is not a ${this.#format} file (version ${known.join(', ').replace(/, (\d)$/, ' or $1')})`);
    }
    const lines = content.records as unknown[];
    // Versions 2 and 3 have a header line, so line i of the records is line i + 2 of the file.
    const where = (index: number): string => (version === 1 ? `records[${index}]` : `records[${index}] (line ${index + 2})`);
    // Without removal lines the records are the lines, in the array the adapter appends to.
    let records: T[] = removals ? [] : (lines as T[]);
    let recordLines = 0;
    lines.forEach((line, index) => {
      if (removals && version === SEGMENT_FILE_VERSION_WITH_REMOVALS && isRemoval(line)) {
        const gone = new Set(line.removed);
        const recordId = this.#options.recordId!;
        records = records.filter((record) => !gone.has(recordId(record)));
        return;
      }
      const checked = validate(this.#options.recordSchema, line);
      if (!checked.success) throw unreadable(`has an invalid record at ${where(index)}: it${checked.problem}`);
      deepFreeze(line);
      if (removals) records.push(line as T);
      recordLines += 1;
    });
    segment.records = records;
    segment.recordLines = recordLines;
    // Appends go on after the lines read, in the same array, unless the file is of an older version: then the first
    // write rewrites it in this store's version (a removal line must not go into a version 2 file).
    segment.lines = !removals ? records : version === SEGMENT_FILE_VERSION_WITH_REMOVALS ? (lines as (T | Removal)[]) : [...records];
    segment.rewriting = segment.lines !== lines;
    if (segment.adapter.tornBytes > 0) {
      // A write cut short by a crash: its records were never acknowledged, so they are not missed.
      this.#options.logger.warn({ file: segment.file, bytes: segment.adapter.tornBytes }, `cutting off the torn last line of a ${kind} segment (a write interrupted by a crash)`);
      try {
        await segment.adapter.repair();
      } catch (error) {
        throw unreadable(`ends with a torn line that cannot be cut off (${(error as Error).message})`, error);
      }
    }
  }

  #schedule(): void {
    if (this.#writing !== undefined || this.#scheduled) return;
    this.#scheduled = true;
    // setImmediate rather than a microtask: callers woken by the same I/O phase all get into this write.
    setImmediate(() => {
      this.#scheduled = false;
      void this.#writeBatch();
    });
  }

  async #writeBatch(): Promise<void> {
    const batch = this.#nextBatch;
    this.#nextBatch = undefined;
    // Oldest segment first: a crash part-way leaves older records written and newer ones not, never the reverse,
    // so what survives is always a prefix of what was added.
    const work = [...this.#dirty, ...this.#doomed].sort((a, b) => a.number - b.number);
    const kept = new Set(this.#dirty);
    this.#dirty.clear();
    this.#doomed.clear();
    const done = new Set<StoredSegment<T>>();
    const writing = (async () => {
      for (const segment of work) {
        // The adapter takes the records as they are when the write starts; later ones go with the next write.
        if (kept.has(segment)) await this.#write(segment);
        else await this.#delete(segment);
        done.add(segment);
      }
      // Only the open segment is appended to: the others need no open file.
      const tail = this.#segments.at(-1);
      for (const segment of work) if (segment !== tail && kept.has(segment)) await segment.adapter.release();
    })();
    this.#writing = writing;
    try {
      await writing;
      batch?.resolve();
    } catch (error) {
      for (const segment of work) {
        if (done.has(segment)) continue;
        if (kept.has(segment)) {
          if (this.#segments.includes(segment)) this.#dirty.add(segment);
        } else this.#doomed.add(segment);
      }
      this.#options.logger.warn({ err: error }, `${this.#options.kind} write failed; the changes stay in memory for the next write`);
      batch?.reject(error);
    } finally {
      this.#writing = undefined;
      if (this.#nextBatch !== undefined) this.#schedule();
    }
  }

  async #write(segment: StoredSegment<T>): Promise<void> {
    segment.database.data = { format: this.#format, version: this.#version, records: segment.lines };
    // From here the adapter appends to this array: later removals are lines again.
    segment.rewriting = false;
    try {
      await segment.database.write();
    } catch (error) {
      throw new Error(`could not write ${this.#options.kind} segment ${segment.file}: ${(error as Error).message}`, { cause: error });
    }
    this.#writes++;
  }

  async #delete(segment: StoredSegment<T>): Promise<void> {
    try {
      await segment.adapter.delete();
    } catch (error) {
      throw new Error(`could not delete ${this.#options.kind} segment ${segment.file}: ${(error as Error).message}`, { cause: error });
    }
  }
}
