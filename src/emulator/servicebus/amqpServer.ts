/**
 * The AMQP side of the emulator, on rhea's server support: SASL (ANONYMOUS or none), CBS put-token, `$management`,
 * sender and receiver links for entities. rhea is driven through a few instance-level hooks, each explained where it
 * is made: raw bytes of incoming messages, the drain answer, holding an attach for `acceptNextSession`, and forgetting
 * deliveries once settled.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage as HttpRequest } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import rhea from 'rhea';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { Connection, Delivery, EventContext, Receiver, Sender, Session } from 'rhea';
import { audienceCovers, parseSasToken, sasFailurePrefixOf, verifySasToken } from '../../core/sas.js';
import { entityPathOf, scopeCovers, signingKeyFor, type RuleHolder } from './authorization.js';
import { SECTION, bytesToUuid, readBinary, splitSections, swapGuidBytes, toDotNetTicks, uuidToBytes } from './amqpCodec.js';
import type { Broker} from './broker.js';
import { BrokerError, type Consumer, type MessageStore, type SendEntity, type SettleOutcome } from './broker.js';
import { handleManagementRequest, type ManagementContext } from './management.js';
import { InvalidMessageError, encodeForDelivery, parseIncoming, type IncomingMessage, type StoredMessage } from './message.js';
import { FrameGuard } from './frameGuard.js';
import { DEFAULT_MAX_MESSAGE_SIZE, type AccessRight, type ConnectionLimits, type SharedAccessPolicy } from './options.js';
import { decodeMessage, rheaTypes, type RheaDeliveryView, type RheaLinkView, type RheaSessionView } from './rheaTypes.js';

interface Outcome {
  described(): unknown;
}

/** rhea's outcome constructors, which its typings leave out. */
const outcomes = rhea.message as unknown as {
  accepted(): Outcome;
  rejected(fields: object): Outcome;
  modified(fields: object): Outcome;
  released(): Outcome;
};

/** Stands in for format 0 while a transfer passes through rhea, so rhea hands over the bytes instead of decoding. */
const RAW_FORMAT_ZERO = 0x7fff_fff0;
const BATCH_FORMAT = 0x80013700;
const LOCK_LOST = 'The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.';

interface Grant {
  audience: string;
  expiresAt: number;
  rights: readonly AccessRight[];
}

interface ConnectionState {
  connection: Connection;
  socket: Duplex | undefined;
  grants: Grant[];
  /** Reply links for CBS and `$management`, by link name and by target address. */
  replyLinks: Map<string, Sender>;
  cleanups: Set<() => void>;
}

export interface AmqpServerOptions {
  host: string;
  port: number;
  policies: readonly SharedAccessPolicy[];
  limits: ConnectionLimits;
  /** The broker's own clock (`Broker.now`), never a second one. */
  now: () => number;
}

function entityPath(address: unknown): string {
  return typeof address === 'string' ? entityPathOf(address) : '';
}

function errorOf(condition: string, description: string): { condition: string; description: string } {
  return { condition, description };
}

function notFound(host: string, path: string): { condition: string; description: string } {
  return errorOf(
    'amqp:not-found',
    `The messaging entity 'sb://${host}/${path}' could not be found. To know more visit https://aka.ms/sbResourceMgrExceptions.`,
  );
}

/** The path and subprotocol of AMQP over WebSockets, as Azure serves them. */
export const WEBSOCKET_PATH = '/$servicebus/websocket';
export const WEBSOCKET_PROTOCOL = 'AMQPWSB10';

export class AmqpServer {
  private readonly container = rhea.create_container({ id: `servicebus-emulator-${randomBytes(4).toString('hex')}` });
  private readonly servers: Server[] = [];
  private readonly states = new Map<Connection, ConnectionState>();
  /** Every byte stream rhea reads: TCP sockets, TLS sockets and WebSocket streams alike. */
  private readonly sockets = new Set<Duplex>();
  /** Each socket's frame guard; a connection's is found through its socket. */
  private readonly guards = new WeakMap<Duplex, FrameGuard>();
  /**
   * AMQP over WebSockets: one binary WebSocket message per AMQP frame (or protocol header), so a message never needs
   * to be larger than the advertised max-frame-size; ws refuses larger ones before buffering them.
   */
  private readonly webSockets: WebSocketServer;
  private closing = false;

