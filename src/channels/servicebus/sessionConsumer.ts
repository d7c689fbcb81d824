/**
 * A consumer of one session of a session-enabled subscription, held for as long as it runs: the session lock makes
 * this consumer the only reader of that session, so whatever is sent with that session id reaches it and no one
 * else. When the lock is lost (the SDK's renewal stopped, the connection dropped) or another holder has it, the
 * session is asked for again with back-off.
 *
 * With `adoptAfterInMs`, it also looks, one session at a time, for sessions nobody holds (acceptNextSession only
 * returns unlocked ones) whose oldest message has waited longer than that: the sessions of holders that are gone.
 * It drains such a session through the same handler, then lets it go, so its owner can take it back when it returns.
 */
import { isServiceBusError, type ServiceBusClient, type ServiceBusReceivedMessage, type ServiceBusSessionReceiver } from '@azure/service-bus';
import { setTimeout as wait } from 'node:timers/promises';
import Long from 'long';
import { Subject, type Observable } from 'rxjs';
import { Backoff } from '../../core/backoff.js';
import { StorelinkError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { receivedMessageOf, type QueueConsumer, type QueueConsumerEvent, type QueueDelivery } from './serviceBusConnection.js';
import { toStorelinkError } from './serviceBusErrors.js';

export interface SessionConsumerOptions {
  topic: string;
  subscription: string;
  /** The session held for as long as the consumer runs. */
  sessionId: string;
  handler: (delivery: QueueDelivery) => Promise<void>;
  /** Messages of the held session handled at once; default 16. */
  concurrency?: number;
  /** First wait before asking again for a session another holder has or that was lost; doubles up to 1 s. Default 250 ms. */
  retryDelayInMs?: number;
  /**
   * Adopt a session nobody holds once its oldest message has waited this long (its holder is gone); default 0: never.
   * Shorter than a restart of the owner takes, and the owner's late replies are recorded here instead of there, which
   * is as good; much shorter, and an owner re-taking its session after a blip competes with the adopter.
   */
  adoptAfterInMs?: number;
  /** Pause between looks for sessions to adopt when the last one found was not old enough; default adoptAfterInMs / 2. */
  adoptSweepInMs?: number;
}

/** Short: an owner back from a restart waits at most this long after an adopter let its session go. */
const MAX_RETRY_DELAY_IN_MS = 1_000;
/** The owner's session is renewed for this long at a time; a lost lock is simply asked for again. */
const SESSION_RENEWAL_IN_MS = 24 * 60 * 60_000;
/** How long an adopter waits for more messages in a session before letting it go. */
const ADOPT_IDLE_IN_MS = 500;

function delivery(receiver: ServiceBusSessionReceiver, message: ServiceBusReceivedMessage): QueueDelivery & { readonly settled: boolean } {
  let settled = false;
  const settle = async (what: string, action: () => Promise<void>): Promise<void> => {
    if (settled) throw new TypeError(`message ${String(message.messageId)} is already settled`);
    settled = true;
    try {
      await action();
    } catch (error) {
      throw toStorelinkError(error, `${what} of message ${String(message.messageId)}`);
    }
  };
  return {
    message: receivedMessageOf(message),
    get settled() {
      return settled;
    },
    complete: () => settle('completion', () => receiver.completeMessage(message)),
    abandon: () => settle('abandon', () => receiver.abandonMessage(message)),
    deadLetter: ({ reason, description }) =>
      settle('dead-lettering', () => receiver.deadLetterMessage(message, { deadLetterReason: reason, deadLetterErrorDescription: description })),
  };
}

export class SdkSessionConsumer implements QueueConsumer {
  readonly #client: ServiceBusClient;
  readonly #options: SessionConsumerOptions;
  readonly #logger: Logger;
  readonly #onClosed: () => void;
  readonly #events = new Subject<QueueConsumerEvent>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #stop = new AbortController();
  readonly #backoff: Backoff;
  #loops: Promise<void>[] = [];
  #releaseHeld: (() => void) | undefined;
  #started = false;
  #closing: Promise<void> | undefined;

  constructor(client: ServiceBusClient, options: SessionConsumerOptions, logger: Logger, onClosed: () => void) {
    const concurrency = options.concurrency ?? 16;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
    const adopt = options.adoptAfterInMs ?? 0;
    if (!Number.isFinite(adopt) || adopt < 0) throw new RangeError(`adoptAfterInMs must be a number of milliseconds, 0 or more, got ${adopt}`);
    if (options.sessionId.length === 0 || options.sessionId.length > 128) throw new RangeError('sessionId must be 1 to 128 characters');
    this.#client = client;
    this.#options = options;
    this.#logger = logger;
    this.#onClosed = onClosed;
    const initialInMs = options.retryDelayInMs ?? 250;
    this.#backoff = new Backoff({ initialInMs, maxInMs: Math.max(initialInMs, MAX_RETRY_DELAY_IN_MS) });
  }

  get events$(): Observable<QueueConsumerEvent> {
    return this.#events.asObservable();
  }

  start(): void {
    if (this.#closing !== undefined) throw new StorelinkError('SERVICE_BUS_UNAVAILABLE', 'the consumer is closed', { retryable: false });
    if (this.#started) return;
    this.#started = true;
    this.#loops.push(this.#holdLoop());
    if ((this.#options.adoptAfterInMs ?? 0) > 0) this.#loops.push(this.#adoptLoop());
  }

  #error(error: unknown, source: string): StorelinkError {
    const failure = toStorelinkError(error, `receiving from ${this.#options.topic}/${this.#options.subscription} (${source})`);
    this.#events.next({ type: 'error', error: failure, source });
    return failure;
  }

  async #pause(delayInMs: number): Promise<void> {
    await wait(delayInMs, undefined, { signal: this.#stop.signal }).catch(() => undefined);
  }

  /** Runs the handler on one message; a handler that throws or settles nothing leaves the message abandoned. */
  async #handle(receiver: ServiceBusSessionReceiver, message: ServiceBusReceivedMessage): Promise<void> {
    const work = (async () => {
      const one = delivery(receiver, message);
      try {
        await this.#options.handler(one);
      } catch (error) {
        this.#logger.warn({ err: error, messageId: message.messageId }, 'session handler failed; the message will be delivered again');
      }
      if (!one.settled) await one.abandon().catch((error: unknown) => this.#error(error, 'abandon'));
    })();
    this.#inFlight.add(work);
    try {
      await work;
    } finally {
      this.#inFlight.delete(work);
    }
  }

  async #holdLoop(): Promise<void> {
    const { topic, subscription, sessionId } = this.#options;
    while (!this.#stop.signal.aborted) {
      let receiver: ServiceBusSessionReceiver;
      try {
        // No abortSignal: an acceptSession aborted part-way leaves the SDK's connection unable to close its other
        // receivers (seen with @azure/service-bus 7.9.5); close() waits for the answer instead, which comes quickly.
        receiver = await this.#client.acceptSession(topic, subscription, sessionId, {
          receiveMode: 'peekLock',
          maxAutoLockRenewalDurationInMs: SESSION_RENEWAL_IN_MS,
        });
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        const failure = this.#error(error, 'acceptSession');
        const delayInMs = this.#backoff.next();
        this.#logger.info({ sessionId, code: failure.code, delayInMs }, 'session not taken; asking again');
        this.#events.next({ type: 'restarting', reason: `${failure.code}: ${failure.message}`, delayInMs });
        await this.#pause(delayInMs);
        continue;
      }
      if (this.#stop.signal.aborted) {
        await receiver.close().catch(() => undefined);
        return;
      }
      this.#backoff.reset();
      this.#logger.info({ sessionId }, 'holding the session');
      this.#events.next({ type: 'receiving' });
      let subscribed: { close(): Promise<void> } | undefined;
      await new Promise<void>((release) => {
        this.#releaseHeld = release;
        subscribed = receiver.subscribe(
          {
            processMessage: (message) => this.#handle(receiver, message),
            processError: async (args) => {
              const failure = this.#error(args.error, args.errorSource);
              // A lost session lock, or anything the SDK will not retry by itself, ends this hold: ask again.
              if (!failure.retryable || failure.code === 'MESSAGE_LOCK_LOST' || receiver.isClosed) release();
              return Promise.resolve();
            },
          },
          { autoCompleteMessages: false, maxConcurrentCalls: this.#options.concurrency ?? 16 },
        );
        if (this.#stop.signal.aborted) release();
      });
      this.#releaseHeld = undefined;
      await subscribed?.close().catch(() => undefined);
      await Promise.allSettled([...this.#inFlight]);
      await receiver.close().catch(() => undefined);
      if (!this.#stop.signal.aborted) {
        const delayInMs = this.#backoff.next();
        this.#events.next({ type: 'restarting', reason: 'the session was lost', delayInMs });
        await this.#pause(delayInMs);
      }
    }
  }

  async #adoptLoop(): Promise<void> {
    const { topic, subscription, sessionId } = this.#options;
    const adoptAfterInMs = this.#options.adoptAfterInMs ?? 0;
    const sweepInMs = this.#options.adoptSweepInMs ?? Math.max(50, adoptAfterInMs / 2);
    const backoff = new Backoff({ initialInMs: sweepInMs, maxInMs: Math.max(sweepInMs, MAX_RETRY_DELAY_IN_MS) });
    while (!this.#stop.signal.aborted) {
      let receiver: ServiceBusSessionReceiver;
      try {
        // No abortSignal either (see #holdLoop): close() waits for this long poll to end, at most the retry timeout.
        receiver = await this.#client.acceptNextSession(topic, subscription, { receiveMode: 'peekLock' });
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        // No unlocked session within the SDK's timeout is the common answer; anything else is reported, and waits longer.
        const timedOut = isServiceBusError(error) && error.code === 'ServiceTimeout';
        if (!timedOut) this.#error(error, 'acceptNextSession');
        await this.#pause(timedOut ? sweepInMs : backoff.next());
        continue;
      }
      let adopted = 0;
      let old = false;
      if (this.#stop.signal.aborted) {
        await receiver.close().catch(() => undefined);
        return;
      }
      try {
        if (receiver.sessionId !== sessionId) {
          // From the start: the SDK otherwise peeks on from the last message it peeked on this entity, whichever receiver.
          const [oldest] = await receiver.peekMessages(1, { fromSequenceNumber: Long.ZERO });
          const enqueuedAt = oldest?.enqueuedTimeUtc?.getTime();
          old = enqueuedAt !== undefined && enqueuedAt <= Date.now() - adoptAfterInMs;
          // Only what was sent before the adoption: a message sent after it means the owner may be back (or about to
          // be), so it is given back and the session let go at once.
          const cutoff = Date.now();
          let newer = false;
          while (old && !newer && !this.#stop.signal.aborted) {
            const messages = await receiver.receiveMessages(32, { maxWaitTimeInMs: ADOPT_IDLE_IN_MS });
            if (messages.length === 0) break;
            const before = messages.filter((message) => (message.enqueuedTimeUtc?.getTime() ?? 0) <= cutoff);
            const after = messages.filter((message) => !before.includes(message));
            await Promise.all(before.map((message) => this.#handle(receiver, message)));
            await Promise.all(after.map((message) => receiver.abandonMessage(message).catch((error: unknown) => this.#error(error, 'abandon'))));
            adopted += before.length;
            newer = after.length > 0;
          }
        }
        backoff.reset();
      } catch (error) {
        this.#error(error, 'adopting a session');
      } finally {
        await receiver.close().catch(() => undefined);
      }
      if (adopted > 0) this.#logger.info({ sessionId: receiver.sessionId, adopted }, "adopted the messages of a session nobody held");
      // A pause after every look, an adoption too: the owner, if it is back, gets the session first.
      await this.#pause(sweepInMs);
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      this.#releaseHeld?.();
      await Promise.allSettled(this.#loops);
      await Promise.allSettled([...this.#inFlight]);
      this.#onClosed();
      this.#events.next({ type: 'closed' });
      this.#events.complete();
    })();
    return this.#closing;
  }
}
