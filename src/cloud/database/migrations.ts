/**
 * The database's versions, in code and in order: Kysely's Migrator records each applied name in
 * `storelink_migration` and applies the missing ones at start, inside a transaction and under its PostgreSQL advisory
 * lock, so instances starting at once apply each migration once. A published migration is never edited: a change is
 * a new, higher number.
 */
import { sql, type Kysely } from 'kysely';
import type { Migration, MigrationProvider } from 'kysely/migration';

export const MIGRATION_TABLE = 'storelink_migration';
export const MIGRATION_LOCK_TABLE = 'storelink_migration_lock';

export const MIGRATIONS: Record<string, Migration> = {
  '0001_operation_records': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('storelink_operation')
        .addColumn('id', 'uuid', (column) => column.primaryKey())
        .addColumn('store_id', 'text', (column) => column.notNull())
        .addColumn('type', 'text', (column) => column.notNull())
        .addColumn('latency', 'text', (column) => column.notNull())
        .addColumn('status', 'text', (column) => column.notNull())
        .addColumn('channel', 'text')
        .addColumn('fallback', 'text')
        .addColumn('created_at', 'timestamptz')
        .addColumn('expires_at', 'timestamptz')
        .addColumn('payload_bytes', 'integer')
        .addColumn('instance_id', 'text', (column) => column.notNull())
        .addColumn('published_at', 'timestamptz', (column) => column.notNull())
        .addColumn('delivered_at', 'timestamptz')
        .addColumn('delivery', 'jsonb')
        .addColumn('outcome', 'jsonb')
        .addColumn('outcome_at', 'timestamptz')
        .addColumn('late_outcomes', 'integer', (column) => column.notNull().defaultTo(0))
        .addColumn('duration_ms', 'double precision')
        .execute();
      // A store's history, newest first, paged by (published_at, id).
      await db.schema.createIndex('storelink_operation_store_recent').on('storelink_operation').columns(['store_id', 'published_at desc', 'id desc']).execute();
      // Retention deletes the oldest first.
      await db.schema.createIndex('storelink_operation_published').on('storelink_operation').column('published_at').execute();
    },
    async down(db: Kysely<unknown>) {
      await sql`drop table storelink_operation`.execute(db);
    },
  },
};

export class CodeMigrations implements MigrationProvider {
  readonly #migrations: Record<string, Migration>;

  constructor(migrations: Record<string, Migration> = MIGRATIONS) {
    this.#migrations = migrations;
  }

  getMigrations(): Promise<Record<string, Migration>> {
    return Promise.resolve(this.#migrations);
  }
}
