/**
 * The cloud's side of the real-time channel: HTTPS calls through Azure Relay to one store's listener, authorised with
 * a SAS token in the `ServiceBusAuthorization` header. Every outcome becomes either the store's result or a
 * StorelinkError whose code says whether the relay failed as a channel (the dispatcher falls back) or the store
 * answered (no fallback): see RELAY_FAILURE_REASON_BY_CODE.
 */
import { parseConnectionString, relayHttpUrl, relayTokenAudience, type ConnectionString } from '../../core/connectionString.js';
import { StorelinkError, type StorelinkErrorCode } from '../../core/errors.js';
import type { JsonValue } from '../../core/json.js';
import type { Operation } from '../../core/operation.js';
import { createSasToken } from '../../core/sas.js';
import { HEALTH_PATH, STORE_ORIGIN_HEADER, operationPath, type RelayErrorBody } from './relayProtocol.js';

export type FetchFunction = (input: string, init: RequestInit) => Promise<Response>;

export interface RelaySenderOptions {
  connectionString: string;
  hybridConnection: string;
  /** Default: the global fetch. Inject a pooled client for throughput. */
  fetch?: FetchFunction;
  /** Lifetime of the SAS tokens the sender mints; default one hour. A token is reused until 5 minutes before expiry. */
  tokenTimeToLiveInMs?: number;
  /** The clock SAS tokens are dated by, in ms since the epoch (tests inject one). Default `Date.now`. */
  now?: () => number;
}

export interface RelayCallOptions {
  /** The whole call, relay included, must finish within this time. */
  timeoutInMs: number;
  abortSignal?: AbortSignal;
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
}

const TOKEN_RENEWAL_MARGIN_IN_MS = 5 * 60_000;
const STORE_ERROR_CODES: ReadonlySet<string> = new Set<StorelinkErrorCode>([
  'OPERATION_INVALID',
  'PAYLOAD_TOO_LARGE',
  'ROUTE_NOT_FOUND',
  'OPERATION_NOT_EXPOSED',
  'OPERATION_EXPIRED',
  'OPERATION_REJECTED',
  'HANDLER_FAILED',
  'STORE_UNAVAILABLE',
]);

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

class HttpRelaySender implements RelaySender {
  readonly #connection: ConnectionString;
  readonly #baseUrl: string;
  readonly #audience: string;
  readonly #fetch: FetchFunction;
  readonly #tokenTimeToLiveInMs: number;
  readonly #now: () => number;
  #token: { value: string; renewAtInMs: number } | undefined;

  constructor(options: RelaySenderOptions) {
    if (options.hybridConnection.length === 0) throw new TypeError('createRelaySender: hybridConnection must not be empty');
    this.#connection = parseConnectionString(options.connectionString);
    this.#baseUrl = relayHttpUrl(this.#connection, options.hybridConnection);
    this.#audience = relayTokenAudience(this.#connection, options.hybridConnection);
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#tokenTimeToLiveInMs = options.tokenTimeToLiveInMs ?? 60 * 60_000;
    if (options.now !== undefined && typeof options.now !== 'function') {
      throw new TypeError('createRelaySender: now must be a function returning ms since the epoch');
    }
    this.#now = options.now ?? Date.now;
    if (this.#tokenTimeToLiveInMs <= TOKEN_RENEWAL_MARGIN_IN_MS) {
      throw new RangeError(`createRelaySender: tokenTimeToLiveInMs must exceed ${TOKEN_RENEWAL_MARGIN_IN_MS} ms`);
    }
  }

  #currentToken(): string {
    const now = this.#now();
    if (this.#token === undefined || now >= this.#token.renewAtInMs) {
      const value = createSasToken({
        resource: this.#audience,
        keyName: this.#connection.keyName,
        key: this.#connection.key,
        timeToLiveInMs: this.#tokenTimeToLiveInMs,
        nowInMs: now,
      });
      this.#token = { value, renewAtInMs: now + this.#tokenTimeToLiveInMs - TOKEN_RENEWAL_MARGIN_IN_MS };
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
    if (options.abortSignal?.aborted) throw new StorelinkError('ABORTED', 'the relay call was aborted before it started');
    const timeout = AbortSignal.timeout(options.timeoutInMs);
    const signal = options.abortSignal === undefined ? timeout : AbortSignal.any([timeout, options.abortSignal]);
    const headers: Record<string, string> = { ServiceBusAuthorization: this.#currentToken(), accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(`${this.#baseUrl}${path}`, { method, headers, body, signal });
      text = await response.text();
    } catch (error) {
      throw this.#transportError(error, options, timeout);
    }
    const fromStore = response.headers.get(STORE_ORIGIN_HEADER) === 'store';
    let document: unknown;
    try {
      document = text.length === 0 ? undefined : JSON.parse(text);
    } catch {
      document = undefined;
    }
    if (fromStore && response.ok) return document;
    if (fromStore && isStoreErrorBody(document) && STORE_ERROR_CODES.has(document.error.code)) {
      throw new StorelinkError(document.error.code, `the store answered ${response.status}: ${document.error.message}`, {
        field: document.error.field,
      });
    }
    if (fromStore) throw new StorelinkError('HANDLER_FAILED', `the store answered ${response.status} without a known error code`);
    throw relayStatusError(response.status, text);
  }

  #transportError(error: unknown, options: RelayCallOptions, timeout: AbortSignal): StorelinkError {
    if (options.abortSignal?.aborted) return new StorelinkError('ABORTED', 'the relay call was aborted', { cause: error });
    if (timeout.aborted) {
      return new StorelinkError('RELAY_TIMEOUT', `no answer through the relay within ${options.timeoutInMs} ms`, { cause: error });
    }
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
    const detail = cause instanceof Error ? cause.message : String(cause);
    return new StorelinkError('RELAY_UNREACHABLE', `the relay could not be reached: ${detail}`, { cause: error });
  }
}
