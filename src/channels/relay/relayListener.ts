/**
 * The store's side of the real-time channel: a hyco-https listener on the store's hybrid connection that serves only
 * `POST /<hc>/operations/<type>` for the types the store exposes and `GET /<hc>/health`, and hands each operation to
 * the store's executor. Its lifecycle is machines/relayListener.machine.ts; this file provides the chart's
 * `controlChannel` actor, one hyco-https server per invocation, closed by the actor's cleanup when the chart leaves
 * `online`.
 *
 * hyco-https 1.4.5 quirks handled here (see the relay spec, §4.6 and §11):
 * - it reconnects after a dropped channel by itself, but a `close()` during its back-off leaves a zombie that
 *   reconnects later (P14): every failed attempt retires its server at once, inside the `error` event, before
 *   hyco-https schedules anything, and the chart's own back-off opens a fresh server;
 * - it never notices a half-open control channel (P5): the listener pings the relay and terminates the channel when
 *   no pong comes back;
 * - a string token can never be renewed (P4): the token is a function;
 * - it takes no agent and no CA for its WebSockets: hycoWebSocket.ts says how a proxy and an extra CA reach them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HycoControlChannel, HycoServer } from 'hyco-https';
import { BehaviorSubject, type Observable } from 'rxjs';
import { createActor, fromCallback, type Actor, type SnapshotFrom } from 'xstate';
import {
  relayListenerMachine,
  type ControlChannelEvent,
  type ListenerFailureKind,
  type RelayListenerContext,
} from '../../../machines/relayListener.machine.js';
import { parseConnectionString, relayListenUrl, relayTokenAudience, sasTokenFor } from '../../core/connectionString.js';
import { withJitter } from '../../core/backoff.js';
import { StorelinkError, isStorelinkError, storeHttpStatusOf } from '../../core/errors.js';
import { MAX_JSON_DEPTH, nestsDeeperThan, type JsonValue } from '../../core/json.js';
import { silentLogger, type Logger } from '../../core/logger.js';
import { MAX_OPERATION_BYTES, parseOperation, type Operation } from '../../core/operation.js';
import type { MessageSignature } from '../../core/signing.js';
import { proxyFor, proxySettingsFrom, type ProxyOptions, type ResolvedProxy } from '../network/proxy.js';
import { trustedCertificates, type TlsTrustOptions } from '../network/tlsTrust.js';
import { webSocketProxyAgent } from '../network/webSocketAgent.js';
import { loadHycoHttps, withSocketSettings, type HycoSocketSettings } from './hycoWebSocket.js';
import {
  ANSWER_SIGNATURE_HEADER,
  CONFIRMED_HEADER,
  CONFIRMED_SIGNATURE_HEADER,
  STORE_ORIGIN_HEADER,
  confirmationOf,
  relayRouteOf,
  signatureHeaderOf,
  type RelayRoute,
  type RelayConfirmation,
  type RelayErrorBody,
} from './relayProtocol.js';

/** Runs one operation for the store and resolves with its result, or rejects with a StorelinkError code. */
export type ExecuteOperation = (
  operation: Operation,
  context: { channel: 'relay' | 'queue'; abortSignal: AbortSignal },
) => Promise<JsonValue>;

