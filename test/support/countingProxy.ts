/**
 * A real HTTP CONNECT proxy (proxy-chain) on 127.0.0.1 that counts what it tunnels, and can demand Basic credentials.
 * Every tunnel it opens is recorded with its target and with the local port of the proxy's own connection to that
 * target, so a test can assert that a connection went through it, and match the connections a server accepted
 * (by their remote port) against the proxy's.
 */
import { once } from 'node:events';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { RequestError, Server } from 'proxy-chain';

export interface ProxyTunnel {
  hostname: string;
  port: number;
  /** A CONNECT tunnel (true) or a plain forwarded HTTP request (false). */
  connect: boolean;
  username: string;
  /** For a CONNECT tunnel: the port the proxy's connection to the target left from (what the target sees as remote port). */
  localPort: number | undefined;
}

export interface CountingProxy {
  readonly url: string;
  readonly port: number;
  /** Tunnels opened (after authentication, once the target accepted), in order. */
  readonly tunnels: readonly ProxyTunnel[];
  /** Requests refused for missing or wrong credentials. */
  readonly refused: number;
  /** Tunnels to `port` on any host. */
  tunnelsTo(port: number): ProxyTunnel[];
  /** Resolves with the first tunnel (already opened or still to come) that matches. */
  tunnelWhere(match: (tunnel: ProxyTunnel) => boolean): Promise<ProxyTunnel>;
  close(): Promise<void>;
}

export interface ProxyCredentials {
  username: string;
  password: string;
}

/**
 * The target end of a CONNECT tunnel, opened before the proxy answers 200 (as proxy-chain's own direct route does), so
 * an unreachable target still gets 502.
 */
async function connectUpstream(hostname: string, port: number): Promise<net.Socket> {
  const upstream = net.connect({ host: hostname.replace(/^\[|\]$/g, ''), port });
  try {
    await once(upstream, 'connect');
  } catch (error) {
    upstream.destroy();
    throw new RequestError(`cannot reach ${hostname}:${port}: ${(error as Error).message}`, 502);
  }
  return upstream;
}

/** proxy-chain's customConnectServer: it emits the client's socket once it answered 200; pipe it to the target. */
function tunnelTo(upstream: net.Socket): EventEmitter {
  const server = new EventEmitter();
  server.once('connection', (client: net.Socket) => {
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return server;
}

/** `credentials`: the accepted username/password pairs; without it, anyone may tunnel. */
export async function startCountingProxy(options: { credentials?: ProxyCredentials | readonly ProxyCredentials[] } = {}): Promise<CountingProxy> {
  const tunnels: ProxyTunnel[] = [];
  const upstreams = new Set<net.Socket>();
  const waiting = new Set<{ match: (tunnel: ProxyTunnel) => boolean; resolve: (tunnel: ProxyTunnel) => void }>();
  let refused = 0;
  const record = (tunnel: ProxyTunnel): void => {
    tunnels.push(tunnel);
    for (const waiter of waiting) {
      if (!waiter.match(tunnel)) continue;
      waiting.delete(waiter);
      waiter.resolve(tunnel);
    }
  };
  const server = new Server({
    host: '127.0.0.1',
    port: 0,
    prepareRequestFunction: async ({ username, password, hostname, port, isHttp }) => {
      const wanted = options.credentials === undefined ? undefined : [options.credentials].flat();
      if (wanted !== undefined && !wanted.some((pair) => pair.username === username && pair.password === password)) {
        refused += 1;
        return { requestAuthentication: true };
      }
      if (isHttp) {
        record({ hostname, port, connect: false, username, localPort: undefined });
        return {};
      }
      const upstream = await connectUpstream(hostname, port);
      upstreams.add(upstream);
      upstream.once('close', () => upstreams.delete(upstream));
      record({ hostname, port, connect: true, username, localPort: upstream.localPort });
      // proxy-chain types it as an http.Server; it only ever emits 'connection' on it.
      return { customConnectServer: tunnelTo(upstream) as never };
    },
  });
  await server.listen();
  return {
    url: `http://127.0.0.1:${server.port}`,
    port: server.port,
    get tunnels() {
      return tunnels;
    },
    get refused() {
      return refused;
    },
    tunnelsTo: (port) => tunnels.filter((tunnel) => tunnel.port === port),
    tunnelWhere: (match) => {
      const found = tunnels.find(match);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve) => waiting.add({ match, resolve }));
    },
    close: async () => {
      for (const upstream of upstreams) upstream.destroy();
      await server.close(true);
    },
  };
}
