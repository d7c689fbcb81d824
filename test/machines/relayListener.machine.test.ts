import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor, fromCallback, type SnapshotFrom } from 'xstate';
import { getAdjacencyMap, getShortestPaths } from 'xstate/graph';
import { relayListenerMachine, type ControlChannelEvent, type RelayListenerEvent } from '../../machines/relayListener.machine.js';

const input = { initialBackoffInMs: 100, maxBackoffInMs: 500, authRetryInMs: 5_000 };
type ListenerSnapshot = SnapshotFrom<typeof relayListenerMachine>;
const BACKOFF = 'xstate.after.backoff.relayListener.backingOff';
const AUTH_RETRY = 'xstate.after.authRetry.relayListener.authFailed';

const actors: { stop(): void }[] = [];
/** Control channels the chart has invoked, and how many of them it has stopped (their cleanup ran). */
let opened = 0;
let closed = 0;
/** The way each invoked channel reports to the chart, even after it was stopped. */
let reporters: ((event: ControlChannelEvent) => void)[] = [];

const fakeControlChannel = fromCallback<ControlChannelEvent>(({ sendBack }) => {
  opened += 1;
  reporters.push(sendBack);
  return () => {
    closed += 1;
  };
});

function startListener() {
  const actor = createActor(relayListenerMachine.provide({ actors: { controlChannel: fakeControlChannel } }), { input });
  actors.push(actor);
  return actor.start();
}

type Status = 'idle' | 'connecting' | 'listening' | 'reconnecting' | 'backingOff' | 'authFailed' | 'stopped';

/** The state value of a status: the three that hold a control channel are inside `online`. */
function valueOf(status: Status): ListenerSnapshot['value'] {
  return status === 'connecting' || status === 'listening' || status === 'reconnecting' ? { online: status } : status;
}

function statusOf(value: ListenerSnapshot['value']): Status {
  return typeof value === 'string' ? value : value.online;
}

const failed = (kind: 'unauthorized' | 'not-found' | 'network' | 'protocol' = 'network'): RelayListenerEvent => ({
  type: 'listener.failed',
  kind,
  message: `failed: ${kind}`,
});

beforeEach(() => {
  vi.useFakeTimers();
  opened = 0;
  closed = 0;
  reporters = [];
});

afterEach(() => {
  for (const actor of actors.splice(0)) actor.stop();
  vi.useRealTimers();
});

