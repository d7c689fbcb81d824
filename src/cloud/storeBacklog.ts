/**
 * What waits for each store: operations this instance put on the store's queue whose publish returned without their
 * outcome (`queued`), until the outcome arrives (executed, rejected, failed) or the operation expires (then it will
 * never run, and the store reports it failed if it reads it). Bounded: beyond `maxTracked` operations the oldest are
 * forgotten (and counted in `forgotten`), so a store offline for days cannot grow it without end.
 */

/** How many queued operations are tracked at most, across all stores. */
export const DEFAULT_MAX_BACKLOG_TRACKED = 100_000;

interface Waiting {
  storeId: string;
  expiresAtInMs: number;
}

export interface StoreBacklogOptions {
  now: () => number;
  maxTracked?: number;
}

export class StoreBacklog {
  readonly #now: () => number;
  readonly #maxTracked: number;
  /** By operation id, oldest first (a Map keeps insertion order). */
  readonly #waiting = new Map<string, Waiting>();
  readonly #counts = new Map<string, number>();
  #forgotten = 0;
  /** When expired operations were last dropped: a walk of them all, so at most once per second of the clock. */
  #expiredAt = -Infinity;

  constructor(options: StoreBacklogOptions) {
    const maxTracked = options.maxTracked ?? DEFAULT_MAX_BACKLOG_TRACKED;
    if (!Number.isSafeInteger(maxTracked) || maxTracked < 1) throw new RangeError(`StoreBacklog: maxTracked must be a positive whole number, got ${maxTracked}`);
    this.#now = options.now;
    this.#maxTracked = maxTracked;
  }

  /** An operation now waits on its store's queue until its outcome, or until `expiresAt` (ISO 8601). */
  queued(operationId: string, storeId: string, expiresAt: string): void {
    if (this.#waiting.has(operationId)) return;
    const expiresAtInMs = Date.parse(expiresAt);
    this.#waiting.set(operationId, { storeId, expiresAtInMs: Number.isFinite(expiresAtInMs) ? expiresAtInMs : Infinity });
    this.#counts.set(storeId, (this.#counts.get(storeId) ?? 0) + 1);
    while (this.#waiting.size > this.#maxTracked) {
      this.#remove(this.#waiting.keys().next().value!);
      this.#forgotten += 1;
    }
  }

  /** The operation's outcome is known: it no longer waits. Unknown ids are ignored. */
  settled(operationId: string): void {
    this.#remove(operationId);
  }

  /** Operations waiting for one store now. */
  countOf(storeId: string): number {
    this.#expire();
    return this.#counts.get(storeId) ?? 0;
  }

  /** Operations waiting now, by store (stores with none are absent). */
  counts(): ReadonlyMap<string, number> {
    this.#expire();
    return this.#counts;
  }

  /** Operations dropped from tracking because more than `maxTracked` waited. */
  get forgotten(): number {
    return this.#forgotten;
  }

  #remove(operationId: string): void {
    const waiting = this.#waiting.get(operationId);
    if (waiting === undefined) return;
    this.#waiting.delete(operationId);
    const count = (this.#counts.get(waiting.storeId) ?? 1) - 1;
    if (count === 0) this.#counts.delete(waiting.storeId);
    else this.#counts.set(waiting.storeId, count);
  }

  #expire(): void {
    const now = this.#now();
    if (now >= this.#expiredAt && now - this.#expiredAt < 1_000) return;
    this.#expiredAt = now;
    for (const [operationId, waiting] of this.#waiting) if (waiting.expiresAtInMs <= now) this.#remove(operationId);
  }
}
