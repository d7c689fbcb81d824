/** Options of the Service Bus emulator, and their defaults (those of Service Bus Standard where it has one). */
import type { CorrelationFilter } from './filters.js';

export type AccessRight = 'Listen' | 'Send' | 'Manage';

export interface SharedAccessPolicy {
  keyName: string;
  primaryKey: string;
  secondaryKey?: string;
  /** `Manage` implies `Listen` and `Send`. */
  rights: AccessRight[];
}

/**
 * An authorization rule of one queue or topic (Azure's `AuthorizationRules` of an entity): its keys sign tokens for
 * that entity only (its path or a path under it: its dead-letter queue, a subscription of a topic), never for another
 * entity nor for the whole namespace. Same shape as a namespace policy.
 */
export type AuthorizationRule = SharedAccessPolicy;

/** Azure's limit of authorization rules on one entity (and on a namespace). */
export const MAX_AUTHORIZATION_RULES_PER_ENTITY = 12;

export interface EntityProperties {
  /** Peek-lock duration; default 60 000 ms. */
  lockDurationInMs?: number;
  /** Deliveries before a message is dead-lettered with `MaxDeliveryCountExceeded`; default 10. */
  maxDeliveryCount?: number;
  /** Time to live for messages that set none (and the cap for those that do); default unlimited. */
  defaultMessageTimeToLiveInMs?: number;
  /** Move expired messages to the dead-letter queue (reason `TTLExpiredException`); default false (they vanish). */
  deadLetteringOnMessageExpiration?: boolean;
  requiresDuplicateDetection?: boolean;
  /** Default 10 minutes. */
  duplicateDetectionHistoryTimeWindowInMs?: number;
  requiresSession?: boolean;
  /** Forward every accepted message to this queue or topic. */
  forwardTo?: string;
  /** Forward dead-lettered messages to this queue or topic instead of the entity's own dead-letter queue. */
  forwardDeadLetteredMessagesTo?: string;
  /** Largest accepted message (and the `max-message-size` sender links advertise); default 256 KiB. */
  maxMessageSizeInBytes?: number;
}

export interface QueueOptions extends EntityProperties {
  name: string;
  /** Rules whose keys are valid for this queue only; at most 12, as on Azure. Namespace policies keep working. */
  authorizationRules?: AuthorizationRule[];
}

/** A subscription rule: a correlation filter, a SQL filter expression, or a constant. */
export interface RuleOptions {
  name: string;
  correlationFilter?: CorrelationFilter;
  sqlFilter?: string;
  /** true = match everything (`$Default`), false = nothing. Used when neither filter is given. */
  matchAll?: boolean;
}

export interface SubscriptionOptions extends EntityProperties {
  name: string;
  /** Default: one `$Default` rule that matches every message. */
  rules?: RuleOptions[];
}

export interface TopicOptions {
  name: string;
  /** Rules whose keys are valid for this topic and its subscriptions only; at most 12, as on Azure. */
  authorizationRules?: AuthorizationRule[];
  defaultMessageTimeToLiveInMs?: number;
  requiresDuplicateDetection?: boolean;
  duplicateDetectionHistoryTimeWindowInMs?: number;
  maxMessageSizeInBytes?: number;
  subscriptions?: SubscriptionOptions[];
}

export interface NamespaceOptions {
  /** Informational: every namespace is served on the same port, whatever host name the client uses. */
  name?: string;
  queues?: QueueOptions[];
  topics?: TopicOptions[];
}

export interface ServiceBusEmulatorOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /**
   * The plaintext AMQP port; default 0: an ephemeral port. `null`: no plaintext port at all, the emulator then serves
   * only the streams handed to `acceptConnection` / `handleUpgrade` (the TLS port of `startEmulators`).
   */
  port?: number | null;
  namespaces?: NamespaceOptions[];
  /** Default: `RootManageSharedAccessKey` / `SAS_KEY_VALUE` with Manage, as in the official emulator. */
  sharedAccessPolicies?: SharedAccessPolicy[];
  /** Create an unknown queue the first time a link names it; default false (`MessagingEntityNotFound`). */
  autoCreate?: boolean | EntityProperties;
  /** Directory for the message journal. Without it everything stays in memory. */
  dataDir?: string;
  /** fsync each group commit as well as writing it (survives power loss, not only a process kill); default false. */
  syncWrites?: boolean;
  /** Start a new journal generation (snapshot + fresh log) once the log reaches this size; default 64 MiB. */
  compactJournalAfterBytes?: number;
  /**
   * The max-frame-size the emulator advertises in its `open`, and enforces: a larger frame closes the connection.
   * Default 64 KiB (what Azure Service Bus is seen to advertise); the SDK splits larger messages into frames this size.
   */
  maxFrameSizeInBytes?: number;
  /** The largest frame a connection may send before a CBS token is accepted; default 16 KiB (a token is a few hundred bytes). */
  unauthenticatedMaxFrameSizeInBytes?: number;
  /**
   * A connection that has not had a CBS token accepted this long after it connected is closed (raw TCP that sends
   * nothing included); default 60 000, as long as the SDK waits for any operation.
   */
  authenticationTimeoutInMs?: number;
  /** Closes the emulator when aborted. */
  abortSignal?: AbortSignal;
  /** The clock, in ms since the epoch (tests inject one). Default `Date.now`. */
  now?: () => number;
}

