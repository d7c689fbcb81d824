/**
 * Shared pieces of the relay emulator tests: a list of closeables drained after each test, a log collector that
 * turns emulator log events into promises, real hyco-https listeners with token functions, and fetch senders.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import hycoHttps from 'hyco-https';
import WebSocket from 'ws';
import { createSasToken } from '../../../src/core/sas.js';
import {
  DEVELOPMENT_KEY,
  DEVELOPMENT_KEY_NAME,
  startRelayEmulator,
  type RelayEmulator,
  type RelayEmulatorOptions,
  type RelayLogEntry,
} from '../../../src/emulator/relay/index.js';

export type Closeable = () => Promise<void> | void;

/** Everything a test opened, closed in reverse order. */
export class Closeables {
  private readonly items: Closeable[] = [];

  add(close: Closeable): void {
    this.items.push(close);
  }

  async drain(): Promise<void> {
    const errors: unknown[] = [];
    while (this.items.length > 0) {
      const close = this.items.pop()!;
      try {
        await close();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'closing test resources failed');
  }
}

interface Waiter {
  predicate: (entry: RelayLogEntry) => boolean;
  resolve: (entry: RelayLogEntry) => void;
}

/** Records emulator log entries and resolves waiters when a matching one arrives (or already has). */
export class LogCollector {
  readonly entries: RelayLogEntry[] = [];
  private readonly waiters: Waiter[] = [];

  readonly logger = (entry: RelayLogEntry): void => {
    this.entries.push(entry);
    for (const waiter of [...this.waiters]) {
      if (waiter.predicate(entry)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(entry);
      }
    }
  };

  /** The next entry (from now on) matching the event name and predicate. */
  next(event: string, predicate: (entry: RelayLogEntry) => boolean = () => true): Promise<RelayLogEntry> {
    return new Promise((resolve) => {
      this.waiters.push({ predicate: (entry) => entry.event === event && predicate(entry), resolve });
    });
  }

  /** The first entry ever logged matching, or the next one to come. */
  seen(event: string, predicate: (entry: RelayLogEntry) => boolean = () => true): Promise<RelayLogEntry> {
    const found = this.entries.find((entry) => entry.event === event && predicate(entry));
    return found === undefined ? this.next(event, predicate) : Promise.resolve(found);
  }

