/**
 * The link registry: each store's link as the routing chart's snapshot, with a live xstate actor only while the chart
 * has something to run. A link rests — its snapshot kept compactly, no actor — whenever its chart has no invoked actor
 * (no probe in flight) and no timer due within `minRestInMs`. The router reads a link's state and tags from a table of
 * readings shared by every link in the same state, so a routing decision is a map look-up, live actor or not.
 *
 * An actor is started from the link's snapshot when an event must be processed: the router's (a relay call's result, a
 * store's announcement), or a timer the chart had armed coming due. The chart owns its time: its deadlines are in its
 * context, computed from the `at` every event carries, so bringing a link back to life is sending it `link.resumed`,
 * which re-arms its timers from them (see src/core/linkContract.ts). What the registry keeps for a resting link with a
 * timer is only when to send it: the instant the chart's own delay named, read through the actor's clock, for all links
 * in one schedule (wakeSchedule.ts). A link that rested with no timer is restored without `link.resumed`, so its next
 * event meets exactly the snapshot it left. Nothing here names a state of the chart.
 *
 * An event on a resting link is first computed without an actor, by the chart's own pure transition (xstate's
 * `machine.transition` with an inert actor scope made once): when the chart's answer is the same state with no action
 * to run (no timer armed or cancelled, no actor invoked, nothing sent), which is what a relay success on a healthy link
 * is, the registry keeps the new context and is done. Anything else is thrown away and the event goes to a live actor
 * as before, so the shortcut never has to know what the chart does, only that xstate found nothing for an actor to do.
 *
 * Every change a restart needs is persisted (linkStore.ts): the state value and the whole context, since the registry
 * does not know which of the chart's fields its guards or timers read (the default chart's failure count, trips and
 * deadlines all are). A snapshot equal to the one last persisted (a success on a healthy link, a wake that re-armed the
 * same deadlines) writes nothing. A persisted link is restored on next use, or at start by `resume()`. Reading a link
 * never starts an actor.
 */
import { createHash } from 'node:crypto';
import { createActor, fromPromise, getInitialSnapshot, type Actor, type AnyActorScope, type AnyMachineSnapshot, type AnyStateMachine, type StateValue } from 'xstate';
import { PROBE_ACTOR, type LinkEvent, type LinkInput, type ProbeInput, type ProbeResult } from '../core/linkContract.js';
import type { Logger } from '../core/logger.js';
import type { LinkPolicy } from '../core/policy.js';
import type { ChartIdentity, LinkStore, PersistedLink } from './linkStore.js';
import { WakeSchedule } from './wakeSchedule.js';

export interface LinkChange {
  storeId: string;
  /** The chart's state value (a state name, or an object for a compound state). */
  state: StateValue;
  tags: string[];
  previousState: StateValue | undefined;
}

/** A link as the router reads it: no actor needed. Shared by every link in the same state; frozen. */
export interface LinkReading {
  readonly state: StateValue;
  readonly tags: readonly string[];
  hasTag(tag: string): boolean;
}

/** Events the router sends; the registry dates them. */
export type RouterLinkEvent = LinkEvent extends infer Event ? (Event extends LinkEvent ? Omit<Event, 'at'> : never) : never;

/**
 * How late a woken link's chart may re-arm the timer it was woken for: one that owns its time re-arms it with nothing
 * left to wait (its deadline has come); a second of slack covers the wall clock and the timer clock drifting apart.
 */
const DUE_TOLERANCE_IN_MS = 1_000;

/** A link's actor rests when the chart's next timer is at least this far off: default 30 seconds. */
export const DEFAULT_MIN_REST_IN_MS = 30_000;

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
  /**
   * A link whose chart has no probe in flight rests without an actor when its next timer is at least this far off
   * (a link that will wake within moments is cheaper kept); default `DEFAULT_MIN_REST_IN_MS`. 0: whenever it can.
   */
  minRestInMs?: number;
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

