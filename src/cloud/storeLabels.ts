/**
 * Which stores get a `store` label of their own in the metrics, so the number of series stays bounded with any number
 * of stores: all of them, none, or the `top` busiest by recent traffic (deliveries, decayed with a half-life), the
 * rest under one shared label. Membership is decided again after each scrape, with a margin so two stores of about
 * the same traffic do not swap places at every scrape; a store that joins starts its own series from 0 (what it did
 * before stays counted under the shared label, so no series ever goes down), and one that leaves has its series
 * dropped once its last count was scraped (so every increment is seen by some series: rates add up).
 */

export type PerStoreMetrics = 'off' | 'all' | { top: number };

/** The label value of every store without one of its own; no store id can start with "_". */
export const OTHER_STORES_LABEL = '_other';
export const DEFAULT_PER_STORE_METRICS: PerStoreMetrics = { top: 50 };
/** How fast traffic is forgotten when ranking stores: half of it counts after this long. */
export const DEFAULT_TRAFFIC_HALF_LIFE_IN_MS = 60 * 60_000;
/** A store outside the top replaces one inside only with this much more traffic. */
const SWAP_MARGIN = 1.2;

interface Traffic {
  score: number;
  at: number;
}

export interface StoreLabelsOptions {
  perStore?: PerStoreMetrics;
  now: () => number;
  halfLifeInMs?: number;
}

export function checkPerStoreMetrics(perStore: unknown): PerStoreMetrics {
  if (perStore === 'off' || perStore === 'all') return perStore;
  if (typeof perStore === 'object' && perStore !== null && 'top' in perStore) {
    const { top } = perStore;
    if (typeof top === 'number' && Number.isSafeInteger(top) && top >= 1) return { top };
  }
  throw new RangeError(`metrics perStore must be "off", "all" or { top: N } with N a positive whole number, got ${JSON.stringify(perStore)}`);
}

export class StoreLabels {
  readonly mode: PerStoreMetrics;
  readonly #now: () => number;
  readonly #halfLifeInMs: number;
  readonly #traffic = new Map<string, Traffic>();
  readonly #members = new Set<string>();

  constructor(options: StoreLabelsOptions) {
    this.mode = checkPerStoreMetrics(options.perStore ?? DEFAULT_PER_STORE_METRICS);
    this.#now = options.now;
    this.#halfLifeInMs = options.halfLifeInMs ?? DEFAULT_TRAFFIC_HALF_LIFE_IN_MS;
  }

  /** Whether any store metric is kept at all. */
  get enabled(): boolean {
    return this.mode !== 'off';
  }

  /** One delivery to the store: counts towards its rank. */
  record(storeId: string): void {
    if (typeof this.mode !== 'object') return;
    const now = this.#now();
    this.#traffic.set(storeId, { score: this.#scoreOf(storeId, now) + 1, at: now });
    // Free places are taken at once: with fewer busy stores than places, every one of them has its own series.
    if (this.#members.size < this.mode.top) this.#members.add(storeId);
  }

  /** The store's label value now. */
  labelOf(storeId: string): string {
    if (this.mode === 'all') return storeId;
    return this.#members.has(storeId) ? storeId : OTHER_STORES_LABEL;
  }

  /** Ranks the stores again; returns those that lost their own label (their series are to be dropped). */
  rerank(): string[] {
    if (typeof this.mode !== 'object') return [];
    const { top } = this.mode;
    const now = this.#now();
    // Members rank with the margin, so a newcomer must clearly out-trade the weakest to take its place.
    const ranked: { storeId: string; rank: number }[] = [];
    for (const storeId of this.#traffic.keys()) {
      const score = this.#scoreOf(storeId, now);
      ranked.push({ storeId, rank: this.#members.has(storeId) ? score * SWAP_MARGIN : score });
    }
    const chosen = new Set(topByRank(ranked, top).map(({ storeId }) => storeId));
    const dropped = [...this.#members].filter((storeId) => !chosen.has(storeId));
    for (const storeId of dropped) this.#members.delete(storeId);
    for (const storeId of chosen) this.#members.add(storeId);
    // Traffic long gone ranks nobody: forget it, so the map holds only stores with recent deliveries.
    for (const [storeId, traffic] of this.#traffic) if (!this.#members.has(storeId) && this.#scoreOf(storeId, now) < 0.01 && traffic.at < now) this.#traffic.delete(storeId);
    return dropped;
  }

  #scoreOf(storeId: string, now: number): number {
    const traffic = this.#traffic.get(storeId);
    if (traffic === undefined) return 0;
    return traffic.score * 2 ** (-Math.max(0, now - traffic.at) / this.#halfLifeInMs);
  }
}

/** The `count` entries of highest rank, without sorting them all (thousands of stores, a few dozen places). */
function topByRank<Entry extends { rank: number }>(entries: readonly Entry[], count: number): Entry[] {
  if (entries.length <= count) return [...entries];
  // Kept in ascending order of rank; a candidate enters only if it beats the lowest.
  const best: Entry[] = [];
  for (const entry of entries) {
    if (best.length === count && entry.rank <= best[0]!.rank) continue;
    let low = 0;
    let high = best.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (best[middle]!.rank < entry.rank) low = middle + 1;
      else high = middle;
    }
    best.splice(low, 0, entry);
    if (best.length > count) best.shift();
  }
  return best;
}
