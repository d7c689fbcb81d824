/**
 * The cloud's side of the real-time channel: HTTPS calls through Azure Relay to one store's listener, authorised with
 * a SAS token in the `ServiceBusAuthorization` header. Every outcome becomes either the store's result or a
 * StorelinkError whose code says whether the relay failed as a channel (the dispatcher falls back) or the store
 * answered (no fallback): see relayFailureReasonOf in src/core/errors.ts.
 *
 * Calls go through an undici Pool with keep-alive, one per relay origin, shared by every sender of the process for
 * that origin: global fetch (WHATWG streams, Headers and a Response per call) cost about three times the client CPU
 * per call, a large part of a real-time call's budget. Through an HTTPS proxy, the pool is an undici ProxyAgent
 * (CONNECT tunnels, kept alive the same way); with an extra CA, its sockets trust it too.
 */
import { createHash } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { Pool, ProxyAgent, type Dispatcher } from 'undici';
import { parseConnectionString, relayHttpUrl, relayTokenAudience, sasTokenFor, type ConnectionString } from '../../core/connectionString.js';
import { StorelinkError, isStoreAnswerCode } from '../../core/errors.js';
import type { JsonValue } from '../../core/json.js';
import type { Operation } from '../../core/operation.js';
import { proxyAuthorization, proxyFor, proxySettingsFrom, type ProxyOptions, type ResolvedProxy } from '../network/proxy.js';
import { trustedCertificates, type TlsTrustOptions } from '../network/tlsTrust.js';
import type { MessageSignature } from '../../core/signing.js';
import {
  ANSWER_SIGNATURE_HEADER,
  HEALTH_PATH,
  STORE_ORIGIN_HEADER,
  confirmationHeaders,
  operationPath,
  signatureFromHeader,
  type RelayConfirmation,
  type RelayErrorBody,
} from './relayProtocol.js';

export type FetchFunction = (input: string, init: RequestInit) => Promise<Response>;

export interface RelaySenderOptions {
  connectionString: string;
  hybridConnection: string;
  /**
   * The undici Agent or Pool calls go through; the caller owns it (the sender's `close()` leaves it open).
   * Default: a keep-alive Pool for the relay's origin, shared by this process's senders and closed with the last.
   */
  dispatcher?: Dispatcher;
  /** Calls go through this function instead of undici (tests inject one to hold or fail calls). */
  fetch?: FetchFunction;
  /**
   * The HTTPS proxy calls go through; default from `https_proxy`/`HTTPS_PROXY` and `no_proxy`/`NO_PROXY`; `false`:
   * none. Not with `dispatcher` or `fetch`, which decide their own routes.
   */
  proxy?: ProxyOptions;
  /** An extra CA to trust for the relay's (and an https:// proxy's) certificate. Not with `dispatcher` or `fetch`. */
  tls?: TlsTrustOptions;
  /** Where the proxy defaults are read from; default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Lifetime of the SAS tokens the sender mints; default one hour. A token is reused until 5 minutes before expiry. */
  tokenTimeToLiveInMs?: number;
  /** The clock SAS tokens are dated by, in ms since the epoch (tests inject one). Default `Date.now`. */
  now?: () => number;
}

export interface RelayCallOptions {
  /** The whole call, relay included, must finish within this time. */
  timeoutInMs: number;
  abortSignal?: AbortSignal;
  /** Relay answers the cloud holds durably, for the store to drop their outbox copies (relayProtocol.ts). */
  confirmation?: RelayConfirmation;
  /**
   * Checks that the store's answer to this operation call is the store's (its ANSWER_SIGNATURE_HEADER), before its
   * status or body mean anything: resolves with why not, or undefined. A problem rejects the call with
   * RELAY_ANSWER_UNVERIFIED, a relay failure. Without it, any answer marked as the store's is taken as one.
   */
  checkAnswer?: (answer: SignedRelayAnswer) => string | undefined;
}

/** What a store's answer to an operation call is checked on: its status, its body as received, its signature. */
export interface SignedRelayAnswer {
  status: number;
  text: string;
  signature: MessageSignature | undefined;
}

export interface RelayReply {
  result: JsonValue;
  latencyInMs: number;
}

