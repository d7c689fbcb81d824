/**
 * The cloud HTTP API under hostile bodies: 200 clients at once each posting a 20 KB operation request whose payload
 * nests 10,000 levels deep, over and over, while one client publishes ordinary operations. Reports the process's
 * peak memory (process.memoryUsage sampled every 10 ms) and the ordinary requests' latency (p50/p99/max), with undici
 * as the client on both sides, against a calm run of the same ordinary requests. Emulators and dispatcher are real;
 * no store agent runs, so an ordinary publish ends `queued` in the store's Service Bus queue.
 *
 *   node --import tsx bench/hostileBodies.bench.ts [--seconds 10] [--concurrency 200]
 */
import { Pool } from 'undici';
import { createDispatcher } from '../src/cloud/dispatcher.js';
import { createCloudHttpApi } from '../src/cloud/httpApi.js';
import { generateSigningKeyPair } from '../src/core/signing.js';
import { startEmulators } from '../src/emulator/startEmulators.js';
import { percentile } from './stats.js';

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index < 0 ? fallback : Number(process.argv[index + 1]);
}

const SECONDS = argument('seconds', 10);
const CONCURRENCY = argument('concurrency', 200);
const DEPTH = 10_000;
const TOKEN = 'bench-token-0123456789abcdef';
const STORE = 'paris-1';
const PATH = `/stores/${STORE}/operations`;
const HEADERS = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
const HOSTILE = `{"type":"price.update","payload":${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}}`;
const NORMAL = JSON.stringify({ type: 'price.update', payload: { sku: 'SKU-KETTLE', price: 19.9 } });

const azure = await startEmulators({
  namespaces: [{ queues: [{ name: `store-${STORE}` }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }],
});
const cloudKey = generateSigningKeyPair();
const dispatcher = createDispatcher({
  serviceBus: { connectionString: azure.serviceBusConnectionString() },
  stores: [{ storeId: STORE, bidirectional: false, publicKeys: { store: generateSigningKeyPair().publicKey } }],
  signing: { keyId: 'bench', privateKey: cloudKey.privateKey },
});
const api = createCloudHttpApi({ dispatcher, token: TOKEN });
const { port } = await api.listen();
const origin = `http://127.0.0.1:${port}`;
const normalClient = new Pool(origin, { connections: 1 });
const hostileClient = new Pool(origin, { connections: CONCURRENCY, pipelining: 1 });

let peakRss = 0;
let peakHeap = 0;
const sampler = setInterval(() => {
  const usage = process.memoryUsage();
  peakRss = Math.max(peakRss, usage.rss);
  peakHeap = Math.max(peakHeap, usage.heapUsed);
}, 10);

/** Ordinary publishes one after another until `until`; their latencies in ms. */
async function normalRequests(until: number): Promise<{ latencies: number[]; failures: number }> {
  const latencies: number[] = [];
  let failures = 0;
  while (performance.now() < until) {
    const started = performance.now();
    const response = await normalClient.request({ method: 'POST', path: PATH, headers: HEADERS, body: NORMAL });
    await response.body.text();
    latencies.push(performance.now() - started);
    if (response.statusCode !== 200) failures += 1;
  }
  return { latencies, failures };
}

/** `CONCURRENCY` loops each posting the hostile body until `until`; how many were answered, by status. */
async function hostileRequests(until: number): Promise<Record<string, number>> {
  const statuses: Record<string, number> = {};
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        let status: string;
        try {
          const response = await hostileClient.request({ method: 'POST', path: PATH, headers: HEADERS, body: HOSTILE });
          await response.body.text();
          status = String(response.statusCode);
        } catch (error) {
          status = (error as { code?: string }).code ?? 'error';
        }
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    }),
  );
  return statuses;
}

function summary(latencies: number[]) {
  return {
    requests: latencies.length,
    p50InMs: Number(percentile(latencies, 50).toFixed(2)),
    p99InMs: Number(percentile(latencies, 99).toFixed(2)),
    maxInMs: Number(Math.max(...latencies).toFixed(2)),
  };
}

const MiB = 1024 * 1024;
try {
  // Warm up, then a calm run for the baseline.
  await normalRequests(performance.now() + 1_000);
  const baseline = await normalRequests(performance.now() + SECONDS * 1_000);
  const rssBefore = process.memoryUsage().rss;
  peakRss = 0;
  peakHeap = 0;
  const until = performance.now() + SECONDS * 1_000;
  const [underAttack, hostile] = await Promise.all([normalRequests(until), hostileRequests(until)]);
  const hostileTotal = Object.values(hostile).reduce((sum, count) => sum + count, 0);

  const calm = summary(baseline.latencies);
  const attacked = summary(underAttack.latencies);
  console.log(`hostile bodies: ${CONCURRENCY} clients posting ${HOSTILE.length} B nested ${DEPTH} deep for ${SECONDS} s`);
  console.log('| ordinary publishes | requests | failed | p50 (ms) | p99 (ms) | max (ms) |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  console.log(`| calm | ${calm.requests} | ${baseline.failures} | ${calm.p50InMs} | ${calm.p99InMs} | ${calm.maxInMs} |`);
  console.log(`| under attack | ${attacked.requests} | ${underAttack.failures} | ${attacked.p50InMs} | ${attacked.p99InMs} | ${attacked.maxInMs} |`);
  console.log(`hostile requests answered: ${hostileTotal} (${Object.entries(hostile).map(([status, count]) => `${status}: ${count}`).join(', ')})`);
  console.log(`memory: rss ${(rssBefore / MiB).toFixed(0)} MiB before, peak ${(peakRss / MiB).toFixed(0)} MiB; peak heap used ${(peakHeap / MiB).toFixed(0)} MiB`);
  console.log(
    JSON.stringify({
      bench: 'hostileBodies',
      concurrency: CONCURRENCY,
      seconds: SECONDS,
      hostileBodyBytes: HOSTILE.length,
      depth: DEPTH,
      calm: { ...calm, failures: baseline.failures },
      underAttack: { ...attacked, failures: underAttack.failures },
      hostile: { answered: hostileTotal, byStatus: hostile },
      memory: { rssBeforeInMiB: Math.round(rssBefore / MiB), peakRssInMiB: Math.round(peakRss / MiB), peakHeapUsedInMiB: Math.round(peakHeap / MiB) },
    }),
  );
} finally {
  clearInterval(sampler);
  await Promise.allSettled([normalClient.close(), hostileClient.close()]);
  await api.close();
  await dispatcher.close();
  await azure.close();
}
