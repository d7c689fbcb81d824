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

export function operationPath(type: string): string {
  return `/operations/${encodeURIComponent(type)}`;
}

export const HEALTH_PATH = '/health';
