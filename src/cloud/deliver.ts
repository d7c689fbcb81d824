/**
 * One operation's way to its store: the link chart's tags decide (route), a real-time operation tries the relay
 * while the chart allows it, and whatever the relay did not take goes to its type's fallback: the queue (under the
 * same operation id), the last cached reply, or a rejection. A store's own answer on the relay is the outcome as it
 * is, but for a failure to run it (HANDLER_FAILED), which takes the fallback too when the type's `onStoreFailure` says
 * so; that is the store's trouble, not the relay's, so the link chart is not told of it.
 */
import { StorelinkError, isStoreAnswerCode, isStorelinkError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import { relayFailureReasonOf } from '../core/linkContract.js';
import type { Logger } from '../core/logger.js';
import type { Latency, Operation } from '../core/operation.js';
import { operationPolicyFor, type Fallback, type Policy } from '../core/policy.js';
import { route } from '../core/route.js';
import type { RelayConfirmation } from '../channels/relay/relayProtocol.js';
import type { SignedRelayAnswer } from '../channels/relay/relaySender.js';
import type { ReplyCache } from './replyCache.js';
import type { ReplyWaiting } from './replyWaiting.js';
import type { StoreLinks } from './storeLinks.js';
import type { StoreSenders } from './storeSenders.js';

/**
 * How long a queued operation outlives its expiry in the queue. The store refuses it once expired either way; kept
 * this much longer, it reaches a store that was away past the expiry, which then reports it expired to the cloud
 * instead of Service Bus dropping it unseen. A store away for longer than this loses the report, not the guarantee.
 */
export const EXPIRED_REPORT_GRACE_IN_MS = 7 * 24 * 60 * 60 * 1000;

export type DeliveryOutcome = 'delivered' | 'queued' | 'rejected' | 'served-cached' | 'failed';

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
  /**
   * For `failed`: the store's reply says it set the operation aside — dead-lettered unexecuted (`executed: false`, the
   * dead-letter reason as code) or executed with a result too large to send (`executed: true`, REPLY_TOO_LARGE).
   */
  failure?: { code: string; message: string; executed: boolean };
  /** For `served-cached`: how old the cached reply is. */
  cachedAgeInMs?: number;
  /** Why a real-time operation did not complete on the relay. */
  fallbackReason?: string;
  /** Sends made: 2 when a failed relay call fell back to the queue. */
  attempts: number;
  durationInMs: number;
}

export interface DeliverOptions {
  abortSignal?: AbortSignal;
  /** When the operation goes through the queue, wait this long for the store's reply. */
  awaitReplyInMs?: number;
}

/** What a delivery knows before its last step: which operation, how many sends so far, and why it fell back. */
type SoFar = Pick<Delivery, 'operationId' | 'storeId' | 'type' | 'latency' | 'attempts'> & { fallbackReason?: string };

export interface DeliverParts {
  policy: Policy;
  links: StoreLinks;
  senders: StoreSenders;
  cache: ReplyCache;
  replies: ReplyWaiting;
  /** Where stores send the replies a queued operation asks for. */
  inbox: string;
  /** The signed confirmation of relay answers a call to this store carries, if any are waiting (relayConfirmations.ts). */
  confirmationFor?: (storeId: string) => RelayConfirmation | undefined;
  /**
   * Why the store's answer to a relay call is not the store's (its signature, relayProtocol.ts), or undefined when it
   * is. Absent: answers are not checked.
   */
  checkRelayAnswer?: (storeId: string, operationId: string, answer: SignedRelayAnswer) => string | undefined;
  now: () => number;
  logger: Logger;
}

export type Deliver = (operation: Operation, options: DeliverOptions) => Promise<Omit<Delivery, 'durationInMs'>>;