  constructor(
    private readonly broker: Broker,
    private readonly options: AmqpServerOptions,
  ) {
    this.webSockets = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      clientTracking: false,
      maxPayload: options.limits.maxFrameSizeInBytes,
      handleProtocols: (protocols) => (protocols.has(WEBSOCKET_PROTOCOL) ? WEBSOCKET_PROTOCOL : false),
    });
    const c = this.container;
    c.on('connection_open', (context: EventContext) => this.onConnectionOpen(context));
    c.on('session_open', (context: EventContext) => this.onSessionOpen(context.session!));
    c.on('receiver_open', (context: EventContext) => this.guarded(context.receiver!, () => this.onClientSender(context)));
    c.on('sender_open', (context: EventContext) => this.guarded(context.sender!, () => this.onClientReceiver(context)));
    c.on('session_close', (context: EventContext) => this.onSessionClose(context.session!));
    c.on('disconnected', (context: EventContext) => this.onGone(context.connection));
    c.on('connection_close', (context: EventContext) => this.onGone(context.connection));
    // Without listeners rhea would throw these out of the event loop.
    c.on('error', () => undefined);
    c.on('protocol_error', () => undefined);
    c.on('connection_error', () => undefined);
    c.on('session_error', () => undefined);
    c.on('receiver_error', () => undefined);
    c.on('sender_error', () => undefined);
  }

  /** A bug in link set-up refuses that one link instead of tearing down the whole connection. */
  private guarded(link: Sender | Receiver, setUp: () => void): void {
    try {
      setUp();
    } catch (error) {
      try {
        this.refuse(link, errorOf('amqp:internal-error', `The emulator could not attach the link: ${(error as Error).message}`));
      } catch {
        // the link is already gone
      }
    }
  }

  /** A session ended without detaching its links first: release what those links held. */
  private onSessionClose(session: Session): void {
    const links = (session as unknown as { links: Record<string, object> }).links;
    for (const link of Object.values(links)) this.linkCleanups.get(link)?.();
  }

  private readonly linkCleanups = new WeakMap<object, () => void>();

  /**
   * Listens on the configured host; for `localhost`, on both 127.0.0.1 and ::1 with the same port (the IPv6 listener
   * is best effort: a machine without IPv6 still gets the IPv4 one).
   */
  async listen(): Promise<number> {
    const hosts = this.options.host === 'localhost' ? ['127.0.0.1', '::1'] : [this.options.host];
    const port = await this.listenOn(hosts[0]!, this.options.port);
    for (const host of hosts.slice(1)) {
      await this.listenOn(host, port).catch(() => undefined);
    }
    return port;
  }

  private async listenOn(host: string, port: number): Promise<number> {
    // Nagle plus delayed ACK stalls single-message round trips by ~40 ms.
    const server = createServer({ noDelay: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => reject(error);
      server.once('error', onError);
      server.listen({ host, port }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    this.servers.push(server);
    return (server.address() as AddressInfo).port;
  }

  /**
   * Serves AMQP on a byte stream that is already connected: a TCP socket from the plaintext port, a TLS socket whose
   * first bytes said `AMQP`, or the stream of an AMQP-over-WebSocket connection. Every one gets a FrameGuard.
   */
  accept(socket: Duplex): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    if (this.closing) {
      socket.destroy();
      return;
    }
    const connection = this.container.create_connection({
      // Ask clients to heartbeat (the SDK then sends an empty frame every 30 s) so that peers which vanished without
      // closing their socket are dropped after two silent minutes; rhea answers the client's own idle timeout.
      idle_time_out: 60_000,
      // Advertised, and enforced by each connection's FrameGuard.
      max_frame_size: this.options.limits.maxFrameSizeInBytes,
      receiver_options: { autoaccept: false, credit_window: 500 },
      sender_options: { autosettle: false, treat_modified_as_released: false },
    } as unknown as Parameters<typeof this.container.create_connection>[0]);
    (connection as unknown as { accept(socket: Duplex): void }).accept(socket);
    this.guard(socket);
  }

  /**
   * Takes an HTTP upgrade for AMQP over WebSockets (`/$servicebus/websocket`, subprotocol `AMQPWSB10`), as Azure
   * serves it on 443; the binary messages carry the same byte stream as a TCP connection would.
   */
  acceptWebSocket(req: HttpRequest, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((protocol) => protocol.trim());
    if (this.closing || !offered.includes(WEBSOCKET_PROTOCOL)) {
      const status = this.closing ? '503 Service Unavailable' : '400 Bad Request';
      const text = this.closing ? 'The Service Bus emulator is shutting down.' : `AMQP over WebSockets needs the ${WEBSOCKET_PROTOCOL} subprotocol.`;
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
      return;
    }
    this.webSockets.handleUpgrade(req, socket, head, (ws) => {
      this.accept(createWebSocketStream(ws));
    });
  }

  /**
   * Puts a FrameGuard between the socket and rhea (which has just attached its reader: this listener runs after
   * rhea's own), and a deadline for authentication. A violation or a missed deadline ends the connection: with an
   * AMQP close when the peer got as far as `open`, by closing the socket otherwise.
   */
  private guard(socket: Duplex): void {
    const { limits } = this.options;
    const readers = socket.listeners('data') as ((chunk: Buffer) => void)[];
    socket.removeAllListeners('data');
    const end = (condition: string, description: string): void => {
      clearTimeout(deadline);
      const connection = this.connectionOn(socket);
      if (connection !== undefined && !connection.is_closed()) {
        try {
          connection.close(errorOf(condition, description));
        } catch {
          // the socket may already be gone
        }
        // rhea writes the close frame on the next tick: end the socket after it.
        setImmediate(() => socket.end());
      } else {
        socket.end();
      }
      // A peer that does not close its side in time loses the socket anyway.
      setTimeout(() => socket.destroy(), 1_000).unref();
    };
    const guard = new FrameGuard(limits, (reason) => end('amqp:connection:framing-error', `Connection closed: ${reason}.`));
    this.guards.set(socket, guard);
    const deadline = setTimeout(() => {
      if (!guard.authenticated) end('amqp:unauthorized-access', `No CBS token was accepted within ${limits.authenticationTimeoutInMs} ms of connecting.`);
    }, limits.authenticationTimeoutInMs);
    socket.once('close', () => clearTimeout(deadline));
    socket.on('data', (chunk: Buffer) => {
      if (!guard.admit(chunk)) return;
      for (const read of readers) read(chunk);
    });
  }

  /** The rhea connection open on a socket, if the peer got as far as `open`. */
  private connectionOn(socket: Duplex): Connection | undefined {
    for (const connection of this.states.keys()) {
      if ((connection as unknown as { socket?: Duplex }).socket === socket) return connection;
    }
    return undefined;
  }

  get connectionCount(): number {
    return this.states.size;
  }

  /** Closes every connection with `amqp:connection:forced`, then the listener. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const state of [...this.states.values()]) {
      this.runCleanups(state);
      try {
        state.connection.close(errorOf('amqp:connection:forced', 'The Service Bus emulator is shutting down.'));
      } catch {
        // the socket may already be gone
      }
    }
    const deadline = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, 500);
    const drained = Promise.all([...this.sockets].map((socket) => new Promise<void>((resolve) => {
      if (socket.destroyed) resolve();
      else socket.once('close', () => resolve());
    })));
    await drained;
    clearTimeout(deadline);
    await closed;
    this.webSockets.close();
    this.states.clear();
  }

  private state(connection: Connection): ConnectionState {
    let state = this.states.get(connection);
    if (state === undefined) {
      state = { connection, socket: undefined, grants: [], replyLinks: new Map(), cleanups: new Set() };
      this.states.set(connection, state);
    }
    return state;
  }

  private onConnectionOpen(context: EventContext): void {
    const connection = context.connection;
    if (this.closing) {
      connection.close(errorOf('amqp:connection:forced', 'The Service Bus emulator is shutting down.'));
      return;
    }
    this.state(connection);
  }

  private runCleanups(state: ConnectionState): void {
    for (const cleanup of [...state.cleanups]) cleanup();
    state.cleanups.clear();
  }

  private onGone(connection: Connection): void {
    const state = this.states.get(connection);
    if (state === undefined) return;
    this.runCleanups(state);
    this.states.delete(connection);
  }

  /**
   * rhea decodes format-0 transfers into JavaScript values, which loses the exact bytes the emulator must keep.
   * Relabelling the format on the way in makes rhea hand over the raw payload for this session only.
   */
  private onSessionOpen(session: Session): void {
    const view = session as unknown as RheaSessionView;
    const original = view.on_transfer.bind(session);
    // Bytes so far of each link's transfer still arriving in several frames (`more`): rhea would gather them without
    // end. Past twice the link's max message size (which the SDK checks before sending) the connection is closed.
    const gathering = new Map<number, number>();
    view.on_transfer = (frame) => {
      const performative = frame.performative;
      if (performative.message_format === 0) performative.message_format = RAW_FORMAT_ZERO;
      const handle = performative.handle ?? 0;
      const size = (gathering.get(handle) ?? 0) + (frame.payload?.length ?? 0);
      if (performative.more === true) {
        const link = view.remote.handles[handle] as RheaLinkView | undefined;
        const advertised = link?.local.attach.max_message_size;
        const limit = 2 * (typeof advertised === 'number' ? advertised : DEFAULT_MAX_MESSAGE_SIZE);
        if (size > limit) {
          gathering.delete(handle);
          session.connection.close(errorOf('amqp:link:message-size-exceeded', `A transfer grew past ${limit} bytes, twice the link's max-message-size.`));
          return;
        }
        gathering.set(handle, size);
      } else {
        gathering.delete(handle);
      }
      original(frame);
    };
  }

  private authorized(connection: Connection, path: string, right: AccessRight): boolean {
    const state = this.state(connection);
    const now = this.options.now();
    const target = `sb://emulator/${path}`;
    return state.grants.some(
      (grant) =>
        grant.expiresAt > now &&
        (grant.rights.includes(right) || grant.rights.includes('Manage')) &&
        audienceCovers(grant.audience, target, { compareHost: false }),
    );
  }

  private unauthorized(path: string, right: AccessRight): { condition: string; description: string } {
    return errorOf(
      'amqp:unauthorized-access',
      `Unauthorized access. '${right}' claim(s) are required to perform this operation. Resource: 'sb://${this.options.host}/${path}'.`,
    );
  }

  /** Refuses a link: an attach (rhea sends it) followed at once by a detach carrying the error. */
  private refuse(link: Sender | Receiver, error: { condition: string; description: string }, echo = false): void {
    const view = link as unknown as RheaLinkView;
    if (!echo) {
      view.local.attach.source = null;
      view.local.attach.target = null;
    } else {
      this.echoTermini(link);
    }
    if (!view.state.local_open) link.open();
    link.close(error);
  }

  private echoTermini(link: Sender | Receiver, filter?: Record<string, unknown>): void {
    const source = link.source as unknown as Record<string, unknown> | undefined;
    const target = link.target as unknown as Record<string, unknown> | undefined;
    const sourceFields: Record<string, unknown> = { address: source?.address };
    if (filter !== undefined) sourceFields.filter = filter;
    link.set_source(sourceFields as never);
    link.set_target({ address: target?.address } as never);
  }

  // ---- the client's senders (our receivers) ----

  private onClientSender(context: EventContext): void {
    const link = context.receiver!;
    const connection = context.connection;
    const target = link.target as unknown as { address?: string } | undefined;
    const path = entityPath(target?.address);
    if (path === '$cbs') {
      this.echoTermini(link);
      link.on('message', (ctx: EventContext) => this.onCbsRequest(ctx));
      return;
    }
    if (path.endsWith('/$management')) {
      const entityName = path.slice(0, -'/$management'.length);
      if (!this.authorized(connection, path, 'Listen') && !this.authorized(connection, path, 'Send')) {
        this.refuse(link, this.unauthorized(path, 'Listen'));
        return;
      }
      this.echoTermini(link);
      link.on('message', (ctx: EventContext) => this.onManagementRequest(ctx, entityName));
      return;
    }
    if (!this.authorized(connection, path, 'Send')) {
      this.refuse(link, this.unauthorized(path, 'Send'));
      return;
    }
    if (path.endsWith('/$deadletterqueue') || path.includes('/subscriptions/')) {
      this.refuse(link, errorOf('amqp:not-allowed', `Cannot send to '${path}': only queues and topics accept messages.`));
      return;
    }
    const entity = this.broker.sendTarget(path);
    if (entity === undefined) {
      this.refuse(link, notFound(this.options.host, path));
      return;
    }
    this.echoTermini(link);
    (link as unknown as RheaLinkView).local.attach.max_message_size = entity.props.maxMessageSizeInBytes;
    link.on('message', (ctx: EventContext) => this.onTransfer(ctx, entity));
  }

  private onTransfer(context: EventContext, entity: SendEntity): void {
    const delivery = context.delivery!;
    const raw = context.message as unknown as Buffer;
    const format = (context as unknown as { format?: number }).format;
    const limit = entity.props.maxMessageSizeInBytes;
    const reject = (condition: string, description: string): void => {
      delivery.reject(errorOf(condition, description));
    };
    if (raw.length > limit) {
      reject(
        'amqp:link:message-size-exceeded',
        `The received message (delivery-id:${(delivery as unknown as RheaDeliveryView).id}, size:${raw.length} bytes) exceeds the limit (${limit} bytes) currently allowed on the link.`,
      );
      return;
    }
    let messages: IncomingMessage[];
    try {
      if (format === BATCH_FORMAT) {
        messages = [];
        for (const section of splitSections(raw)) {
          if (section.code !== SECTION.data) continue;
          const inner = readBinary(raw, section.valueStart);
          messages.push(parseIncoming(Buffer.from(inner)));
        }
      } else {
        messages = [parseIncoming(Buffer.from(raw))];
      }
    } catch (error) {
      reject('amqp:decode-error', error instanceof InvalidMessageError ? error.message : `The message could not be decoded: ${(error as Error).message}`);
      return;
    }
    try {
      this.broker.send(entity, messages);
    } catch (error) {
      if (error instanceof BrokerError) reject(error.condition, error.message);
      else reject('amqp:internal-error', `The emulator failed to store the message: ${(error as Error).message}`);
      return;
    }
    const committed = this.broker.journal?.commit();
    if (committed === undefined) {
      delivery.accept();
      return;
    }
    committed.then(
      () => delivery.accept(),
      (error: unknown) => reject('amqp:internal-error', `The emulator could not make the message durable: ${(error as Error).message}`),
    );
  }

  // ---- CBS ----

  private replyTo(connection: Connection, address: unknown, body: Record<string, unknown>): void {
    if (typeof address !== 'string') return;
    const link = this.state(connection).replyLinks.get(address);
    if (link === undefined || !link.is_open()) return;
    link.send(body as never);
  }

  private onCbsRequest(context: EventContext): void {
    const delivery = context.delivery!;
    delivery.accept();
    let request;
    try {
      request = decodeMessage(context.message as unknown as Buffer) as ReturnType<typeof decodeMessage> & { reply_to?: string };
    } catch {
      return;
    }
    const props = request.application_properties ?? {};
    const respond = (code: number, description: string): void => {
      this.replyTo(context.connection, request.reply_to, {
        correlation_id: request.message_id,
        application_properties: { 'status-code': code, 'status-description': description },
      });
    };
    if (props.operation !== 'put-token') {
      respond(400, `The CBS operation '${String(props.operation)}' is not supported.`);
      return;
    }
    const audience = typeof props.name === 'string' ? props.name : '';
    const token = typeof request.body === 'string' ? request.body : '';
    if (props.type === 'jwt') {
      respond(401, 'InvalidToken: the emulator accepts only SAS tokens (servicebus.windows.net:sastoken).');
      return;
    }
    try {
      // The key is looked up where the token's resource lies: that entity's rules, then the namespace's policies.
      const claimed = parseSasToken(token);
      const find = (path: string): RuleHolder | undefined => this.broker.entities.get(path);
      const signingKey = signingKeyFor(claimed.keyName, entityPathOf(claimed.resource), this.options.policies, find);
      const parsed = verifySasToken(token, {
        keysFor: () =>
          signingKey === undefined ? undefined : [signingKey.policy.primaryKey, ...(signingKey.policy.secondaryKey === undefined ? [] : [signingKey.policy.secondaryKey])],
        nowInMs: this.options.now(),
      });
      if (!audienceCovers(parsed.resource, audience, { compareHost: false }) || !scopeCovers(signingKey!, entityPathOf(audience), find)) {
        respond(401, `InvalidAudience: the token for '${parsed.resource}' does not grant access to '${audience}'.`);
        return;
      }
      const policy = signingKey!.policy;
      const state = this.state(context.connection);
      state.grants = state.grants.filter((grant) => grant.audience !== audience);
      state.grants.push({ audience, expiresAt: parsed.expiresOnInSeconds * 1000, rights: policy.rights });
      // Authenticated: the connection may now send frames up to the advertised size, and has no deadline.
      const socket = (context.connection as unknown as { socket?: Duplex }).socket;
      if (socket !== undefined) this.guards.get(socket)?.authenticate();
      respond(202, 'Accepted');
    } catch (error) {
      respond(401, `${sasFailurePrefixOf(error)}: ${(error as Error).message}`);
    }
  }

  // ---- $management ----

  private onManagementRequest(context: EventContext, entityName: string): void {
    context.delivery!.accept();
    let request;
    try {
      request = decodeMessage(context.message as unknown as Buffer) as ReturnType<typeof decodeMessage> & { reply_to?: string };
    } catch {
      return;
    }
    const management: ManagementContext = {
      broker: this.broker,
      entityPath: entityName,
      host: this.options.host,
      authorized: (right) => this.authorized(context.connection, `${entityName}/$management`, right),
      consumerFor: (store, sessionId) => this.sessionOwners.get(store)?.get(sessionId),
    };
    const respond = (status: number, description: string, body?: unknown, condition?: string): void => {
      const properties: Record<string, unknown> = { statusCode: status, statusDescription: description };
      if (condition !== undefined) properties.errorCondition = rheaTypes.wrap_symbol(condition);
      const reply: Record<string, unknown> = { correlation_id: request.message_id, application_properties: properties };
      if (body !== undefined) reply.body = body;
      this.replyTo(context.connection, request.reply_to, reply);
    };
    let result;
    try {
      result = handleManagementRequest(management, request);
    } catch (error) {
      if (error instanceof BrokerError) {
        respond(statusFor(error.condition), error.message, undefined, error.condition);
      } else {
        respond(500, `The emulator failed: ${(error as Error).message}`, undefined, 'amqp:internal-error');
      }
      return;
    }
    const { status, description, body } = result;
    const committed = this.broker.journal?.commit();
    if (committed === undefined) {
      respond(status, description, body);
      return;
    }
    committed.then(
      () => respond(status, description, body),
      (error: unknown) => respond(500, `The emulator could not persist the change: ${(error as Error).message}`, undefined, 'amqp:internal-error'),
    );
  }

  // ---- the client's receivers (our senders) ----

  private readonly sessionOwners = new Map<MessageStore, Map<string, EntityConsumer>>();

  private onClientReceiver(context: EventContext): void {
    const link = context.sender!;
    const connection = context.connection;
    const source = link.source as unknown as { address?: string; filter?: Record<string, unknown> } | undefined;
    const target = link.target as unknown as { address?: string } | undefined;
    const path = entityPath(source?.address);
    const state = this.state(connection);
    if (path === '$cbs' || path.endsWith('/$management')) {
      this.echoTermini(link);
      state.replyLinks.set(link.name, link);
      if (typeof target?.address === 'string') state.replyLinks.set(target.address, link);
      const forget = (): void => {
        if (state.replyLinks.get(link.name) === link) state.replyLinks.delete(link.name);
        if (typeof target?.address === 'string' && state.replyLinks.get(target.address) === link) state.replyLinks.delete(target.address);
      };
      link.on('sender_close', forget);
      link.on('accepted', (ctx: EventContext) => settleLocally(ctx.delivery!));
      return;
    }
    if (!this.authorized(connection, path, 'Listen')) {
      this.refuse(link, this.unauthorized(path, 'Listen'));
      return;
    }
    const store = this.broker.receiveStore(path);
    if (store === undefined) {
      this.refuse(link, notFound(this.options.host, path));
      return;
    }
    const filter = source?.filter;
    const wantsSession = filter !== undefined && filter !== null && 'com.microsoft:session-filter' in filter;
    if (store.requiresSession && !wantsSession) {
      this.refuse(link, errorOf('amqp:not-allowed', `It is not possible for an entity that requires sessions to create a non-sessionful message receiver. TrackingId: ${path}`));
      return;
    }
    if (!store.requiresSession && wantsSession) {
      this.refuse(link, errorOf('amqp:not-allowed', `It is not possible for an entity that does not require sessions to create a sessionful message receiver. TrackingId: ${path}`));
      return;
    }
    const view = link as unknown as RheaLinkView;
    const remote = view.remote.attach ?? {};
    view.local.attach.snd_settle_mode = remote.snd_settle_mode;
    view.local.attach.rcv_settle_mode = remote.rcv_settle_mode;
    const consumer = new EntityConsumer(link, store, remote.snd_settle_mode === 1);
    const cleanup = (): void => {
      state.cleanups.delete(cleanup);
      consumer.detached();
      if (consumer.sessionId !== undefined) this.sessionOwners.get(store)?.delete(consumer.sessionId);
    };
    state.cleanups.add(cleanup);
    this.linkCleanups.set(link, cleanup);
    link.on('sender_close', cleanup);
    link.on('sender_draining', () => consumer.drain());
    link.on('sender_flow', () => store.pump());
    for (const outcome of ['accepted', 'rejected', 'modified', 'released'] as const) {
      link.on(outcome, (ctx: EventContext) => consumer.settled(ctx.delivery!, outcome));
    }
    if (!wantsSession) {
      this.echoTermini(link);
      store.addConsumer(consumer);
      return;
    }
    const requested = filter['com.microsoft:session-filter'];
    const grant = (sessionId: string): boolean => {
      const lockedUntil = store.lockSession(sessionId, consumer);
      if (lockedUntil === undefined) return false;
      consumer.sessionId = sessionId;
      let owners = this.sessionOwners.get(store);
      if (owners === undefined) {
        owners = new Map();
        this.sessionOwners.set(store, owners);
      }
      owners.set(sessionId, consumer);
      this.echoTermini(link, { 'com.microsoft:session-filter': sessionId });
      view.local.attach.properties = { 'com.microsoft:locked-until-utc': rheaTypes.wrap_long(longBytes(toDotNetTicks(lockedUntil))) };
      if (!view.state.local_open) link.open();
      store.addConsumer(consumer);
      return true;
    };
    if (typeof requested === 'string') {
      if (!grant(requested)) {
        this.refuse(link, errorOf('com.microsoft:session-cannot-be-locked', `The requested session '${requested}' cannot be accepted. It may be locked by another receiver.`));
      }
      return;
    }
    const next = store.nextFreeSession();
    if (next !== undefined && grant(next)) return;
    // acceptNextSession long-poll: hold the attach answer until a session frees up or the client's timeout passes.
    view.state.local_open = false;
    view.state.open_requests = 0;
    const properties = (remote.properties ?? {}) as Record<string, unknown>;
    const timeoutInMs = typeof properties['com.microsoft:timeout'] === 'number' ? properties['com.microsoft:timeout'] : 60_000;
    let done = false;
    const stopWaiting = store.waitForSession(() => {
      if (done) return true;
      const candidate = store.nextFreeSession();
      if (candidate === undefined || !grant(candidate)) return false;
      finish();
      return true;
    });
    const timer = setTimeout(() => {
      if (done) return;
      finish();
      this.refuse(link, errorOf('com.microsoft:timeout', 'The operation did not complete within the allotted timeout: no session is available.'));
    }, timeoutInMs);
    const finish = (): void => {
      done = true;
      clearTimeout(timer);
      stopWaiting();
      state.cleanups.delete(abandonWait);
    };
    const abandonWait = (): void => finish();
    state.cleanups.add(abandonWait);
    consumer.onDetached = abandonWait;
  }
}

/** The `$management` status code that goes with an error condition. */
function statusFor(condition: string): number {
  switch (condition) {
    case 'amqp:not-found':
    case 'com.microsoft:message-not-found':
      return 404;
    case 'com.microsoft:message-lock-lost':
    case 'com.microsoft:session-lock-lost':
      return 410;
    case 'amqp:unauthorized-access':
      return 401;
    case 'amqp:not-implemented':
      return 501;
    default:
      return 400;
  }
}

function longBytes(value: bigint): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigInt64BE(value);
  return out;
}

