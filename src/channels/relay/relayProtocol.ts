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
