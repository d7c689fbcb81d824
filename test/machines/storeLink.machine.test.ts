import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor, type SnapshotFrom } from 'xstate';
import { getAdjacencyMap, getShortestPaths } from 'xstate/graph';
import { storeLinkMachine, type StoreLinkEvent } from '../../machines/storeLink.machine.js';
import { SAMPLE_LINK_EVENTS } from '../../src/core/linkContract.js';
import type { LinkPolicy } from '../../src/core/policy.js';

const policy: LinkPolicy = { failureThreshold: 3, openCooldownInMs: 1_000, maxCooldownInMs: 5_000, probeIntervalInMs: 500 };
const COOLDOWN_EVENT = 'xstate.after.cooldown.storeLink.tripped';

type LinkSnapshot = SnapshotFrom<typeof storeLinkMachine>;
const started: { stop(): void }[] = [];

function startLink(bidirectional = true) {
  const actor = createActor(storeLinkMachine, { input: { policy, bidirectional } });
  started.push(actor);
  return actor.start();
}

const failed = (reason: 'no-listener' | 'timeout' | 'unreachable' | 'unauthorized' = 'timeout'): StoreLinkEvent => ({
  type: 'relay.failed',
  reason,
});
const announced = (relay: 'up' | 'down' | 'disabled'): StoreLinkEvent => ({ type: 'store.announced', relay });

function tagsOf(snapshot: LinkSnapshot): string[] {
  return [...snapshot.tags].sort();
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  for (const actor of started.splice(0)) actor.stop();
  vi.useRealTimers();
});

