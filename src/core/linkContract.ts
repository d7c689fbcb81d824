/**
 * The contract between a store's link chart (any machine in `machines/`, or an architect's own) and the router.
 * The router sends the chart four events and reads only the tags of its snapshot; everything else about the chart
 * (its states, timers, counters) is the chart's business.
 *
 * Charts have no clock: every event the router sends, the chart's input and the probe's output carry `at`, the
 * router's time in ms since the epoch. A chart keeps the deadline of each timed state in its context, computed from
 * `at`, so that a restored snapshot can re-arm its timers from data it owns: xstate does not persist `after` timers,
 * so when the router brings a persisted link back to life it sends `link.resumed`, and a chart re-enters its timed
 * states then. The router provides one actor, `probeRelay` (a promise actor: input `ProbeInput`, output
 * `ProbeResult`, never rejects), which a chart invokes to health-check the store's relay without traffic.
 */
import { STORELINK_ERROR_CODES, relayFailureReasonOf, type StorelinkErrorCode } from './errors.js';
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
  | { type: 'relay.succeeded'; at: number }
  | { type: 'relay.failed'; reason: RelayFailureReason; at: number }
  | { type: 'store.announced'; relay: RelayAnnouncement; at: number }
  /** A persisted snapshot came back to life (after a restart or an eviction): re-arm the timers from the deadlines. */
  | { type: 'link.resumed'; at: number };

export const LINK_EVENT_TYPES = ['relay.succeeded', 'relay.failed', 'store.announced', 'link.resumed'] as const satisfies readonly LinkEvent['type'][];

/** The events every chart must react to; `link.resumed` only matters to a chart with timers. */
export const REQUIRED_LINK_EVENT_TYPES = ['relay.succeeded', 'relay.failed', 'store.announced'] as const satisfies readonly LinkEvent['type'][];

/** What the router passes a chart when it creates a store's link actor. */
export interface LinkInput {
  storeId: string;
  policy: LinkPolicy;
  /** Whether the store is configured for real-time mode (has a hybrid connection). */
  bidirectional: boolean;
  /** When the link is created, in ms since the epoch. */
  at: number;
}

/** The input of the `probeRelay` actor a chart invokes. */
export interface ProbeInput {
  storeId: string;
}

/** What a health probe of the relay found, and when it finished. */
export type ProbeResult = { healthy: true; at: number } | { healthy: false; reason: RelayFailureReason; at: number };

/** The name of the provided health probe actor. */
export const PROBE_ACTOR = 'probeRelay';

/** Every event a contract check sends a chart, one per event shape (dated at the epoch; checks read only tags). */
export const SAMPLE_LINK_EVENTS: readonly LinkEvent[] = [
  { type: 'relay.succeeded', at: 0 },
  ...RELAY_FAILURE_REASONS.map((reason): LinkEvent => ({ type: 'relay.failed', reason, at: 0 })),
  ...RELAY_ANNOUNCEMENTS.map((relay): LinkEvent => ({ type: 'store.announced', relay, at: 0 })),
  { type: 'link.resumed', at: 0 },
];

export { relayFailureReasonOf } from './errors.js';

/**
 * The error codes that mean the relay could not carry a call, with the reason reported to the link chart. Every other
 * code is the store's own answer (or the caller's doing) and never triggers a fallback. Read from the code table.
 */
export const RELAY_FAILURE_REASON_BY_CODE: Readonly<Partial<Record<StorelinkErrorCode, RelayFailureReason>>> = Object.freeze(
  Object.fromEntries(
    (Object.keys(STORELINK_ERROR_CODES) as StorelinkErrorCode[]).flatMap((code) => {
      const reason = relayFailureReasonOf(code);
      return reason === undefined ? [] : [[code, reason]];
    }),
  ),
);
