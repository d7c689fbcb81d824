/**
 * A local Azure Relay Hybrid Connections service for the unmodified hyco-https listener and plain HTTP senders
 * (spec: ../shared/specs/relay-hybrid-connections.md). One port serves HTTP senders and the WebSocket upgrades of
 * listeners (`/$hc/<name>?sb-hc-action=listen`) and of rendezvous sockets (`sb-hc-action=request`).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { authorize, hostWithoutPort, type RelayClaim } from './relayAuth.js';
import { emptyCounters, type LogFields, type RelayContext, type RelayCounters } from './relayContext.js';
import {
  DEVELOPMENT_KEY_NAME,
  resolveHybridConnection,
  resolveRelayEmulatorOptions,
  type RelayEmulatorOptions,
  type RelayLogLevel,
  type ResolvedRelayEmulatorOptions,
} from './relayEmulatorOptions.js';
import { RELAY_MESSAGES, rejectUpgrade, writeHttpError } from './relayErrors.js';
import { HybridConnectionState } from './hybridConnectionState.js';
import { buildRequestHeaders } from './relayHeaders.js';
import { ListenerChannel, type ListenerChannelInfo } from './listenerChannel.js';
import { RelayedRequest } from './relayedRequest.js';
import {
  autoCreatedName,
  decodePath,
  joinTarget,
  queryValue,
  resolveEntity,
  splitRequestTarget,
  stripRelayQuery,
} from './relayPaths.js';

export interface DropListenersOptions {
  /** Close with this WebSocket code (e.g. 1011) instead of cutting the TCP connection. */
  closeCode?: number;
  reason?: string;
}

/** Takes an upgrade that is not the relay's (returns true), or leaves it to the relay (false). */
export type ForeignUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => boolean;

/** Takes a plain HTTP request that is not the relay's (returns true, and answers it), or leaves it to the relay (false). */
export type ForeignRequest = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface AcceptConnectionOptions {
  /** Looks at each WebSocket upgrade on the connection first: `startEmulators` takes `/$servicebus/websocket` this way. */
  upgrade?: ForeignUpgrade;
  /** Looks at each HTTP request on the connection first: `startEmulators` takes Service Bus management requests this way. */
  request?: ForeignRequest;
}

export interface RelayEmulator extends AsyncDisposable {
  readonly host: string;
  /** The plaintext port; 0 when the emulator was started without one (`port: null`). */
  readonly port: number;
  /** `sb://<host>:<port>` */
  readonly endpoint: string;
  /**
   * `Endpoint=sb://…/;SharedAccessKeyName=…;SharedAccessKey=…;UseDevelopmentEmulator=true` for a namespace policy, on
   * the plaintext port; throws without one (`port: null`).
   */
  connectionString(keyName?: string): string;
  /**
   * Serves HTTP senders and WebSocket upgrades on a stream connected elsewhere (the TLS port of `startEmulators`,
   * decrypted), with the same limits and timeouts as the relay's own port. Rendezvous addresses for listeners that
   * came this way use wss when the stream is a TLS socket.
   */
  acceptConnection(socket: Duplex, options?: AcceptConnectionOptions): void;
  /** Idempotent: closes every socket and the server. */
  close(): Promise<void>;
  /** Cuts every control channel of a hybrid connection (listeners reconnect); returns how many were dropped. */
  dropListeners(hybridConnection: string, options?: DropListenersOptions): number;
  /**
   * Half-opens every control channel of a hybrid connection: the relay forgets them (senders get "no listener",
   * requests in flight on them time out) but keeps the TCP connections, so hyco-https never notices (spec §11 P5,
   * azure-relay #33). `dropListeners` or `close` cuts them. Returns how many were silenced.
   */
  silenceListeners(hybridConnection: string): number;
  /** Refuses listen attempts (503) for `durationInMs`, or until `acceptListeners` when omitted. */
  refuseListeners(hybridConnection: string, durationInMs?: number): void;
  acceptListeners(hybridConnection: string): void;
  /** Holds every listener response this long before forwarding it (0 to stop). The 504 timer is not affected. */
  delayResponses(hybridConnection: string, delayInMs: number): void;
  listenerCount(hybridConnection: string): number;
  listeners(hybridConnection: string): ListenerChannelInfo[];
  hybridConnectionNames(): string[];
  /** Number of requests currently in flight. */
  pendingRequestCount(): number;
  /** Number of rendezvous sockets currently open. */
  rendezvousSocketCount(): number;
  /** A snapshot of the counters. */
  counters(): RelayCounters;
}

function toBoundHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

const SAFE_HOST = /^[A-Za-z0-9.\-_:[\]]{1,300}$/;

class RelayEmulatorServer implements RelayEmulator {
  readonly host: string;
  port = 0;
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly hybridConnections = new Map<string, HybridConnectionState>();
  private readonly rendezvousSockets = new Set<WebSocket>();
  private readonly context: RelayContext;
  private readonly stats = emptyCounters();
  private closing: Promise<void> | undefined;
  /** Upgrades that belong to someone else on connections handed over by `acceptConnection`. */
  private readonly foreignUpgrades = new WeakMap<object, ForeignUpgrade>();
  private readonly foreignRequests = new WeakMap<object, ForeignRequest>();
  private readonly onAbort = (): void => void this.close();

  constructor(private readonly options: ResolvedRelayEmulatorOptions) {
    this.host = options.host;
    for (const definition of options.hybridConnections) {
      this.hybridConnections.set(definition.name.toLowerCase(), new HybridConnectionState(definition));
    }
    this.context = {
      options,
      counters: this.stats,
      requests: new Map(),
      log: (level, event, message, fields) => this.log(level, event, message, fields),
    };
    // Azure accepts larger headers than Node's 16 KiB default; this also makes the 32 KiB header rule reachable.
    // Slow clients are cut: Node checks the headers and request timeouts on an interval (30 s unless told), so check
    // at least every second; the idle timeout is the socket's own timer (a WebSocket sets its socket's to none).
    this.server = createServer({
      maxHeaderSize: 64 * 1024,
      headersTimeout: options.headersTimeoutInMs,
      requestTimeout: options.requestTimeoutInMs,
      connectionsCheckingInterval: Math.min(1_000, Math.ceil(options.headersTimeoutInMs / 4)),
    });
    this.server.setTimeout(options.idleTimeoutInMs);
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      clientTracking: false,
      maxPayload: options.maxBodySizeInBytes + 64 * 1024,
      maxFragments: options.maxFragmentsPerMessage,
    });
    this.server.on('request', (req, res) => {
      if (this.foreignRequests.get(req.socket)?.(req, res) === true) return;
      this.safely('request', () => this.onSenderRequest(req, res), res);
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', (error) => this.log('debug', 'socket.error', `upgrade socket error: ${error.message}`));
      if (this.foreignUpgrades.get(req.socket)?.(req, socket, head) === true) return;
      try {
        this.onUpgrade(req, socket, head);
      } catch (error) {
        this.log('error', 'upgrade.internalError', `upgrade handling failed: ${(error as Error).message}`);
        this.refuseUpgrade(socket, 500, 'Internal error.', 'relay');
      }
    });
    this.server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      socket.on('error', () => undefined);
      this.refuseUpgrade(socket, 405, RELAY_MESSAGES.methodNotAllowed, 'relay');
    });
    this.server.on('clientError', (error: Error, socket: Duplex) => {
      // A client too slow with its headers or body (headersTimeoutInMs, requestTimeoutInMs) is told so, as Node would.
      const timedOut = (error as NodeJS.ErrnoException).code === 'ERR_HTTP_REQUEST_TIMEOUT';
      this.log(timedOut ? 'info' : 'debug', timedOut ? 'http.requestTimeout' : 'http.clientError', `${timedOut ? 'a client was too slow' : 'malformed HTTP from a client'}: ${error.message}`);
      const status = timedOut ? '408 Request Timeout' : '400 Bad Request';
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      else socket.destroy();
    });
  }

  get endpoint(): string {
    return `sb://${toBoundHost(this.host)}:${this.port}`;
  }

  async start(): Promise<void> {
    const signal = this.options.abortSignal;
    signal?.throwIfAborted();
    const port = this.options.port;
    if (port === null) {
      // No plaintext port: connections arrive only through acceptConnection. Node starts the HTTP server's tracking
      // of connections (the headers and request timeouts that cut slow clients) on its 'listening' event, which a
      // server that never listens does not get: emit it, so handed-over connections are cut as the port's would be.
      this.server.emit('listening');
      this.log('info', 'emulator.started', 'relay emulator started without a plaintext port (connections are handed over)');
    } else {
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error): void => reject(error);
        this.server.once('error', onError);
        this.server.listen({ host: this.options.host, port }, () => {
          this.server.off('error', onError);
          resolve();
        });
      });
      this.port = (this.server.address() as AddressInfo).port;
      this.log('info', 'emulator.started', `relay emulator listening on ${this.endpoint}`);
    }
    this.server.on('error', (error) => this.log('error', 'server.error', `server error: ${error.message}`));
    if (signal !== undefined) {
      if (signal.aborted) {
        await this.close();
        signal.throwIfAborted();
      }
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  acceptConnection(socket: Duplex, options: AcceptConnectionOptions = {}): void {
    if (options.upgrade !== undefined) this.foreignUpgrades.set(socket, options.upgrade);
    if (options.request !== undefined) this.foreignRequests.set(socket, options.request);
    this.server.emit('connection', socket);
  }

  connectionString(keyName?: string): string {
    const name = keyName ?? (this.options.policies.has(DEVELOPMENT_KEY_NAME) ? DEVELOPMENT_KEY_NAME : [...this.options.policies.keys()][0]);
    const policy = name === undefined ? undefined : this.options.policies.get(name);
    if (policy === undefined) {
      throw new TypeError(`connectionString: no namespace policy named "${keyName ?? ''}"; configure it in sharedAccessPolicies`);
    }
    if (this.options.port === null) {
      throw new TypeError('connectionString: the relay emulator has no plaintext port (started with port: null); use the TLS port\'s connection strings');
    }
    return `Endpoint=${this.endpoint}/;SharedAccessKeyName=${policy.keyName};SharedAccessKey=${policy.keys[0]!};UseDevelopmentEmulator=true`;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  dropListeners(hybridConnection: string, options: DropListenersOptions = {}): number {
    const code = options.closeCode;
    if (code !== undefined && !isSendableCloseCode(code)) {
      throw new RangeError(`dropListeners: closeCode ${code} cannot be sent in a close frame; use 1000-1003, 1007-1014 or 3000-4999`);
    }
    const state = this.requireHybridConnection(hybridConnection, 'dropListeners');
    const channels = [...state.listeners, ...state.silenced];
    for (const channel of channels) {
      if (options.closeCode === undefined) channel.terminate();
      else channel.close(options.closeCode, options.reason ?? 'Dropped by the emulator');
    }
    this.log('info', 'fault.dropListeners', `dropped ${channels.length} listener(s)`, { hybridConnection: state.name });
    return channels.length;
  }

  silenceListeners(hybridConnection: string): number {
    const state = this.requireHybridConnection(hybridConnection, 'silenceListeners');
    const channels = [...state.listeners];
    for (const channel of channels) {
      state.remove(channel);
      state.silenced.add(channel);
      channel.silence();
    }
    this.log('info', 'fault.silenceListeners', `silenced ${channels.length} listener(s)`, { hybridConnection: state.name });
    return channels.length;
  }

  refuseListeners(hybridConnection: string, durationInMs?: number): void {
    if (durationInMs !== undefined && (!Number.isFinite(durationInMs) || durationInMs < 0)) {
      throw new RangeError(`refuseListeners: durationInMs must be a non-negative number, got ${durationInMs}`);
    }
    const state = this.requireHybridConnection(hybridConnection, 'refuseListeners');
    state.refusedUntilMs = durationInMs === undefined ? Number.POSITIVE_INFINITY : this.options.now() + durationInMs;
    this.log('info', 'fault.refuseListeners', `refusing listeners ${durationInMs === undefined ? 'until accepted' : `for ${durationInMs} ms`}`, {
      hybridConnection: state.name,
    });
  }

  acceptListeners(hybridConnection: string): void {
    const state = this.requireHybridConnection(hybridConnection, 'acceptListeners');
    state.refusedUntilMs = 0;
    this.log('info', 'fault.acceptListeners', 'accepting listeners again', { hybridConnection: state.name });
  }

  delayResponses(hybridConnection: string, delayInMs: number): void {
    if (!Number.isFinite(delayInMs) || delayInMs < 0 || delayInMs > 2_147_483_647) {
      throw new RangeError(`delayResponses: delayInMs must be between 0 and 2147483647, got ${delayInMs}`);
    }
    const state = this.requireHybridConnection(hybridConnection, 'delayResponses');
    state.responseDelayInMs = delayInMs;
  }

  listenerCount(hybridConnection: string): number {
    return this.findHybridConnection(hybridConnection)?.listeners.length ?? 0;
  }

  listeners(hybridConnection: string): ListenerChannelInfo[] {
    return this.findHybridConnection(hybridConnection)?.listeners.map((channel) => channel.info()) ?? [];
  }

  hybridConnectionNames(): string[] {
    return [...this.hybridConnections.values()].map((state) => state.name);
  }

  pendingRequestCount(): number {
    return this.context.requests.size;
  }

  rendezvousSocketCount(): number {
    return this.rendezvousSockets.size;
  }

  counters(): RelayCounters {
    return { ...this.stats };
  }

  private findHybridConnection(name: string): HybridConnectionState | undefined {
    return this.hybridConnections.get(name.toLowerCase());
  }

  private requireHybridConnection(name: string, caller: string): HybridConnectionState {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError(`${caller}: a hybrid connection name is required`);
    const found = this.findHybridConnection(name);
    if (found !== undefined) return found;
    if (this.options.autoCreate) {
      const created = autoCreatedName(name, true);
      if (created !== undefined) return this.createHybridConnection(created);
    }
    throw new TypeError(`${caller}: unknown hybrid connection "${name}"; declare it in hybridConnections or enable autoCreate`);
  }

  private createHybridConnection(name: string): HybridConnectionState {
    const state = new HybridConnectionState(resolveHybridConnection({ name }));
    this.hybridConnections.set(name.toLowerCase(), state);
    this.log('info', 'hybridConnection.created', `auto-created hybrid connection "${name}"`, { hybridConnection: name });
    return state;
  }

  /** Finds the entity a decoded path addresses, creating it when allowed. */
  private resolve(path: string, wholePath: boolean): { state: HybridConnectionState; suffix: string } | undefined {
    const match = resolveEntity(this.hybridConnections.values(), path);
    if (match !== undefined) return { state: match.entity, suffix: match.suffix };
    if (!this.options.autoCreate) return undefined;
    const name = autoCreatedName(path, wholePath);
    if (name === undefined) return undefined;
    return { state: this.createHybridConnection(name), suffix: path.slice(name.length) };
  }

  private authorizeFor(state: HybridConnectionState, token: string | undefined, claim: RelayClaim, hostHeader: string | undefined) {
    return authorize({
      token,
      hybridConnection: state.definition,
      namespacePolicies: this.options.policies,
      claim,
      host: hostWithoutPort(hostHeader, this.options.host),
      lenientAudience: this.options.lenientAudience,
      clockSkewInMs: this.options.clockSkewInMs,
      nowInMs: this.options.now(),
    });
  }

  // ---------------------------------------------------------------- HTTP senders

  private async onSenderRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.senderRequests += 1;
    req.on('error', (error) => this.log('debug', 'sender.error', `sender request error: ${error.message}`));
    res.on('error', (error) => this.log('debug', 'sender.error', `sender response error: ${error.message}`));
    if (this.closing !== undefined) return this.senderError(req, res, 503, RELAY_MESSAGES.shuttingDown, 'relay');
    const target = splitRequestTarget(req.url ?? '');
    const decoded = target === undefined ? undefined : decodePath(target.path);
    if (target === undefined || decoded === undefined) return this.senderError(req, res, 400, RELAY_MESSAGES.badRequest, 'relay');
    const resolved = this.resolve(decoded.replace(/^\/+/, ''), false);
    if (resolved === undefined) return this.senderError(req, res, 404, RELAY_MESSAGES.endpointNotFound, 'relay');
    const { state } = resolved;
    const headers = req.headers;
    let tokenFromAuthorization = false;
    if (state.definition.requiresClientAuthorization) {
      let token = queryValue(target.query, 'sb-hc-token');
      token ??= headerValue(headers.servicebusauthorization);
      if (token === undefined) {
        token = headerValue(headers.authorization);
        tokenFromAuthorization = token !== undefined;
      }
      const result = this.authorizeFor(state, token, 'Send', headers.host);
      if (!result.ok) {
        this.log('info', 'sender.rejected', `sender rejected: ${result.description}`, { hybridConnection: state.name, statusCode: result.status });
        return this.senderError(req, res, result.status, result.description, state.name);
      }
    }
    if (!state.hasListener()) {
      return this.senderError(req, res, this.options.noListenerStatus, RELAY_MESSAGES.noListener, state.name);
    }
    const declaredLength = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
    if (declaredLength !== undefined && declaredLength > this.options.maxBodySizeInBytes) {
      return this.senderError(req, res, 413, RELAY_MESSAGES.bodyTooLarge, state.name);
    }
    const body = await this.readBody(req, res, state);
    if (body === undefined || res.destroyed || res.writableEnded) return;
    if (this.closing !== undefined) return this.senderError(req, res, 503, RELAY_MESSAGES.shuttingDown, state.name);
    const channel = state.pick();
    if (channel === undefined) {
      return this.senderError(req, res, this.options.noListenerStatus, RELAY_MESSAGES.noListener, state.name);
    }
    const viaHost = hostWithoutPort(headers.host, this.options.host);
    const request = new RelayedRequest(this.context, state, req, res, {
      id: randomUUID(),
      requestTarget: joinTarget(target.path, stripRelayQuery(target.query)),
      method: req.method ?? 'GET',
      requestHeaders: buildRequestHeaders(req.rawHeaders, { dropAuthorization: tokenFromAuthorization, viaHost }),
      remoteEndpoint: { address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0 },
      body,
      viaHost,
    });
    request.dispatch(channel);
  }

  /** Reads the whole body, answering 413 (and draining the rest) once it exceeds the limit. */
  private readBody(req: IncomingMessage, res: ServerResponse, state: HybridConnectionState): Promise<Buffer | undefined> {
    const limit = this.options.maxBodySizeInBytes;
    this.log('debug', 'sender.bodyReading', 'reading the request body', { hybridConnection: state.name });
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let tooLarge = false;
      let drained = 0;
      const onData = (chunk: Buffer): void => {
        if (tooLarge) {
          drained += chunk.length;
          // Draining lets the sender read the 413; past a point it is cheaper to hang up.
          if (drained > 4 * limit + 1024 * 1024) req.destroy();
          return;
        }
        size += chunk.length;
        if (size > limit) {
          tooLarge = true;
          chunks.length = 0;
          this.senderError(req, res, 413, RELAY_MESSAGES.bodyTooLarge, state.name);
          resolve(undefined);
          return;
        }
        chunks.push(chunk);
      };
      req.on('data', onData);
      req.once('end', () => {
        if (!tooLarge) resolve(Buffer.concat(chunks, size));
      });
      req.once('close', () => {
        if (!req.complete && !tooLarge) {
          this.stats.abandonedRequests += 1;
          this.log('info', 'request.abandoned', 'the sender went away while sending its body', { hybridConnection: state.name });
          resolve(undefined);
        }
      });
    });
  }

  private senderError(req: IncomingMessage, res: ServerResponse, status: number, description: string, tracker: string): void {
    this.stats.relayErrors += 1;
    this.log(status >= 500 ? 'warn' : 'info', 'sender.error', `${status} ${description}`, { statusCode: status, hybridConnection: tracker });
    writeHttpError(res, status, description, tracker, this.options.now());
    if (!req.complete) req.resume();
  }

  // ---------------------------------------------------------------- WebSocket upgrades

  /** Answers an upgrade with a relay error stamped by the emulator's clock. */
  private refuseUpgrade(socket: Duplex, status: number, description: string, tracker: string): void {
    rejectUpgrade(socket, status, description, tracker, this.options.now());
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.closing !== undefined) return this.refuseUpgrade(socket, 503, RELAY_MESSAGES.shuttingDown, 'relay');
    const target = splitRequestTarget(req.url ?? '');
    if (target === undefined || !/^\/\$hc\//i.test(target.path)) {
      this.log('info', 'upgrade.rejected', `upgrade on a non-$hc path ${req.url ?? ''}`);
      return this.refuseUpgrade(socket, 400, RELAY_MESSAGES.upgradeNotRelayed, 'relay');
    }
    const action = queryValue(target.query, 'sb-hc-action')?.toLowerCase();
    const decoded = decodePath(target.path.slice('/$hc/'.length));
    if (action === 'request') return this.onRendezvousUpgrade(req, socket, head, decoded, queryValue(target.query, 'sb-hc-id'));
    if (decoded === undefined) return this.refuseUpgrade(socket, 400, RELAY_MESSAGES.badRequest, 'relay');
    switch (action) {
      case 'listen':
        return this.onListenUpgrade(req, socket, head, decoded, target.query);
      case 'connect':
        return this.onWebSocketSender(req, socket, decoded, target.query);
      case 'accept':
        return this.refuseUpgrade(socket, 410, 'The accept address is unknown or expired.', 'relay');
      default:
        return this.refuseUpgrade(socket, 400, RELAY_MESSAGES.badAction, 'relay');
    }
  }

  private onListenUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string, query: string | undefined): void {
    const resolved = this.resolve(path.replace(/\/+$/, ''), true);
    if (resolved === undefined) return this.rejectListener(socket, undefined, 404, RELAY_MESSAGES.endpointNotFound);
    const { state } = resolved;
    if (state.isRefusingListeners(this.options.now())) return this.rejectListener(socket, state, 503, RELAY_MESSAGES.listenersRefused);
    const token = headerValue(req.headers.servicebusauthorization) ?? queryValue(query, 'sb-hc-token');
    const auth = this.authorizeFor(state, token, 'Listen', req.headers.host);
    if (!auth.ok) return this.rejectListener(socket, state, auth.status, auth.description);
    if (state.listeners.length >= this.options.maxListenersPerConnection) {
      return this.rejectListener(socket, state, 403, RELAY_MESSAGES.quotaExceeded);
    }
    const rendezvousOrigin = this.rendezvousOrigin(req);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      if (this.closing !== undefined) {
        ws.terminate();
        return;
      }
      state.consecutiveRejections = 0;
      const channel = new ListenerChannel(
        this.context,
        state,
        ws,
        { rendezvousOrigin, trackingId: queryValue(query, 'sb-hc-id'), remoteAddress: req.socket.remoteAddress, tokenExpiresAtMs: auth.expiresAtMs },
        {
          authorizeRenewal: (renewed) => this.authorizeFor(state, renewed, 'Listen', req.headers.host),
          closed: (closedChannel, code) => this.onListenerClosed(state, closedChannel, code),
        },
      );
      state.add(channel);
      channel.start();
      this.stats.listenerConnections += 1;
      this.log('info', 'listener.connected', `listener connected (${state.listeners.length} on this hybrid connection)`, {
        hybridConnection: state.name,
        listenerId: channel.id,
      });
    });
  }

  /**
   * Where this listener's rendezvous sockets go: the configured public URL, else the scheme, host and port it came in
   * on (wss when its socket is TLS, as on the TLS port of `startEmulators`; Host header, else the socket's own address).
   */
  private rendezvousOrigin(req: IncomingMessage): string {
    if (this.options.publicOrigin !== undefined) return this.options.publicOrigin;
    const socket = req.socket as TLSSocket;
    const scheme = socket.encrypted === true ? 'wss' : 'ws';
    const host = req.headers.host;
    if (host !== undefined && SAFE_HOST.test(host)) return `${scheme}://${host}`;
    return `${scheme}://${toBoundHost(socket.localAddress ?? this.host)}:${socket.localPort ?? this.port}`;
  }

  private rejectListener(socket: Duplex, state: HybridConnectionState | undefined, status: number, description: string): void {
    this.stats.listenerRejections += 1;
    const attempts = state === undefined ? 1 : (state.consecutiveRejections += 1);
    // A listener retries forever (spec §4.6): failures are loud (P4), but a client without back-off must not flood the
    // log (P6), so only the 1st, 2nd, 4th, 8th… failure in a row is a warning.
    const loud = (attempts & (attempts - 1)) === 0;
    this.log(loud ? 'warn' : 'debug', 'listener.rejected', `listen attempt refused with ${status} (${attempts} in a row): ${description}`, {
      statusCode: status,
      ...(state === undefined ? {} : { hybridConnection: state.name }),
    });
    this.refuseUpgrade(socket, status, description, state?.name ?? 'relay');
  }

  private onListenerClosed(state: HybridConnectionState, channel: ListenerChannel, code: number): void {
    state.remove(channel);
    state.silenced.delete(channel);
    this.stats.listenerDisconnections += 1;
    this.log('info', 'listener.disconnected', `listener disconnected with code ${code} (${state.listeners.length} left)`, {
      hybridConnection: state.name,
      listenerId: channel.id,
      closeCode: code,
    });
    for (const request of [...this.context.requests.values()]) request.onChannelClosed(channel);
  }

  /**
   * Rendezvous upgrades are always accepted, then closed (1001) when they match no request waiting for one:
   * hyco-https has no error handler on its response-rendezvous socket, so refusing the handshake would crash the
   * listener process (spec §6.4, §11 P12).
   */
  private onRendezvousUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string | undefined, id: string | undefined): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', (error) => this.log('debug', 'rendezvous.error', `rendezvous socket error: ${error.message}`));
      this.rendezvousSockets.add(ws);
      ws.once('close', (code: number) => {
        this.rendezvousSockets.delete(ws);
        this.log('debug', 'rendezvous.closed', `rendezvous socket closed with ${code}`, { closeCode: code, ...(id === undefined ? {} : { requestId: id }) });
      });
      const found = id === undefined ? undefined : this.context.requests.get(id);
      // The id is the capability; the path must still name the request's own hybrid connection.
      const request =
        found !== undefined && path !== undefined && resolveEntity([found.hybridConnection], path.replace(/\/+$/, '')) !== undefined
          ? found
          : undefined;
      if (this.closing !== undefined || request === undefined || !request.attachRendezvous(ws)) {
        this.stats.lateRendezvous += 1;
        this.log('info', 'rendezvous.late', `rendezvous for unknown or finished request ${id ?? '(no id)'} accepted and closed`, {
          ...(id === undefined ? {} : { requestId: id }),
        });
        ws.close(1001, 'Unknown or expired rendezvous');
      }
    });
  }

  /** WebSocket senders would be routed to hyco-https listeners, which crash on `accept` (spec §7, §11 P16). */
  private onWebSocketSender(req: IncomingMessage, socket: Duplex, path: string, query: string | undefined): void {
    const resolved = this.resolve(path.replace(/\/+$/, ''), false);
    if (resolved === undefined) return this.refuseUpgrade(socket, 404, RELAY_MESSAGES.endpointNotFound, 'relay');
    const { state } = resolved;
    if (state.definition.requiresClientAuthorization) {
      const token = headerValue(req.headers.servicebusauthorization) ?? queryValue(query, 'sb-hc-token');
      const auth = this.authorizeFor(state, token, 'Send', req.headers.host);
      if (!auth.ok) return this.refuseUpgrade(socket, auth.status, auth.description, state.name);
    }
    if (!state.hasListener()) return this.refuseUpgrade(socket, this.options.noListenerStatus, RELAY_MESSAGES.noListener, state.name);
    return this.refuseUpgrade(socket, 501, RELAY_MESSAGES.webSocketSendersUnsupported, state.name);
  }

  // ---------------------------------------------------------------- lifecycle

  private async shutdown(): Promise<void> {
    this.options.abortSignal?.removeEventListener('abort', this.onAbort);
    for (const request of [...this.context.requests.values()]) {
      request.fail(503, RELAY_MESSAGES.shuttingDown, 'the emulator is closing');
    }
    const sockets: WebSocket[] = [...this.rendezvousSockets];
    for (const state of this.hybridConnections.values()) {
      for (const channel of [...state.listeners, ...state.silenced]) {
        channel.terminate();
      }
    }
    for (const ws of sockets) ws.terminate();
    await new Promise<void>((resolve) => {
      // Without a plaintext port the server never listened: close() still stops its connection tracking.
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    this.wss.close();
    this.log('info', 'emulator.closed', 'relay emulator closed');
  }

  private safely(what: string, action: () => Promise<void>, res: ServerResponse): void {
    action().catch((error: unknown) => {
      this.log('error', `${what}.internalError`, `internal error: ${error instanceof Error ? error.message : String(error)}`);
      writeHttpError(res, 500, 'Internal error.', 'relay', this.options.now());
    });
  }

  private log(level: RelayLogLevel, event: string, message: string, fields: LogFields = {}): void {
    const logger = this.options.logger;
    if (logger === undefined) return;
    try {
      logger({ level, event, message, timeInMs: this.options.now(), ...fields });
    } catch {
      // A throwing logger must not take the relay down.
    }
  }
}

/** Close codes a close frame may carry (RFC 6455 §7.4; 1004-1006 and 1015 are reserved). */
function isSendableCloseCode(code: number): boolean {
  if (!Number.isInteger(code)) return false;
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text.length === 0 ? undefined : text;
}

/** Starts a relay emulator; resolves once it listens. */
export async function startRelayEmulator(options: RelayEmulatorOptions = {}): Promise<RelayEmulator> {
  const emulator = new RelayEmulatorServer(resolveRelayEmulatorOptions(options));
  await emulator.start();
  return emulator;
}
