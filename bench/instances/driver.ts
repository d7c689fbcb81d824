/**
 * The cloud application of the instances benchmark: it publishes through the instances' HTTP APIs, each call to the
 * next instance in turn (as a load balancer spreads them) over an undici Pool per instance, and checks every answer:
 * the channel, `delivered`, and the store's reply for that very payload. A call that fails is counted, not timed.
 */
import { randomUUID } from 'node:crypto';
import { Pool } from 'undici';
import { callFigures } from '../stats.js';
import { ECHO_TYPE, benchPayload, echoResult, type Measurement } from '../wholePath/protocol.js';

export type { Measurement };

export type PathName = 'realtime' | 'requestreply';

/** How long a queued request waits for its store's reply. */
export const AWAIT_REPLY_IN_MS = 30_000;

export interface MeasureRequest {
  path: PathName;
  /** 1: sequential; more: that many calls in flight in total, over all the instances. */
  inFlight: number;
  count: number;
  warmUp: number;
  /** No new call after this long (the warm-up gets a quarter of it): the run stays short on a busy machine. */
  maxSeconds: number;
}

interface Answer {
  channel?: string | null;
  outcome?: string;
  reply?: unknown;
  fallbackReason?: string;
  code?: string;
  message?: string;
}

export class Driver {
  readonly #pools: Pool[];
  readonly #storeIds: readonly string[];
  readonly #headers: Record<string, string>;
  #next = 0;

  constructor(urls: readonly string[], storeIds: readonly string[], apiKey: string) {
    this.#pools = urls.map((url) => new Pool(url));
    this.#storeIds = storeIds;
    this.#headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
  }

  /** One call through the next instance to the next store; resolves with its latency in ms, throws what went wrong. */
  async #call(path: PathName, n: number): Promise<number> {
    const turn = this.#next++;
    const pool = this.#pools[turn % this.#pools.length]!;
    const storeId = this.#storeIds[turn % this.#storeIds.length]!;
    const payload = benchPayload(n);
    const body =
      path === 'realtime'
        ? { id: randomUUID(), type: ECHO_TYPE, payload, latency: 'realtime' }
        : { id: randomUUID(), type: ECHO_TYPE, payload, latency: 'async', awaitReplyInMs: AWAIT_REPLY_IN_MS };
    const started = performance.now();
    const response = await pool.request({ path: `/stores/${storeId}/operations`, method: 'POST', headers: this.#headers, body: JSON.stringify(body) });
    const answer = (await response.body.json()) as Answer;
    const latency = performance.now() - started;
    const channel = path === 'realtime' ? 'relay' : 'queue';
    if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode} ${answer.code ?? ''}: ${answer.message ?? ''}`);
    if (answer.channel !== channel || answer.outcome !== 'delivered') {
      throw new Error(`expected ${channel}/delivered, got ${String(answer.channel)}/${String(answer.outcome)}${answer.fallbackReason === undefined ? '' : ` (${answer.fallbackReason})`}`);
    }
    if (JSON.stringify(answer.reply) !== JSON.stringify(echoResult(payload))) throw new Error(`store ${storeId} replied ${JSON.stringify(answer.reply)} to n=${n}`);
    return latency;
  }

  async measure(request: MeasureRequest, onTimedStart: () => void = () => undefined): Promise<Measurement> {
    let failures = 0;
    let lastFailure: string | undefined;
    const run = async (count: number, seconds: number, latencies: number[] | undefined): Promise<void> => {
      let issued = 0;
      const deadline = performance.now() + seconds * 1000;
      await Promise.all(
        Array.from({ length: request.inFlight }, async () => {
          while (issued < count && performance.now() < deadline) {
            const n = issued++;
            try {
              const latency = await this.#call(request.path, n);
              latencies?.push(latency);
            } catch (error) {
              failures += 1;
              lastFailure = error instanceof Error ? error.message : String(error);
            }
          }
        }),
      );
    };
    await run(request.warmUp, request.maxSeconds / 4, undefined);
    const warmUpFailures = failures;
    const latencies: number[] = [];
    onTimedStart();
    const started = performance.now();
    await run(request.count, request.maxSeconds, latencies);
    const elapsed = performance.now() - started;
    if (latencies.length === 0) throw new Error(`every call failed (${failures}): ${lastFailure ?? ''}`);
    return {
      ...callFigures(latencies, elapsed),
      // The warm-up's failures count too: a failed call is a failed call, timed or not.
      failures,
      ...(lastFailure === undefined ? {} : { lastFailure: warmUpFailures === failures ? `(warm-up) ${lastFailure}` : lastFailure }),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.#pools.map((pool) => pool.close()));
  }
}
