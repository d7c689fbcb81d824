/**
 * What a store sends the cloud through its outbox and the cloud inbox: replies (the final outcome of every operation
 * the store saw, whichever channel carried it), store events and relay announcements. The store checks each message against these schemas before it is written, and the dispatcher
 * checks it again when it arrives, so both ends read the same contract.
 */
import { z } from 'zod';
import { jsonValueSchema } from './json.js';
import { RELAY_ANNOUNCEMENTS } from './linkContract.js';
import { instanceIdSchema } from './names.js';
import { messageSignatureSchema } from './signing.js';
import { nonEmptyStringSchema, oneOf, strictFields, timestampSchema } from './validation.js';

export const STORE_MESSAGE_KINDS = ['reply', 'event', 'announcement'] as const;

/**
 * The largest store message, as UTF-8 JSON, a store sends: Service Bus takes 256 KiB per message, and the rest is
 * left for the AMQP envelope and properties. `emit()` refuses a larger event; a larger reply is replaced by a
 * `failed` reply with code REPLY_TOO_LARGE.
 */
export const MAX_STORE_MESSAGE_BYTES = 240 * 1024;

export const storeMessageSchema = strictFields({
  /** UUID; becomes the Service Bus messageId, so a resend is dropped by duplicate detection. */
  id: nonEmptyStringSchema,
  kind: oneOf(STORE_MESSAGE_KINDS),
  /** e.g. `clickAndCollect.order`, `sale.recorded`, `store.announced`. */
  type: nonEmptyStringSchema,
  storeId: nonEmptyStringSchema,
  /** For replies: the operation id. */
  correlationId: nonEmptyStringSchema.optional(),
  /**
   * For replies: the operation's `replyToSessionId`, the cloud instance that sent it; the reply goes out in that
   * Service Bus session. Not signed (see storeMessageSignedFields): it routes, it proves nothing.
   */
  sessionId: instanceIdSchema.optional(),
  body: jsonValueSchema,
  createdAt: timestampSchema,
  /** The store's signature over every other field (core/signing.ts); the cloud drops a message without a valid one. */
  signature: messageSignatureSchema.optional(),
});

export type StoreMessage = z.infer<typeof storeMessageSchema>;

/** Why a store refused an operation, as the ledger keeps it and a reply carries it. */
export const refusalSchema = strictFields({ code: nonEmptyStringSchema, message: z.string({ error: 'must be a string' }) }, 'must be { code, message }');

/**
 * The body of a reply, an operation's final outcome at the store: its result (`done`), the handler's refusal
 * (`rejected`), or `failed`: the store set it aside without a result the cloud can have — dead-lettered unexecuted
 * (`executed: false`; the code says why: OPERATION_INVALID, OPERATION_EXPIRED, OPERATION_TYPE_UNKNOWN, HANDLER_FAILED
 * after its retries…) or executed with a result too large to send (`executed: true`, REPLY_TOO_LARGE).
 */
export const replyBodySchema = z.discriminatedUnion('outcome', [
  strictFields({ outcome: z.literal('done'), result: jsonValueSchema }),
  strictFields({ outcome: z.literal('rejected'), error: refusalSchema }),
  strictFields({ outcome: z.literal('failed'), error: refusalSchema, executed: z.boolean({ error: 'must be true or false' }) }),
]);

export type ReplyBody = z.infer<typeof replyBodySchema>;

const entryCountSchema = z.number({ error: 'must be a whole number, 0 or more' }).int('must be a whole number, 0 or more').min(0, 'must be a whole number, 0 or more');

/** How many entries a store's outbox holds: waiting to be sent, and parked (set aside as unsendable). */
export const outboxDepthSchema = strictFields({ pending: entryCountSchema, parked: entryCountSchema }, 'must be { pending, parked }');

export type OutboxDepth = z.infer<typeof outboxDepthSchema>;

/**
 * The body of an announcement (kind `announcement`, type `store.announced`), the store's newest-wins state report:
 * what became of its relay listener (`relay`, moves the store's link chart), and how deep its outbox is (`outbox`,
 * excluding the announcement itself). A store announces its relay when the listener changes, and its outbox depth
 * with it and whenever the depth has changed since its last report (checked every `outboxReportIntervalInMs`).
 */
export const announcementBodySchema = strictFields({ relay: oneOf(RELAY_ANNOUNCEMENTS).optional(), outbox: outboxDepthSchema.optional() }).refine(
  (body) => body.relay !== undefined || body.outbox !== undefined,
  'must say relay or outbox',
);

export type AnnouncementBody = z.infer<typeof announcementBodySchema>;

/**
 * The inbox reads the same fields but drops ones it does not know, so a newer store (one that adds a field) can still
 * talk to an older cloud, as a newer cloud can to an older store (operation envelopes are read the same way).
 */
const inboxMessageSchema = z.object({
  ...storeMessageSchema.shape,
  // Whatever it holds: judging it is the signature check's job, which counts a malformed one as a bad signature.
  signature: z.unknown().optional(),
});

/** An inbox message as read: a store message whose signature is yet to be checked (it may be anything). */
export type InboxMessage = Omit<StoreMessage, 'signature'> & { signature?: unknown };

/** Reads an inbox message body; undefined when it is not a store message. */
export function parseStoreMessage(body: unknown): InboxMessage | undefined {
  return inboxMessageSchema.safeParse(body).data;
}
