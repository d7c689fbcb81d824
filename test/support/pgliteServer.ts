/**
 * One in-memory PGlite served over the PostgreSQL wire protocol on 127.0.0.1 (an ephemeral port), for tests of the
 * `pg` driver path: several clients at once through pglite-socket's multiplexer (one PostgreSQL session shared by all).
 */
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

export interface PgliteServer {
  connectionString: string;
  close(): Promise<void>;
}

export async function startPgliteServer(options: { maxConnections?: number } = {}): Promise<PgliteServer> {
  const db = await PGlite.create();
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: options.maxConnections ?? 8 });
  await server.start();
  return {
    connectionString: `postgres://postgres@${server.getServerConn()}/postgres`,
    async close() {
      await server.stop();
      await db.close();
    },
  };
}
