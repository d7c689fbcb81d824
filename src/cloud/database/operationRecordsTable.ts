/**
 * The SQL of the operation records: every write is an upsert by operation id, so the three facts about an operation
 * (its publish, its delivery, its outcome) may land in any order, from any instance, and twice, and still leave one
 * row that says the same. The first outcome recorded is kept; each outcome that came late counts once.
 */
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { DatabaseSchema, OperationRecordTable } from './schema.js';

export type OperationRow = Selectable<OperationRecordTable>;

interface Identity {
  id: string;
  storeId: string;
  type: string;
  latency: string;
  instanceId: string;
  /** When the row is made by this write: the publish's instant, or the best known stand-in. */
  publishedAt: Date;
}

export type OperationWrite =
  | (Identity & { kind: 'published'; createdAt: Date; expiresAt: Date; payloadBytes: number })
  | (Identity & {
      kind: 'delivered';
      status: string;
      channel: string | null;
      fallback: string | null;
      deliveredAt: Date | null;
      delivery: Record<string, unknown>;
      durationMs: number;
    })
  | (Identity & { kind: 'outcome'; status: string; channel: string; outcome: Record<string, unknown>; outcomeAt: Date; late: boolean });

type Db = Kysely<DatabaseSchema> | Transaction<DatabaseSchema>;

const existing = (column: keyof OperationRecordTable) => sql.ref(`storelink_operation.${column}`);
/** The value this write brought, typed as the column it goes to. */
const excluded = <T>(column: keyof OperationRecordTable) => sql<T>`${sql.ref(`excluded.${column}`)}`;
/** The write's status, unless an outcome is already recorded: the outcome's status is final. */
const statusUnlessFinal = sql<string>`case when ${existing('outcome')} is null then ${excluded<string>('status')} else ${existing('status')} end`;

type WriteOf<K extends OperationWrite['kind']> = Extract<OperationWrite, { kind: K }>;

function identityOf(write: OperationWrite) {
  return {
    id: write.id,
    store_id: write.storeId,
    type: write.type,
    latency: write.latency,
    instance_id: write.instanceId,
    published_at: write.publishedAt,
  };
}

/** One upsert statement for writes of one kind, each about a different operation (a row is touched once). */
async function applyKind(db: Db, kind: OperationWrite['kind'], writes: readonly OperationWrite[]): Promise<void> {
  const insert = db.insertInto('storelink_operation');
  if (kind === 'published') {
    await insert
      .values(
        (writes as WriteOf<'published'>[]).map((write) => ({
          ...identityOf(write),
          status: 'in-flight',
          created_at: write.createdAt,
          expires_at: write.expiresAt,
          payload_bytes: write.payloadBytes,
        })),
      )
      .onConflict((conflict) =>
        conflict.column('id').doUpdateSet({
          // A resend of an open operation is in flight again, published by the instance resending it.
          status: statusUnlessFinal,
          instance_id: excluded<string>('instance_id'),
          latency: excluded<string>('latency'),
          created_at: sql<Date>`coalesce(${existing('created_at')}, ${excluded('created_at')})`,
          expires_at: excluded<Date>('expires_at'),
          payload_bytes: sql<number>`coalesce(${existing('payload_bytes')}, ${excluded('payload_bytes')})`,
        }),
      )
      .execute();
    return;
  }
  if (kind === 'delivered') {
    await insert
      .values(
        (writes as WriteOf<'delivered'>[]).map((write) => ({
          ...identityOf(write),
          status: write.status,
          channel: write.channel,
          fallback: write.fallback,
          delivered_at: write.deliveredAt,
          delivery: JSON.stringify(write.delivery),
          duration_ms: write.durationMs,
        })),
      )
      .onConflict((conflict) =>
        conflict.column('id').doUpdateSet({
          status: statusUnlessFinal,
          channel: excluded<string | null>('channel'),
          fallback: excluded<string | null>('fallback'),
          delivered_at: sql<Date>`coalesce(${excluded('delivered_at')}, ${existing('delivered_at')})`,
          delivery: excluded<string>('delivery'),
          duration_ms: excluded<number>('duration_ms'),
        }),
      )
      .execute();
    return;
  }
  await insert
    .values(
      (writes as WriteOf<'outcome'>[]).map((write) => ({
        ...identityOf(write),
        status: write.status,
        channel: write.channel,
        outcome: JSON.stringify(write.outcome),
        outcome_at: write.outcomeAt,
        late_outcomes: write.late ? 1 : 0,
      })),
    )
    .onConflict((conflict) =>
      conflict.column('id').doUpdateSet({
        status: statusUnlessFinal,
        outcome: sql<string>`coalesce(${existing('outcome')}, ${excluded('outcome')})`,
        outcome_at: sql<Date>`coalesce(${existing('outcome_at')}, ${excluded('outcome_at')})`,
        channel: sql<string>`coalesce(${existing('channel')}, ${excluded('channel')})`,
        late_outcomes: sql<number>`${existing('late_outcomes')} + ${excluded('late_outcomes')}`,
      }),
    )
    .execute();
}