describe('relayListener chart', () => {
  it('opens a control channel on start and listens once it is open', () => {
    const listener = startListener();
    expect(listener.getSnapshot().value).toBe('idle');
    expect(opened).toBe(0);
    listener.send({ type: 'listener.start' });
    expect(listener.getSnapshot().value).toEqual({ online: 'connecting' });
    expect(opened).toBe(1);
    listener.send({ type: 'listener.opened' });
    expect(listener.getSnapshot().value).toEqual({ online: 'listening' });
  });

  it('backs off exponentially up to the maximum, opening a new channel after each wait', () => {
    const listener = startListener();
    listener.send({ type: 'listener.start' });
    const waits: number[] = [];
    for (let attempt = 0; attempt < 5; attempt += 1) {
      listener.send(failed());
      expect(listener.getSnapshot().value).toBe('backingOff');
      const wait = listener.getSnapshot().context.backoffInMs;
      waits.push(wait);
      vi.advanceTimersByTime(wait - 1);
      expect(listener.getSnapshot().value).toBe('backingOff');
      vi.advanceTimersByTime(1);
      expect(listener.getSnapshot().value).toEqual({ online: 'connecting' });
    }
    expect(waits).toEqual([100, 200, 400, 500, 500]);
    expect(opened).toBe(6);
    listener.send({ type: 'listener.opened' });
    expect(listener.getSnapshot().context).toMatchObject({ failures: 0, lastFailure: null });
  });

  it('lets hyco-https reopen a dropped channel itself, and backs off only if that fails', () => {
    const listener = startListener();
    listener.send({ type: 'listener.start' });
    listener.send({ type: 'listener.opened' });
    listener.send({ type: 'listener.dropped', message: 'closed (1011)' });
    expect(listener.getSnapshot().value).toEqual({ online: 'reconnecting' });
    expect(opened).toBe(1);
    listener.send({ type: 'listener.opened' });
    expect(listener.getSnapshot().value).toEqual({ online: 'listening' });
    listener.send({ type: 'listener.dropped', message: 'closed (1006)' });
    listener.send(failed('network'));
    expect(listener.getSnapshot().value).toBe('backingOff');
  });

  it('parks in authFailed on refused credentials and retries slowly', () => {
    const listener = startListener();
    listener.send({ type: 'listener.start' });
    listener.send(failed('unauthorized'));
    expect(listener.getSnapshot().value).toBe('authFailed');
    expect(listener.getSnapshot().context.lastFailure).toEqual({ kind: 'unauthorized', message: 'failed: unauthorized' });
    vi.advanceTimersByTime(4_999);
    expect(listener.getSnapshot().value).toBe('authFailed');
    vi.advanceTimersByTime(1);
    expect(listener.getSnapshot().value).toEqual({ online: 'connecting' });
    expect(opened).toBe(2);
  });

  it.each(['idle', 'connecting', 'listening', 'reconnecting', 'backingOff', 'authFailed'] as const)('stops for good from %s', (state) => {
    const listener = startListener();
    if (state !== 'idle') listener.send({ type: 'listener.start' });
    if (state === 'listening' || state === 'reconnecting') listener.send({ type: 'listener.opened' });
    if (state === 'reconnecting') listener.send({ type: 'listener.dropped', message: 'gone' });
    if (state === 'backingOff') listener.send(failed());
    if (state === 'authFailed') listener.send(failed('unauthorized'));
    expect(listener.getSnapshot().value).toEqual(valueOf(state));
    listener.send({ type: 'listener.stop' });
    expect(listener.getSnapshot().value).toBe('stopped');
    expect(listener.getSnapshot().status).toBe('done');
    // Every channel the chart opened is closed, whether the stop found one open (online) or not.
    expect(closed).toBe(opened);
    expect(opened).toBe(state === 'idle' ? 0 : 1);
    vi.advanceTimersByTime(60_000);
    expect(opened).toBeLessThanOrEqual(1);
  });

  it('runs one control channel while online, kept across a drop, and closes it whenever the chart leaves online', () => {
    const listener = startListener();
    listener.send({ type: 'listener.start' });
    listener.send({ type: 'listener.opened' });
    listener.send({ type: 'listener.dropped', message: 'closed (1011)' });
    listener.send({ type: 'listener.opened' });
    expect([opened, closed]).toEqual([1, 0]);
    listener.send(failed('network'));
    expect(listener.getSnapshot().value).toBe('backingOff');
    expect([opened, closed]).toEqual([1, 1]);
    vi.advanceTimersByTime(listener.getSnapshot().context.backoffInMs);
    expect(listener.getSnapshot().value).toEqual({ online: 'connecting' });
    expect([opened, closed]).toEqual([2, 1]);
    listener.send(failed('unauthorized'));
    expect(listener.getSnapshot().value).toBe('authFailed');
    expect([opened, closed]).toEqual([2, 2]);
    vi.advanceTimersByTime(input.authRetryInMs);
    listener.send({ type: 'listener.opened' });
    expect([opened, closed]).toEqual([3, 2]);
    listener.send({ type: 'listener.stop' });
    expect([opened, closed]).toEqual([3, 3]);
  });

  it('closes the control channel when the listener actor itself is stopped', () => {
    const listener = startListener();
    listener.send({ type: 'listener.start' });
    listener.send({ type: 'listener.opened' });
    listener.stop();
    expect([opened, closed]).toEqual([1, 1]);
  });

  it('ignores what a closed control channel still reports', () => {
    const listener = startListener();
    listener.send({ type: 'listener.start' });
    const [first] = reporters;
    first!({ type: 'listener.opened' });
    expect(listener.getSnapshot().value).toEqual({ online: 'listening' });
    first!(failed('network') as ControlChannelEvent);
    expect(listener.getSnapshot().value).toBe('backingOff');
    first!({ type: 'listener.opened' });
    expect(listener.getSnapshot().value).toBe('backingOff');
    vi.advanceTimersByTime(listener.getSnapshot().context.backoffInMs);
    first!({ type: 'listener.opened' });
    expect(listener.getSnapshot().value).toEqual({ online: 'connecting' });
    reporters[1]!({ type: 'listener.opened' });
    expect(listener.getSnapshot().value).toEqual({ online: 'listening' });
  });

  it('needs its control channel provided', () => {
    const listener = createActor(relayListenerMachine, { input });
    actors.push(listener);
    const errors: unknown[] = [];
    listener.subscribe({ error: (error) => errors.push(error) });
    listener.start();
    listener.send({ type: 'listener.start' });
    expect(listener.getSnapshot().status).toBe('error');
    expect(errors).toEqual([expect.objectContaining({ message: expect.stringContaining('"controlChannel" not provided') })]);
  });

  describe('every transition, reached by a generated shortest path, replays on a live actor with fake timers', () => {
    const serializeState = (snapshot: ListenerSnapshot) => JSON.stringify([snapshot.value, Math.min(snapshot.context.failures, 2)]);
    const events: RelayListenerEvent[] = [
      { type: 'listener.start' },
      { type: 'listener.opened' },
      { type: 'listener.dropped', message: 'dropped' },
      failed('unauthorized'),
      failed('network'),
      { type: 'listener.stop' },
      { type: BACKOFF } as never,
      { type: AUTH_RETRY } as never,
    ];
    const options = { input, events, serializeState };
    const adjacency = getAdjacencyMap(relayListenerMachine, options);
    const cases = getShortestPaths(relayListenerMachine, options).flatMap((path) => {
      const prefix = path.steps.map((step) => step.event).filter((event) => (event.type as string) !== 'xstate.init');
      return Object.values(adjacency[serializeState(path.state) as keyof typeof adjacency]!.transitions).map(({ event, state }) => ({
        steps: [...prefix, event],
        expected: serializeState(state),
        name: [...prefix, event].map((step) => ('kind' in step ? `${step.type}(${step.kind})` : step.type.replace(/^xstate\.after\.(\w+).*/, 'after $1'))).join(' → '),
      }));
    });

    it('cover every state and event', () => {
      const states = new Set(cases.map(({ expected }) => statusOf((JSON.parse(expected) as [ListenerSnapshot['value']])[0])));
      expect([...states].sort()).toEqual(['authFailed', 'backingOff', 'connecting', 'idle', 'listening', 'reconnecting', 'stopped']);
      expect(new Set(cases.flatMap(({ steps }) => steps.map((step) => step.type))).size).toBe(7);
    });

    it.each(cases)('$name', ({ steps, expected }) => {
      const listener = startListener();
      for (const event of steps) {
        const type: string = event.type;
        // A timer event sent to a state without that timer is a no-op in the model; only a state's own timer may run.
        if (type === BACKOFF) {
          if (listener.getSnapshot().matches('backingOff')) vi.advanceTimersByTime(listener.getSnapshot().context.backoffInMs);
        } else if (type === AUTH_RETRY) {
          if (listener.getSnapshot().matches('authFailed')) vi.advanceTimersByTime(input.authRetryInMs);
        } else if (listener.getSnapshot().status === 'active') {
          listener.send(event);
        }
      }
      expect(serializeState(listener.getSnapshot())).toBe(expected);
      // A control channel runs exactly while the chart is online.
      expect(opened - closed).toBe(listener.getSnapshot().matches('online') ? 1 : 0);
    });
  });
});
