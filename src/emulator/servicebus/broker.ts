/**
 * The broker's semantics, free of AMQP: entities, sequence numbers, locks, settlement, dead-lettering, expiry,
 * scheduling, deferral, sessions, duplicate detection, forwarding and topic fan-out. Links talk to it through the
 * `Consumer` interface; durability goes through the `Journal` interface.
 */
import { randomUUID } from 'node:crypto';
import { ruleMatches, sqlRule, type Rule } from './filters.js';
import { withApplicationProperties, type IncomingMessage, type MessageBody, type MessageFacts, type StoredMessage } from './message.js';
import { checkAuthorizationRules } from './authorization.js';
import { resolveClock, resolveProperties, type AuthorizationRule, type EntityProperties, type ResolvedEntityProperties, type RuleOptions, type ServiceBusEmulatorOptions } from './options.js';

/** Receives messages from a store: a receiver link, with its credit. */
export interface Consumer {
  readonly receiveAndDelete: boolean;
  /** The session this consumer holds, for session receivers. */
  readonly sessionId: string | undefined;
  credit(): number;
  deliver(message: StoredMessage): void;
  /** The session lock was lost (expired): the consumer must stop. */
  sessionLockLost?(): void;
}

/** Where broker changes are made durable. `commit()` resolves once everything recorded so far is durable. */
export interface Journal {
  putMessage(path: string, message: StoredMessage): void;
  updateMessage(path: string, message: StoredMessage): void;
  deleteMessage(path: string, seq: number): void;
  setSessionState(path: string, sessionId: string, state: Buffer | undefined): void;
  createQueue(name: string, props: EntityProperties): void;
  /** A message id accepted by an entity with duplicate detection, and when. */
  rememberMessageId(entity: string, messageId: string, at: number): void;
  /** The whole rule set of a subscription after a change through `$management`. */
  setRules(subscriptionPath: string, rules: RuleOptions[]): void;
  commit(): Promise<void> | undefined;
}

export type SettleOutcome =
  | { kind: 'complete' }
  | { kind: 'abandon'; properties?: Record<string, unknown> }
  | { kind: 'defer'; properties?: Record<string, unknown> }
  | { kind: 'deadLetter'; reason?: string; description?: string; properties?: Record<string, unknown> };

export type SettleResult = 'ok' | 'lockLost';

export class BrokerError extends Error {
  override readonly name = 'BrokerError';
  constructor(
    readonly condition: string,
    message: string,
  ) {
    super(message);
  }
}

class MinHeap {
  private readonly items: number[] = [];
  get size(): number {
    return this.items.length;
  }
  peek(): number | undefined {
    return this.items[0];
  }
  push(value: number): void {
    const items = this.items;
    items.push(value);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]! <= value) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = value;
  }
  pop(): number | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      let i = 0;
      const n = items.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && items[r]! < items[l]! ? r : l;
        if (items[c]! >= last) break;
        items[i] = items[c]!;
        i = c;
      }
      items[i] = last;
    }
    return top;
  }
}

interface SessionLock {
  owner: Consumer;
  lockedUntil: number;
  timer: NodeJS.Timeout;
}

export type StoreKind = 'queue' | 'subscription' | 'deadLetter';

/** One receivable message log: a queue, a subscription, or a dead-letter queue. */
export class MessageStore {
  readonly messages = new Map<number, StoredMessage>();
  nextSeq = 1;
  private readonly available = new Map<string, MinHeap>();
  private readonly locks = new Map<string, StoredMessage>();
  private readonly consumers: Consumer[] = [];
  private pumping = false;
  private pumpAgain = false;
  private rotate = 0;
  private readonly sessionLocks = new Map<string, SessionLock>();
  readonly sessionStates = new Map<string, Buffer>();
  private readonly sessionWaiters = new Set<() => boolean>();

  constructor(
    readonly broker: Broker,
    /** Canonical lower-case path: `q1`, `q1/$deadletterqueue`, `t1/subscriptions/s1`. */
    readonly path: string,
    readonly displayPath: string,
    readonly kind: StoreKind,
    readonly props: ResolvedEntityProperties,
    /** The dead-letter queue of this store (undefined for a dead-letter queue itself). */
    public deadLetterStore: MessageStore | undefined,
  ) {}

  get requiresSession(): boolean {
    return this.props.requiresSession && this.kind !== 'deadLetter';
  }

