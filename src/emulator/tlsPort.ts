/**
 * One TLS port for both emulators, as Azure serves everything on 443: each connection is decrypted, then routed by
 * its first bytes. `AMQP` (a protocol header) goes to the Service Bus emulator; anything else is HTTP, served by the
 * relay emulator's HTTP stack, except WebSocket upgrades at `/$servicebus/websocket`, which are AMQP over WebSockets
 * and go to the Service Bus emulator, and requests whose query names an `api-version` (the management API of
 * `ServiceBusAdministrationClient`; relay senders never send one), which go to the Service Bus emulator too. Neither emulator knows about the other or about TLS.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { RelayEmulator } from './relay/index.js';
import { isManagementRequest, WEBSOCKET_PATH, type ServiceBusEmulator } from './servicebus/index.js';

/** A client that completed the handshake has this long to send its first bytes. */
const FIRST_BYTES_TIMEOUT_IN_MS = 30_000;
const AMQP_HEADER = Buffer.from('AMQP');

export interface TlsPortOptions {
  host: string;
  port: number;
  cert: string | Buffer;
  key: string | Buffer;
  /** Whatever serves AMQP: an emulator, or a front that hands over to the one running now (the demo restarts it). */
  serviceBus: Pick<ServiceBusEmulator, 'acceptConnection' | 'handleUpgrade' | 'handleManagementRequest'>;
  relay: Pick<RelayEmulator, 'acceptConnection'>;
  /** Told the remote address and port of each TCP connection accepted, before its handshake. */
  onConnection?: (peer: { address: string; port: number }) => void;
}

export interface TlsPort {
  readonly port: number;
  /** Stops listening and destroys every connection it accepted; idempotent. */
  close(): Promise<void>;
}

export async function startTlsPort(options: TlsPortOptions): Promise<TlsPort> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ cert: options.cert, key: options.key, handshakeTimeout: FIRST_BYTES_TIMEOUT_IN_MS });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    options.onConnection?.({ address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 });
    // Nagle plus delayed ACK stalls single-message round trips by ~40 ms.
    socket.setNoDelay(true);
  });
  // A client that does not speak TLS (plain AMQP, plain HTTP) or does not trust the certificate: drop the connection.
  server.on('tlsClientError', (_error: Error, socket: TLSSocket) => socket.destroy());
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.on('error', () => undefined);
    routeByFirstBytes(socket, options);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', () => undefined);
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      })),
  };
}

/** Reads until the first four bytes are known, puts them back, and hands the stream to the emulator they name. */
function routeByFirstBytes(socket: TLSSocket, options: TlsPortOptions): void {
  const chunks: Buffer[] = [];
  let length = 0;
  const timer = setTimeout(() => socket.destroy(), FIRST_BYTES_TIMEOUT_IN_MS);
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    length += chunk.length;
    if (length < AMQP_HEADER.length) return;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.pause();
    const head = Buffer.concat(chunks, length);
    socket.unshift(head);
    if (head.subarray(0, AMQP_HEADER.length).equals(AMQP_HEADER)) {
      options.serviceBus.acceptConnection(socket);
    } else {
      options.relay.acceptConnection(socket, {
        upgrade: (req, upgraded, rest) => serviceBusUpgrade(req, upgraded, rest, options.serviceBus),
        request: (req, res) => serviceBusManagement(req, res, options.serviceBus),
      });
    }
    socket.resume();
  };
  const onEnd = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  socket.on('data', onData);
  socket.once('end', onEnd);
}

function serviceBusUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, serviceBus: TlsPortOptions['serviceBus']): boolean {
  const path = (req.url ?? '').split('?')[0]!;
  if (path.toLowerCase() !== WEBSOCKET_PATH) return false;
  serviceBus.handleUpgrade(req, socket, head);
  return true;
}

function serviceBusManagement(req: IncomingMessage, res: ServerResponse, serviceBus: TlsPortOptions['serviceBus']): boolean {
  if (!isManagementRequest(req)) return false;
  serviceBus.handleManagementRequest(req, res);
  return true;
}