export interface RelaySender {
  /** Sends an operation to the store and resolves with its result; rejects with a StorelinkError. */
  send(operation: Operation, options: RelayCallOptions): Promise<RelayReply>;
  /** Resolves when the store's listener answers its health check through the relay. */
  checkHealth(options: RelayCallOptions): Promise<void>;
  /** Idempotent. Lets calls in flight finish; releases the shared pool (closing it with its last sender). */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const TOKEN_RENEWAL_MARGIN_IN_MS = 5 * 60_000;

export function createRelaySender(options: RelaySenderOptions): RelaySender {
  return new HttpRelaySender(options);
}

/** What an HTTP status from the relay itself (not from the store) means for the channel. */
export function relayStatusError(status: number, detail: string): StorelinkError {
  const text = detail.trim().slice(0, 300);
  const suffix = text.length > 0 ? `: ${text}` : '';
  if (status === 401 || status === 403) {
    return new StorelinkError('RELAY_UNAUTHORIZED', `the relay refused the sender's credentials (${status})${suffix}`);
  }
  if (status === 404 && /no listeners/i.test(text)) return new StorelinkError('RELAY_NO_LISTENER', `no listener is connected (404)${suffix}`);
  if (status === 404) return new StorelinkError('RELAY_ENDPOINT_NOT_FOUND', `the relay does not know the hybrid connection (404)${suffix}`);
  if (status === 502 || status === 503) return new StorelinkError('RELAY_NO_LISTENER', `the relay has no listener to reach (${status})${suffix}`);
  if (status === 504) return new StorelinkError('RELAY_TIMEOUT', `the store did not answer through the relay in time (504)${suffix}`);
  if (status === 413) return new StorelinkError('PAYLOAD_TOO_LARGE', `the relay refused the request size (413)${suffix}`);
  return new StorelinkError('RELAY_UNREACHABLE', `the relay answered ${status}${suffix}`);
}

function isStoreErrorBody(value: unknown): value is RelayErrorBody {
  if (typeof value !== 'object' || value === null || !('error' in value)) return false;
  const error = (value).error;
  return typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string';
}

/** What the sender needs from one HTTP exchange, whichever client carried it. */
interface RelayAnswer {
  status: number;
  fromStore: boolean;
  text: string;
  /** The ANSWER_SIGNATURE_HEADER value, if any. */
  signatureHeader: string | undefined;
}

type Exchange = (method: 'GET' | 'POST', path: string, headers: Record<string, string>, body: string | undefined, signal: AbortSignal) => Promise<RelayAnswer>;

/** How one sender's calls leave the process: directly or through a proxy, trusting Node's CAs or an extra list. */
interface Route {
  proxy: ResolvedProxy | undefined;
  ca: readonly string[] | undefined;
}

/** One keep-alive pool per relay origin and route for the whole process, counted by the senders that use it. */
const SHARED_POOLS = new Map<string, { pool: Dispatcher; users: number }>();

function poolKey(origin: string, route: Route): string {
  const { proxy, ca } = route;
  // Hashed, so no credential sits in a map key someone might print.
  const identity = JSON.stringify([proxy?.url.href, proxy?.username, proxy?.password, ca]);
  return `${origin} ${createHash('sha256').update(identity).digest('hex')}`;
}

function createPool(origin: string, route: Route): Dispatcher {
  const { proxy, ca } = route;
  // One secure context for every connection of the pool: given `ca` instead, each new socket parses the whole list
  // (Node's roots and the extra CA) again, tens of milliseconds of CPU per connection.
  const tls = ca === undefined ? undefined : { secureContext: createSecureContext({ ca: [...ca] }) };
  if (proxy === undefined) return tls === undefined ? new Pool(origin) : new Pool(origin, { connect: tls });
  const token = proxyAuthorization(proxy);
  return new ProxyAgent({
    uri: proxy.url.href,
    ...(token === undefined ? {} : { token }),
    ...(tls === undefined ? {} : { requestTls: tls, proxyTls: tls }),
  });
}

function acquirePool(origin: string, route: Route): { pool: Dispatcher; key: string } {
  const key = poolKey(origin, route);
  let entry = SHARED_POOLS.get(key);
  if (entry === undefined) {
    entry = { pool: createPool(origin, route), users: 0 };
    SHARED_POOLS.set(key, entry);
  }
  entry.users += 1;
  return { pool: entry.pool, key };
}

async function releasePool(key: string, pool: Dispatcher): Promise<void> {
  const entry = SHARED_POOLS.get(key);
  if (entry === undefined || entry.pool !== pool) return;
  entry.users -= 1;
  if (entry.users > 0) return;
  // Forget it first, so a sender created while this one drains gets a fresh pool instead of a closing one.
  SHARED_POOLS.delete(key);
  await pool.close();
}

/** What a proxy's refusal to open the tunnel means, in words that say what to change; undefined for other failures. */
function proxyRefusal(detail: string, proxy: ResolvedProxy): string | undefined {
  const status = /Proxy response \((\d{3})\)/.exec(detail)?.[1];
  if (status === undefined) return undefined;
  if (status === '407') {
    return `the proxy ${proxy.display} refused the credentials (407 Proxy Authentication Required): check proxy.username and proxy.password (or the credentials in HTTPS_PROXY)`;
  }
  return `the proxy ${proxy.display} refused to open a tunnel to the relay (${status}): the proxy must allow CONNECT to the relay's host on 443`;
}

function undiciExchange(dispatcher: Dispatcher, origin: string): Exchange {
  return async (method, path, headers, body, signal) => {
    const response = await dispatcher.request({ origin, path, method, headers, body, signal });
    // Read the body whatever the status: an unread body keeps its socket out of the pool.
    const text = await response.body.text();
    const signature = response.headers[ANSWER_SIGNATURE_HEADER];
    return { status: response.statusCode, fromStore: response.headers[STORE_ORIGIN_HEADER] === 'store', text, signatureHeader: typeof signature === 'string' ? signature : undefined };
  };
}

function fetchExchange(fetchFunction: FetchFunction, origin: string): Exchange {
  return async (method, path, headers, body, signal) => {
    const response = await fetchFunction(`${origin}${path}`, { method, headers, body, signal });
    const text = await response.text();
    return { status: response.status, fromStore: response.headers.get(STORE_ORIGIN_HEADER) === 'store', text, signatureHeader: response.headers.get(ANSWER_SIGNATURE_HEADER) ?? undefined };
  };
}

class HttpRelaySender implements RelaySender {
  readonly #connection: ConnectionString;
  /** The hybrid connection's path on the relay, which every call's path extends. */
  readonly #basePath: string;
  readonly #audience: string;
  readonly #exchange: Exchange;
  readonly #release: () => Promise<void>;
  readonly #tokenTimeToLiveInMs: number;
  readonly #now: () => number;
  readonly #proxy: ResolvedProxy | undefined;
  #token: { value: string; renewAtInMs: number } | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: RelaySenderOptions) {
    if (options.hybridConnection.length === 0) throw new TypeError('createRelaySender: hybridConnection must not be empty');
    if (options.fetch !== undefined && options.dispatcher !== undefined) {
      throw new TypeError('createRelaySender: give either fetch or dispatcher, not both');
    }
    if ((options.fetch !== undefined || options.dispatcher !== undefined) && (options.proxy !== undefined || options.tls !== undefined)) {
      throw new TypeError('createRelaySender: proxy and tls apply to the built-in pool; a given fetch or dispatcher decides its own route and trust');
    }
    if (options.now !== undefined && typeof options.now !== 'function') {
      throw new TypeError('createRelaySender: now must be a function returning ms since the epoch');
    }
    this.#tokenTimeToLiveInMs = options.tokenTimeToLiveInMs ?? 60 * 60_000;
    if (this.#tokenTimeToLiveInMs <= TOKEN_RENEWAL_MARGIN_IN_MS) {
      throw new RangeError(`createRelaySender: tokenTimeToLiveInMs must exceed ${TOKEN_RENEWAL_MARGIN_IN_MS} ms`);
    }
    this.#connection = parseConnectionString(options.connectionString);
    const url = new URL(relayHttpUrl(this.#connection, options.hybridConnection));
    this.#basePath = url.pathname;
    this.#audience = relayTokenAudience(this.#connection, options.hybridConnection);
    this.#now = options.now ?? Date.now;
    if (options.fetch !== undefined) {
      this.#proxy = undefined;
      this.#exchange = fetchExchange(options.fetch, url.origin);
      this.#release = () => Promise.resolve();
    } else if (options.dispatcher !== undefined) {
      this.#proxy = undefined;
      this.#exchange = undiciExchange(options.dispatcher, url.origin);
      this.#release = () => Promise.resolve();
    } else {
      const env = options.env ?? process.env;
      this.#proxy = proxyFor(proxySettingsFrom(options.proxy, env), url.origin);
      // Creating a pool opens nothing: its first request connects.
      const { pool, key } = acquirePool(url.origin, { proxy: this.#proxy, ca: trustedCertificates(options.tls, env) });
      this.#exchange = undiciExchange(pool, url.origin);
      this.#release = () => releasePool(key, pool);
    }
  }

  #currentToken(): string {
    const now = this.#now();
    if (this.#token === undefined || now >= this.#token.renewAtInMs) {
      const value = sasTokenFor(this.#connection, this.#audience, { timeToLiveInMs: this.#tokenTimeToLiveInMs, nowInMs: now });
      // A pre-issued token is presented until it expires, then refused here with the time it expired.
      const renewAtInMs = this.#connection.signatureExpiresAtInMs ?? now + this.#tokenTimeToLiveInMs - TOKEN_RENEWAL_MARGIN_IN_MS;
      this.#token = { value, renewAtInMs };
    }
    return this.#token.value;
  }

  async send(operation: Operation, options: RelayCallOptions): Promise<RelayReply> {
    const started = performance.now();
    const body = await this.#call('POST', operationPath(operation.type), options, JSON.stringify(operation));
    if (typeof body !== 'object' || body === null || !('result' in body)) {
      throw new StorelinkError('RELAY_UNREACHABLE', 'the store answered 200 without a result');
    }
    return { result: (body as { result: JsonValue }).result, latencyInMs: performance.now() - started };
  }

  async checkHealth(options: RelayCallOptions): Promise<void> {
    await this.#call('GET', HEALTH_PATH, options);
  }

  async #call(method: 'GET' | 'POST', path: string, options: RelayCallOptions, body?: string): Promise<unknown> {
    if (!Number.isFinite(options.timeoutInMs) || options.timeoutInMs <= 0) {
      throw new RangeError(`timeoutInMs must be a positive number of milliseconds, got ${options.timeoutInMs}`);
    }
    if (this.#closing !== undefined) throw new StorelinkError('RELAY_UNREACHABLE', 'the relay sender is closed', { retryable: false });
    const { abortSignal } = options;
    if (abortSignal?.aborted) throw new StorelinkError('ABORTED', 'the relay call was aborted before it started');
    // One controller and one timer per call: AbortSignal.timeout and AbortSignal.any cost more than the call itself.
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new StorelinkError('RELAY_TIMEOUT', `no answer through the relay within ${options.timeoutInMs} ms`));
    }, options.timeoutInMs);
    const onAbort = (): void => controller.abort(abortSignal?.reason);
    abortSignal?.addEventListener('abort', onAbort, { once: true });
    const headers: Record<string, string> = { ServiceBusAuthorization: this.#currentToken(), accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (options.confirmation !== undefined) Object.assign(headers, confirmationHeaders(options.confirmation));
    let answer: RelayAnswer;
    try {
      answer = await this.#exchange(method, `${this.#basePath}${path}`, headers, body, controller.signal);
    } catch (error) {
      throw this.#transportError(error, options, timedOut);
    } finally {
      clearTimeout(timer);
      abortSignal?.removeEventListener('abort', onAbort);
    }
    const { status, fromStore, text } = answer;
    if (fromStore && options.checkAnswer !== undefined) {
      const problem = options.checkAnswer({ status, text, signature: signatureFromHeader(answer.signatureHeader) });
      if (problem !== undefined) throw new StorelinkError('RELAY_ANSWER_UNVERIFIED', `the answer through the relay (${status}) is not the store's: ${problem}`);
    }
    let document: unknown;
    try {
      document = text.length === 0 ? undefined : JSON.parse(text);
    } catch {
      document = undefined;
    }
    const ok = status >= 200 && status < 300;
    if (fromStore && ok) return document;
    if (fromStore && isStoreErrorBody(document) && isStoreAnswerCode(document.error.code)) {
      throw new StorelinkError(document.error.code, `the store answered ${status}: ${document.error.message}`, {
        field: document.error.field,
      });
    }
    if (fromStore) throw new StorelinkError('HANDLER_FAILED', `the store answered ${status} without a known error code`);
    throw relayStatusError(status, text);
  }

  #transportError(error: unknown, options: RelayCallOptions, timedOut: boolean): StorelinkError {
    if (options.abortSignal?.aborted) return new StorelinkError('ABORTED', 'the relay call was aborted', { cause: error });
    if (timedOut) {
      return new StorelinkError('RELAY_TIMEOUT', `no answer through the relay within ${options.timeoutInMs} ms`, { cause: error });
    }
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
    const detail = cause instanceof Error ? cause.message : String(cause);
    if (this.#proxy !== undefined) {
      const refusal = proxyRefusal(detail, this.#proxy);
      if (refusal !== undefined) return new StorelinkError('RELAY_UNREACHABLE', refusal, { cause: error });
      return new StorelinkError('RELAY_UNREACHABLE', `the relay could not be reached through the proxy ${this.#proxy.display}: ${detail}`, { cause: error });
    }
    return new StorelinkError('RELAY_UNREACHABLE', `the relay could not be reached: ${detail}`, { cause: error });
  }

  close(): Promise<void> {
    this.#closing ??= this.#release();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
