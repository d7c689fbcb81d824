/**
 * The one public error class of storelink. Its `code` is API: callers branch on it, tests assert it, and it never
 * changes meaning once published. Messages are for people and may be reworded at any time.
 */
import type { RelayFailureReason } from './linkContract.js';

/**
 * What storelink does with an error of a code, wherever it meets one. Every part reads these facts through the
 * accessors below rather than keeping its own list, so a new code is decided once, here.
 */
export interface ErrorCodeFacts {
  /** Whether retrying the same call may succeed (an error may override it). */
  readonly retryable: boolean;
  /** The relay could not carry the call: the reason the link chart is told, and the dispatcher falls back. */
  readonly relayFailure?: RelayFailureReason;
  /**
   * The HTTP status the store's relay listener answers with. Only these codes are the store's own answer: the relay
   * sender passes them back as they are, and reads any other code from a store as HANDLER_FAILED.
   */
  readonly storeHttpStatus?: number;
  /** The operation can never succeed: the store dead-letters it at once instead of letting the queue retry it. */
  readonly permanent?: true;
  /** The cloud HTTP API's status; without one, 503 when the error is retryable and 502 when it is not. */
  readonly cloudHttpStatus?: number;
  /** The command line was used wrongly: the CLI exits 2, not 1. */
  readonly usageError?: true;
  /**
   * On a send, the fault is the message's own (not the queue's or the connection's): it will never be sent as it is,
   * so the store's outbox parks it rather than let it hold up the entries behind it.
   */
  readonly unsendableMessage?: true;
}

/**
 * Every code storelink raises, with its facts. Adding a code is a minor change; renaming or removing one is a
 * breaking change.
 */