  count(event: string): number {
    return this.entries.filter((entry) => entry.event === event).length;
  }
}

export interface TestRelay {
  emulator: RelayEmulator;
  log: LogCollector;
}

export async function startTestRelay(closeables: Closeables, options: RelayEmulatorOptions = {}): Promise<TestRelay> {
  const log = new LogCollector();
  const emulator = await startRelayEmulator({ hybridConnections: [{ name: 'hc1' }], ...options, logger: log.logger });
  closeables.add(() => emulator.close());
  return { emulator, log };
}

export function listenUri(emulator: RelayEmulator, hybridConnection: string): string {
  return `ws://127.0.0.1:${emulator.port}/$hc/${hybridConnection}?sb-hc-action=listen`;
}

export function httpUrl(emulator: RelayEmulator, pathAndQuery: string): string {
  return `http://127.0.0.1:${emulator.port}/${pathAndQuery.replace(/^\//, '')}`;
}

/**
 * A token for `http://127.0.0.1:<port>/<hc>` made with the project's own SAS code (not hyco-https'). Its lifetime
 * counts from `nowInMs`, the machine clock unless given: pass the emulator's clock when it has been moved.
 */
export function sasToken(
  emulator: RelayEmulator,
  hybridConnection: string,
  options: { keyName?: string; key?: string; timeToLiveInMs?: number; expiresOnInSeconds?: number; resource?: string; nowInMs?: number } = {},
): string {
  return createSasToken({
    resource: options.resource ?? `http://127.0.0.1:${emulator.port}/${hybridConnection}`,
    keyName: options.keyName ?? DEVELOPMENT_KEY_NAME,
    key: options.key ?? DEVELOPMENT_KEY,
    ...(options.timeToLiveInMs === undefined ? {} : { timeToLiveInMs: options.timeToLiveInMs }),
    ...(options.expiresOnInSeconds === undefined ? {} : { expiresOnInSeconds: options.expiresOnInSeconds }),
    ...(options.nowInMs === undefined ? {} : { nowInMs: options.nowInMs }),
  });
}

type RelayedServer = ReturnType<typeof hycoHttps.createRelayedServer>;

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface TestListener {
  server: RelayedServer;
  /** Errors hyco-https reported (failed connection attempts). */
  errors: Error[];
  /** Resolves on the next `'listening'` (every successful (re)connect). */
  nextListening(): Promise<void>;
  /** Resolves on the next `'error'`. */
  nextError(): Promise<Error>;
  /** Closes the listener for good and waits until its control channel is closed. */
  close(): Promise<void>;
}

export interface ListenerOptions {
  keyName?: string;
  key?: string;
  /** Lifetime of each token the token function mints; default one hour. */
  tokenSeconds?: number | (() => number);
  /** A fixed token string instead of a token function (never renewed). */
  fixedToken?: string;
  /** Do not wait for the first `'listening'`. */
  noWait?: boolean;
  /** hyco-https' keepAliveTimeout (a moment duration; only `asMilliseconds` is used): unsolicited pongs at that period. */
  keepAliveTimeout?: { asMilliseconds(): number };
}

/** Starts a real hyco-https listener on the emulator, with a token function so renewal works. */
export async function startListener(
  closeables: Closeables,
  emulator: RelayEmulator,
  hybridConnection: string,
  handler: RequestHandler,
  options: ListenerOptions = {},
): Promise<TestListener> {
  const uri = listenUri(emulator, hybridConnection);
  const seconds = options.tokenSeconds ?? 3600;
  const token =
    options.fixedToken ??
    ((): string =>
      hycoHttps.createRelayToken(
        uri,
        options.keyName ?? DEVELOPMENT_KEY_NAME,
        options.key ?? DEVELOPMENT_KEY,
        typeof seconds === 'function' ? seconds() : seconds,
      ));
  const server = hycoHttps.createRelayedServer(
    { server: uri, token, ...(options.keepAliveTimeout === undefined ? {} : { keepAliveTimeout: options.keepAliveTimeout }) },
    handler,
  );
  const errors: Error[] = [];
  server.on('error', (error: Error) => errors.push(error));
  let closedForGood = false;
  server.on('close', () => (closedForGood = true));
  const listener: TestListener = {
    server,
    errors,
    nextListening: () => new Promise((resolve) => server.once('listening', () => resolve())),
    nextError: () => new Promise((resolve) => server.once('error', (error: Error) => resolve(error))),
    close: async () => {
      if (closedForGood) return;
      // hyco-https emits 'close' once a control channel ends after close(). When the channel is already down, a
      // reconnect is pending and still happens after close() (spec §11 P14): if it succeeds, close that one too.
      const closeZombie = (): void => server.close();
      const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
      server.on('listening', closeZombie);
      server.close();
      await closed;
      server.off('listening', closeZombie);
    },
  };
  closeables.add(() => listener.close());
  const listening = listener.nextListening();
  server.listen();
  if (options.noWait !== true) await listening;
  return listener;
}

export interface SendOptions extends RequestInit {
  token?: string | null;
}

/** A fetch sender; authenticates with the development key unless `token` is given (null: no token). */
export function send(emulator: RelayEmulator, pathAndQuery: string, options: SendOptions = {}): Promise<Response> {
  const { token, headers, ...init } = options;
  const hybridConnection = pathAndQuery.replace(/^\//, '').split(/[/?]/)[0]!;
  const finalHeaders = new Headers(headers);
  const chosen = token === undefined ? sasToken(emulator, hybridConnection) : token;
  if (chosen !== null) finalHeaders.set('ServiceBusAuthorization', chosen);
  return fetch(httpUrl(emulator, pathAndQuery), { ...init, headers: finalHeaders });
}

/** Reads a request body fully (hyco-https delivers it in one piece). */
export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(Buffer.from(chunk)));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Deterministic bytes so a corrupted or reordered body is detected. */
export function patternBytes(length: number, seed = 7): Buffer {
  const buffer = Buffer.alloc(length);
  let value = seed;
  for (let index = 0; index < length; index += 1) {
    value = (value * 1103515245 + 12345) & 0x7fffffff;
    buffer[index] = value >>> 16;
  }
  return buffer;
}

/** An echo handler: answers with the request body, method and url. */
export const echoHandler: RequestHandler = (req, res) => {
  void readBody(req).then((body) => {
    res.setHeader('content-type', 'application/octet-stream');
    res.setHeader('x-method', req.method ?? '');
    res.setHeader('x-url', req.url ?? '');
    // hyco-https never answers `res.end(<empty Buffer>)` (the buffer is truthy but writes nothing): end empty instead.
    if (body.length === 0) res.end();
    else res.end(body);
  });
};

export interface RawListener {
  socket: WebSocket;
  /** The next message from the relay: parsed JSON for text, the Buffer for binary. */
  next(): Promise<{ text?: unknown; binary?: Buffer }>;
  /** Resolves with the close code when the relay closes the channel. */
  closed: Promise<number>;
}

/** A hand-driven listener (plain ws client) for protocol cases hyco-https cannot produce. */
export async function startRawListener(
  closeables: Closeables,
  emulator: RelayEmulator,
  hybridConnection: string,
  options: { token?: string; autoPong?: boolean } = {},
): Promise<RawListener> {
  const socket = new WebSocket(listenUri(emulator, hybridConnection), {
    headers: { ServiceBusAuthorization: options.token ?? sasToken(emulator, hybridConnection) },
    autoPong: options.autoPong ?? true,
    perMessageDeflate: false,
  });
  closeables.add(() => socket.terminate());
  const queue: Array<{ text?: unknown; binary?: Buffer }> = [];
  const waiting: Array<(message: { text?: unknown; binary?: Buffer }) => void> = [];
  socket.on('message', (data: Buffer, isBinary: boolean) => {
    const message = isBinary ? { binary: data } : { text: JSON.parse(data.toString()) as unknown };
    const waiter = waiting.shift();
    if (waiter === undefined) queue.push(message);
    else waiter(message);
  });
  const closed = new Promise<number>((resolve) => socket.once('close', (code: number) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  return {
    socket,
    closed,
    next: () => {
      const queued = queue.shift();
      return queued === undefined ? new Promise((resolve) => waiting.push(resolve)) : Promise.resolve(queued);
    },
  };
}

/** The `request` object of a relay message. */
export function requestOf(message: { text?: unknown }): { id: string; address: string; method?: string; requestTarget?: string; body?: boolean } {
  return (message.text as { request: { id: string; address: string; method?: string; requestTarget?: string; body?: boolean } }).request;
}
