/**
 * Exponential back-off with jitter, for every retry loop that storelink runs itself (the store's outbox flush, the
 * queue receiver's re-creation, the store's in-process retries of a failing handler through `RetryWindow`; the relay
 * listener's chart grows its own delay and takes the jitter from here). The delay doubles from `initialInMs` up to
 * `maxInMs`; each wait is drawn from the upper half of it, so stores that lost Service Bus together do not all come
 * back in the same millisecond, and a wait is never shorter than half the nominal delay. No I/O: the random source is
 * injectable.
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

export interface RetryWindowOptions {
  /** The first wait; each further one doubles, up to `maxDelayInMs`, jittered as `Backoff` does. */
  initialDelayInMs: number;
  maxDelayInMs: number;
  /** How long after `startedAtInMs` retries may still be made; 0 means none. */
  maxRetryWindowInMs: number;
  /** When the first attempt failed, on the caller's clock. */
  startedAtInMs: number;
  /** Past this instant (an operation's expiry) waiting is pointless: one last attempt is made at once, then none. */
  deadlineInMs?: number;
  /** A number in [0, 1); default `Math.random`. */
  random?: () => number;
}

/** What to do after a failed attempt: wait this long and try again, or stop. */
export type RetryStep = { retry: true; delayInMs: number } | { retry: false };

/**
 * A retry schedule bounded in time: back-off with jitter, waits cut short so that no attempt falls after the end of
 * the window or after the deadline, and one prompt attempt once the deadline has passed (so the caller's usual path
 * reports the expiry). Pure: the caller reads its own clock and does the waiting.
 */
export class RetryWindow {
  readonly #backoff: Backoff;
  readonly #windowEndsAtInMs: number;
  readonly #deadlineInMs: number;
  #pastDeadlineTried = false;

  constructor(options: RetryWindowOptions) {
    if (!Number.isFinite(options.maxRetryWindowInMs) || options.maxRetryWindowInMs < 0) {
      throw new RangeError(`RetryWindow: maxRetryWindowInMs must be a number of milliseconds, 0 or more, got ${options.maxRetryWindowInMs}`);
    }
    if (!Number.isFinite(options.startedAtInMs)) throw new RangeError(`RetryWindow: startedAtInMs must be an instant in ms, got ${options.startedAtInMs}`);
    this.#backoff = new Backoff({
      initialInMs: options.initialDelayInMs,
      maxInMs: options.maxDelayInMs,
      ...(options.random === undefined ? {} : { random: options.random }),
    });
    this.#windowEndsAtInMs = options.startedAtInMs + options.maxRetryWindowInMs;
    this.#deadlineInMs = options.deadlineInMs !== undefined && Number.isFinite(options.deadlineInMs) ? options.deadlineInMs : Infinity;
  }

  /** The step after an attempt that failed at `nowInMs`. */
  next(nowInMs: number): RetryStep {
    if (nowInMs >= this.#deadlineInMs) {
      if (this.#pastDeadlineTried) return { retry: false };
      this.#pastDeadlineTried = true;
      return { retry: true, delayInMs: 0 };
    }
    if (nowInMs >= this.#windowEndsAtInMs) return { retry: false };
    const limit = Math.min(this.#windowEndsAtInMs, this.#deadlineInMs) - nowInMs;
    return { retry: true, delayInMs: Math.max(0, Math.min(this.#backoff.next(), limit)) };
  }
}
