/**
 * The cloud dispatcher over HTTP (node:http, JSON): publish an operation, read the stores' links, follow what happens
 * as server-sent events, scrape Prometheus metrics. Every request carries `Authorization: Bearer <token>`.
 *
 *   POST /stores/:storeId/operations   { type, payload, latency?, awaitReplyInMs?, timeToLiveInMs?, id? } → Delivery
 *   GET  /stores                       { stores: StoreLinkView[] }
 *   GET  /stores/:storeId              StoreLinkView
 *   GET  /events                       text/event-stream: `link`, `delivery`, `store-event`
 *   GET  /metrics                      Prometheus text format 0.0.4
 *
 * Errors are `{ error: { code, message, field? } }` with a StorelinkError code. A store's own refusal is not an
 * error: it is a 200 delivery whose outcome is `rejected` and whose `rejection` says why.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Subscription, map, merge } from 'rxjs';
import { z } from 'zod';
import { StorelinkError, isStorelinkError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { operationTypeSchema, storeIdSchema } from '../core/names.js';
import { DEFAULT_MAX_PAYLOAD_BYTES, latencySchema } from '../core/operation.js';
import { describeIssue } from '../core/validation.js';
import type { Delivery, Dispatcher, LinkView } from './dispatcher.js';
import { createDispatcherMetrics, type DispatcherMetrics } from './metrics.js';
import type { LinkChange } from './storeLinks.js';

/** Room for a 256 KiB payload plus the rest of the request. */
export const DEFAULT_MAX_BODY_BYTES = 300 * 1024;
export const DEFAULT_HEARTBEAT_INTERVAL_IN_MS = 15_000;
/** How long a publish may wait for a queued operation's reply: a request should not hang longer than a relay call. */
export const MAX_AWAIT_REPLY_IN_MS = 60_000;
export const MIN_TOKEN_LENGTH = 16;
/** An event stream whose client reads slower than this much buffered output is ended; the client may reconnect. */
const MAX_EVENT_STREAM_BUFFER_BYTES = 1024 * 1024;
const DAY_IN_MS = 24 * 60 * 60 * 1000;

export interface CloudHttpApiOptions {
  dispatcher: Dispatcher;
  /** The bearer token every request must carry; at least 16 characters. */
  token: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: an ephemeral port. */
  port?: number;
  logger?: Logger;
  /** Largest accepted request body; default 300 KiB. */
  maxBodyBytes?: number;
  /** How often an event stream sends a comment to keep proxies from closing it; default 15 s. */
  heartbeatIntervalInMs?: number;
}

export interface CloudHttpApi extends AsyncDisposable {
  /** Starts the dispatcher if needed and listens; idempotent. */
  listen(): Promise<{ port: number }>;
  /** Ends event streams, cuts waits for replies short, stops listening; idempotent. Leaves the dispatcher open. */
  close(): Promise<void>;
}

/** A store and its link, as the API shows it: `state` is the chart's state value, not its JSON text. */
export interface StoreLinkView extends Omit<LinkView, 'state'> {
  state: JsonValue;
}

const publishBodySchema = z.strictObject({
  type: operationTypeSchema,
  payload: z.custom<JsonValue>((value) => value !== undefined, { message: 'is required (any JSON value)' }),
  latency: latencySchema.optional(),
  awaitReplyInMs: z
    .number({ message: 'expected a whole number of milliseconds' })
    .int('expected a whole number of milliseconds')
    .min(0, 'expected at least 0 ms')
    .max(MAX_AWAIT_REPLY_IN_MS, `expected at most ${MAX_AWAIT_REPLY_IN_MS} ms`)
    .optional(),
  timeToLiveInMs: z
    .number({ message: 'expected a whole number of milliseconds' })
    .int('expected a whole number of milliseconds')
    .min(1_000, 'expected at least 1000 ms')
    .max(366 * DAY_IN_MS, `expected at most ${366 * DAY_IN_MS} ms`)
    .optional(),
  id: z.uuid({ message: 'must be a UUID' }).optional(),
});

/** The HTTP status for an error code: the caller's mistakes are 4xx; failures further on are 502, or 503 when retrying may help. */
export function httpStatusOf(error: StorelinkError): number {
  switch (error.code) {
    case 'OPERATION_INVALID':
      return 400;
    case 'API_UNAUTHORIZED':
      return 401;
    case 'STORE_UNKNOWN':
    case 'ROUTE_NOT_FOUND':
      return 404;
    case 'PAYLOAD_TOO_LARGE':
      return 413;
    case 'UNEXPECTED_FAILURE':
      return 500;
    case 'ABORTED':
      return 503;
    default:
      return error.retryable ? 503 : 502;
  }
}

