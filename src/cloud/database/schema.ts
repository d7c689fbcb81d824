/** The tables storelink keeps in PostgreSQL, as Kysely sees them (migrations.ts makes them). */
import type { ColumnType, Generated, JSONColumnType } from 'kysely';

/** A timestamptz: written as a Date, read as one. */
type Instant = ColumnType<Date, Date, Date>;

export interface OperationRecordTable {
  id: string;
  store_id: string;
  type: string;
  latency: string;
  status: string;
  channel: string | null;
  fallback: string | null;
  created_at: Instant | null;
  expires_at: Instant | null;
  payload_bytes: number | null;
  instance_id: string;
  published_at: Instant;
  delivered_at: Instant | null;
  /** The delivery as the publish returned it (outcome word, attempts, rejection, failure, cached age), without its reply. */
  delivery: JSONColumnType<Record<string, unknown>, string, string> | null;
  outcome: JSONColumnType<Record<string, unknown>, string, string> | null;
  outcome_at: Instant | null;
  late_outcomes: Generated<number>;
  duration_ms: number | null;
}

export interface DatabaseSchema {
  storelink_operation: OperationRecordTable;
}
