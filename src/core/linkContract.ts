/**
 * The contract between a store's link chart (any machine in `machines/`, or an architect's own) and the router.
 * The router sends the chart three events and reads only the tags of its snapshot; everything else about the chart
 * (its states, timers, counters) is the chart's business.
 */
import type { StorelinkErrorCode } from './errors.js';
import type { LinkPolicy } from './policy.js';

/** `relay`: real-time operations may use the relay. `probe`: one trial call is allowed (always with `relay`). */
export const LINK_TAGS = ['relay', 'probe'] as const;
export type LinkTag = (typeof LINK_TAGS)[number];

/** Why a relay call failed as a channel (the store's own answers are never channel failures). */
export const RELAY_FAILURE_REASONS = ['no-listener', 'timeout', 'unreachable', 'unauthorized'] as const;
export type RelayFailureReason = (typeof RELAY_FAILURE_REASONS)[number];

/** What a store says about its relay listener: connected, lost, or real-time mode switched off. */
export const RELAY_ANNOUNCEMENTS = ['up', 'down', 'disabled'] as const;
export type RelayAnnouncement = (typeof RELAY_ANNOUNCEMENTS)[number];

export type LinkEvent =
  | { type: 'relay.succeeded' }
  | { type: 'relay.failed'; reason: RelayFailureReason }
  | { type: 'store.announced'; relay: RelayAnnouncement };

export const LINK_EVENT_TYPES = ['relay.succeeded', 'relay.failed', 'store.announced'] as const satisfies readonly LinkEvent['type'][];

/** What the router passes a chart when it creates a store's link actor. */
export interface LinkInput {
  policy: LinkPolicy;
  /** Whether the store is configured for real-time mode (has a hybrid connection). */
  bidirectional: boolean;
}

/** Every event a contract check sends a chart, one per event shape. */
export const SAMPLE_LINK_EVENTS: readonly LinkEvent[] = [
  { type: 'relay.succeeded' },
  ...RELAY_FAILURE_REASONS.map((reason): LinkEvent => ({ type: 'relay.failed', reason })),
  ...RELAY_ANNOUNCEMENTS.map((relay): LinkEvent => ({ type: 'store.announced', relay })),
];

/**
 * The error codes that mean the relay could not carry a call, with the reason reported to the link chart. Every other
 * code is the store's own answer (or the caller's doing) and never triggers a fallback.
 */
export const RELAY_FAILURE_REASON_BY_CODE: Readonly<Partial<Record<StorelinkErrorCode, RelayFailureReason>>> = Object.freeze({
  RELAY_NO_LISTENER: 'no-listener',
  RELAY_ENDPOINT_NOT_FOUND: 'no-listener',
  STORE_UNAVAILABLE: 'no-listener',
  RELAY_TIMEOUT: 'timeout',
  RELAY_UNREACHABLE: 'unreachable',
  RELAY_UNAUTHORIZED: 'unauthorized',
});

export function relayFailureReasonOf(code: StorelinkErrorCode): RelayFailureReason | undefined {
  return RELAY_FAILURE_REASON_BY_CODE[code];
}
