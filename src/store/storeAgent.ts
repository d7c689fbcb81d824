/**
 * The store side of storelink: one executor fed by the store's queue and, for a bi-directional store, by its relay
 * listener; a durable ledger so every operation takes effect once; a durable outbox drained to the cloud inbox for
 * replies, store events and relay announcements.
 */
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { setTimeout as wait } from 'node:timers/promises';
import { BehaviorSubject, Subject, type Observable, type Subscription } from 'rxjs';
import { createRelayListener, type RelayListener, type RelayListenerStatus } from '../channels/relay/relayListener.js';
import type { RelayConfirmation } from '../channels/relay/relayProtocol.js';
import {
  DEFAULT_MAX_LOCK_RENEWAL_IN_MS,
  SERVICE_BUS_TRANSPORTS,
  createServiceBusConnection,
  defaultStoreTransport,
  type ProxyOptions,
  type QueueConsumer,
  type QueueDelivery,
  type RetrySettings,
  type ServiceBusConnection,
  type ServiceBusTransport,
  type TlsTrustOptions,
} from '../channels/servicebus/serviceBusConnection.js';
import { parseConnectionString } from '../core/connectionString.js';
import { RetryWindow } from '../core/backoff.js';
import { StorelinkError, isPermanentFailure, isStorelinkError, type StorelinkErrorCode } from '../core/errors.js';
import { findNonJson, type JsonValue } from '../core/json.js';
import type { RelayAnnouncement } from '../core/linkContract.js';
import type { Operation } from '../core/operation.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { DEFAULT_CLOUD_INBOX, defaultStoreEntityName, operationTypeSchema, storeIdSchema } from '../core/names.js';
import { Signer, Verifier, relayAnswerSignedFields, relayConfirmationSignedFields, storeMessageSignedFields, type SigningKey, type TrustedKeys } from '../core/signing.js';
import { MAX_STORE_MESSAGE_BYTES, type OutboxDepth, type StoreMessage } from '../core/storeMessage.js';
import { Executor, resultOf, type Channel, type Execution, type OperationHandlers } from './executor.js';
import { lockDataDir, type DataDirLock } from './dataDirLock.js';
import { openLedger, type Ledger } from './ledger.js';
import { openOutbox, type Outbox } from './outbox.js';
import { OutboxFlusher } from './outboxFlusher.js';
import { DEFAULT_OUTBOX_REPORT_INTERVAL_IN_MS, depthToReport, outboxDepthOf } from './depthReport.js';

// src/index.ts publishes the inbox name beside createStoreAgent, from here.
export { DEFAULT_CLOUD_INBOX } from '../core/names.js';

/** How the store retries, in process, an operation from the queue whose handler failed (see `StoreAgentOptions`). */
export interface HandlerRetrySettings {
  /** The first wait after a failure; default 100 ms. */
  initialDelayInMs: number;
  /** Each wait doubles up to this (each jittered down to no less than half); default 5 s. */
  maxDelayInMs: number;
  /**
   * How long after the first failure the store keeps retrying one delivery before it gives the message back to the
   * queue (abandon: delivered again later, counted); default 60 s. 0: give it back at once.
   */
  maxRetryWindowInMs: number;
}

export const DEFAULT_HANDLER_RETRY: HandlerRetrySettings = Object.freeze({ initialDelayInMs: 100, maxDelayInMs: 5_000, maxRetryWindowInMs: 60_000 });
/** Azure's default MaxDeliveryCount, and the emulator's. */
export const DEFAULT_MAX_DELIVERY_COUNT = 10;

/**
 * How long a relay answer's outbox copy waits for the cloud's confirmation: long enough for the cloud's next call to
 * a busy store to carry it, short enough that an answer lost on its way reaches the cloud soon through the inbox.
 */
export const DEFAULT_RELAY_REPLY_HOLD_IN_MS = 2_000;

