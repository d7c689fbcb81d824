/**
 * The ledger: the store's durable memory of the operations it executed and what came of them, so that a redelivered
 * operation (the queue redelivers, the cloud retries, the relay and the queue may both carry it) gets its first
 * result again instead of running twice.
 */
import type { Logger } from '../core/logger.js';
import { StorelinkError } from '../core/errors.js';
import { ledgerEntrySchema, type LedgerEntry } from '../core/ledgerEntry.js';
import { validate } from '../core/validation.js';
import {
  SegmentedStore,
  checkDirectory,
  checkLogger,
  checkOptionFields,
  checkSegmentSize,
  describeValue,
  frozenJsonCopy,
  type Segment,
} from './segmentedStore.js';

export type { LedgerEntry } from '../core/ledgerEntry.js';

export interface LedgerOptions {
  directory: string;
  /** Entries per segment file: a record appends a line to the open one; pruning drops whole segments. Default 1000. */
  segmentSize?: number;
  /**
   * Flush each write to the disk (fdatasync) before `record()` resolves, so that an entry survives a power loss, not
   * only a crash of the process. One flush serves every entry recorded while the previous write ran. Default false.
   */
  fsync?: boolean;
  /** How long an entry is kept after its operation expired. Default 24 h. */
  retentionAfterExpiryInMs?: number;
  /** The clock, in ms since the epoch (tests inject one). Default `Date.now`. */
  now?: () => number;
  logger?: Logger;
}

export interface Ledger {
  /** The entry for an operation id, from memory. Sees an entry as soon as `record()` is called. */
  get(id: string): LedgerEntry | undefined;
  /**
   * Records an entry; resolves once it is on disk, with the entry as stored (a frozen copy). First write wins: for an
   * id already recorded it writes nothing and resolves with the existing entry (once that one is on disk).
   */
  record(entry: LedgerEntry): Promise<LedgerEntry>;
  /** Entries known (recorded and not yet pruned). */
  readonly size: number;
  /** Segment file writes (appends) since open: one write serves every entry recorded while the previous one was running. */
  readonly writes: number;
  /** Waits for pending writes, then releases the files. Idempotent; `record()` rejects afterwards. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export const DEFAULT_RETENTION_AFTER_EXPIRY_IN_MS = 24 * 60 * 60 * 1000;

interface LedgerSettings {
  directory: string;
  segmentSize: number;
  retentionAfterExpiryInMs: number;
  now: () => number;
  logger: Logger;
  fsync: boolean;
}

const OPTION_FIELDS: ReadonlySet<string> = new Set(['directory', 'segmentSize', 'fsync', 'retentionAfterExpiryInMs', 'now', 'logger']);

function ledgerSettings(options: unknown): LedgerSettings {
  const fields = checkOptionFields(options, 'LedgerOptions', OPTION_FIELDS);
  const retention = fields.retentionAfterExpiryInMs ?? DEFAULT_RETENTION_AFTER_EXPIRY_IN_MS;
  if (typeof retention !== 'number' || !Number.isFinite(retention) || retention < 0) {
    throw new RangeError(`LedgerOptions.retentionAfterExpiryInMs must be a finite number of milliseconds, 0 or more, got ${describeValue(retention)}`);
  }
  if (fields.fsync !== undefined && typeof fields.fsync !== 'boolean') {
    throw new TypeError(`LedgerOptions.fsync must be true or false, got ${describeValue(fields.fsync)}`);
  }
  if (fields.now !== undefined && typeof fields.now !== 'function') {
    throw new TypeError(`LedgerOptions.now must be a function returning ms since the epoch, got ${describeValue(fields.now)}`);
  }
  return {
    directory: checkDirectory(fields.directory, 'LedgerOptions'),
    segmentSize: checkSegmentSize(fields.segmentSize, 'LedgerOptions'),
    retentionAfterExpiryInMs: retention,
    now: (fields.now as (() => number) | undefined) ?? Date.now,
    logger: checkLogger(fields.logger, 'LedgerOptions'),
    fsync: fields.fsync === true,
  };
}

class SegmentedLedger implements Ledger {
  readonly #store: SegmentedStore<LedgerEntry>;
  readonly #settings: LedgerSettings;
  readonly #logger: Logger;
  readonly #entries = new Map<string, LedgerEntry>();
  /** Per segment, the latest time (ms) at which one of its entries stops being needed. */
  readonly #forgettableAt = new Map<Segment<LedgerEntry>, number>();

