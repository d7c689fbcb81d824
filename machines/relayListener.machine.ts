/**
 * The lifecycle of a store's relay listener: the outbound control channel it keeps open to Azure Relay. hyco-https
 * reconnects by itself only right after a dropped channel; every failed attempt hands control back to this chart,
 * which backs off exponentially (capped), parks in `authFailed` when the relay refuses the credentials (retrying
 * slowly, so a fixed key or right is picked up without a restart), and stops for good on `listener.stop`.
 *
 * The channel itself is the invoked actor `controlChannel`, alive exactly while the chart is `online` (connecting,
 * listening, or reconnecting through hyco-https): it reports what happens to the channel as events, and leaving
 * `online` stops it, which closes the channel. src/channels/relay/relayListener.ts provides it.
 */
import { assign, fromCallback, setup } from 'xstate';

export const LISTENER_FAILURE_KINDS = ['unauthorized', 'not-found', 'network', 'protocol'] as const;
export type ListenerFailureKind = (typeof LISTENER_FAILURE_KINDS)[number];

export interface RelayListenerInput {
  initialBackoffInMs: number;
  maxBackoffInMs: number;
  /** How long to wait before trying again after the relay refused the credentials. */
  authRetryInMs: number;
}

export interface RelayListenerContext extends RelayListenerInput {
  /** Failed attempts since the channel was last open. */
  failures: number;
  backoffInMs: number;
  lastFailure: { kind: ListenerFailureKind; message: string } | null;
}

export type RelayListenerEvent =
  | { type: 'listener.start' }
  | { type: 'listener.opened' }
  | { type: 'listener.dropped'; message: string }
  | { type: 'listener.failed'; kind: ListenerFailureKind; message: string }
  | { type: 'listener.stop' };

/** The events the control channel actor sends the chart. */
export type ControlChannelEvent = Extract<RelayListenerEvent, { type: 'listener.opened' | 'listener.dropped' | 'listener.failed' }>;

/** A connection attempt that failed: refused credentials park the listener, anything else backs off. */
const FAILED_ATTEMPT = [
  { guard: 'isAuthFailure', target: '#relayListener.authFailed', actions: 'recordFailure' },
  { target: '#relayListener.backingOff', actions: 'recordFailure' },
] as const;

export const relayListenerMachine = setup({
  types: {
    context: {} as RelayListenerContext,
    events: {} as RelayListenerEvent,
    input: {} as RelayListenerInput,
  },
  guards: {
    isAuthFailure: ({ event }) => event.type === 'listener.failed' && event.kind === 'unauthorized',
  },
  actors: {
    /**
     * Opens a control channel (a new hyco-https server), sends the chart ControlChannelEvents, and closes the channel
     * and everything it runs (pings, hyco-https' own reconnects) when stopped.
     */
    controlChannel: fromCallback<ControlChannelEvent>(() => {
      throw new Error('relayListener actor "controlChannel" not provided');
    }),
  },
  actions: {
    recordFailure: assign({
      failures: ({ context }) => context.failures + 1,
      lastFailure: ({ context, event }) =>
        event.type === 'listener.failed' ? { kind: event.kind, message: event.message } : context.lastFailure,
    }),
    recordDrop: assign({
      lastFailure: ({ context, event }) =>
        event.type === 'listener.dropped' ? { kind: 'network' as const, message: event.message } : context.lastFailure,
    }),
    growBackoff: assign({
      backoffInMs: ({ context }) =>
        Math.min(context.initialBackoffInMs * 2 ** Math.min(context.failures - 1, 30), context.maxBackoffInMs),
    }),
    resetFailures: assign({ failures: 0, lastFailure: null }),
  },
  delays: {
    backoff: ({ context }) => context.backoffInMs,
    authRetry: ({ context }) => context.authRetryInMs,
  },
}).createMachine({
  id: 'relayListener',
  context: ({ input }) => ({ ...input, failures: 0, backoffInMs: input.initialBackoffInMs, lastFailure: null }),
  initial: 'idle',
  on: {
    'listener.stop': '.stopped',
  },
  states: {
    idle: {
      on: { 'listener.start': 'online' },
    },
    online: {
      description: 'A control channel exists, invoked on entry and closed whenever the chart leaves this state.',
      invoke: { id: 'controlChannel', src: 'controlChannel' },
      initial: 'connecting',
      states: {
        connecting: {
          description: 'A new control channel is being opened.',
          on: {
            'listener.opened': 'listening',
            'listener.failed': FAILED_ATTEMPT,
          },
        },
        listening: {
          description: 'The control channel is open: the relay can deliver requests.',
          entry: 'resetFailures',
          on: {
            'listener.dropped': { target: 'reconnecting', actions: 'recordDrop' },
            'listener.failed': { target: '#relayListener.backingOff', actions: 'recordFailure' },
          },
        },
        reconnecting: {
          description: 'The channel dropped; hyco-https is reopening it at once.',
          on: {
            'listener.opened': 'listening',
            'listener.failed': FAILED_ATTEMPT,
          },
        },
      },
    },
    backingOff: {
      description: 'Waiting before the next attempt; the wait doubles with every failure, up to the maximum.',
      entry: 'growBackoff',
      after: { backoff: 'online' },
    },
    authFailed: {
      description: 'The relay refused the credentials or their rights; retried slowly in case they are fixed.',
      after: { authRetry: 'online' },
    },
    stopped: {
      type: 'final',
    },
  },
});
