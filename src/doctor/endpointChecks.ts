/** The checks every endpoint gets (name, TCP, TLS) and the clock check, as Checkup specs. */
import { parseConnectionString, type ConnectionString } from '../core/connectionString.js';
import { fail, pass, type CheckSpec, type Verdict } from './checkup.js';
import {
  inspectCertificate,
  NetworkError,
  openConnection,
  proxyLabel,
  resolveHost,
  serverDate,
  usesProxy,
  type Endpoint,
  type ProxySettings,
} from './network.js';

/** Beyond this, SAS tokens minted here look expired or not yet valid to the service. */
export const MAX_CLOCK_SKEW_IN_MS = 5 * 60_000;

export interface NetworkContext {
  proxy: ProxySettings | undefined;
  /** Undefined: Node's own trust (its bundled roots and NODE_EXTRA_CA_CERTS). */
  ca: string[] | undefined;
  now: () => number;
}

export type ServiceBusTransport = 'websockets' | 'amqp';

/** Where the Service Bus SDK connects for this connection string, transport and endpoint address. */
export function serviceBusEndpoint(connection: ConnectionString, transport: ServiceBusTransport, endpointAddress: string | undefined): Endpoint {
  if (endpointAddress !== undefined) {
    const url = new URL(endpointAddress);
    const secure = ['https:', 'wss:', 'amqps:', 'sb:'].includes(url.protocol);
    const defaultPort = url.protocol === 'amqps:' ? 5671 : url.protocol === 'amqp:' ? 5672 : secure ? 443 : 80;
    return { name: 'servicebus', host: url.hostname, port: Number(url.port || defaultPort), tls: secure, protocol: `${transport === 'websockets' ? 'AMQP over WebSockets' : 'AMQP'} via ${url.origin}` };
  }
  if (connection.useDevelopmentEmulator) {
    return { name: 'servicebus', host: connection.host, port: connection.port ?? 5672, tls: false, protocol: 'plaintext AMQP, development emulator' };
  }
  return transport === 'websockets'
    ? { name: 'servicebus', host: connection.host, port: connection.port ?? 443, tls: true, protocol: 'AMQP over WebSockets (wss)' }
    : { name: 'servicebus', host: connection.host, port: connection.port ?? 5671, tls: true, protocol: 'AMQPS' };
}

export function relayEndpoint(connectionString: string): Endpoint {
  const connection = parseConnectionString(connectionString);
  return connection.useDevelopmentEmulator
    ? { name: 'relay', host: connection.host, port: connection.port ?? 80, tls: false, protocol: 'plaintext HTTP and WebSocket, development emulator' }
    : { name: 'relay', host: connection.host, port: connection.port ?? 443, tls: true, protocol: 'HTTPS and WSS' };
}

function authorityOf(endpoint: Endpoint): string {
  return `${endpoint.host}:${endpoint.port}`;
}

function tcpAdvice(error: unknown, endpoint: Endpoint, proxy: ProxySettings | undefined): string {
  const code = error instanceof NetworkError ? error.code : '';
  const via = usesProxy(proxy, endpoint.host, endpoint.port);
  if (code === 'PROXY_407') return 'the proxy wants credentials: set proxy.username and proxy.password (or user:password@ in HTTPS_PROXY)';
  if (code.startsWith('PROXY_')) return `ask the proxy's administrators to allow CONNECT to ${authorityOf(endpoint)}`;
  if (code === 'ECONNREFUSED') {
    return via
      ? `nothing answers at the proxy ${proxyLabel(proxy)}: check HTTPS_PROXY / proxy.url`
      : `nothing listens on ${authorityOf(endpoint)}: check the host and port of the connection string and that the service runs`;
  }
  return `allow outbound TCP ${endpoint.port} to ${endpoint.host} in the firewall, or go through the corporate proxy (HTTPS_PROXY or "proxy" in the configuration)`;
}