/** Marks a delivery as settled on both sides so rhea can drop it from its window. */
function settleLocally(delivery: Delivery): void {
  const view = delivery as unknown as RheaDeliveryView;
  view.settled = true;
  view.remote_settled = true;
}

/** A client's receive link on a queue, subscription or dead-letter queue. */
class EntityConsumer implements Consumer {
  sessionId: string | undefined;
  /** Called once when the link goes away (used to stop an acceptNextSession wait). */
  onDetached: (() => void) | undefined;
  private open = true;
  private readonly view: RheaLinkView;
  private echoDrain = false;
  private tagCounter = 0;

  constructor(
    private readonly link: Sender,
    private readonly store: MessageStore,
    readonly receiveAndDelete: boolean,
  ) {
    this.view = link as unknown as RheaLinkView;
    // rhea answers a drain only while credit is left; the SDK also drains with zero credit and waits for the answer.
    this.view._get_drain = () => {
      if (!this.echoDrain) return false;
      this.echoDrain = false;
      this.view.delivery_count += this.view.credit;
      this.view.credit = 0;
      this.view._draining = false;
      return true;
    };
  }

  private pending(): number {
    const outgoing = this.view.session.outgoing;
    return outgoing.next_delivery_id - outgoing.next_pending_delivery;
  }