  /** Adds a message (already sequenced by nobody) and makes it available, scheduled or expired as due. */
  enqueue(body: MessageBody, facts: Pick<MessageFacts, 'messageId' | 'sessionId' | 'ttl' | 'scheduledEnqueueTime'>, now: number, extra: Partial<StoredMessage> = {}): StoredMessage {
    const ttlCap = this.kind === 'deadLetter' ? undefined : this.props.defaultMessageTimeToLiveInMs;
    const ttl = this.kind === 'deadLetter' ? undefined : facts.ttl === undefined ? ttlCap : ttlCap === undefined ? facts.ttl : Math.min(ttlCap, facts.ttl);
    const scheduled = facts.scheduledEnqueueTime !== undefined && facts.scheduledEnqueueTime > now && this.kind !== 'deadLetter';
    const message: StoredMessage = {
      seq: this.nextSeq++,
      enqueuedAt: scheduled ? facts.scheduledEnqueueTime! : now,
      messageId: facts.messageId ?? randomUUID(),
      sessionId: facts.sessionId,
      body,
      state: scheduled ? 'scheduled' : 'active',
      deliveryCount: 0,
      scheduledAt: scheduled ? facts.scheduledEnqueueTime : undefined,
      expiresAt: undefined,
      deadLetterSource: undefined,
      lockToken: undefined,
      lockedUntil: 0,
      lockTimer: undefined,
      queued: false,
      timer: undefined,
      ...extra,
    };
    if (message.seq >= this.nextSeq) this.nextSeq = message.seq + 1;
    if (ttl !== undefined && message.expiresAt === undefined) message.expiresAt = message.enqueuedAt + ttl;
    this.messages.set(message.seq, message);
    this.broker.journal?.putMessage(this.path, message);
    this.arm(message, now);
    return message;
  }

  /** Puts a recovered message back (from the journal) without recording it again. */
  restore(message: StoredMessage): void {
    this.messages.set(message.seq, message);
    if (message.seq >= this.nextSeq) this.nextSeq = message.seq + 1;
  }

  /** Starts the timers of and queues every restored message; called once after recovery. */
  armAll(now: number): void {
    const sorted = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    this.messages.clear();
    for (const message of sorted) this.messages.set(message.seq, message);
    for (const message of sorted) this.arm(message, now);
  }

  private arm(message: StoredMessage, now: number): void {
    if (message.state === 'scheduled') {
      this.setTimer(message, message.scheduledAt! - now, () => this.activate(message));
      return;
    }
    if (message.expiresAt !== undefined) {
      if (message.expiresAt <= now) {
        this.expire(message, now);
        return;
      }
      this.setTimer(message, message.expiresAt - now, () => this.expireIfIdle(message));
    }
    if (message.state === 'active') this.makeAvailable(message);
  }

  private setTimer(message: StoredMessage, delay: number, action: () => void): void {
    if (message.timer !== undefined) clearTimeout(message.timer);
    message.timer = setTimeout(action, Math.max(0, Math.min(delay, 2 ** 31 - 1)));
    message.timer.unref();
  }

  private activate(message: StoredMessage): void {
    message.timer = undefined;
    if (this.messages.get(message.seq) !== message || message.state !== 'scheduled') return;
    // Timers top out at ~24.8 days, and the broker's clock need not keep pace with them: re-arm when woken early.
    const now = this.broker.now();
    if (message.scheduledAt! > now) {
      this.setTimer(message, message.scheduledAt! - now, () => this.activate(message));
      return;
    }
    message.state = 'active';
    message.scheduledAt = undefined;
    this.broker.journal?.updateMessage(this.path, message);
    this.arm(message, now);
    this.pump();
  }

  private expireIfIdle(message: StoredMessage): void {
    message.timer = undefined;
    if (this.messages.get(message.seq) !== message || message.lockToken !== undefined) return;
    const now = this.broker.now();
    if (message.expiresAt! > now) {
      this.setTimer(message, message.expiresAt! - now, () => this.expireIfIdle(message));
      return;
    }
    this.expire(message, now);
  }

  private expire(message: StoredMessage, now: number): void {
    if (this.props.deadLetteringOnMessageExpiration) {
      this.moveToDeadLetter(message, 'TTLExpiredException', 'The message expired and was dead lettered.', undefined, now);
    } else {
      this.remove(message);
    }
  }

  private makeAvailable(message: StoredMessage): void {
    if (message.queued) return;
    const key = this.requiresSession ? (message.sessionId ?? '') : '';
    let heap = this.available.get(key);
    if (heap === undefined) {
      heap = new MinHeap();
      this.available.set(key, heap);
    }
    heap.push(message.seq);
    message.queued = true;
    if (this.requiresSession && this.sessionWaiters.size > 0 && !this.sessionLocks.has(key)) this.notifySessionWaiters();
  }

