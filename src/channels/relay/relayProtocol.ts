/**
 * What the relay listener and sender agree on, beyond HTTP itself: the paths a store serves, the JSON bodies and the
 * header that marks an answer as the store's own. The HTTP status of each store-side error code is in the code table
 * (src/core/errors.ts).
 */
import { z } from 'zod';
import type { StorelinkErrorCode } from '../../core/errors.js';
import { messageSignatureSchema, type MessageSignature } from '../../core/signing.js';

/** Set on every response the store's listener writes; answers without it came from the relay itself. */
export const STORE_ORIGIN_HEADER = 'storelink-origin';

export interface RelayErrorBody {
  error: { code: StorelinkErrorCode; message: string; field?: string };
}

export interface RelayResultBody {
  result: unknown;
}

export const HEALTH_PATH = '/health';

/** The path, after the hybrid connection's, that carries an operation of `type`. */
export function operationPath(type: string): string {
  return `/operations/${encodeURIComponent(type)}`;
}

/** What a request path asks the store for; the reverse of `operationPath` and `HEALTH_PATH`. */
export type RelayRoute = { kind: 'health' } | { kind: 'operation'; type: string } | { kind: 'none' };

/**
 * Reads a request URL as the listener receives it (`/<hybrid connection>/operations/<type>?…`). `prefix` is the
 * hybrid connection's path with its trailing slash, lower-case (`/store-paris-1/`); hybrid connection names are
 * case-insensitive.
 */
export function relayRouteOf(url: string, prefix: string): RelayRoute {
  const path = url.split('?', 1)[0]!;
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return { kind: 'none' };
  }
  if (!decoded.toLowerCase().startsWith(prefix)) return { kind: 'none' };
  const rest = decoded.slice(prefix.length - 1);
  if (rest === HEALTH_PATH) return { kind: 'health' };
  const match = /^\/operations\/([^/]+)$/.exec(rest);
  return match === null ? { kind: 'none' } : { kind: 'operation', type: match[1]! };
}

/**
 * A relay answer is also sent through the store's outbox, so the cloud learns the outcome even when the answer is
 * lost on its way. The store holds that copy back for a while (its outbox keeps it on disk meanwhile); a later call
 * from the cloud to the same store may confirm, in these two headers, the operations whose answers it holds durably,
 * and the store then drops their copies unsent. The signature is the cloud's (kind `relay-confirmation`), over the
 * store id and the ids: without it, anyone able to call the relay could make a store forget what it owes the cloud.
 */
export const CONFIRMED_HEADER = 'storelink-confirmed';
export const CONFIRMED_SIGNATURE_HEADER = 'storelink-confirmed-signature';

/** Operation ids confirmed by one call at most; more wait for the next call. 64 UUIDs make a 2.4 KB header. */
export const MAX_CONFIRMED_PER_CALL = 64;

export interface RelayConfirmation {
  operationIds: string[];
  signature: MessageSignature;
}

/** Every part as an operation envelope and a signed message have it: operation ids are UUIDs (operation.ts). */
const confirmationSchema = z.strictObject({
  operationIds: z.array(z.uuid()).min(1).max(MAX_CONFIRMED_PER_CALL),
  signature: messageSignatureSchema,
});
/** A UUID and its comma, per id: a longer header is refused before it is split. */
const MAX_CONFIRMED_HEADER_LENGTH = MAX_CONFIRMED_PER_CALL * 37;
/** A key id, a colon, and an Ed25519 signature in base64url (86 characters). */
const MAX_SIGNATURE_HEADER_LENGTH = 64 + 1 + 86;

/** A signature as one header value: `keyId:value` (a key id holds no colon). */
export function signatureHeaderOf(signature: MessageSignature): string {
  return `${signature.keyId}:${signature.value}`;
}

/** The signature in a `keyId:value` header value, unchecked; undefined when it is absent or not of that shape. */
export function signatureFromHeader(value: string | string[] | undefined): MessageSignature | undefined {
  if (typeof value !== 'string' || value.length > MAX_SIGNATURE_HEADER_LENGTH) return undefined;
  const colon = value.indexOf(':');
  if (colon < 0) return undefined;
  const parsed = messageSignatureSchema.safeParse({ keyId: value.slice(0, colon), value: value.slice(colon + 1) });
  return parsed.success ? parsed.data : undefined;
}

/** The two header values for a confirmation. */
export function confirmationHeaders(confirmation: RelayConfirmation): Record<string, string> {
  return {
    [CONFIRMED_HEADER]: confirmation.operationIds.join(','),
    [CONFIRMED_SIGNATURE_HEADER]: signatureHeaderOf(confirmation.signature),
  };
}

/**
 * The store's signature on its answer to an operation call (kind `relay-answer`, over relayAnswerSignedFields: the
 * store, the operation, the status and the body's digest). The cloud takes an answer as the store's only with it: a
 * relay credential lets whoever holds it listen, and so answer, on the store's hybrid connection; only the store's key
 * makes this header. A health answer carries none (it settles no operation).
 */
export const ANSWER_SIGNATURE_HEADER = 'storelink-answer-signature';

/**
 * Reads a confirmation from a request's header values: undefined when there is none, `invalid` when the headers are
 * malformed (too long, too many ids, not UUIDs, a signature of the wrong shape, one header without the other). Checks
 * the size before splitting anything. The signature itself is the receiver's to verify.
 */
export function confirmationOf(ids: string | string[] | undefined, signature: string | string[] | undefined): RelayConfirmation | 'invalid' | undefined {
  if (ids === undefined && signature === undefined) return undefined;
  if (typeof ids !== 'string' || typeof signature !== 'string') return 'invalid';
  if (ids.length > MAX_CONFIRMED_HEADER_LENGTH || signature.length > MAX_SIGNATURE_HEADER_LENGTH) return 'invalid';
  // A key id holds no colon, so the first one ends it.
  const colon = signature.indexOf(':');
  const parsed = confirmationSchema.safeParse({
    operationIds: ids.split(','),
    signature: { keyId: signature.slice(0, colon), value: signature.slice(colon + 1) },
  });
  return colon < 0 || !parsed.success ? 'invalid' : parsed.data;
}
