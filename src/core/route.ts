/**
 * Where an operation goes, decided from the link snapshot's tags alone. This is the contract every chart must honour:
 * the router never looks at state names or context, so an architect may reshape a chart freely.
 */
import type { Operation } from './operation.js';
import { operationPolicyFor, type Policy } from './policy.js';

/** Anything with tags: an xstate snapshot, or a stand-in in tests. */
export interface TaggedSnapshot {
  hasTag(tag: string): boolean;
}

export type RouteAction = 'relay' | 'queue' | 'reject' | 'cached';

export type RouteReason =
  /** The operation is asynchronous: the queue is its normal path. */
  | 'async-latency'
  /** The chart allows the relay (`relay` tag). */
  | 'relay-available'
  /** The chart allows one trial call (`relay` and `probe` tags) and none is in flight. */
  | 'relay-trial'
  /** The chart does not allow the relay (no `relay` tag). */
  | 'relay-unavailable'
  /** The chart allows one trial call and it is already taken. */
  | 'trial-in-flight';

export interface RouteDecision {
  action: RouteAction;
  reason: RouteReason;
  /** True when a real-time operation did not get the relay and took its type's fallback. */
  fallback: boolean;
  /** True when this relay call is the chart's single trial; its result must be reported back. */
  trial: boolean;
}

export interface RouteOptions {
  /** Whether the link's single trial call is already in flight. */
  trialInFlight?: boolean;
}

export function route(
  snapshot: TaggedSnapshot,
  operation: Pick<Operation, 'type' | 'latency'>,
  policy: Policy,
  options: RouteOptions = {},
): RouteDecision {
  if (operation.latency === 'async') return { action: 'queue', reason: 'async-latency', fallback: false, trial: false };
  if (snapshot.hasTag('relay')) {
    if (!snapshot.hasTag('probe')) return { action: 'relay', reason: 'relay-available', fallback: false, trial: false };
    if (options.trialInFlight !== true) return { action: 'relay', reason: 'relay-trial', fallback: false, trial: true };
  }
  const reason: RouteReason = snapshot.hasTag('relay') ? 'trial-in-flight' : 'relay-unavailable';
  return { action: operationPolicyFor(policy, operation.type).fallback, reason, fallback: true, trial: false };
}
