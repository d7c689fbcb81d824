/**
 * Relay-generated HTTP errors (spec §10): the description is the reason phrase, and the body is a small XML document
 * whose detail carries a tracking id and timestamp the way Azure's error descriptions do. Relay-generated errors carry
 * no `Via` (only responses that came from a listener do).
 */
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { isoTime } from './relayContext.js';

export const RELAY_MESSAGES = {
  endpointNotFound: 'Endpoint does not exist.',
  noListener: 'There are no listeners connected for the endpoint.',
  responseTimeout: 'The request was routed to the listener but the listener did not respond in the required time.',
  listenerDisconnected: 'The listener disconnected before it sent a response.',
  rendezvousTimeout: 'The listener did not open the rendezvous connection in the required time.',
  invalidResponse: 'The listener sent a response the relay could not forward.',
  bodyTooLarge: 'The request body is larger than the relay accepts.',
  responseTooLarge: 'The response body is larger than the relay accepts.',
  upgradeNotRelayed: 'The HTTP endpoint does not relay protocol upgrades; WebSocket clients use the /$hc/ path.',
  badAction: 'The sb-hc-action query parameter must be listen, connect, accept or request.',
  badRequest: 'The request target is not valid.',
  methodNotAllowed: 'CONNECT is not relayed.',
  listenersRefused: 'The relay is refusing listeners for this endpoint (emulator fault injection).',
  quotaExceeded: 'QuotaExceeded: The maximum number of listeners for this hybrid connection has been reached.',
  webSocketSendersUnsupported: 'The emulator does not relay WebSocket senders (hyco-https listeners cannot accept them).',
  shuttingDown: 'The relay emulator is shutting down.',
} as const;

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  410: 'Gone',
  413: 'Payload Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/**
 * The description as reason phrase when it is short printable ASCII; descriptions can quote caller input (a malformed
 * token), which must never break the status line.
 */
function reasonPhrase(status: number, description: string): string {
  return /^[\x20-\x7e]{1,256}$/.test(description) ? description : (REASONS[status] ?? 'Error');
}

function escapeXml(text: string): string {
  // Control characters are not allowed in XML 1.0 at all; they can only come from caller input.
  const escaped = text.replace(/[<>&]/g, (char) => `&#${char.charCodeAt(0)};`);
  return Array.from(escaped, (char) => {
    const code = char.charCodeAt(0);
    return code < 0x20 && code !== 0x09 && code !== 0x0a && code !== 0x0d ? '?' : char;
  }).join('');
}

/** The detail Azure puts in its error bodies; `nowInMs` is the emulator's clock, so the timestamp agrees with its logs. */
export function errorDetail(description: string, tracker: string, nowInMs: number): string {
  return `${description} TrackingId:${randomUUID()}, SystemTracker:${tracker}, Timestamp:${isoTime(nowInMs)}`;
}

function errorBody(status: number, description: string, tracker: string, nowInMs: number): string {
  return `<Error><Code>${status}</Code><Detail>${escapeXml(errorDetail(description, tracker, nowInMs))}</Detail></Error>`;
}

/** Writes a relay error unless headers already went out, in which case the sender's connection is cut instead. */
export function writeHttpError(res: ServerResponse, status: number, description: string, tracker: string, nowInMs: number, close = false): void {
  if (res.headersSent || res.writableEnded || res.destroyed) {
    if (!res.writableEnded) res.destroy();
    return;
  }
  const body = errorBody(status, description, tracker, nowInMs);
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/xml; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  };
  if (close) headers.Connection = 'close';
  res.writeHead(status, reasonPhrase(status, description), headers);
  res.end(body);
}

/** Answers a WebSocket upgrade with a plain HTTP error and closes the socket. */
export function rejectUpgrade(socket: Duplex, status: number, description: string, tracker: string, nowInMs: number): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const body = errorBody(status, description, tracker, nowInMs);
  const reason = reasonPhrase(status, description);
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\n` +
      'Connection: close\r\n' +
      'Content-Type: application/xml; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
