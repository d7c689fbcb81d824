/**
 * Links at scale: the heap one dispatcher's link registry takes for 100,000 known stores whose links were all used,
 * and the time of a routing decision. The registry and router are built as the dispatcher builds them (the default
 * chart and policy, an in-memory link store, every link brought to life at start as for bi-directional stores), then
 * every link gets one routing decision as `publish` makes it (`route(links.read(id), …)` with the trial flag).
 *
 * Baselines in the same run: for the decision, the best hand-written equivalent — a Map look-up of a precomputed route;
 * for the heap, the same registry keeping one live actor per link (what it did before links could rest).
 * Figures: heap per link and in total (after `gc()`), with 1% of links tripped (live timers) and after every link
 * reported one relay success; decision time median and p99 (µs, over batches of decisions); the cost of one event on a
 * resting link. Prints a table, then one `BENCH_JSON` line.
 *
 *   node --import tsx bench/links.bench.ts [--stores 100000] [--decisions 1000000] [--no-baseline]
 */
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { storeLinkMachine } from '../machines/storeLink.machine.js';
import { silentLogger } from '../src/core/logger.js';
import { defaultPolicy, type Policy } from '../src/core/policy.js';
import { route, type RouteDecision } from '../src/core/route.js';
import { openLinkStore } from '../src/cloud/linkStore.js';
import { StoreLinks } from '../src/cloud/storeLinks.js';
import { median, percentile } from './stats.js';

export interface LinksBenchOptions {
  stores: number;
  decisions: number;
  /** Also measure the registry that keeps one live actor per link (slow at 100,000: about 500 MB). */
  baseline: boolean;
}

export interface LinksBenchResult {
  stores: number;
  heapBytesPerLink: number;
  heapTotalBytes: number;
  heapBytesPerLinkOnePercentTripped: number;
  heapBytesPerLinkAfterSuccesses: number;
  liveActors: number;
  liveActorsOnePercentTripped: number;
  startMsPerLink: number;
  decisionMedianUs: number;
  decisionP99Us: number;
  mapLookupMedianUs: number;
  mapLookupP99Us: number;
  decisionRatio: number;
  restingEventUs: number;
  /** Actors the successes on resting links started (0 when the registry computes them without one). */
  restingEventActorsStarted: number;
  baselineHeapBytesPerLink: number | null;
  baselineLiveActors: number | null;
}

/** `global.gc`, exposed at run time when node was started without `--expose-gc`. */
function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed !== undefined) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

const gc = collector();

function heapUsed(): number {
  for (let round = 0; round < 4; round += 1) gc();
  return process.memoryUsage().heapUsed;
}

const REALTIME = { type: 'clickAndCollect.order', latency: 'realtime' } as const;

async function registry(storeIds: readonly string[], policy: Policy, minRestInMs?: number): Promise<StoreLinks> {
  const bidirectional = new Set(storeIds);
  return new StoreLinks({
    chart: storeLinkMachine,
    linkPolicy: policy.link,
    store: await openLinkStore(undefined),
    isBidirectional: (storeId) => bidirectional.has(storeId),
    // No probe comes due during the run (the healthy interval is a minute); one that did would find the relay healthy.
    probe: () => Promise.resolve({ healthy: true, at: Date.now() }),
    onChange: () => undefined,
    logger: silentLogger,
    ...(minRestInMs === undefined ? {} : { minRestInMs }),
  });
}

/** Per-decision times in µs: batches of `batch` decisions over a shuffled order of the stores, timed together. */
function timeDecisions(order: readonly string[], decisions: number, decide: (storeId: string) => RouteDecision): number[] {
  const batch = 64;
  const samples: number[] = [];
  let sink = 0;
  let cursor = 0;
  for (let done = 0; done < decisions; done += batch) {
    const started = process.hrtime.bigint();
    for (let index = 0; index < batch; index += 1) {
      const decision = decide(order[cursor]!);
      sink += decision.trial ? 1 : decision.action.length;
      cursor = cursor + 1 === order.length ? 0 : cursor + 1;
    }
    samples.push(Number(process.hrtime.bigint() - started) / 1_000 / batch);
  }
  if (sink === 0) throw new Error('no decision made');
  return samples;
}

function shuffled(values: readonly string[]): string[] {
  const copy = [...values];
  // A fixed-seed shuffle, so every run visits the stores in the same scattered order.
  let seed = 42;
  for (let index = copy.length - 1; index > 0; index -= 1) {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    const other = seed % (index + 1);
    [copy[index], copy[other]] = [copy[other]!, copy[index]!];
  }
  return copy;
}

