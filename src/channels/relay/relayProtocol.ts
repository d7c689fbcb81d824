/**
 * What the relay listener and sender agree on, beyond HTTP itself: the paths a store serves, the JSON bodies, the
 * header that marks an answer as the store's own, and the HTTP status of each store-side error code.
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

/** HTTP status for each error code the store answers with. */
export const STATUS_BY_STORE_ERROR: Readonly<Partial<Record<StorelinkErrorCode, number>>> = Object.freeze({
  OPERATION_INVALID: 400,
  PAYLOAD_TOO_LARGE: 413,
  ROUTE_NOT_FOUND: 404,
  OPERATION_NOT_EXPOSED: 404,
  OPERATION_EXPIRED: 410,
  OPERATION_REJECTED: 422,
  HANDLER_FAILED: 500,
  STORE_UNAVAILABLE: 503,
});

export function operationPath(type: string): string {
  return `/operations/${encodeURIComponent(type)}`;
}

export const HEALTH_PATH = '/health';
