/**
 * The relay answers this instance holds durably and has not yet confirmed to their stores, per store, oldest first.
 * A store keeps the outbox copy of each relay answer back for a while (relayProtocol.ts); the next relay call to that
 * store takes the ids waiting here, signed, so the store drops those copies instead of sending them through Service
 * Bus to be recognised here as known. An id that waits longer than the store would hold its copy is useless (the copy
 * is on its way) and is forgotten; so is one over the bound per store. Forgetting costs a message, never an outcome.
 * Pure: the caller signs and sends.
 */
import { MAX_CONFIRMED_PER_CALL } from '../channels/relay/relayProtocol.js';

/** Past this age an id is not worth a header: the store's copy (held 2 s by default) has been sent. */
export const DEFAULT_CONFIRMATION_MAX_AGE_IN_MS = 2_000;
/** Ids kept per store at most; beyond, the oldest go. */
const MAX_WAITING_PER_STORE = 4 * MAX_CONFIRMED_PER_CALL;
/**
 * A confirmation costs a signature here and a verification at the store (about 0.1 ms of CPU between them), so a call
 * carries one only once this many ids wait, or once the oldest has waited DEFAULT_CONFIRMATION_BATCH_WAIT_IN_MS: a
 * busy store gets one confirmation per 16 answers; a quiet one, each answer's on the next call.
 */
export const CONFIRMATIONS_PER_BATCH = 16;
export const DEFAULT_CONFIRMATION_BATCH_WAIT_IN_MS = 250;

export interface RelayConfirmationsOptions {
  now: () => number;
  maxAgeInMs?: number;
  /** How long ids may wait for a batch of CONFIRMATIONS_PER_BATCH to fill; default 250 ms; 0 confirms on every call. */
  batchWaitInMs?: number;
}

export class RelayConfirmations {
  readonly #now: () => number;
  readonly #maxAgeInMs: number;
  readonly #batchWaitInMs: number;
  /** Per store, the ids with when they became durable, oldest first. Only stores with ids waiting have an entry. */
  readonly #waiting = new Map<string, { ids: string[]; at: number[] }>();

  constructor(options: RelayConfirmationsOptions) {
    this.#now = options.now;
    this.#maxAgeInMs = options.maxAgeInMs ?? DEFAULT_CONFIRMATION_MAX_AGE_IN_MS;
    this.#batchWaitInMs = options.batchWaitInMs ?? DEFAULT_CONFIRMATION_BATCH_WAIT_IN_MS;
  }

  /** The answer to `operationId` from `storeId` is durable here: confirm it on the next call. */
  add(storeId: string, operationId: string): void {
    let waiting = this.#waiting.get(storeId);
    if (waiting === undefined) this.#waiting.set(storeId, (waiting = { ids: [], at: [] }));
    waiting.ids.push(operationId);
    waiting.at.push(this.#now());
    if (waiting.ids.length > MAX_WAITING_PER_STORE) {
      waiting.ids.shift();
      waiting.at.shift();
    }
  }

  /**
   * Takes up to MAX_CONFIRMED_PER_CALL ids for a call to `storeId`, oldest first, once a batch is full or its oldest
   * id has waited long enough; undefined when none is worth sending yet.
   */
  take(storeId: string): string[] | undefined {
    const waiting = this.#waiting.get(storeId);
    if (waiting === undefined) return undefined;
    const now = this.#now();
    const oldest = now - this.#maxAgeInMs;
    let stale = 0;
    while (stale < waiting.at.length && waiting.at[stale]! < oldest) stale += 1;
    const fresh = waiting.ids.length - stale;
    if (fresh > 0 && fresh < CONFIRMATIONS_PER_BATCH && now - waiting.at[stale]! < this.#batchWaitInMs) return undefined;
    const end = Math.min(waiting.ids.length, stale + MAX_CONFIRMED_PER_CALL);
    const taken = waiting.ids.slice(stale, end);
    waiting.ids.splice(0, end);
    waiting.at.splice(0, end);
    if (waiting.ids.length === 0) this.#waiting.delete(storeId);
    return taken.length === 0 ? undefined : taken;
  }

  /** Forgets the stores whose ids are all too old to be worth a header (stores no call went to since). */
  prune(): void {
    const oldest = this.#now() - this.#maxAgeInMs;
    for (const [storeId, waiting] of this.#waiting) {
      if (waiting.at.at(-1)! < oldest) this.#waiting.delete(storeId);
    }
  }

  /** Stores with ids waiting (for tests and metrics). */
  get stores(): number {
    return this.#waiting.size;
  }
}
