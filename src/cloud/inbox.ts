/**
 * What the cloud does with each message its stores send to the inbox: a reply (the final outcome of an operation:
 * done, rejected or failed) is reported as an outcome, settles the publisher waiting for it (and feeds the reply cache), an announcement moves the store's link chart, an event goes to the application. A
 * message that is not a storelink store message is dead-lettered. A message counts only if the store it claims to be
 * from signed it, with a key the cloud has for that store, and a reply only if the operation it answers was sent to
 * that store: anything else (from an unknown store too) is completed without effect, logged at warn and told to
 * `onRejected` (the `storelink_inbox_rejected_total` metric).
 */
import type { QueueDelivery } from '../channels/servicebus/serviceBusConnection.js';
import { MAX_JSON_DEPTH, valueNestsDeeperThan, type JsonValue } from '../core/json.js';
import type { Logger } from '../core/logger.js';
import { MAX_STORE_MESSAGE_BYTES, announcementBodySchema, parseStoreMessage, replyBodySchema } from '../core/storeMessage.js';
import type { SignatureCheck, SignatureProblem } from '../core/signing.js';
import type { InboxMessage, OutboxDepth, ReplyBody } from '../core/storeMessage.js';
import type { ReplyCache } from './replyCache.js';
import type { ReplyWaiting } from './replyWaiting.js';
import type { StoreLinks } from './storeLinks.js';

export interface StoreEventMessage {
  id: string;
  storeId: string;
  type: string;
  body: JsonValue;
  createdAt: string;
}

/** Why the inbox dropped a message: its signature (see SignatureProblem), another store's operation, an unknown store. */
export type InboxRejectionReason = SignatureProblem | 'wrong-store' | 'unknown-store';

export interface InboxRejection {
  reason: InboxRejectionReason;
  /** The store the message claims to come from (unverified). */
  storeId: string;
  kind: InboxMessage['kind'];
  type: string;
  messageId: string;
  message: string;
}

export interface InboxParts {
  isKnownStore: (storeId: string) => boolean;
  /** Checks the message's signature against the public keys of the (known) store it names. */
  verify: (message: InboxMessage) => SignatureCheck;
  /** The store an operation was sent to, if this instance knows (waiting for its reply, or tracking its outcome). */
  storeOfOperation: (operationId: string) => string | undefined;
  onRejected: (rejection: InboxRejection) => void;
  replies: ReplyWaiting;
  cache: ReplyCache;
  links: StoreLinks;
  /** Awaited before the message is completed (the durable handoff); a rejection leaves it to be delivered again. */
  onEvent: (event: StoreEventMessage) => void | Promise<void>;
  /** A store's outbox depth, from an announcement that carries one (`createdAt`: when the store wrote it). */
  onOutboxDepth?: (report: { storeId: string; depth: OutboxDepth; createdAt: string }) => void;
  /**
   * Every reply, before the publisher waiting for it (if any) is settled; awaited before the message is completed,
   * and a rejection leaves it to be delivered again.
   */
  onReply: (message: { storeId: string; type: string; correlationId: string }, body: ReplyBody) => void | Promise<void>;
  logger: Logger;
}

/** Why a message body is out of bounds for a store message (too deep, too large), or undefined. */
function boundsProblem(body: unknown): string | undefined {
  if (valueNestsDeeperThan(body, MAX_JSON_DEPTH)) return `the inbox message nests deeper than ${MAX_JSON_DEPTH} levels`;
  let text: string | undefined;
  try {
    text = JSON.stringify(body);
  } catch {
    return 'the inbox message cannot be serialized as JSON';
  }
  const bytes = Buffer.byteLength(text ?? '', 'utf8');
  if (bytes > MAX_STORE_MESSAGE_BYTES) return `the inbox message is ${bytes} bytes of JSON; a store message may be ${MAX_STORE_MESSAGE_BYTES}`;
  return undefined;
}

