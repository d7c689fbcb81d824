/**
 * Where the cloud inbox's messages go when several cloud instances share it (README "Several cloud instances"): the
 * inbox is a topic the stores send to, exactly as they sent to the queue, and its subscriptions do the routing.
 *
 * - `replies`, session-enabled: every reply in the session its operation named (the instance that sent it), so it
 *   reaches that instance, which holds its session; a session nobody holds is adopted by another instance.
 * - `events`: store events (and replies without a session, from stores older than this), read by every instance as
 *   competing consumers, so each is processed once.
 * - `announcements-<instanceId>`: one per instance, so every instance's charts see every announcement.
 */
import { EVENTS_SUBSCRIPTION, REPLIES_SUBSCRIPTION, announcementsSubscription } from '../core/names.js';

export interface InboxSubscription {
  name: string;
  requiresSession: boolean;
  /** A Service Bus SQL filter, or (with propertiesFilter) a correlation filter on application properties. */
  sqlFilter?: string;
  propertiesFilter?: Record<string, string>;
}

export const REPLIES_FILTER = 'sys.SessionId IS NOT NULL';
export const EVENTS_FILTER = "sys.SessionId IS NULL AND (kind IS NULL OR kind <> 'announcement')";

/** The subscriptions the inbox topic needs for these instances. */
export function inboxSubscriptions(instanceIds: readonly string[]): InboxSubscription[] {
  return [
    { name: REPLIES_SUBSCRIPTION, requiresSession: true, sqlFilter: REPLIES_FILTER },
    { name: EVENTS_SUBSCRIPTION, requiresSession: false, sqlFilter: EVENTS_FILTER },
    ...instanceIds.map((id) => ({ name: announcementsSubscription(id), requiresSession: false, propertiesFilter: { kind: 'announcement' } })),
  ];
}
