/**
 * When resting links are due to wake: the earliest timer each one's chart had armed when its actor was stopped. One
 * binary heap and one Node timer for all of them, instead of one timer (about 400 bytes) per link.
 *
 * Instants are on the timer clock (`performance.now()`), the clock the charts' own `after` delays run on, not the
 * wall clock (a link's deadlines in its chart's context are on that one). A timer that fires is taken as proof that its
 * instant has come, so the schedule also keeps time under fake timers that leave `performance.now()` alone.
 */

/** Something the schedule can wake; `wakeAt` is the schedule's own bookkeeping (NaN: not scheduled). */
export interface Wakeable {
  wakeAt: number;
}

export class WakeSchedule<Item extends Wakeable> {
  readonly #onDue: (item: Item) => void;
  /** A binary min-heap by instant; an entry whose item has moved on (another `wakeAt`) is skipped when it surfaces. */
  readonly #instants: number[] = [];
  readonly #items: Item[] = [];
  #scheduled = 0;
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Number.NaN;
  /** The latest instant a timer proved, so time never runs backwards for the schedule. */
  #provenUntil = Number.NEGATIVE_INFINITY;
  #stopped = false;

  constructor(onDue: (item: Item) => void) {
    this.#onDue = onDue;
  }

  /** The schedule's present, on the timer clock. */
  now(): number {
    return Math.max(performance.now(), this.#provenUntil);
  }

  /** How many items wait to wake. */
  get size(): number {
    return this.#scheduled;
  }

  /** Wakes `item` at `instant` (timer clock), replacing any earlier schedule of it. */
  wakeAt(item: Item, instant: number): void {
    if (this.#stopped) return;
    if (!Number.isNaN(item.wakeAt)) {
      if (item.wakeAt === instant) return;
      this.#scheduled -= 1;
    }
    item.wakeAt = instant;
    this.#scheduled += 1;
    this.#push(instant, item);
    if (this.#instants.length > 2 * this.#scheduled + 1_024) this.#compact();
    this.#arm();
  }

  cancel(item: Item): void {
    if (Number.isNaN(item.wakeAt)) return;
    item.wakeAt = Number.NaN;
    this.#scheduled -= 1;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const item of this.#items) item.wakeAt = Number.NaN;
    this.#instants.length = 0;
    this.#items.length = 0;
    this.#scheduled = 0;
  }

  #arm(): void {
    this.#dropStale();
    const next = this.#instants[0];
    if (next === undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#armedFor = Number.NaN;
      return;
    }
    if (this.#timer !== undefined && this.#armedFor <= next) return;
    clearTimeout(this.#timer);
    this.#armedFor = next;
    this.#timer = setTimeout(() => this.#fire(next), Math.max(0, next - this.now()));
    // Like the link store's writes: a resting link never keeps the process alive; the dispatcher's connection does.
    this.#timer.unref();
  }

  #fire(armedFor: number): void {
    this.#timer = undefined;
    this.#armedFor = Number.NaN;
    this.#provenUntil = Math.max(this.#provenUntil, armedFor);
    const now = this.now();
    const due: Item[] = [];
    for (;;) {
      this.#dropStale();
      const instant = this.#instants[0];
      if (instant === undefined || instant > now) break;
      const item = this.#pop();
      item.wakeAt = Number.NaN;
      this.#scheduled -= 1;
      due.push(item);
    }
    for (const item of due) {
      if (this.#stopped) return;
      this.#onDue(item);
    }
    if (!this.#stopped) this.#arm();
  }

  #dropStale(): void {
    while (this.#items.length > 0 && this.#items[0]!.wakeAt !== this.#instants[0]) this.#pop();
  }

  #compact(): void {
    const entries: [number, Item][] = [];
    for (let index = 0; index < this.#items.length; index += 1) {
      const item = this.#items[index]!;
      if (item.wakeAt === this.#instants[index]) entries.push([this.#instants[index]!, item]);
    }
    this.#instants.length = 0;
    this.#items.length = 0;
    for (const [instant, item] of entries) this.#push(instant, item);
  }

  #push(instant: number, item: Item): void {
    const instants = this.#instants;
    const items = this.#items;
    let index = instants.length;
    instants.push(instant);
    items.push(item);
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (instants[parent]! <= instant) break;
      instants[index] = instants[parent]!;
      items[index] = items[parent]!;
      index = parent;
    }
    instants[index] = instant;
    items[index] = item;
  }

  #pop(): Item {
    const instants = this.#instants;
    const items = this.#items;
    const top = items[0]!;
    const lastInstant = instants.pop()!;
    const lastItem = items.pop()!;
    const size = instants.length;
    if (size > 0) {
      let index = 0;
      for (;;) {
        const left = 2 * index + 1;
        if (left >= size) break;
        const right = left + 1;
        const child = right < size && instants[right]! < instants[left]! ? right : left;
        if (instants[child]! >= lastInstant) break;
        instants[index] = instants[child]!;
        items[index] = items[child]!;
        index = child;
      }
      instants[index] = lastInstant;
      items[index] = lastItem;
    }
    return top;
  }
}
