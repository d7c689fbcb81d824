/**
 * What the relay listener and sender agree on, beyond HTTP itself: the paths a store serves, the JSON bodies and the
 * header that marks an answer as the store's own. The HTTP status of each store-side error code is in the code table
 * (src/core/errors.ts).
 */
import type { StorelinkErrorCode } from '../../core/errors.js';

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
  signature: { keyId: string; value: string };
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** A key id (see signing.ts), a colon, then an Ed25519 signature in base64url. */
const SIGNATURE_PATTERN = /^([A-Za-z0-9._-]{1,64}):([A-Za-z0-9_-]{86})$/;
const MAX_CONFIRMED_HEADER_LENGTH = MAX_CONFIRMED_PER_CALL * 37;

/** The two header values for a confirmation. */
export function confirmationHeaders(confirmation: RelayConfirmation): Record<string, string> {
  return {
    [CONFIRMED_HEADER]: confirmation.operationIds.join(','),
    [CONFIRMED_SIGNATURE_HEADER]: `${confirmation.signature.keyId}:${confirmation.signature.value}`,
  };
}

/**
 * Reads a confirmation from a request's header values: undefined when there is none, `invalid` when the headers are
 * malformed (too long, too many ids, not UUIDs, a signature of the wrong shape, one header without the other). Checks
 * the size before splitting anything. The signature itself is the receiver's to verify.
 */
export function confirmationOf(ids: string | string[] | undefined, signature: string | string[] | undefined): RelayConfirmation | 'invalid' | undefined {
  if (ids === undefined && signature === undefined) return undefined;
  if (typeof ids !== 'string' || typeof signature !== 'string') return 'invalid';
  if (ids.length === 0 || ids.length > MAX_CONFIRMED_HEADER_LENGTH) return 'invalid';
  const match = SIGNATURE_PATTERN.exec(signature);
  if (match === null) return 'invalid';
  const operationIds = ids.split(',');
  if (operationIds.length > MAX_CONFIRMED_PER_CALL || !operationIds.every((id) => UUID_PATTERN.test(id))) return 'invalid';
  return { operationIds, signature: { keyId: match[1]!, value: match[2]! } };
}
