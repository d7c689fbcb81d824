/**
 * A real HTTP CONNECT proxy (proxy-chain) on 127.0.0.1 that counts what it tunnels, and can demand Basic credentials.
 * Every tunnel it opens is recorded with its target, so a test can assert that a connection went through it.
 */
import { Server } from 'proxy-chain';

export interface ProxyTunnel {
  hostname: string;
  port: number;
  /** A CONNECT tunnel (true) or a plain forwarded HTTP request (false). */
  connect: boolean;
  username: string;
}

export interface CountingProxy {
  readonly url: string;
  readonly port: number;
  /** Tunnels opened (after authentication), in order. */
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

/** `credentials`: the accepted username/password pairs; without it, anyone may tunnel. */
export async function startCountingProxy(options: { credentials?: ProxyCredentials | readonly ProxyCredentials[] } = {}): Promise<CountingProxy> {
  const tunnels: ProxyTunnel[] = [];
  const waiting = new Set<{ match: (tunnel: ProxyTunnel) => boolean; resolve: (tunnel: ProxyTunnel) => void }>();
  let refused = 0;
  const server = new Server({
    host: '127.0.0.1',
    port: 0,
    prepareRequestFunction: ({ username, password, hostname, port, isHttp }) => {
      const wanted = options.credentials === undefined ? undefined : [options.credentials].flat();
      if (wanted !== undefined && !wanted.some((pair) => pair.username === username && pair.password === password)) {
        refused += 1;
        return { requestAuthentication: true };
      }
      const tunnel = { hostname, port, connect: !isHttp, username };
      tunnels.push(tunnel);
      for (const waiter of waiting) {
        if (!waiter.match(tunnel)) continue;
        waiting.delete(waiter);
        waiter.resolve(tunnel);
      }
      return {};
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
    close: () => server.close(true),
  };
}