/** A state of the chart as the router and the change reports see it, made once per state value. */
interface Reading extends LinkReading {
  /** The top-level state and the tags: probe sub-steps of one state are not link changes. */
  readonly reportKey: string;
}

/** What a resting snapshot holds besides its context, shared by every resting link in the same state. */
interface Shape {
  /** xstate's persisted snapshot without `context`. */
  readonly base: Readonly<Record<string, unknown>>;
  readonly reading: Reading;
}

/** A timer an actor asked its clock for; `node` once it runs on Node's timers. */
interface ChartTimer {
  fire: () => void;
  delayInMs: number;
  node: NodeJS.Timeout | undefined;
}

function armTimer(timers: Map<ChartTimer, number>, timer: ChartTimer): void {
  timer.node = setTimeout(() => {
    timers.delete(timer);
    timer.fire();
  }, timer.delayInMs);
}

interface LiveLink {
  actor: Actor<AnyStateMachine>;
  /** The timers the chart has armed: when each is due, on the timer clock. */
  timers: Map<ChartTimer, number>;
  lastUsedAtInMs: number;
  restQueued: boolean;
  unsubscribe: () => void;
}

/** Deep equality of two JSON values (contexts): shared parts are compared by reference first. */
function sameJson(left: unknown, right: unknown): boolean {
  if (left === right) return true;
  if (typeof left !== 'object' || typeof right !== 'object' || left === null || right === null) return false;
  if (Array.isArray(left) !== Array.isArray(right)) return false;
  const leftKeys = Object.keys(left);
  if (leftKeys.length !== Object.keys(right).length) return false;
  for (const key of leftKeys) {
    if (!Object.hasOwn(right, key) || !sameJson((left as Record<string, unknown>)[key], (right as Record<string, unknown>)[key])) return false;
  }
  return true;
}