export const DEFAULT_KEY_NAME = 'RootManageSharedAccessKey';
export const DEFAULT_KEY = 'SAS_KEY_VALUE';
export const DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024;

export const DEFAULT_MAX_FRAME_SIZE = 64 * 1024;
export const DEFAULT_UNAUTHENTICATED_MAX_FRAME_SIZE = 16 * 1024;
export const DEFAULT_AUTHENTICATION_TIMEOUT_IN_MS = 60_000;
/** AMQP's MIN-MAX-FRAME-SIZE: every peer must accept frames this large. */
const MIN_MAX_FRAME_SIZE = 512;
/** Above this, a frame size could be read as the `AMQP` of a protocol header. */
const MAX_MAX_FRAME_SIZE = 64 * 1024 * 1024;

export interface ConnectionLimits {
  maxFrameSizeInBytes: number;
  unauthenticatedMaxFrameSizeInBytes: number;
  /** Everything a peer may send before it authenticates: enough for any handshake, far from a memory problem. */
  unauthenticatedMaxBytes: number;
  authenticationTimeoutInMs: number;
}

function frameSize(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < MIN_MAX_FRAME_SIZE || value > MAX_MAX_FRAME_SIZE) {
    throw new RangeError(`${name} must be an integer from ${MIN_MAX_FRAME_SIZE} to ${MAX_MAX_FRAME_SIZE}, got ${value}`);
  }
  return value;
}

export function resolveConnectionLimits(options: ServiceBusEmulatorOptions): ConnectionLimits {
  const maxFrameSizeInBytes = frameSize('maxFrameSizeInBytes', options.maxFrameSizeInBytes, DEFAULT_MAX_FRAME_SIZE);
  const unauthenticatedMaxFrameSizeInBytes = frameSize(
    'unauthenticatedMaxFrameSizeInBytes',
    options.unauthenticatedMaxFrameSizeInBytes,
    Math.min(DEFAULT_UNAUTHENTICATED_MAX_FRAME_SIZE, maxFrameSizeInBytes),
  );
  if (unauthenticatedMaxFrameSizeInBytes > maxFrameSizeInBytes) {
    throw new RangeError(
      `unauthenticatedMaxFrameSizeInBytes (${unauthenticatedMaxFrameSizeInBytes}) must be at most maxFrameSizeInBytes (${maxFrameSizeInBytes})`,
    );
  }
  return {
    maxFrameSizeInBytes,
    unauthenticatedMaxFrameSizeInBytes,
    unauthenticatedMaxBytes: 16 * unauthenticatedMaxFrameSizeInBytes,
    authenticationTimeoutInMs: positive('authenticationTimeoutInMs', options.authenticationTimeoutInMs, DEFAULT_AUTHENTICATION_TIMEOUT_IN_MS),
  };
}

export interface ResolvedEntityProperties {
  lockDurationInMs: number;
  maxDeliveryCount: number;
  defaultMessageTimeToLiveInMs: number | undefined;
  deadLetteringOnMessageExpiration: boolean;
  requiresDuplicateDetection: boolean;
  duplicateDetectionHistoryTimeWindowInMs: number;
  requiresSession: boolean;
  forwardTo: string | undefined;
  forwardDeadLetteredMessagesTo: string | undefined;
  maxMessageSizeInBytes: number;
}

/**
 * The emulator's one clock. Enqueue times, lock and session expiries, TTL, scheduling, duplicate detection and SAS
 * expiry all read it, so a test that moves it sees a broker that agrees with itself; timers still run in real time.
 */
export function resolveClock(now: unknown): () => number {
  if (now === undefined) return Date.now;
  if (typeof now !== 'function') {
    throw new TypeError(`now must be a function returning ms since the epoch (like Date.now), got ${now === null ? 'null' : typeof now}`);
  }
  return now as () => number;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number, got ${value}`);
  return value;
}

export function resolveProperties(where: string, props: EntityProperties = {}): ResolvedEntityProperties {
  const ttl = props.defaultMessageTimeToLiveInMs;
  return {
    lockDurationInMs: positive(`${where}.lockDurationInMs`, props.lockDurationInMs, 60_000),
    maxDeliveryCount: positive(`${where}.maxDeliveryCount`, props.maxDeliveryCount, 10),
    defaultMessageTimeToLiveInMs: ttl === undefined ? undefined : positive(`${where}.defaultMessageTimeToLiveInMs`, ttl, 1),
    deadLetteringOnMessageExpiration: props.deadLetteringOnMessageExpiration ?? false,
    requiresDuplicateDetection: props.requiresDuplicateDetection ?? false,
    duplicateDetectionHistoryTimeWindowInMs: positive(
      `${where}.duplicateDetectionHistoryTimeWindowInMs`,
      props.duplicateDetectionHistoryTimeWindowInMs,
      10 * 60_000,
    ),
    requiresSession: props.requiresSession ?? false,
    forwardTo: props.forwardTo,
    forwardDeadLetteredMessagesTo: props.forwardDeadLetteredMessagesTo,
    maxMessageSizeInBytes: positive(`${where}.maxMessageSizeInBytes`, props.maxMessageSizeInBytes, DEFAULT_MAX_MESSAGE_SIZE),
  };
}
