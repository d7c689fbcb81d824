import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { assign, createActor, fromPromise, raise, setup, type AnyActorRef, type AnyStateMachine, type SnapshotFrom, type StateValue } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { storeLinkMachine } from '../../machines/storeLink.machine.js';
import { allChartStates, chartModelOf } from '../../src/charts/chartModel.js';
import { openLinkStore, type LinkStore } from '../../src/cloud/linkStore.js';
import { StoreLinks, topStateOf, type LinkChange, type RouterLinkEvent } from '../../src/cloud/storeLinks.js';
import { SAMPLE_LINK_EVENTS, type LinkEvent, type ProbeResult } from '../../src/core/linkContract.js';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import { defaultPolicy, type LinkPolicy } from '../../src/core/policy.js';
import { route } from '../../src/core/route.js';

const policy = defaultPolicy();
const LINK: LinkPolicy = policy.link;
/** Every timer at least 40 s off: tripped links rest too under the default minRestInMs, and probe while tripped. */
const SLOW_LINK: LinkPolicy = { failureThreshold: 2, openCooldownInMs: 60_000, maxCooldownInMs: 240_000, probeIntervalInMs: 40_000, healthyProbeIntervalInMs: 90_000 };
const REALTIME = { type: 'clickAndCollect.order', latency: 'realtime' } as const;
const COOLDOWN_EVENT = 'xstate.after.untilCooldownEnds.storeLink.tripped.cooldown.running';

type ProbeOutcome = { healthy: true } | { healthy: false; reason: 'timeout' };

/** Health probes one side started, oldest first; each stays pending until the test settles it. */
class Probes {
  readonly pending: ((outcome: ProbeOutcome) => void)[] = [];
  readonly calls: number[] = [];

  probe = (): Promise<ProbeResult> => {
    this.calls.push(Date.now());
    return new Promise((resolve) => this.pending.push((outcome) => resolve({ ...outcome, at: Date.now() })));
  };

  settleAll(outcome: ProbeOutcome): void {
    for (const settle of this.pending.splice(0)) settle(outcome);
  }
}

const closeables: (() => void | Promise<void>)[] = [];
const directories: string[] = [];

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(async () => {
  for (const close of closeables.splice(0).reverse()) await close();
  vi.useRealTimers();
  for (const directory of directories.splice(0)) await rm(directory, { recursive: true, force: true });
});

interface Registry {
  links: StoreLinks;
  store: LinkStore;
  probes: Probes;
  changes: LinkChange[];
}

async function registry(
  options: { bidirectional?: boolean; minRestInMs?: number; store?: LinkStore; chart?: AnyStateMachine; logger?: Logger; link?: LinkPolicy } = {},
): Promise<Registry> {
  const store = options.store ?? (await openLinkStore(undefined));
  const probes = new Probes();
  const changes: LinkChange[] = [];
  const links = new StoreLinks({
    chart: options.chart ?? storeLinkMachine,
    linkPolicy: options.link ?? LINK,
    store,
    isBidirectional: () => options.bidirectional ?? true,
    probe: probes.probe,
    onChange: (change) => changes.push(change),
    logger: options.logger ?? silentLogger,
    now: () => Date.now(),
    ...(options.minRestInMs === undefined ? {} : { minRestInMs: options.minRestInMs }),
  });
  closeables.push(() => links.stopAll());
  return { links, store, probes, changes };
}

/** The reference: one live actor of the same chart, kept for the whole run, as the registry did before links rested. */
function reference(bidirectional: boolean, link: LinkPolicy) {
  const probes = new Probes();
  const changes: LinkChange[] = [];
  const chart = storeLinkMachine.provide({ actors: { probeRelay: fromPromise<ProbeResult, { storeId: string }>(() => probes.probe()) } });
  const actor = createActor(chart, { input: { storeId: 'paris-1', policy: link, bidirectional, at: Date.now() } });
  let reported: { key: string; state: StateValue } | undefined;
  actor.subscribe((snapshot) => {
    const tags = [...snapshot.tags].sort();
    const key = `${topStateOf(snapshot.value)}|${tags.join(',')}`;
    if (key === reported?.key) return;
    changes.push({ storeId: 'paris-1', state: snapshot.value, tags, previousState: reported?.state });
    reported = { key, state: snapshot.value };
  });
  actor.start();
  closeables.push(() => void actor.stop());
  return { actor, probes, changes };
}