export interface StoreAgentOptions {
  storeId: string;
  handlers: OperationHandlers;
  /** Operation types published on the relay; each must have a handler. Default none. */
  expose?: readonly string[];
  serviceBus: {
    connectionString: string;
    /**
     * Default `websockets`: AMQP over WebSockets on TCP 443, the one port a store needs open, and the only transport
     * that goes through a proxy. `amqp`: AMQP over TCP 5671. A development-emulator connection string
     * (UseDevelopmentEmulator=true) defaults to `amqp`, as its plaintext port speaks nothing else.
     */
    transport?: ServiceBusTransport;
    /** Connect here instead of the connection string's host (the SDK's customEndpointAddress), e.g. `https://host:443`. */
    endpointAddress?: string;
    /** Default `store-<storeId>`. */
    queue?: string;
    /** Default `cloud-inbox`. */
    cloudInbox?: string;
    /**
     * The credential for the inbox (Send), when it is not `connectionString`'s: then `connectionString` needs only
     * Listen on the store's queue, and this one only Send on the inbox, e.g. a SharedAccessSignature string the
     * provisioner issued for the inbox (README "Running against real Azure"). Default `connectionString`.
     */
    cloudInboxConnectionString?: string;
    /** Operations handled at once from the queue; default 1, so a store applies them in order. */
    concurrency?: number;
    retry?: Partial<RetrySettings>;
    /**
     * A transient failure (the handler threw anything but `rejectOperation(...)`, or another retryable error) keeps
     * the message locked and retries it here with back-off, within the operation's expiry and this window; then the
     * message is abandoned and comes back later. With concurrency 1 the retries hold the queue's head, so later
     * operations wait: the store keeps its order.
     */
    handlerRetry?: Partial<HandlerRetrySettings>;
    /**
     * The queue's MaxDeliveryCount (default 10, Azure's default). On that last delivery, a failure that outlasts the
     * retry window is dead-lettered by the store with its own code (HANDLER_FAILED) and the last error, before Service
     * Bus would dead-letter it as MaxDeliveryCountExceeded.
     */
    maxDeliveryCount?: number;
    /**
     * With nothing delivered for this long while an unlocked message waits, the queue receiver is re-created (the SDK
     * can leave a receiver silent after a connection loss during its start); default 15 s.
     */
    stallTimeoutInMs?: number;
  };
  /** Absent: an async-only store. */
  relay?: {
    connectionString: string;
    /** Default `store-<storeId>`. */
    hybridConnection?: string;
    /**
     * How long the outbox copy of a relay answer waits for the cloud's confirmation that it has the answer (carried
     * by a later relay call) before it is sent anyway; default 2 s; 0: sent at once. Nothing is lost by a crash
     * meanwhile: the copy is on disk, and sent after a restart.
     */
    replyHoldInMs?: number;
  };
  /**
   * The HTTPS proxy both channels go through (Service Bus over WebSockets, the relay listener's WebSockets). Default:
   * from `https_proxy`/`HTTPS_PROXY` and `no_proxy`/`NO_PROXY`; `false`: none.
   */
  proxy?: ProxyOptions;
  /** An extra CA both channels trust (a TLS-inspecting proxy's, an emulator's), besides NODE_EXTRA_CA_CERTS. */
  tls?: TlsTrustOptions;
  /** Where the ledger and outbox live (created if missing). */
  dataDir: string;
  /**
   * The store's own Ed25519 key: every reply, event, announcement and dead-letter report it sends the cloud is signed
   * with it (when appended to the outbox, so a parked and resubmitted entry stays valid; a relay answer's held copy,
   * nearly always dropped unsent, only when it is sent). Required.
   */
  signing: SigningKey;
  /**
   * The cloud's public keys, by key id: an operation runs only if one of them signed it. Several at once while a key
   * rotates (see README "Signatures"). Required.
   */
  trustedCloudKeys: TrustedKeys;
  /** The clock the ledger, the executor and store events read, in ms since the epoch (tests inject one). Default `Date.now`. */
  now?: () => number;
  /** How often the store checks whether its outbox depth changed, and if so reports it to the cloud; default 30 s. */
  outboxReportIntervalInMs?: number;
  logger?: Logger;
}

export interface StoreEvent {
  /** Dot-namespaced, e.g. `sale.recorded`. */
  type: string;
  body: JsonValue;
}

export type StoreAgentEvent =
  | { type: 'executed'; operationId: string; operationType: string; channel: Channel; outcome: 'done' | 'rejected'; replayed: boolean }
  | { type: 'acknowledged'; operationId: string }
  | { type: 'dead-lettered'; operationId: string | undefined; reason: string; description: string; reported: boolean }
  | { type: 'reply.too-large'; operationId: string; operationType: string; bytes: number; limitBytes: number }
  | { type: 'failed'; operationId: string | undefined; channel: Channel; error: StorelinkError }
  /** A queued operation failed transiently and runs again after `delayInMs`; `attempt` counts the failures so far. */
  | { type: 'retrying'; operationId: string | undefined; attempt: number; delayInMs: number; error: StorelinkError }
  | { type: 'outbox.flushed'; count: number; pending: number }
  /** The cloud confirmed it holds these relay answers: their replies left the outbox unsent. */
  | { type: 'outbox.confirmed'; count: number; pending: number }
  | { type: 'outbox.error'; error: StorelinkError; retryInMs: number }
  /** An outbox event that can never be sent was set aside (see `storelink outbox`); `entryType` is the event's own type. */
  | { type: 'outbox.parked'; id: string; kind: StoreMessage['kind']; entryType: string; code: StorelinkErrorCode; message: string; pending: number }
  | { type: 'queue.error'; error: StorelinkError };

