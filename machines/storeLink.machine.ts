/**
 * The default routing chart of one store's link, seen from the cloud. It is a circuit breaker on the relay:
 * consecutive channel failures trip it, a cool-down that doubles on every trip (up to a maximum) keeps real-time
 * operations on their fallback, then one trial call decides whether the relay is healthy again. The chart also owns
 * the relay's health probes: while tripped at `probeIntervalInMs` (a success closes the breaker early) and while healthy
 * at the slower `healthyProbeIntervalInMs` (a failure trips it, so a relay that dies while no traffic flows is noticed).
 * The router reads only the tags (`relay`, `probe`); see src/core/linkContract.ts.
 *
 * Time: every event from the router carries `at`. Each timed state's deadline is kept in context, and the delays are
 * what is left of it at the instant of the event that entered the state, so a restored snapshot re-arms its timers
 * from its own data when the router sends `link.resumed`.
 */
import { assign, fromPromise, setup } from 'xstate';
import type { LinkEvent, LinkInput, ProbeInput, ProbeResult, RelayFailureReason } from '../src/core/linkContract.js';
import type { LinkPolicy } from '../src/core/policy.js';

export interface StoreLinkContext {
  storeId: string;
  policy: LinkPolicy;
  bidirectional: boolean;
  /** Relay channel failures since the last success while healthy. */
  consecutiveFailures: number;
  /** Trips since the relay was last healthy; sets the next cool-down. */
  trips: number;
  /** The cool-down of the current (or last) trip. */
  cooldownInMs: number;
  /** When the current trip's cool-down ends (ms since the epoch); null while not tripped. */
  cooldownEndsAtInMs: number | null;
  /** When the next health probe is due (ms since the epoch); null when none is scheduled. */
  nextProbeAtInMs: number | null;
  /** Why the relay was last given up on. */
  lastFailure: RelayFailureReason | 'store-announced-down' | 'probe-failed' | null;
}

export type StoreLinkEvent = LinkEvent;
export type StoreLinkInput = LinkInput;

/**
 * The instant of whatever entered a state: a router event's `at`, a probe's finishing time, or the link's creation time
 * (xstate's init event carries the input). Undefined for xstate's own timer events, which never enter a state whose
 * delay needs it.
 */
function instantOf(event: unknown): number | undefined {
  if (typeof event !== 'object' || event === null) return undefined;
  const { at, output, input } = event as { at?: unknown; output?: { at?: unknown }; input?: { at?: unknown } };
  for (const candidate of [at, output?.at, input?.at]) if (typeof candidate === 'number' && Number.isFinite(candidate)) return candidate;
  return undefined;
}

/** What is left until `deadline` at the event's instant; the whole `fallbackInMs` when either is unknown. */
function remainingInMs(deadline: number | null, event: unknown, fallbackInMs: number): number {
  const at = instantOf(event);
  if (deadline === null || at === undefined) return fallbackInMs;
  return Math.max(0, deadline - at);
}

function probeOutput(event: unknown): ProbeResult | undefined {
  return (event as { output?: ProbeResult }).output;
}

