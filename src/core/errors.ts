/**
 * The one public error class of storelink. Its `code` is API: callers branch on it, tests assert it, and it never
 * changes meaning once published. Messages are for people and may be reworded at any time.
 */

/**
 * Every code storelink raises, with whether retrying the same call may succeed. Adding a code is a minor change;
 * renaming or removing one is a breaking change.
 */
export const STORELINK_ERROR_CODES = {
  /** An operation envelope failed validation; `field` names the first failing field. */
  OPERATION_INVALID: { retryable: false },
  /** An operation's serialized payload is larger than the configured limit. */
  PAYLOAD_TOO_LARGE: { retryable: false },
  /** A policy document failed validation; `field` names the failing path. */
  POLICY_INVALID: { retryable: false },
  /** A file named by the caller does not exist. */
  FILE_NOT_FOUND: { retryable: false },
  /** A file exists but could not be read or parsed (permissions, not JSON). */
  FILE_UNREADABLE: { retryable: false },
  /** A chart name is neither a built-in chart nor an existing module path. */
  CHART_NOT_FOUND: { retryable: false },
  /** A state chart module could not be loaded or does not export a machine. */
  CHART_UNLOADABLE: { retryable: false },
  /** A state chart breaks the routing contract (unreachable state, unknown tag, missing event). */
  CHART_CONTRACT_VIOLATED: { retryable: false },
  /** A SAS token is not of the form `SharedAccessSignature sr=…&sig=…&se=…&skn=…`. */
  SAS_TOKEN_MALFORMED: { retryable: false },
  /** A SAS token names a key (`skn`) that the verifier does not know. */
  SAS_KEY_UNKNOWN: { retryable: false },
  /** A SAS token's signature does not match any key known for its key name. */
  SAS_SIGNATURE_INVALID: { retryable: false },
  /** A SAS token's expiry (`se`) has passed. A fresh token may succeed. */
  SAS_TOKEN_EXPIRED: { retryable: true },
} as const satisfies Record<string, { retryable: boolean }>;

export type StorelinkErrorCode = keyof typeof STORELINK_ERROR_CODES;

export interface StorelinkErrorOptions {
  /** Overrides the code's default retryability when the situation says otherwise. */
  retryable?: boolean;
  cause?: unknown;
  /** The dotted path of the offending field, for validation errors (`payload`, `operations.stock.query.fallback`). */
  field?: string;
}

export class StorelinkError extends Error {
  override readonly name = 'StorelinkError';
  readonly code: StorelinkErrorCode;
  readonly retryable: boolean;
  readonly field: string | undefined;

  constructor(code: StorelinkErrorCode, message: string, options: StorelinkErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? STORELINK_ERROR_CODES[code].retryable;
    this.field = options.field;
  }
}

export function isStorelinkError(value: unknown, code?: StorelinkErrorCode): value is StorelinkError {
  return value instanceof StorelinkError && (code === undefined || value.code === code);
}