export interface StoreAgentState {
  status: 'created' | 'starting' | 'running' | 'closing' | 'closed';
  relay: RelayListenerStatus | 'disabled';
  outboxPending: number;
}

export interface StoreAgent extends AsyncDisposable {
  readonly storeId: string;
  readonly state$: Observable<StoreAgentState>;
  readonly events$: Observable<StoreAgentEvent>;
  readonly state: StoreAgentState;
  /** Opens the ledger and outbox, then starts consuming and listening. Resolves once local state is ready. */
  start(options?: { abortSignal?: AbortSignal }): Promise<void>;
  /**
   * Queues a store event for the cloud (durably: it survives a restart and waits out a Service Bus outage). Rejects
   * with PAYLOAD_TOO_LARGE, writing nothing, when the store message would be larger than MAX_STORE_MESSAGE_BYTES
   * (240 KiB of UTF-8 JSON, the event's envelope included).
   */
  emit(event: StoreEvent): Promise<void>;
  close(): Promise<void>;
}

export function createStoreAgent(options: StoreAgentOptions): StoreAgent {
  return new DefaultStoreAgent(options);
}

function validateOptions(options: StoreAgentOptions): void {
  const storeId = storeIdSchema.safeParse(options.storeId);
  if (!storeId.success) throw new TypeError(`createStoreAgent: storeId ${storeId.error.issues[0]!.message}`);
  for (const type of Object.keys(options.handlers)) {
    const valid = operationTypeSchema.safeParse(type);
    if (!valid.success) throw new TypeError(`createStoreAgent: handler "${type}" ${valid.error.issues[0]!.message}`);
  }
  for (const type of options.expose ?? []) {
    if (!Object.hasOwn(options.handlers, type)) throw new TypeError(`createStoreAgent: expose lists "${type}", which has no handler`);
  }
  if ((options.expose?.length ?? 0) > 0 && options.relay === undefined) {
    throw new TypeError('createStoreAgent: expose needs relay options (a connection string for the hybrid connection)');
  }
  if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) throw new TypeError('createStoreAgent: dataDir is required');
  if (options.signing === undefined) {
    throw new TypeError("createStoreAgent: signing ({ keyId, privateKey }) is required: the store signs what it sends the cloud (`storelink keys create` makes a key pair)");
  }
  if (options.trustedCloudKeys === undefined) {
    throw new TypeError("createStoreAgent: trustedCloudKeys ({ [keyId]: publicKey }) is required: the store runs only operations the cloud signed");
  }
  const transport = options.serviceBus.transport;
  if (transport !== undefined && !SERVICE_BUS_TRANSPORTS.includes(transport)) {
    throw new TypeError(`createStoreAgent: serviceBus.transport must be 'websockets' or 'amqp', got ${JSON.stringify(transport)}`);
  }
  if (options.now !== undefined && typeof options.now !== 'function') throw new TypeError('createStoreAgent: now must be a function returning ms since the epoch');
  const retry = { ...DEFAULT_HANDLER_RETRY, ...options.serviceBus.handlerRetry };
  for (const key of ['initialDelayInMs', 'maxDelayInMs'] as const) {
    if (!Number.isFinite(retry[key]) || retry[key] <= 0) throw new RangeError(`createStoreAgent: serviceBus.handlerRetry.${key} must be a positive number of milliseconds, got ${retry[key]}`);
  }
  if (retry.maxDelayInMs < retry.initialDelayInMs) {
    throw new RangeError(`createStoreAgent: serviceBus.handlerRetry.maxDelayInMs must be at least initialDelayInMs (${retry.initialDelayInMs}), got ${retry.maxDelayInMs}`);
  }
  if (!Number.isFinite(retry.maxRetryWindowInMs) || retry.maxRetryWindowInMs < 0) {
    throw new RangeError(`createStoreAgent: serviceBus.handlerRetry.maxRetryWindowInMs must be a number of milliseconds, 0 or more, got ${retry.maxRetryWindowInMs}`);
  }
  const reportInterval = options.outboxReportIntervalInMs;
  if (reportInterval !== undefined && (!Number.isSafeInteger(reportInterval) || reportInterval <= 0)) {
    throw new RangeError(`createStoreAgent: outboxReportIntervalInMs must be a positive whole number of milliseconds, got ${reportInterval}`);
  }
  const hold = options.relay?.replyHoldInMs;
  if (hold !== undefined && (!Number.isSafeInteger(hold) || hold < 0)) {
    throw new RangeError(`createStoreAgent: relay.replyHoldInMs must be a whole number of milliseconds, 0 or more, got ${hold}`);
  }
  const maxDeliveryCount = options.serviceBus.maxDeliveryCount ?? DEFAULT_MAX_DELIVERY_COUNT;
  if (!Number.isInteger(maxDeliveryCount) || maxDeliveryCount < 1) {
    throw new RangeError(`createStoreAgent: serviceBus.maxDeliveryCount must be a positive whole number (the queue's MaxDeliveryCount), got ${maxDeliveryCount}`);
  }
}

