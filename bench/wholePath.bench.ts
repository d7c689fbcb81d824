/**
 * Whole-path benchmarks: storelink end to end as a cloud application sees it, against the best hand-written
 * equivalent through the same emulators in the same run, with the emulators, the stores and the cloud each in their
 * own processes (100 stores share two store processes), over the demo's transport: one TLS port, Service Bus over
 * WebSockets, the relay over https/wss, signatures on.
 *
 * - real time: dispatcher.publish of a real-time operation → relay → store agent (executor, ledger, handler) → back;
 *   raw: an undici Pool with a SAS token made once, calling a bare hyco-https listener that answers the same result;
 *   beside it "raw + signatures", the same call carrying the design's Ed25519 signatures and nothing else (the cloud
 *   signs each operation, the listener verifies it and signs its answer, the cloud verifies that): what any
 *   implementation must pay;
 * - queue one-way: publish → run at the store (the handler stamps the wall clock, the same machine's in every
 *   process); raw: the SDK's sendMessages → a subscribe() receiver at the store completing each message;
 * - queue request/reply: publish with awaitReplyInMs → the store's reply at the cloud; raw: send, receive, complete,
 *   reply send to an inbox queue, reply receive correlated by id.
 * Each queue path has its "raw + signatures" too: the operation signed per call and verified at the store, the
 * store's answer signed, sent back (for one-way operations as well: every outcome is known at the cloud) and verified.
 * Each sequentially (p50/p99) and with 32 in flight (per second), for 1 store and for all stores. A store's queue is
 * handled one message at a time on both sides (storelink's default, for ordering).
 *
 *   node --import tsx bench/wholePath.bench.ts
 *   env: BENCH_SMOKE=1 (tiny counts, 2 stores), BENCH_STORES=<n> (default 100), BENCH_TRANSPORT=tls-websockets|amqp,
 *        BENCH_PROFILE=<dir> (CPU profiles of the emulator, cloud and store processes, <dir>/<process>/*.<pid>.0.*.cpuprofile for the main thread; read them with profileTop.ts), BENCH_ONLY=realtime,oneway,requestreply,
 *        BENCH_IN_FLIGHT=1,32 (the concurrencies measured)
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { generateSigningKeyPair, keyPairToPem } from '../src/core/signing.js';
import { forkChild, nextMessage, stopChild, type ChildToParent, type KeyPem, type MeasureRequest, type Measurement, type ParentToChild, type Transport } from './wholePath/protocol.js';

const smoke = process.env['BENCH_SMOKE'] === '1';
const storeTotal = Number(process.env['BENCH_STORES'] ?? (smoke ? 2 : 100));
const transport = (process.env['BENCH_TRANSPORT'] ?? 'tls-websockets') as Transport;
const profileDir = process.env['BENCH_PROFILE'];
const only = new Set((process.env['BENCH_ONLY'] ?? 'realtime,oneway,requestreply').split(','));
const inFlights = (process.env['BENCH_IN_FLIGHT'] ?? '1,32').split(',').map(Number);
if (!inFlights.every((n) => Number.isSafeInteger(n) && n >= 1)) throw new TypeError(`BENCH_IN_FLIGHT must be positive integers separated by commas, got ${process.env['BENCH_IN_FLIGHT']}`);
const IN_FLIGHT = 32;

type PathName = MeasureRequest['path'];
const COUNTS: Record<PathName, { sequential: number; concurrent: number; warmUp: number }> = smoke
  ? { realtime: { sequential: 6, concurrent: 12, warmUp: 2 }, oneway: { sequential: 4, concurrent: 8, warmUp: 2 }, requestreply: { sequential: 4, concurrent: 8, warmUp: 2 } }
  : {
      realtime: { sequential: 500, concurrent: 1_500, warmUp: 100 },
      oneway: { sequential: 150, concurrent: 500, warmUp: 50 },
      requestreply: { sequential: 150, concurrent: 500, warmUp: 50 },
    };

interface Row {
  path: PathName;
  stores: number;
  inFlight: number;
  raw: Measurement;
  /** The raw parts with what the design adds: signatures both ways, and every outcome sent back. */
  signed: Measurement;
  storelink: Measurement;
  /** CPU ms per call (warm-up included) of each process kind, for each side; absent where /proc is not there. */
  cpu?: { raw: CpuPerCall; signed?: CpuPerCall; storelink: CpuPerCall };
}

type CpuPerCall = Record<'cloud' | 'stores' | 'emulators', number>;