  /** The next deliverable message of a session (or of the store), skipping locked, expired and settled ones. */
  private take(sessionKey: string, now: number): StoredMessage | undefined {
    const heap = this.available.get(sessionKey);
    if (heap === undefined) return undefined;
    for (;;) {
      const seq = heap.pop();
      if (seq === undefined) {
        if (sessionKey !== '') this.available.delete(sessionKey);
        return undefined;
      }
      const message = this.messages.get(seq);
      if (message === undefined || !message.queued) continue;
      message.queued = false;
      if (message.state !== 'active' || message.lockToken !== undefined) continue;
      if (message.expiresAt !== undefined && message.expiresAt <= now) {
        this.expire(message, now);
        continue;
      }
      return message;
    }
  }

  private hasAvailable(sessionKey: string): boolean {
    const heap = this.available.get(sessionKey);
    if (heap === undefined) return false;
    for (;;) {
      const seq = heap.peek();
      if (seq === undefined) return false;
      const message = this.messages.get(seq);
      if (message !== undefined && message.queued && message.state === 'active' && message.lockToken === undefined) return true;
      heap.pop();
      if (message !== undefined) message.queued = false;
    }
  }

  addConsumer(consumer: Consumer): void {
    this.consumers.push(consumer);
    this.pump();
  }

  removeConsumer(consumer: Consumer): void {
    const index = this.consumers.indexOf(consumer);
    if (index >= 0) this.consumers.splice(index, 1);
    if (consumer.sessionId !== undefined) this.releaseSession(consumer.sessionId, consumer);
  }

  /** Hands available messages to consumers with credit. Re-entrant calls are folded into the running one. */
  pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        const count = this.consumers.length;
        if (count === 0) break;
        const now = this.broker.now();
        this.rotate = (this.rotate + 1) % count;
        for (let i = 0; i < count; i++) {
          const consumer = this.consumers[(this.rotate + i) % count];
          if (consumer === undefined) continue;
          const key = this.requiresSession ? (consumer.sessionId ?? '') : '';
          while (consumer.credit() > 0) {
            const message = this.take(key, now);
            if (message === undefined) break;
            if (!this.handOut(consumer, message, now)) break;
          }
        }
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  /** Gives one message to a consumer; on failure the message goes back untouched and false is returned. */
  private handOut(consumer: Consumer, message: StoredMessage, now: number): boolean {
    if (!consumer.receiveAndDelete) this.lock(message, now);
    try {
      consumer.deliver(message);
    } catch {
      this.unlock(message);
      this.makeAvailable(message);
      return false;
    }
    if (consumer.receiveAndDelete) this.remove(message);
    return true;
  }

  lock(message: StoredMessage, now: number): void {
    const token = randomUUID();
    message.lockToken = token;
    message.lockedUntil = now + this.props.lockDurationInMs;
    this.locks.set(token, message);
    this.armLockTimer(message, token);
  }

  private armLockTimer(message: StoredMessage, token: string): void {
    if (message.lockTimer !== undefined) clearTimeout(message.lockTimer);
    message.lockTimer = setTimeout(() => this.lockExpired(message, token), Math.max(0, message.lockedUntil - this.broker.now()));
    message.lockTimer.unref();
  }

  private unlock(message: StoredMessage): void {
    if (message.lockToken !== undefined) this.locks.delete(message.lockToken);
    message.lockToken = undefined;
    if (message.lockTimer !== undefined) clearTimeout(message.lockTimer);
    message.lockTimer = undefined;
  }

  /**
   * A lock timer fired: every lock that is due by now lapses together, in sequence order, so that messages locked
   * at the same moment come back in the order they were first delivered.
   */
  private lockExpired(message: StoredMessage, token: string): void {
    if (message.lockToken !== token) return;
    const now = this.broker.now();
    const due = [...this.locks.values()].filter((locked) => locked.lockedUntil <= now).sort((a, b) => a.seq - b.seq);
    if (!due.includes(message)) due.push(message);
    for (const lapsed of due) {
      this.unlock(lapsed);
      this.returnMessage(lapsed, undefined, now);
    }
    this.pump();
  }

  /** After an abandon or a lost lock: count the attempt, then redeliver or dead-letter. */
  private returnMessage(message: StoredMessage, properties: Record<string, unknown> | undefined, now: number): void {
    if (this.messages.get(message.seq) !== message) return;
    message.deliveryCount++;
    if (properties !== undefined) message.body = withApplicationProperties(message.body, properties);
    if (message.deliveryCount >= this.props.maxDeliveryCount && this.kind !== 'deadLetter') {
      this.moveToDeadLetter(
        message,
        'MaxDeliveryCountExceeded',
        `Message could not be consumed after ${this.props.maxDeliveryCount} delivery attempts.`,
        undefined,
        now,
      );
      return;
    }
    if (properties !== undefined) this.broker.journal?.putMessage(this.path, message);
    else this.broker.journal?.updateMessage(this.path, message);
    if (message.expiresAt !== undefined && message.expiresAt <= now) {
      this.expire(message, now);
    } else if (message.state === 'active') {
      this.makeAvailable(message);
    }
  }