export const STORELINK_ERROR_CODES = {
  /** An operation envelope failed validation; `field` names the first failing field. */
  OPERATION_INVALID: { retryable: false, storeHttpStatus: 400, permanent: true, cloudHttpStatus: 400 },
  /** An operation's serialized payload is larger than the configured limit. */
  PAYLOAD_TOO_LARGE: { retryable: false, storeHttpStatus: 413, permanent: true, cloudHttpStatus: 413, unsendableMessage: true },
  /** A policy document failed validation; `field` names the failing path. */
  POLICY_INVALID: { retryable: false },
  /** A file named by the caller does not exist. */
  FILE_NOT_FOUND: { retryable: false, usageError: true },
  /** A file exists but could not be read or parsed (permissions, not JSON). */
  FILE_UNREADABLE: { retryable: false },
  /** A store's data dir is held by a running store agent (its lock file names the process); retry once it stopped. */
  DATA_DIR_IN_USE: { retryable: true },
  /** A chart name is neither a built-in chart nor an existing module path. */
  CHART_NOT_FOUND: { retryable: false, usageError: true },
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
  RELAY_NO_LISTENER: { retryable: true, relayFailure: 'no-listener' },
  /** The relay call did not complete in time (the sender's timeout, or the relay's 504). */
  RELAY_TIMEOUT: { retryable: true, relayFailure: 'timeout' },
  /** The relay could not be reached (connection refused, DNS, TLS, an unexpected relay error). */
  RELAY_UNREACHABLE: { retryable: true, relayFailure: 'unreachable' },
  /** The relay refused the sender's or listener's credentials (401) or rights (403). */
  RELAY_UNAUTHORIZED: { retryable: false, relayFailure: 'unauthorized' },
  /** The relay does not know the hybrid connection. */
  RELAY_ENDPOINT_NOT_FOUND: { retryable: false, relayFailure: 'no-listener' },
  /**
   * An answer through the relay that the store's key did not sign for this call (unsigned, signed with a key the cloud
   * does not trust for the store, or not matching the status, body or operation): whoever listens on the store's
   * hybrid connection is not the store, so the answer settles nothing and the operation takes its fallback.
   */
  RELAY_ANSWER_UNVERIFIED: { retryable: true, relayFailure: 'unauthorized' },

  // Service Bus channel failures.
  /** The queue (or topic) does not exist, or is disabled. */
  QUEUE_NOT_FOUND: { retryable: false },
  /** Service Bus refused the key or its rights. */
  SERVICE_BUS_UNAUTHORIZED: { retryable: false },
  /** Service Bus could not be reached or was busy; the call may succeed later. */
  SERVICE_BUS_UNAVAILABLE: { retryable: true },
  /** A message's lock expired (or its session's) before it was settled: it will be delivered again. */
  MESSAGE_LOCK_LOST: { retryable: false },

  // The store's own answers, through either channel. Not channel failures (but STORE_UNAVAILABLE): no fallback.
  /**
   * The operation does not carry a valid signature by a cloud key the store trusts (unsigned, signed with a key id
   * the store does not trust, or a signature that does not match the envelope): the store runs nothing and tells the
   * cloud nothing (a report about an unverified message could be a forger's), 400 on the relay.
   */
  SIGNATURE_INVALID: { retryable: false, storeHttpStatus: 400, permanent: true },
  /** The operation is addressed to another store (421 Misdirected Request on the relay). */
  OPERATION_MISROUTED: { retryable: false, storeHttpStatus: 421, permanent: true },
  /** The store has no handler for this operation type. */
  OPERATION_TYPE_UNKNOWN: { retryable: false, permanent: true },
  /** The store does not expose this operation type on the relay. */
  OPERATION_NOT_EXPOSED: { retryable: false, storeHttpStatus: 404 },
  /** The operation's expiresAt passed before it ran. */
  OPERATION_EXPIRED: { retryable: false, storeHttpStatus: 410, permanent: true },
  /** The store's handler refused the operation (insufficient stock, say). */
  OPERATION_REJECTED: { retryable: false, storeHttpStatus: 422 },
  /**
   * The operation ran, but its result is larger than a store message may be (MAX_STORE_MESSAGE_BYTES): the reply says
   * so instead of carrying it. An outcome code, never thrown by a handler.
   */
  REPLY_TOO_LARGE: { retryable: false },
  /** The store's handler failed unexpectedly. */
  HANDLER_FAILED: { retryable: true, storeHttpStatus: 500 },
  /**
   * The store is shutting down and takes no more operations on this channel. On the relay that is as good as no
   * listener, so it counts as a channel failure and the operation falls back to the queue.
   */
  STORE_UNAVAILABLE: { retryable: true, relayFailure: 'no-listener', storeHttpStatus: 503 },
  /** Nothing is served at this path or with this method (the relay listener answers 404/405). */
  ROUTE_NOT_FOUND: { retryable: false, storeHttpStatus: 404, cloudHttpStatus: 404 },
  // The cloud dispatcher's own outcomes.
  /** The dispatcher does not know this store. */
  STORE_UNKNOWN: { retryable: false, cloudHttpStatus: 404 },
  /** A real-time operation whose policy says `reject` found the store's relay unavailable. */
  REALTIME_UNAVAILABLE: { retryable: true },
  /** A real-time operation whose policy says `cached` found the relay unavailable and no earlier reply to serve. */
  NO_CACHED_REPLY: { retryable: true },
  /** The caller aborted the call with its AbortSignal. Not the caller's mistake, so not a 4xx. */
  ABORTED: { retryable: false, cloudHttpStatus: 503 },
  /** An operation id looked up in the cloud's records is not there (never published, or pruned by retention). */
  OPERATION_NOT_FOUND: { retryable: false, cloudHttpStatus: 404 },
  /** A publish repeats an operation id already recorded for another store: an id names one operation of one store. */
  OPERATION_ID_CONFLICT: { retryable: false, cloudHttpStatus: 409 },
  // The cloud's database (PostgreSQL or the embedded PGlite).
  /** The database cannot be reached, refused the connection, or went away mid-query; the call may succeed later. */
  DATABASE_UNAVAILABLE: { retryable: true, cloudHttpStatus: 503 },
  /** The database answered a query with an error that is not about its availability (a bug, or a schema not ours). */
  DATABASE_QUERY_FAILED: { retryable: false, cloudHttpStatus: 500 },
  /** The database schema could not be brought up to date at start (a failed migration); the message names it. */
  DATABASE_MIGRATION_FAILED: { retryable: false },
  // The cloud HTTP API's own answers.
  /** A request to the cloud HTTP API carried no API key, or one that is unknown, revoked, expired or has the wrong secret. */
  API_UNAUTHORIZED: { retryable: false, cloudHttpStatus: 401 },
  /** The request's API key is valid but lacks the scope the route needs (`publish`, `read` or `admin`); the message names it. */
  API_FORBIDDEN: { retryable: false, cloudHttpStatus: 403 },
  /** The cloud HTTP API cannot read its API key file (gone, half-written, invalid): every request is refused until it can. */
  API_KEYS_UNAVAILABLE: { retryable: true, cloudHttpStatus: 503 },
  /** The console asked to resubmit a dead-lettered message that is not (or no longer) in the store queue's dead-letter queue. */
  DEAD_LETTER_NOT_FOUND: { retryable: false, cloudHttpStatus: 404 },
  /** A client took longer than the cloud HTTP API's headers or request timeout to send its request (408; the connection is closed). */
  REQUEST_TIMEOUT: { retryable: true, cloudHttpStatus: 408 },
  /** Something failed that storelink does not anticipate (a bug); the message says what, the log says more. */
  UNEXPECTED_FAILURE: { retryable: true, cloudHttpStatus: 500 },
} as const satisfies Record<string, ErrorCodeFacts>;