export async function runLinksBench(options: LinksBenchOptions): Promise<LinksBenchResult> {
  const policy = defaultPolicy();
  const storeIds = Array.from({ length: options.stores }, (_, index) => `store-${index.toString().padStart(6, '0')}`);
  const order = shuffled(storeIds);
  const base = heapUsed();

  const links = await registry(storeIds, policy);
  const starting = performance.now();
  for (const storeId of storeIds) links.resume(storeId);
  const startMsPerLink = (performance.now() - starting) / storeIds.length;
  const decide = (storeId: string): RouteDecision => route(links.read(storeId), REALTIME, policy, { trialInFlight: links.isTrialInFlight(storeId) });
  for (const storeId of storeIds) decide(storeId);
  const used = heapUsed() - base;
  const liveActors = links.liveCount;

  const decisionSamples = timeDecisions(order, options.decisions, decide);
  const precomputed = new Map(storeIds.map((storeId) => [storeId, decide(storeId)]));
  const lookupSamples = timeDecisions(order, options.decisions, (storeId) => precomputed.get(storeId)!);
  precomputed.clear();

  // Every link reports one relay success, as a real-time call through it does: the registry computes the chart's step
  // without an actor when it can (a healthy link's success changes nothing), else wakes the actor and rests it again.
  const actorsBefore = links.actorsStarted;
  const eventStarted = performance.now();
  for (const storeId of storeIds) links.send(storeId, { type: 'relay.succeeded' });
  const restingEventUs = ((performance.now() - eventStarted) * 1_000) / storeIds.length;
  const restingEventActorsStarted = links.actorsStarted - actorsBefore;
  const afterSuccesses = heapUsed() - base;

  // 1% of the links trip (the default threshold is three failures): a five-second cool-down keeps their actors live.
  const tripped = storeIds.filter((_, index) => index % 100 === 0);
  for (const storeId of tripped) for (let failure = 0; failure < policy.link.failureThreshold; failure += 1) links.send(storeId, { type: 'relay.failed', reason: 'no-listener' });
  const withTripped = heapUsed() - base;
  const liveActorsOnePercentTripped = links.liveCount;
  for (const storeId of tripped) if (links.read(storeId).hasTag('relay')) throw new Error(`${storeId} did not trip`);
  links.stopAll();

  let baselineHeapBytesPerLink: number | null = null;
  let baselineLiveActors: number | null = null;
  if (options.baseline) {
    const beforeBaseline = heapUsed();
    const everLive = await registry(storeIds, policy, Number.POSITIVE_INFINITY);
    for (const storeId of storeIds) everLive.resume(storeId);
    for (const storeId of storeIds) route(everLive.read(storeId), REALTIME, policy, { trialInFlight: everLive.isTrialInFlight(storeId) });
    baselineHeapBytesPerLink = (heapUsed() - beforeBaseline) / storeIds.length;
    baselineLiveActors = everLive.liveCount;
    everLive.stopAll();
  }

  const decisionMedianUs = median(decisionSamples);
  const mapLookupMedianUs = median(lookupSamples);
  return {
    stores: options.stores,
    heapBytesPerLink: used / storeIds.length,
    heapTotalBytes: used,
    heapBytesPerLinkOnePercentTripped: withTripped / storeIds.length,
    heapBytesPerLinkAfterSuccesses: afterSuccesses / storeIds.length,
    liveActors,
    liveActorsOnePercentTripped,
    startMsPerLink,
    decisionMedianUs,
    decisionP99Us: percentile(decisionSamples, 99),
    mapLookupMedianUs,
    mapLookupP99Us: percentile(lookupSamples, 99),
    decisionRatio: decisionMedianUs / mapLookupMedianUs,
    restingEventUs,
    restingEventActorsStarted,
    baselineHeapBytesPerLink,
    baselineLiveActors,
  };
}

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index < 0 ? fallback : Number(process.argv[index + 1]);
}

const MB = 1024 * 1024;

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await runLinksBench({
    stores: argument('stores', 100_000),
    decisions: argument('decisions', 1_000_000),
    baseline: !process.argv.includes('--no-baseline'),
  });
  const kb = (bytes: number): string => `${(bytes / 1024).toFixed(2)} KB`;
  console.log(`links at scale: ${result.stores} stores, all bi-directional, every link used once (figures indicative on a shared machine)`);
  console.log(`  heap per link, all healthy:        ${kb(result.heapBytesPerLink)} (${(result.heapTotalBytes / MB).toFixed(1)} MB in total), ${result.liveActors} live actors`);
  console.log(`  heap per link, 1% tripped:         ${kb(result.heapBytesPerLinkOnePercentTripped)}, ${result.liveActorsOnePercentTripped} live actors`);
  console.log(`  heap per link, after one success:  ${kb(result.heapBytesPerLinkAfterSuccesses)}`);
  if (result.baselineHeapBytesPerLink !== null) {
    console.log(`  baseline, one live actor per link: ${kb(result.baselineHeapBytesPerLink)} (${result.baselineLiveActors} live actors)`);
  }
  console.log(`  start (resume) per link:           ${(result.startMsPerLink * 1_000).toFixed(1)} µs`);
  console.log(`  one event on a resting link:       ${result.restingEventUs.toFixed(1)} µs (a relay success; ${result.restingEventActorsStarted} actors started)`);
  console.log('  routing decision, µs              median     p99');
  console.log(`    route(links.read(id), …)       ${result.decisionMedianUs.toFixed(3).padStart(8)} ${result.decisionP99Us.toFixed(3).padStart(8)}`);
  console.log(`    Map look-up of a precomputed   ${result.mapLookupMedianUs.toFixed(3).padStart(8)} ${result.mapLookupP99Us.toFixed(3).padStart(8)}`);
  console.log(`    ratio (median)                 ${result.decisionRatio.toFixed(2).padStart(8)}`);
  console.log(`BENCH_JSON ${JSON.stringify({ bench: 'links', ...result })}`);
}
