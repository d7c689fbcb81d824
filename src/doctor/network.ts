/**
 * The doctor's own look at the network, below the SDKs: name resolution, a TCP connection (direct, or a CONNECT
 * tunnel through the HTTPS proxy the channels would use), the TLS certificate the endpoint shows, and the `Date` its
 * HTTP answers carry. Which proxy applies, and which CAs are trusted, is decided by src/channels/network, as for the
 * channels themselves. Every function takes an AbortSignal and gives up when it fires.
 */
import { lookup } from 'node:dns/promises';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { proxyAuthorization, type ResolvedProxy } from '../channels/network/proxy.js';

export interface Endpoint {
  /** What the endpoint is for, in row names: `servicebus`, `relay`. */
  name: string;
  host: string;
  port: number;
  /** False for the emulators' plaintext ports (development). */
  tls: boolean;
  /** How it is reached, for the table: `AMQP over WebSockets`, `HTTPS`, … */
  protocol: string;
  /** The proxy the channel goes through to reach it (decided by src/channels/network, as the channel does); undefined: directly. */
  via: ResolvedProxy | undefined;
}

export class NetworkError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

function errorCodeOf(error: unknown): string {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : 'ERROR';
}

function abortable<T>(signal: AbortSignal, start: (settle: { resolve: (value: T) => void; reject: (error: Error) => void }) => () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      reject(new NetworkError('aborted', 'ABORTED'));
      return;
    }
    let cleanup = (): void => undefined;
    const onAbort = (): void => {
      cleanup();
      reject(new NetworkError('no answer in time', 'TIMEOUT'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    cleanup = start({
      resolve: (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      reject: (error) => {
        signal.removeEventListener('abort', onAbort);
        cleanup();
        reject(error);
      },
    });
  });
}

/** The addresses a host name resolves to (an IP address resolves to itself). */
export async function resolveHost(host: string): Promise<string[]> {
  const bare = host.replace(/^\[|\]$/g, '');
  const found = await lookup(bare, { all: true });
  return found.map((entry) => entry.address);
}

function connectTcp(host: string, port: number, signal: AbortSignal): Promise<net.Socket> {
  return abortable<net.Socket>(signal, ({ resolve, reject }) => {
    const socket = net.connect({ host: host.replace(/^\[|\]$/g, ''), port });
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => reject(new NetworkError(error.message, errorCodeOf(error))));
    return () => socket.destroy();
  });
}

/** A TCP connection to the endpoint: direct, or a CONNECT tunnel through the proxy the channel would use. */
export async function openConnection(endpoint: Pick<Endpoint, 'host' | 'port' | 'via'>, signal: AbortSignal, ca?: string[]): Promise<net.Socket> {
  const proxy = endpoint.via;
  if (proxy === undefined) return connectTcp(endpoint.host, endpoint.port, signal);
  const proxyPort = Number(proxy.url.port || (proxy.url.protocol === 'https:' ? 443 : 80));
  let toProxy: net.Socket = await connectTcp(proxy.url.hostname, proxyPort, signal);
  if (proxy.url.protocol === 'https:') toProxy = await startTls(toProxy, proxy.url.hostname, signal, ca);
  const authority = `${endpoint.host.includes(':') && !endpoint.host.startsWith('[') ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`;
  const headers: Record<string, string> = { host: authority };
  const authorization = proxyAuthorization(proxy);
  if (authorization !== undefined) headers['proxy-authorization'] = authorization;
  return abortable<net.Socket>(signal, ({ resolve, reject }) => {
    const request = http.request({ method: 'CONNECT', path: authority, headers, createConnection: () => toProxy });
    request.once('connect', (response, socket) => {
      if (response.statusCode === 200) {
        resolve(socket);
        return;
      }
      socket.destroy();
      reject(new NetworkError(`the proxy answered ${response.statusCode} ${response.statusMessage ?? ''} to CONNECT ${authority}`.trim(), `PROXY_${response.statusCode}`));
    });
    request.once('error', (error) => reject(new NetworkError(`the proxy ${proxy.display}: ${error.message}`, errorCodeOf(error))));
    request.end();
    return () => {
      request.destroy();
      toProxy.destroy();
    };
  });
}