/** Where a queued operation's run ended: its execution, or the failure it gave up on. */
type QueueAttempt =
  | { execution: Execution; failure?: undefined }
  /** `closing`: the agent is closing, so the message goes back to the queue whatever its delivery count. */
  | { execution?: undefined; failure: StorelinkError; closing: boolean };

/** The relay announcement a listener status warrants; undefined while it is still settling. */
function announcementFor(status: RelayListenerStatus): RelayAnnouncement | undefined {
  if (status === 'listening') return 'up';
  if (status === 'backingOff' || status === 'authFailed' || status === 'stopped') return 'down';
  return undefined;
}

class DefaultStoreAgent implements StoreAgent {
  readonly storeId: string;
  readonly #options: StoreAgentOptions;
  readonly #now: () => number;
  readonly #logger: Logger;
  readonly #events = new Subject<StoreAgentEvent>();
  readonly #state: BehaviorSubject<StoreAgentState>;
  readonly #closeAbort = new AbortController();
  /** Aborted first thing on close, so a retry wait ends at once and its message goes back to the queue. */
  readonly #retryAbort = new AbortController();
  readonly #handlerRetry: HandlerRetrySettings;
  readonly #maxDeliveryCount: number;
  readonly #signer: Signer;
  /** The same key under the label of relay answers (signing.ts): the cloud takes an answer as the store's only so. */
  readonly #answerSigner: Signer;
  readonly #cloudKeys: Verifier;
  /** The same keys, for the cloud's confirmations of relay answers (a label of their own: see signing.ts). */
  readonly #confirmationKeys: Verifier;
  readonly #subscriptions: Subscription[] = [];
  /** Relay replies on their way to the outbox (off the hot path): close() waits for them before closing the outbox. */
  readonly #pendingReplies = new Set<Promise<void>>();
  readonly #relaySignals = new WeakMap<AbortSignal, AbortSignal>();
  #lock: DataDirLock | undefined;
  #ledger: Ledger | undefined;
  #outbox: Outbox | undefined;
  #connection: ServiceBusConnection | undefined;
  /** The inbox's own connection, when the inbox has a credential of its own. */
  #inboxConnection: ServiceBusConnection | undefined;
  #consumer: QueueConsumer | undefined;
  #listener: RelayListener | undefined;
  #flusher: OutboxFlusher | undefined;
  #executor: Executor | undefined;
  #lastAnnouncement: RelayAnnouncement | undefined;
  #lastDepthReport: OutboxDepth | undefined;
  #depthReportTimer: NodeJS.Timeout | undefined;
  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: StoreAgentOptions) {
    validateOptions(options);
    this.#signer = new Signer(options.signing, 'store-message', 'createStoreAgent: signing');
    this.#answerSigner = new Signer(options.signing, 'relay-answer', 'createStoreAgent: signing');
    this.#cloudKeys = new Verifier(options.trustedCloudKeys, 'operation', 'createStoreAgent: trustedCloudKeys');
    this.#confirmationKeys = new Verifier(options.trustedCloudKeys, 'relay-confirmation', 'createStoreAgent: trustedCloudKeys');
    this.storeId = options.storeId;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#logger = (options.logger ?? silentLogger).child({ storeId: options.storeId });
    this.#handlerRetry = { ...DEFAULT_HANDLER_RETRY, ...options.serviceBus.handlerRetry };
    this.#maxDeliveryCount = options.serviceBus.maxDeliveryCount ?? DEFAULT_MAX_DELIVERY_COUNT;
    this.#state = new BehaviorSubject<StoreAgentState>({
      status: 'created',
      relay: options.relay === undefined ? 'disabled' : 'idle',
      outboxPending: 0,
    });
  }

  get state$(): Observable<StoreAgentState> {
    return this.#state.asObservable();
  }

  get events$(): Observable<StoreAgentEvent> {
    return this.#events.asObservable();
  }

  get state(): StoreAgentState {
    return this.#state.getValue();
  }

  #setState(change: Partial<StoreAgentState>): void {
    if (this.#state.closed) return;
    this.#state.next({ ...this.#state.getValue(), ...change });
  }

  start(options: { abortSignal?: AbortSignal } = {}): Promise<void> {
    if (this.#closing !== undefined) return Promise.reject(new StorelinkError('STORE_UNAVAILABLE', 'the store agent is closed'));
    this.#starting ??= this.#start();
    options.abortSignal?.addEventListener('abort', () => void this.close(), { once: true });
    return this.#starting;
  }

  async #start(): Promise<void> {
    const { storeId, serviceBus, relay } = this.#options;
    this.#setState({ status: 'starting' });
    // The ledger and outbox files are this agent's while it runs: `storelink outbox` (or a second agent) waits.
    this.#lock = await lockDataDir(this.#options.dataDir, `the store agent of ${storeId}`, this.#now);
    this.#ledger = await openLedger({ directory: path.join(this.#options.dataDir, 'ledger'), now: this.#now, logger: this.#logger });
    this.#outbox = await openOutbox({ directory: path.join(this.#options.dataDir, 'outbox'), now: this.#now, logger: this.#logger });
    const outbox = this.#outbox;
    this.#executor = new Executor({
      storeId,
      handlers: this.#options.handlers,
      ledger: this.#ledger,
      cloudKeys: this.#cloudKeys,
      now: this.#now,
      onReplyFailed: ({ operationId, error }) => {
        // The relay answer carried the outcome; a redelivery through the queue would report it again from the ledger.
        this.#logger.error({ err: error, operationId }, 'could not queue the reply of a relay operation for the cloud');
      },
      onReplyTooLarge: (tooLarge) => {
        this.#logger.warn({ operationId: tooLarge.operationId, bytes: tooLarge.bytes, limitBytes: tooLarge.limitBytes }, 'result too large for a reply; the cloud is told REPLY_TOO_LARGE');
        this.#events.next({ type: 'reply.too-large', ...tooLarge });
      },
      relayReplyHoldInMs: relay?.replyHoldInMs ?? DEFAULT_RELAY_REPLY_HOLD_IN_MS,
      outbox: {
        append: async (event, options) => {
          // A held copy is nearly always dropped on the cloud's confirmation: it is signed only if it is sent.
          await outbox.append(options?.holdForInMs === undefined ? this.#signed(event) : event, options);
          this.#outboxChanged();
        },
      },
    });
    const connect = (connectionString: string): ServiceBusConnection =>
      createServiceBusConnection({
        connectionString,
        transport: serviceBus.transport ?? defaultStoreTransport(connectionString),
        ...(serviceBus.endpointAddress === undefined ? {} : { endpointAddress: serviceBus.endpointAddress }),
        ...(this.#options.proxy === undefined ? {} : { proxy: this.#options.proxy }),
        ...(this.#options.tls === undefined ? {} : { tls: this.#options.tls }),
        logger: this.#logger,
        ...(serviceBus.retry === undefined ? {} : { retry: serviceBus.retry }),
      });
    this.#connection = connect(serviceBus.connectionString);
    const inboxCredential = serviceBus.cloudInboxConnectionString;
    if (inboxCredential !== undefined && inboxCredential !== serviceBus.connectionString) this.#inboxConnection = connect(inboxCredential);
    this.#logPreIssuedTokens();
    this.#flusher = new OutboxFlusher({
      outbox,
      sender: (this.#inboxConnection ?? this.#connection).createSender(serviceBus.cloudInbox ?? DEFAULT_CLOUD_INBOX),
      seal: (event) => this.#signed(event),
      logger: this.#logger,
    });
    this.#subscriptions.push(
      this.#flusher.events$.subscribe((event) => {
        if (event.type === 'flushed') {
          this.#events.next({ type: 'outbox.flushed', count: event.count, pending: event.pending });
          this.#setState({ outboxPending: event.pending });
        } else if (event.type === 'parked') {
          const { id, kind, type } = event.event;
          this.#events.next({ type: 'outbox.parked', id, kind, entryType: type, code: event.error.code, message: event.error.message, pending: event.pending });
          this.#setState({ outboxPending: event.pending });
        } else {
          this.#events.next({ type: 'outbox.error', error: event.error, retryInMs: event.retryInMs });
        }
      }),
    );
    this.#flusher.start();
    this.#setState({ outboxPending: outbox.size });
    this.#depthReportTimer = setInterval(() => this.#reportOutboxDepth(), this.#options.outboxReportIntervalInMs ?? DEFAULT_OUTBOX_REPORT_INTERVAL_IN_MS);
    this.#depthReportTimer.unref();

    this.#consumer = this.#connection.createConsumer({
      queue: serviceBus.queue ?? defaultStoreEntityName(storeId),
      concurrency: serviceBus.concurrency ?? 1,
      stallTimeoutInMs: serviceBus.stallTimeoutInMs ?? 15_000,
      // The lock must outlive the retries: the whole window, plus the SDK's usual allowance for the runs themselves.
      maxLockRenewalInMs: this.#handlerRetry.maxRetryWindowInMs + DEFAULT_MAX_LOCK_RENEWAL_IN_MS,
      handler: (delivery) => this.#fromQueue(delivery),
    });
    this.#subscriptions.push(
      this.#consumer.events$.subscribe((event) => {
        if (event.type === 'error') this.#events.next({ type: 'queue.error', error: event.error });
      }),
    );
    this.#consumer.start();

    if (relay === undefined) {
      await this.#announce('disabled');
    } else {
      this.#listener = createRelayListener({
        connectionString: relay.connectionString,
        hybridConnection: relay.hybridConnection ?? defaultStoreEntityName(storeId),
        expose: this.#options.expose ?? [],
        execute: (operation, context) => this.#fromRelay(operation, context.abortSignal),
        onConfirmation: (confirmation) => this.#confirmed(confirmation),
        signAnswer: (operationId, status, body) => this.#answerSigner.sign(relayAnswerSignedFields(storeId, operationId, status, body)),
        ...(this.#options.proxy === undefined ? {} : { proxy: this.#options.proxy }),
        ...(this.#options.tls === undefined ? {} : { tls: this.#options.tls }),
        logger: this.#logger,
      });
      this.#subscriptions.push(
        this.#listener.state$.subscribe((state) => {
          this.#setState({ relay: state.status });
          const announcement = announcementFor(state.status);
          if (announcement !== undefined && this.#closing === undefined) {
            this.#announce(announcement).catch((error: unknown) => this.#logger.error({ err: error }, 'could not record a relay announcement'));
          }
        }),
      );
      this.#listener.start();
    }
    this.#setState({ status: 'running' });
    this.#logger.info({ queue: serviceBus.queue ?? defaultStoreEntityName(storeId), relay: relay !== undefined }, 'store agent running');
  }

  /** A pre-issued token stops working at its expiry: say when, at start, so nobody is surprised. */
  #logPreIssuedTokens(): void {
    const { serviceBus, relay } = this.#options;
    const credentials = [
      ['serviceBus.connectionString', serviceBus.connectionString],
      ['serviceBus.cloudInboxConnectionString', serviceBus.cloudInboxConnectionString],
      ['relay.connectionString', relay?.connectionString],
    ] as const;
    for (const [field, text] of credentials) {
      if (text === undefined) continue;
      const { signatureExpiresAtInMs: expiresAt, signatureResource: resource } = parseConnectionString(text);
      if (expiresAt === undefined) continue;
      const expiresAtIso = new Date(expiresAt).toISOString();
      if (expiresAt <= this.#now()) this.#logger.error({ field, resource, expiresAt: expiresAtIso }, `${field} holds a SharedAccessSignature that expired at ${expiresAtIso}: it will be refused`);
      else this.#logger.info({ field, resource, expiresAt: expiresAtIso }, `${field} holds a SharedAccessSignature valid until ${expiresAtIso}`);
    }
  }

  async #announce(relay: RelayAnnouncement): Promise<void> {
    if (this.#lastAnnouncement === relay) return;
    this.#lastAnnouncement = relay;
    this.#lastDepthReport = outboxDepthOf(this.#outbox!);
    await this.#append({ kind: 'announcement', type: 'store.announced', body: { relay, outbox: this.#lastDepthReport } });
  }

  /** Tells the cloud the outbox depth when it changed since the last report (see depthReport.ts). */
  #reportOutboxDepth(): void {
    const outbox = this.#outbox;
    if (outbox === undefined || this.#closing !== undefined) return;
    const depth = depthToReport(outbox, this.#lastDepthReport);
    if (depth === undefined) return;
    this.#lastDepthReport = depth;
    this.#append({ kind: 'announcement', type: 'store.announced', body: { outbox: depth } }).catch((error: unknown) => this.#logger.warn({ err: error }, 'could not record an outbox depth report'));
  }

  #message(event: { kind: 'event' | 'announcement'; type: string; body: JsonValue }): StoreMessage {
    return this.#signed({ id: randomUUID(), storeId: this.storeId, createdAt: new Date(this.#now()).toISOString(), ...event });
  }

  /** The message with the store's signature over it: everything the store sends the cloud goes through here. */
  #signed<Message extends StoreMessage>(message: Message): Message {
    const { signature: _unsigned, ...fields } = message;
    return { ...fields, signature: this.#signer.sign(storeMessageSignedFields(fields)) } as Message;
  }

  async #append(event: { kind: 'event' | 'announcement'; type: string; body: JsonValue }): Promise<void> {
    await this.#appendMessage(this.#message(event));
  }

  async #appendMessage(message: StoreMessage): Promise<void> {
    const outbox = this.#outbox;
    if (outbox === undefined) throw new StorelinkError('STORE_UNAVAILABLE', 'the store agent is not started');
    await outbox.append(message);
    this.#outboxChanged();
  }

  #outboxChanged(): void {
    this.#setState({ outboxPending: this.#outbox?.size ?? 0 });
    this.#flusher?.notify();
  }

  emit(event: StoreEvent): Promise<void> {
    const type = operationTypeSchema.safeParse(event.type);
    if (!type.success) return Promise.reject(new TypeError(`emit: type ${type.error.issues[0]!.message}`));
    const problem = findNonJson(event.body);
    if (problem !== undefined) return Promise.reject(new TypeError(`emit: body${problem.path.map((key) => `.${key}`).join('')} ${problem.message}`));
    if (this.#closing !== undefined) return Promise.reject(new StorelinkError('STORE_UNAVAILABLE', 'the store agent is closed'));
    const message = this.#message({ kind: 'event', type: event.type, body: event.body });
    // The whole message, as the inbox will get it: a larger one could never be sent, and would only be parked.
    const bytes = Buffer.byteLength(JSON.stringify(message), 'utf8');
    if (bytes > MAX_STORE_MESSAGE_BYTES) {
      return Promise.reject(
        new StorelinkError(
          'PAYLOAD_TOO_LARGE',
          `emit: event ${event.type} is ${bytes} bytes as a store message (UTF-8 JSON), more than the ${MAX_STORE_MESSAGE_BYTES} bytes a store message may be; nothing was queued`,
        ),
      );
    }
    return this.#appendMessage(message);
  }

  #executed(execution: Execution, channel: Channel): void {
    this.#events.next({
      type: 'executed',
      operationId: execution.operation.id,
      operationType: execution.operation.type,
      channel,
      outcome: execution.record.outcome,
      replayed: execution.replayed,
    });
  }

  /**
   * The listener's signal joined with the agent's own close, made once per listener signal: AbortSignal.any per call
   * cost a signal and a pair of listeners on two long-lived signals for every request.
   */
  #relaySignal(listenerSignal: AbortSignal): AbortSignal {
    let joined = this.#relaySignals.get(listenerSignal);
    if (joined === undefined) {
      joined = AbortSignal.any([listenerSignal, this.#closeAbort.signal]);
      this.#relaySignals.set(listenerSignal, joined);
    }
    return joined;
  }

  /** The cloud says it holds these relay answers durably: their outbox copies need not be sent. */
  #confirmed(confirmation: RelayConfirmation): void {
    const outbox = this.#outbox;
    if (outbox === undefined || this.#closing !== undefined) return;
    const check = this.#confirmationKeys.verify(relayConfirmationSignedFields(this.storeId, confirmation.operationIds), confirmation.signature);
    if (!check.valid) {
      this.#logger.warn({ problem: check.problem, reason: check.message }, 'ignoring a relay confirmation not signed by the cloud');
      return;
    }
    outbox.acknowledgeHeldReplies(confirmation.operationIds).then(
      (count) => {
        if (count === 0) return;
        this.#outboxChanged();
        this.#events.next({ type: 'outbox.confirmed', count, pending: outbox.size });
      },
      (error: unknown) => this.#logger.warn({ err: error }, 'could not drop confirmed relay replies from the outbox; they will be sent'),
    );
  }

  /** An operation the relay listener already parsed at its boundary (after the size and depth checks). */
  async #fromRelay(operation: Operation, abortSignal: AbortSignal): Promise<JsonValue> {
    const executor = this.#executor!;
    try {
      const execution = await executor.executeParsed(operation, 'relay', this.#relaySignal(abortSignal));
      // Failures are reported by the executor's onReplyFailed; this only keeps close() from cutting the write short.
      const written = execution.replyWritten.catch(() => undefined);
      this.#pendingReplies.add(written);
      void written.finally(() => this.#pendingReplies.delete(written));
      this.#executed(execution, 'relay');
      return resultOf(execution);
    } catch (error) {
      if (isStorelinkError(error) && error.code !== 'OPERATION_REJECTED') {
        this.#logger.warn({ err: error, operationId: idOf(operation), code: error.code }, 'relay operation failed');
        this.#events.next({ type: 'failed', operationId: idOf(operation), channel: 'relay', error });
      }
      throw error;
    }
  }

  async #fromQueue(delivery: QueueDelivery): Promise<void> {
    const body = delivery.message.body;
    const attempt = await this.#runHoldingTheMessage(delivery);
    if (attempt.failure !== undefined) {
      const { failure } = attempt;
      const { deliveryCount } = delivery.message;
      const lastDelivery = !attempt.closing && deliveryCount >= this.#maxDeliveryCount;
      // The one place where the store dead-letters: a failure that can never succeed, or one that outlasted the
      // retries of the queue's last allowed delivery (the store decides, with its own reason, not Service Bus). The
      // cloud hears of it first, as a failed reply, so a crash in between redelivers and the resent report is the same.
      if (isPermanentFailure(failure.code) || lastDelivery) {
        const description = (isPermanentFailure(failure.code) ? failure.message : `still failing on delivery ${deliveryCount} of ${this.#maxDeliveryCount}: ${failure.message}`).slice(0, 1024);
        const reported = await this.#reportDeadLettered(body, failure.code, description);
        await delivery.deadLetter({ reason: failure.code, description });
        this.#logger.warn({ operationId: idOf(body), reason: failure.code, deliveryCount }, 'operation dead-lettered');
        this.#events.next({ type: 'dead-lettered', operationId: idOf(body), reason: failure.code, description, reported });
      } else {
        this.#logger.warn({ err: failure, operationId: idOf(body), deliveryCount }, 'operation failed; it will be delivered again');
        this.#events.next({ type: 'failed', operationId: idOf(body), channel: 'queue', error: failure });
        await delivery.abandon();
      }
      return;
    }
    // The ledger holds the outcome now: announce it, then let the queue forget the message.
    this.#executed(attempt.execution, 'queue');
    await delivery.complete();
    this.#events.next({ type: 'acknowledged', operationId: attempt.execution.operation.id });
  }

  /**
   * Runs a queued operation, and runs it again after a transient failure, with back-off, while the message stays
   * locked (the consumer renews the lock): until it succeeds, fails permanently, expires (the executor then says
   * OPERATION_EXPIRED), the retry window ends, or the agent closes.
   */
  async #runHoldingTheMessage(delivery: QueueDelivery): Promise<QueueAttempt> {
    const body = delivery.message.body;
    let schedule: RetryWindow | undefined;
    for (let attempt = 1; ; attempt += 1) {
      let failure: StorelinkError;
      try {
        return { execution: await this.#executor!.execute(body, 'queue', this.#closeAbort.signal) };
      } catch (error) {
        failure = isStorelinkError(error) ? error : new StorelinkError('HANDLER_FAILED', String(error), { cause: error });
      }
      const closing = this.#retryAbort.signal.aborted;
      if (isPermanentFailure(failure.code) || !failure.retryable || closing) return { failure, closing };
      schedule ??= new RetryWindow({ ...this.#handlerRetry, startedAtInMs: this.#now(), deadlineInMs: expiresAtOf(body) });
      const step = schedule.next(this.#now());
      if (!step.retry) return { failure, closing: false };
      this.#logger.info({ operationId: idOf(body), attempt, delayInMs: step.delayInMs, code: failure.code, error: failure.message }, 'operation failed; retrying');
      this.#events.next({ type: 'retrying', operationId: idOf(body), attempt, delayInMs: step.delayInMs, error: failure });
      try {
        await wait(step.delayInMs, undefined, { signal: this.#retryAbort.signal });
      } catch {
        return { failure, closing: true };
      }
    }
  }

  /** The cloud hears of every operation the store dead-letters, before the dead letter is written. */
  async #reportDeadLettered(body: unknown, reason: string, description: string): Promise<boolean> {
    const reply = await this.#executor!.reportDeadLettered(body, { reason, description });
    if (reply === undefined) {
      this.#logger.warn(
        { reason, operationId: idOf(body) },
        reason === 'SIGNATURE_INVALID'
          ? 'dead-lettered message is not signed by the cloud; the cloud is not told (the report could settle a genuine operation)'
          : 'dead-lettered message has no usable id and storeId, or no valid cloud signature; the cloud is not told',
      );
    }
    return reply !== undefined;
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutDown();
    return this.#closing;
  }

  async #shutDown(): Promise<void> {
    this.#setState({ status: 'closing' });
    clearInterval(this.#depthReportTimer);
    this.#retryAbort.abort();
    await this.#starting?.catch(() => undefined);
    await this.#listener?.close();
    await this.#consumer?.close();
    this.#closeAbort.abort(new StorelinkError('STORE_UNAVAILABLE', 'the store agent is closing'));
    await Promise.all([...this.#pendingReplies]);
    await this.#flusher?.close();
    await this.#connection?.close();
    await this.#inboxConnection?.close();
    try {
      await this.#ledger?.close();
      await this.#outbox?.close();
    } finally {
      await this.#lock?.release();
    }
    for (const subscription of this.#subscriptions) subscription.unsubscribe();
    this.#setState({ status: 'closed' });
    this.#state.complete();
    this.#events.complete();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A queued operation's expiry, if its body has a readable one (the retries only need it after the executor parsed it). */
function expiresAtOf(body: unknown): number | undefined {
  if (typeof body !== 'object' || body === null || !('expiresAt' in body) || typeof body.expiresAt !== 'string') return undefined;
  const instant = Date.parse(body.expiresAt);
  return Number.isFinite(instant) ? instant : undefined;
}

function idOf(body: unknown): string | undefined {
  if (typeof body === 'object' && body !== null && 'id' in body && typeof body.id === 'string') return body.id;
  return undefined;
}