type Step =
  | { kind: 'event'; event: RouterLinkEvent }
  | { kind: 'probe'; outcome: ProbeOutcome }
  /** Time runs to the next timer of either side (they are due at the same instants), and what it starts runs. */
  | { kind: 'time' };

const ROUTER_EVENTS: RouterLinkEvent[] = [
  { type: 'relay.succeeded' },
  { type: 'relay.failed', reason: 'timeout' },
  { type: 'store.announced', relay: 'up' },
  { type: 'store.announced', relay: 'down' },
  { type: 'store.announced', relay: 'disabled' },
];
const STEPS: Step[] = [
  ...ROUTER_EVENTS.map((event): Step => ({ kind: 'event', event })),
  { kind: 'probe', outcome: { healthy: true } },
  { kind: 'probe', outcome: { healthy: false, reason: 'timeout' } },
  { kind: 'time' },
];

function describeStep(step: Step): string {
  if (step.kind === 'time') return 'time';
  if (step.kind === 'probe') return step.outcome.healthy ? 'probe ok' : 'probe failed';
  const event = step.event;
  return 'reason' in event ? `${event.type}(${event.reason})` : 'relay' in event ? `${event.type}(${event.relay})` : event.type;
}

/**
 * Runs the same steps on the registry and on a live actor, and checks after each that both route the same way, are in
 * the same state with the same context, started the same probes, and reported the same link changes.
 */
/** Events the registries of the replays computed without an actor, by event type: the shortcut the walks check. */
const withoutActor = new Map<string, number>();

async function replay(steps: readonly Step[], options: { bidirectional: boolean; minRestInMs?: number; link?: LinkPolicy }): Promise<Set<string>> {
  const ref = reference(options.bidirectional, options.link ?? LINK);
  const { links, store, probes, changes } = await registry(options);
  links.resume('paris-1');
  const visited = new Set<string>();
  const compare = (where: string) => {
    const live = ref.actor.getSnapshot();
    visited.add(JSON.stringify(live.value));
    const reading = links.read('paris-1');
    expect(reading.state, where).toEqual(live.value);
    expect([...reading.tags], where).toEqual([...live.tags].sort());
    expect(route(reading, REALTIME, policy), where).toEqual(route(live, REALTIME, policy));
    const persisted = store.get('paris-1')!.snapshot as { value: StateValue; context: unknown };
    expect(persisted.value, where).toEqual(live.value);
    expect(persisted.context, where).toEqual(live.context);
    expect(probes.calls, where).toEqual(ref.probes.calls);
    expect(changes, where).toEqual(ref.changes);
    // A link with nothing to run holds no actor, whatever it went through.
    if (Object.keys(live.children).length === 0 && !nextTimerWithin(ref.actor, options.minRestInMs ?? 30_000)) expect(links.liveCount, where).toBe(0);
  };
  compare('at start');
  const done: string[] = [];
  for (const step of steps) {
    done.push(describeStep(step));
    if (step.kind === 'event') {
      const before = links.eventsWithoutActor;
      links.send('paris-1', step.event);
      ref.actor.send({ ...step.event, at: Date.now() });
      if (links.eventsWithoutActor > before) withoutActor.set(describeStep(step), (withoutActor.get(describeStep(step)) ?? 0) + 1);
    } else if (step.kind === 'probe') {
      probes.settleAll(step.outcome);
      ref.probes.settleAll(step.outcome);
    } else {
      await vi.advanceTimersByTimeAsync(Math.max(0, nextDeadline(ref.actor) - Date.now()));
    }
    // Whatever is due now (a timer a wake re-armed with nothing left to wait) and the promises it settles.
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(0);
    compare(done.join(' → '));
  }
  return visited;
}

