/**
 * The outbox depth a store reports to the cloud inside its announcements (newest-wins, sent before anything else, so a
 * report overtakes the backlog it describes). The pending announcement is not counted: a new one replaces it.
 */
import type { JsonValue } from '../core/json.js';
import type { OutboxDepth } from '../core/storeMessage.js';
import type { Outbox } from './outbox.js';

/** How often a store checks whether its outbox depth changed since its last report; default 30 s. */
export const DEFAULT_OUTBOX_REPORT_INTERVAL_IN_MS = 30_000;

function pendingAnnouncementOf(outbox: Pick<Outbox, 'peek'>): { body: JsonValue } | undefined {
  const first = outbox.peek(1)[0];
  return first?.kind === 'announcement' ? first : undefined;
}

export function outboxDepthOf(outbox: Pick<Outbox, 'peek' | 'size' | 'parkedSize'>): OutboxDepth {
  return { pending: outbox.size - (pendingAnnouncementOf(outbox) === undefined ? 0 : 1), parked: outbox.parkedSize };
}

/**
 * The depth to report now, or undefined: when it has not changed since `last`, or when a relay announcement is still
 * waiting to be sent (a depth report would replace it, and the cloud's link chart would never hear of the relay).
 */
export function depthToReport(outbox: Pick<Outbox, 'peek' | 'size' | 'parkedSize'>, last: OutboxDepth | undefined): OutboxDepth | undefined {
  const pending = pendingAnnouncementOf(outbox);
  if (pending !== undefined && typeof pending.body === 'object' && pending.body !== null && 'relay' in pending.body) return undefined;
  const depth = outboxDepthOf(outbox);
  return last !== undefined && last.pending === depth.pending && last.parked === depth.parked ? undefined : depth;
}
