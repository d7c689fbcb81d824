/** Temp directories and closeables for the store tests: each test gets its own directory, removed afterwards. */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';
import type { LedgerEntry } from '../../src/store/ledger.js';
import type { OutboxEvent } from '../../src/store/outbox.js';

const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  // Last opened, first closed: the directories go after what was open in them.
  while (cleanups.length > 0) await cleanups.pop()!();
});

export function onCleanup(cleanup: () => Promise<unknown>): void {
  cleanups.push(cleanup);
}

export async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-store-'));
  onCleanup(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

/** Registers `thing` to be closed after the test and returns it. */
export function closing<T extends { close(): Promise<void> }>(thing: T): T {
  onCleanup(() => thing.close().catch(() => undefined));
  return thing;
}

export const HOUR = 60 * 60 * 1000;
/**
 * The instant the fixtures are dated from: the clock the code under test reads when a test injects none (`Date.now`),
 * whole seconds, read once when the file loads. A fixed date here once turned main red: once the ledger's retention
 * had passed since that date, opening a ledger pruned every fixture. A test that moves time injects `now: () => …`
 * starting from T0.
 */
export const T0 = Math.floor(Date.now() / 1000) * 1000;

export function ledgerEntry(overrides: Partial<LedgerEntry> = {}): LedgerEntry {
  return {
    id: randomUUID(),
    storeId: 'store-042',
    type: 'clickAndCollect.order',
    outcome: 'done',
    result: { accepted: true, lines: [{ sku: 'A-1', quantity: 2 }] },
    channel: 'queue',
    executedAt: new Date(T0).toISOString(),
    expiresAt: new Date(T0 + HOUR).toISOString(),
    ...overrides,
  };
}

export function outboxEvent(overrides: Partial<OutboxEvent> = {}): OutboxEvent {
  return {
    id: randomUUID(),
    kind: 'event',
    type: 'sale.recorded',
    storeId: 'store-042',
    body: { till: 3, total: 12.5 },
    createdAt: new Date(T0).toISOString(),
    ...overrides,
  };
}