export const storeLinkMachine = setup({
  types: {
    context: {} as StoreLinkContext,
    events: {} as StoreLinkEvent,
    input: {} as StoreLinkInput,
  },
  actors: {
    probeRelay: fromPromise<ProbeResult, ProbeInput>(() => {
      throw new Error('storeLink chart: the probeRelay actor is not provided (the router provides it)');
    }),
  },
  guards: {
    isBidirectional: ({ context }) => context.bidirectional,
    reachesFailureThreshold: ({ context }) => context.consecutiveFailures + 1 >= context.policy.failureThreshold,
    announcedUp: ({ event }) => event.type === 'store.announced' && event.relay === 'up',
    announcedDown: ({ event }) => event.type === 'store.announced' && event.relay === 'down',
    announcedDisabled: ({ event }) => event.type === 'store.announced' && event.relay === 'disabled',
    announcedUpAndBidirectional: ({ context, event }) =>
      context.bidirectional && event.type === 'store.announced' && event.relay === 'up',
    probeFoundHealthy: ({ event }) => probeOutput(event)?.healthy === true,
  },
  actions: {
    countFailure: assign({
      consecutiveFailures: ({ context }) => context.consecutiveFailures + 1,
      lastFailure: ({ context, event }) => (event.type === 'relay.failed' ? event.reason : context.lastFailure),
    }),
    noteFailure: assign({
      lastFailure: ({ context, event }) => (event.type === 'relay.failed' ? event.reason : context.lastFailure),
    }),
    noteProbeFailure: assign({
      lastFailure: ({ event }) => {
        const output = probeOutput(event);
        return output !== undefined && !output.healthy ? output.reason : 'probe-failed';
      },
    }),
    noteAnnouncedDown: assign({ lastFailure: 'store-announced-down' as const }),
    resetBreaker: assign({ consecutiveFailures: 0, trips: 0, cooldownEndsAtInMs: null }),
    startCooldown: assign(({ context, event }) => {
      const trips = context.trips + 1;
      const grown = context.policy.openCooldownInMs * 2 ** Math.min(trips - 1, 30);
      const cooldownInMs = Math.min(grown, context.policy.maxCooldownInMs);
      const at = instantOf(event);
      return {
        trips,
        consecutiveFailures: 0,
        cooldownInMs,
        cooldownEndsAtInMs: at === undefined ? null : at + cooldownInMs,
        nextProbeAtInMs: at === undefined ? null : at + context.policy.probeIntervalInMs,
      };
    }),
    scheduleTrippedProbe: assign({
      nextProbeAtInMs: ({ context, event }) => {
        const at = instantOf(event);
        return at === undefined ? null : at + context.policy.probeIntervalInMs;
      },
    }),
    scheduleHealthyProbe: assign({
      nextProbeAtInMs: ({ context, event }) => {
        const at = instantOf(event);
        return at === undefined ? null : at + context.policy.healthyProbeIntervalInMs;
      },
    }),
    forgetProbe: assign({ nextProbeAtInMs: null }),
  },
  delays: {
    untilCooldownEnds: ({ context, event }) => remainingInMs(context.cooldownEndsAtInMs, event, context.cooldownInMs),
    untilTrippedProbe: ({ context, event }) => remainingInMs(context.nextProbeAtInMs, event, context.policy.probeIntervalInMs),
    untilHealthyProbe: ({ context, event }) => remainingInMs(context.nextProbeAtInMs, event, context.policy.healthyProbeIntervalInMs),
  },
}).createMachine({
  id: 'storeLink',
  context: ({ input }) => ({
    storeId: input.storeId,
    policy: input.policy,
    bidirectional: input.bidirectional,
    consecutiveFailures: 0,
    trips: 0,
    cooldownInMs: input.policy.openCooldownInMs,
    cooldownEndsAtInMs: null,
    nextProbeAtInMs: null,
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
      entry: 'forgetProbe',
      on: {
        'store.announced': { guard: 'announcedUpAndBidirectional', target: 'probing' },
      },
    },
    healthy: {
      description: 'The relay is trusted: real-time operations use it, and a health probe runs now and then.',
      tags: ['relay'],
      entry: 'scheduleHealthyProbe',
      initial: 'waiting',
      states: {
        waiting: {
          description: 'Until the next health probe is due.',
          after: { untilHealthyProbe: 'checking' },
        },
        checking: {
          description: 'A health probe of the relay; a failure trips the breaker at once.',
          invoke: {
            src: 'probeRelay',
            input: ({ context }) => ({ storeId: context.storeId }),
            onDone: [
              { guard: 'probeFoundHealthy', target: 'waiting', actions: ['resetBreaker', 'scheduleHealthyProbe'] },
              { target: '#storeLink.tripped', actions: 'noteProbeFailure' },
            ],
            onError: { target: '#storeLink.tripped', actions: 'noteProbeFailure' },
          },
        },
      },
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
        'link.resumed': '.waiting',
      },
    },
    tripped: {
      description: 'The relay failed: real-time operations take their fallback until the cool-down ends.',
      entry: 'startCooldown',
      type: 'parallel',
      states: {
        cooldown: {
          description: 'Runs out at the deadline set when the link tripped; then one trial decides.',
          initial: 'running',
          states: {
            running: { after: { untilCooldownEnds: '#storeLink.probing' } },
          },
        },
        probe: {
          description: 'Health probes while tripped: a success closes the breaker before the cool-down ends.',
          initial: 'waiting',
          states: {
            waiting: { after: { untilTrippedProbe: 'checking' } },
            checking: {
              invoke: {
                src: 'probeRelay',
                input: ({ context }) => ({ storeId: context.storeId }),
                onDone: [
                  { guard: 'probeFoundHealthy', target: '#storeLink.healthy', actions: 'resetBreaker' },
                  { target: 'waiting', actions: ['noteProbeFailure', 'scheduleTrippedProbe'] },
                ],
                onError: { target: 'waiting', actions: ['noteProbeFailure', 'scheduleTrippedProbe'] },
              },
            },
          },
        },
      },
      on: {
        'relay.succeeded': { target: 'healthy', actions: 'resetBreaker' },
        'relay.failed': { actions: 'noteFailure' },
        'store.announced': [
          { guard: 'announcedUp', target: 'probing' },
          { guard: 'announcedDisabled', target: 'disabled', actions: 'resetBreaker' },
        ],
        'link.resumed': ['.cooldown.running', '.probe.waiting'],
      },
    },
    probing: {
      description: 'One trial decides, a call or a health probe: success makes the relay healthy, failure trips it for longer.',
      tags: ['relay', 'probe'],
      invoke: {
        src: 'probeRelay',
        input: ({ context }) => ({ storeId: context.storeId }),
        onDone: [
          { guard: 'probeFoundHealthy', target: 'healthy', actions: 'resetBreaker' },
          { target: 'tripped', actions: 'noteProbeFailure' },
        ],
        onError: { target: 'tripped', actions: 'noteProbeFailure' },
      },
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