  remove(message: StoredMessage): void {
    if (this.messages.get(message.seq) !== message) return;
    this.unlock(message);
    if (message.timer !== undefined) clearTimeout(message.timer);
    message.timer = undefined;
    this.messages.delete(message.seq);
    this.broker.journal?.deleteMessage(this.path, message.seq);
  }

  moveToDeadLetter(message: StoredMessage, reason: string | undefined, description: string | undefined, properties: Record<string, unknown> | undefined, now: number): void {
    this.remove(message);
    const changes: Record<string, unknown> = { ...properties };
    if (reason !== undefined) changes.DeadLetterReason = reason;
    if (description !== undefined) changes.DeadLetterErrorDescription = description;
    const body = withApplicationProperties(message.body, changes);
    const forward = this.props.forwardDeadLetteredMessagesTo;
    if (forward !== undefined && this.kind !== 'deadLetter') {
      const target = this.broker.entity(forward);
      if (target !== undefined) {
        this.broker.forward(target, body, message, now, 0);
        return;
      }
    }
    const dlq = this.deadLetterStore;
    if (dlq === undefined) return;
    dlq.enqueue(
      body,
      { messageId: message.messageId, sessionId: message.sessionId, ttl: undefined, scheduledEnqueueTime: undefined },
      now,
      { deliveryCount: message.deliveryCount, enqueuedAt: message.enqueuedAt },
    );
    dlq.pump();
  }

  /** Settles a locked message by lock token. */
  settle(token: string, outcome: SettleOutcome, now = this.broker.now()): SettleResult {
    const message = this.locks.get(token);
    if (message === undefined || message.lockedUntil < now) return 'lockLost';
    this.unlock(message);
    switch (outcome.kind) {
      case 'complete':
        this.remove(message);
        break;
      case 'abandon':
        this.returnMessage(message, outcome.properties, now);
        this.pump();
        break;
      case 'defer':
        message.state = 'deferred';
        if (outcome.properties !== undefined) message.body = withApplicationProperties(message.body, outcome.properties);
        this.broker.journal?.putMessage(this.path, message);
        break;
      case 'deadLetter':
        this.moveToDeadLetter(message, outcome.reason, outcome.description, outcome.properties, now);
        break;
    }
    return 'ok';
  }

  renewLock(token: string, now = this.broker.now()): number | undefined {
    const message = this.locks.get(token);
    if (message === undefined || message.lockedUntil < now) return undefined;
    message.lockedUntil = now + this.props.lockDurationInMs;
    this.armLockTimer(message, token);
    return message.lockedUntil;
  }

  /** Messages in sequence order from `fromSeq`, in every state, without locking them. */
  peek(fromSeq: number, count: number, sessionId: string | undefined): StoredMessage[] {
    const result: StoredMessage[] = [];
    for (const message of this.messages.values()) {
      if (result.length >= count) break;
      if (message.seq < fromSeq) continue;
      if (sessionId !== undefined && message.sessionId !== sessionId) continue;
      result.push(message);
    }
    return result;
  }

  /** Deferred messages by sequence number; throws `message-not-found` when one is missing or not deferred. */
  receiveDeferred(seqs: readonly number[], receiveAndDelete: boolean, sessionId: string | undefined, now = this.broker.now()): StoredMessage[] {
    const found: StoredMessage[] = [];
    for (const seq of seqs) {
      const message = this.messages.get(seq);
      if (message === undefined || message.state !== 'deferred' || (sessionId !== undefined && message.sessionId !== sessionId)) {
        throw new BrokerError('com.microsoft:message-not-found', `Failed to retrieve the deferred message with sequence number ${seq}: it does not exist or is not deferred.`);
      }
      if (message.lockToken !== undefined && message.lockedUntil >= now) {
        throw new BrokerError('com.microsoft:message-lock-lost', `The deferred message with sequence number ${seq} is locked by another receiver.`);
      }
      found.push(message);
    }
    for (const message of found) {
      if (receiveAndDelete) this.remove(message);
      else this.lock(message, now);
    }
    return found;
  }

  cancelScheduled(seqs: readonly number[]): void {
    for (const seq of seqs) {
      const message = this.messages.get(seq);
      if (message !== undefined && message.state === 'scheduled') this.remove(message);
    }
  }

  // ---- sessions ----

  /** Locks a named session for a consumer; false when another consumer holds it. */
  lockSession(sessionId: string, owner: Consumer, now = this.broker.now()): number | undefined {
    const held = this.sessionLocks.get(sessionId);
    if (held !== undefined && held.owner !== owner && held.lockedUntil >= now) return undefined;
    if (held !== undefined) clearTimeout(held.timer);
    const lockedUntil = now + this.props.lockDurationInMs;
    const timer = setTimeout(() => this.sessionLockExpired(sessionId, owner), this.props.lockDurationInMs);
    timer.unref();
    this.sessionLocks.set(sessionId, { owner, lockedUntil, timer });
    return lockedUntil;
  }