describe('storeLink chart', () => {
  it('starts healthy with the relay tag for a bi-directional store', () => {
    const link = startLink(true);
    expect(link.getSnapshot().value).toBe('healthy');
    expect(tagsOf(link.getSnapshot())).toEqual(['relay']);
  });

  it('starts disabled, without tags, for an async-only store, and ignores announcements', () => {
    const link = startLink(false);
    expect(link.getSnapshot().value).toBe('disabled');
    link.send(announced('up'));
    expect(link.getSnapshot().value).toBe('disabled');
    expect(tagsOf(link.getSnapshot())).toEqual([]);
  });

  it('trips after failureThreshold consecutive failures; a success in between resets the count', () => {
    const link = startLink();
    link.send(failed());
    link.send(failed());
    expect(link.getSnapshot().value).toBe('healthy');
    expect(link.getSnapshot().context.consecutiveFailures).toBe(2);
    link.send({ type: 'relay.succeeded' });
    expect(link.getSnapshot().context.consecutiveFailures).toBe(0);
    link.send(failed('no-listener'));
    link.send(failed('unreachable'));
    link.send(failed('no-listener'));
    expect(link.getSnapshot().value).toBe('tripped');
    expect(tagsOf(link.getSnapshot())).toEqual([]);
    expect(link.getSnapshot().context).toMatchObject({ lastFailure: 'no-listener', trips: 1, cooldownInMs: 1_000 });
  });

  it('probes when the cool-down ends, and a successful trial makes the relay healthy', () => {
    const link = startLink();
    link.send(announced('down'));
    expect(link.getSnapshot().value).toBe('tripped');
    vi.advanceTimersByTime(999);
    expect(link.getSnapshot().value).toBe('tripped');
    vi.advanceTimersByTime(1);
    expect(link.getSnapshot().value).toBe('probing');
    expect(tagsOf(link.getSnapshot())).toEqual(['probe', 'relay']);
    link.send({ type: 'relay.succeeded' });
    expect(link.getSnapshot().value).toBe('healthy');
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
      expect(link.getSnapshot().value).toBe('tripped');
      vi.advanceTimersByTime(1);
      expect(link.getSnapshot().value).toBe('probing');
      link.send(failed());
      expect(link.getSnapshot().value).toBe('tripped');
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
    link.send({ type: 'relay.succeeded' });
    link.send(announced('down'));
    expect(link.getSnapshot().context.cooldownInMs).toBe(1_000);
  });

  it('leaves tripped at once when a health probe succeeds or the store announces its relay up', () => {
    const probed = startLink();
    probed.send(announced('down'));
    probed.send({ type: 'relay.succeeded' });
    expect(probed.getSnapshot().value).toBe('healthy');

    const announcedUp = startLink();
    announcedUp.send(announced('down'));
    announcedUp.send(announced('up'));
    expect(announcedUp.getSnapshot().value).toBe('probing');
  });

  it('keeps the cool-down running when more failures arrive while tripped', () => {
    const link = startLink();
    link.send(announced('down'));
    vi.advanceTimersByTime(600);
    link.send(failed('unauthorized'));
    expect(link.getSnapshot().context).toMatchObject({ trips: 1, lastFailure: 'unauthorized' });
    vi.advanceTimersByTime(400);
    expect(link.getSnapshot().value).toBe('probing');
  });

  it.each(['healthy', 'tripped', 'probing'] as const)('goes to disabled from %s when the store switches real time off, and back through a trial', (from) => {
    const link = startLink();
    if (from !== 'healthy') link.send(announced('down'));
    if (from === 'probing') vi.advanceTimersByTime(1_000);
    expect(link.getSnapshot().value).toBe(from);
    link.send(announced('disabled'));
    expect(link.getSnapshot().value).toBe('disabled');
    vi.advanceTimersByTime(60_000);
    expect(link.getSnapshot().value).toBe('disabled');
    link.send(announced('up'));
    expect(link.getSnapshot().value).toBe('probing');
  });

  it('keeps its context JSON-serialisable: a persisted link resumes in the same state', () => {
    const link = startLink();
    link.send(failed());
    link.send(announced('down'));
    const persisted: unknown = JSON.parse(JSON.stringify(link.getPersistedSnapshot()));
    const restored = createActor(storeLinkMachine, { snapshot: persisted as LinkSnapshot, input: { policy, bidirectional: true } });
    started.push(restored);
    restored.start();
    expect(restored.getSnapshot().value).toBe('tripped');
    expect(restored.getSnapshot().context).toEqual(link.getSnapshot().context);
  });

  describe('every transition, reached by a generated shortest path, replays on a live actor with fake timers', () => {
    // Trips grow without bound, so states are told apart by value, failure count and whether the link tripped again.
    const serializeState = (snapshot: LinkSnapshot) =>
      JSON.stringify([snapshot.value, snapshot.context.consecutiveFailures, Math.min(snapshot.context.trips, 2)]);
    const events = [...SAMPLE_LINK_EVENTS, { type: COOLDOWN_EVENT }] as StoreLinkEvent[];
    // The generator records the actor's start as a first `xstate.init` step.
    const stepsOf = <T extends { steps: { event: StoreLinkEvent | { type: 'xstate.init' } }[] }>(path: T) =>
      path.steps.filter((step) => step.event.type !== 'xstate.init').map((step) => step.event as StoreLinkEvent);

    const cases = [true, false].flatMap((bidirectional) => {
      const options = { input: { policy, bidirectional }, events, serializeState };
      const adjacency = getAdjacencyMap(storeLinkMachine, options);
      return getShortestPaths(storeLinkMachine, options).flatMap((path) =>
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
      expect([...sent].sort()).toEqual([COOLDOWN_EVENT, 'relay.failed', 'relay.succeeded', 'store.announced'].sort());
    });

    it.each(cases)('$name', ({ bidirectional, steps, expected, expectedTags }) => {
      const link = startLink(bidirectional);
      for (const event of steps) {
        if ((event.type as string) === COOLDOWN_EVENT) {
          // Only a tripped link has the timer; elsewhere the generator's event is a no-op, and so is the wait.
          vi.advanceTimersByTime(link.getSnapshot().context.cooldownInMs);
        } else {
          link.send(event);
        }
      }
      expect(serializeState(link.getSnapshot())).toBe(expected);
      expect(tagsOf(link.getSnapshot())).toEqual(expectedTags);
    });
  });
});
