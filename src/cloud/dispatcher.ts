/**
 * The cloud side of storelink. `publish` turns a request into an operation envelope and lets the store's link chart
 * decide the way: the queue by default; the relay for real-time operations while the chart allows it; the type's
 * fallback (queue with the same operation id, rejection, or the last cached reply) when it does not or when the relay
 * fails as a channel. Replies, store events and relay announcements come back through the cloud inbox.
 *
 * The dispatcher composes small parts: the link registry (storeLinks.ts), the way of one operation (deliver.ts), the
 * senders to each store (storeSenders.ts), the publishers waiting for queued replies (replyWaiting.ts), the cached
 * replies (replyCache.ts), the inbox (inbox.ts) and the outcomes (outcomes.ts). It owns the store list, start and
 * close, and the streams.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Subject, type Observable } from 'rxjs';
import type { AnyStateMachine, StateValue } from 'xstate';
import { storeLinkMachine } from '../../machines/storeLink.machine.js';
import type { FetchFunction, SignedRelayAnswer } from '../channels/relay/relaySender.js';
import type { RelayConfirmation } from '../channels/relay/relayProtocol.js';
import {
  createServiceBusConnection,
  type ProxyOptions,
  type RetrySettings,
  type ServiceBusConnection,
  type ServiceBusTransport,
  type TlsTrustOptions,
} from '../channels/servicebus/serviceBusConnection.js';
import { StorelinkError, isStorelinkError, withOperationId } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import { relayFailureReasonOf, type ProbeResult } from '../core/linkContract.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { DEFAULT_CLOUD_INBOX, EVENTS_SUBSCRIPTION, REPLIES_SUBSCRIPTION, announcementsSubscription, storeIdSchema } from '../core/names.js';
import { createOperation, type Latency } from '../core/operation.js';
import { defaultPolicy, operationPolicyFor, type Policy } from '../core/policy.js';
import { Signer, Verifier, operationSignedFields, relayAnswerSignedFields, relayConfirmationSignedFields, storeMessageSignedFields, type SigningKey, type TrustedKeys } from '../core/signing.js';
import { createDeliver, type Deliver, type Delivery, type DeliverOptions } from './deliver.js';
import { createInboxHandler, type InboxRejection, type StoreEventMessage } from './inbox.js';
import { checkInstanceId, claimInstanceDir } from './instanceDir.js';
import { openLinkStore, type LinkStore } from './linkStore.js';
import { OperationRecords, type OperationPage, type OperationStatus, type StoreOperationsOptions } from './operationRecords.js';
import { OutcomeTracker, type OperationOutcome } from './outcomes.js';
import { RelayConfirmations } from './relayConfirmations.js';
import { ReplyCache } from './replyCache.js';
import { ReplyWaiting } from './replyWaiting.js';
import { StoreBacklog } from './storeBacklog.js';
import { StoreLinks, type LinkChange } from './storeLinks.js';
import { StoreSenders } from './storeSenders.js';

export type { Delivery, DeliveryOutcome } from './deliver.js';
export type { InboxRejection, InboxRejectionReason, StoreEventMessage } from './inbox.js';
export type { OperationOutcome, OutcomeFailure, OutcomeKind } from './outcomes.js';
export type { OperationPage, OperationStatus, OperationStatusName, StoreOperationsOptions } from './operationRecords.js';

/** Where the dispatcher keeps its operation records (see operationRecords.ts). */
export interface DispatcherDatabaseOptions {
  /** A PostgreSQL connection string; without one, PGlite in `dataDir/database` (in memory without a dataDir). */
  connectionString?: string;
  /** How long records are kept after their publish; default 7 days. */
  retentionInMs?: number;
  /** How often the records past retention are deleted; default 10 minutes. */
  pruneIntervalInMs?: number;
}

export interface KnownStore {
  storeId: string;
  /** Whether the store runs a relay listener (real-time mode). */
  bidirectional: boolean;
  /** Default `store-<storeId>`. */
  queue?: string;
  /** Default `store-<storeId>`. */
  hybridConnection?: string;
  /**
   * The store's public keys, by key id: a reply, event or announcement claiming to be from this store counts only if
   * one of them signed it. Several at once while the store's key rotates. Required.
   */
  publicKeys: TrustedKeys;
}

