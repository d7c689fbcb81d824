/**
 * The cloud's PostgreSQL database through Kysely: a real PostgreSQL when a connection string is given (the `pg`
 * driver's pool), else PGlite in this process, file-backed in a directory or in memory. Opening applies the missing
 * migrations (migrations.ts) before anything else may use it. Failures are StorelinkErrors: DATABASE_UNAVAILABLE when
 * the server cannot be reached or stops answering (retryable), DATABASE_MIGRATION_FAILED when the schema cannot be
 * brought up to date (not).
 */
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect } from 'kysely';
import { Migrator } from 'kysely/migration';
import { mkdir } from 'node:fs/promises';
import pg from 'pg';
import { StorelinkError, isStorelinkError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/logger.js';
import { CodeMigrations, MIGRATION_LOCK_TABLE, MIGRATION_TABLE } from './migrations.js';
import { PGliteDialect } from './pgliteDialect.js';
import type { DatabaseSchema } from './schema.js';

export interface DatabaseOptions {
  /** A PostgreSQL connection string (`postgres://user:password@host:5432/db`); without one, PGlite in this process. */
  connectionString?: string;
  /** PGlite's directory (made if missing); in memory without it. Ignored with a connection string. */
  dataDir?: string;
  /** Most connections the pool opens to a real PostgreSQL; default 10. */
  maxConnections?: number;
  logger?: Logger;
}

export interface Database extends AsyncDisposable {
  readonly db: Kysely<DatabaseSchema>;
  /** `postgres` for a server reached by connection string, `pglite` for the embedded one. */
  readonly kind: 'postgres' | 'pglite';
  /** The migrations this open applied (empty when the schema was up to date, or another instance applied them). */
  readonly appliedMigrations: readonly string[];
  close(): Promise<void>;
}

/** SQLSTATE classes and Node socket codes that mean the server is not there (or went away), not that a query was wrong. */
const UNAVAILABLE_SQLSTATE_CLASSES = ['08', '53', '57'];
const UNAVAILABLE_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE', 'EAI_AGAIN']);

/** A driver's error as the one StorelinkError code that says what it means for a caller. */
export function databaseErrorOf(error: unknown, doing: string): StorelinkError {
  if (isStorelinkError(error)) return error;
  const code = (error as { code?: unknown } | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const unavailable =
    (typeof code === 'string' && (UNAVAILABLE_SOCKET_CODES.has(code) || UNAVAILABLE_SQLSTATE_CLASSES.some((prefix) => code.length === 5 && code.startsWith(prefix)))) ||
    /Connection terminated|not (yet )?connected|closed|Client has encountered a connection error/i.test(message);
  return new StorelinkError(unavailable ? 'DATABASE_UNAVAILABLE' : 'DATABASE_QUERY_FAILED', `${doing}: ${message}`, { cause: error });
}

function maxConnectionsOf(value: number | undefined): number {
  if (value === undefined) return 10;
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`openDatabase: maxConnections must be a positive whole number, got ${value}`);
  return value;
}

export async function openDatabase(options: DatabaseOptions = {}): Promise<Database> {
  const logger = (options.logger ?? silentLogger).child({ component: 'database' });
  let db: Kysely<DatabaseSchema>;
  let kind: Database['kind'];
  let pglite: PGlite | undefined;
  if (options.connectionString !== undefined) {
    if (typeof options.connectionString !== 'string' || !/^postgres(ql)?:\/\//.test(options.connectionString)) {
      throw new StorelinkError('CONNECTION_STRING_INVALID', 'openDatabase: connectionString must be a postgres:// or postgresql:// URL');
    }
    const pool = new pg.Pool({ connectionString: options.connectionString, max: maxConnectionsOf(options.maxConnections) });
    // An idle connection the server drops emits here; without a listener it would crash the process.
    pool.on('error', (error) => logger.warn({ err: error }, 'a pooled database connection failed'));
    db = new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool }) });
    kind = 'postgres';
  } else {
    try {
      if (options.dataDir !== undefined) await mkdir(options.dataDir, { recursive: true });
      pglite = await PGlite.create(options.dataDir === undefined ? {} : { dataDir: options.dataDir });
    } catch (error) {
      throw new StorelinkError('DATABASE_UNAVAILABLE', `could not open the embedded database${options.dataDir === undefined ? '' : ` in ${options.dataDir}`}: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    }
    db = new Kysely<DatabaseSchema>({ dialect: new PGliteDialect(pglite) });
    kind = 'pglite';
  }
  const closeAll = async () => {
    await db.destroy();
    await pglite?.close();
  };
  let appliedMigrations: string[];
  try {
    appliedMigrations = await migrate(db, logger);
  } catch (error) {
    await closeAll().catch(() => undefined);
    throw error;
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => (closing ??= closeAll());
  return { db, kind, appliedMigrations, close, [Symbol.asyncDispose]: close };
}

async function migrate(db: Kysely<DatabaseSchema>, logger: Logger): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: new CodeMigrations(),
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
  const { error, results = [] } = await migrator.migrateToLatest();
  const failed = results.find((result) => result.status === 'Error');
  if (error !== undefined || failed !== undefined) {
    const asStorelink = databaseErrorOf(error, 'could not bring the database schema up to date');
    if (asStorelink.code === 'DATABASE_UNAVAILABLE') throw asStorelink;
    throw new StorelinkError('DATABASE_MIGRATION_FAILED', `migration ${failed?.migrationName ?? '(before any migration)'} failed: ${asStorelink.message}`, { cause: error });
  }
  const applied = results.filter((result) => result.status === 'Success').map((result) => result.migrationName);
  if (applied.length > 0) logger.info({ applied }, 'database migrations applied');
  return applied;
}
