/**
 * The lifecycle of a store's relay listener: the outbound control channel it keeps open to Azure Relay. hyco-https
 * reconnects by itself only right after a dropped channel; every failed attempt hands control back to this chart,
 * which backs off exponentially (capped), parks in `authFailed` when the relay refuses the credentials (retrying
 * slowly, so a fixed key or right is picked up without a restart), and stops for good on `listener.stop`.
 */
import { assign, setup } from 'xstate';

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

function notProvided(name: string): never {
  throw new Error(`relayListener action "${name}" not provided`);
}

/** A connection attempt that failed: refused credentials park the listener, anything else backs off. */
const FAILED_ATTEMPT = [
  { guard: 'isAuthFailure', target: 'authFailed', actions: 'recordFailure' },
  { target: 'backingOff', actions: 'recordFailure' },
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
  actions: {
    /** Open a new control channel (a new hyco-https server). */
    openControlChannel: () => notProvided('openControlChannel'),
    /** Close the current control channel for good. */
    closeControlChannel: () => notProvided('closeControlChannel'),
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
      on: { 'listener.start': 'connecting' },
    },
    connecting: {
      description: 'A new control channel is being opened.',
      entry: 'openControlChannel',
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
        'listener.failed': { target: 'backingOff', actions: 'recordFailure' },
      },
    },
    reconnecting: {
      description: 'The channel dropped; hyco-https is reopening it at once.',
      on: {
        'listener.opened': 'listening',
        'listener.failed': FAILED_ATTEMPT,
      },
    },
    backingOff: {
      description: 'Waiting before the next attempt; the wait doubles with every failure, up to the maximum.',
      entry: 'growBackoff',
      after: { backoff: 'connecting' },
    },
    authFailed: {
      description: 'The relay refused the credentials or their rights; retried slowly in case they are fixed.',
      after: { authRetry: 'connecting' },
    },
    stopped: {
      type: 'final',
      entry: 'closeControlChannel',
    },
  },
});