export interface DispatcherOptions {
  serviceBus: {
    connectionString: string;
    cloudInbox?: string;
    retry?: Partial<RetrySettings>;
    /** Default `amqp` (AMQP over TCP 5671); `websockets` for 443 only, or to go through a proxy. */
    transport?: ServiceBusTransport;
    /** Connect here instead of the connection string's host (the SDK's customEndpointAddress). */
    endpointAddress?: string;
    /**
     * `queue` (default): `cloudInbox` is a queue this one instance reads. `topic`: several instances share the stores,
     * `cloudInbox` is a topic with the subscriptions of src/cloud/inboxTopology.ts (`storelink provision --instances`
     * makes them): replies come back in this instance's session, every instance sees every announcement, events are
     * shared out (README "Several cloud instances").
     */
    inbox?: 'queue' | 'topic';
    /**
     * With `inbox: 'topic'`: the replies of an instance that is gone (its session unheld, its oldest reply waiting
     * this long) are taken in by this one and recorded as outcomes. Default 30 s; 0: never.
     */
    adoptRepliesAfterInMs?: number;
  };
  /**
   * This instance's id, stable across restarts: its replies' session, its announcement subscription
   * (`announcements-<id>`) and its folder in a shared dataDir (`instances/<id>/`). Default: kept in
   * `<dataDir>/instance-id`, or a random one without a dataDir. The operation records name it as the publisher.
   */
  instanceId?: string;
  /**
   * The cloud application's durable handoff of what arrives through the inbox: an inbox message is completed only
   * after its handoff resolved, and left to be delivered again (to this or another instance) when it rejects. So each
   * outcome and event reaches the application at least once (an outcome also when this instance already reported it
   * on `outcomes$`, as the inbox reply may be its only durable copy). A relay answer's outcome is handed off as soon
   * as it is recorded, so that the store can be told to drop its inbox copy; if that copy comes all the same (the
   * confirmation came too late, or never went), it is handed off again.
   */
  handoff?: DispatcherHandoff;
  /** Needed when any store is bi-directional: a key with Send on the stores' hybrid connections. */
  relay?: { connectionString: string; fetch?: FetchFunction };
  /**
   * The HTTPS proxy both channels go through (the relay sender; Service Bus only with transport `websockets`).
   * Default: from `https_proxy`/`HTTPS_PROXY` and `no_proxy`/`NO_PROXY`; `false`: none.
   */
  proxy?: ProxyOptions;
  /** An extra CA both channels trust, besides NODE_EXTRA_CA_CERTS (Service Bus only with transport `websockets`). */
  tls?: TlsTrustOptions;
  policy?: Policy;
  /** The routing chart; default machines/storeLink.machine.ts. */
  chart?: AnyStateMachine;
  stores: readonly KnownStore[];
  /** The cloud's Ed25519 key: every operation sent, on either channel, is signed with it. Required. */
  signing: SigningKey;
  /** Where link snapshots persist across restarts; in memory without it. */
  dataDir?: string;
  /** Live link actors unused this long are stopped (their snapshots stay); default 10 minutes. */
  idleLinkTimeoutInMs?: number;
  /** The clock operations, cached replies and links are dated by, in ms since the epoch (tests inject one). Default `Date.now`. */
  now?: () => number;
  /** How many reported operation ids `outcomes$` remembers, so a second report of one outcome is dropped; default 10,000. */
  maxRecentOutcomes?: number;
  /**
   * Record every operation (publish, delivery, outcome) in a database, so `operation()` and `storeOperations()`
   * answer, from any instance sharing it, and a publish repeating a recorded id returns its recorded outcome. Without
   * it the dispatcher keeps no records.
   */
  database?: DispatcherDatabaseOptions;
  logger?: Logger;
}

export interface DispatcherHandoff {
  outcome?(outcome: OperationOutcome): Promise<void>;
  event?(event: StoreEventMessage): Promise<void>;
}

export interface PublishRequest {
  storeId: string;
  type: string;
  payload: JsonValue;
  /** Default: the type's policy latency. */
  latency?: Latency;
  /** Default: the type's policy time to live. */
  timeToLiveInMs?: number;
  /** Resend an earlier operation under its id (idempotent at the store). */
  id?: string;
}

export type PublishOptions = DeliverOptions;


export interface LinkCounters {
  deliveries: Record<string, number>;
  fallbacks: Record<string, number>;
}

/** A store's outbox as its last report (an announcement) saw it. */
export interface OutboxReport {
  /** Entries waiting to be sent, the report itself not included. */
  pending: number;
  /** Entries set aside as unsendable (`storelink outbox`). */
  parked: number;
  /** When the store wrote the report (ISO 8601, the store's clock). */
  reportedAt: string;
}

