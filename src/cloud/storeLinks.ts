/**
 * The link registry: one link actor per store, started from the routing chart on first use, persisted on every
 * change, evicted when idle (its snapshot stays persisted), and restored on next use or after a restart. The chart
 * owns its time (deadlines in its context, from the `at` every event carries), so bringing a link back to life is
 * sending it `link.resumed`; nothing here keeps a timer for a chart. Reading a link that is not live resolves its
 * persisted (or initial) snapshot without starting an actor.
 */
import { createHash } from 'node:crypto';
import { createActor, fromPromise, getInitialSnapshot, type Actor, type AnyMachineSnapshot, type AnyStateMachine, type StateValue } from 'xstate';
import { PROBE_ACTOR, type LinkEvent, type LinkInput, type ProbeInput, type ProbeResult } from '../core/linkContract.js';
import type { Logger } from '../core/logger.js';
import type { LinkPolicy } from '../core/policy.js';
import type { ChartIdentity, LinkStore, PersistedLink } from './linkStore.js';

export interface LinkChange {
  storeId: string;
  /** The chart's state value (a state name, or an object for a compound state). */
  state: StateValue;
  tags: string[];
  previousState: StateValue | undefined;
}

/** A link as the router reads it: no actor needed. */
export interface LinkReading {
  state: StateValue;
  tags: string[];
  hasTag(tag: string): boolean;
}

/** Events the router sends; the registry dates them. */
export type RouterLinkEvent = LinkEvent extends infer Event ? (Event extends LinkEvent ? Omit<Event, 'at'> : never) : never;

interface LiveLink {
  actor: Actor<AnyStateMachine>;
  /** The top-level state and tags last reported, so probe sub-steps do not count as link changes. */
  reportedKey: string;
  reportedState: StateValue | undefined;
  enteredAtInMs: number;
  lastUsedAtInMs: number;
  trialInFlight: boolean;
}

export interface StoreLinksOptions {
  chart: AnyStateMachine;
  linkPolicy: LinkPolicy;
  store: LinkStore;
  isBidirectional: (storeId: string) => boolean;
  /** The health check the chart's `probeRelay` actor runs. */
  probe: (storeId: string) => Promise<ProbeResult>;
  onChange: (change: LinkChange) => void;
  logger: Logger;
  now?: () => number;
}

/** A chart's name and a hash of its structure: a snapshot is restored only under the chart that wrote it. */
export function chartIdentityOf(chart: AnyStateMachine): ChartIdentity {
  const structure = JSON.stringify(chart.definition);
  return { id: chart.id, hash: createHash('sha256').update(structure).digest('hex').slice(0, 16) };
}

/** A chart's top-level state (`{ "tripped": … }` is `tripped`): what dashboards, metrics and tests name a link by. */
export function topStateOf(value: StateValue): string {
  return typeof value === 'string' ? value : (Object.keys(value)[0] ?? '');
}

function reportKeyOf(snapshot: AnyMachineSnapshot): string {
  return `${topStateOf(snapshot.value as StateValue)}|${[...snapshot.tags].sort().join(',')}`;
}

function readingOf(snapshot: AnyMachineSnapshot): LinkReading {
  const tags = [...snapshot.tags].sort();
  return { state: snapshot.value as StateValue, tags, hasTag: (tag) => tags.includes(tag) };
}

export class StoreLinks {
  readonly #options: StoreLinksOptions;
  readonly #chart: AnyStateMachine;
  readonly #identity: ChartIdentity;
  readonly #live = new Map<string, LiveLink>();
  readonly #now: () => number;
  /** Initial readings by bi-directional flag: the same for every store that never had a state. */
  readonly #initialReadings = new Map<boolean, LinkReading>();

