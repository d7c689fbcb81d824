/**
 * One link actor per store, started from the routing chart on first use, persisted on every change, evicted when
 * idle (its snapshot stays persisted), and restored on next use or after a restart. xstate does not persist `after`
 * timers, so the dispatcher remembers when each link entered its state and re-arms the chart's timers itself from the
 * time left, firing at once the ones that came due while the link was not live.
 */
import { createActor, type Actor, type AnyMachineSnapshot, type AnyStateMachine } from 'xstate';
import type { LinkEvent, LinkInput } from '../core/linkContract.js';
import type { Logger } from '../core/logger.js';
import type { LinkPolicy } from '../core/policy.js';
import type { LinkStore } from './linkStore.js';

export interface LinkChange {
  storeId: string;
  state: string;
  tags: string[];
  previousState: string | undefined;
}

interface LiveLink {
  actor: Actor<AnyStateMachine>;
  stateKey: string;
  enteredAtInMs: number;
  lastUsedAtInMs: number;
  trialInFlight: boolean;
  timers: NodeJS.Timeout[];
}

export interface StoreLinksOptions {
  chart: AnyStateMachine;
  linkPolicy: LinkPolicy;
  store: LinkStore;
  isBidirectional: (storeId: string) => boolean;
  onChange: (change: LinkChange) => void;
  logger: Logger;
  now?: () => number;
}

function stateKeyOf(snapshot: AnyMachineSnapshot): string {
  return JSON.stringify(snapshot.value);
}

export class StoreLinks {
  readonly #options: StoreLinksOptions;
  readonly #live = new Map<string, LiveLink>();
  readonly #now: () => number;

  constructor(options: StoreLinksOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  #input(storeId: string): LinkInput {
    return { policy: this.#options.linkPolicy, bidirectional: this.#options.isBidirectional(storeId) };
  }

  /** The live link, restored from its persisted snapshot or created. */
  #link(storeId: string): LiveLink {
    const existing = this.#live.get(storeId);
    if (existing !== undefined) {
      existing.lastUsedAtInMs = this.#now();
      return existing;
    }
    const persisted = this.#options.store.get(storeId);
    const actor = createActor(this.#options.chart, {
      input: this.#input(storeId),
      ...(persisted === undefined ? {} : { snapshot: persisted.snapshot as AnyMachineSnapshot }),
    });
    const live: LiveLink = {
      actor,
      stateKey: persisted?.stateKey ?? '',
      enteredAtInMs: persisted?.enteredAtInMs ?? this.#now(),
      lastUsedAtInMs: this.#now(),
      trialInFlight: false,
      timers: [],
    };
    this.#live.set(storeId, live);
    actor.subscribe({
      next: (snapshot) => this.#changed(storeId, live, snapshot),
      error: (error: unknown) => this.#options.logger.error({ err: error, storeId }, 'link chart failed'),
    });
    actor.start();
    if (persisted !== undefined) this.#resumeTimers(storeId, live);
    return live;
  }

  #changed(storeId: string, live: LiveLink, snapshot: AnyMachineSnapshot): void {
    const stateKey = stateKeyOf(snapshot);
    const previous = live.stateKey === '' ? undefined : live.stateKey;
    if (stateKey !== live.stateKey) {
      live.stateKey = stateKey;
      live.enteredAtInMs = this.#now();
      for (const timer of live.timers.splice(0)) clearTimeout(timer);
      this.#options.onChange({ storeId, state: stateKey, tags: [...snapshot.tags].sort(), previousState: previous });
    }
    this.#options.store.set(storeId, { snapshot: live.actor.getPersistedSnapshot(), stateKey, enteredAtInMs: live.enteredAtInMs });
  }

  /** Re-arms the `after` timers of the restored state from the time already spent in it. */
  #resumeTimers(storeId: string, live: LiveLink): void {
    const snapshot = live.actor.getSnapshot();
    const machine = this.#options.chart;
    const delays = (machine.implementations.delays ?? {}) as Record<string, unknown>;
    for (const node of snapshot._nodes) {
      for (const definition of node.after as { delay: unknown; eventType: string }[]) {
        const delay = definition.delay;
        let total: number;
        if (typeof delay === 'number') total = delay;
        else if (typeof delay === 'string' && typeof delays[delay] === 'function') {
          const context: unknown = snapshot.context;
          total = Number((delays[delay] as (args: unknown) => unknown)({ context, event: { type: 'storelink.resume' } }));
        } else if (typeof delay === 'string' && typeof delays[delay] === 'number') total = delays[delay];
        else continue;
        const remaining = Math.max(0, total - (this.#now() - live.enteredAtInMs));
        const stateKey = live.stateKey;
        const fire = () => {
          if (live.stateKey === stateKey && this.#live.get(storeId) === live) live.actor.send({ type: definition.eventType });
        };
        this.#options.logger.debug({ storeId, event: definition.eventType, remainingInMs: remaining }, 'resuming a link timer');
        if (remaining === 0) queueMicrotask(fire);
        else live.timers.push(setTimeout(fire, remaining));
      }
    }
  }

  /** Whether a snapshot of this store's link was persisted (by this dispatcher or an earlier run). */
  hasPersisted(storeId: string): boolean {
    return this.#options.store.get(storeId) !== undefined;
  }

  /** When the link entered its current state (wall clock). */
  enteredAt(storeId: string): number {
    return this.#link(storeId).enteredAtInMs;
  }

  snapshot(storeId: string): AnyMachineSnapshot {
    return this.#link(storeId).actor.getSnapshot();
  }

  send(storeId: string, event: LinkEvent): void {
    this.#link(storeId).actor.send(event);
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
    for (const timer of live.timers.splice(0)) clearTimeout(timer);
    live.actor.stop();
    this.#live.delete(storeId);
  }

  stopAll(): void {
    for (const [storeId, live] of [...this.#live]) this.#stop(storeId, live);
  }
}