/** The reference chart's next timer, from the deadlines it keeps in its context (a second from now when it has none). */
function nextDeadline(actor: AnyActorRef): number {
  const snapshot = actor.getSnapshot() as SnapshotFrom<typeof storeLinkMachine>;
  const { cooldownEndsAtInMs, nextProbeAtInMs } = snapshot.context;
  // The healthy state waits for its probe; the tripped state for its cool-down and its probe; the others have no timer.
  const deadlines = snapshot.matches({ healthy: 'waiting' })
    ? [nextProbeAtInMs]
    : snapshot.matches('tripped')
      ? [cooldownEndsAtInMs, snapshot.matches({ tripped: { probe: 'waiting' } }) ? nextProbeAtInMs : null]
      : [];
  const due = deadlines.filter((deadline): deadline is number => deadline !== null);
  return due.length === 0 ? Date.now() + 1_000 : Math.min(...due);
}

/** Whether the reference chart has a timer due within `withinInMs`. */
function nextTimerWithin(actor: AnyActorRef, withinInMs: number): boolean {
  const snapshot = actor.getSnapshot() as SnapshotFrom<typeof storeLinkMachine>;
  if (!snapshot.matches({ healthy: 'waiting' }) && !snapshot.matches('tripped')) return false;
  return nextDeadline(actor) - Date.now() < withinInMs;
}

/** A fixed-seed walk over the steps, so every run replays the same sequences. */
function walks(count: number, length: number, seed: number): Step[][] {
  let state = seed;
  const next = () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    // The high bits: a power-of-two modulus makes the low ones cycle.
    return state >>> 16;
  };
  return Array.from({ length: count }, () => Array.from({ length }, () => STEPS[next() % STEPS.length]!));
}

describe('link registry: a resting link routes and changes as a live actor would', () => {
  // The chart's shortest paths to each of its states and transitions (xstate/graph), its cool-down timer as time.
  const graphPaths = [true, false].flatMap((bidirectional) => {
    const serializeState = (snapshot: SnapshotFrom<typeof storeLinkMachine>) =>
      JSON.stringify([snapshot.value, snapshot.context.consecutiveFailures, Math.min(snapshot.context.trips, 2)]);
    const events = [...SAMPLE_LINK_EVENTS.filter((event) => event.type !== 'link.resumed'), { type: COOLDOWN_EVENT }] as LinkEvent[];
    const probed = storeLinkMachine.provide({ actors: { probeRelay: fromPromise<ProbeResult, { storeId: string }>(() => new Promise(() => undefined)) } });
    return getShortestPaths(probed, { input: { storeId: 'paris-1', policy: LINK, bidirectional, at: 0 }, events, serializeState }).map((found) => ({
      bidirectional,
      steps: found.steps
        .map((step) => step.event as LinkEvent | { type: string })
        .filter((event) => event.type !== 'xstate.init')
        .map((event): Step => {
          if (event.type === COOLDOWN_EVENT) return { kind: 'time' };
          const { at: _at, ...routerEvent } = event as LinkEvent;
          return { kind: 'event', event: routerEvent };
        }),
    }));
  });

  it.each(graphPaths.map((found) => ({ ...found, name: `${found.bidirectional ? 'bi-directional' : 'async-only'}: ${found.steps.map(describeStep).join(' → ') || 'start'}` })))(
    'graph path $name',
    async ({ bidirectional, steps }) => {
      await replay(steps, { bidirectional });
    },
  );

  it('replays seeded walks with probes and timers, resting whenever possible or only before a distant timer, and visits every state', async () => {
    const visited = new Set<string>();
    for (const [index, steps] of walks(24, 24, 7).entries()) {
      for (const [minRestInMs, link] of [[0, LINK], [30_000, LINK], [30_000, SLOW_LINK]] as const) {
        for (const state of await replay(steps, { bidirectional: index % 8 !== 0, minRestInMs, link })) visited.add(state);
        for (const close of closeables.splice(0).reverse()) await close();
      }
    }
    // Every state a link can rest or run in (the chart's atomic states but the transient `starting`).
    const atomic = allChartStates(chartModelOf(storeLinkMachine).states).filter((state) => state.states.length === 0 && !state.transitions.some((t) => t.kind === 'always'));
    const reached = new Set([...visited].flatMap((value) => leafPaths(JSON.parse(value) as StateValue)));
    for (const state of atomic) expect(reached, state.id).toContain(state.id);
    // The walks went through the shortcut for the events a resting link answers without an actor, and compared it
    // with the live actor after each: a success or a failure below the threshold on a healthy link, a failure while
    // tripped, an announcement that changes nothing.
    for (const step of ['relay.succeeded', 'relay.failed(timeout)', 'store.announced(up)']) expect(withoutActor.get(step) ?? 0, step).toBeGreaterThan(5);
  });
});