export function createInboxHandler(parts: InboxParts): (delivery: QueueDelivery) => Promise<void> {
  const { replies, cache, links, logger } = parts;
  const reject = async (delivery: QueueDelivery, message: InboxMessage, reason: InboxRejectionReason, why: string): Promise<void> => {
    const rejection: InboxRejection = { reason, storeId: message.storeId, kind: message.kind, type: message.type, messageId: message.id, message: why };
    logger.warn({ storeId: message.storeId, kind: message.kind, type: message.type, messageId: message.id, reason }, `inbox message dropped: ${why}`);
    parts.onRejected(rejection);
    await delivery.complete();
  };
  return async (delivery) => {
    // Bounds first, before any schema walks the body: too deep is refused at the cost of MAX_JSON_DEPTH levels, and
    // only then is it safe to serialize it to measure it.
    const bounds = boundsProblem(delivery.message.body);
    if (bounds !== undefined) {
      await delivery.deadLetter({ reason: 'INBOX_MESSAGE_INVALID', description: bounds });
      return;
    }
    const message = parseStoreMessage(delivery.message.body);
    if (message === undefined) {
      await delivery.deadLetter({ reason: 'INBOX_MESSAGE_INVALID', description: 'the cloud inbox message is not a storelink outbox event' });
      return;
    }
    if (!parts.isKnownStore(message.storeId)) {
      await reject(delivery, message, 'unknown-store', `it claims to come from store "${message.storeId.slice(0, 128)}", which the cloud does not know`);
      return;
    }
    const signature = parts.verify(message);
    if (!signature.valid) {
      await reject(delivery, message, signature.problem, `it claims to come from store "${message.storeId}", but ${signature.message}`);
      return;
    }
    if (message.kind === 'reply') {
      const body = replyBodySchema.safeParse(message.body);
      if (!body.success) {
        await delivery.deadLetter({ reason: 'INBOX_MESSAGE_INVALID', description: 'the reply body is not an outcome (done, rejected or failed)' });
        return;
      }
      if (message.correlationId === undefined) {
        await delivery.deadLetter({ reason: 'INBOX_MESSAGE_INVALID', description: 'the reply names no operation (correlationId)' });
        return;
      }
      const sentTo = parts.storeOfOperation(message.correlationId);
      if (sentTo !== undefined && sentTo !== message.storeId) {
        await reject(delivery, message, 'wrong-store', `store "${message.storeId}" replied about operation ${message.correlationId}, which was sent to store "${sentTo}"`);
        return;
      }
      // The waiting caller first: its publish returns, and the outcome record it starts is what onReply awaits before
      // the message is completed.
      const answered = replies.settle(message.correlationId, message.storeId, body.data);
      if (answered !== undefined && body.data.outcome === 'done') cache.remember(answered, body.data.result);
      await parts.onReply({ storeId: message.storeId, type: message.type, correlationId: message.correlationId }, body.data);
    } else if (message.kind === 'announcement') {
      const body = announcementBodySchema.safeParse(message.body);
      if (!body.success) {
        await delivery.deadLetter({ reason: 'INBOX_MESSAGE_INVALID', description: 'the announcement body names neither a relay state nor an outbox depth' });
        return;
      }
      const { relay, outbox } = body.data;
      if (outbox !== undefined) parts.onOutboxDepth?.({ storeId: message.storeId, depth: outbox, createdAt: message.createdAt });
      const madeAt = Date.parse(message.createdAt);
      // An announcement older than the link's current state (queued while the dispatcher was away, say) says
      // nothing newer than what put the link there: a stale "up" must not reopen a breaker that just tripped.
      if (relay === undefined) {
        // An outbox depth report alone: nothing for the chart.
      } else if (madeAt < links.enteredAt(message.storeId)) {
        logger.debug({ storeId: message.storeId, relay, createdAt: message.createdAt }, 'stale relay announcement ignored');
      } else {
        links.send(message.storeId, { type: 'store.announced', relay });
      }
    } else {
      await parts.onEvent({ id: message.id, storeId: message.storeId, type: message.type, body: message.body, createdAt: message.createdAt });
    }
    await delivery.complete();
  };
}