export interface RelayListenerOptions {
  connectionString: string;
  hybridConnection: string;
  /** Operation types served on the relay; anything else answers 404 without reaching the executor. */
  expose: readonly string[];
  execute: ExecuteOperation;
  /**
   * Told of the cloud's confirmation (relayProtocol.ts) carried by a request, whatever the request asks, once the
   * request is answered; the signature is unchecked. Malformed confirmation headers are ignored: the request is served
   * all the same.
   */
  onConfirmation?: (confirmation: RelayConfirmation) => void;
  /**
   * Signs the answer to an operation call (kind `relay-answer`, relayAnswerSignedFields), sent in
   * ANSWER_SIGNATURE_HEADER: the cloud takes an answer as the store's only with it. Only answers about an operation the
   * executor took are signed: not a health check, nor a body that is no valid operation, nor a SIGNATURE_INVALID refusal.
   */
  signAnswer?: (operationId: string, status: number, body: string) => MessageSignature;
  /** The largest request body accepted; default MAX_OPERATION_BYTES (256 KiB of payload plus room for the envelope). */
  maxRequestBytes?: number;
  initialBackoffInMs?: number;
  maxBackoffInMs?: number;
  authRetryInMs?: number;
  /** How often the listener pings the relay to detect a half-open control channel; default 30 s. */
  pingIntervalInMs?: number;
  /** How long a ping may wait for its pong; default 10 s. */
  pongTimeoutInMs?: number;
  /** How long `close()` waits for requests in flight before aborting them; default 5 s. */
  closeTimeoutInMs?: number;
  tokenTimeToLiveInMs?: number;
  /**
   * The HTTPS proxy the control channel and rendezvous WebSockets go through; default from `https_proxy`/`HTTPS_PROXY`
   * and `no_proxy`/`NO_PROXY`; `false`: none.
   */
  proxy?: ProxyOptions;
  /** An extra CA to trust for the relay's (and an https:// proxy's) certificate. */
  tls?: TlsTrustOptions;
  /** Where the proxy defaults are read from; default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  logger?: Logger;
}

export type RelayListenerStatus = 'idle' | 'connecting' | 'listening' | 'reconnecting' | 'backingOff' | 'authFailed' | 'stopped';

export interface RelayListenerState {
  status: RelayListenerStatus;
  /** Failed attempts since the channel was last open. */
  failures: number;
  lastFailure: RelayListenerContext['lastFailure'];
}

export interface RelayListener {
  readonly state$: Observable<RelayListenerState>;
  readonly state: RelayListenerState;
  /** Starts connecting; returns at once. The store works without its relay, so nothing waits for it. */
  start(): void;
  /** Stops accepting requests, lets those in flight finish (up to closeTimeoutInMs) and closes the channel for good. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const WS_CONNECTING = 0;
const WS_OPEN = 1;
const WS_CLOSED = 3;
const CLOSE_HANDSHAKE_TIMEOUT_IN_MS = 1_000;

function failureKindOf(message: string): ListenerFailureKind {
  const status = /Unexpected server response: (\d{3})/.exec(message)?.[1];
  // 407 comes only from a proxy: its credentials are as wrong as a bad key, and as useless to retry soon.
  if (status === '401' || status === '403' || status === '407') return 'unauthorized';
  if (status === '404') return 'not-found';
  if (status !== undefined) return 'protocol';
  return 'network';
}

function messageOf(event: unknown): string {
  if (typeof event === 'object' && event !== null && 'message' in event && typeof event.message === 'string') return event.message;
  return String(event);
}

function statusOf(value: SnapshotFrom<typeof relayListenerMachine>['value']): RelayListenerStatus {
  return typeof value === 'string' ? value : value.online;
}

class RequestTooLarge extends Error {}

/**
 * Reads a whole request body, refusing it as soon as it grows past `limit` (or declares more): from then on the
 * chunks still arriving are dropped, never kept. Events, not `for await`: hyco-https' request stream overrides
 * `destroy()` with a no-op, so it never emits 'close' and an async iterator over it never finishes.
 */
function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      request.resume();
      reject(new RequestTooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer | string) => {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += buffer.length;
      if (size > limit) {
        request.removeAllListeners('data');
        // Still flowing, with nobody listening: the rest is discarded as it comes.
        request.resume();
        reject(new RequestTooLarge());
        return;
      }
      chunks.push(buffer);
    });
    request.once('end', () => resolve(Buffer.concat(chunks)));
    request.once('error', reject);
  });
}

export function createRelayListener(options: RelayListenerOptions): RelayListener {
  return new HycoRelayListener(options);
}