function leafPaths(value: StateValue, prefix = ''): string[] {
  if (typeof value === 'string') return [`${prefix}${value}`];
  return Object.entries(value).flatMap(([key, inner]) => leafPaths(inner as StateValue, `${prefix}${key}.`));
}

describe('link registry: actors only while the chart runs something', () => {
  it('holds no live actor for healthy links after start, routing and reads', async () => {
    const { links } = await registry();
    const storeIds = Array.from({ length: 200 }, (_, index) => `store-${index}`);
    for (const storeId of storeIds) links.resume(storeId);
    for (const storeId of storeIds) expect(route(links.read(storeId), REALTIME, policy).action).toBe('relay');
    expect(links.liveStoreIds()).toEqual([]);
    // Their health probes are still due: each rests until its chart's timer.
    expect(links.restingWithTimerCount).toBe(200);
  });

  it('starts an actor for an event and stops it once the chart is back at rest; a probe in flight keeps it', async () => {
    const { links, probes } = await registry();
    links.resume('paris-1');
    links.send('paris-1', { type: 'relay.failed', reason: 'timeout' });
    expect(links.liveCount).toBe(0);
    // The healthy probe comes due after a minute: the link wakes, its chart probes, and it rests again afterwards.
    await vi.advanceTimersByTimeAsync(LINK.healthyProbeIntervalInMs);
    expect(probes.pending).toHaveLength(1);
    expect(links.liveCount).toBe(1);
    probes.settleAll({ healthy: true });
    await vi.advanceTimersByTimeAsync(0);
    expect(links.liveCount).toBe(0);
    expect(topStateOf(links.read('paris-1').state)).toBe('healthy');
  });

  it('keeps a tripped link live while its timers are near, and lets it rest with minRestInMs 0', async () => {
    for (const [minRestInMs, live] of [[30_000, 1], [0, 0]] as const) {
      const { links } = await registry({ minRestInMs });
      links.resume('paris-1');
      for (let failure = 0; failure < LINK.failureThreshold; failure += 1) links.send('paris-1', { type: 'relay.failed', reason: 'timeout' });
      expect(topStateOf(links.read('paris-1').state)).toBe('tripped');
      expect(links.liveCount).toBe(live);
      await vi.advanceTimersByTimeAsync(LINK.openCooldownInMs);
      expect(topStateOf(links.read('paris-1').state)).toBe('probing');
      links.stopAll();
    }
  });
});

