/**
 * The default routing chart of one store's link, seen from the cloud. It is a circuit breaker on the relay:
 * consecutive channel failures trip it, a cool-down that doubles on every trip (up to a maximum) keeps real-time
 * operations on their fallback, then one trial call decides whether the relay is healthy again. The router reads only
 * the tags (`relay`, `probe`); see src/core/linkContract.ts.
 */
import { assign, setup } from 'xstate';
import type { LinkEvent, LinkInput, RelayFailureReason } from '../src/core/linkContract.js';
import type { LinkPolicy } from '../src/core/policy.js';

export interface StoreLinkContext {
  policy: LinkPolicy;
  bidirectional: boolean;
  /** Relay channel failures since the last success while healthy. */
  consecutiveFailures: number;
  /** Trips since the relay was last healthy; sets the next cool-down. */
  trips: number;
  /** The cool-down of the current (or last) trip. */
  cooldownInMs: number;
  /** Why the relay was last given up on. */
  lastFailure: RelayFailureReason | 'store-announced-down' | null;
}

export type StoreLinkEvent = LinkEvent;
export type StoreLinkInput = LinkInput;

export const storeLinkMachine = setup({
  types: {
    context: {} as StoreLinkContext,
    events: {} as StoreLinkEvent,
    input: {} as StoreLinkInput,
  },
  guards: {
    isBidirectional: ({ context }) => context.bidirectional,
    reachesFailureThreshold: ({ context }) => context.consecutiveFailures + 1 >= context.policy.failureThreshold,
    announcedUp: ({ event }) => event.type === 'store.announced' && event.relay === 'up',
    announcedDown: ({ event }) => event.type === 'store.announced' && event.relay === 'down',
    announcedDisabled: ({ event }) => event.type === 'store.announced' && event.relay === 'disabled',
    announcedUpAndBidirectional: ({ context, event }) =>
      context.bidirectional && event.type === 'store.announced' && event.relay === 'up',
  },
  actions: {
    countFailure: assign({
      consecutiveFailures: ({ context }) => context.consecutiveFailures + 1,
      lastFailure: ({ context, event }) => (event.type === 'relay.failed' ? event.reason : context.lastFailure),
    }),
    noteFailure: assign({
      lastFailure: ({ context, event }) => (event.type === 'relay.failed' ? event.reason : context.lastFailure),
    }),
    noteAnnouncedDown: assign({ lastFailure: 'store-announced-down' as const }),
    resetBreaker: assign({ consecutiveFailures: 0, trips: 0 }),
    startCooldown: assign(({ context }) => {
      const trips = context.trips + 1;
      const grown = context.policy.openCooldownInMs * 2 ** Math.min(trips - 1, 30);
      return { trips, consecutiveFailures: 0, cooldownInMs: Math.min(grown, context.policy.maxCooldownInMs) };
    }),
  },
  delays: {
    cooldown: ({ context }) => context.cooldownInMs,
  },
}).createMachine({
  id: 'storeLink',
  context: ({ input }) => ({
    policy: input.policy,
    bidirectional: input.bidirectional,
    consecutiveFailures: 0,
    trips: 0,
    cooldownInMs: input.policy.openCooldownInMs,
    lastFailure: null,
  }),
  initial: 'starting',
  states: {
    starting: {
      description: 'Chooses the first state from the store configuration.',
      always: [{ guard: 'isBidirectional', target: 'healthy' }, { target: 'disabled' }],
    },
    disabled: {
      description: 'Real-time mode is off for this store: every operation takes the queue or its fallback.',
      on: {
        'store.announced': { guard: 'announcedUpAndBidirectional', target: 'probing' },
      },
    },
    healthy: {
      description: 'The relay is trusted: real-time operations use it.',
      tags: ['relay'],
      on: {
        'relay.succeeded': { actions: 'resetBreaker' },
        'relay.failed': [
          { guard: 'reachesFailureThreshold', target: 'tripped', actions: 'countFailure' },
          { actions: 'countFailure' },
        ],
        'store.announced': [
          { guard: 'announcedDown', target: 'tripped', actions: 'noteAnnouncedDown' },
          { guard: 'announcedDisabled', target: 'disabled', actions: 'resetBreaker' },
        ],
      },
    },
    tripped: {
      description: 'The relay failed: real-time operations take their fallback until the cool-down ends.',
      entry: 'startCooldown',
      after: { cooldown: 'probing' },
      on: {
        'relay.succeeded': { target: 'healthy', actions: 'resetBreaker' },
        'relay.failed': { actions: 'noteFailure' },
        'store.announced': [
          { guard: 'announcedUp', target: 'probing' },
          { guard: 'announcedDisabled', target: 'disabled', actions: 'resetBreaker' },
        ],
      },
    },
    probing: {
      description: 'One trial call decides: success makes the relay healthy, failure trips it for longer.',
      tags: ['relay', 'probe'],
      on: {
        'relay.succeeded': { target: 'healthy', actions: 'resetBreaker' },
        'relay.failed': { target: 'tripped', actions: 'noteFailure' },
        'store.announced': [
          { guard: 'announcedDown', target: 'tripped', actions: 'noteAnnouncedDown' },
          { guard: 'announcedDisabled', target: 'disabled', actions: 'resetBreaker' },
        ],
      },
    },
  },
});