export type StorelinkErrorCode = keyof typeof STORELINK_ERROR_CODES;

export interface StorelinkErrorOptions {
  /** Overrides the code's default retryability when the situation says otherwise. */
  retryable?: boolean;
  cause?: unknown;
  /** The dotted path of the offending field, for validation errors (`payload`, `operations.stock.query.fallback`). */
  field?: string;
  /** The operation the error is about, when there is one (a failed publish names the id it gave the operation). */
  operationId?: string;
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
  readonly operationId: string | undefined;

  constructor(code: StorelinkErrorCode, message: string, options: StorelinkErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? STORELINK_ERROR_CODES[code].retryable;
    this.field = options.field;
    this.operationId = options.operationId;
  }
}

/** The same error (code, message, field, retryability; the original as its cause) naming the operation it is about. */
export function withOperationId(error: StorelinkError, operationId: string): StorelinkError {
  if (error.operationId !== undefined) return error;
  return new StorelinkError(error.code, error.message, {
    cause: error,
    retryable: error.retryable,
    operationId,
    ...(error.field === undefined ? {} : { field: error.field }),
  });
}

export function isStorelinkError(value: unknown, code?: StorelinkErrorCode): value is StorelinkError {
  const branded =
    value instanceof StorelinkError ||
    (value instanceof Error && (value as unknown as Record<symbol, unknown>)[STORELINK_ERROR_BRAND] === true && isStorelinkErrorCode((value as StorelinkError).code));
  return branded && (code === undefined || (value as StorelinkError).code === code);
}

export function isStorelinkErrorCode(value: unknown): value is StorelinkErrorCode {
  return typeof value === 'string' && Object.hasOwn(STORELINK_ERROR_CODES, value);
}

// The table's rows differ in which facts they name; read them through one shape.
const FACTS: Readonly<Record<StorelinkErrorCode, ErrorCodeFacts>> = STORELINK_ERROR_CODES;

/** The reason reported to the link chart when the relay could not carry a call; undefined for every other code. */
export function relayFailureReasonOf(code: StorelinkErrorCode): RelayFailureReason | undefined {
  return FACTS[code].relayFailure;
}

/** The HTTP status the store's relay listener answers an error of this code with, if the code is a store answer. */
export function storeHttpStatusOf(code: StorelinkErrorCode): number | undefined {
  return FACTS[code].storeHttpStatus;
}

/** Whether a code a store sent back through the relay is one of the store's own answers (checks untrusted input). */
export function isStoreAnswerCode(code: unknown): code is StorelinkErrorCode {
  return isStorelinkErrorCode(code) && FACTS[code].storeHttpStatus !== undefined;
}

/** Whether an operation failing with this code can never succeed, so the store dead-letters it at once. */
export function isPermanentFailure(code: StorelinkErrorCode): boolean {
  return FACTS[code].permanent === true;
}

/** The cloud HTTP API's status for an error; the error's own retryability decides between 503 and 502. */
export function cloudHttpStatusOf(error: StorelinkError): number {
  return FACTS[error.code].cloudHttpStatus ?? (error.retryable ? 503 : 502);
}

/** Whether a send failing with this code condemns the message itself, so a queueing sender sets it aside. */
export function isUnsendableMessage(code: StorelinkErrorCode): boolean {
  return FACTS[code].unsendableMessage === true;
}

/** Whether the CLI reports an error of this code as a usage error (exit code 2). */
export function isUsageErrorCode(code: StorelinkErrorCode): boolean {
  return FACTS[code].usageError === true;
}