class HycoRelayListener implements RelayListener {
  readonly #options: RelayListenerOptions;
  readonly #exposed: ReadonlySet<string>;
  readonly #prefix: string;
  readonly #logger: Logger;
  readonly #actor: Actor<typeof relayListenerMachine>;
  readonly #state: BehaviorSubject<RelayListenerState>;
  readonly #inFlight = new Set<Promise<void>>();
  /** Control channels the chart has stopped whose sockets are still closing; close() waits for them. */
  readonly #channelsClosing = new Set<Promise<void>>();
  readonly #requestAbort = new AbortController();
  #accepting = true;
  #closing: Promise<void> | undefined;

  constructor(options: RelayListenerOptions) {
    if (typeof options.execute !== 'function') throw new TypeError('createRelayListener: execute must be a function');
    if (options.hybridConnection.length === 0) throw new TypeError('createRelayListener: hybridConnection must not be empty');
    const connection = parseConnectionString(options.connectionString);
    this.#options = options;
    this.#exposed = new Set(options.expose);
    this.#prefix = `/${options.hybridConnection.toLowerCase()}/`;
    this.#logger = (options.logger ?? silentLogger).child({ channel: 'relay', hybridConnection: options.hybridConnection });
    const audience = relayTokenAudience(connection, options.hybridConnection);
    const timeToLiveInMs = options.tokenTimeToLiveInMs ?? 60 * 60_000;
    const env = options.env ?? process.env;
    const controlChannel = controlChannelLogic({
      listenUrl: relayListenUrl(connection, options.hybridConnection),
      sockets: socketSettingsOf(proxySettingsFrom(options.proxy, env), trustedCertificates(options.tls, env)),
      token: () => sasTokenFor(connection, audience, { timeToLiveInMs }),
      onRequest: (request, response) => this.#track(this.#handle(request, response)),
      pingIntervalInMs: options.pingIntervalInMs ?? 30_000,
      pongTimeoutInMs: options.pongTimeoutInMs ?? 10_000,
      logger: this.#logger,
      closing: (closed) => {
        this.#channelsClosing.add(closed);
        void closed.finally(() => this.#channelsClosing.delete(closed));
      },
    });
    this.#actor = createActor(relayListenerMachine.provide({
        actors: { controlChannel },
        // Stores that lost the relay together do not all reconnect in the same millisecond.
        delays: { backoff: ({ context }) => withJitter(context.backoffInMs) },
      }), {
      input: {
        initialBackoffInMs: options.initialBackoffInMs ?? 1_000,
        maxBackoffInMs: options.maxBackoffInMs ?? 30_000,
        authRetryInMs: options.authRetryInMs ?? 60_000,
      },
    });
    this.#state = new BehaviorSubject<RelayListenerState>({ status: 'idle', failures: 0, lastFailure: null });
    this.#actor.subscribe((snapshot) => {
      const next: RelayListenerState = {
        status: statusOf(snapshot.value),
        failures: snapshot.context.failures,
        lastFailure: snapshot.context.lastFailure,
      };
      const previous = this.#state.getValue();
      if (previous.status !== next.status || previous.failures !== next.failures) {
        this.#logger[next.status === 'authFailed' ? 'warn' : 'info']({ state: next }, `relay listener ${next.status}`);
        this.#state.next(next);
      }
    });
    this.#actor.start();
  }

  get state$(): Observable<RelayListenerState> {
    return this.#state.asObservable();
  }

  get state(): RelayListenerState {
    return this.#state.getValue();
  }

  start(): void {
    if (this.#closing !== undefined) throw new StorelinkError('STORE_UNAVAILABLE', 'the relay listener is closed');
    this.#actor.send({ type: 'listener.start' });
  }

  #track(work: Promise<void>): void {
    this.#inFlight.add(work);
    void work.finally(() => this.#inFlight.delete(work));
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const route = relayRouteOf(request.url ?? '', this.#prefix);
    // The cloud's confirmations are read once the answer is written: their signature check (about a tenth of a
    // millisecond) would otherwise delay every answer that carries one, and the copies they release are in no hurry.
    const confirmations = this.#accepting && route.kind !== 'none';
    const answering: { operationId?: string } = {};
    try {
      const result = await this.#serve(request, route, answering);
      this.#reply(response, 200, { result }, answering.operationId);
    } catch (error) {
      const failure = isStorelinkError(error)
        ? error
        : new StorelinkError('HANDLER_FAILED', `the store failed to run the operation: ${messageOf(error)}`, { cause: error });
      if (!isStorelinkError(error)) this.#logger.error({ err: error }, 'relay request failed');
      const body: RelayErrorBody = { error: { code: failure.code, message: failure.message } };
      if (failure.field !== undefined) body.error.field = failure.field;
      this.#reply(response, storeHttpStatusOf(failure.code) ?? 500, body, failure.code === 'SIGNATURE_INVALID' ? undefined : answering.operationId);
    }
    if (confirmations) this.#confirmed(request);
  }

  /**
   * Resolves with the result to send, or throws the StorelinkError to answer with. Sets `answering.operationId` once the
   * operation is parsed and goes to the executor: its answer, a refusal too, is then signed.
   */
  async #serve(request: IncomingMessage, route: RelayRoute, answering: { operationId?: string }): Promise<JsonValue> {
    if (!this.#accepting) throw new StorelinkError('STORE_UNAVAILABLE', 'the store is shutting down');
    if (route.kind === 'health') {
      if (request.method !== 'GET') throw new StorelinkError('ROUTE_NOT_FOUND', `${request.method} is not served on /health`);
      return { status: 'ok' };
    }
    if (route.kind !== 'operation' || request.method !== 'POST') {
      throw new StorelinkError('ROUTE_NOT_FOUND', `nothing is served at ${request.method} ${request.url}`);
    }
    if (!this.#exposed.has(route.type)) {
      throw new StorelinkError('OPERATION_NOT_EXPOSED', `operation type "${route.type}" is not exposed on this store's relay`);
    }
    const limit = this.#options.maxRequestBytes ?? MAX_OPERATION_BYTES;
    let text: string;
    try {
      text = (await readBody(request, limit)).toString('utf8');
    } catch (error) {
      if (error instanceof RequestTooLarge) throw new StorelinkError('PAYLOAD_TOO_LARGE', `the request body exceeds ${limit} bytes`);
      throw error;
    }
    // Before JSON.parse: a deep text costs one scan, not a deep object graph (parseOperation would refuse it after).
    if (nestsDeeperThan(text, MAX_JSON_DEPTH)) {
      throw new StorelinkError('OPERATION_INVALID', `Invalid operation: the request body nests deeper than ${MAX_JSON_DEPTH} levels`);
    }
    let document: unknown;
    try {
      document = JSON.parse(text);
    } catch {
      throw new StorelinkError('OPERATION_INVALID', 'the request body is not JSON');
    }
    const parsed = parseOperation(document);
    if (!parsed.success) throw parsed.error;
    if (parsed.data.type !== route.type) {
      throw new StorelinkError('OPERATION_INVALID', `"type" is ${parsed.data.type} but the path says ${route.type}`, { field: 'type' });
    }
    // From here the answer is about this operation, and signed: unless the executor finds the operation is not the
    // cloud's (SIGNATURE_INVALID), as a signed refusal of a forgery could be passed off as the answer to the genuine one.
    answering.operationId = parsed.data.id;
    return this.#options.execute(parsed.data, { channel: 'relay', abortSignal: this.#requestAbort.signal });
  }

  #confirmed(request: IncomingMessage): void {
    const onConfirmation = this.#options.onConfirmation;
    if (onConfirmation === undefined) return;
    const confirmation = confirmationOf(request.headers[CONFIRMED_HEADER], request.headers[CONFIRMED_SIGNATURE_HEADER]);
    if (confirmation === 'invalid') this.#logger.warn({ url: request.url }, 'ignoring malformed confirmation headers on a relay request');
    else if (confirmation !== undefined) onConfirmation(confirmation);
  }

  #reply(response: ServerResponse, status: number, body: unknown, operationId: string | undefined): void {
    const text = JSON.stringify(body);
    response.statusCode = status;
    response.setHeader('content-type', 'application/json; charset=utf-8');
    response.setHeader(STORE_ORIGIN_HEADER, 'store');
    const signAnswer = this.#options.signAnswer;
    if (signAnswer !== undefined && operationId !== undefined) response.setHeader(ANSWER_SIGNATURE_HEADER, signatureHeaderOf(signAnswer(operationId, status, text)));
    response.end(text);
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutDown();
    return this.#closing;
  }

  async #shutDown(): Promise<void> {
    this.#accepting = false;
    const inFlight = Promise.allSettled([...this.#inFlight]);
    const timeout = this.#options.closeTimeoutInMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#requestAbort.abort(new StorelinkError('STORE_UNAVAILABLE', 'the relay listener closed'));
        resolve();
      }, timeout);
    });
    await Promise.race([inFlight, timedOut]);
    clearTimeout(timer);
    // Leaving `online` stops the control channel actor, whose cleanup closes hyco-https; then wait for its sockets.
    this.#actor.send({ type: 'listener.stop' });
    this.#actor.stop();
    await Promise.all([...this.#channelsClosing]);
    this.#state.complete();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * The proxy agent and CA for this listener's sockets; undefined when neither applies, so hyco-https runs untouched. The
 * proxy is chosen per URL: rendezvous addresses can name another host than the namespace (Azure's gateways do).
 */
function socketSettingsOf(proxies: ReturnType<typeof proxySettingsFrom>, ca: readonly string[] | undefined): (HycoSocketSettings & { proxy: ResolvedProxy | undefined }) | undefined {
  if (proxies.proxy === undefined && ca === undefined) return undefined;
  let agent: ReturnType<typeof webSocketProxyAgent> | undefined;
  return {
    proxy: proxies.proxy,
    ca,
    agentFor: (url) => {
      const proxy = proxyFor(proxies, url);
      if (proxy === undefined) return undefined;
      agent ??= webSocketProxyAgent(proxy, ca);
      return agent;
    },
  };
}

/** A failure message that says what to change when the proxy, not the relay, refused. */
function describeFailure(message: string, proxy: ResolvedProxy | undefined): string {
  if (proxy === undefined || !/Unexpected server response: 407/.test(message)) return message;
  return `the proxy ${proxy.display} refused the credentials (407 Proxy Authentication Required): check proxy.username and proxy.password (or the credentials in HTTPS_PROXY)`;
}

interface ControlChannelSettings {
  listenUrl: string;
  sockets: (HycoSocketSettings & { proxy: ResolvedProxy | undefined }) | undefined;
  /** Called on every (re)connect and renewal: a string token could never be renewed (P4). */
  token: () => string;
  onRequest: (request: IncomingMessage, response: ServerResponse) => void;
  pingIntervalInMs: number;
  pongTimeoutInMs: number;
  logger: Logger;
  /** Told of each retired server's closing, which outlives the actor's synchronous cleanup. */
  closing: (closed: Promise<void>) => void;
}

// Loaded when the first channel opens, so a process that never listens does not load hyco-https and its ws 6.
const loadHyco = () => Promise.resolve().then(() => loadHycoHttps().hyco);

/**
 * The chart's `controlChannel` actor: one hyco-https server per invocation. Its events go to the chart; its cleanup
 * retires the server, so the channel lives exactly as long as the chart stays `online`.
 */
function controlChannelLogic(settings: ControlChannelSettings) {
  return fromCallback<ControlChannelEvent>(({ sendBack }) => {
    const { logger } = settings;
    let server: HycoServer | undefined;
    let retired = false;
    let stopPinging = (): void => undefined;
    const retire = (): void => {
      if (retired) return;
      retired = true;
      stopPinging();
      if (server === undefined) return;
      settings.closing(settleClosed(server).catch((error: unknown) => logger.debug({ err: error }, 'closing a control channel')));
    };
    const fail = (event: unknown): void => {
      const raw = messageOf(event);
      const message = describeFailure(raw, settings.sockets?.proxy);
      // Retire inside the event, before hyco-https schedules its own reconnect, so no zombie is left (P14).
      retire();
      sendBack({ type: 'listener.failed', kind: failureKindOf(raw), message });
    };
    loadHyco()
      .then((hyco) => {
        if (retired) return;
        const current = hyco.createRelayedServer({ server: settings.listenUrl, token: settings.token }, settings.onRequest);
        server = current;
        current.on('error', (event: unknown) => {
          if (!retired) fail(event);
        });
        current.on('listening', () => {
          const channel = current.controlChannel;
          if (retired || channel === undefined) {
            // A reconnect hyco-https had already scheduled when this server was retired: shut it at once.
            channel?.close();
            return;
          }
          channel.once('close', (code: number) => {
            if (retired || current.controlChannel !== channel) return;
            stopPinging();
            sendBack({ type: 'listener.dropped', message: `control channel closed (${code})` });
          });
          stopPinging();
          stopPinging = pingUntilClosed(channel, settings);
          sendBack({ type: 'listener.opened' });
        });
        // Every socket this server opens, now or on its own reconnects and rendezvous, gets this listener's route.
        withSocketSettings(settings.sockets, () => current.listen());
      })
      .catch((error: unknown) => {
        logger.error({ err: error }, 'could not open a relay control channel');
        if (!retired) fail(error);
      });
    return retire;
  });
}

/**
 * Pings the relay on an open channel and terminates the channel when a pong does not come back in time: hyco-https
 * never notices a half-open channel by itself (P5), but it does reconnect after a terminated one. Returns the stop.
 */
function pingUntilClosed(channel: HycoControlChannel, settings: ControlChannelSettings): () => void {
  let awaitingPong: NodeJS.Timeout | undefined;
  const answered = (): void => {
    clearTimeout(awaitingPong);
    awaitingPong = undefined;
  };
  channel.on('pong', answered);
  channel.once('close', answered);
  const pinger = setInterval(() => {
    if (channel.readyState !== WS_OPEN || awaitingPong !== undefined) return;
    awaitingPong = setTimeout(() => {
      settings.logger.warn({ timeoutInMs: settings.pongTimeoutInMs }, 'relay control channel did not answer a ping: reconnecting');
      channel.terminate();
    }, settings.pongTimeoutInMs);
    awaitingPong.unref();
    channel.ping();
  }, settings.pingIntervalInMs);
  pinger.unref();
  return () => {
    clearInterval(pinger);
    answered();
    channel.off('pong', answered);
  };
}

/**
 * Closes a hyco-https server and waits until its control channel is really gone, including a reconnect hyco-https
 * scheduled just before (its 0 ms timer after a drop), which would otherwise open a zombie channel.
 */
async function settleClosed(server: HycoServer): Promise<void> {
  server.close();
  await new Promise((resolve) => setTimeout(resolve, 1));
  const channel = server.controlChannel;
  if (channel === undefined || channel.readyState === WS_CLOSED) return;
  await new Promise<void>((resolve) => {
    // A relay that stopped answering (a half-open channel) never returns the close frame: cut the socket then.
    const cut = setTimeout(() => channel.terminate(), CLOSE_HANDSHAKE_TIMEOUT_IN_MS);
    channel.once('close', () => {
      clearTimeout(cut);
      resolve();
    });
    if (channel.readyState === WS_CONNECTING) {
      channel.once('open', () => channel.close());
    } else {
      channel.close();
    }
  });
}
