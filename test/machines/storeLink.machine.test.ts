import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor, fromPromise, type SnapshotFrom, type StateValue } from 'xstate';
import { getAdjacencyMap, getShortestPaths } from 'xstate/graph';
import { storeLinkMachine, type StoreLinkEvent } from '../../machines/storeLink.machine.js';
import { SAMPLE_LINK_EVENTS, type ProbeResult } from '../../src/core/linkContract.js';
import type { LinkPolicy } from '../../src/core/policy.js';

const policy: LinkPolicy = { failureThreshold: 3, openCooldownInMs: 1_000, maxCooldownInMs: 5_000, probeIntervalInMs: 500, healthyProbeIntervalInMs: 60_000 };
const COOLDOWN_EVENT = 'xstate.after.untilCooldownEnds.storeLink.tripped.cooldown.running';

type LinkSnapshot = SnapshotFrom<typeof storeLinkMachine>;
const started: { stop(): void }[] = [];

/** Health probes the chart started, oldest first; each stays pending until the test settles it. */
const probes: { storeId: string; settle(result: { healthy: true } | { healthy: false; reason: 'no-listener' | 'timeout' | 'unreachable' | 'unauthorized' }): void }[] = [];

const probedMachine = storeLinkMachine.provide({
  actors: {
    probeRelay: fromPromise<ProbeResult, { storeId: string }>(
      ({ input }) =>
        new Promise((resolve) => {
          probes.push({ storeId: input.storeId, settle: (result) => resolve({ ...result, at: Date.now() }) });
        }),
    ),
  },
});

function startLink(bidirectional = true) {
  const actor = createActor(probedMachine, { input: { storeId: 'paris-1', policy, bidirectional, at: Date.now() } });
  started.push(actor);
  return actor.start();
}

/** The top-level state: timed states have sub-states for their timers and probes. */
function stateOf(link: { getSnapshot(): { value: StateValue } }): string {
  const value = link.getSnapshot().value;
  return typeof value === 'string' ? value : Object.keys(value)[0]!;
}

const succeeded = (): StoreLinkEvent => ({ type: 'relay.succeeded', at: Date.now() });

const failed = (reason: 'no-listener' | 'timeout' | 'unreachable' | 'unauthorized' = 'timeout'): StoreLinkEvent => ({
  type: 'relay.failed',
  reason,
  at: Date.now(),
});
const announced = (relay: 'up' | 'down' | 'disabled'): StoreLinkEvent => ({ type: 'store.announced', relay, at: Date.now() });

function tagsOf(snapshot: LinkSnapshot): string[] {
  return [...snapshot.tags].sort();
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  for (const actor of started.splice(0)) actor.stop();
  probes.splice(0);
  vi.useRealTimers();
});