export interface LinkView {
  storeId: string;
  bidirectional: boolean;
  /** The chart's state value: a state name, or an object for a compound state (`{ "tripped": "waiting" }`). */
  state: StateValue;
  tags: string[];
  counters: LinkCounters;
  /** Operations this instance put on the store's queue whose outcome it has not learnt yet (and not expired). */
  backlog: number;
  /** The store's last outbox report; null until one arrives. */
  outbox: OutboxReport | null;
}

export interface Dispatcher extends AsyncDisposable {
  /** The configured instance id, or once started the one kept in the data dir (or made up). */
  readonly instanceId: string | undefined;
  start(options?: { abortSignal?: AbortSignal }): Promise<void>;
  publish(request: PublishRequest, options?: PublishOptions): Promise<Delivery>;
  /** Each store's link state changes. Hot; completes on close. */
  readonly links$: Observable<LinkChange>;
  readonly deliveries$: Observable<Delivery>;
  /** Store events (`emit` on the store side). */
  readonly events$: Observable<StoreEventMessage>;
  /**
   * Inbox messages dropped without effect: not validly signed by the store they claim to come from, a reply about an
   * operation of another store, or a message from a store the dispatcher does not know. Hot; completes on close.
   */
  readonly inboxRejections$: Observable<InboxRejection>;
  /** Each operation's final outcome as this instance learns it, once per id; `late` when it came after its publish returned. */
  readonly outcomes$: Observable<OperationOutcome>;
  /** Replies held by the reply cache now (bounded per type by the policy). */
  readonly cachedReplyCount: number;
  /** The operation's record (ROUTE_NOT_FOUND without a database, OPERATION_NOT_FOUND for an id not recorded). */
  operation(id: string): Promise<OperationStatus>;
  /** A store's recorded operations, newest first, a page at a time (ROUTE_NOT_FOUND without a database). */
  storeOperations(storeId: string, options?: StoreOperationsOptions): Promise<OperationPage>;
  /** Reads a store's link from its live, persisted or initial snapshot: reading never starts a link actor. */
  link(storeId: string): LinkView;
  stores(): KnownStore[];
  /** Link actors running now (bi-directional stores, and links used recently). */
  readonly liveLinkCount: number;
  /** Each store's backlog now (see LinkView.backlog); stores with none are absent. */
  backlogs(): ReadonlyMap<string, number>;
  /** Each store's last outbox report; stores that sent none are absent. */
  outboxReports(): ReadonlyMap<string, OutboxReport>;
  close(): Promise<void>;
}

/** How long an unheld session's oldest reply waits before another instance takes its replies in. */
export const DEFAULT_ADOPT_REPLIES_AFTER_IN_MS = 30_000;
/** How long start() waits to learn whether this instance's announcements subscription exists (topic inbox). */
const ANNOUNCEMENTS_CHECK_TIMEOUT_IN_MS = 10_000;

export function createDispatcher(options: DispatcherOptions): Dispatcher {
  return new DefaultDispatcher(options);
}

