/**
 * The cloud's record of every operation, in its database (PostgreSQL, or the embedded PGlite), so that any instance
 * answers what became of one: its request, the channel and fallback its delivery took, the store's outcome with its
 * reply, how many outcomes came late, which instance published it, and when each of these happened.
 *
 * Writes stay off the publish path: a publish's and a delivery's record are queued and written in the background, in
 * order, batched, and retried while the database is away, so none is lost while the process stays up. An outcome's
 * record is queued the same way, but `recordOutcome` resolves only once it is durable: whoever holds the message
 * that carried the outcome completes it after that. Reads of an id with writes still queued wait for them, so this
 * instance reads its own writes.
 *
 * Statuses: `in-flight` (published, no delivery yet, or a resend under way), `queued` (on the store's queue, outcome
 * awaited), then `done`, `rejected` or `failed`. The store's outcome decides once it is known and never changes; a
 * delivery without one decides until then: a fallback's refusal (nothing sent) is `rejected`, a cached reply
 * (`served-cached`, the store never asked) is `done`, both with `outcome: null`.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { StorelinkError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { Latency, Operation } from '../core/operation.js';
import { databaseErrorOf, openDatabase, type Database, type DatabaseOptions } from './database/database.js';
import { applyOperationWrites, findOperation, pruneOperations, storeOperations, type OperationRow, type OperationWrite } from './database/operationRecordsTable.js';
import type { Delivery } from './deliver.js';
import type { OperationOutcome } from './outcomes.js';

export const DEFAULT_RETENTION_IN_MS = 7 * 24 * 60 * 60 * 1000;
export const DEFAULT_PRUNE_INTERVAL_IN_MS = 10 * 60 * 1000;
export const DEFAULT_OPERATIONS_PAGE = 100;
export const MAX_OPERATIONS_PAGE = 500;
/** Writes per transaction when the queue has a backlog. */
const WRITE_BATCH = 100;
/** Rows one prune statement deletes: small enough that it never holds the table for long. */
const PRUNE_BATCH = 1_000;
/** Statements one prune run makes at most; what is left waits for the next run. */
const PRUNE_MAX_BATCHES = 20;
const MAX_RETRY_DELAY_IN_MS = 5_000;
/** Failed attempts at close before the writes still queued are given up (and logged as lost). */
const CLOSE_ATTEMPTS = 3;

export const OPERATION_STATUSES = ['in-flight', 'queued', 'done', 'rejected', 'failed'] as const;
export type OperationStatusName = (typeof OPERATION_STATUSES)[number];

/** One operation as `GET /operations/:id` answers it. */
export interface OperationStatus {
  id: string;
  storeId: string;
  type: string;
  latency: Latency;
  status: OperationStatusName;
  /** The channel that carried it last; null when nothing was sent (a fallback's refusal, a cached reply) or not yet. */
  channel: 'relay' | 'queue' | null;
  /** Why a real-time operation did not complete on the relay (the delivery's fallbackReason). */
  fallback: string | null;
  /** The store's outcome, with its reply; null until the store gave one. */
  outcome: OperationOutcome | null;
  /** Outcomes that arrived after the publish had returned without them. */
  lateOutcomes: number;
  publishedAt: string;
  /** When the publish returned having sent it (the relay answered, or the queue took it). */
  deliveredAt: string | null;
  outcomeAt: string | null;
  /** How long the publish call took. */
  durationInMs: number | null;
  /** The instance that published it (the last one, after a resend). */
  instanceId: string;
}

export interface OperationPage {
  operations: OperationStatus[];
  /** Give it as `cursor` for the next, older page; null on the last page. */
  nextCursor: string | null;
}

export interface StoreOperationsOptions {
  /** Only operations published at or after this instant. */
  since?: Date;
  /** 1 to 500; default 100. */
  limit?: number;
  /** The previous page's nextCursor. */
  cursor?: string;
}

export interface OperationRecordsOptions {
  /** An open database (left open on close), or how to open one (closed on close). */
  database: Database | DatabaseOptions;
  /** The instance recorded as each operation's publisher; default a random id. */
  instanceId?: string;
  /** The clock records are dated by, in ms since the epoch; default `Date.now`. */
  now?: () => number;
  /** How long records are kept after their publish; default 7 days. */
  retentionInMs?: number;
  /** How often the records past retention are deleted; default 10 minutes. */
  pruneIntervalInMs?: number;
  logger?: Logger;
}

interface Queued {
  write: OperationWrite;
  durable?: { resolve: () => void; reject: (error: unknown) => void };
}

const cursorSchema = z.tuple([z.iso.datetime({ offset: true }), z.uuid()]);