describe('storeLink chart', () => {
  it('starts healthy with the relay tag for a bi-directional store', () => {
    const link = startLink(true);
    expect(stateOf(link)).toBe('healthy');
    expect(tagsOf(link.getSnapshot())).toEqual(['relay']);
  });

  it('starts disabled, without tags, for an async-only store, and ignores announcements', () => {
    const link = startLink(false);
    expect(stateOf(link)).toBe('disabled');
    link.send(announced('up'));
    expect(stateOf(link)).toBe('disabled');
    expect(tagsOf(link.getSnapshot())).toEqual([]);
  });

  it('trips after failureThreshold consecutive failures; a success in between resets the count', () => {
    const link = startLink();
    link.send(failed());
    link.send(failed());
    expect(stateOf(link)).toBe('healthy');
    expect(link.getSnapshot().context.consecutiveFailures).toBe(2);
    link.send(succeeded());
    expect(link.getSnapshot().context.consecutiveFailures).toBe(0);
    link.send(failed('no-listener'));
    link.send(failed('unreachable'));
    link.send(failed('no-listener'));
    expect(stateOf(link)).toBe('tripped');
    expect(tagsOf(link.getSnapshot())).toEqual([]);
    expect(link.getSnapshot().context).toMatchObject({ lastFailure: 'no-listener', trips: 1, cooldownInMs: 1_000 });
  });

  it('probes when the cool-down ends, and a successful trial makes the relay healthy', () => {
    const link = startLink();
    link.send(announced('down'));
    expect(stateOf(link)).toBe('tripped');
    vi.advanceTimersByTime(999);
    expect(stateOf(link)).toBe('tripped');
    vi.advanceTimersByTime(1);
    expect(stateOf(link)).toBe('probing');
    expect(tagsOf(link.getSnapshot())).toEqual(['probe', 'relay']);
    link.send(succeeded());
    expect(stateOf(link)).toBe('healthy');
    expect(link.getSnapshot().context).toMatchObject({ trips: 0, consecutiveFailures: 0 });
  });

  it('doubles the cool-down on every failed trial, up to the maximum', () => {
    const link = startLink();
    link.send(announced('down'));
    const cooldowns: number[] = [];
    for (let trip = 0; trip < 5; trip += 1) {
      const cooldown = link.getSnapshot().context.cooldownInMs;
      cooldowns.push(cooldown);
      vi.advanceTimersByTime(cooldown - 1);
      expect(stateOf(link)).toBe('tripped');
      vi.advanceTimersByTime(1);
      expect(stateOf(link)).toBe('probing');
      link.send(failed());
      expect(stateOf(link)).toBe('tripped');
    }
    expect(cooldowns).toEqual([1_000, 2_000, 4_000, 5_000, 5_000]);
  });

  it('starts over from the first cool-down after the relay was healthy again', () => {
    const link = startLink();
    link.send(announced('down'));
    vi.advanceTimersByTime(1_000);
    link.send(failed());
    expect(link.getSnapshot().context.cooldownInMs).toBe(2_000);
    vi.advanceTimersByTime(2_000);
    link.send(succeeded());
    link.send(announced('down'));
    expect(link.getSnapshot().context.cooldownInMs).toBe(1_000);
  });

  it('leaves tripped at once when a health probe succeeds or the store announces its relay up', () => {
    const probed = startLink();
    probed.send(announced('down'));
    probed.send(succeeded());
    expect(stateOf(probed)).toBe('healthy');

    const announcedUp = startLink();
    announcedUp.send(announced('down'));
    announcedUp.send(announced('up'));
    expect(stateOf(announcedUp)).toBe('probing');
  });

  it('keeps the cool-down running when more failures arrive while tripped', () => {
    const link = startLink();
    link.send(announced('down'));
    vi.advanceTimersByTime(600);
    link.send(failed('unauthorized'));
    expect(link.getSnapshot().context).toMatchObject({ trips: 1, lastFailure: 'unauthorized' });
    vi.advanceTimersByTime(400);
    expect(stateOf(link)).toBe('probing');
  });

  it.each(['healthy', 'tripped', 'probing'] as const)('goes to disabled from %s when the store switches real time off, and back through a trial', (from) => {
    const link = startLink();
    if (from !== 'healthy') link.send(announced('down'));
    if (from === 'probing') vi.advanceTimersByTime(1_000);
    expect(stateOf(link)).toBe(from);
    link.send(announced('disabled'));
    expect(stateOf(link)).toBe('disabled');
    vi.advanceTimersByTime(60_000);
    expect(stateOf(link)).toBe('disabled');
    link.send(announced('up'));
    expect(stateOf(link)).toBe('probing');
  });

  it('keeps its context JSON-serialisable: a persisted link resumes in the same state', () => {
    const link = startLink();
    link.send(failed());
    link.send(announced('down'));
    const persisted: unknown = JSON.parse(JSON.stringify(link.getPersistedSnapshot()));
    const restored = createActor(probedMachine, { snapshot: persisted as LinkSnapshot, input: { storeId: 'paris-1', policy, bidirectional: true, at: Date.now() } });
    started.push(restored);
    restored.start();
    expect(stateOf(restored)).toBe('tripped');
    expect(restored.getSnapshot().context).toEqual(link.getSnapshot().context);
  });

  it('probes a healthy relay at the healthy interval without any traffic, and trips at once when the probe fails', async () => {
    const link = startLink();
    vi.advanceTimersByTime(59_999);
    expect(probes).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(probes).toHaveLength(1);
    expect(stateOf(link)).toBe('healthy');
    probes[0]!.settle({ healthy: false, reason: 'no-listener' });
    await vi.waitFor(() => expect(stateOf(link)).toBe('tripped'));
    expect(link.getSnapshot().context).toMatchObject({ lastFailure: 'no-listener', trips: 1 });
  });

  it('keeps probing a healthy relay that answers, each interval after the last probe', async () => {
    const link = startLink();
    vi.advanceTimersByTime(60_000);
    probes[0]!.settle({ healthy: true });
    await vi.waitFor(() => expect(link.getSnapshot().matches({ healthy: 'waiting' })).toBe(true));
    vi.advanceTimersByTime(60_000);
    expect(probes).toHaveLength(2);
  });

  it('closes a tripped breaker before the cool-down ends when a health probe succeeds', async () => {
    const link = startLink();
    link.send(announced('down'));
    vi.advanceTimersByTime(500);
    expect(probes).toHaveLength(1);
    probes[0]!.settle({ healthy: true });
    await vi.waitFor(() => expect(stateOf(link)).toBe('healthy'));
  });

  it('re-arms a restored cool-down from the deadline in its context when told link.resumed', () => {
    const link = startLink();
    link.send(announced('down'));
    vi.advanceTimersByTime(400);
    const persisted: unknown = JSON.parse(JSON.stringify(link.getPersistedSnapshot()));
    link.stop();
    // Down for 300 ms: 300 ms of the 1,000 ms cool-down are left when the link comes back.
    vi.advanceTimersByTime(300);
    const restored = createActor(probedMachine, { snapshot: persisted as LinkSnapshot, input: { storeId: 'paris-1', policy, bidirectional: true, at: Date.now() } });
    started.push(restored);
    restored.start();
    restored.send({ type: 'link.resumed', at: Date.now() });
    vi.advanceTimersByTime(299);
    expect(stateOf(restored)).toBe('tripped');
    vi.advanceTimersByTime(1);
    expect(stateOf(restored)).toBe('probing');
  });

  describe('every transition, reached by a generated shortest path, replays on a live actor with fake timers', () => {
    // Trips grow without bound, so states are told apart by value, failure count and whether the link tripped again.
    const serializeState = (snapshot: LinkSnapshot) =>
      JSON.stringify([stateOf({ getSnapshot: () => snapshot }), snapshot.context.consecutiveFailures, Math.min(snapshot.context.trips, 2)]);
    const events = [...SAMPLE_LINK_EVENTS, { type: COOLDOWN_EVENT }] as StoreLinkEvent[];
    // The generator records the actor's start as a first `xstate.init` step.
    const stepsOf = <T extends { steps: { event: StoreLinkEvent | { type: 'xstate.init' } }[] }>(path: T) =>
      path.steps.filter((step) => step.event.type !== 'xstate.init').map((step) => step.event as StoreLinkEvent);

    const cases = [true, false].flatMap((bidirectional) => {
      const options = { input: { storeId: 'paris-1', policy, bidirectional, at: 0 }, events, serializeState };
      const adjacency = getAdjacencyMap(probedMachine, options);
      return getShortestPaths(probedMachine, options).flatMap((path) =>
        Object.values(adjacency[serializeState(path.state) as keyof typeof adjacency]!.transitions).map(({ event, state }) => ({
          bidirectional,
          steps: [...stepsOf(path), event],
          expected: serializeState(state),
          expectedTags: tagsOf(state),
          name: `${bidirectional ? 'bi-directional' : 'async-only'}: ${[...stepsOf(path), event].map(describeEvent).join(' → ')} ⇒ ${serializeState(state)}`,
        })),
      );
    });

    function describeEvent(event: StoreLinkEvent | { type: string }): string {
      if (event.type === COOLDOWN_EVENT) return 'cool-down';
      if ('reason' in event) return `${event.type}(${event.reason})`;
      if ('relay' in event) return `${event.type}(${event.relay})`;
      return event.type;
    }

    it('cover every state and every event of the chart', () => {
      const reached = new Set(cases.map(({ expected }) => (JSON.parse(expected) as [string])[0]));
      expect([...reached].sort()).toEqual(['disabled', 'healthy', 'probing', 'tripped']);
      const sent = new Set(cases.flatMap(({ steps }) => steps.map((event) => event.type)));
      expect([...sent].sort()).toEqual([COOLDOWN_EVENT, 'link.resumed', 'relay.failed', 'relay.succeeded', 'store.announced'].sort());
    });

    it.each(cases)('$name', ({ bidirectional, steps, expected, expectedTags }) => {
      const link = startLink(bidirectional);
      for (const event of steps) {
        if ((event.type as string) === COOLDOWN_EVENT) {
          // Only a tripped link has the timer; elsewhere the generator's event is a no-op, and so is the wait.
          vi.advanceTimersByTime(link.getSnapshot().context.cooldownInMs);
        } else {
          link.send({ ...event, at: Date.now() });
        }
      }
      expect(serializeState(link.getSnapshot())).toBe(expected);
      expect(tagsOf(link.getSnapshot())).toEqual(expectedTags);
    });
  });
});
