/**
 * The cloud dispatcher over HTTP (fastify, JSON): publish an operation, read the stores' links, follow what happens
 * as server-sent events, scrape Prometheus metrics. Every request carries an API key, `Authorization: Bearer
 * <name>.<secret>`, whose scopes include the route's (see apiKeys.ts, http/apiKeyAuth.ts):
 *
 *   POST /stores/:storeId/operations   publish  { type, payload, latency?, awaitReplyInMs?, timeToLiveInMs?, id? } → Delivery
 *   GET  /operations/:id               read     OperationStatus (from the operation records; 404 OPERATION_NOT_FOUND)
 *   GET  /stores/:storeId/operations   read     { operations: OperationStatus[] newest first, nextCursor } (?since=&limit=&cursor=)
 *   GET  /stores                       read     { stores: StoreLinkView[] }
 *   GET  /stores/:storeId              read     StoreLinkView
 *   GET  /events                       read     text/event-stream: `link`, `delivery`, `outcome`, `store-event` (with
 *                                               ids; Last-Event-ID resumes from the last `eventReplayWindow` events, else `reset`)
 *   GET  /metrics                      read     Prometheus text format 0.0.4
 *   GET  /api-keys                     admin    { keys: [{ name, scopes, createdAt, expiresAt? }] } (never a secret or hash)
 *   GET  /openapi.json                 read     this list as an OpenAPI 3.1 document (http/openapi.ts)
 *   GET  /console, /session, /activity, /stores/:storeId/chart   the operations console (http/consoleRoutes.ts)
 *   GET  /stores/:storeId/dead-letters, POST …/:sequenceNumber/resubmit   read / admin (http/deadLetterRoutes.ts)
 *
 * Errors are `{ error: { code, message, field?, operationId? } }` with a StorelinkError code. A store's own refusal is not an
 * error: it is a 200 delivery whose outcome is `rejected` and whose `rejection` says why. The routes live in
 * ./http/, one plugin per group; this file puts them together and owns the server's life.
 */