const KINDS: readonly OperationWrite['kind'][] = ['published', 'delivered', 'outcome'];

/**
 * The writes cut, in order, into runs in which no operation appears twice. Writes about different operations touch
 * different rows, so within a run they commute: a run is written as at most one statement per kind. A second write
 * about an operation starts the next run, so each row still sees its writes in the order they were made.
 */
export function runsOf(writes: readonly OperationWrite[]): OperationWrite[][] {
  const runs: OperationWrite[][] = [];
  let run: OperationWrite[] = [];
  let ids = new Set<string>();
  for (const write of writes) {
    if (ids.has(write.id)) {
      runs.push(run);
      run = [];
      ids = new Set();
    }
    run.push(write);
    ids.add(write.id);
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/**
 * Applies the writes as if one after the other, in one transaction: all of them or none. A batch costs a few statements
 * (one per kind and run), not one round trip per write.
 */
export async function applyOperationWrites(db: Kysely<DatabaseSchema>, writes: readonly OperationWrite[]): Promise<void> {
  if (writes.length === 1) return applyKind(db, writes[0]!.kind, writes);
  await db.transaction().execute(async (transaction) => {
    for (const run of runsOf(writes)) {
      for (const kind of KINDS) {
        const ofKind = run.filter((write) => write.kind === kind);
        if (ofKind.length > 0) await applyKind(transaction, kind, ofKind);
      }
    }
  });
}

export async function findOperation(db: Kysely<DatabaseSchema>, id: string): Promise<OperationRow | undefined> {
  return db.selectFrom('storelink_operation').selectAll().where('id', '=', id).executeTakeFirst();
}

export interface StoreOperationsQuery {
  storeId: string;
  /** Only operations published at or after this instant. */
  since?: Date;
  /** Only operations strictly older, in (published_at, id) order, than this one: the previous page's last. */
  before?: { publishedAt: Date; id: string };
  limit: number;
}

/** A store's operations, newest first (ties broken by id), at most `limit`. */
export async function storeOperations(db: Kysely<DatabaseSchema>, query: StoreOperationsQuery): Promise<OperationRow[]> {
  let select = db.selectFrom('storelink_operation').selectAll().where('store_id', '=', query.storeId);
  if (query.since !== undefined) select = select.where('published_at', '>=', query.since);
  if (query.before !== undefined) {
    const { publishedAt, id } = query.before;
    select = select.where(sql<boolean>`(published_at, id) < (${publishedAt}, ${id}::uuid)`);
  }
  return select.orderBy('published_at', 'desc').orderBy('id', 'desc').limit(query.limit).execute();
}

/** Deletes up to `batch` operations published before `olderThan`, oldest first; says how many went. */
export async function pruneOperations(db: Kysely<DatabaseSchema>, olderThan: Date, batch: number): Promise<number> {
  const result = await db
    .deleteFrom('storelink_operation')
    .where('id', 'in', (select) => select.selectFrom('storelink_operation').select('id').where('published_at', '<', olderThan).orderBy('published_at').limit(batch))
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
