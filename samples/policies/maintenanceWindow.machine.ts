/**
 * An architect's chart: the relay is never used during a nightly maintenance window of the stores' network, and the
 * breaker is stricter than the default one (a single channel failure trips it). The chart stays pure: when the
 * window opens and closes is asked of two named delays and a guard, which maintenanceWindow.clock.ts implements with
 * a wall clock.
 */
import { not, setup } from 'xstate';
import type { LinkEvent, LinkInput } from '../../src/core/linkContract.js';
import type { LinkPolicy } from '../../src/core/policy.js';

/** The nightly window, in UTC. */
export interface MaintenanceWindow {
  startsAtMinuteOfDay: number;
  lengthInMinutes: number;
}

export const NIGHTLY_WINDOW: MaintenanceWindow = { startsAtMinuteOfDay: 2 * 60, lengthInMinutes: 90 };

export interface MaintenanceWindowContext {
  policy: LinkPolicy;
  bidirectional: boolean;
  window: MaintenanceWindow;
}

function notProvided(name: string): never {
  throw new Error(`"${name}" not provided: supply it with .provide() (see maintenanceWindow.clock.ts)`);
}

export const maintenanceWindowMachine = setup({
  types: {
    context: {} as MaintenanceWindowContext,
    events: {} as LinkEvent,
    input: {} as LinkInput,
  },
  guards: {
    isBidirectional: ({ context }) => context.bidirectional,
    announced: ({ event }, relay: 'up' | 'down' | 'disabled') => event.type === 'store.announced' && event.relay === relay,
    announcedUpAndBidirectional: ({ context, event }) =>
      context.bidirectional && event.type === 'store.announced' && event.relay === 'up',
    insideWindow: (): boolean => notProvided('insideWindow'),
  },
  delays: {
    cooldown: ({ context }) => context.policy.openCooldownInMs,
    untilWindowOpens: () => notProvided('untilWindowOpens'),
    untilWindowCloses: () => notProvided('untilWindowCloses'),
  },
}).createMachine({
  id: 'maintenanceWindow',
  context: ({ input }) => ({ policy: input.policy, bidirectional: input.bidirectional, window: NIGHTLY_WINDOW }),
  initial: 'starting',
  on: {
    'store.announced': { guard: { type: 'announced', params: 'disabled' }, target: '.disabled' },
    // This chart keeps no deadlines of its own: its windows come from the wall clock, so a link brought back to life
    // decides afresh from the time of day (a relay that was unavailable gets its chance again at once).
    'link.resumed': '.starting',
  },
  states: {
    starting: {
      always: [
        { guard: not('isBidirectional'), target: 'disabled' },
        { guard: 'insideWindow', target: 'maintenance' },
        { target: 'inService' },
      ],
    },
    disabled: {
      description: 'Real-time mode is off for this store.',
      on: { 'store.announced': { guard: 'announcedUpAndBidirectional', target: 'inService.trial' } },
    },
    inService: {
      description: 'Outside the maintenance window: a strict breaker guards the relay.',
      initial: 'available',
      after: { untilWindowOpens: 'maintenance' },
      states: {
        available: {
          tags: ['relay'],
          on: {
            'relay.failed': 'unavailable',
            'store.announced': { guard: { type: 'announced', params: 'down' }, target: 'unavailable' },
          },
        },
        unavailable: {
          after: { cooldown: 'trial' },
          on: {
            'relay.succeeded': 'available',
            'store.announced': { guard: { type: 'announced', params: 'up' }, target: 'trial' },
          },
        },
        trial: {
          tags: ['relay', 'probe'],
          on: {
            'relay.succeeded': 'available',
            'relay.failed': 'unavailable',
            'store.announced': { guard: { type: 'announced', params: 'down' }, target: 'unavailable' },
          },
        },
      },
    },
    maintenance: {
      description: 'The nightly window: real-time operations take their fallback; one trial call when it closes.',
      after: { untilWindowCloses: 'inService.trial' },
    },
  },
});