function deepFreeze<Value>(value: Value): Value {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** One store's link. It is also what the link store keeps for it: `toJSON()` is the persisted form. */
class LinkRecord implements PersistedLink {
  readonly storeId: string;
  readonly chart: ChartIdentity;
  enteredAtInMs: number;
  reading: Reading;
  /** What was last reported as a change (undefined: nothing yet, for a link never seen by this chart). */
  reported: Reading | undefined;
  /** Resting: the shape and context of the snapshot. */
  shape: Shape | undefined;
  context: unknown;
  /** A persisted snapshot that could not rest in compact form (it names invoked actors), or not yet resolved. */
  raw: unknown;
  live: LiveLink | undefined;
  /** Whether restoring must send `link.resumed`: the snapshot had timers armed, or came from an earlier run. */
  timed: boolean;
  wakeAt = Number.NaN;
  trialInFlight = false;
  /** The chart did not re-arm a due timer on `link.resumed`: it keeps time some other way, so its actor stays. */
  pinned = false;
  /** What the link store last took for this link: a snapshot with the same reading and context writes nothing. */
  savedReading: Reading | undefined;
  savedContext: unknown;

  constructor(storeId: string, chart: ChartIdentity, reading: Reading, reported: Reading | undefined, enteredAtInMs: number, timed: boolean) {
    this.storeId = storeId;
    this.chart = chart;
    this.reading = reading;
    this.reported = reported;
    this.enteredAtInMs = enteredAtInMs;
    this.timed = timed;
  }

  get snapshot(): unknown {
    if (this.live !== undefined) return this.live.actor.getPersistedSnapshot();
    if (this.shape !== undefined) return { ...this.shape.base, context: this.context };
    return this.raw;
  }

  toJSON(): PersistedLink {
    return { snapshot: this.snapshot, chart: this.chart, enteredAtInMs: this.enteredAtInMs };
  }
}

export class StoreLinks {
  readonly #options: StoreLinksOptions;
  readonly #chart: AnyStateMachine;
  readonly #identity: ChartIdentity;
  readonly #records = new Map<string, LinkRecord>();
  readonly #live = new Map<string, LinkRecord>();
  readonly #now: () => number;
  readonly #minRestInMs: number;
  readonly #wakes: WakeSchedule<LinkRecord>;
  /** Readings by state value (JSON), and resting shapes by state and history (JSON): one per state of the chart. */
  readonly #readings = new Map<string, Reading>();
  readonly #shapes = new Map<string, Shape>();
  /** Initial readings by bi-directional flag: the same for every store that never had a state. */
  readonly #initialReadings = new Map<boolean, Reading>();
  #warnedPinned = false;
  #stopped = false;
  /** The inert actor scope of the shortcut's pure transitions, and the actions xstate hands it to run. */
  #pure: { scope: AnyActorScope; actions: unknown[] } | undefined;
  #actorsStarted = 0;
  #eventsWithoutActor = 0;
  /**
   * Links in a step (a wake, an event, a due timer) that tries to rest them when done: a change seen meanwhile queues
   * no check of its own, and their charts' new timers wait to see whether the link stays live.
   */
  readonly #stepping = new Set<LinkRecord>();

  constructor(options: StoreLinksOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#minRestInMs = options.minRestInMs ?? DEFAULT_MIN_REST_IN_MS;
    if (!(this.#minRestInMs >= 0)) throw new RangeError('StoreLinks: minRestInMs must be a number of ms, at least 0');
    this.#identity = chartIdentityOf(options.chart);
    const probe = options.probe;
    this.#chart = options.chart.provide({
      actors: { [PROBE_ACTOR]: fromPromise<ProbeResult, ProbeInput>(({ input }) => probe(input.storeId)) },
    });
    this.#wakes = new WakeSchedule((record) => this.#due(record));
  }

  #input(storeId: string): LinkInput {
    return { storeId, policy: this.#options.linkPolicy, bidirectional: this.#options.isBidirectional(storeId), at: this.#now() };
  }

  #wroteIt(persisted: PersistedLink): boolean {
    return persisted.chart?.id === this.#identity.id && persisted.chart.hash === this.#identity.hash;
  }

  #readingOf(snapshot: AnyMachineSnapshot): Reading {
    const key = JSON.stringify(snapshot.value);
    let reading = this.#readings.get(key);
    if (reading === undefined) {
      const state = deepFreeze(structuredClone(snapshot.value as StateValue));
      const tags = Object.freeze([...snapshot.tags].sort());
      const tagSet = new Set(tags);
      reading = Object.freeze({ state, tags, hasTag: (tag: string) => tagSet.has(tag), reportKey: `${topStateOf(state)}|${tags.join(',')}` });
      this.#readings.set(key, reading);
    }
    return reading;
  }

  /** The resting form of a persisted snapshot with no invoked actors: its shape (shared) and its context. */
  #shapeOf(persisted: Record<string, unknown>, reading: () => Reading): Shape | undefined {
    const children = persisted['children'];
    if (persisted['status'] !== 'active' || (typeof children === 'object' && children !== null && Object.keys(children).length > 0)) return undefined;
    const { context: _context, ...base } = persisted;
    const key = JSON.stringify([base['value'], base['historyValue']]);
    let shape = this.#shapes.get(key);
    if (shape === undefined) {
      shape = Object.freeze({ base: deepFreeze(structuredClone(base)), reading: reading() });
      this.#shapes.set(key, shape);
    }
    return shape;
  }

  /** The link's record: kept, restored from its persisted snapshot, or (with `create`) made for a store never seen. */
  #record(storeId: string, create: boolean, dropForeign: boolean): LinkRecord | undefined {
    const existing = this.#records.get(storeId);
    if (existing !== undefined) return existing;
    const persisted = this.#options.store.get(storeId);
    if (persisted !== undefined && this.#wroteIt(persisted)) {
      const snapshot = persisted.snapshot as Record<string, unknown>;
      const reading = this.#readingOf(this.#chart.resolveState(snapshot as never));
      const record = new LinkRecord(storeId, this.#identity, reading, reading, persisted.enteredAtInMs, true);
      record.savedReading = reading;
      record.savedContext = snapshot['context'];
      const shape = this.#shapeOf(snapshot, () => reading);
      if (shape === undefined) record.raw = snapshot;
      else {
        record.shape = shape;
        record.context = snapshot['context'];
      }
      this.#records.set(storeId, record);
      // The record is now what the store keeps and writes; the parsed copy from the file can go.
      this.#options.store.set(storeId, record);
      return record;
    }
    if (persisted !== undefined && dropForeign) {
      this.#options.logger.warn(
        { storeId, writtenBy: persisted.chart ?? 'an unnamed chart', chart: this.#identity },
        'the link snapshot was written by another chart; the store starts fresh',
      );
      this.#options.store.delete(storeId);
    }
    if (!create) return undefined;
    const record = new LinkRecord(storeId, this.#identity, this.#initialReading(storeId), undefined, this.#now(), false);
    this.#records.set(storeId, record);
    return record;
  }

  #initialReading(storeId: string): Reading {
    const bidirectional = this.#options.isBidirectional(storeId);
    let initial = this.#initialReadings.get(bidirectional);
    if (initial === undefined) {
      // Resolving the initial state runs no actor: the chart's pure definition decides it.
      initial = this.#readingOf(getInitialSnapshot(this.#chart, this.#input(storeId)));
      this.#initialReadings.set(bidirectional, initial);
    }
    return initial;
  }

  /** Starts the record's actor from its snapshot (or from the chart's initial state, for a store never seen). */
  #wake(record: LinkRecord): LiveLink {
    if (record.live !== undefined) return record.live;
    const snapshot = record.shape !== undefined || record.raw !== undefined ? record.snapshot : undefined;
    const resume = snapshot !== undefined && record.timed;
    this.#wakes.cancel(record);
    const timers = new Map<ChartTimer, number>();
    const wakes = this.#wakes;
    // The actor's own timers, through a clock that notes when each is due: the registry learns the chart's delays
    // without reading its definition, and a timer still works as xstate's would. Inside a step, a timer is armed only
    // if the link stays live after it (`#armTimers`): a link that rests at once never touches Node's timers.
    const clock = {
      setTimeout: (fire: () => void, delayInMs: number): ChartTimer => {
        const timer: ChartTimer = { fire, delayInMs, node: undefined };
        timers.set(timer, wakes.now() + delayInMs);
        if (!this.#stepping.has(record)) armTimer(timers, timer);
        return timer;
      },
      clearTimeout: (timer: ChartTimer) => {
        timers.delete(timer);
        clearTimeout(timer.node);
      },
    };
    const actor = createActor(this.#chart, {
      input: this.#input(record.storeId),
      clock,
      ...(snapshot === undefined ? {} : { snapshot: snapshot as AnyMachineSnapshot }),
    });
    const live: LiveLink = { actor, timers, lastUsedAtInMs: this.#now(), restQueued: false, unsubscribe: () => undefined };
    this.#actorsStarted += 1;
    record.live = live;
    record.shape = undefined;
    record.context = undefined;
    record.raw = undefined;
    this.#live.set(record.storeId, record);
    const subscription = actor.subscribe({
      next: (next) => this.#changed(record, next),
      error: (error: unknown) => this.#options.logger.error({ err: error, storeId: record.storeId }, 'link chart failed'),
    });
    live.unsubscribe = () => subscription.unsubscribe();
    actor.start();
    // xstate does not persist `after` timers: the chart re-arms them from the deadlines in its context.
    if (resume) actor.send({ type: 'link.resumed', at: this.#now() });
    return live;
  }

  #changed(record: LinkRecord, snapshot: AnyMachineSnapshot): void {
    const reading = this.#readingOf(snapshot);
    record.reading = reading;
    if (reading.reportKey !== record.reported?.reportKey) {
      const previous = record.reported?.state;
      record.reported = reading;
      record.enteredAtInMs = this.#now();
      this.#options.onChange({ storeId: record.storeId, state: snapshot.value as StateValue, tags: [...reading.tags], previousState: previous });
    }
    this.#save(record, reading, snapshot.context);
    const live = record.live;
    // Inside a step of its own (a wake, an event, a due timer) the registry tries to rest the link right after.
    if (live !== undefined && !live.restQueued && !this.#stepping.has(record)) {
      // A probe's result or a timer changed the link on its own: it may rest once xstate has finished the step.
      live.restQueued = true;
      queueMicrotask(() => {
        live.restQueued = false;
        if (record.live === live) this.#settle(record);
      });
    }
  }

  /**
   * Hands the link to the link store when what a restart needs changed: its state or its context. A write of the
   * whole snapshot also carries `enteredAtInMs`, which changes only with the state.
   */
  #save(record: LinkRecord, reading: Reading, context: unknown): void {
    if (record.savedReading === reading && sameJson(record.savedContext, context)) return;
    record.savedReading = reading;
    record.savedContext = context;
    this.#options.store.set(record.storeId, record);
  }

  /**
   * The event on a resting link without an actor, when the chart allows it: xstate's pure transition from the resting
   * snapshot leaves the link in the same state, with no action for an actor to run (no timer armed or cancelled, no
   * actor invoked, nothing sent or raised) and no history to keep. Returns false (and changes nothing) otherwise.
   *
   * A link resting with a timer must be in the wake schedule (it rested in this run): one restored from an earlier run
   * has not re-armed its timers yet, and a pinned chart keeps its own time; both take the actor path.
   */
  #sendResting(record: LinkRecord, event: LinkEvent): boolean {
    const shape = record.shape;
    if (shape === undefined || record.pinned || (record.timed && Number.isNaN(record.wakeAt))) return false;
    const history = shape.base['historyValue'];
    if (typeof history === 'object' && history !== null && Object.keys(history).length > 0) return false;
    const pure = this.#pureScope();
    pure.actions.length = 0;
    let next: AnyMachineSnapshot;
    try {
      const current = this.#chart.resolveState({ value: shape.reading.state, context: record.context });
      next = this.#chart.transition(current, event, pure.scope as never) as AnyMachineSnapshot;
    } catch {
      // Whatever made the pure step fail, the actor path meets it the way it always did.
      return false;
    }
    if (pure.actions.length > 0 || next.status !== 'active' || Object.keys(next.children as object).length > 0) return false;
    // The same state: compared in place (a reading's key is the value's JSON, which costs more to make than this).
    if (Object.keys(next.historyValue as object).length > 0 || !sameJson(next.value, shape.reading.state)) return false;
    this.#eventsWithoutActor += 1;
    if (!sameJson(record.context, next.context)) record.context = next.context;
    this.#save(record, shape.reading, record.context);
    return true;
  }

  #pureScope(): { scope: AnyActorScope; actions: unknown[] } {
    if (this.#pure !== undefined) return this.#pure;
    // An actor that is never started, made once: `self` and `system` for the pure steps, as xstate's own
    // `transition()` makes per call (which is what costs it about as much as a live actor's step).
    const self = createActor(this.#chart, { input: this.#input('(pure transitions)') });
    const actions: unknown[] = [];
    const scope = {
      self,
      id: '',
      sessionId: '',
      logger: () => undefined,
      defer: () => undefined,
      system: self.system,
      stopChild: () => undefined,
      emit: () => undefined,
      actionExecutor: (action: unknown) => void actions.push(action),
    } as unknown as AnyActorScope;
    this.#pure = { scope, actions };
    return this.#pure;
  }

  /**
   * Stops the record's actor and keeps its snapshot compactly, if the chart has nothing to run: no invoked actor, and
   * no timer due within `minRestInMs` (`force`: whatever its timers). Returns whether it rested.
   */
  #rest(record: LinkRecord, force: boolean): boolean {
    const live = record.live;
    if (live === undefined) return true;
    if (record.pinned && !force) return false;
    const snapshot = live.actor.getSnapshot();
    if (snapshot.status !== 'active' || Object.keys(snapshot.children as object).length > 0) return false;
    const next = this.#nextTimer(live);
    if (!force && next - this.#wakes.now() < this.#minRestInMs) return false;
    const persisted = live.actor.getPersistedSnapshot() as Record<string, unknown>;
    const reading = record.reading;
    const shape = this.#shapeOf(persisted, () => reading);
    if (shape === undefined) return false;
    live.unsubscribe();
    live.actor.stop();
    record.live = undefined;
    this.#live.delete(record.storeId);
    record.shape = shape;
    record.context = persisted['context'];
    record.timed = next !== Number.POSITIVE_INFINITY;
    // A pinned chart keeps its own time: evicted, it waits for its next use, as it would after a restart.
    if (record.timed && !record.pinned) this.#wakes.wakeAt(record, next);
    return true;
  }

  /** A resting link's timer came due: its actor runs the chart's step, then rests again when it can. */
  #due(record: LinkRecord): void {
    if (this.#stopped || record.live !== undefined) return;
    const before = record.reading;
    const live = this.#step(record, () => this.#wake(record));
    if (record.live === live && record.reading === before && this.#nextTimer(live) - this.#wakes.now() > DUE_TOLERANCE_IN_MS) {
      // A chart that owns its time re-arms a due timer with nothing left to wait; this one armed it afresh, so it
      // keeps time some other way: its actor stays while it is timed.
      record.pinned = true;
      if (!this.#warnedPinned) {
        this.#warnedPinned = true;
        this.#options.logger.warn(
          { chart: this.#identity, storeId: record.storeId },
          'the link chart did not re-arm a due timer from its context on link.resumed: its links keep a live actor while timed',
        );
      }
      this.#armTimers(record);
      return;
    }
    this.#settle(record);
  }

  #nextTimer(live: LiveLink): number {
    let next = Number.POSITIVE_INFINITY;
    for (const due of live.timers.values()) next = Math.min(next, due);
    return next;
  }

  /** Whether a snapshot of this store's link was persisted (by this dispatcher or an earlier run). */
  hasPersisted(storeId: string): boolean {
    return this.#records.has(storeId) || this.#options.store.get(storeId) !== undefined;
  }

  /**
   * Brings a link to life (a persisted one, or a new one from the chart's initial state), so its chart's timers run
   * again; it then rests until its next timer if it can.
   */
  resume(storeId: string): void {
    const record = this.#record(storeId, true, true)!;
    if (record.live !== undefined) return;
    this.#step(record, () => this.#wake(record));
    this.#settle(record);
  }

  #step<Result>(record: LinkRecord, work: () => Result): Result {
    // Steps of one link do not nest: a link's events are sent one at a time, and a step never sends to its own link.
    this.#stepping.add(record);
    try {
      return work();
    } finally {
      this.#stepping.delete(record);
    }
  }

  /**
   * After a step of the link, or a change it made on its own: timers its chart re-armed with nothing left to wait (a
   * deadline that came while the link rested) fire now, as xstate's own would have at that instant; then the link
   * rests if it can, or its other timers start running.
   */
  #settle(record: LinkRecord): void {
    for (;;) {
      const live = record.live;
      if (live === undefined || this.#stepping.has(record)) return;
      let first: ChartTimer | undefined;
      let firstDue = Number.POSITIVE_INFINITY;
      for (const [timer, due] of live.timers) {
        if (timer.node === undefined && due < firstDue) {
          first = timer;
          firstDue = due;
        }
      }
      if (first === undefined || firstDue > this.#wakes.now()) break;
      live.timers.delete(first);
      first.fire();
    }
    if (!this.#rest(record, false)) this.#armTimers(record);
  }

  /** The timers a live link's chart asked for during its step start running. */
  #armTimers(record: LinkRecord): void {
    const live = record.live;
    if (live === undefined || this.#stepping.has(record)) return;
    for (const [timer, due] of live.timers) {
      if (timer.node === undefined) {
        // Late by the step's own duration at most: xstate would have started it a moment earlier.
        timer.delayInMs = Math.max(0, due - this.#wakes.now());
        armTimer(live.timers, timer);
      }
    }
  }

  /** When the link entered its current state (wall clock). */
  enteredAt(storeId: string): number {
    return this.#records.get(storeId)?.enteredAtInMs ?? this.#options.store.get(storeId)?.enteredAtInMs ?? Number.NEGATIVE_INFINITY;
  }

  /** The link's state and tags without starting an actor: the live, resting, persisted or initial snapshot's. */
  read(storeId: string): LinkReading {
    return this.#record(storeId, false, false)?.reading ?? this.#initialReading(storeId);
  }

  send(storeId: string, event: RouterLinkEvent): void {
    if (this.#stopped) return;
    const record = this.#record(storeId, true, true)!;
    if (record.live === undefined && this.#sendResting(record, { ...event, at: this.#now() })) return;
    const live = this.#step(record, () => {
      const woken = this.#wake(record);
      woken.lastUsedAtInMs = this.#now();
      woken.actor.send({ ...event, at: this.#now() });
      return woken;
    });
    if (record.live === live) this.#settle(record);
  }

  /** Claims the link's single trial call; false when another caller holds it. */
  claimTrial(storeId: string): boolean {
    const record = this.#record(storeId, true, true)!;
    if (record.trialInFlight) return false;
    record.trialInFlight = true;
    return true;
  }

  releaseTrial(storeId: string): void {
    const record = this.#records.get(storeId);
    if (record !== undefined) record.trialInFlight = false;
  }

  isTrialInFlight(storeId: string): boolean {
    return this.#records.get(storeId)?.trialInFlight ?? false;
  }

  /** Links with a live actor now: a probe in flight, a timer due soon, or a chart that keeps its own time. */
  get liveCount(): number {
    return this.#live.size;
  }

  /** Resting links waiting for a timer of their chart. */
  get restingWithTimerCount(): number {
    return this.#wakes.size;
  }

  /** Actors started from a snapshot (or the initial state) so far: what an event on a resting link used to cost. */
  get actorsStarted(): number {
    return this.#actorsStarted;
  }

  /** Events on resting links computed without an actor so far. */
  get eventsWithoutActor(): number {
    return this.#eventsWithoutActor;
  }

  liveStoreIds(): string[] {
    return [...this.#live.keys()];
  }

  /**
   * Rests links unused for `idleForInMs` whatever their timers (they wake for them), except those `keep` says to keep
   * and those with a probe in flight, which rest once it ends.
   */
  evictIdle(idleForInMs: number, keep: (storeId: string, snapshot: AnyMachineSnapshot) => boolean): number {
    let evicted = 0;
    const now = this.#now();
    for (const [storeId, record] of [...this.#live]) {
      const live = record.live!;
      if (now - live.lastUsedAtInMs < idleForInMs || keep(storeId, live.actor.getSnapshot())) continue;
      if (this.#rest(record, true)) evicted += 1;
    }
    return evicted;
  }

  /** Stops every actor and the wake schedule; snapshots stay (persisted, and readable). */
  stopAll(): void {
    this.#stopped = true;
    this.#wakes.stop();
    for (const record of [...this.#live.values()]) {
      const live = record.live!;
      record.raw = live.actor.getPersistedSnapshot();
      record.timed = true;
      live.unsubscribe();
      live.actor.stop();
      record.live = undefined;
      this.#live.delete(record.storeId);
      this.#options.store.set(record.storeId, record);
    }
  }
}
