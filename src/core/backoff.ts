/**
 * Exponential back-off with jitter, for every retry loop that storelink runs itself (the store's outbox flush, the
 * queue receiver's re-creation; the relay listener's chart grows its own delay and takes the jitter from here). The delay doubles from `initialInMs` up to `maxInMs`; each wait is drawn from the
 * upper half of it, so stores that lost Service Bus together do not all come back in the same millisecond, and a wait
 * is never shorter than half the nominal delay. No I/O: the random source is injectable.
 */
export interface BackoffOptions {
  initialInMs: number;
  maxInMs: number;
  /** A number in [0, 1); default `Math.random`. */
  random?: () => number;
}

/** A wait drawn from the upper half of `nominalInMs`: never less than half of it, never more. */
export function withJitter(nominalInMs: number, random: () => number = Math.random): number {
  return Math.round(nominalInMs / 2 + (nominalInMs / 2) * random());
}

export class Backoff {
  readonly #initialInMs: number;
  readonly #maxInMs: number;
  readonly #random: () => number;
  #nominalInMs: number;

  constructor(options: BackoffOptions) {
    if (!Number.isFinite(options.initialInMs) || options.initialInMs <= 0) {
      throw new RangeError(`Backoff: initialInMs must be a positive number of milliseconds, got ${options.initialInMs}`);
    }
    if (!Number.isFinite(options.maxInMs) || options.maxInMs < options.initialInMs) {
      throw new RangeError(`Backoff: maxInMs must be at least initialInMs (${options.initialInMs}), got ${options.maxInMs}`);
    }
    this.#initialInMs = options.initialInMs;
    this.#maxInMs = options.maxInMs;
    this.#random = options.random ?? Math.random;
    this.#nominalInMs = options.initialInMs;
  }

  /** The wait before the next attempt; the one after it will be about twice as long, up to the maximum. */
  next(): number {
    const nominal = this.#nominalInMs;
    this.#nominalInMs = Math.min(nominal * 2, this.#maxInMs);
    return withJitter(nominal, this.#random);
  }

  /** After a success: the next failure waits about `initialInMs` again. */
  reset(): void {
    this.#nominalInMs = this.#initialInMs;
  }
}
