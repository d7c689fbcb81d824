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
  /** A connection string is malformed or lacks a required part; the message never contains the key. */
  CONNECTION_STRING_INVALID: { retryable: false },
  /** A SAS token is not of the form `SharedAccessSignature sr=…&sig=…&se=…&skn=…`. */
  SAS_TOKEN_MALFORMED: { retryable: false },
  /** A SAS token names a key (`skn`) that the verifier does not know. */
  SAS_KEY_UNKNOWN: { retryable: false },
  /** A SAS token's signature does not match any key known for its key name. */
  SAS_SIGNATURE_INVALID: { retryable: false },
  /** A SAS token's expiry (`se`) has passed. A fresh token may succeed. */
  SAS_TOKEN_EXPIRED: { retryable: true },

  // Relay channel failures: the relay could not carry the call. The dispatcher falls back on these.
  /** No listener is connected for the store's hybrid connection (or the store is shutting down). */
  RELAY_NO_LISTENER: { retryable: true },
  /** The relay call did not complete in time (the sender's timeout, or the relay's 504). */
  RELAY_TIMEOUT: { retryable: true },
  /** The relay could not be reached (connection refused, DNS, TLS, an unexpected relay error). */
  RELAY_UNREACHABLE: { retryable: true },
  /** The relay refused the sender's or listener's credentials (401) or rights (403). */
  RELAY_UNAUTHORIZED: { retryable: false },
  /** The relay does not know the hybrid connection. */
  RELAY_ENDPOINT_NOT_FOUND: { retryable: false },

  // Service Bus channel failures.
  /** The queue (or topic) does not exist, or is disabled. */
  QUEUE_NOT_FOUND: { retryable: false },
  /** Service Bus refused the key or its rights. */
  SERVICE_BUS_UNAUTHORIZED: { retryable: false },
  /** Service Bus could not be reached or was busy; the call may succeed later. */
  SERVICE_BUS_UNAVAILABLE: { retryable: true },
  /** A message's lock expired (or its session's) before it was settled: it will be delivered again. */
  MESSAGE_LOCK_LOST: { retryable: false },

  // The store's own answers, through either channel. Not channel failures: no fallback.
  /** The operation is addressed to another store. */
  OPERATION_MISROUTED: { retryable: false },
  /** The store has no handler for this operation type. */
  OPERATION_TYPE_UNKNOWN: { retryable: false },
  /** The store does not expose this operation type on the relay. */
  OPERATION_NOT_EXPOSED: { retryable: false },
  /** The operation's expiresAt passed before it ran. */
  OPERATION_EXPIRED: { retryable: false },
  /** The store's handler refused the operation (insufficient stock, say). */
  OPERATION_REJECTED: { retryable: false },
  /** The store's handler failed unexpectedly. */
  HANDLER_FAILED: { retryable: true },
  /** The store is shutting down and takes no more operations on this channel. */
  STORE_UNAVAILABLE: { retryable: true },
  /** Nothing is served at this path or with this method (the relay listener answers 404/405). */
  ROUTE_NOT_FOUND: { retryable: false },
  // The cloud dispatcher's own outcomes.
  /** The dispatcher does not know this store. */
  STORE_UNKNOWN: { retryable: false },
  /** A real-time operation whose policy says `reject` found the store's relay unavailable. */
  REALTIME_UNAVAILABLE: { retryable: true },
  /** A real-time operation whose policy says `cached` found the relay unavailable and no earlier reply to serve. */
  NO_CACHED_REPLY: { retryable: true },
  /** The caller aborted the call with its AbortSignal. */
  ABORTED: { retryable: false },
  // The cloud HTTP API's own answers.
  /** A request to the cloud HTTP API carried no bearer token, or not the configured one. */
  API_UNAUTHORIZED: { retryable: false },
  /** Something failed that storelink does not anticipate (a bug); the message says what, the log says more. */
  UNEXPECTED_FAILURE: { retryable: true },
} as const satisfies Record<string, { retryable: boolean }>;

export type StorelinkErrorCode = keyof typeof STORELINK_ERROR_CODES;

export interface StorelinkErrorOptions {
  /** Overrides the code's default retryability when the situation says otherwise. */
  retryable?: boolean;
  cause?: unknown;
  /** The dotted path of the offending field, for validation errors (`payload`, `operations.stock.query.fallback`). */
  field?: string;
}

/**
 * Marks StorelinkErrors across module instances: a store module loaded through tsx, or a second copy of the package,
 * has its own StorelinkError class, so `instanceof` alone would miss its errors.
 */
const STORELINK_ERROR_BRAND = Symbol.for('storelink.error');

export class StorelinkError extends Error {
  override readonly name = 'StorelinkError';
  readonly [STORELINK_ERROR_BRAND] = true;
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
  const branded =
    value instanceof StorelinkError ||
    (value instanceof Error && (value as unknown as Record<symbol, unknown>)[STORELINK_ERROR_BRAND] === true && Object.hasOwn(STORELINK_ERROR_CODES, (value as StorelinkError).code));
  return branded && (code === undefined || (value as StorelinkError).code === code);
}
