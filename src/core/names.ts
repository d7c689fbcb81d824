/**
 * Identifier rules shared by envelopes, policies and channels. Store ids become Service Bus queue names
 * (`store-<id>`) and Hybrid Connection names; operation types appear in relay paths (`/operations/<type>`). Both
 * services treat entity names case-insensitively, so store ids are lower-case only: `Store-1` and `store-1` would
 * otherwise silently share a queue.
 */
import { z } from 'zod';

export const STORE_ID_MAX_LENGTH = 64;
export const OPERATION_TYPE_MAX_LENGTH = 128;

const STORE_ID_PATTERN = /^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$/;
const OPERATION_TYPE_PATTERN = /^[a-zA-Z][a-zA-Z0-9_-]*(?:\.[a-zA-Z][a-zA-Z0-9_-]*)+$/;

export const storeIdSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(STORE_ID_MAX_LENGTH, `must be at most ${STORE_ID_MAX_LENGTH} characters`)
  .regex(
    STORE_ID_PATTERN,
    'must be lower-case letters, digits, ".", "-" or "_", starting and ending with a letter or digit (e.g. "paris-12")',
  );

export const operationTypeSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(OPERATION_TYPE_MAX_LENGTH, `must be at most ${OPERATION_TYPE_MAX_LENGTH} characters`)
  .regex(
    OPERATION_TYPE_PATTERN,
    'must be dot-namespaced words of letters, digits, "-" or "_", each starting with a letter (e.g. "clickAndCollect.order")',
  );

/** A Service Bus entity name a reply may be sent to: letters, digits, ".", "-", "_", "/", at most 260 characters. */
export const entityNameSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(260, 'must be at most 260 characters')
  .regex(
    /^[a-zA-Z0-9](?:[a-zA-Z0-9._/-]*[a-zA-Z0-9])?$/,
    'must be letters, digits, ".", "-", "_" or "/", starting and ending with a letter or digit',
  );

/**
 * A cloud instance's id: the session its replies come back in and part of its announcement subscription's name
 * (`announcements-<id>`, and Azure allows 50 characters for a subscription name), hence the tight bounds.
 */
export const instanceIdSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(36, 'must be at most 36 characters')
  .regex(/^[a-zA-Z0-9](?:[a-zA-Z0-9_-]*[a-zA-Z0-9])?$/, 'must be letters, digits, "-" or "_", starting and ending with a letter or digit');

/** With several cloud instances: the cloud inbox topic's subscriptions (README "Several cloud instances"). */
export const REPLIES_SUBSCRIPTION = 'replies';
export const EVENTS_SUBSCRIPTION = 'events';
export function announcementsSubscription(instanceId: string): string {
  return `announcements-${instanceId}`;
}

export type StoreId = z.infer<typeof storeIdSchema>;
export type OperationType = z.infer<typeof operationTypeSchema>;

/** The store's queue and hybrid connection name, unless configured otherwise. */
export function defaultStoreEntityName(storeId: StoreId): string {
  return `store-${storeId}`;
}

/** The queue every store's outbox drains into and the dispatcher reads, unless configured otherwise. */
export const DEFAULT_CLOUD_INBOX = 'cloud-inbox';