describe('link registry: an event on a resting link, without an actor', () => {
  async function fileRegistry() {
    const directory = await mkdtemp(path.join(tmpdir(), 'storelink-links-'));
    directories.push(directory);
    return registry({ store: await openLinkStore(directory, 60_000) });
  }

  it('a success on a healthy link starts no actor and writes no snapshot', async () => {
    const { links, store } = await fileRegistry();
    links.resume('paris-1');
    await store.flush();
    const writes = store.writeCount;
    const started = links.actorsStarted;
    const persisted = JSON.stringify(store.get('paris-1'));
    for (let call = 0; call < 50; call += 1) links.send('paris-1', { type: 'relay.succeeded' });
    await store.flush();
    expect(links.actorsStarted).toBe(started);
    expect(links.eventsWithoutActor).toBe(50);
    expect(store.writeCount).toBe(writes);
    expect(JSON.stringify(store.get('paris-1'))).toBe(persisted);
    expect(links.liveCount).toBe(0);
    // A failure below the threshold changes the count the chart's guard reads after a restart: written, still no actor.
    links.send('paris-1', { type: 'relay.failed', reason: 'timeout' });
    await store.flush();
    expect(links.actorsStarted).toBe(started);
    expect(store.writeCount).toBe(writes + 1);
    expect((store.get('paris-1')!.snapshot as { context: { consecutiveFailures: number } }).context.consecutiveFailures).toBe(1);
    // The success that resets it is written too; the next one is not.
    links.send('paris-1', { type: 'relay.succeeded' });
    links.send('paris-1', { type: 'relay.succeeded' });
    await store.flush();
    expect(store.writeCount).toBe(writes + 2);
    expect((store.get('paris-1')!.snapshot as { context: { consecutiveFailures: number } }).context.consecutiveFailures).toBe(0);
  });

  it('a wake that re-arms the same deadlines writes nothing; a trip is written and starts the actor its timers need', async () => {
    const { links, store } = await fileRegistry();
    links.resume('paris-1');
    await store.flush();
    const writes = store.writeCount;
    // Evicted and woken again by an event the shortcut cannot take (a trip enters the timed cool-down).
    for (let failure = 0; failure < LINK.failureThreshold; failure += 1) links.send('paris-1', { type: 'relay.failed', reason: 'timeout' });
    expect(topStateOf(links.read('paris-1').state)).toBe('tripped');
    expect(links.liveCount).toBe(1);
    await store.flush();
    expect(store.writeCount).toBe(writes + 1);
    // Resting it and bringing it back (link.resumed re-arms the same deadlines) is no change for a restart.
    expect(links.evictIdle(0, () => false)).toBe(1);
    links.resume('paris-1');
    expect(links.liveCount).toBe(1);
    await store.flush();
    expect(store.writeCount).toBe(writes + 1);
  });

  it('takes the actor path for a chart whose step has an action to run, and the shortcut for one that only counts', async () => {
    // relay.succeeded counts in context (pure: no actor); relay.failed raises an event (an action: the actor path).
    const counting = setup({ types: { context: {} as { successes: number; failures: number }, events: {} as LinkEvent | { type: 'relay.counted' } } }).createMachine({
      id: 'counting',
      context: { successes: 0, failures: 0 },
      initial: 'up',
      states: {
        up: {
          tags: ['relay'],
          on: {
            'relay.succeeded': { actions: assign({ successes: ({ context }) => context.successes + 1 }) },
            'relay.failed': { actions: raise({ type: 'relay.counted' }) },
            'relay.counted': { actions: assign({ failures: ({ context }) => context.failures + 1 }) },
          },
        },
      },
    });
    const { links, store } = await registry({ chart: counting });
    links.resume('paris-1');
    const started = links.actorsStarted;
    for (let call = 0; call < 3; call += 1) links.send('paris-1', { type: 'relay.succeeded' });
    expect(links.actorsStarted).toBe(started);
    links.send('paris-1', { type: 'relay.failed', reason: 'timeout' });
    expect(links.actorsStarted).toBe(started + 1);
    expect(links.liveCount).toBe(0);
    expect((store.get('paris-1')!.snapshot as { context: unknown }).context).toEqual({ successes: 3, failures: 1 });
  });
});