function stateValueOf(stateKey: string): JsonValue {
  try {
    return JSON.parse(stateKey) as JsonValue;
  } catch {
    return stateKey;
  }
}

function storeLinkViewOf(view: LinkView): StoreLinkView {
  return { ...view, state: stateValueOf(view.state) };
}

function linkChangeViewOf(change: LinkChange) {
  return {
    storeId: change.storeId,
    state: stateValueOf(change.state),
    tags: change.tags,
    previousState: change.previousState === undefined ? null : stateValueOf(change.previousState),
  };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

interface Route {
  pattern: RegExp;
  methods: Record<string, (request: IncomingMessage, response: ServerResponse, parameters: string[]) => Promise<void> | void>;
}

export function createCloudHttpApi(options: CloudHttpApiOptions): CloudHttpApi {
  return new DefaultCloudHttpApi(options);
}

class DefaultCloudHttpApi implements CloudHttpApi {
  readonly #dispatcher: Dispatcher;
  readonly #tokenDigest: Buffer;
  readonly #host: string;
  readonly #port: number;
  readonly #logger: Logger;
  readonly #maxBodyBytes: number;
  readonly #heartbeatIntervalInMs: number;
  readonly #metrics: DispatcherMetrics;
  readonly #server: Server;
  readonly #routes: Route[];
  /** Ends every open event stream. */
  readonly #eventStreams = new Set<(reason: string) => void>();
  readonly #inFlight = new Set<Promise<void>>();
  /** One per publish under way, aborted on close so waits for a queued reply answer at once (as `queued`). */
  readonly #publishControllers = new Set<AbortController>();
  #listening: Promise<{ port: number }> | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: CloudHttpApiOptions) {
    if (typeof options.token !== 'string' || options.token.length < MIN_TOKEN_LENGTH) {
      throw new RangeError(`createCloudHttpApi: token must be at least ${MIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 32\`)`);
    }
    const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes <= 0) throw new RangeError(`createCloudHttpApi: maxBodyBytes must be a positive integer, got ${maxBodyBytes}`);
    const heartbeat = options.heartbeatIntervalInMs ?? DEFAULT_HEARTBEAT_INTERVAL_IN_MS;
    if (!Number.isFinite(heartbeat) || heartbeat <= 0) throw new RangeError(`createCloudHttpApi: heartbeatIntervalInMs must be positive, got ${heartbeat}`);
    this.#dispatcher = options.dispatcher;
    this.#tokenDigest = sha256(options.token);
    this.#host = options.host ?? '127.0.0.1';
    this.#port = options.port ?? 0;
    this.#logger = (options.logger ?? silentLogger).child({ component: 'http' });
    this.#maxBodyBytes = maxBodyBytes;
    this.#heartbeatIntervalInMs = heartbeat;
    // Created now, not on listen: the counters must see every delivery the dispatcher makes from here on.
    this.#metrics = createDispatcherMetrics(options.dispatcher);
    this.#routes = [
      { pattern: /^\/stores$/, methods: { GET: (_request, response) => this.#listStores(response) } },
      { pattern: /^\/stores\/([^/]+)$/, methods: { GET: (_request, response, [storeId]) => this.#showStore(response, storeId!) } },
      { pattern: /^\/stores\/([^/]+)\/operations$/, methods: { POST: (request, response, [storeId]) => this.#publish(request, response, storeId!) } },
      { pattern: /^\/events$/, methods: { GET: (request, response) => this.#streamEvents(request, response) } },
      { pattern: /^\/metrics$/, methods: { GET: (_request, response) => this.#serveMetrics(response) } },
    ];
    this.#server = createServer((request, response) => {
      const startedAt = performance.now();
      response.on('finish', () =>
        this.#logger.debug({ method: request.method, path: request.url, status: response.statusCode, durationInMs: performance.now() - startedAt }, 'request answered'),
      );
      const handled = this.#handle(request, response).catch((error: unknown) => this.#fail(response, error));
      this.#inFlight.add(handled);
      void handled.finally(() => this.#inFlight.delete(handled));
    });
  }

  listen(): Promise<{ port: number }> {
    if (this.#closing !== undefined) return Promise.reject(new StorelinkError('STORE_UNAVAILABLE', 'the cloud HTTP API is closed'));
    this.#listening ??= (async () => {
      await this.#dispatcher.start();
      await new Promise<void>((resolve, reject) => {
        const failed = (error: Error) => reject(error);
        this.#server.once('error', failed);
        this.#server.listen(this.#port, this.#host, () => {
          this.#server.off('error', failed);
          resolve();
        });
      });
      const { port } = this.#server.address() as AddressInfo;
      this.#logger.info({ host: this.#host, port }, 'cloud HTTP API listening');
      return { port };
    })();
    return this.#listening;
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://storelink.invalid');
    const authorization = this.#authorize(request.headers.authorization);
    if (authorization !== 'ok') {
      response.setHeader('www-authenticate', authorization === 'missing' ? 'Bearer realm="storelink"' : 'Bearer realm="storelink", error="invalid_token"');
      throw new StorelinkError(
        'API_UNAUTHORIZED',
        authorization === 'missing' ? 'send the API token as "Authorization: Bearer <token>"' : 'the bearer token is not the one configured',
      );
    }
    for (const route of this.#routes) {
      const match = route.pattern.exec(url.pathname);
      if (match === null) continue;
      const handler = route.methods[request.method ?? ''];
      if (handler === undefined) {
        response.setHeader('allow', Object.keys(route.methods).join(', '));
        this.#sendError(response, 405, new StorelinkError('ROUTE_NOT_FOUND', `${request.method} is not served on ${url.pathname}; use ${Object.keys(route.methods).join(' or ')}`));
        return;
      }
      await handler(request, response, match.slice(1));
      return;
    }
    throw new StorelinkError('ROUTE_NOT_FOUND', `nothing is served at ${url.pathname}`);
  }

  #authorize(header: string | undefined): 'ok' | 'missing' | 'invalid' {
    const match = /^Bearer +(\S+) *$/i.exec(header ?? '');
    if (match === null) return 'missing';
    // Comparing digests keeps the comparison constant-time whatever the length of the token sent.
    return timingSafeEqual(sha256(match[1]!), this.#tokenDigest) ? 'ok' : 'invalid';
  }

  #storeIdOf(segment: string): string {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      decoded = segment;
    }
    const valid = storeIdSchema.safeParse(decoded, { reportInput: true });
    if (!valid.success) {
      throw new StorelinkError('OPERATION_INVALID', describeIssue({ ...valid.error.issues[0]!, path: ['storeId'] }).text, { field: 'storeId' });
    }
    return valid.data;
  }

  async #listStores(response: ServerResponse): Promise<void> {
    await this.#dispatcher.start();
    const stores = this.#dispatcher.stores().map(({ storeId }) => storeLinkViewOf(this.#dispatcher.link(storeId)));
    this.#sendJson(response, 200, { stores });
  }

  async #showStore(response: ServerResponse, segment: string): Promise<void> {
    const storeId = this.#storeIdOf(segment);
    await this.#dispatcher.start();
    if (!this.#dispatcher.stores().some((store) => store.storeId === storeId)) {
      throw new StorelinkError('STORE_UNKNOWN', `unknown store "${storeId}"`, { field: 'storeId' });
    }
    this.#sendJson(response, 200, storeLinkViewOf(this.#dispatcher.link(storeId)));
  }

  async #publish(request: IncomingMessage, response: ServerResponse, segment: string): Promise<void> {
    const storeId = this.#storeIdOf(segment);
    const contentType = request.headers['content-type'];
    if (contentType !== undefined && !/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(contentType)) {
      this.#sendError(response, 415, new StorelinkError('OPERATION_INVALID', `send the operation as application/json, not ${contentType}`));
      return;
    }
    const body = await this.#readJson(request);
    const parsed = publishBodySchema.safeParse(body, { reportInput: true });
    if (!parsed.success) {
      const { field, text } = describeIssue(parsed.error.issues[0]!);
      throw new StorelinkError('OPERATION_INVALID', `invalid operation request: ${text}`, { field, cause: parsed.error });
    }
    const { awaitReplyInMs, ...rest } = parsed.data;
    // A controller per call, not one shared signal: the dispatcher adds abort listeners it never removes. A client
    // that leaves does not abort its call either: the operation may already be on its way, and its delivery still
    // shows on /events and in the metrics.
    const controller = new AbortController();
    this.#publishControllers.add(controller);
    try {
      const delivery: Delivery = await this.#dispatcher.publish(
        { storeId, ...rest },
        { abortSignal: controller.signal, ...(awaitReplyInMs === undefined ? {} : { awaitReplyInMs }) },
      );
      this.#sendJson(response, 200, delivery);
    } finally {
      this.#publishControllers.delete(controller);
    }
  }

  /** Reads the body up to the limit; past it, Node discards the rest after the 413 so the connection stays usable. */
  #readJson(request: IncomingMessage): Promise<unknown> {
    const limit = this.#maxBodyBytes;
    const tooLarge = () => new StorelinkError('PAYLOAD_TOO_LARGE', `the request body is larger than ${limit} bytes (an operation's payload may be ${DEFAULT_MAX_PAYLOAD_BYTES})`);
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge());
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const cleanUp = () => {
        request.off('data', onData);
        request.off('end', onEnd);
        request.off('error', onError);
        request.off('close', onClose);
      };
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit) {
          cleanUp();
          reject(tooLarge());
          return;
        }
        chunks.push(chunk);
      };
      const onEnd = () => {
        cleanUp();
        const text = Buffer.concat(chunks).toString('utf8');
        if (text.trim() === '') {
          reject(new StorelinkError('OPERATION_INVALID', 'the request body is empty; send a JSON object { type, payload, … }'));
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch (cause) {
          reject(new StorelinkError('OPERATION_INVALID', `the request body is not valid JSON: ${(cause as Error).message}`, { cause }));
        }
      };
      const onError = (error: Error) => {
        cleanUp();
        reject(error);
      };
      // A client that leaves mid-body must not leave this promise (and close(), which waits for it) pending.
      const onClose = () => {
        cleanUp();
        reject(new StorelinkError('ABORTED', 'the client closed the connection before sending the whole body'));
      };
      request.on('data', onData);
      request.on('end', onEnd);
      request.on('error', onError);
      request.on('close', onClose);
    });
  }

  #streamEvents(request: IncomingMessage, response: ServerResponse): void {
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      // Reverse proxies (nginx) would otherwise buffer the stream.
      'x-accel-buffering': 'no',
    });
    // A first comment flushes the headers, so a client knows the stream is open before any event.
    response.write(': storelink events\n\n');
    // A container, so a stream that completes while subscribing (a closed dispatcher) still unsubscribes.
    const subscription = new Subscription();
    let ended = false;
    const end = (reason: string) => {
      if (ended) return;
      ended = true;
      this.#logger.debug({ reason, remote: request.socket.remoteAddress }, 'event stream ended');
      clearInterval(heartbeat);
      subscription.unsubscribe();
      this.#eventStreams.delete(end);
      if (!response.writableEnded) response.end();
    };
    const write = (text: string) => {
      if (ended || response.destroyed) return;
      response.write(text);
      if (response.writableLength > MAX_EVENT_STREAM_BUFFER_BYTES) {
        this.#logger.warn({ remote: request.socket.remoteAddress }, 'event stream client reads too slowly; ending its stream');
        end('slow client');
      }
    };
    const heartbeat = setInterval(() => write(': heartbeat\n\n'), this.#heartbeatIntervalInMs);
    this.#eventStreams.add(end);
    response.on('close', () => end('client left'));
    subscription.add(
      merge(
      this.#dispatcher.links$.pipe(map((change) => ['link', linkChangeViewOf(change)] as const)),
      this.#dispatcher.deliveries$.pipe(map((delivery) => ['delivery', delivery] as const)),
      this.#dispatcher.events$.pipe(map((event) => ['store-event', event] as const)),
      ).subscribe({
        next: ([event, data]) => write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`),
        complete: () => end('dispatcher closed'),
      }),
    );
  }

  async #serveMetrics(response: ServerResponse): Promise<void> {
    await this.#dispatcher.start();
    const text = await this.#metrics.render();
    response.writeHead(200, { 'content-type': this.#metrics.contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
    response.end(text);
  }

  #sendJson(response: ServerResponse, status: number, value: unknown): void {
    if (response.headersSent || response.destroyed) return;
    const text = JSON.stringify(value);
    response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
    response.end(text);
  }

  #sendError(response: ServerResponse, status: number, error: StorelinkError): void {
    this.#sendJson(response, status, { error: { code: error.code, message: error.message, ...(error.field === undefined ? {} : { field: error.field }) } });
  }

  #fail(response: ServerResponse, error: unknown): void {
    const failure = isStorelinkError(error)
      ? error
      : new StorelinkError('UNEXPECTED_FAILURE', error instanceof Error ? error.message : String(error), { cause: error });
    const status = httpStatusOf(failure);
    if (status >= 500) this.#logger[status === 500 ? 'error' : 'warn']({ err: error, code: failure.code }, 'request failed');
    else this.#logger.debug({ code: failure.code, field: failure.field }, 'request refused');
    this.#sendError(response, status, failure);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // A listen under way would otherwise open the port after the server was closed.
      await this.#listening?.catch(() => undefined);
      for (const controller of this.#publishControllers) controller.abort();
      for (const end of [...this.#eventStreams]) end('server closing');
      this.#metrics.close();
      // The callback comes with an error when the server never listened; closed is closed either way.
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      // Wait for requests under way to answer, then drop the idle keep-alive connections that would hold close().
      await Promise.allSettled([...this.#inFlight]);
      this.#server.closeAllConnections();
      await closed;
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
