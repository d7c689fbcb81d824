/** The checks every endpoint gets (name, TCP, TLS) and the clock check, as Checkup specs. */
import { proxyFor, type ProxySettings } from '../channels/network/proxy.js';
import type { ServiceBusTransport } from '../channels/servicebus/serviceBusConnection.js';
import { parseConnectionString, type ConnectionString } from '../core/connectionString.js';
import { fail, pass, type CheckSpec, type Verdict } from './checkup.js';
import { inspectCertificate, NetworkError, openConnection, resolveHost, serverDate, type Endpoint } from './network.js';

/** Beyond this, SAS tokens minted here look expired or not yet valid to the service. */
export const MAX_CLOCK_SKEW_IN_MS = 5 * 60_000;

export interface NetworkContext {
  /** Undefined: Node's own trust (its bundled roots and NODE_EXTRA_CA_CERTS); else trustedCertificates' list. */
  ca: string[] | undefined;
  now: () => number;
}

function authority(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * The proxy the Service Bus channel would go through, decided as sdkClientOptions does: over WebSockets the proxy
 * rules apply; AMQP over TCP never goes through a proxy (a proxy configured for it is an error the Service Bus rows
 * then report, in the channel's own words).
 */
function serviceBusRoute(proxies: ProxySettings, transport: ServiceBusTransport, host: string, port: number) {
  return transport === 'websockets' ? proxyFor(proxies, `wss://${authority(host, port)}`) : undefined;
}

/** Where the Service Bus SDK connects for this connection string, transport and endpoint address, and through which proxy. */
export function serviceBusEndpoint(connection: ConnectionString, transport: ServiceBusTransport, endpointAddress: string | undefined, proxies: ProxySettings): Endpoint {
  const at = (host: string, port: number, tls: boolean, protocol: string): Endpoint => ({ name: 'servicebus', host, port, tls, protocol, via: serviceBusRoute(proxies, transport, host, port) });
  if (endpointAddress !== undefined) {
    const url = new URL(endpointAddress);
    const secure = ['https:', 'wss:', 'amqps:', 'sb:'].includes(url.protocol);
    const defaultPort = url.protocol === 'amqps:' ? 5671 : url.protocol === 'amqp:' ? 5672 : secure ? 443 : 80;
    return at(url.hostname, Number(url.port || defaultPort), secure, `${transport === 'websockets' ? 'AMQP over WebSockets' : 'AMQP'} via ${url.origin}`);
  }
  if (connection.useDevelopmentEmulator) return at(connection.host, connection.port ?? 5672, false, 'plaintext AMQP, development emulator');
  return transport === 'websockets'
    ? at(connection.host, connection.port ?? 443, true, 'AMQP over WebSockets (wss)')
    : at(connection.host, connection.port ?? 5671, true, 'AMQPS');
}

/** Where the relay listener and sender connect, and through which proxy (the same rules for both). */
export function relayEndpoint(connectionString: string, proxies: ProxySettings): Endpoint {
  const connection = parseConnectionString(connectionString);
  const [port, tls, protocol] = connection.useDevelopmentEmulator
    ? [connection.port ?? 80, false, 'plaintext HTTP and WebSocket, development emulator']
    : [connection.port ?? 443, true, 'HTTPS and WSS'];
  const via = proxyFor(proxies, `${tls ? 'wss' : 'ws'}://${authority(connection.host, port)}`);
  return { name: 'relay', host: connection.host, port, tls, protocol, via };
}

function authorityOf(endpoint: Endpoint): string {
  return `${endpoint.host}:${endpoint.port}`;
}

function tcpAdvice(error: unknown, endpoint: Endpoint): string {
  const code = error instanceof NetworkError ? error.code : '';
  const proxy = endpoint.via;
  if (code === 'PROXY_407') return 'the proxy wants credentials: set proxy.username and proxy.password (or user:password@ in HTTPS_PROXY)';
  if (code.startsWith('PROXY_')) return `ask the proxy's administrators to allow CONNECT to ${authorityOf(endpoint)}`;
  if (code === 'ECONNREFUSED') {
    return proxy !== undefined
      ? `nothing answers at the proxy ${proxy.display}: check HTTPS_PROXY / proxy.url`
      : `nothing listens on ${authorityOf(endpoint)}: check the host and port of the connection string and that the service runs`;
  }
  return `allow outbound TCP ${endpoint.port} to ${endpoint.host} in the firewall, or go through the corporate proxy (HTTPS_PROXY or "proxy" in the configuration)`;
}

/** `<name>.dns`, `<name>.tcp`, `<name>.tls` for one endpoint. */
export function endpointChecks(endpoint: Endpoint, context: NetworkContext): CheckSpec[] {
  const { ca } = context;
  const proxy = endpoint.via;
  const id = (what: string) => `${endpoint.name}.${what}`;
  return [
    {
      id: id('dns'),
      title: `${endpoint.name}: ${endpoint.host} resolves`,
      onTimeout: 'the DNS server does not answer: check the resolver configured on this machine',
      run: async () => {
        if (proxy !== undefined) {
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
          const socket = await openConnection(endpoint, signal, ca);
          socket.destroy();
          return pass(proxy !== undefined ? `connected through the proxy ${proxy.display} (CONNECT ${authorityOf(endpoint)} → 200)` : `connected to ${authorityOf(endpoint)} directly (${endpoint.protocol})`);
        } catch (error) {
          return fail(`${authorityOf(endpoint)}${proxy !== undefined ? ` through ${proxy.display}` : ''}: ${(error as Error).message}`, tcpAdvice(error, endpoint));
        }
      },
    },
    {
      id: id('tls'),
      title: `${endpoint.name}: TLS certificate`,
      needs: [id('tcp')],
      run: async (signal): Promise<Verdict> => {
        if (!endpoint.tls) return pass('plaintext (development): the emulator\'s plaintext port; production is TLS on 443');
        const socket = await openConnection(endpoint, signal, ca);
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
      const theirs = await serverDate(endpoint, signal, context.ca);
      const skew = context.now() - theirs;
      const seen = `this machine ${Math.abs(skew) < 1000 ? 'agrees with' : `is ${duration(skew)} ${skew > 0 ? 'ahead of' : 'behind'}`} the Date of ${endpoint.host}`;
      if (Math.abs(skew) > MAX_CLOCK_SKEW_IN_MS) {
        return fail(seen, `set this machine's clock right (NTP): SAS tokens are dated by it, and the service refuses tokens more than ${duration(MAX_CLOCK_SKEW_IN_MS)} off`);
      }
      return pass(`${seen} (allowed: ${duration(MAX_CLOCK_SKEW_IN_MS)})`);
    },
  };
}