  /** A session that has available messages and no lock. */
  nextFreeSession(): string | undefined {
    for (const key of this.available.keys()) {
      if (this.sessionLocks.has(key)) continue;
      if (this.hasAvailable(key)) return key;
    }
    return undefined;
  }

  renewSession(sessionId: string, owner: Consumer | undefined, now = this.broker.now()): number | undefined {
    const held = this.sessionLocks.get(sessionId);
    if (held === undefined || (owner !== undefined && held.owner !== owner)) return undefined;
    clearTimeout(held.timer);
    held.lockedUntil = now + this.props.lockDurationInMs;
    held.timer = setTimeout(() => this.sessionLockExpired(sessionId, held.owner), this.props.lockDurationInMs);
    held.timer.unref();
    return held.lockedUntil;
  }

  isSessionLocked(sessionId: string): boolean {
    return this.sessionLocks.has(sessionId);
  }

  private sessionLockExpired(sessionId: string, owner: Consumer): void {
    const held = this.sessionLocks.get(sessionId);
    if (held === undefined || held.owner !== owner) return;
    this.sessionLocks.delete(sessionId);
    owner.sessionLockLost?.();
    this.notifySessionWaiters();
  }

  releaseSession(sessionId: string, owner: Consumer): void {
    const held = this.sessionLocks.get(sessionId);
    if (held === undefined || held.owner !== owner) return;
    clearTimeout(held.timer);
    this.sessionLocks.delete(sessionId);
    this.notifySessionWaiters();
  }

  /** Registers a waiter for `acceptNextSession`; it returns true once it has taken a session. */
  waitForSession(waiter: () => boolean): () => void {
    this.sessionWaiters.add(waiter);
    return () => this.sessionWaiters.delete(waiter);
  }

  private notifySessionWaiters(): void {
    for (const waiter of [...this.sessionWaiters]) {
      if (waiter()) this.sessionWaiters.delete(waiter);
    }
  }

  setSessionState(sessionId: string, state: Buffer | undefined): void {
    if (state === undefined) this.sessionStates.delete(sessionId);
    else this.sessionStates.set(sessionId, state);
    this.broker.journal?.setSessionState(this.path, sessionId, state);
  }

  /** Stops timers (on close). */
  dispose(): void {
    for (const message of this.messages.values()) {
      if (message.timer !== undefined) clearTimeout(message.timer);
      if (message.lockTimer !== undefined) clearTimeout(message.lockTimer);
    }
    for (const held of this.sessionLocks.values()) clearTimeout(held.timer);
    this.sessionLocks.clear();
    this.sessionWaiters.clear();
  }
}

export interface QueueEntity {
  kind: 'queue';
  name: string;
  /** Lower-case: the key of `Broker.entities`. */
  path: string;
  props: ResolvedEntityProperties;
  /** The queue's own rules (mutable: a management API may add, rotate or remove them). */
  authorizationRules: AuthorizationRule[];
  store: MessageStore;
  dedup: Map<string, number>;
}

export interface SubscriptionEntity {
  kind: 'subscription';
  name: string;
  topic: TopicEntity;
  props: ResolvedEntityProperties;
  rules: Rule[];
  store: MessageStore;
}

export interface TopicEntity {
  kind: 'topic';
  name: string;
  /** Lower-case: the key of `Broker.entities`. */
  path: string;
  props: ResolvedEntityProperties;
  /** The topic's own rules, valid for its subscriptions too. */
  authorizationRules: AuthorizationRule[];
  subscriptions: Map<string, SubscriptionEntity>;
  dedup: Map<string, number>;
  /** Topic-wide sequence numbers: every subscription's copy of a message carries the same one. */
  nextSeq: number;
}

export type SendEntity = QueueEntity | TopicEntity;

/** The options form of a compiled rule (for persistence). */
export function ruleOptionsOf(rule: Rule): RuleOptions {
  switch (rule.filter.kind) {
    case 'sql':
      return { name: rule.name, sqlFilter: rule.filter.expression };
    case 'correlation':
      return { name: rule.name, correlationFilter: rule.filter.filter };
    default:
      return { name: rule.name, matchAll: rule.filter.kind === 'true' };
  }
}

export function compileRule(rule: RuleOptions): Rule {
  if (rule.sqlFilter !== undefined) return sqlRule(rule.name, rule.sqlFilter);
  if (rule.correlationFilter !== undefined) return { name: rule.name, filter: { kind: 'correlation', filter: rule.correlationFilter } };
  return { name: rule.name, filter: { kind: rule.matchAll === false ? 'false' : 'true' } };
}

