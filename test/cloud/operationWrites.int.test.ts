/**
 * The operation records' batched writes: a batch is written in a few statements (one per kind and run of distinct
 * operations), and leaves exactly the rows that applying its writes one after the other leaves.
 */
import type { KyselyPlugin } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/cloud/database/database.js';
import { applyOperationWrites, runsOf, type OperationWrite } from '../../src/cloud/database/operationRecordsTable.js';

/** A fixed instant: nothing here reads today's date. */
const T0 = Date.parse('2031-05-04T10:00:00.000Z');

let database: Database;
beforeAll(async () => {
  database = await openDatabase();
}, 60_000);
afterAll(() => database.close());

/** Counts the statements Kysely sends (the transaction's begin and commit are not queries and are not counted). */
function counting(): { plugin: KyselyPlugin; count: () => number } {
  let statements = 0;
  return {
    plugin: {
      transformQuery: (args) => {
        statements += 1;
        return args.node;
      },
      transformResult: (args) => Promise.resolve(args.result),
    },
    count: () => statements,
  };
}

function idOf(set: string, n: number): string {
  return `00000000-0000-4000-${set}-${String(n).padStart(12, '0')}`;
}

/** The writes a busy instance queues: publishes, deliveries and outcomes interleaved, a resend, a late outcome. */
function writesFor(set: string): OperationWrite[] {
  const identity = (n: number) => ({ id: idOf(set, n), storeId: `store-${set}`, type: 'stock.query', latency: n % 2 === 0 ? 'realtime' : 'async', instanceId: 'cloud-a', publishedAt: new Date(T0 + n) });
  const published = (n: number): OperationWrite => ({ ...identity(n), kind: 'published', createdAt: new Date(T0 + n), expiresAt: new Date(T0 + n + 60_000), payloadBytes: 40 + n });
  const delivered = (n: number, status: string, channel: string | null): OperationWrite => ({
    ...identity(n),
    kind: 'delivered',
    status,
    channel,
    fallback: channel === 'queue' ? 'tripped' : null,
    deliveredAt: channel === null ? null : new Date(T0 + n + 3),
    delivery: { outcome: status === 'queued' ? 'queued' : 'delivered', n },
    durationMs: 3 + n,
  });
  const outcome = (n: number, late: boolean, what: string): OperationWrite => ({ ...identity(n), kind: 'outcome', status: 'done', channel: 'queue', outcome: { outcome: what, n }, outcomeAt: new Date(T0 + n + 9), late });
  return [
    published(1),
    published(2),
    published(3),
    delivered(1, 'done', 'relay'),
    published(4),
    delivered(2, 'queued', 'queue'),
    outcome(1, false, 'done'),
    delivered(3, 'failed', null),
    // 4 is sent again while open: in flight again, then queued, then its outcome, then one that came late.
    published(4),
    delivered(4, 'queued', 'queue'),
    outcome(4, false, 'done'),
    outcome(4, true, 'rejected'),
    outcome(2, false, 'done'),
    // An outcome before its publish landed (another instance published it).
    outcome(5, true, 'done'),
    published(5),
    delivered(5, 'queued', 'queue'),
  ];
}

async function rowsOf(set: string): Promise<Record<string, unknown>[]> {
  const rows = await database.db.selectFrom('storelink_operation').selectAll().where('store_id', '=', `store-${set}`).orderBy('id').execute();
  return rows.map(({ id, store_id: _store, ...rest }) => ({ n: Number(String(id).slice(-12)), ...rest }));
}

describe('batched operation writes', () => {
  it('cut a batch into runs in which no operation appears twice, in order', () => {
    const runs = runsOf(writesFor('8000'));
    expect(runs.flat()).toEqual(writesFor('8000'));
    for (const run of runs) expect(new Set(run.map((write) => write.id)).size).toBe(run.length);
    expect(runs.map((run) => run.length)).toEqual([3, 3, 3, 1, 1, 3, 1, 1]);
  });

  it('leave the rows that writing them one by one leaves, in a few statements instead of one per write', async () => {
    const batched = counting();
    await applyOperationWrites(database.db.withPlugin(batched.plugin), writesFor('9000'));
    for (const write of writesFor('a000')) await applyOperationWrites(database.db, [write]);
    const [batchedRows, oneByOne] = await Promise.all([rowsOf('9000'), rowsOf('a000')]);
    expect(batchedRows).toHaveLength(5);
    expect(batchedRows).toEqual(oneByOne);
    const writes = writesFor('9000').length;
    expect(batched.count()).toBeLessThan(writes);
    expect(batched.count()).toBe(runsOf(writesFor('9000')).reduce((total, run) => total + new Set(run.map((write) => write.kind)).size, 0));
  });

  it('write a batch of many distinct operations of one kind as one statement', async () => {
    const batched = counting();
    const writes = writesFor('b000').filter((write) => write.kind === 'published').filter((write, i, all) => all.findIndex((other) => other.id === write.id) === i);
    await applyOperationWrites(database.db.withPlugin(batched.plugin), writes);
    expect(batched.count()).toBe(1);
    expect(await rowsOf('b000')).toHaveLength(writes.length);
  });
});