export function createDeliver(parts: DeliverParts): Deliver {
  const { policy, links, senders, cache, replies, logger } = parts;

  async function viaQueue(operation: Operation, sofar: SoFar, options: DeliverOptions): Promise<Omit<Delivery, 'durationInMs'>> {
    const waitInMs = options.awaitReplyInMs ?? 0;
    // Only an operation whose reply someone waits for asks the store to send one; a relay call's reply is its answer.
    const queued: Operation = waitInMs > 0 ? { ...operation, replyTo: parts.inbox } : operation;
    const reply = waitInMs > 0 ? replies.wait(queued, waitInMs, options.abortSignal) : undefined;
    try {
      await senders.queue(operation.storeId).send(
        {
          messageId: operation.id,
          body: queued,
          subject: operation.type,
          timeToLiveInMs: Math.max(1_000, Date.parse(operation.expiresAt) - parts.now()) + EXPIRED_REPORT_GRACE_IN_MS,
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
    if (body.outcome === 'failed') return { ...sent, outcome: 'failed', failure: { ...body.error, executed: body.executed } };
    return { ...sent, outcome: 'rejected', rejection: body.error };
  }

  function fallBack(operation: Operation, fallback: Fallback, sofar: SoFar, options: DeliverOptions): Promise<Omit<Delivery, 'durationInMs'>> | Omit<Delivery, 'durationInMs'> {
    if (fallback === 'queue') return viaQueue(operation, sofar, options);
    if (fallback === 'cached') {
      const cached = cache.get(operation);
      if (cached !== undefined) return { ...sofar, channel: null, outcome: 'served-cached', reply: cached.reply, cachedAgeInMs: cached.ageInMs };
      return { ...sofar, channel: null, outcome: 'rejected', rejection: { code: 'NO_CACHED_REPLY', message: `${unavailable(sofar)} and no earlier reply is cached` } };
    }
    return {
      ...sofar,
      channel: null,
      outcome: 'rejected',
      rejection: { code: 'REALTIME_UNAVAILABLE', message: `${unavailable(sofar)} and the policy rejects rather than queues` },
    };
  }

  return async (operation, options) => {
    const storeId = operation.storeId;
    const typePolicy = operationPolicyFor(policy, operation.type);
    const decision = route(links.read(storeId), operation, policy, { trialInFlight: links.isTrialInFlight(storeId) });
    const sofar: SoFar = { operationId: operation.id, storeId, type: operation.type, latency: operation.latency, attempts: 0 };
    if (decision.fallback) sofar.fallbackReason = decision.reason;
    if (decision.action !== 'relay') return fallBack(operation, decision.action, sofar, options);

    const trial = decision.trial && links.claimTrial(storeId);
    if (decision.trial && !trial) {
      sofar.fallbackReason = 'trial-in-flight';
      return fallBack(operation, typePolicy.fallback, sofar, options);
    }
    sofar.attempts += 1;
    try {
      const confirmation = parts.confirmationFor?.(storeId);
      const checkAnswer = parts.checkRelayAnswer;
      const reply = await senders.relay(storeId).send(operation, {
        timeoutInMs: typePolicy.relayTimeoutInMs,
        ...(options.abortSignal === undefined ? {} : { abortSignal: options.abortSignal }),
        ...(confirmation === undefined ? {} : { confirmation }),
        ...(checkAnswer === undefined ? {} : { checkAnswer: (answer: SignedRelayAnswer) => checkAnswer(storeId, operation.id, answer) }),
      });
      links.send(storeId, { type: 'relay.succeeded' });
      cache.remember(operation, reply.result);
      return { ...sofar, channel: 'relay', outcome: 'delivered', reply: reply.result };
    } catch (error) {
      const failure = isStorelinkError(error) ? error : new StorelinkError('RELAY_UNREACHABLE', String(error), { cause: error });
      const reason = relayFailureReasonOf(failure.code);
      if (reason === undefined) {
        if (failure.code === 'ABORTED') throw failure;
        // The store answered. A refusal is the outcome; a failure to run the operation may pass (it ran nothing).
        const storeFailed = isStoreAnswerCode(failure.code) && failure.retryable;
        if (!storeFailed || typePolicy.onStoreFailure === 'fail') {
          return { ...sofar, channel: 'relay', outcome: 'rejected', rejection: { code: failure.code, message: failure.message } };
        }
        logger.warn({ storeId, operationId: operation.id, code: failure.code }, 'the store failed the real-time call; taking the fallback');
        sofar.fallbackReason = failure.code;
        return fallBack(operation, typePolicy.fallback, sofar, options);
      }
      logger.warn({ storeId, operationId: operation.id, code: failure.code }, 'relay call failed; taking the fallback');
      links.send(storeId, { type: 'relay.failed', reason });
      sofar.fallbackReason = failure.code;
    } finally {
      if (trial) links.releaseTrial(storeId);
    }
    return fallBack(operation, typePolicy.fallback, sofar, options);
  };
}

/** Why a real-time operation could not complete on the relay, for a fallback's rejection. */
function unavailable(sofar: SoFar): string {
  return sofar.fallbackReason === 'HANDLER_FAILED' ? 'the store failed to run it in real time' : "the store's relay is unavailable";
}