const MAX_FORWARD_HOPS = 4;

function copyRule(rule: AuthorizationRule): AuthorizationRule {
  return { ...rule, rights: [...rule.rights] };
}

export class Broker {
  readonly entities = new Map<string, SendEntity>();
  readonly stores = new Map<string, MessageStore>();
  journal: Journal | undefined;

  constructor(
    private readonly autoCreate: EntityProperties | undefined,
    /** Shared with the AMQP edge, so that a token, a lock and an enqueue time are never judged by different clocks. */
    readonly now: () => number,
  ) {}

  static fromOptions(options: ServiceBusEmulatorOptions): Broker {
    const autoCreate = options.autoCreate === true ? {} : options.autoCreate === false ? undefined : options.autoCreate;
    const broker = new Broker(autoCreate, resolveClock(options.now));
    for (const [n, namespace] of (options.namespaces ?? []).entries()) {
      for (const [q, queue] of (namespace.queues ?? []).entries()) {
        broker.addQueue(queue.name, queue, `namespaces[${n}].queues[${q}]`);
      }
      for (const [t, topic] of (namespace.topics ?? []).entries()) {
        const where = `namespaces[${n}].topics[${t}]`;
        const entity = broker.addTopic(topic.name, topic, where);
        for (const [s, sub] of (topic.subscriptions ?? []).entries()) {
          broker.addSubscription(entity, sub.name, sub, sub.rules, `${where}.subscriptions[${s}]`);
        }
      }
    }
    broker.checkForwarding(autoCreate !== undefined);
    return broker;
  }

  /** Every `forwardTo` / `forwardDeadLetteredMessagesTo` must name a queue or topic (unless auto-create is on). */
  private checkForwarding(lenient: boolean): void {
    const check = (owner: string, field: string, target: string | undefined): void => {
      if (target === undefined || lenient || this.entity(target) !== undefined) return;
      throw new TypeError(`${owner}.${field} names "${target}", which is not a configured queue or topic`);
    };
    for (const entity of this.entities.values()) {
      if (entity.kind === 'queue') {
        check(`queue "${entity.name}"`, 'forwardTo', entity.props.forwardTo);
        check(`queue "${entity.name}"`, 'forwardDeadLetteredMessagesTo', entity.props.forwardDeadLetteredMessagesTo);
      } else {
        for (const subscription of entity.subscriptions.values()) {
          const owner = `subscription "${entity.name}/${subscription.name}"`;
          check(owner, 'forwardTo', subscription.props.forwardTo);
          check(owner, 'forwardDeadLetteredMessagesTo', subscription.props.forwardDeadLetteredMessagesTo);
        }
      }
    }
  }

