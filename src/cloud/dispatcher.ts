/**
 * The cloud side of storelink. `publish` turns a request into an operation envelope and lets the store's link chart
 * decide the way: the queue by default; the relay for real-time operations while the chart allows it; the type's
 * fallback (queue with the same operation id, rejection, or the last cached reply) when it does not or when the relay
 * fails as a channel. Replies, store events and relay announcements come back through the cloud inbox.
 */
import { Subject, type Observable, type Subscription } from 'rxjs';
import type { AnyStateMachine, StateValue } from 'xstate';
import { storeLinkMachine } from '../../machines/storeLink.machine.js';
import { createRelaySender, type FetchFunction, type RelaySender } from '../channels/relay/relaySender.js';
import {
  createServiceBusConnection,
  type QueueDelivery,
  type QueueSender,
  type RetrySettings,
  type ServiceBusConnection,
} from '../channels/servicebus/serviceBusConnection.js';
import { StorelinkError, isStorelinkError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import { RELAY_ANNOUNCEMENTS, relayFailureReasonOf, type ProbeResult, type RelayAnnouncement } from '../core/linkContract.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { defaultStoreEntityName, storeIdSchema } from '../core/names.js';
import { createOperation, type Latency, type Operation } from '../core/operation.js';
import { defaultPolicy, operationPolicyFor, type Policy } from '../core/policy.js';
import { route } from '../core/route.js';
import { parseStoreMessage, type ReplyBody } from '../core/storeMessage.js';
import { openLinkStore } from './linkStore.js';
import { StoreLinks, type LinkChange } from './storeLinks.js';

export const DEFAULT_CLOUD_INBOX = 'cloud-inbox';

export interface KnownStore {
  storeId: string;
  /** Whether the store runs a relay listener (real-time mode). */
  bidirectional: boolean;
  /** Default `store-<storeId>`. */
  queue?: string;
  /** Default `store-<storeId>`. */
  hybridConnection?: string;
}

export interface DispatcherOptions {
  serviceBus: { connectionString: string; cloudInbox?: string; retry?: Partial<RetrySettings> };
  /** Needed when any store is bi-directional: a key with Send on the stores' hybrid connections. */
  relay?: { connectionString: string; fetch?: FetchFunction };
  policy?: Policy;
  /** The routing chart; default machines/storeLink.machine.ts. */
  chart?: AnyStateMachine;
  stores: readonly KnownStore[];
  /** Where link snapshots persist across restarts; in memory without it. */
  dataDir?: string;
  /** Live link actors unused this long are stopped (their snapshots stay); default 10 minutes. */
  idleLinkTimeoutInMs?: number;
  /** The clock operations, cached replies and links are dated by, in ms since the epoch (tests inject one). Default `Date.now`. */
  now?: () => number;
  logger?: Logger;
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

export interface PublishOptions {
  abortSignal?: AbortSignal;
  /** When the operation goes through the queue, wait this long for the store's reply. */
  awaitReplyInMs?: number;
}

export type DeliveryOutcome = 'delivered' | 'queued' | 'rejected' | 'served-cached';

export interface Delivery {
  operationId: string;
  storeId: string;
  type: string;
  latency: Latency;
  /** The channel that carried the operation last; null when nothing was sent (rejected or served from cache). */
  channel: 'relay' | 'queue' | null;
  outcome: DeliveryOutcome;
  /** The store's result, for `delivered` and `served-cached`. */
  reply?: JsonValue;
  /** Why it was rejected: the store's refusal, or the fallback's. */
  rejection?: { code: string; message: string };
  /** For `served-cached`: how old the cached reply is. */
  cachedAgeInMs?: number;
  /** Why a real-time operation did not complete on the relay. */
  fallbackReason?: string;
  /** Sends made: 2 when a failed relay call fell back to the queue. */
  attempts: number;
  durationInMs: number;
}

export interface StoreEventMessage {
  id: string;
  storeId: string;
  type: string;
  body: JsonValue;
  createdAt: string;
}

export interface LinkCounters {
  deliveries: Record<string, number>;
  fallbacks: Record<string, number>;
}

export interface LinkView {
  storeId: string;
  bidirectional: boolean;
  /** The chart's state value: a state name, or an object for a compound state (`{ "tripped": "waiting" }`). */
  state: StateValue;
  tags: string[];
  counters: LinkCounters;
}

export interface Dispatcher extends AsyncDisposable {
  start(options?: { abortSignal?: AbortSignal }): Promise<void>;
  publish(request: PublishRequest, options?: PublishOptions): Promise<Delivery>;
  /** Each store's link state changes. Hot; completes on close. */
  readonly links$: Observable<LinkChange>;
  readonly deliveries$: Observable<Delivery>;
  /** Store events (`emit` on the store side). */
  readonly events$: Observable<StoreEventMessage>;
  /** Reads a store's link from its live, persisted or initial snapshot: reading never starts a link actor. */
  link(storeId: string): LinkView;
  stores(): KnownStore[];
  /** Link actors running now (bi-directional stores, and links used recently). */
  readonly liveLinkCount: number;
  close(): Promise<void>;
}

export function createDispatcher(options: DispatcherOptions): Dispatcher {
  return new DefaultDispatcher(options);
}

interface PendingReply {
  operation: Pick<Operation, 'storeId' | 'type' | 'payload'>;
  resolve: (body: ReplyBody | undefined) => void;
}

/** What a delivery knows before its last step: which operation, how many sends so far, and why it fell back. */
type SoFar = Pick<Delivery, 'operationId' | 'storeId' | 'type' | 'latency' | 'attempts'> & { fallbackReason?: string };

interface CachedReply {
  reply: JsonValue;
  atInMs: number;
}

/** JSON with sorted keys: equal payloads give equal cache keys. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${stableJson((value as Record<string, unknown>)[key])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
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
  readonly #pending = new Map<string, PendingReply>();
  readonly #cache = new Map<string, CachedReply>();
  readonly #relaySenders = new Map<string, RelaySender>();
  readonly #queueSenders = new Map<string, QueueSender>();
  readonly #counters = new Map<string, LinkCounters>();
  readonly #subscriptions: Subscription[] = [];
  #links: StoreLinks | undefined;
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
    this.#logger = (options.logger ?? silentLogger).child({ component: 'dispatcher' });
    for (const store of options.stores) {
      const valid = storeIdSchema.safeParse(store.storeId);
      if (!valid.success) throw new TypeError(`createDispatcher: store id "${store.storeId}" ${valid.error.issues[0]!.message}`);
      if (this.#stores.has(store.storeId)) throw new TypeError(`createDispatcher: store "${store.storeId}" is listed twice`);
      this.#stores.set(store.storeId, store);
    }
    if (options.relay === undefined && options.stores.some((store) => store.bidirectional)) {
      throw new TypeError('createDispatcher: bi-directional stores need relay options (a connection string with Send)');
    }
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
    const linkStore = await openLinkStore(this.#options.dataDir);
    this.#links = new StoreLinks({
      chart: this.#options.chart ?? storeLinkMachine,
      linkPolicy: this.#policy.link,
      store: linkStore,
      isBidirectional: (storeId) => this.#stores.get(storeId)?.bidirectional ?? false,
      onChange: (change) => this.#linkChanged(change),
      probe: (storeId) => this.#probe(storeId),
      now: this.#now,
      logger: this.#logger,
    });
    this.#connection = createServiceBusConnection({
      connectionString: this.#options.serviceBus.connectionString,
      logger: this.#logger,
      ...(this.#options.serviceBus.retry === undefined ? {} : { retry: this.#options.serviceBus.retry }),
    });
    const inbox = this.#connection.createConsumer({
      queue: this.#options.serviceBus.cloudInbox ?? DEFAULT_CLOUD_INBOX,
      concurrency: 16,
      handler: (delivery) => this.#fromInbox(delivery),
    });
    inbox.start();
    // Bring the links of bi-directional stores to life, so their charts' health probes and cool-downs run without
    // traffic, and restore every link an earlier run persisted. Async-only stores that never had a state start on
    // first use, which keeps start-up proportional to the stores that need a chart running.
    for (const [storeId, store] of this.#stores) {
      if (store.bidirectional || this.#links.hasPersisted(storeId)) this.#links.resume(storeId);
    }
    const idle = this.#options.idleLinkTimeoutInMs ?? 10 * 60_000;
    this.#sweepTimer = setInterval(() => {
      // A bi-directional store's chart probes its relay on its own timers, so only async-only links go idle.
      this.#links?.evictIdle(idle, (storeId) => this.#stores.get(storeId)?.bidirectional === true);
    }, Math.max(1_000, idle / 2));
    this.#sweepTimer.unref();
  }

  #linkChanged(change: LinkChange): void {
    this.#logger.info({ storeId: change.storeId, state: change.state, tags: change.tags, previous: change.previousState }, 'link state changed');
    this.#links$.next(change);
  }

  /** The health check behind the chart's `probeRelay` actor: never rejects, says what the relay did and when. */
  async #probe(storeId: string): Promise<ProbeResult> {
    try {
      await this.#relaySender(storeId).checkHealth({ timeoutInMs: this.#policy.operationDefaults.relayTimeoutInMs });
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

  #relaySender(storeId: string): RelaySender {
    let sender = this.#relaySenders.get(storeId);
    if (sender === undefined) {
      const relay = this.#options.relay;
      if (relay === undefined) throw new StorelinkError('RELAY_UNREACHABLE', 'the dispatcher has no relay connection string');
      const store = this.#stores.get(storeId)!;
      sender = createRelaySender({
        connectionString: relay.connectionString,
        hybridConnection: store.hybridConnection ?? defaultStoreEntityName(storeId),
        ...(relay.fetch === undefined ? {} : { fetch: relay.fetch }),
        now: this.#now,
      });
      this.#relaySenders.set(storeId, sender);
    }
    return sender;
  }

  #queueSender(storeId: string): QueueSender {
    const store = this.#stores.get(storeId)!;
    const queue = store.queue ?? defaultStoreEntityName(storeId);
    let sender = this.#queueSenders.get(queue);
    if (sender === undefined) {
      sender = this.#connection!.createSender(queue);
      this.#queueSenders.set(queue, sender);
    }
    return sender;
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
      tags: reading.tags,
      counters: structuredClone(this.#counters.get(storeId) ?? { deliveries: {}, fallbacks: {} }),
    };
  }

  async publish(request: PublishRequest, options: PublishOptions = {}): Promise<Delivery> {
    if (this.#closing !== undefined) throw new StorelinkError('STORE_UNAVAILABLE', 'the dispatcher is closed');
    await this.start();
    const store = this.#stores.get(request.storeId);
    if (store === undefined) throw new StorelinkError('STORE_UNKNOWN', `unknown store "${request.storeId}"`, { field: 'storeId' });
    const typePolicy = operationPolicyFor(this.#policy, request.type);
    const latency = request.latency ?? typePolicy.latency;
    const operation = createOperation({
      storeId: request.storeId,
      type: request.type,
      payload: request.payload,
      latency,
      timeToLiveInMs: request.timeToLiveInMs ?? typePolicy.timeToLiveInMs,
      ...(request.id === undefined ? {} : { id: request.id }),
    }, { nowInMs: this.#now() });
    const started = performance.now();
    const delivery = await this.#deliver(operation, options);
    const done: Delivery = { ...delivery, durationInMs: performance.now() - started };
    this.#count(operation.storeId, done.channel, done.outcome, done.fallbackReason);
    this.#deliveries$.next(done);
    return done;
  }

  async #deliver(operation: Operation, options: PublishOptions): Promise<Omit<Delivery, 'durationInMs'>> {
    const links = this.#links!;
    const storeId = operation.storeId;
    const typePolicy = operationPolicyFor(this.#policy, operation.type);
    const decision = route(links.snapshot(storeId), operation, this.#policy, { trialInFlight: links.isTrialInFlight(storeId) });
    const sofar: SoFar = { operationId: operation.id, storeId, type: operation.type, latency: operation.latency, attempts: 0 };
    if (decision.fallback) sofar.fallbackReason = decision.reason;

    if (decision.action === 'relay') {
      const trial = decision.trial && links.claimTrial(storeId);
      if (decision.trial && !trial) {
        sofar.fallbackReason = 'trial-in-flight';
      } else {
        sofar.attempts += 1;
        try {
          const reply = await this.#relaySender(storeId).send(operation, {
            timeoutInMs: typePolicy.relayTimeoutInMs,
            ...(options.abortSignal === undefined ? {} : { abortSignal: options.abortSignal }),
          });
          links.send(storeId, { type: 'relay.succeeded' });
          this.#remember(operation, reply.result);
          return { ...sofar, channel: 'relay', outcome: 'delivered', reply: reply.result };
        } catch (error) {
          const failure = isStorelinkError(error) ? error : new StorelinkError('RELAY_UNREACHABLE', String(error), { cause: error });
          const reason = relayFailureReasonOf(failure.code);
          if (reason === undefined) {
            if (failure.code === 'ABORTED') throw failure;
            // The store answered: that is the outcome, whatever it is.
            return { ...sofar, channel: 'relay', outcome: 'rejected', rejection: { code: failure.code, message: failure.message } };
          }
          this.#logger.warn({ storeId, operationId: operation.id, code: failure.code }, 'relay call failed; taking the fallback');
          links.send(storeId, { type: 'relay.failed', reason });
          sofar.fallbackReason = failure.code;
        } finally {
          if (trial) links.releaseTrial(storeId);
        }
      }
      return this.#fallBack(operation, typePolicy.fallback, sofar, options);
    }
    return this.#fallBack(operation, decision.action, sofar, options);
  }

  /** Where an operation goes when the relay did not take it: the queue, a cached reply, or a rejection. */
  async #fallBack(operation: Operation, fallback: 'queue' | 'reject' | 'cached', sofar: SoFar, options: PublishOptions): Promise<Omit<Delivery, 'durationInMs'>> {
    if (fallback === 'queue') return this.#viaQueue(operation, sofar, options);
    if (fallback === 'cached') {
      const cached = this.#cache.get(this.#cacheKey(operation));
      if (cached !== undefined) {
        return { ...sofar, channel: null, outcome: 'served-cached', reply: cached.reply, cachedAgeInMs: this.#now() - cached.atInMs };
      }
      return { ...sofar, channel: null, outcome: 'rejected', rejection: { code: 'NO_CACHED_REPLY', message: 'the relay is unavailable and no earlier reply is cached' } };
    }
    return {
      ...sofar,
      channel: null,
      outcome: 'rejected',
      rejection: { code: 'REALTIME_UNAVAILABLE', message: "the store's relay is unavailable and the policy rejects rather than queues" },
    };
  }

  async #viaQueue(operation: Operation, sofar: SoFar, options: PublishOptions): Promise<Omit<Delivery, 'durationInMs'>> {
    const waitInMs = options.awaitReplyInMs ?? 0;
    // Only an operation whose reply someone waits for asks the store to send one; a relay call's reply is its answer.
    const queued: Operation = waitInMs > 0 ? { ...operation, replyTo: this.#options.serviceBus.cloudInbox ?? DEFAULT_CLOUD_INBOX } : operation;
    const reply = waitInMs > 0 ? this.#awaitReply(queued, waitInMs, options.abortSignal) : undefined;
    try {
      await this.#queueSender(operation.storeId).send(
        {
          messageId: operation.id,
          body: queued,
          subject: operation.type,
          timeToLiveInMs: Math.max(1_000, Date.parse(operation.expiresAt) - this.#now()),
          ...(queued.replyTo === undefined ? {} : { replyTo: queued.replyTo }),
          applicationProperties: { storeId: operation.storeId, type: operation.type, latency: operation.latency },
        },
        options.abortSignal === undefined ? {} : { abortSignal: options.abortSignal },
      );
    } catch (error) {
      reply?.cancel();
      throw error;
    }
    const sent = { ...sofar, attempts: sofar.attempts + 1, channel: 'queue' as const };
    const body = reply === undefined ? undefined : await reply.promise;
    if (body === undefined) return { ...sent, outcome: 'queued' };
    if (body.outcome === 'done') return { ...sent, outcome: 'delivered', reply: body.result };
    return { ...sent, outcome: 'rejected', rejection: body.error };
  }

  #awaitReply(operation: Operation, waitInMs: number, abortSignal: AbortSignal | undefined) {
    const operationId = operation.id;
    let settle: (body: ReplyBody | undefined) => void = () => undefined;
    const promise = new Promise<ReplyBody | undefined>((resolve) => (settle = resolve));
    const timer = setTimeout(() => finish(undefined), waitInMs);
    const finish = (body: ReplyBody | undefined) => {
      clearTimeout(timer);
      this.#pending.delete(operationId);
      settle(body);
    };
    abortSignal?.addEventListener('abort', () => finish(undefined), { once: true });
    this.#pending.set(operationId, { operation, resolve: finish });
    return { promise, cancel: () => finish(undefined) };
  }

  #cacheKey(operation: Pick<Operation, 'storeId' | 'type' | 'payload'>): string {
    return `${operation.storeId}\u0000${operation.type}\u0000${stableJson(operation.payload)}`;
  }

  /** Keeps the latest successful reply of types whose fallback serves cached replies. */
  #remember(operation: Pick<Operation, 'storeId' | 'type' | 'payload'>, reply: JsonValue): void {
    if (operationPolicyFor(this.#policy, operation.type).fallback !== 'cached') return;
    this.#cache.set(this.#cacheKey(operation), { reply, atInMs: this.#now() });
  }

  async #fromInbox(delivery: QueueDelivery): Promise<void> {
    const message = parseStoreMessage(delivery.message.body);
    if (message === undefined) {
      await delivery.deadLetter({ reason: 'INBOX_MESSAGE_INVALID', description: 'the cloud inbox message is not a storelink outbox event' });
      return;
    }
    if (!this.#stores.has(message.storeId)) {
      this.#logger.warn({ storeId: message.storeId, kind: message.kind }, 'inbox message from an unknown store');
      await delivery.complete();
      return;
    }
    if (message.kind === 'reply') {
      const body = message.body as ReplyBody;
      const waiting = this.#pending.get(message.correlationId ?? '');
      if (body.outcome === 'done' && waiting !== undefined) this.#remember(waiting.operation, body.result);
      waiting?.resolve(body);
    } else if (message.kind === 'announcement') {
      const relay = (message.body as { relay?: unknown }).relay;
      const madeAt = Date.parse(message.createdAt);
      // An announcement older than the link's current state (queued while the dispatcher was away, say) says
      // nothing newer than what put the link there: a stale "up" must not reopen a breaker that just tripped.
      const stale = Number.isFinite(madeAt) && this.#links !== undefined && madeAt < this.#links.enteredAt(message.storeId);
      if ((RELAY_ANNOUNCEMENTS as readonly unknown[]).includes(relay) && !stale) {
        this.#links?.send(message.storeId, { type: 'store.announced', relay: relay as RelayAnnouncement });
      } else if (stale) {
        this.#logger.debug({ storeId: message.storeId, relay, createdAt: message.createdAt }, 'stale relay announcement ignored');
      }
    } else {
      this.#events$.next({ id: message.id, storeId: message.storeId, type: message.type, body: message.body, createdAt: message.createdAt });
    }
    await delivery.complete();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#sweepTimer);
      await this.#starting?.catch(() => undefined);
      for (const pending of [...this.#pending.values()]) pending.resolve(undefined);
      await this.#connection?.close();
      this.#links?.stopAll();
      for (const subscription of this.#subscriptions) subscription.unsubscribe();
      this.#links$.complete();
      this.#deliveries$.complete();
      this.#events$.complete();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