function encodeCursor(row: OperationRow): string {
  return Buffer.from(JSON.stringify([row.published_at.toISOString(), row.id])).toString('base64url');
}

/** The page boundary a cursor names; OPERATION_INVALID (field `cursor`) for anything this module did not make. */
export function decodeCursor(cursor: string): { publishedAt: Date; id: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const valid = cursorSchema.safeParse(parsed);
  if (!valid.success) throw new StorelinkError('OPERATION_INVALID', 'cursor is not one this API gave (pass nextCursor as it came)', { field: 'cursor' });
  return { publishedAt: new Date(valid.data[0]), id: valid.data[1] };
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`OperationRecords: ${name} must be a positive whole number of ms, got ${value}`);
  return value;
}

function isOpenDatabase(value: Database | DatabaseOptions): value is Database {
  return 'db' in value && typeof value.close === 'function';
}

/** The status a delivery leaves when no outcome is known. */
function statusOfDelivery(delivery: Delivery): OperationStatusName {
  switch (delivery.outcome) {
    case 'delivered':
    case 'served-cached':
      return 'done';
    case 'queued':
      return 'queued';
    case 'rejected':
      return 'rejected';
    case 'failed':
      return 'failed';
  }
}

export class OperationRecords implements AsyncDisposable {
  /** The publishing instance named in new records; the dispatcher sets it once it has claimed its id at start. */
  instanceId: string;
  readonly #source: Database | DatabaseOptions;
  readonly #now: () => number;
  readonly #retentionInMs: number;
  readonly #pruneIntervalInMs: number;
  readonly #logger: Logger;
  #database: Database | undefined;
  #opening: Promise<void> | undefined;
  readonly #queue: Queued[] = [];
  /** Queued writes per operation id, so a read of that id waits for them. */
  readonly #queuedIds = new Map<string, number>();
  #draining: Promise<void> | undefined;
  #pruneTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  /** Set once close() has written the queue out: nothing is taken after that. */
  #closed = false;

  constructor(options: OperationRecordsOptions) {
    this.#source = options.database;
    this.instanceId = options.instanceId ?? randomUUID();
    this.#now = options.now ?? Date.now;
    this.#retentionInMs = positive('retentionInMs', options.retentionInMs, DEFAULT_RETENTION_IN_MS);
    this.#pruneIntervalInMs = positive('pruneIntervalInMs', options.pruneIntervalInMs, DEFAULT_PRUNE_INTERVAL_IN_MS);
    this.#logger = (options.logger ?? silentLogger).child({ component: 'operation-records' });
  }

  /** Opens the database (applying its migrations) and starts the retention prune; idempotent. */
  open(): Promise<void> {
    if (this.#closing !== undefined) return Promise.reject(new StorelinkError('DATABASE_UNAVAILABLE', 'the operation records are closed'));
    this.#opening ??= (async () => {
      const source = this.#source;
      this.#database = isOpenDatabase(source) ? source : await openDatabase({ ...source, logger: source.logger ?? this.#logger });
      this.#pruneTimer = setInterval(() => {
        this.prune().catch((error: unknown) => this.#logger.warn({ err: error }, 'could not prune the operation records'));
      }, this.#pruneIntervalInMs);
      this.#pruneTimer.unref();
      if (this.#queue.length > 0) this.#drain();
    })();
    return this.#opening;
  }

  get #db() {
    if (this.#database === undefined) throw new StorelinkError('DATABASE_UNAVAILABLE', 'the operation records are not open');
    return this.#database.db;
  }

