/**
 * A Kysely dialect over PGlite, PostgreSQL compiled to WebAssembly and run in this process. Kysely's own PostgreSQL
 * adapter, compiler and introspector apply as they are; only the driver differs: PGlite is one session, so the driver
 * hands it to one caller at a time (a transaction holds it from begin to commit) and queues the others.
 *
 * Our own rather than kysely-pglite-dialect (its peer range stops at PGlite 0.4) or kysely-pglite (which brings a
 * code generator and a CLI framework with it): the driver is this page.
 */
import type { PGlite } from '@electric-sql/pglite';
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';

export class PGliteDialect implements Dialect {
  readonly #database: PGlite;

  constructor(database: PGlite) {
    this.#database = database;
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }

  createDriver(): Driver {
    return new PGliteDriver(this.#database);
  }

  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }
}

class PGliteConnection implements DatabaseConnection {
  readonly #database: PGlite;

  constructor(database: PGlite) {
    this.#database = database;
  }

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const result = await this.#database.query<R>(compiled.sql, [...compiled.parameters]);
    const changed = result.affectedRows;
    const kind = compiled.query.kind;
    const writes = kind === 'InsertQueryNode' || kind === 'UpdateQueryNode' || kind === 'DeleteQueryNode' || kind === 'MergeQueryNode';
    return { rows: result.rows, ...(writes && changed !== undefined ? { numAffectedRows: BigInt(changed) } : {}) };
  }

  /** The interface asks for an iterator; PGlite has no cursors to stream from. */
  streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('PGliteDialect: streaming queries are not supported');
  }
}

class PGliteDriver implements Driver {
  readonly #connection: PGliteConnection;
  /** Settles when the caller holding the session releases it; the next caller waits for it. */
  #held: Promise<void> = Promise.resolve();
  #release: (() => void) | undefined;

  constructor(database: PGlite) {
    this.#connection = new PGliteConnection(database);
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    const before = this.#held;
    let release!: () => void;
    this.#held = new Promise((resolve) => (release = resolve));
    await before;
    this.#release = release;
    return this.#connection;
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    let begin = 'begin';
    if (settings.isolationLevel !== undefined || settings.accessMode !== undefined) {
      begin = 'start transaction';
      if (settings.isolationLevel !== undefined) begin += ` isolation level ${settings.isolationLevel}`;
      if (settings.accessMode !== undefined) begin += ` ${settings.accessMode}`;
    }
    await connection.executeQuery(CompiledQuery.raw(begin));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('commit'));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('rollback'));
  }

  releaseConnection(): Promise<void> {
    const release = this.#release;
    this.#release = undefined;
    release?.();
    return Promise.resolve();
  }

  async destroy(): Promise<void> {}
}
