/**
 * What a store sends the cloud through its outbox and the cloud inbox: replies to operations, store events and relay
 * announcements. Shared by the store (which writes them) and the dispatcher (which reads them).
 */
import type { JsonValue } from './json.js';

export interface StoreMessage {
  /** UUID; becomes the Service Bus messageId, so a resend is dropped by duplicate detection. */
  id: string;
  kind: 'reply' | 'event' | 'announcement';
  /** e.g. `clickAndCollect.order`, `sale.recorded`, `store.announced`. */
  type: string;
  storeId: string;
  /** For replies: the operation id. */
  correlationId?: string;
  body: JsonValue;
  /** ISO 8601. */
  createdAt: string;
}

/** The body of a reply: the operation's result, or the store's refusal. */
export type ReplyBody = { outcome: 'done'; result: JsonValue } | { outcome: 'rejected'; error: { code: string; message: string } };

/** Reads an inbox message body; undefined when it is not a store message. */
export function parseStoreMessage(body: unknown): StoreMessage | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const candidate = body as Partial<StoreMessage>;
  if (typeof candidate.id !== 'string' || typeof candidate.storeId !== 'string' || typeof candidate.type !== 'string') return undefined;
  if (typeof candidate.createdAt !== 'string' || !('body' in candidate)) return undefined;
  if (candidate.kind !== 'reply' && candidate.kind !== 'event' && candidate.kind !== 'announcement') return undefined;
  return candidate as StoreMessage;
}