  constructor(options: StoreLinksOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#identity = chartIdentityOf(options.chart);
    const probe = options.probe;
    this.#chart = options.chart.provide({
      actors: { [PROBE_ACTOR]: fromPromise<ProbeResult, ProbeInput>(({ input }) => probe(input.storeId)) },
    });
  }

  #input(storeId: string): LinkInput {
    return { storeId, policy: this.#options.linkPolicy, bidirectional: this.#options.isBidirectional(storeId), at: this.#now() };
  }

  #wroteIt(persisted: PersistedLink): boolean {
    return persisted.chart?.id === this.#identity.id && persisted.chart.hash === this.#identity.hash;
  }

  /** The persisted snapshot of a store's link, if the current chart wrote it; another chart's is dropped with a warning. */
  #persisted(storeId: string): unknown {
    const persisted = this.#options.store.get(storeId);
    if (persisted === undefined) return undefined;
    if (this.#wroteIt(persisted)) return persisted.snapshot;
    this.#options.logger.warn(
      { storeId, writtenBy: persisted.chart ?? 'an unnamed chart', chart: this.#identity },
      'the link snapshot was written by another chart; the store starts fresh',
    );
    this.#options.store.delete(storeId);
    return undefined;
  }

  /** The live link, restored from its persisted snapshot or created. */
  #link(storeId: string): LiveLink {
    const existing = this.#live.get(storeId);
    if (existing !== undefined) {
      existing.lastUsedAtInMs = this.#now();
      return existing;
    }
    const snapshot = this.#persisted(storeId);
    const actor = createActor(this.#chart, {
      input: this.#input(storeId),
      ...(snapshot === undefined ? {} : { snapshot: snapshot as AnyMachineSnapshot }),
    });
    const restored = snapshot === undefined ? undefined : this.#chart.resolveState(snapshot as never);
    const live: LiveLink = {
      actor,
      reportedKey: restored === undefined ? '' : reportKeyOf(restored),
      reportedState: restored?.value as StateValue | undefined,
      enteredAtInMs: this.#options.store.get(storeId)?.enteredAtInMs ?? this.#now(),
      lastUsedAtInMs: this.#now(),
      trialInFlight: false,
    };
    this.#live.set(storeId, live);
    actor.subscribe({
      next: (next) => this.#changed(storeId, live, next),
      error: (error: unknown) => this.#options.logger.error({ err: error, storeId }, 'link chart failed'),
    });
    actor.start();
    // xstate does not persist `after` timers: the chart re-arms them from the deadlines in its context.
    if (snapshot !== undefined) actor.send({ type: 'link.resumed', at: this.#now() });
    return live;
  }

  #changed(storeId: string, live: LiveLink, snapshot: AnyMachineSnapshot): void {
    const key = reportKeyOf(snapshot);
    if (key !== live.reportedKey) {
      const previous = live.reportedState;
      live.reportedKey = key;
      live.reportedState = snapshot.value as StateValue;
      live.enteredAtInMs = this.#now();
      this.#options.onChange({ storeId, state: snapshot.value as StateValue, tags: [...snapshot.tags].sort(), previousState: previous });
    }
    this.#options.store.set(storeId, {
      snapshot: live.actor.getPersistedSnapshot(),
      chart: this.#identity,
      enteredAtInMs: live.enteredAtInMs,
    });
  }

  /** Whether a snapshot of this store's link was persisted (by this dispatcher or an earlier run). */
  hasPersisted(storeId: string): boolean {
    return this.#options.store.get(storeId) !== undefined;
  }

  /** Brings a persisted link back to life, so its chart's timers and probes run again. */
  resume(storeId: string): void {
    this.#link(storeId);
  }

  /** When the link entered its current state (wall clock). */
  enteredAt(storeId: string): number {
    return this.#live.get(storeId)?.enteredAtInMs ?? this.#options.store.get(storeId)?.enteredAtInMs ?? Number.NEGATIVE_INFINITY;
  }

  /** The live snapshot, starting the link if needed: for routing, which may then send it events. */
  snapshot(storeId: string): AnyMachineSnapshot {
    return this.#link(storeId).actor.getSnapshot();
  }

  /** The link's state and tags without starting an actor: the live one, the persisted one, or the initial one. */
  read(storeId: string): LinkReading {
    const live = this.#live.get(storeId);
    if (live !== undefined) return readingOf(live.actor.getSnapshot());
    const persisted = this.#options.store.get(storeId);
    if (persisted !== undefined && this.#wroteIt(persisted)) {
      return readingOf(this.#chart.resolveState(persisted.snapshot as never));
    }
    const bidirectional = this.#options.isBidirectional(storeId);
    let initial = this.#initialReadings.get(bidirectional);
    if (initial === undefined) {
      // Resolving the initial state runs no actor: the chart's pure definition decides it.
      initial = readingOf(getInitialSnapshot(this.#chart, this.#input(storeId)));
      this.#initialReadings.set(bidirectional, initial);
    }
    return initial;
  }

  send(storeId: string, event: RouterLinkEvent): void {
    this.#link(storeId).actor.send({ ...event, at: this.#now() });
  }

  /** Claims the link's single trial call; false when another caller holds it. */
  claimTrial(storeId: string): boolean {
    const live = this.#link(storeId);
    if (live.trialInFlight) return false;
    live.trialInFlight = true;
    return true;
  }

  releaseTrial(storeId: string): void {
    const live = this.#live.get(storeId);
    if (live !== undefined) live.trialInFlight = false;
  }

  isTrialInFlight(storeId: string): boolean {
    return this.#live.get(storeId)?.trialInFlight ?? false;
  }

  liveStoreIds(): string[] {
    return [...this.#live.keys()];
  }

  /** Stops links unused for `idleForInMs` (their snapshots stay persisted), except those `keep` says to keep. */
  evictIdle(idleForInMs: number, keep: (storeId: string, snapshot: AnyMachineSnapshot) => boolean): number {
    let evicted = 0;
    const now = this.#now();
    for (const [storeId, live] of this.#live) {
      if (now - live.lastUsedAtInMs < idleForInMs || live.trialInFlight || keep(storeId, live.actor.getSnapshot())) continue;
      this.#stop(storeId, live);
      evicted += 1;
    }
    return evicted;
  }

  #stop(storeId: string, live: LiveLink): void {
    live.actor.stop();
    this.#live.delete(storeId);
  }

  stopAll(): void {
    for (const [storeId, live] of [...this.#live]) this.#stop(storeId, live);
  }
}