  constructor(store: SegmentedStore<LedgerEntry>, settings: LedgerSettings, logger: Logger) {
    this.#store = store;
    this.#settings = settings;
    this.#logger = logger;
    for (const segment of store.segments) {
      for (const entry of segment.records) {
        if (this.#entries.has(entry.id)) {
          // First write wins on disk too; a second entry can only come from a hand-edited or merged directory.
          logger.warn({ operationId: entry.id, file: segment.file }, 'ledger holds a second entry for an operation; keeping the first');
          continue;
        }
        this.#entries.set(entry.id, entry);
        this.#noteForgettable(segment, entry);
      }
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  get writes(): number {
    return this.#store.writes;
  }

  get(id: string): LedgerEntry | undefined {
    if (typeof id !== 'string') throw new TypeError(`ledger.get(id) takes an operation id string, got ${describeValue(id)}`);
    return this.#entries.get(id);
  }

  async record(entry: LedgerEntry): Promise<LedgerEntry> {
    const checked = validate(ledgerEntrySchema, entry);
    if (!checked.success) throw new TypeError(`ledger entry${checked.problem}`);
    if (this.#store.closed) throw new StorelinkError('STORE_UNAVAILABLE', 'the ledger is closed: record() is not possible after close()');
    const existing = this.#entries.get(entry.id);
    if (existing !== undefined) {
      await this.#store.commit();
      return existing;
    }
    // The parsed entry has the schema's field order, so the files read the same whatever order the caller used.
    const stored = frozenJsonCopy(checked.data);
    this.#entries.set(stored.id, stored);
    const segment = this.#store.append(stored);
    this.#noteForgettable(segment, stored);
    if (this.#store.isFull(segment)) this.prune();
    await this.#store.commit();
    return stored;
  }

  /** Drops every full segment whose entries are all past expiry + retention (the last, open segment too at open). */
  prune(includeOpenSegment = false): void {
    const now = this.#settings.now();
    const segments = this.#store.segments;
    for (const segment of [...segments]) {
      const open = segment === segments.at(-1) && !this.#store.isFull(segment);
      if (open && !includeOpenSegment) continue;
      const forgettableAt = this.#forgettableAt.get(segment) ?? Number.NEGATIVE_INFINITY;
      if (!(now > forgettableAt)) continue;
      for (const entry of segment.records) {
        if (this.#entries.get(entry.id) === entry) this.#entries.delete(entry.id);
      }
      this.#forgettableAt.delete(segment);
      this.#store.dropSegment(segment);
      this.#logger.info({ file: segment.file, entries: segment.records.length }, 'pruned a ledger segment past expiry and retention');
    }
  }

  /** Writes what was pruned at open before anyone relies on it. */
  async settle(): Promise<void> {
    await this.#store.commit();
  }

  close(): Promise<void> {
    return this.#store.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #noteForgettable(segment: Segment<LedgerEntry>, entry: LedgerEntry): void {
    const at = Date.parse(entry.expiresAt) + this.#settings.retentionAfterExpiryInMs;
    this.#forgettableAt.set(segment, Math.max(this.#forgettableAt.get(segment) ?? Number.NEGATIVE_INFINITY, at));
  }
}

/** Opens (creating if needed) the ledger in `options.directory`, loading its index and pruning what may be forgotten. */
export async function openLedger(options: LedgerOptions): Promise<Ledger> {
  const settings = ledgerSettings(options);
  const logger = settings.logger.child({ component: 'ledger' });
  const store = await SegmentedStore.open<LedgerEntry>({
    directory: settings.directory,
    kind: 'ledger',
    segmentSize: settings.segmentSize,
    recordSchema: ledgerEntrySchema,
    logger,
    fsync: settings.fsync,
    // Entries are appended once and never rewritten (pruning drops whole files): no need to keep their text.
    keepRecordText: false,
  });
  const ledger = new SegmentedLedger(store, settings, logger);
  try {
    ledger.prune(true);
    await ledger.settle();
  } catch (error) {
    await store.close().catch(() => undefined);
    throw error;
  }
  return ledger;
}