  private checkName(name: string, where: string): string {
    if (typeof name !== 'string' || name.length === 0 || /[\\?#]/.test(name) || name.startsWith('$')) {
      throw new TypeError(`${where}.name must be a non-empty entity name without \\ ? # or a leading $, got ${JSON.stringify(name)}`);
    }
    const key = name.toLowerCase();
    if (this.entities.has(key)) throw new TypeError(`${where}.name "${name}" is already used by another queue or topic`);
    return key;
  }

  addQueue(name: string, props: EntityProperties & { authorizationRules?: AuthorizationRule[] } = {}, where = 'queue'): QueueEntity {
    const key = this.checkName(name, where);
    const resolved = resolveProperties(where, props);
    checkAuthorizationRules(`${where}.authorizationRules`, props.authorizationRules);
    const dlq = new MessageStore(this, `${key}/$deadletterqueue`, `${name}/$DeadLetterQueue`, 'deadLetter', { ...resolved, maxDeliveryCount: Infinity }, undefined);
    const store = new MessageStore(this, key, name, 'queue', resolved, dlq);
    const authorizationRules = (props.authorizationRules ?? []).map(copyRule);
    const entity: QueueEntity = { kind: 'queue', name, path: key, props: resolved, authorizationRules, store, dedup: new Map() };
    this.entities.set(key, entity);
    this.registerStores(store, dlq);
    return entity;
  }

  /** Registers a receivable store with its dead-letter queue and its (always empty: nothing fails to forward here) transfer dead-letter queue. */
  private registerStores(store: MessageStore, dlq: MessageStore): void {
    this.stores.set(store.path, store);
    this.stores.set(dlq.path, dlq);
    const transfer = new MessageStore(this, `${store.path}/$transfer/$deadletterqueue`, `${store.displayPath}/$Transfer/$DeadLetterQueue`, 'deadLetter', dlq.props, undefined);
    this.stores.set(transfer.path, transfer);
  }

  addTopic(name: string, props: EntityProperties & { authorizationRules?: AuthorizationRule[] } = {}, where = 'topic'): TopicEntity {
    const key = this.checkName(name, where);
    const resolved = resolveProperties(where, props);
    checkAuthorizationRules(`${where}.authorizationRules`, props.authorizationRules);
    const authorizationRules = (props.authorizationRules ?? []).map(copyRule);
    const entity: TopicEntity = { kind: 'topic', name, path: key, props: resolved, authorizationRules, subscriptions: new Map(), dedup: new Map(), nextSeq: 1 };
    this.entities.set(key, entity);
    return entity;
  }

  addSubscription(topic: TopicEntity, name: string, props: EntityProperties = {}, rules: RuleOptions[] | undefined, where = 'subscription'): SubscriptionEntity {
    const key = name.toLowerCase();
    if (topic.subscriptions.has(key)) throw new TypeError(`${where}.name "${name}" is already a subscription of topic "${topic.name}"`);
    const resolved = resolveProperties(where, { ...props, maxMessageSizeInBytes: topic.props.maxMessageSizeInBytes });
    const path = `${topic.name.toLowerCase()}/subscriptions/${key}`;
    const display = `${topic.name}/Subscriptions/${name}`;
    const dlq = new MessageStore(this, `${path}/$deadletterqueue`, `${display}/$DeadLetterQueue`, 'deadLetter', { ...resolved, maxDeliveryCount: Infinity }, undefined);
    const store = new MessageStore(this, path, display, 'subscription', resolved, dlq);
    const compiled = (rules ?? [{ name: '$Default', matchAll: true }]).map((rule, index) => {
      try {
        return compileRule(rule);
      } catch (error) {
        throw new TypeError(`${where}.rules[${index}]: ${(error as Error).message}`);
      }
    });
    const entity: SubscriptionEntity = { kind: 'subscription', name, topic, props: resolved, rules: compiled, store };
    topic.subscriptions.set(key, entity);
    this.registerStores(store, dlq);
    return entity;
  }

  /** Removes a queue (with its dead-letter queues) or a topic (with its subscriptions): the management API's DELETE. */
  removeEntity(name: string): void {
    const entity = this.entity(name);
    if (entity === undefined) return;
    this.entities.delete(entity.path);
    if (entity.kind === 'queue') this.unregisterStores(entity.store.path);
    else for (const subscription of [...entity.subscriptions.values()]) this.removeSubscription(subscription);
  }

  removeSubscription(subscription: SubscriptionEntity): void {
    subscription.topic.subscriptions.delete(subscription.name.toLowerCase());
    this.unregisterStores(subscription.store.path);
  }

  private unregisterStores(path: string): void {
    for (const storePath of [path, `${path}/$deadletterqueue`, `${path}/$transfer/$deadletterqueue`]) {
      this.stores.get(storePath)?.dispose();
      this.stores.delete(storePath);
    }
  }

  entity(name: string): SendEntity | undefined {
    return this.entities.get(name.toLowerCase());
  }

  /** The queue or topic a sender link may target, creating a queue when auto-create is on. */
  sendTarget(path: string): SendEntity | undefined {
    const found = this.entities.get(path);
    if (found !== undefined || path.includes('/')) return found;
    return this.autoCreateQueue(path);
  }

  /** The store a receiver link may read, creating a queue when auto-create is on. */
  receiveStore(path: string): MessageStore | undefined {
    const found = this.stores.get(path);
    if (found !== undefined) return found;
    const base = path.replace(/(\/\$transfer)?\/\$deadletterqueue$/, '');
    if (base.includes('/') || this.entities.has(base)) return undefined;
    const created = this.autoCreateQueue(base);
    return created === undefined ? undefined : this.stores.get(path);
  }

  private autoCreateQueue(path: string): QueueEntity | undefined {
    if (this.autoCreate === undefined || path.length === 0 || path.startsWith('$')) return undefined;
    const queue = this.addQueue(path, this.autoCreate, 'autoCreate');
    this.journal?.createQueue(path, this.autoCreate);
    return queue;
  }

  /**
   * Accepts messages sent to a queue or topic, all or nothing: validates every message first, then enqueues (with
   * duplicate detection, forwarding and fan-out).
   */
  send(entity: SendEntity, messages: readonly IncomingMessage[], now = this.now()): void {
    if (entity.kind === 'queue' && entity.props.requiresSession) {
      for (const message of messages) {
        if (message.facts.sessionId === undefined) {
          throw new BrokerError(
            'amqp:not-allowed',
            `The SessionId was not set on a message, and it cannot be sent to the entity '${entity.name}'. Entities that have session support enabled can only receive messages that have the SessionId set to a valid value.`,
          );
        }
      }
    }
    for (const message of messages) this.accept(entity, message.body, message.facts, now, 0);
  }

  private accept(entity: SendEntity, body: MessageBody, facts: MessageFacts, now: number, hops: number): void {
    if (entity.props.requiresDuplicateDetection && facts.messageId !== undefined) {
      const window = entity.props.duplicateDetectionHistoryTimeWindowInMs;
      const seen = entity.dedup.get(facts.messageId);
      if (seen !== undefined && now - seen < window) return;
      entity.dedup.delete(facts.messageId);
      entity.dedup.set(facts.messageId, now);
      this.journal?.rememberMessageId(entity.name.toLowerCase(), facts.messageId, now);
      if (entity.dedup.size > 1000) {
        for (const [id, at] of entity.dedup) {
          if (now - at < window) break;
          entity.dedup.delete(id);
        }
      }
    }
    if (entity.kind === 'queue') {
      const target = entity.props.forwardTo === undefined ? undefined : this.entity(entity.props.forwardTo);
      if (target !== undefined && target !== entity && hops < MAX_FORWARD_HOPS) {
        this.accept(target, body, facts, now, hops + 1);
        return;
      }
      entity.store.enqueue(body, facts, now);
      entity.store.pump();
      return;
    }
    const seq = this.topicSeq(entity);
    for (const subscription of entity.subscriptions.values()) {
      if (!subscription.rules.some((rule) => ruleMatches(rule, facts))) continue;
      const target = subscription.props.forwardTo === undefined ? undefined : this.entity(subscription.props.forwardTo);
      if (target !== undefined && target !== entity && hops < MAX_FORWARD_HOPS) {
        this.accept(target, body, facts, now, hops + 1);
        continue;
      }
      subscription.store.enqueue(body, facts, now, { seq });
      subscription.store.pump();
    }
  }

  private topicSeq(topic: TopicEntity): number {
    let next = topic.nextSeq;
    for (const subscription of topic.subscriptions.values()) next = Math.max(next, subscription.store.nextSeq);
    topic.nextSeq = next + 1;
    return next;
  }

  /** The subscription whose store path is `path` (`t1/subscriptions/s1`). */
  subscription(path: string): SubscriptionEntity | undefined {
    const match = /^([^/]+)\/subscriptions\/([^/]+)$/.exec(path);
    if (match === null) return undefined;
    const topic = this.entity(match[1]!);
    return topic?.kind === 'topic' ? topic.subscriptions.get(match[2]!) : undefined;
  }

  /** Replaces a subscription's rules and records the new set. */
  replaceRules(subscription: SubscriptionEntity, rules: Rule[]): void {
    subscription.rules = rules;
    this.journal?.setRules(subscription.store.path, rules.map(ruleOptionsOf));
  }

  /** Forwards a dead-lettered message to another entity. */
  forward(target: SendEntity, body: MessageBody, message: StoredMessage, now: number, hops: number): void {
    this.accept(
      target,
      body,
      {
        messageId: message.messageId,
        sessionId: message.sessionId,
        ttl: undefined,
        scheduledEnqueueTime: undefined,
        correlationId: undefined,
        to: undefined,
        subject: undefined,
        replyTo: undefined,
        replyToSessionId: undefined,
        contentType: undefined,
        applicationProperties: {},
      },
      now,
      hops,
    );
  }

  /** Schedules messages through `$management`; returns their sequence numbers in order. */
  schedule(entity: SendEntity, messages: readonly IncomingMessage[], now = this.now()): number[] {
    const seqs: number[] = [];
    for (const message of messages) {
      const facts = { ...message.facts, scheduledEnqueueTime: message.facts.scheduledEnqueueTime ?? now };
      if (entity.kind === 'queue') {
        seqs.push(entity.store.enqueue(message.body, facts, now).seq);
        entity.store.pump();
      } else {
        // A topic's scheduled message is fanned out at once; each copy waits in its subscription.
        const seq = this.topicSeq(entity);
        for (const subscription of entity.subscriptions.values()) {
          if (!subscription.rules.some((rule) => ruleMatches(rule, facts))) continue;
          subscription.store.enqueue(message.body, facts, now, { seq });
        }
        seqs.push(seq);
      }
    }
    return seqs;
  }

  cancelScheduled(entity: SendEntity, seqs: readonly number[]): void {
    if (entity.kind === 'queue') entity.store.cancelScheduled(seqs);
    else for (const subscription of entity.subscriptions.values()) subscription.store.cancelScheduled(seqs);
  }

  /** Active message counts by store path, for tests and tools. */
  counts(): Record<string, number> {
    const result: Record<string, number> = {};
    for (const store of this.stores.values()) result[store.displayPath] = store.messages.size;
    return result;
  }

  dispose(): void {
    for (const store of this.stores.values()) store.dispose();
  }
}
