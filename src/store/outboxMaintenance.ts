/**
 * The outbox as store IT sees it (`storelink outbox`): what is pending and what is parked, one entry in full, and the
 * two things to do with a parked entry (send it again, or drop it). It holds the data dir's lock while open, so it
 * never edits files a running store agent has in memory.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { StorelinkError } from '../core/errors.js';
import { lockDataDir } from './dataDirLock.js';
import { openOutbox, type OutboxEvent } from './outbox.js';

export interface OutboxMaintenanceOptions {
  /** The store's data dir, as the store agent is given it (`storelink store` reads it from its configuration). */
  dataDir: string;
  now?: () => number;
}

/** One outbox entry, without its body. */
export interface OutboxEntrySummary {
  id: string;
  state: 'pending' | 'parked';
  kind: OutboxEvent['kind'];
  type: string;
  correlationId?: string;
  createdAt: string;
  /** Bytes of the entry as a store message (UTF-8 JSON). */
  size: number;
  /** Parked entries: why (the error code and message of the send that failed) and when. */
  code?: string;
  reason?: string;
  parkedAt?: string;
}

export interface OutboxEntryDetail extends OutboxEntrySummary {
  event: OutboxEvent;
}

export interface OutboxMaintenance extends AsyncDisposable {
  readonly dataDir: string;
  /** Pending entries in the order they will be sent, then parked entries in the order they were parked. */
  list(): OutboxEntrySummary[];
  show(id: string): OutboxEntryDetail | undefined;
  /** Moves a parked entry to the end of the pending ones (see Outbox.resubmit). */
  resubmit(id: string): Promise<'resubmitted' | 'superseded' | undefined>;
  /** Deletes a parked entry; whether there was one. */
  discard(id: string): Promise<boolean>;
  /** Writes what is pending and releases the data dir. Idempotent. */
  close(): Promise<void>;
}

function summary(event: OutboxEvent, state: OutboxEntrySummary['state']): OutboxEntrySummary {
  return {
    id: event.id,
    state,
    kind: event.kind,
    type: event.type,
    ...(event.correlationId === undefined ? {} : { correlationId: event.correlationId }),
    createdAt: event.createdAt,
    size: Buffer.byteLength(JSON.stringify(event), 'utf8'),
  };
}

/** Opens the outbox of a store's data dir for maintenance; DATA_DIR_IN_USE while the store agent runs there. */
export async function openOutboxMaintenance(options: OutboxMaintenanceOptions): Promise<OutboxMaintenance> {
  const dataDir = path.resolve(options.dataDir);
  const now = options.now ?? Date.now;
  const found = await stat(dataDir).catch(() => undefined);
  if (found === undefined || !found.isDirectory()) {
    throw new StorelinkError('FILE_NOT_FOUND', `no data dir at ${dataDir}: give the dataDir of the store's configuration`);
  }
  const lock = await lockDataDir(dataDir, 'storelink outbox', now);
  let outbox;
  try {
    outbox = await openOutbox({ directory: path.join(dataDir, 'outbox'), now });
  } catch (error) {
    await lock.release();
    throw error;
  }
  const opened = outbox;
  const entries = (): OutboxEntryDetail[] => [
    ...opened.peek(opened.size).map((event) => ({ ...summary(event, 'pending'), event })),
    ...opened.parked().map((parked) => ({ ...summary(parked.event, 'parked'), code: parked.code, reason: parked.message, parkedAt: parked.parkedAt, event: parked.event })),
  ];
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      try {
        await opened.close();
      } finally {
        await lock.release();
      }
    })());
  return {
    dataDir,
    list: () => entries().map(({ event: _event, ...rest }) => rest),
    show: (id) => entries().find((entry) => entry.id === id),
    resubmit: (id) => opened.resubmit(id),
    discard: (id) => opened.discard(id),
    close,
    [Symbol.asyncDispose]: close,
  };
}