  credit(): number {
    if (!this.open || !this.link.is_open() || this.echoDrain) return 0;
    const pending = this.pending();
    return Math.min(this.view.credit - pending, this.view.session.outgoing.available());
  }

  deliver(message: StoredMessage): void {
    const lockedUntil = this.receiveAndDelete ? undefined : message.lockedUntil;
    const bytes = encodeForDelivery(message, lockedUntil === undefined ? {} : { lockedUntil });
    let tag: Buffer;
    if (message.lockToken !== undefined && !this.receiveAndDelete) {
      tag = swapGuidBytes(uuidToBytes(message.lockToken));
    } else {
      tag = Buffer.alloc(16);
      tag.writeUInt32BE(this.tagCounter++ >>> 0, 12);
    }
    this.link.send(bytes, tag, 0);
  }

  drain(): void {
    this.store.pump();
    this.echoDrain = true;
    this.view.issue_flow = true;
    this.view.connection._register();
  }

  settled(delivery: Delivery, outcome: 'accepted' | 'rejected' | 'modified' | 'released'): void {
    const view = delivery as unknown as RheaDeliveryView;
    if (view.remote_settled && this.receiveAndDelete) return;
    const token = bytesToUuid(swapGuidBytes(view.tag));
    const state = view.remote_state ?? ({} as NonNullable<RheaDeliveryView['remote_state']>);
    let settle: SettleOutcome;
    let answer: unknown;
    switch (outcome) {
      case 'accepted':
        settle = { kind: 'complete' };
        answer = outcomes.accepted();
        break;
      case 'rejected': {
        const error = (state.error ?? {}) as { condition?: string; info?: Record<string, unknown> };
        const info = { ...(error.info ?? {}) };
        const reason = typeof info.DeadLetterReason === 'string' ? info.DeadLetterReason : undefined;
        const description = typeof info.DeadLetterErrorDescription === 'string' ? info.DeadLetterErrorDescription : undefined;
        delete info.DeadLetterReason;
        delete info.DeadLetterErrorDescription;
        settle = { kind: 'deadLetter', reason, description, properties: info };
        // Never echo the client's dead-letter error: the SDK would take it as a failed settlement.
        answer = outcomes.rejected({});
        break;
      }
      case 'modified': {
        const properties = state.message_annotations;
        settle = state.undeliverable_here === true ? { kind: 'defer', properties } : { kind: 'abandon', properties };
        answer = outcomes.modified({ delivery_failed: state.delivery_failed, undeliverable_here: state.undeliverable_here });
        break;
      }
      case 'released':
        settle = { kind: 'abandon' };
        answer = outcomes.released();
        break;
    }
    const result = this.store.settle(token, settle);
    const outcomeState =
      result === 'ok'
        ? (answer as Outcome).described()
        : outcomes.rejected({ error: errorOf('com.microsoft:message-lock-lost', LOCK_LOST) }).described();
    view.update(true, outcomeState);
    view.remote_settled = true;
  }

  sessionLockLost(): void {
    if (!this.open) return;
    this.link.close(errorOf('com.microsoft:session-lock-lost', `The session lock has expired on the session '${this.sessionId}'.`));
    this.detached();
  }

  detached(): void {
    if (!this.open) return;
    this.open = false;
    this.onDetached?.();
    this.store.removeConsumer(this);
  }
}