class DefaultDispatcher implements Dispatcher {
  readonly #options: DispatcherOptions;
  readonly #policy: Policy;
  readonly #now: () => number;
  readonly #logger: Logger;
  readonly #stores = new Map<string, KnownStore>();
  readonly #links$ = new Subject<LinkChange>();
  readonly #deliveries$ = new Subject<Delivery>();
  readonly #events$ = new Subject<StoreEventMessage>();
  readonly #outcomes$ = new Subject<OperationOutcome>();
  readonly #inboxRejections$ = new Subject<InboxRejection>();
  readonly #signer: Signer;
  /** The same key under the label of relay confirmations (signing.ts). */
  readonly #confirmationSigner: Signer;
  readonly #confirmations: RelayConfirmations;
  readonly #storeKeys = new Map<string, Verifier>();
  readonly #outcomes: OutcomeTracker;
  readonly #replies = new ReplyWaiting();
  readonly #cache: ReplyCache;
  readonly #counters = new Map<string, LinkCounters>();
  readonly #backlog: StoreBacklog;
  readonly #outboxReports = new Map<string, OutboxReport>();
  readonly #records: OperationRecords | undefined;
  /** Outcome records being written, by operation id: the inbox completes the message that carried one after it. */
  readonly #recordings = new Map<string, Promise<void>>();
  /** Inbox replies held while their publish is under way: each waits for the recording the publish's return starts. */
  readonly #heldRecordings = new Map<string, ((recording: Promise<void>) => void)[]>();
  #links: StoreLinks | undefined;
  #linkStore: LinkStore | undefined;
  #instanceId: string | undefined;
  #releaseInstanceDir: (() => Promise<void>) | undefined;
  #senders: StoreSenders | undefined;
  #deliver: Deliver | undefined;
  #connection: ServiceBusConnection | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: DispatcherOptions) {
    this.#options = options;
    this.#policy = options.policy ?? defaultPolicy();
    if (options.now !== undefined && typeof options.now !== 'function') {
      throw new TypeError('createDispatcher: now must be a function returning ms since the epoch');
    }
    this.#now = options.now ?? Date.now;
    this.#cache = new ReplyCache(this.#policy, this.#now);
    this.#backlog = new StoreBacklog({ now: this.#now });
    this.#confirmations = new RelayConfirmations({ now: this.#now });
    this.#outcomes = new OutcomeTracker({
      emit: (outcome) => {
        this.#backlog.settled(outcome.operationId);
        this.#outcomes$.next(outcome);
        const recording = this.#recordOutcome(outcome);
        this.#recordings.set(outcome.operationId, recording);
        for (const resolve of this.#heldRecordings.get(outcome.operationId) ?? []) resolve(recording);
        this.#heldRecordings.delete(outcome.operationId);
        if (outcome.channel === 'relay' && !outcome.late) this.#confirmWhenDurable(outcome, recording);
        recording
          .catch((error: unknown) => this.#logger.error({ err: error, operationId: outcome.operationId }, 'could not record the outcome'))
          .finally(() => {
            if (this.#recordings.get(outcome.operationId) === recording) this.#recordings.delete(outcome.operationId);
          });
      },
      now: this.#now,
      ...(options.maxRecentOutcomes === undefined ? {} : { maxRecent: options.maxRecentOutcomes }),
    });
    this.#logger = (options.logger ?? silentLogger).child({ component: 'dispatcher' });
    if (options.database !== undefined) {
      const { connectionString, retentionInMs, pruneIntervalInMs } = options.database;
      // PGlite serves one process: it lives in the folder this instance locks at start (claimInstanceDir), its own
      // under instances/<id>/ when the dataDir is shared. Several instances share records only through PostgreSQL.
      const instanceFolder = options.dataDir === undefined ? undefined : options.instanceId === undefined ? options.dataDir : path.join(options.dataDir, 'instances', options.instanceId);
      const dataDir = instanceFolder === undefined ? undefined : path.join(instanceFolder, 'database');
      this.#records = new OperationRecords({
        database: connectionString === undefined ? (dataDir === undefined ? {} : { dataDir }) : { connectionString },
        ...(options.instanceId === undefined ? {} : { instanceId: options.instanceId }),
        now: this.#now,
        ...(retentionInMs === undefined ? {} : { retentionInMs }),
        ...(pruneIntervalInMs === undefined ? {} : { pruneIntervalInMs }),
        logger: this.#logger,
      });
    }
    for (const store of options.stores) {
      const valid = storeIdSchema.safeParse(store.storeId);
      if (!valid.success) throw new TypeError(`createDispatcher: store id "${store.storeId}" ${valid.error.issues[0]!.message}`);
      if (this.#stores.has(store.storeId)) throw new TypeError(`createDispatcher: store "${store.storeId}" is listed twice`);
      if (store.publicKeys === undefined) {
        throw new TypeError(`createDispatcher: store "${store.storeId}" needs publicKeys ({ [keyId]: publicKey }): the cloud accepts only what the store signed`);
      }
      this.#storeKeys.set(store.storeId, new Verifier(store.publicKeys, 'store-message', `createDispatcher: store "${store.storeId}" publicKeys`));
      this.#stores.set(store.storeId, store);
    }
    if (options.signing === undefined) {
      throw new TypeError('createDispatcher: signing ({ keyId, privateKey }) is required: stores run only operations the cloud signed (`storelink keys create` makes a key pair)');
    }
    this.#signer = new Signer(options.signing, 'operation', 'createDispatcher: signing');
    this.#confirmationSigner = new Signer(options.signing, 'relay-confirmation', 'createDispatcher: signing');
    if (options.instanceId !== undefined) this.#instanceId = checkInstanceId(options.instanceId, 'createDispatcher: instanceId');
    const { inbox: inboxKind, adoptRepliesAfterInMs } = options.serviceBus;
    if (inboxKind !== undefined && inboxKind !== 'queue' && inboxKind !== 'topic') {
      throw new TypeError(`createDispatcher: serviceBus.inbox must be 'queue' or 'topic', got ${JSON.stringify(inboxKind)}`);
    }
    if (adoptRepliesAfterInMs !== undefined && (!Number.isFinite(adoptRepliesAfterInMs) || adoptRepliesAfterInMs < 0)) {
      throw new RangeError(`createDispatcher: serviceBus.adoptRepliesAfterInMs must be a number of milliseconds, 0 or more, got ${adoptRepliesAfterInMs}`);
    }
    if (options.relay === undefined && options.stores.some((store) => store.bidirectional)) {
      throw new TypeError('createDispatcher: bi-directional stores need relay options (a connection string with Send)');
    }
  }

  get instanceId(): string | undefined {
    return this.#instanceId;
  }

  get links$(): Observable<LinkChange> {
    return this.#links$.asObservable();
  }

  get deliveries$(): Observable<Delivery> {
    return this.#deliveries$.asObservable();
  }

  get events$(): Observable<StoreEventMessage> {
    return this.#events$.asObservable();
  }

  get outcomes$(): Observable<OperationOutcome> {
    return this.#outcomes$.asObservable();
  }

  get inboxRejections$(): Observable<InboxRejection> {
    return this.#inboxRejections$.asObservable();
  }

  get cachedReplyCount(): number {
    return this.#cache.size;
  }

  stores(): KnownStore[] {
    return [...this.#stores.values()];
  }

  get liveLinkCount(): number {
    return this.#links?.liveStoreIds().length ?? 0;
  }

  start(options: { abortSignal?: AbortSignal } = {}): Promise<void> {
    if (this.#closing !== undefined) return Promise.reject(new StorelinkError('STORE_UNAVAILABLE', 'the dispatcher is closed'));
    this.#starting ??= this.#start();
    options.abortSignal?.addEventListener('abort', () => void this.close(), { once: true });
    return this.#starting;
  }

  async #start(): Promise<void> {
    // Before the inbox: the outcomes it brings are recorded.
    await this.#records?.open();
    const claimed = await claimInstanceDir({
      ...(this.#options.dataDir === undefined ? {} : { dataDir: this.#options.dataDir }),
      ...(this.#instanceId === undefined ? {} : { instanceId: this.#instanceId }),
    });
    this.#instanceId = claimed.instanceId;
    // The publisher the operation records name: this instance, once its id is known.
    if (this.#records !== undefined) this.#records.instanceId = claimed.instanceId;
    this.#releaseInstanceDir = () => claimed.release();
    const linkStore = await openLinkStore(claimed.linkDir);
    this.#linkStore = linkStore;
    const { transport, endpointAddress } = this.#options.serviceBus;
    const connection = createServiceBusConnection({
      connectionString: this.#options.serviceBus.connectionString,
      ...(transport === undefined ? {} : { transport }),
      ...(endpointAddress === undefined ? {} : { endpointAddress }),
      ...(this.#options.proxy === undefined ? {} : { proxy: this.#options.proxy }),
      ...(this.#options.tls === undefined ? {} : { tls: this.#options.tls }),
      logger: this.#logger,
      ...(this.#options.serviceBus.retry === undefined ? {} : { retry: this.#options.serviceBus.retry }),
    });
    this.#connection = connection;
    if (this.#options.serviceBus.inbox === 'topic') {
      await this.#checkAnnouncementsSubscription(connection, this.#options.serviceBus.cloudInbox ?? DEFAULT_CLOUD_INBOX, claimed.instanceId);
    }
    const senders = new StoreSenders({
      stores: this.#stores,
      connection,
      ...(this.#options.relay === undefined
        ? {}
        : {
            relay: {
              ...this.#options.relay,
              ...(this.#options.proxy === undefined ? {} : { proxy: this.#options.proxy }),
              ...(this.#options.tls === undefined ? {} : { tls: this.#options.tls }),
            },
          }),
      now: this.#now,
    });
    this.#senders = senders;
    const links = new StoreLinks({
      chart: this.#options.chart ?? storeLinkMachine,
      linkPolicy: this.#policy.link,
      store: linkStore,
      isBidirectional: (storeId) => this.#stores.get(storeId)?.bidirectional ?? false,
      onChange: (change) => this.#linkChanged(change),
      probe: (storeId) => this.#probe(storeId),
      now: this.#now,
      logger: this.#logger,
    });
    this.#links = links;
    const inbox = this.#options.serviceBus.cloudInbox ?? DEFAULT_CLOUD_INBOX;
    this.#deliver = createDeliver({
      policy: this.#policy,
      links,
      senders,
      cache: this.#cache,
      replies: this.#replies,
      inbox,
      confirmationFor: (storeId) => this.#confirmationFor(storeId),
      checkRelayAnswer: (storeId, operationId, answer) => this.#checkRelayAnswer(storeId, operationId, answer),
      now: this.#now,
      logger: this.#logger,
    });
    const handoff = this.#options.handoff;
    const handler = createInboxHandler({
      isKnownStore: (storeId) => this.#stores.has(storeId),
      verify: (message) => this.#storeKeys.get(message.storeId)!.verify(storeMessageSignedFields(message), message.signature),
      storeOfOperation: (operationId) => this.#replies.storeOf(operationId) ?? this.#outcomes.storeOf(operationId),
      onRejected: (rejection) => this.#inboxRejections$.next(rejection),
      replies: this.#replies,
      cache: this.#cache,
      links,
      onOutboxDepth: (report) => this.#outboxReported(report.storeId, { ...report.depth, reportedAt: report.createdAt }),
      onEvent: async (event) => {
        await handoff?.event?.(event);
        this.#events$.next(event);
      },
      onReply: async (message, body) => {
        const outcome = this.#outcomes.replied(message, body);
        // Durable before the message is completed: the record of the outcome it reported (if it reported one now), or,
        // when its publish is still under way (the tracker holds the reply), the record written once that returns.
        const held = this.#outcomes.holds(outcome.operationId) ? new Promise<Promise<void>>((resolve) => this.#heldRecordings.set(outcome.operationId, [...(this.#heldRecordings.get(outcome.operationId) ?? []), resolve])) : undefined;
        await (this.#recordings.get(outcome.operationId) ?? (held === undefined ? undefined : await held));
        await handoff?.outcome?.(outcome);
      },
      logger: this.#logger,
    });
    if (this.#options.serviceBus.inbox === 'topic') {
      // Each consumer takes what its subscription's filter lets through, and one handler deals with any kind.
      connection
        .createSessionConsumer({
          topic: inbox,
          subscription: REPLIES_SUBSCRIPTION,
          sessionId: claimed.instanceId,
          handler,
          adoptAfterInMs: this.#options.serviceBus.adoptRepliesAfterInMs ?? DEFAULT_ADOPT_REPLIES_AFTER_IN_MS,
        })
        .start();
      connection.createConsumer({ queue: inbox, subscription: EVENTS_SUBSCRIPTION, concurrency: 16, handler }).start();
      connection.createConsumer({ queue: inbox, subscription: announcementsSubscription(claimed.instanceId), concurrency: 4, handler }).start();
    } else {
      connection.createConsumer({ queue: inbox, concurrency: 16, handler }).start();
    }
    // Bring the links of bi-directional stores to life, so their charts' health probes and cool-downs run without
    // traffic, and restore every link an earlier run persisted. Async-only stores that never had a state start on
    // first use, which keeps start-up proportional to the stores that need a chart running.
    for (const [storeId, store] of this.#stores) {
      if (store.bidirectional || links.hasPersisted(storeId)) links.resume(storeId);
    }
    const idle = this.#options.idleLinkTimeoutInMs ?? 10 * 60_000;
    this.#sweepTimer = setInterval(() => {
      // A bi-directional store's chart probes its relay on its own timers, so only async-only links go idle.
      links.evictIdle(idle, (storeId) => this.#stores.get(storeId)?.bidirectional === true);
      this.#confirmations.prune();
    }, Math.max(1_000, idle / 2));
    this.#sweepTimer.unref();
  }

  /**
   * An instance added without `storelink provision --instances …` would run with link charts that never hear an
   * announcement: refuse to start it, saying so. Service Bus unreachable just now, or a key that may not peek, is not a
   * refusal: the consumers keep trying and report it.
   */
  async #checkAnnouncementsSubscription(connection: ServiceBusConnection, topic: string, instanceId: string): Promise<void> {
    const subscription = announcementsSubscription(instanceId);
    try {
      await connection.checkReadable(topic, subscription, { abortSignal: AbortSignal.timeout(ANNOUNCEMENTS_CHECK_TIMEOUT_IN_MS) });
    } catch (error) {
      if (isStorelinkError(error) && error.code === 'QUEUE_NOT_FOUND') {
        throw new StorelinkError(
          'QUEUE_NOT_FOUND',
          `this instance's subscription ${subscription} of ${topic} does not exist: run \`storelink provision --instances\` with every instance id, ${instanceId} included, then start it again`,
          { cause: error },
        );
      }
      this.#logger.warn({ err: error, subscription }, 'could not check that the announcements subscription exists; starting anyway');
    }
  }

  #linkChanged(change: LinkChange): void {
    this.#logger.info({ storeId: change.storeId, state: change.state, tags: change.tags, previous: change.previousState }, 'link state changed');
    this.#links$.next(change);
  }

  /** A store's outbox depth: kept unless an earlier-written report arrives after a later one. */
  #outboxReported(storeId: string, report: OutboxReport): void {
    const known = this.#outboxReports.get(storeId);
    if (known !== undefined && Date.parse(known.reportedAt) > Date.parse(report.reportedAt)) return;
    this.#outboxReports.set(storeId, report);
  }

  backlogs(): ReadonlyMap<string, number> {
    return this.#backlog.counts();
  }

  outboxReports(): ReadonlyMap<string, OutboxReport> {
    return this.#outboxReports;
  }

  /** The health check behind the chart's `probeRelay` actor: never rejects, says what the relay did and when. */
  async #probe(storeId: string): Promise<ProbeResult> {
    try {
      await this.#senders!.relay(storeId).checkHealth({ timeoutInMs: this.#policy.operationDefaults.relayTimeoutInMs });
      this.#logger.debug({ storeId }, 'relay health probe succeeded');
      return { healthy: true, at: this.#now() };
    } catch (error) {
      const reason = isStorelinkError(error) ? relayFailureReasonOf(error.code) : 'unreachable';
      // Any answer from the store itself proves the relay carries calls.
      if (reason === undefined) return { healthy: true, at: this.#now() };
      this.#logger.info({ storeId, reason }, 'relay health probe failed');
      return { healthy: false, reason, at: this.#now() };
    }
  }

  #count(storeId: string, channel: string | null, outcome: string, fallbackReason: string | undefined): void {
    let counters = this.#counters.get(storeId);
    if (counters === undefined) {
      counters = { deliveries: {}, fallbacks: {} };
      this.#counters.set(storeId, counters);
    }
    const key = `${channel ?? 'none'}:${outcome}`;
    counters.deliveries[key] = (counters.deliveries[key] ?? 0) + 1;
    if (fallbackReason !== undefined) counters.fallbacks[fallbackReason] = (counters.fallbacks[fallbackReason] ?? 0) + 1;
  }

  link(storeId: string): LinkView {
    const store = this.#stores.get(storeId);
    if (store === undefined || this.#links === undefined) throw new StorelinkError('STORE_UNKNOWN', `unknown store "${storeId}"`);
    const reading = this.#links.read(storeId);
    return {
      storeId,
      bidirectional: store.bidirectional,
      state: reading.state,
      tags: [...reading.tags],
      counters: structuredClone(this.#counters.get(storeId) ?? { deliveries: {}, fallbacks: {} }),
      backlog: this.#backlog.countOf(storeId),
      outbox: this.#outboxReports.get(storeId) ?? null,
    };
  }

  /**
   * Once a relay answer's outcome is durable here (recorded, and taken by the application's handoff if it has one),
   * the store may drop the outbox copy it holds back: the next relay call to that store says so. Until then, or if
   * either step fails, the copy comes through the inbox as before and is handed off from there.
   */
  #confirmWhenDurable(outcome: OperationOutcome, recording: Promise<void>): void {
    const handoff = this.#options.handoff;
    recording
      .then(() => handoff?.outcome?.(outcome))
      .then(
        () => this.#confirmations.add(outcome.storeId, outcome.operationId),
        (error: unknown) => this.#logger.debug({ err: error, operationId: outcome.operationId }, 'relay answer not confirmed to the store: its copy will come through the inbox'),
      );
  }

  /**
   * Why an answer through the relay is not the store's, or undefined when the store's key signed it for this call:
   * whoever holds the store's relay credential can listen, and so answer, on its hybrid connection.
   */
  #checkRelayAnswer(storeId: string, operationId: string, answer: SignedRelayAnswer): string | undefined {
    const check = this.#storeKeys.get(storeId)!.verifyAs('relay-answer', relayAnswerSignedFields(storeId, operationId, answer.status, answer.text), answer.signature);
    if (check.valid) return undefined;
    this.#logger.warn({ storeId, operationId, problem: check.problem, status: answer.status }, `an answer through the relay is not the store's (${check.message}); the operation takes its fallback`);
    return check.message;
  }

  /** The confirmation a relay call to this store carries: the answers waiting, signed for it. */
  #confirmationFor(storeId: string): RelayConfirmation | undefined {
    const operationIds = this.#confirmations.take(storeId);
    if (operationIds === undefined) return undefined;
    return { operationIds, signature: this.#confirmationSigner.sign(relayConfirmationSignedFields(storeId, operationIds)) };
  }

  /** Records the outcome; resolves once it is durable (at once without a database). */
  #recordOutcome(outcome: OperationOutcome): Promise<void> {
    return this.#records?.recordOutcome(outcome) ?? Promise.resolve();
  }

  #recordsOrRefuse(): OperationRecords {
    if (this.#records === undefined) throw new StorelinkError('ROUTE_NOT_FOUND', 'this cloud keeps no operation records (give the dispatcher database options)');
    return this.#records;
  }

  async operation(id: string): Promise<OperationStatus> {
    return this.#recordsOrRefuse().get(id);
  }

  async storeOperations(storeId: string, options: StoreOperationsOptions = {}): Promise<OperationPage> {
    return this.#recordsOrRefuse().forStore(storeId, options);
  }

  /** Every failure names the operation: the request's id, or the one made for it before anything could fail. */
  async publish(request: PublishRequest, options: PublishOptions = {}): Promise<Delivery> {
    const repeat = typeof request.id === 'string';
    const operationId = repeat ? request.id! : randomUUID();
    try {
      return await this.#publish({ ...request, id: operationId }, options, repeat);
    } catch (error) {
      throw isStorelinkError(error) ? withOperationId(error, operationId) : error;
    }
  }

  async #publish(request: PublishRequest & { id: string }, options: PublishOptions, repeat: boolean): Promise<Delivery> {
    if (this.#closing !== undefined) throw new StorelinkError('STORE_UNAVAILABLE', 'the dispatcher is closed');
    await this.start();
    const store = this.#stores.get(request.storeId);
    if (store === undefined) throw new StorelinkError('STORE_UNKNOWN', `unknown store "${request.storeId}"`, { field: 'storeId' });
    // A caller's own id may be a retry: an operation whose outcome is recorded is answered from the record, not sent
    // again; one still open (in flight or queued) is sent again, and the store's ledger runs it once.
    const recorded = repeat ? await this.#records?.repeatOf(request.storeId, request.id) : undefined;
    if (recorded !== undefined) return recorded;
    const typePolicy = operationPolicyFor(this.#policy, request.type);
    const latency = request.latency ?? typePolicy.latency;
    const created = createOperation(
      {
        storeId: request.storeId,
        type: request.type,
        payload: request.payload,
        latency,
        timeToLiveInMs: request.timeToLiveInMs ?? typePolicy.timeToLiveInMs,
        id: request.id,
        // Every reply, for whichever channel, comes back to this instance's session (README "Several cloud instances").
        ...(this.#options.serviceBus.inbox === 'topic' ? { replyToSessionId: this.#instanceId! } : {}),
      },
      { nowInMs: this.#now() },
    );
    // Signed once, here: the same envelope goes out on the relay, the queue, or both after a fallback.
    const operation = { ...created, signature: this.#signer.sign(operationSignedFields(created)) };
    const started = performance.now();
    this.#outcomes.began(operation.id, operation.storeId);
    this.#records?.published(operation);
    let delivery: Omit<Delivery, 'durationInMs'>;
    try {
      delivery = await this.#deliver!(operation, options);
    } catch (error) {
      this.#outcomes.returned(operation.id, undefined);
      throw error;
    }
    const done: Delivery = { ...delivery, durationInMs: performance.now() - started };
    this.#records?.delivered(done);
    this.#count(operation.storeId, done.channel, done.outcome, done.fallbackReason);
    if (done.channel === 'queue' && done.outcome === 'queued') this.#backlog.queued(operation.id, operation.storeId, operation.expiresAt);
    this.#deliveries$.next(done);
    // After the delivery, so a stream of both shows the publish's answer before the outcome it carried.
    this.#outcomes.returned(operation.id, done);
    return done;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#sweepTimer);
      await this.#starting?.catch(() => undefined);
      this.#replies.cancelAll();
      await this.#connection?.close();
      this.#links?.stopAll();
      await this.#senders?.close();
      // The last link changes are on disk before close() resolves.
      await this.#linkStore?.flush().catch((error: unknown) => this.#logger.error({ err: error }, 'could not write the link snapshots'));
      // After the inbox closed: its last outcomes are written before the database closes.
      await this.#records?.close().catch((error: unknown) => this.#logger.error({ err: error }, 'could not close the operation records'));
      await this.#releaseInstanceDir?.();
      this.#links$.complete();
      this.#deliveries$.complete();
      this.#events$.complete();
      this.#outcomes$.complete();
      this.#inboxRejections$.complete();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
