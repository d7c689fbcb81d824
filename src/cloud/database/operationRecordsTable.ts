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

async function apply(db: Db, write: OperationWrite): Promise<void> {
  const identity = {
    id: write.id,
    store_id: write.storeId,
    type: write.type,
    latency: write.latency,
    instance_id: write.instanceId,
    published_at: write.publishedAt,
  };
  const insert = db.insertInto('storelink_operation');
  if (write.kind === 'published') {
    await insert
      .values({ ...identity, status: 'in-flight', created_at: write.createdAt, expires_at: write.expiresAt, payload_bytes: write.payloadBytes })
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
  if (write.kind === 'delivered') {
    await insert
      .values({
        ...identity,
        status: write.status,
        channel: write.channel,
        fallback: write.fallback,
        delivered_at: write.deliveredAt,
        delivery: JSON.stringify(write.delivery),
        duration_ms: write.durationMs,
      })
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
    .values({
      ...identity,
      status: write.status,
      channel: write.channel,
      outcome: JSON.stringify(write.outcome),
      outcome_at: write.outcomeAt,
      late_outcomes: write.late ? 1 : 0,
    })
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

/** Applies the writes in order, in one transaction: all of them or none. */
export async function applyOperationWrites(db: Kysely<DatabaseSchema>, writes: readonly OperationWrite[]): Promise<void> {
  if (writes.length === 1) return apply(db, writes[0]!);
  await db.transaction().execute(async (transaction) => {
    for (const write of writes) await apply(transaction, write);
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