/**
 * The CPU time (user + system, ms) a process has used so far, from /proc (Linux); undefined elsewhere. On a shared
 * machine a call's latency counts the waits for a core too; its CPU time does not, so the two sides compare fairly.
 */
const clockTicksPerSecond = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  } catch {
    return Number.NaN;
  }
})();
function cpuMsOf(child: ChildProcess): number | undefined {
  try {
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
    return Number.isFinite(ms) ? ms : undefined;
  } catch {
    return undefined;
  }
}

function keyPem(keyId: string): KeyPem {
  return { keyId, ...keyPairToPem(generateSigningKeyPair()) };
}

const work = await mkdtemp(path.join(tmpdir(), 'storelink-wholepath-'));
const children: ChildProcess[] = [];
// One folder per process: with a fixed --cpu-prof-name, tsx's loader thread wrote its profile over the main thread's.
// Node's own names end in .<pid>.<thread id>.<seq>.cpuprofile; the main thread's id is 0.
const profileArgs = (name: string) => (profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', path.join(profileDir, name)]);
const rows: Row[] = [];
try {
  const storeIds = Array.from({ length: storeTotal }, (_, i) => `bench-${i + 1}`);
  const emulator = forkChild('emulatorProcess.ts', { env: { BENCH_STORE_IDS: storeIds.join(','), BENCH_TRANSPORT: transport }, execArgv: profileArgs('emulators') });
  children.push(emulator);
  const { endpoints } = await nextMessage(emulator, 'endpoints');
  process.stderr.write(`emulators up (${transport})\n`);
  const env = endpoints.caFile === undefined ? {} : { NODE_EXTRA_CA_CERTS: endpoints.caFile };
  const cloudKey = keyPem('cloud-bench');
  const storeKeys = Object.fromEntries(storeIds.map((storeId) => [storeId, keyPem(`store-${storeId}`)]));
  const setup = { endpoints, cloudKey, storeKeys, dataDir: work };

  const cloud = forkChild('cloudProcess.ts', { env, execArgv: profileArgs('cloud') });
  children.push(cloud);
  const processes = storeTotal === 1 ? 1 : 2;
  const stores = Array.from({ length: processes }, (_, i) => forkChild('storeProcess.ts', { env, execArgv: profileArgs(`store-${i + 1}`) }));
  children.push(...stores);
  for (const store of stores) {
    store.on('message', (message: ChildToParent) => {
      if (message.type === 'executed') cloud.send(message satisfies ParentToChild);
    });
  }
  await Promise.all(
    stores.map((store, i) => {
      const ready = nextMessage(store, 'ready');
      // Store 1 (the one-store runs' store) lives in the first process; the others alternate.
      store.send({ type: 'setup-stores', setup: { ...setup, storeIds: storeIds.filter((_, n) => n % processes === i) } } satisfies ParentToChild);
      return ready;
    }),
  );
  process.stderr.write(`${storeTotal} store agents and raw listeners up\n`);
  const cloudReady = nextMessage(cloud, 'ready');
  cloud.send({ type: 'setup-cloud', setup: { ...setup, storeIds } } satisfies ParentToChild);
  await cloudReady;

  const kinds = { cloud: [cloud], stores, emulators: [emulator] };
  const cpuNow = (): CpuPerCall | undefined => {
    const totals = Object.fromEntries(Object.entries(kinds).map(([kind, processes]) => [kind, processes.reduce<number | undefined>((sum, child) => {
      const ms = cpuMsOf(child);
      return sum === undefined || ms === undefined ? undefined : sum + ms;
    }, 0)]));
    return Object.values(totals).some((ms) => ms === undefined) ? undefined : (totals as CpuPerCall);
  };
  const cpuPerCall = (before: CpuPerCall | undefined, after: CpuPerCall | undefined, calls: number): CpuPerCall | undefined =>
    before === undefined || after === undefined ? undefined : { cloud: (after.cloud - before.cloud) / calls, stores: (after.stores - before.stores) / calls, emulators: (after.emulators - before.emulators) / calls };
  let nextId = 0;
  const measure = async (request: MeasureRequest): Promise<Measurement> => {
    const id = nextId++;
    const answer = new Promise<Measurement>((resolve, reject) => {
      const onMessage = (message: ChildToParent) => {
        if (message.type === 'measured' && message.id === id) {
          cloud.off('message', onMessage);
          resolve(message.measurement);
        } else if (message.type === 'failed') {
          cloud.off('message', onMessage);
          reject(new Error(message.message));
        }
      };
      cloud.on('message', onMessage);
    });
    cloud.send({ type: 'measure', id, request } satisfies ParentToChild);
    return answer;
  };
  // Every side of every path once before anything is timed: the first row's raw side would otherwise pay for the
  // emulators' and the SDKs' warm-up (JIT, first connections) that the sides after it find done.
  for (const pathName of ['realtime', 'oneway', 'requestreply'] as const) {
    if (!only.has(pathName)) continue;
    const { warmUp } = COUNTS[pathName];
    for (const side of ['raw', 'signed', 'storelink'] as const) await measure({ path: pathName, side, inFlight: 4, count: warmUp * 2, warmUp, storeCount: storeTotal });
  }
  process.stderr.write('every path warmed up on every side\n');
  for (const storeCount of [...new Set([1, storeTotal])]) {
    for (const pathName of ['realtime', 'oneway', 'requestreply'] as const) {
      if (!only.has(pathName)) continue;
      for (const inFlight of inFlights) {
        const counts = COUNTS[pathName];
        const request = { path: pathName, inFlight, count: inFlight === 1 ? counts.sequential : counts.concurrent, warmUp: counts.warmUp, storeCount };
        const calls = request.count + request.warmUp;
        const rawStart = cpuNow();
        const raw = await measure({ ...request, side: 'raw' });
        const signedStart = cpuNow();
        const signed = await measure({ ...request, side: 'signed' });
        const storelinkStart = cpuNow();
        const storelink = await measure({ ...request, side: 'storelink' });
        const rawCpu = cpuPerCall(rawStart, signedStart, calls);
        const signedCpu = cpuPerCall(signedStart, storelinkStart, calls);
        const storelinkCpu = cpuPerCall(storelinkStart, cpuNow(), calls);
        rows.push({
          path: pathName,
          stores: storeCount,
          inFlight,
          raw,
          signed,
          storelink,
          ...(rawCpu === undefined || storelinkCpu === undefined ? {} : { cpu: { raw: rawCpu, ...(signedCpu === undefined ? {} : { signed: signedCpu }), storelink: storelinkCpu } }),
        });
        process.stderr.write(`measured ${JSON.stringify(rows.at(-1))}\n`);
      }
    }
  }
} finally {
  await Promise.all(children.slice(1).map((child) => stopChild(child)));
  if (children[0] !== undefined) await stopChild(children[0]);
  await rm(work, { recursive: true, force: true });
}

const LABEL: Record<PathName, string> = { realtime: 'real time', oneway: 'queue one-way', requestreply: 'queue request/reply' };
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
const total = (cpu: CpuPerCall) => cpu.cloud + cpu.stores + cpu.emulators;
console.log(`whole path over ${transport}${smoke ? ' (smoke: counts too small to mean anything)' : ''}; ${storeTotal} stores in ${storeTotal === 1 ? 1 : 2} store processes`);
// Both sides of the queue rows read alike (the raw parts in wholePath/storeProcess.ts and cloudProcess.ts): the same
// store concurrency, so the ratios compare the same ordering rule.
console.log(
  'queue rows: each store queue handled one message at a time on both sides (storelink consumer concurrency 1, the default; raw subscribe maxConcurrentCalls 1); ' +
    'replies read 16 at a time on both sides (the dispatcher inbox consumer; raw inbox maxConcurrentCalls 16); storelink signs and verifies every message, raw sends one pre-signed envelope and verifies nothing',
);
console.log(
  '"raw + signatures": the raw parts with the signatures the design puts on each path and nothing else (the cloud signs each operation, the store verifies it and signs its answer, the cloud verifies that; ' +
    'on the queue the answer also goes back for one-way operations, as every outcome must be known): the floor any implementation of the design pays',
);
console.log('| path | stores | in flight | figure | raw | storelink | storelink / raw | target | raw + signatures | storelink / raw + signatures |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
const summary: Record<string, number>[] = [];
for (const row of rows) {
  const { raw, signed, storelink } = row;
  const head = `| ${LABEL[row.path]} | ${row.stores} | ${row.inFlight}`;
  const floor = (figure: (measurement: Measurement) => number, unit: string, digits: number) => ` | ${figure(signed).toFixed(digits)}${unit} | ${ratio(figure(storelink), figure(signed))} |`;
  if (row.inFlight === 1) {
    const latencyTarget = row.path === 'realtime' ? ['≤ 1.3×', '≤ 1.5×'] : ['', ''];
    console.log(`${head} | p50 | ${raw.p50Ms.toFixed(2)} ms | ${storelink.p50Ms.toFixed(2)} ms | ${ratio(storelink.p50Ms, raw.p50Ms)} | ${latencyTarget[0]}${floor((m) => m.p50Ms, ' ms', 2)}`);
    console.log(`${head} | p99 | ${raw.p99Ms.toFixed(2)} ms | ${storelink.p99Ms.toFixed(2)} ms | ${ratio(storelink.p99Ms, raw.p99Ms)} | ${latencyTarget[1]}${floor((m) => m.p99Ms, ' ms', 2)}`);
  }
  const rateTarget = row.path === 'realtime' ? (row.inFlight === 1 ? '' : '≥ 0.75×') : row.path === 'oneway' ? '≥ 0.9×' : '≥ 0.8×';
  console.log(`${head} | per second | ${raw.perSecond.toFixed(0)} | ${storelink.perSecond.toFixed(0)} | ${ratio(storelink.perSecond, raw.perSecond)} | ${rateTarget}${floor((m) => m.perSecond, '', 0)}`);
  summary.push({
    stores: row.stores,
    inFlight: row.inFlight,
    rawP50Ms: raw.p50Ms,
    rawP99Ms: raw.p99Ms,
    rawPerSecond: raw.perSecond,
    storelinkP50Ms: storelink.p50Ms,
    storelinkP99Ms: storelink.p99Ms,
    storelinkPerSecond: storelink.perSecond,
    p50Ratio: storelink.p50Ms / raw.p50Ms,
    p99Ratio: storelink.p99Ms / raw.p99Ms,
    rateRatio: storelink.perSecond / raw.perSecond,
    signedP50Ms: signed.p50Ms,
    signedP99Ms: signed.p99Ms,
    signedPerSecond: signed.perSecond,
    p50RatioToSigned: storelink.p50Ms / signed.p50Ms,
    rateRatioToSigned: storelink.perSecond / signed.perSecond,
    signedFailures: signed.failures,
    ...(row.cpu === undefined ? {} : { rawCpuMsPerCall: total(row.cpu.raw), storelinkCpuMsPerCall: total(row.cpu.storelink) }),
    ...(row.cpu?.signed === undefined ? {} : { signedCpuMsPerCall: total(row.cpu.signed) }),
    rawFailures: raw.failures,
    storelinkFailures: storelink.failures,
  });
  if (raw.failures + signed.failures + storelink.failures > 0) {
    console.log(`  (failed calls, not timed: raw ${raw.failures}, raw + signatures ${signed.failures}, storelink ${storelink.failures}; last: ${storelink.lastFailure ?? signed.lastFailure ?? raw.lastFailure ?? ''})`);
  }
}
if (rows.some((row) => row.cpu !== undefined)) {
  console.log('CPU ms per call, every process of the kind (warm-up included; not slowed by waiting for a core):');
  console.log('| path | stores | in flight | side | cloud | stores | emulators | total | / raw |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const row of rows) {
    if (row.cpu === undefined) continue;
    for (const side of ['raw', 'signed', 'storelink'] as const) {
      const cpu = row.cpu[side];
      if (cpu === undefined) continue;
      const last = side === 'raw' ? '' : ratio(total(cpu), total(row.cpu.raw));
      const name = side === 'signed' ? 'raw + signatures' : side;
      console.log(`| ${LABEL[row.path]} | ${row.stores} | ${row.inFlight} | ${name} | ${cpu.cloud.toFixed(3)} | ${cpu.stores.toFixed(3)} | ${cpu.emulators.toFixed(3)} | ${total(cpu).toFixed(3)} | ${last} |`);
    }
  }
}
for (const stores of [...new Set(rows.map((row) => row.stores))]) {
  const sequential = rows.find((row) => row.path === 'requestreply' && row.stores === stores && row.inFlight === 1);
  const concurrent = rows.find((row) => row.path === 'requestreply' && row.stores === stores && row.inFlight === IN_FLIGHT);
  if (sequential !== undefined && concurrent !== undefined) {
    console.log(`queue request/reply, ${stores} store(s): ${IN_FLIGHT} in flight is ${ratio(concurrent.storelink.perSecond, sequential.storelink.perSecond)} the sequential rate (target: > 1×)`);
  }
}
console.log(
  `BENCH_JSON ${JSON.stringify({
    bench: 'wholePath',
    transport,
    smoke,
    stores: storeTotal,
    node: process.version,
    rows: rows.map((row, i) => ({ path: row.path, ...summary[i] })),
  })}`,
);