describe('link registry: restart, restore and eviction', () => {
  async function fileStore(): Promise<{ open: () => Promise<LinkStore> }> {
    const directory = await mkdtemp(path.join(tmpdir(), 'storelink-links-'));
    directories.push(directory);
    return { open: () => openLinkStore(directory, 60_000) };
  }

  it('restores resting and tripped links after a restart, and runs their timers at the deadlines they kept', async () => {
    const files = await fileStore();
    const first = await registry({ store: await files.open() });
    const started = Date.now();
    first.links.resume('healthy-1');
    first.links.resume('tripped-1');
    for (let failure = 0; failure < LINK.failureThreshold; failure += 1) first.links.send('tripped-1', { type: 'relay.failed', reason: 'timeout' });
    await vi.advanceTimersByTimeAsync(2_000);
    first.links.stopAll();
    await first.store.flush();

    const second = await registry({ store: await files.open() });
    // Read from the file, no actor started.
    expect(topStateOf(second.links.read('tripped-1').state)).toBe('tripped');
    expect(topStateOf(second.links.read('healthy-1').state)).toBe('healthy');
    expect(second.links.liveCount).toBe(0);
    second.links.resume('healthy-1');
    second.links.resume('tripped-1');
    expect(second.links.liveCount).toBe(1);
    await vi.advanceTimersByTimeAsync(started + LINK.openCooldownInMs - Date.now() - 1);
    expect(topStateOf(second.links.read('tripped-1').state)).toBe('tripped');
    await vi.advanceTimersByTimeAsync(1);
    expect(topStateOf(second.links.read('tripped-1').state)).toBe('probing');
    // The healthy link's probe comes at the deadline its first run set, not a minute after the restart.
    await vi.advanceTimersByTimeAsync(started + LINK.healthyProbeIntervalInMs - Date.now() - 1);
    expect(second.probes.calls.filter((at) => at >= started + LINK.healthyProbeIntervalInMs)).toHaveLength(0);
    const probesBefore = second.probes.calls.length;
    await vi.advanceTimersByTimeAsync(1);
    expect(second.probes.calls.length).toBe(probesBefore + 1);
    expect(second.probes.calls.at(-1)).toBe(started + LINK.healthyProbeIntervalInMs);
  });

  it('evicts an idle live link to rest, keeping its timers, except those kept and those with a probe in flight', async () => {
    const { links, probes } = await registry();
    for (const storeId of ['a', 'b', 'c']) {
      links.resume(storeId);
      for (let failure = 0; failure < LINK.failureThreshold; failure += 1) links.send(storeId, { type: 'relay.failed', reason: 'timeout' });
    }
    expect(links.liveCount).toBe(3);
    expect(links.evictIdle(60_000, () => false)).toBe(0);
    expect(links.evictIdle(0, (storeId) => storeId === 'b')).toBe(2);
    expect(links.liveStoreIds()).toEqual(['b']);
    // The evicted links still leave the cool-down on time, and probe.
    await vi.advanceTimersByTimeAsync(LINK.openCooldownInMs);
    for (const storeId of ['a', 'b', 'c']) expect(topStateOf(links.read(storeId).state)).toBe('probing');
    expect(probes.pending).toHaveLength(3);
    expect(links.evictIdle(0, () => false)).toBe(0);
    expect(links.liveCount).toBe(3);
    probes.settleAll({ healthy: true });
    await vi.advanceTimersByTimeAsync(0);
    expect(links.liveCount).toBe(0);
  });

  it('keeps a live actor for a chart that re-arms a due timer afresh on link.resumed, and warns once', async () => {
    // Not how a chart should keep time: a fixed delay, no deadline in context.
    const forgetful = setup({ types: { events: {} as LinkEvent } }).createMachine({
      id: 'forgetful',
      initial: 'waiting',
      on: { 'link.resumed': '.waiting' },
      states: { waiting: { tags: ['relay'], after: { 40_000: 'done' } }, done: {} },
    });
    const warnings: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (_fields: unknown, message?: string) => void warnings.push(String(message)), child: () => logger };
    const { links } = await registry({ chart: forgetful, logger });
    links.resume('paris-1');
    expect(links.liveCount).toBe(0);
    await vi.advanceTimersByTimeAsync(40_000);
    expect(links.liveCount).toBe(1);
    expect(warnings).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(40_000);
    expect(links.read('paris-1').state).toBe('done');
  });
});
