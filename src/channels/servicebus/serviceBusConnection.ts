/**
 * The Service Bus channel: queue senders and queue consumers over one `ServiceBusClient`. The only importer of
 * @azure/service-bus; nothing of the SDK's types leaves this folder.
 *
 * The consumer never stops silently (the SDK's most reported receiver bug): SDK errors are reported on `events$` and
 * the receiver is re-created after errors the SDK will not retry by itself, when the SDK closed it, and when a
 * watchdog finds an old, unlocked message waiting while nothing has been delivered for `stallTimeoutInMs`.
 */
import {
  RetryMode,
  ServiceBusClient,
  type ServiceBusClientOptions,
  type ServiceBusMessage,
  type ServiceBusReceivedMessage,
  type ServiceBusReceiver,
  type ServiceBusSender,
} from '@azure/service-bus';
import { Subject, type Observable } from 'rxjs';
import WebSocket from 'ws';
import { Backoff } from '../../core/backoff.js';
import { parseConnectionString, type ConnectionString } from '../../core/connectionString.js';
import { StorelinkError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/logger.js';
import { proxyFor, proxySettingsFrom, type ProxyOptions, type ProxySettings } from '../network/proxy.js';
import { trustedCertificates, type TlsTrustOptions } from '../network/tlsTrust.js';
import { webSocketProxyAgent } from '../network/webSocketAgent.js';
import { disableNagleOnAmqpSockets } from './amqpSockets.js';
import { toStorelinkError } from './serviceBusErrors.js';
import { SdkSessionConsumer, type SessionConsumerOptions } from './sessionConsumer.js';

export type { SessionConsumerOptions } from './sessionConsumer.js';

export type { ProxyOptions } from '../network/proxy.js';
export type { TlsTrustOptions } from '../network/tlsTrust.js';

export interface RetrySettings {
  maxRetries: number;
  retryDelayInMs: number;
  maxRetryDelayInMs: number;
  /** How long one attempt of an operation may take. */
  timeoutInMs: number;
}

/** Short on purpose: the SDK's defaults (30 s between attempts) make a restarted emulator or a blip look like an outage. */
export const DEFAULT_RETRY: RetrySettings = Object.freeze({ maxRetries: 3, retryDelayInMs: 200, maxRetryDelayInMs: 5_000, timeoutInMs: 10_000 });

/**
 * How the SDK reaches Service Bus. `websockets`: AMQP over WebSockets on TCP 443, through a proxy if one applies
 * (what a store behind a firewall that opens only 443 needs). `amqp`: AMQP over TCP, TLS on 5671 (5672 plain for a
 * development emulator); it cannot go through an HTTPS proxy.
 */
export type ServiceBusTransport = 'websockets' | 'amqp';

export const SERVICE_BUS_TRANSPORTS: readonly ServiceBusTransport[] = Object.freeze(['websockets', 'amqp']);

/**
 * A store's transport when its configuration names none: WebSockets (443 only, proxy-friendly), except for a
 * development emulator's plaintext AMQP port. The store agent and `storelink doctor` both decide with this.
 */
export function defaultStoreTransport(connectionString: string): ServiceBusTransport {
  return parseConnectionString(connectionString).useDevelopmentEmulator ? 'amqp' : 'websockets';
}

/** Where and how the SDK connects; the same for every client storelink builds (connection, dead-letter tooling). */
export interface ServiceBusNetworkOptions {
  /** Default `amqp` here; the store agent defaults to `websockets`. */
  transport?: ServiceBusTransport;
  /**
   * Connect to this address instead of the connection string's host (the SDK's `customEndpointAddress`), e.g.
   * `https://sb-gateway.example.com:443` or an emulator's TLS port; the connection string's host still names the
   * namespace in tokens and links.
   */
  endpointAddress?: string;
  /** Default: from `https_proxy`/`HTTPS_PROXY` and `no_proxy`/`NO_PROXY`; `false`: none. Needs transport `websockets`. */
  proxy?: ProxyOptions;
  /** An extra CA to trust (WebSockets only: the SDK takes no CA for AMQP over TCP; use NODE_EXTRA_CA_CERTS there). */
  tls?: TlsTrustOptions;
}

export interface ServiceBusConnectionOptions extends ServiceBusNetworkOptions {
  connectionString: string;
  retry?: Partial<RetrySettings>;
  logger?: Logger;
}

export type ApplicationPropertyValue = string | number | boolean;

/** A message to send. `body` is sent as JSON. */
export interface OutgoingQueueMessage {
  messageId: string;
  body: unknown;
  correlationId?: string;
  replyTo?: string;
  /** Where a reply to this message should go within `replyTo` (a session of a session-enabled entity). */
  replyToSessionId?: string;
  /** The session this message belongs to: required by a session-enabled queue or subscription. */
  sessionId?: string;
  subject?: string;
  /** Service Bus drops the message (or dead-letters it, if the queue says so) once this has passed. */
  timeToLiveInMs?: number;
  applicationProperties?: Record<string, ApplicationPropertyValue>;
}

export interface ReceivedQueueMessage {
  messageId: string | undefined;
  body: unknown;
  correlationId: string | undefined;
  replyTo: string | undefined;
  replyToSessionId: string | undefined;
  sessionId: string | undefined;
  subject: string | undefined;
  applicationProperties: Record<string, unknown>;
  /** 1 on the first delivery. */
  deliveryCount: number;
  enqueuedAt: Date | undefined;
}

export interface DeadLetterReason {
  /** A short, stable reason (an error code). */
  reason: string;
  /** What a person reading the dead-letter queue needs to know. */
  description: string;
}

/** One peek-locked message. Settle it exactly once; an unsettled message is abandoned when the handler returns. */
export interface QueueDelivery {
  readonly message: ReceivedQueueMessage;
  complete(): Promise<void>;
  /** Releases the lock now: the message is delivered again, its delivery count one higher. */
  abandon(): Promise<void>;
  deadLetter(reason: DeadLetterReason): Promise<void>;
}

export interface QueueSender {
  /** Sends one message, or several in as few batches as fit. */
  send(messages: OutgoingQueueMessage | readonly OutgoingQueueMessage[], options?: { abortSignal?: AbortSignal }): Promise<void>;
  close(): Promise<void>;
}

export type QueueConsumerEvent =
  | { type: 'receiving' }
  | { type: 'error'; error: StorelinkError; source: string }
  | { type: 'restarting'; reason: string; delayInMs: number }
  | { type: 'closed' };

export interface QueueConsumerOptions {
  /** A queue, or with `subscription` the topic it belongs to. */
  queue: string;
  /** Receive from this subscription of the topic named by `queue` instead of from a queue. */
  subscription?: string;
  handler: (delivery: QueueDelivery) => Promise<void>;
  /**
   * Messages handled at once; default 1, so a store applies its operations in order. A handler's place is given to
   * the next message as soon as it calls `complete()`: its work is done by then, and the completion's round trip to
   * Service Bus overlaps the next message's delivery instead of delaying it (close() still waits for it). Abandoning
   * and dead-lettering keep the place until they are done, so an abandoned message comes back before the next one.
   */
  concurrency?: number;
  /** With nothing delivered for this long while an unlocked message waits, the receiver is re-created; default 60 s. */
  stallTimeoutInMs?: number;
  /** First wait before re-creating a failed receiver; doubles up to 30 s. Default 500 ms. */
  restartDelayInMs?: number;
  /**
   * How long after its receipt the lock of a message still being handled is renewed (the SDK renews it before it
   * runs out); a handler that retries holds the message that long at most. Default 5 minutes, as the SDK's; 0 renews
   * nothing.
   */
  maxLockRenewalInMs?: number;
}

export interface QueueConsumer {
  /** Hot; never errors; completes on close(). */
  readonly events$: Observable<QueueConsumerEvent>;
  start(): void;
  /** Stops receiving, waits for the handlers in flight, and closes the receiver. Idempotent. */
  close(): Promise<void>;
}

export interface ServiceBusConnection extends AsyncDisposable {
  createSender(queue: string): QueueSender;
  createConsumer(options: QueueConsumerOptions): QueueConsumer;
  /** Holds one session of a session-enabled subscription (and adopts orphaned ones if asked): sessionConsumer.ts. */
  createSessionConsumer(options: SessionConsumerOptions): QueueConsumer;
  /**
   * Rejects with QUEUE_NOT_FOUND when the queue (or the topic's subscription, not session-enabled) does not exist, or
   * with what else reading from it ran into. Peeks one message: needs Listen only, takes no lock, moves nothing.
   */
  checkReadable(queue: string, subscription?: string, options?: { abortSignal?: AbortSignal }): Promise<void>;
  /** Closes every sender and consumer created here, then the client. Idempotent. */
  close(): Promise<void>;
}

export function createServiceBusConnection(options: ServiceBusConnectionOptions): ServiceBusConnection {
  return new SdkServiceBusConnection(options);
}

function toSdkMessage(message: OutgoingQueueMessage): ServiceBusMessage {
  return {
    messageId: message.messageId,
    body: message.body,
    contentType: 'application/json',
    ...(message.correlationId === undefined ? {} : { correlationId: message.correlationId }),
    ...(message.replyTo === undefined ? {} : { replyTo: message.replyTo }),
    ...(message.replyToSessionId === undefined ? {} : { replyToSessionId: message.replyToSessionId }),
    ...(message.sessionId === undefined ? {} : { sessionId: message.sessionId }),
    ...(message.subject === undefined ? {} : { subject: message.subject }),
    ...(message.timeToLiveInMs === undefined ? {} : { timeToLive: Math.max(1, Math.floor(message.timeToLiveInMs)) }),
    ...(message.applicationProperties === undefined ? {} : { applicationProperties: message.applicationProperties }),
  };
}

/** An AMQP message id or similar field as text (AMQP allows numbers, UUIDs and binary ids). */
export function stringOrUndefined(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  // A binary messageId (AMQP allows one) reads as its hex bytes.
  return Buffer.isBuffer(value) ? value.toString('hex') : JSON.stringify(value);
}

/** What storelink reads of a message the SDK received (or peeked); the dead-letter tooling shares it. */
export function receivedMessageOf(message: ServiceBusReceivedMessage): ReceivedQueueMessage {
  return {
    messageId: stringOrUndefined(message.messageId),
    body: message.body,
    correlationId: stringOrUndefined(message.correlationId),
    replyTo: message.replyTo,
    replyToSessionId: message.replyToSessionId,
    sessionId: message.sessionId,
    subject: message.subject,
    applicationProperties: { ...(message.applicationProperties ?? {}) },
    // Over AMQP the SDK reports earlier attempts (0 on the first delivery); count this one too, as Service Bus does.
    deliveryCount: (message.deliveryCount ?? 0) + 1,
    enqueuedAt: message.enqueuedTimeUtc,
  };
}

/** What `sdkClientOptions` needs, every file already read and every environment variable already looked up. */
export interface SdkClientSettings {
  connection: ConnectionString;
  retry?: Partial<RetrySettings>;
  transport: ServiceBusTransport;
  endpointAddress?: string;
  proxy: ProxySettings;
  /** From trustedCertificates: Node's roots plus the extra CA; undefined for Node's defaults. */
  ca?: readonly string[];
}

const ENDPOINT_SCHEMES = new Set(['sb:', 'amqps:', 'amqp:', 'https:', 'wss:']);

function endpointOf(endpointAddress: string): URL {
  let url: URL;
  try {
    url = new URL(endpointAddress);
  } catch {
    throw new TypeError(`serviceBus.endpointAddress must be a URL such as https://host:443, got "${endpointAddress}"`);
  }
  if (!ENDPOINT_SCHEMES.has(url.protocol) || url.hostname.length === 0) {
    throw new TypeError(`serviceBus.endpointAddress must be a URL such as https://host:443 (sb, amqps, https or wss), got "${endpointAddress}"`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.username !== '') {
    throw new TypeError(`serviceBus.endpointAddress must be a scheme, host and port only, got "${endpointAddress}"`);
  }
  return url;
}

/**
 * The SDK client options for one connection: storelink's short, explicit retries on top of the SDK's exponential
 * mode, and the transport. Over WebSockets the SDK opens `wss://<host>:<port>/$servicebus/websocket` with the ws
 * package and whatever agent and TLS options it is handed, which is how a proxy and an extra CA reach it; over AMQP
 * it opens a TCP socket with none of these, hence the errors below.
 */
export function sdkClientOptions(settings: SdkClientSettings): ServiceBusClientOptions {
  const { connection, transport } = settings;
  if (!SERVICE_BUS_TRANSPORTS.includes(transport)) {
    throw new TypeError(`serviceBus.transport must be 'websockets' or 'amqp', got ${JSON.stringify(transport)}`);
  }
  const endpoint = settings.endpointAddress === undefined ? undefined : endpointOf(settings.endpointAddress);
  const host = endpoint?.hostname ?? connection.host;
  const options: ServiceBusClientOptions = {
    retryOptions: { ...DEFAULT_RETRY, ...settings.retry, mode: RetryMode.Exponential },
    ...(settings.endpointAddress === undefined ? {} : { customEndpointAddress: settings.endpointAddress }),
  };
  if (transport === 'amqp') {
    const port = endpoint?.port || connection.port || (connection.useDevelopmentEmulator ? 5672 : 5671);
    // HTTPS_PROXY speaks for HTTPS traffic, which AMQP over TCP is not: a proxy from the environment leaves it alone
    // (a developer's machine behind a proxy still reaches a local emulator). A proxy configured for this connection
    // cannot be honoured, and saying nothing would connect around it, so that is an error.
    const proxy = settings.proxy.source === 'option' ? proxyFor(settings.proxy, `amqps://${host.includes(':') ? `[${host}]` : host}:${port}`) : undefined;
    if (proxy !== undefined) {
      throw new TypeError(
        `Service Bus transport 'amqp' (AMQP over TCP to ${host}:${port}) cannot go through an HTTPS proxy, and proxy names ${proxy.display}: ` +
          `set serviceBus.transport to 'websockets' (AMQP over WebSockets on 443, which the proxy can carry), or exempt ${host} with proxy.noProxy, or set proxy to false`,
      );
    }
    if (settings.ca !== undefined) {
      throw new TypeError(
        "tls.caFile cannot apply to Service Bus transport 'amqp': the Azure SDK takes no CA for AMQP over TCP. " +
          "Set serviceBus.transport to 'websockets', or trust the CA for the whole process with NODE_EXTRA_CA_CERTS instead",
      );
    }
    return options;
  }
  const port = endpoint?.port || connection.port || 443;
  const proxy = proxyFor(settings.proxy, `wss://${host.includes(':') ? `[${host}]` : host}:${port}`);
  const constructorOptions: WebSocket.ClientOptions = {
    ...(proxy === undefined ? {} : { agent: webSocketProxyAgent(proxy, settings.ca) }),
    ...(settings.ca === undefined ? {} : { ca: [...settings.ca] }),
  };
  return { ...options, webSocketOptions: { webSocket: WebSocket, webSocketConstructorOptions: constructorOptions } };
}

/** The network options of a larger options object, without its absent keys. */
export function networkOptionsOf(options: ServiceBusNetworkOptions): ServiceBusNetworkOptions {
  return {
    ...(options.transport === undefined ? {} : { transport: options.transport }),
    ...(options.endpointAddress === undefined ? {} : { endpointAddress: options.endpointAddress }),
    ...(options.proxy === undefined ? {} : { proxy: options.proxy }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
  };
}

/** Options of createSdkClient: the network options, plus the environment the proxy defaults are read from. */
export interface SdkClientOptions extends ServiceBusNetworkOptions {
  retry?: Partial<RetrySettings>;
  /** Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** The one way storelink builds an SDK client (queue connections and dead-letter tooling alike). */
export function createSdkClient(connectionString: string, options: SdkClientOptions = {}): ServiceBusClient {
  const env = options.env ?? process.env;
  const ca = trustedCertificates(options.tls, env);
  const clientOptions = sdkClientOptions({
    connection: parseConnectionString(connectionString),
    transport: options.transport ?? 'amqp',
    proxy: proxySettingsFrom(options.proxy, env),
    ...(options.retry === undefined ? {} : { retry: options.retry }),
    ...(options.endpointAddress === undefined ? {} : { endpointAddress: options.endpointAddress }),
    ...(ca === undefined ? {} : { ca }),
  });
  // Over WebSockets, ws turns Nagle off itself; on AMQP sockets nothing would (amqpSockets.ts says why it matters).
  if (clientOptions.webSocketOptions === undefined) disableNagleOnAmqpSockets();
  return new ServiceBusClient(connectionString, clientOptions);
}

class SdkServiceBusConnection implements ServiceBusConnection {
  readonly #client: ServiceBusClient;
  readonly #logger: Logger;
  readonly #closeables = new Set<{ close(): Promise<void> }>();
  #closing: Promise<void> | undefined;

  constructor(options: ServiceBusConnectionOptions) {
    parseConnectionString(options.connectionString);
    this.#logger = (options.logger ?? silentLogger).child({ channel: 'queue' });
    this.#client = createSdkClient(options.connectionString, {
      ...networkOptionsOf(options),
      ...(options.retry === undefined ? {} : { retry: options.retry }),
    });
  }

  #assertOpen(): void {
    if (this.#closing !== undefined) throw new StorelinkError('SERVICE_BUS_UNAVAILABLE', 'the Service Bus connection is closed', { retryable: false });
  }

  #own<T extends { close(): Promise<void> }>(closeable: T): T {
    this.#closeables.add(closeable);
    return closeable;
  }

  createSender(queue: string): QueueSender {
    this.#assertOpen();
    const sdkSender = this.#client.createSender(queue);
    const sender: QueueSender = {
      send: (messages, sendOptions) => sendMessages(sdkSender, queue, messages, sendOptions?.abortSignal),
      close: async () => {
        this.#closeables.delete(sender);
        await sdkSender.close();
      },
    };
    return this.#own(sender);
  }

  createConsumer(options: QueueConsumerOptions): QueueConsumer {
    this.#assertOpen();
    const consumer = new SdkQueueConsumer(this.#client, options, this.#logger.child({ queue: options.queue }), () =>
      this.#closeables.delete(consumer),
    );
    return this.#own(consumer);
  }

  createSessionConsumer(options: SessionConsumerOptions): QueueConsumer {
    this.#assertOpen();
    const consumer = new SdkSessionConsumer(this.#client, options, this.#logger.child({ topic: options.topic, subscription: options.subscription }), () =>
      this.#closeables.delete(consumer),
    );
    return this.#own(consumer);
  }

  async checkReadable(queue: string, subscription?: string, options: { abortSignal?: AbortSignal } = {}): Promise<void> {
    this.#assertOpen();
    const receiver = subscription === undefined ? this.#client.createReceiver(queue) : this.#client.createReceiver(queue, subscription);
    try {
      await receiver.peekMessages(1, options.abortSignal === undefined ? {} : { abortSignal: options.abortSignal });
    } catch (error) {
      throw toStorelinkError(error, `reading from ${subscription === undefined ? queue : `${queue}/${subscription}`}`);
    } finally {
      await receiver.close().catch(() => undefined);
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#closeables].map((closeable) => closeable.close()));
      await this.#client.close();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

async function sendMessages(
  sender: ServiceBusSender,
  queue: string,
  messages: OutgoingQueueMessage | readonly OutgoingQueueMessage[],
  abortSignal: AbortSignal | undefined,
): Promise<void> {
  const list = Array.isArray(messages) ? (messages as readonly OutgoingQueueMessage[]) : [messages as OutgoingQueueMessage];
  if (list.length === 0) return;
  const options = abortSignal === undefined ? {} : { abortSignal };
  try {
    if (list.length === 1) {
      await sender.sendMessages(toSdkMessage(list[0]!), options);
      return;
    }
    let batch = await sender.createMessageBatch(options);
    for (const message of list) {
      const sdkMessage = toSdkMessage(message);
      if (batch.tryAddMessage(sdkMessage)) continue;
      if (batch.count === 0) {
        throw new StorelinkError('PAYLOAD_TOO_LARGE', `message ${message.messageId} is larger than the largest batch ${queue} accepts`);
      }
      await sender.sendMessages(batch, options);
      batch = await sender.createMessageBatch(options);
      if (!batch.tryAddMessage(sdkMessage)) {
        throw new StorelinkError('PAYLOAD_TOO_LARGE', `message ${message.messageId} is larger than the largest batch ${queue} accepts`);
      }
    }
    if (batch.count > 0) await sender.sendMessages(batch, options);
  } catch (error) {
    throw toStorelinkError(error, `sending to ${queue}`);
  }
}

const MAX_RESTART_DELAY_IN_MS = 30_000;
/** Set explicitly rather than left to the SDK, as the store's handler retries rely on it. */
export const DEFAULT_MAX_LOCK_RENEWAL_IN_MS = 5 * 60_000;

class SdkQueueConsumer implements QueueConsumer {
  readonly #client: ServiceBusClient;
  readonly #options: QueueConsumerOptions;
  readonly #logger: Logger;
  readonly #onClosed: () => void;
  readonly #events = new Subject<QueueConsumerEvent>();
  readonly #inFlight = new Set<Promise<void>>();
  #receiver: ServiceBusReceiver | undefined;
  #subscription: { close(): Promise<void> } | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  readonly #restartBackoff: Backoff;
  #lastActivityInMs = performance.now();
  #started = false;
  #closing: Promise<void> | undefined;

  constructor(client: ServiceBusClient, options: QueueConsumerOptions, logger: Logger, onClosed: () => void) {
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
    const renewal = options.maxLockRenewalInMs ?? DEFAULT_MAX_LOCK_RENEWAL_IN_MS;
    if (!Number.isFinite(renewal) || renewal < 0) throw new RangeError(`maxLockRenewalInMs must be a number of milliseconds, 0 or more, got ${renewal}`);
    this.#client = client;
    this.#options = options;
    this.#logger = logger;
    this.#onClosed = onClosed;
    const initialInMs = options.restartDelayInMs ?? 500;
    this.#restartBackoff = new Backoff({ initialInMs, maxInMs: Math.max(initialInMs, MAX_RESTART_DELAY_IN_MS) });
  }

  get events$(): Observable<QueueConsumerEvent> {
    return this.#events.asObservable();
  }

  start(): void {
    if (this.#closing !== undefined) throw new StorelinkError('SERVICE_BUS_UNAVAILABLE', 'the consumer is closed', { retryable: false });
    if (this.#started) return;
    this.#started = true;
    this.#subscribe();
    const stallTimeout = this.#options.stallTimeoutInMs ?? 60_000;
    this.#watchdog = setInterval(() => void this.#checkForStall(stallTimeout), Math.max(50, stallTimeout / 2));
    this.#watchdog.unref();
  }

  #subscribe(): void {
    const receiverOptions = {
      receiveMode: 'peekLock' as const,
      maxAutoLockRenewalDurationInMs: this.#options.maxLockRenewalInMs ?? DEFAULT_MAX_LOCK_RENEWAL_IN_MS,
    };
    const { queue, subscription } = this.#options;
    const receiver =
      subscription === undefined ? this.#client.createReceiver(queue, receiverOptions) : this.#client.createReceiver(queue, subscription, receiverOptions);
    this.#receiver = receiver;
    this.#lastActivityInMs = performance.now();
    this.#subscription = receiver.subscribe(
      {
        processMessage: (message) => this.#process(receiver, message),
        processError: async (args) => {
          const error = toStorelinkError(args.error, `receiving from ${this.#options.queue} (${args.errorSource})`);
          this.#logger.warn({ err: error, code: error.code, source: args.errorSource }, 'queue consumer error');
          this.#events.next({ type: 'error', error, source: args.errorSource });
          // The SDK keeps retrying transient failures by itself; for the rest, or a receiver it gave up on, start over.
          if (!error.retryable || receiver.isClosed) this.#restart(receiver, `${error.code}: ${error.message}`);
          return Promise.resolve();
        },
      },
      { autoCompleteMessages: false, maxConcurrentCalls: this.#options.concurrency ?? 1 },
    );
    this.#events.next({ type: 'receiving' });
  }

  async #process(receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage): Promise<void> {
    this.#lastActivityInMs = performance.now();
    this.#restartBackoff.reset();
    let settled = false;
    let releasePlace!: () => void;
    const completing = new Promise<void>((resolve) => (releasePlace = resolve));
    const settle = async (what: string, action: () => Promise<void>): Promise<void> => {
      if (settled) throw new TypeError(`message ${String(message.messageId)} is already settled`);
      settled = true;
      if (what === 'completion') releasePlace();
      try {
        await action();
      } catch (error) {
        throw toStorelinkError(error, `${what} of message ${String(message.messageId)}`);
      }
    };
    const delivery: QueueDelivery = {
      message: receivedMessageOf(message),
      complete: () => settle('completion', () => receiver.completeMessage(message)),
      abandon: () => settle('abandon', () => receiver.abandonMessage(message)),
      deadLetter: ({ reason, description }) =>
        settle('dead-lettering', () => receiver.deadLetterMessage(message, { deadLetterReason: reason, deadLetterErrorDescription: description })),
    };
    const work = (async () => {
      try {
        await this.#options.handler(delivery);
      } catch (error) {
        this.#logger.warn({ err: error, messageId: message.messageId }, 'queue handler failed; the message will be delivered again');
      }
      if (!settled) {
        await delivery.abandon().catch((error: unknown) => {
          this.#events.next({ type: 'error', error: toStorelinkError(error, 'abandoning an unsettled message'), source: 'abandon' });
        });
      }
    })();
    this.#inFlight.add(work);
    void work.finally(() => {
      this.#inFlight.delete(work);
      this.#lastActivityInMs = performance.now();
    });
    // The SDK gives the next message once this returns: when the handler is done, or once it started completing.
    await Promise.race([work, completing]);
  }

  #restart(receiver: ServiceBusReceiver, reason: string): void {
    if (this.#closing !== undefined || this.#receiver !== receiver || this.#restartTimer !== undefined) return;
    const delayInMs = this.#restartBackoff.next();
    this.#events.next({ type: 'restarting', reason, delayInMs });
    this.#logger.info({ reason, delayInMs }, 're-creating the queue receiver');
    const subscription = this.#subscription;
    this.#receiver = undefined;
    this.#subscription = undefined;
    void subscription?.close().catch(() => undefined);
    void receiver.close().catch(() => undefined);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (this.#closing === undefined) this.#subscribe();
    }, delayInMs);
  }

  /** Re-creates a receiver that delivers nothing while an old, unlocked message is waiting. */
  async #checkForStall(stallTimeoutInMs: number): Promise<void> {
    const receiver = this.#receiver;
    if (receiver === undefined || this.#closing !== undefined || this.#inFlight.size > 0) return;
    // Quiet time is measured on the monotonic clock, so a wall clock set forward does not fake a stall; the waiting
    // message's instants come from the broker's wall clock, so they are compared with ours.
    const elapsedNow = performance.now();
    const now = Date.now();
    if (receiver.isClosed) {
      this.#restart(receiver, 'the SDK closed the receiver');
      return;
    }
    if (elapsedNow - this.#lastActivityInMs < stallTimeoutInMs) return;
    let waiting: ServiceBusReceivedMessage[];
    try {
      waiting = await receiver.peekMessages(1);
    } catch (error) {
      this.#events.next({ type: 'error', error: toStorelinkError(error, `peeking ${this.#options.queue}`), source: 'watchdog' });
      return;
    }
    const head = waiting[0];
    const stuck =
      head !== undefined &&
      head.state === 'active' &&
      (head.enqueuedTimeUtc?.getTime() ?? now) <= now - stallTimeoutInMs &&
      (head.lockedUntilUtc === undefined || head.lockedUntilUtc.getTime() < now);
    if (stuck && this.#inFlight.size === 0 && this.#receiver === receiver) {
      this.#restart(receiver, `no delivery for ${stallTimeoutInMs} ms while message ${String(head.messageId)} waits`);
    } else {
      this.#lastActivityInMs = elapsedNow;
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#watchdog);
      clearTimeout(this.#restartTimer);
      await this.#subscription?.close().catch(() => undefined);
      await Promise.allSettled([...this.#inFlight]);
      await this.#receiver?.close().catch(() => undefined);
      this.#onClosed();
      this.#events.next({ type: 'closed' });
      this.#events.complete();
    })();
    return this.#closing;
  }
}