import { fastify, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { AddressInfo } from 'node:net';
import { StorelinkError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { Dispatcher } from './dispatcher.js';
import { ApiKeyRing } from './apiKeys.js';
import { apiKeysFromFile, fixedApiKeys, type ApiKeySource } from './apiKeyFile.js';
import { createApiKeyCheck, createIdentify, createStillAdmitted, type ApiKeyCheck, type RouteScope } from './http/apiKeyAuth.js';
import { consoleRoutes, type ConsoleOptions } from './http/consoleRoutes.js';
import { deadLetterRoutes, type DeadLetterAccess } from './http/deadLetterRoutes.js';
import { apiKeysRoutes } from './http/apiKeysRoutes.js';
import { createClientErrorHandler, createErrorHandler } from './http/errors.js';
import { DEFAULT_EVENT_REPLAY_MAX_BYTES, DEFAULT_EVENT_REPLAY_WINDOW, EventLog } from './http/eventLog.js';
import { eventsRoutes, streamEventsOf } from './http/eventsRoutes.js';
import { metricsRoutes } from './http/metricsRoutes.js';
import { RouteCatalogue, openApiRoutes } from './http/openapi.js';
import { operationsRoutes, type PublishCall } from './http/operationsRoutes.js';
import { operationStatusRoutes } from './http/operationStatusRoutes.js';
import { storesRoutes } from './http/storesRoutes.js';
import { zodValidatorCompiler } from './http/zodValidation.js';
import type { Subscription } from 'rxjs';
import { createDispatcherMetrics, type DispatcherMetrics, type DispatcherMetricsOptions } from './metrics.js';
import { StoreActivity } from './storeActivity.js';

export type { StoreLinkView } from './http/linkViews.js';
export type { ConsoleChart, ConsoleOptions } from './http/consoleRoutes.js';
export type { DeadLetterAccess } from './http/deadLetterRoutes.js';
export { MAX_AWAIT_REPLY_IN_MS } from './http/operationsRoutes.js';

/** The HTTP API's version, as the OpenAPI document states it: raised with each change to a route or an answer. */
export const HTTP_API_VERSION = '0.2.0';

/** Room for a 256 KiB payload plus the rest of the request. */
export const DEFAULT_MAX_BODY_BYTES = 300 * 1024;
export const DEFAULT_HEARTBEAT_INTERVAL_IN_MS = 15_000;
export const MIN_TOKEN_LENGTH = 16;
/** How long a client may take to send its request headers: a real client sends them in one packet. */
export const DEFAULT_HEADERS_TIMEOUT_IN_MS = 10_000;
/** How long a client may take to send a whole request, body included: 300 KiB need far less; a stalled upload is cut. */
export const DEFAULT_REQUEST_TIMEOUT_IN_MS = 30_000;
/**
 * How long a connection may stay silent. Longer than the slowest answer (a relay call of up to 60 s that falls back
 * to a 60 s wait for the queue's reply), and than twice the event streams' heartbeat.
 */
export const DEFAULT_CONNECTION_TIMEOUT_IN_MS = 300_000;
/** Node's own default, kept: clients such as undici drop their idle connections first (at 4 s). */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_IN_MS = 5_000;
/**
 * Node checks the headers and request timeouts of open connections on an interval (30 s by default), so a timeout
 * is only as precise as that interval: check at least every second, and more often for shorter timeouts.
 */
const MAX_TIMEOUT_CHECK_INTERVAL_IN_MS = 1_000;
/** fastify's default of 100 would answer a long store id with 414 before its schema could say what is wrong. */
const MAX_PATH_PARAMETER_LENGTH = 2_048;

export interface CloudHttpApiOptions {
  dispatcher: Dispatcher;
  /**
   * The API key file (`{ keys: [{ name, scopes, hash, createdAt, expiresAt? }] }`, written by `storelink apikeys`),
   * looked at every `apiKeysRecheckInMs` at most and re-read when it changes. Give this or `token`.
   */
  apiKeysFile?: string;
  /** The bound on a key file change taking effect (a key added works, a key removed is refused); default 500. */
  apiKeysRecheckInMs?: number;
  /**
   * @deprecated One shared bearer token with every scope (a key named `token`); use `apiKeysFile`. At least 16 characters.
   */
  token?: string;
  /** The clock API keys expire by, in ms since the epoch; default `Date.now`. */
  now?: () => number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: an ephemeral port. */
  port?: number;
  /** Serve HTTPS with this certificate (PEM; intermediates after it) and private key; plain HTTP without. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  logger?: Logger;
  /** What `GET /metrics` labels by store (`perStore`: `off`, `all`, or the `{ top: N }` busiest, default 50) and by type. */
  metrics?: DispatcherMetricsOptions;
  /** Largest accepted request body; default 300 KiB. */
  maxBodyBytes?: number;
  /** How often an event stream sends a comment to keep proxies from closing it; default 15 s. */
  heartbeatIntervalInMs?: number;
  /** How many recent events a stream reconnecting with Last-Event-ID can resume from; default 1,000. */
  eventReplayWindow?: number;
  /** The same window's bound in bytes (big replies make big events); default 4 MiB. */
  eventReplayMaxBytes?: number;
  /** How long a client may take to send its request headers before it is answered 408 and cut; default 10 s. */
  headersTimeoutInMs?: number;
  /** How long a client may take to send a whole request, body included, before it is answered 408 and cut; default 30 s. */
  requestTimeoutInMs?: number;
  /** How long an idle keep-alive connection is kept after an answer; default 5 s. */
  keepAliveTimeoutInMs?: number;
  /** How long a connection may stay silent (nothing received or sent) before it is closed; default 300 s, at least twice the heartbeat. */
  connectionTimeoutInMs?: number;
  /** Serve the operations console at /console from these built files, with this chart structure; not served without. */
  console?: ConsoleOptions;
  /** A connection string (Listen and Send on the store queues) for the dead-letter routes; they answer 404 without. */
  deadLetters?: DeadLetterAccess;
}

function positiveDuration(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`createCloudHttpApi: ${name} must be a positive whole number of ms, got ${value}`);
  return value;
}

export interface CloudHttpApi extends AsyncDisposable {
  /** Starts the dispatcher if needed and listens; idempotent. */
  listen(): Promise<{ port: number }>;
  /** Ends event streams, cuts waits for replies short, stops listening; idempotent. Leaves the dispatcher open. */
  close(): Promise<void>;
}

function notServed(request: FastifyRequest): StorelinkError {
  return new StorelinkError('ROUTE_NOT_FOUND', `nothing is served at ${request.url.split('?', 1)[0]}`);
}

export function createCloudHttpApi(options: CloudHttpApiOptions): CloudHttpApi {
  return new DefaultCloudHttpApi(options);
}

class DefaultCloudHttpApi implements CloudHttpApi {
  readonly #dispatcher: Dispatcher;
  readonly #host: string;
  readonly #port: number;
  readonly #logger: Logger;
  readonly #metrics: DispatcherMetrics;
  readonly #eventLog: EventLog;
  readonly #eventSubscription: Subscription;
  readonly #activity: StoreActivity;
  readonly #app: FastifyInstance;
  readonly #apiKeys: ApiKeySource;
  /** Ends every open event stream. */
  readonly #openStreams = new Set<(reason: string) => void>();
  /** Settles when each request being handled has been answered (or its client has gone). */
  readonly #inFlight = new Set<Promise<void>>();
  /** One per publish under way, aborted on close so waits for a queued reply answer at once (as `queued`). */
  readonly #publishControllers = new Set<AbortController>();
  #listening: Promise<{ port: number }> | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: CloudHttpApiOptions) {
    if ((options.apiKeysFile === undefined) === (options.token === undefined)) {
      throw new RangeError('createCloudHttpApi: give apiKeysFile (or the deprecated token), not both nor neither');
    }
    if (options.token !== undefined && (typeof options.token !== 'string' || options.token.length < MIN_TOKEN_LENGTH)) {
      throw new RangeError(`createCloudHttpApi: token must be at least ${MIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 32\`)`);
    }
    if (options.tls !== undefined && (options.tls.cert === undefined || options.tls.key === undefined)) {
      throw new TypeError('createCloudHttpApi: tls needs both cert and key (PEM)');
    }
    const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes <= 0) throw new RangeError(`createCloudHttpApi: maxBodyBytes must be a positive integer, got ${maxBodyBytes}`);
    const heartbeatIntervalInMs = options.heartbeatIntervalInMs ?? DEFAULT_HEARTBEAT_INTERVAL_IN_MS;
    if (!Number.isFinite(heartbeatIntervalInMs) || heartbeatIntervalInMs <= 0) {
      throw new RangeError(`createCloudHttpApi: heartbeatIntervalInMs must be positive, got ${heartbeatIntervalInMs}`);
    }
    const headersTimeout = positiveDuration('headersTimeoutInMs', options.headersTimeoutInMs, Math.min(DEFAULT_HEADERS_TIMEOUT_IN_MS, options.requestTimeoutInMs ?? Infinity));
    const requestTimeout = positiveDuration('requestTimeoutInMs', options.requestTimeoutInMs, Math.max(DEFAULT_REQUEST_TIMEOUT_IN_MS, headersTimeout));
    if (headersTimeout > requestTimeout) {
      throw new RangeError(`createCloudHttpApi: headersTimeoutInMs (${headersTimeout}) must be at most requestTimeoutInMs (${requestTimeout}): the headers are part of the request`);
    }
    const keepAliveTimeout = positiveDuration('keepAliveTimeoutInMs', options.keepAliveTimeoutInMs, DEFAULT_KEEP_ALIVE_TIMEOUT_IN_MS);
    const connectionTimeout = positiveDuration('connectionTimeoutInMs', options.connectionTimeoutInMs, Math.max(DEFAULT_CONNECTION_TIMEOUT_IN_MS, 2 * heartbeatIntervalInMs));
    const dispatcher = options.dispatcher;
    this.#dispatcher = dispatcher;
    this.#host = options.host ?? '127.0.0.1';
    this.#port = options.port ?? 0;
    this.#logger = (options.logger ?? silentLogger).child({ component: 'http' });
    // Created now, not on listen: the counters must see every delivery the dispatcher makes from here on.
    this.#metrics = createDispatcherMetrics(dispatcher, { ...(options.now === undefined ? {} : { now: options.now }), ...options.metrics });
    // From now on too: a client resuming with Last-Event-ID gets what happened while it was away.
    this.#eventLog = new EventLog({
      maxEvents: options.eventReplayWindow ?? DEFAULT_EVENT_REPLAY_WINDOW,
      maxBytes: options.eventReplayMaxBytes ?? DEFAULT_EVENT_REPLAY_MAX_BYTES,
    });
    const eventLog = this.#eventLog;
    this.#eventSubscription = streamEventsOf(dispatcher).subscribe({
      next: ([event, data]) => eventLog.append(event, data),
      complete: () => eventLog.close(),
    });

    // From now on too, for the console's last hour and backlogs.
    this.#activity = new StoreActivity(dispatcher, options.now === undefined ? {} : { now: options.now });

    this.#apiKeys =
      options.apiKeysFile === undefined
        ? fixedApiKeys(new ApiKeyRing({ keys: [] }, { legacyToken: options.token! }))
        : apiKeysFromFile(options.apiKeysFile, this.#logger, options.apiKeysRecheckInMs === undefined ? {} : { recheckAfterInMs: options.apiKeysRecheckInMs });
    const checkKey = createApiKeyCheck(this.#apiKeys, options.now ?? Date.now);
    const stillAdmitted = createStillAdmitted(this.#apiKeys, options.now ?? Date.now);
    const handleError = createErrorHandler(this.#logger);
    const serverTimeouts = {
      headersTimeout,
      requestTimeout,
      connectionsCheckingInterval: Math.min(MAX_TIMEOUT_CHECK_INTERVAL_IN_MS, Math.ceil(headersTimeout / 4)),
    };
    const app = fastify({
      logger: false,
      bodyLimit: maxBodyBytes,
      // A slow client (slowloris) is cut by these: headers and request timeouts are checked on Node's interval;
      // the connection timeout is the socket's idle timer, which a client dribbling a byte at a time keeps resetting.
      // fastify hands `https` (not `http`) to the server it creates over TLS, so the timeouts go there too.
      ...(options.tls === undefined ? { http: serverTimeouts } : { https: { ...serverTimeouts, cert: options.tls.cert, key: options.tls.key } }),
      requestTimeout,
      connectionTimeout,
      keepAliveTimeout,
      clientErrorHandler: createClientErrorHandler(this.#logger),
      // close() drops the connections itself, once the requests under way have their answers.
      forceCloseConnections: false,
      // A request on a connection still open while closing gets the API's answer, not fastify's own 503 body.
      return503OnClosing: false,
      // HEAD is not served (405), as before.
      exposeHeadRoutes: false,
      routerOptions: { maxParamLength: MAX_PATH_PARAMETER_LENGTH },
      // A path fastify cannot route (bad percent-encoding) skips the hooks: admit it here too, so it answers 401 first.
      frameworkErrors: (error, request, reply) => {
        void this.#admit(request, reply, checkKey, 'authenticated').then(
          (refused) => handleError(refused ?? error, request, reply),
          (failure: unknown) => handleError(failure, request, reply),
        );
      },
    });
    app.setValidatorCompiler(zodValidatorCompiler);
    // Every route registered, for the OpenAPI document (GET /openapi.json).
    const routes = new RouteCatalogue();
    app.setErrorHandler(handleError);
    // Only the operations route reads a body, with its own parser; elsewhere a body is ignored, never parsed.
    app.removeAllContentTypeParsers();
    // Fail closed: a route that does not say which scope it needs is a bug, found when the API is built.
    app.addHook('onRoute', (route) => {
      if (route.config?.scope === undefined) throw new Error(`createCloudHttpApi: route ${String(route.method)} ${route.url} does not say its scope (config.scope)`);
      routes.add(route);
    });
    app.addHook('onRequest', async (request, reply) => {
      // No matched route (404): any valid key may learn that nothing is there.
      const refused = await this.#admit(request, reply, checkKey, request.routeOptions.config.scope);
      if (refused !== undefined) throw refused;
      // The router matches `/stores/` as a store with an empty id; a path with an empty segment names nothing.
      if (Object.values(request.params as Record<string, string>).includes('')) throw notServed(request);
    });
    app.addHook('preHandler', (_request, reply, done) => {
      this.#awaitAnswer(reply);
      done();
    });
    app.setNotFoundHandler((request) => {
      throw notServed(request);
    });
    void app.register(operationsRoutes, { dispatcher, handleError, startPublish: () => this.#startPublish() });
    void app.register(storesRoutes, { dispatcher });
    void app.register(operationStatusRoutes, { dispatcher });
    void app.register(eventsRoutes, {
      log: this.#eventLog,
      heartbeatIntervalInMs,
      logger: this.#logger,
      openStreams: this.#openStreams,
      stillAdmitted: (request) => stillAdmitted(request, 'read'),
    });
    void app.register(metricsRoutes, { dispatcher, metrics: this.#metrics });
    void app.register(apiKeysRoutes, { apiKeys: this.#apiKeys });
    void app.register(openApiRoutes, { catalogue: routes, info: () => ({ title: 'storelink cloud HTTP API', version: HTTP_API_VERSION }) });
    if (options.console !== undefined) {
      const identify = createIdentify(this.#apiKeys, options.now ?? Date.now);
      void app.register(consoleRoutes, { ...options.console, dispatcher, activity: this.#activity, identify, logger: this.#logger });
    }
    void app.register(deadLetterRoutes, { dispatcher, ...(options.deadLetters === undefined ? {} : { access: options.deadLetters }) });
    this.#app = app;
  }

  listen(): Promise<{ port: number }> {
    if (this.#closing !== undefined) return Promise.reject(new StorelinkError('STORE_UNAVAILABLE', 'the cloud HTTP API is closed'));
    this.#listening ??= (async () => {
      // A key file that cannot be used fails here, not on the first request.
      await this.#apiKeys.current();
      await this.#dispatcher.start();
      await this.#app.listen({ host: this.#host, port: this.#port });
      const { port } = this.#app.server.address() as AddressInfo;
      this.#logger.info({ host: this.#host, port }, 'cloud HTTP API listening');
      return { port };
    })();
    return this.#listening;
  }

  /**
   * What every request goes through first: its answer is logged (with the name of its key, never the secret) and never
   * cached; without a valid key, or without the route's scope, it is refused (the error returned).
   */
  async #admit(request: FastifyRequest, reply: FastifyReply, checkKey: ApiKeyCheck, scope: RouteScope | undefined): Promise<StorelinkError | undefined> {
    const response = reply.raw;
    const startedAt = performance.now();
    const client: { name?: string } = {};
    response.once('finish', () =>
      this.#logger.debug(
        { method: request.method, path: request.url, status: response.statusCode, apiKey: client.name, durationInMs: performance.now() - startedAt },
        'request answered',
      ),
    );
    void reply.header('cache-control', 'no-store');
    const admission = await checkKey(request, reply, scope);
    client.name = admission.client?.name;
    return admission.refused;
  }

  /**
   * Remembers a request whose handler runs until its response is done (or its client gone), so close() can wait for
   * its answer. Requests still sending their body are not waited for: close() cuts them.
   */
  #awaitAnswer(reply: FastifyReply): void {
    const answered = new Promise<void>((resolve) => reply.raw.once('close', resolve));
    this.#inFlight.add(answered);
    void answered.then(() => this.#inFlight.delete(answered));
  }

  #startPublish(): PublishCall {
    // A publish that arrives while closing would start work that close() no longer waits for.
    if (this.#closing !== undefined) throw new StorelinkError('ABORTED', 'the cloud HTTP API is closing; publish again once it is back, or to another instance');
    // A controller per call, not one shared signal: the dispatcher adds abort listeners it never removes.
    const controller = new AbortController();
    this.#publishControllers.add(controller);
    return { signal: controller.signal, release: () => this.#publishControllers.delete(controller) };
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // A listen under way would otherwise open the port after the server was closed.
      await this.#listening?.catch(() => undefined);
      for (const controller of this.#publishControllers) controller.abort();
      for (const end of [...this.#openStreams]) end('server closing');
      this.#eventSubscription.unsubscribe();
      this.#eventLog.close();
      this.#metrics.close();
      this.#activity.close();
      const closed = this.#app.close();
      // Wait for the requests being handled to answer, then drop the connections left: idle keep-alive ones, and
      // uploads still under way (Node stops enforcing requestTimeout once the server closes, so they could hold close() forever).
      await Promise.allSettled([...this.#inFlight]);
      this.#app.server.closeAllConnections();
      await closed;
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
