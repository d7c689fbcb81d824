import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor } from 'xstate';
import { maintenanceWindowMachine, NIGHTLY_WINDOW } from '../../samples/policies/maintenanceWindow.machine.js';
import { maintenanceWindowClock, msUntilWindowCloses, msUntilWindowOpens } from '../../samples/policies/maintenanceWindow.clock.js';
import { route } from '../../src/core/route.js';
import { defaultPolicy } from '../../src/core/policy.js';

const HOUR = 3_600_000;
const policy = defaultPolicy();
const stoppers: { stop(): void }[] = [];

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  for (const actor of stoppers.splice(0)) actor.stop();
  vi.useRealTimers();
});

describe('maintenance window clock', () => {
  const window = { startsAtMinuteOfDay: 120, lengthInMinutes: 90 };
  const at = (time: string) => Date.parse(`2026-11-28T${time}Z`);

  it.each([
    ['01:00:00', HOUR, 0],
    ['02:00:00', 24 * HOUR, 90 * 60_000],
    ['02:30:00', 23.5 * HOUR, HOUR],
    ['03:30:00', 22.5 * HOUR, 0],
    ['23:00:00', 3 * HOUR, 0],
  ])('at %s UTC the window opens in %i ms and closes in %i ms', (time, opens, closes) => {
    expect(msUntilWindowOpens(window, at(time))).toBe(opens);
    expect(msUntilWindowCloses(window, at(time))).toBe(closes);
  });
});

describe('maintenance window chart', () => {
  function startAt(isoTime: string) {
    vi.setSystemTime(new Date(isoTime));
    const actor = createActor(maintenanceWindowMachine.provide(maintenanceWindowClock), { input: { storeId: 'paris-1', policy: policy.link, bidirectional: true, at: Date.now() } });
    stoppers.push(actor);
    return actor.start();
  }
  const realtimeOrder = { type: 'clickAndCollect.order', latency: 'realtime' as const };

  it('never routes to the relay during the nightly window, and tries it once when the window closes', () => {
    const link = startAt('2026-11-28T01:00:00Z');
    expect(route(link.getSnapshot(), realtimeOrder, policy).action).toBe('relay');
    vi.advanceTimersByTime(HOUR);
    expect(link.getSnapshot().value).toBe('maintenance');
    expect(route(link.getSnapshot(), realtimeOrder, policy)).toMatchObject({ action: 'queue', fallback: true, reason: 'relay-unavailable' });
    link.send({ type: 'store.announced', relay: 'up', at: Date.now() });
    link.send({ type: 'relay.succeeded', at: Date.now() });
    expect(link.getSnapshot().value).toBe('maintenance');
    vi.advanceTimersByTime(NIGHTLY_WINDOW.lengthInMinutes * 60_000);
    expect(link.getSnapshot().value).toEqual({ inService: 'trial' });
    expect(route(link.getSnapshot(), realtimeOrder, policy).trial).toBe(true);
  });

  it('starts in maintenance when created during the window, and serves when it closes', () => {
    const link = startAt('2026-11-28T02:30:00Z');
    expect(link.getSnapshot().value).toBe('maintenance');
    vi.advanceTimersByTime(HOUR);
    expect(link.getSnapshot().value).toEqual({ inService: 'trial' });
  });

  it('trips on a single relay failure and probes after the cool-down', () => {
    const link = startAt('2026-11-28T12:00:00Z');
    link.send({ type: 'relay.failed', reason: 'timeout', at: Date.now() });
    expect(link.getSnapshot().value).toEqual({ inService: 'unavailable' });
    vi.advanceTimersByTime(policy.link.openCooldownInMs);
    expect(link.getSnapshot().value).toEqual({ inService: 'trial' });
    link.send({ type: 'relay.succeeded', at: Date.now() });
    expect(link.getSnapshot().value).toEqual({ inService: 'available' });
  });

  it('goes to disabled from any state when the store switches real time off', () => {
    const link = startAt('2026-11-28T01:30:00Z');
    vi.advanceTimersByTime(HOUR);
    expect(link.getSnapshot().value).toBe('maintenance');
    link.send({ type: 'store.announced', relay: 'disabled', at: Date.now() });
    expect(link.getSnapshot().value).toBe('disabled');
    link.send({ type: 'store.announced', relay: 'up', at: Date.now() });
    expect(link.getSnapshot().value).toEqual({ inService: 'trial' });
  });
});