  /** A publish is under way: recorded in the background. */
  published(operation: Operation): void {
    this.#enqueue({
      kind: 'published',
      id: operation.id,
      storeId: operation.storeId,
      type: operation.type,
      latency: operation.latency,
      instanceId: this.instanceId,
      publishedAt: new Date(this.#now()),
      createdAt: new Date(operation.createdAt),
      expiresAt: new Date(operation.expiresAt),
      payloadBytes: Buffer.byteLength(JSON.stringify(operation.payload)),
    });
  }

  /** A publish returned with its delivery: recorded in the background. */
  delivered(delivery: Delivery): void {
    const { reply, ...rest } = delivery;
    const at = new Date(this.#now());
    this.#enqueue({
      kind: 'delivered',
      id: delivery.operationId,
      storeId: delivery.storeId,
      type: delivery.type,
      latency: delivery.latency,
      instanceId: this.instanceId,
      publishedAt: at,
      status: statusOfDelivery(delivery),
      channel: delivery.channel,
      fallback: delivery.fallbackReason ?? null,
      deliveredAt: delivery.channel === null ? null : at,
      // The reply lives in the outcome (or, served from the cache, nowhere the store vouches for).
      delivery: { ...rest, hasReply: reply !== undefined },
      durationMs: delivery.durationInMs,
    });
  }

  /** Records an operation's outcome; resolves once it is durable (then the message that carried it may be completed). */
  recordOutcome(outcome: OperationOutcome): Promise<void> {
    return new Promise((resolve, reject) => {
      const at = new Date(outcome.at);
      this.#enqueue(
        {
          kind: 'outcome',
          id: outcome.operationId,
          storeId: outcome.storeId,
          type: outcome.type,
          // Made by this write only when the publish's record never landed (its instance died first): the channel is the best clue.
          latency: outcome.channel === 'relay' ? 'realtime' : 'async',
          instanceId: this.instanceId,
          publishedAt: at,
          status: outcome.outcome,
          channel: outcome.channel,
          outcome: { ...outcome },
          outcomeAt: at,
          late: outcome.late,
        },
        { resolve, reject },
      );
    });
  }

  /**
   * What a repeated publish of `id` to `storeId` should answer instead of sending: the recorded delivery when the store's
   * outcome is known (`attempts: 0`: nothing was sent again), undefined when the operation is unknown or still open
   * (then it is sent again: the store's ledger runs it once). OPERATION_ID_CONFLICT when the id is another store's.
   */
  async repeatOf(storeId: string, id: string): Promise<Delivery | undefined> {
    const row = await this.#read(id);
    if (row === undefined) return undefined;
    if (row.store_id !== storeId) {
      throw new StorelinkError('OPERATION_ID_CONFLICT', `operation ${id} was published to store "${row.store_id}": an id names one operation of one store`, { field: 'id' });
    }
    const outcome = row.outcome as unknown as OperationOutcome | null;
    if (outcome === null) return undefined;
    const base = {
      operationId: id,
      storeId,
      type: row.type,
      latency: row.latency as Latency,
      channel: outcome.channel,
      attempts: 0,
      durationInMs: 0,
    };
    if (outcome.outcome === 'done') return { ...base, outcome: 'delivered', reply: outcome.reply ?? null };
    if (outcome.outcome === 'failed' && outcome.failure !== undefined) return { ...base, outcome: 'failed', failure: outcome.failure };
    return { ...base, outcome: 'rejected', ...(outcome.rejection === undefined ? {} : { rejection: outcome.rejection }) };
  }

  /** The operation's record; OPERATION_NOT_FOUND when there is none (never published here, or past retention). */
  async get(id: string): Promise<OperationStatus> {
    const row = await this.#read(id);
    if (row === undefined) throw new StorelinkError('OPERATION_NOT_FOUND', `no operation ${id} is recorded (unknown, or older than the retention)`, { operationId: id });
    return statusOf(row);
  }

  /** A store's operations, newest first, a page at a time. */
  async forStore(storeId: string, options: StoreOperationsOptions = {}): Promise<OperationPage> {
    const limit = options.limit ?? DEFAULT_OPERATIONS_PAGE;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_OPERATIONS_PAGE) {
      throw new StorelinkError('OPERATION_INVALID', `limit must be a whole number from 1 to ${MAX_OPERATIONS_PAGE}`, { field: 'limit' });
    }
    const before = options.cursor === undefined ? undefined : decodeCursor(options.cursor);
    await this.open();
    await this.flush();
    const rows = await this.#query('could not read the operation records', () =>
      storeOperations(this.#db, {
        storeId,
        limit: limit + 1,
        ...(options.since === undefined ? {} : { since: options.since }),
        ...(before === undefined ? {} : { before }),
      }),
    );
    const page = rows.slice(0, limit);
    return { operations: page.map(statusOf), nextCursor: rows.length > limit ? encodeCursor(page[page.length - 1]!) : null };
  }

  /** Deletes the records published before the retention; says how many went. Runs on its own every pruneIntervalInMs. */
  async prune(): Promise<number> {
    await this.open();
    const olderThan = new Date(this.#now() - this.#retentionInMs);
    let pruned = 0;
    for (let batch = 0; batch < PRUNE_MAX_BATCHES; batch += 1) {
      const deleted = await this.#query('could not prune the operation records', () => pruneOperations(this.#db, olderThan, PRUNE_BATCH));
      pruned += deleted;
      if (deleted < PRUNE_BATCH) break;
    }
    if (pruned > 0) this.#logger.debug({ pruned }, 'operation records past retention deleted');
    return pruned;
  }

  /** Settles once every write queued so far is written (or given up at close). */
  async flush(): Promise<void> {
    while (this.#draining !== undefined) await this.#draining;
  }

  /** Writes what is queued, stops the prune, and closes the database if it opened it; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#pruneTimer);
      await this.#opening?.catch(() => undefined);
      if (this.#database !== undefined) {
        if (this.#queue.length > 0) this.#drain();
        await this.flush();
      }
      this.#closed = true;
      for (const queued of this.#queue.splice(0)) queued.durable?.reject(new StorelinkError('DATABASE_UNAVAILABLE', 'the operation records closed before this outcome was written'));
      if (this.#database !== undefined && !isOpenDatabase(this.#source)) await this.#database.close();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #read(id: string): Promise<OperationRow | undefined> {
    await this.open();
    if (this.#queuedIds.has(id)) await this.flush();
    return this.#query('could not read the operation record', () => findOperation(this.#db, id));
  }

  async #query<T>(doing: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw databaseErrorOf(error, doing);
    }
  }

  #enqueue(write: OperationWrite, durable?: Queued['durable']): void {
    if (this.#closed) {
      durable?.reject(new StorelinkError('DATABASE_UNAVAILABLE', 'the operation records are closed'));
      this.#logger.error({ operationId: write.id, kind: write.kind }, 'operation record not written: the records are closed');
      return;
    }
    this.#queue.push(durable === undefined ? { write } : { write, durable });
    this.#queuedIds.set(write.id, (this.#queuedIds.get(write.id) ?? 0) + 1);
    if (this.#database !== undefined) this.#drain();
  }

  #drain(): void {
    if (this.#draining !== undefined) return;
    this.#draining = (async () => {
      try {
        await this.#writeQueued();
      } finally {
        this.#draining = undefined;
        // A write queued between the last batch and here found the drain still running: write it now.
        if (this.#queue.length > 0 && this.#database !== undefined) this.#drain();
      }
    })();
  }

  #settle(written: Queued[], error?: unknown): void {
    for (const queued of written) {
      const left = (this.#queuedIds.get(queued.write.id) ?? 1) - 1;
      if (left <= 0) this.#queuedIds.delete(queued.write.id);
      else this.#queuedIds.set(queued.write.id, left);
      if (error === undefined) queued.durable?.resolve();
      else queued.durable?.reject(error);
    }
  }

  async #writeQueued(): Promise<void> {
    let failures = 0;
    while (this.#queue.length > 0) {
      const batch = this.#queue.slice(0, WRITE_BATCH);
      try {
        await this.#query('could not write the operation records', () => applyOperationWrites(this.#db, batch.map((queued) => queued.write)));
        this.#settle(this.#queue.splice(0, batch.length));
        failures = 0;
        continue;
      } catch (error) {
        failures += 1;
        const failure = databaseErrorOf(error, 'could not write the operation records');
        if (failure.code !== 'DATABASE_UNAVAILABLE') {
          // Not the database's absence: one of these writes is at fault. Write them one by one and drop only the faulty.
          await this.#writeOneByOne(batch.length);
          continue;
        }
        if (this.#closing !== undefined && failures >= CLOSE_ATTEMPTS) {
          const lost = this.#queue.splice(0);
          this.#logger.error({ err: failure, lost: lost.length }, 'closing with the database unavailable: operation records not written');
          this.#settle(lost, failure);
          return;
        }
        const delay = Math.min(MAX_RETRY_DELAY_IN_MS, 50 * 2 ** failures);
        this.#logger.warn({ err: failure, queued: this.#queue.length, retryInMs: delay }, 'operation records not written yet; retrying');
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
      }
    }
  }

  async #writeOneByOne(count: number): Promise<void> {
    for (let index = 0; index < count; index += 1) {
      const queued = this.#queue[0]!;
      try {
        await this.#query('could not write an operation record', () => applyOperationWrites(this.#db, [queued.write]));
        this.#settle(this.#queue.splice(0, 1));
      } catch (error) {
        const failure = databaseErrorOf(error, 'could not write an operation record');
        if (failure.code === 'DATABASE_UNAVAILABLE') return;
        this.#logger.error({ err: failure, operationId: queued.write.id, kind: queued.write.kind }, 'operation record refused by the database; dropped');
        this.#settle(this.#queue.splice(0, 1), failure);
      }
    }
  }
}

function statusOf(row: OperationRow): OperationStatus {
  return {
    id: row.id,
    storeId: row.store_id,
    type: row.type,
    latency: row.latency as Latency,
    status: row.status as OperationStatusName,
    channel: row.channel as OperationStatus['channel'],
    fallback: row.fallback,
    outcome: row.outcome as unknown as OperationOutcome | null,
    lateOutcomes: row.late_outcomes,
    publishedAt: row.published_at.toISOString(),
    deliveredAt: row.delivered_at?.toISOString() ?? null,
    outcomeAt: row.outcome_at?.toISOString() ?? null,
    durationInMs: row.duration_ms,
    instanceId: row.instance_id,
  };
}