/** `<name>.dns`, `<name>.tcp`, `<name>.tls` for one endpoint. */
export function endpointChecks(endpoint: Endpoint, context: NetworkContext): CheckSpec[] {
  const { proxy, ca } = context;
  const id = (what: string) => `${endpoint.name}.${what}`;
  const viaProxy = usesProxy(proxy, endpoint.host, endpoint.port);
  return [
    {
      id: id('dns'),
      title: `${endpoint.name}: ${endpoint.host} resolves`,
      onTimeout: 'the DNS server does not answer: check the resolver configured on this machine',
      run: async () => {
        if (viaProxy) {
          const addresses = await resolveHost(proxy.url.hostname);
          return pass(`${endpoint.host} is resolved by the proxy; the proxy ${proxy.url.hostname} → ${addresses.join(', ')}`);
        }
        try {
          const addresses = await resolveHost(endpoint.host);
          return pass(`${endpoint.host} → ${addresses.join(', ')}`);
        } catch (error) {
          return fail(`${endpoint.host} does not resolve (${(error as { code?: string }).code ?? (error as Error).message})`, 'check the Endpoint host in the connection string (a typo?) and the DNS server of this machine');
        }
      },
    },
    {
      id: id('tcp'),
      title: `${endpoint.name}: TCP ${endpoint.port} opens`,
      needs: [id('dns')],
      onTimeout: `nothing answered on ${authorityOf(endpoint)}: a firewall probably drops outbound TCP ${endpoint.port}; allow it, or set HTTPS_PROXY`,
      run: async (signal) => {
        try {
          const socket = await openConnection(endpoint, proxy, signal, ca);
          socket.destroy();
          return pass(viaProxy ? `connected through the proxy ${proxyLabel(proxy)} (CONNECT ${authorityOf(endpoint)} → 200)` : `connected to ${authorityOf(endpoint)} directly (${endpoint.protocol})`);
        } catch (error) {
          return fail(`${authorityOf(endpoint)}${viaProxy ? ` through ${proxyLabel(proxy)}` : ''}: ${(error as Error).message}`, tcpAdvice(error, endpoint, proxy));
        }
      },
    },
    {
      id: id('tls'),
      title: `${endpoint.name}: TLS certificate`,
      needs: [id('tcp')],
      run: async (signal): Promise<Verdict> => {
        if (!endpoint.tls) return pass('plaintext (development): the emulator\'s plaintext port; production is TLS on 443');
        const socket = await openConnection(endpoint, proxy, signal, ca);
        const facts = await inspectCertificate(socket, endpoint.host, signal, ca).finally(() => socket.destroy());
        const seen = `issued to "${facts.subject}" by "${facts.issuer}", valid until ${facts.validTo}`;
        if (facts.authorizationError === 'CERT_HAS_EXPIRED') {
          return fail(`expired: ${seen}`, 'renew the certificate (or, if it is not old, set this machine\'s clock right)');
        }
        if (!facts.authorized) {
          return fail(
            `not trusted (${facts.authorizationError ?? 'unknown'}): ${seen}`,
            `trust its issuer: give its CA in tls.caFile or NODE_EXTRA_CA_CERTS (for the local emulators, the CA file they print; behind a TLS-inspecting proxy, the proxy's CA)`,
          );
        }
        if (facts.hostMismatch !== undefined) {
          return fail(`does not name ${endpoint.host}: ${facts.hostMismatch}`, 'connect with a host name the certificate lists, or have it reissued for this one');
        }
        return pass(`trusted, names ${endpoint.host}: ${seen}`);
      },
    },
  ];
}

function duration(ms: number): string {
  const seconds = Math.round(Math.abs(ms) / 1000);
  return seconds >= 120 ? `${Math.round(seconds / 60)} min` : `${seconds} s`;
}

/** `clock`: the local clock against the `Date` of the endpoint's HTTP answers. */
export function clockCheck(endpoint: Endpoint | undefined, context: NetworkContext): CheckSpec {
  return {
    id: 'clock',
    title: 'clock agrees with the service',
    ...(endpoint === undefined ? {} : { needs: [`${endpoint.name}.tls`] }),
    run: async (signal): Promise<Verdict> => {
      if (endpoint === undefined) {
        return { ok: true, skipped: true, detail: 'not checked: no HTTP endpoint in this configuration (the Service Bus emulator speaks plain AMQP)' };
      }
      const theirs = await serverDate(endpoint, context.proxy, signal, context.ca);
      const skew = context.now() - theirs;
      const seen = `this machine ${Math.abs(skew) < 1000 ? 'agrees with' : `is ${duration(skew)} ${skew > 0 ? 'ahead of' : 'behind'}`} the Date of ${endpoint.host}`;
      if (Math.abs(skew) > MAX_CLOCK_SKEW_IN_MS) {
        return fail(seen, `set this machine's clock right (NTP): SAS tokens are dated by it, and the service refuses tokens more than ${duration(MAX_CLOCK_SKEW_IN_MS)} off`);
      }
      return pass(`${seen} (allowed: ${duration(MAX_CLOCK_SKEW_IN_MS)})`);
    },
  };
}