export interface CertificateFacts {
  authorized: boolean;
  /** Why Node does not trust it (e.g. SELF_SIGNED_CERT_IN_CHAIN, CERT_HAS_EXPIRED), when it does not. */
  authorizationError: string | undefined;
  /** Why the certificate does not name the host, when it does not. */
  hostMismatch: string | undefined;
  subject: string;
  issuer: string;
  validTo: string;
}

function startTls(socket: net.Socket, host: string, signal: AbortSignal, ca?: string[]): Promise<tls.TLSSocket> {
  return abortable<tls.TLSSocket>(signal, ({ resolve, reject }) => {
    const bare = host.replace(/^\[|\]$/g, '');
    const secure = tls.connect({ socket, ...(net.isIP(bare) === 0 ? { servername: bare } : {}), ...(ca === undefined ? {} : { ca }) });
    secure.once('secureConnect', () => {
      secure.removeAllListeners('error');
      resolve(secure);
    });
    secure.once('error', (error: Error) => reject(new NetworkError(error.message, errorCodeOf(error))));
    return () => secure.destroy();
  });
}

/** Opens TLS over the socket without refusing anything, and reports what a client would think of the certificate. */
export function inspectCertificate(socket: net.Socket, host: string, signal: AbortSignal, ca?: string[]): Promise<CertificateFacts> {
  return abortable<CertificateFacts>(signal, ({ resolve, reject }) => {
    const bare = host.replace(/^\[|\]$/g, '');
    const secure = tls.connect({
      socket,
      rejectUnauthorized: false,
      ...(net.isIP(bare) === 0 ? { servername: bare } : {}),
      ...(ca === undefined ? {} : { ca }),
    });
    secure.once('secureConnect', () => {
      const certificate = secure.getPeerCertificate();
      const mismatch = tls.checkServerIdentity(bare, certificate);
      const name = (fields: Record<string, string | string[] | undefined> | undefined): string =>
        fields === undefined ? '' : String(fields.CN ?? fields.O ?? Object.values(fields).join(' '));
      resolve({
        authorized: secure.authorized,
        authorizationError: secure.authorizationError === null ? undefined : String(secure.authorizationError),
        hostMismatch: mismatch?.message,
        subject: name(certificate.subject),
        issuer: name(certificate.issuer),
        validTo: certificate.valid_to,
      });
      secure.destroy();
    });
    secure.once('error', (error: Error) => reject(new NetworkError(error.message, errorCodeOf(error))));
    return () => secure.destroy();
  });
}

/** The `Date` header of an answer to `GET /` on the endpoint (any status will do), in ms since the epoch. */
export async function serverDate(endpoint: Endpoint, signal: AbortSignal, ca?: string[]): Promise<number> {
  const raw = await openConnection(endpoint, signal, ca);
  const socket = endpoint.tls ? await startTls(raw, endpoint.host, signal, ca).catch((error: unknown) => {
    raw.destroy();
    throw error;
  }) : raw;
  return abortable<number>(signal, ({ resolve, reject }) => {
    const request = http.request({ method: 'GET', path: '/', headers: { host: endpoint.host, connection: 'close' }, createConnection: () => socket });
    request.once('response', (response) => {
      response.resume();
      const date = response.headers.date;
      const at = date === undefined ? Number.NaN : Date.parse(date);
      if (Number.isNaN(at)) reject(new NetworkError(`the answer (${response.statusCode}) carries no Date header`, 'NO_DATE'));
      else resolve(at);
      socket.destroy();
    });
    request.once('error', (error) => reject(new NetworkError(error.message, errorCodeOf(error))));
    request.end();
    return () => {
      request.destroy();
      socket.destroy();
    };
  });
}

/** Whether host:port can be bound now (the cloud HTTP API's port); resolves with the error code when it cannot. */
export function portFree(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (error) => resolve(errorCodeOf(error)));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}
