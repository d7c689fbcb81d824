/**
 * The whole path through several cloud instances, as a retail cloud deploys them, against one: the emulators in one
 * process (one TLS port, Service Bus over WebSockets, the relay over https/wss), one PostgreSQL server (embedded),
 * `storelink cloud` processes started through the CLI (`--instance-id`, the inbox a topic, the shared database,
 * signatures on, logging at the CLI's default level into files), the stores' agents in two store processes, and this
 * process as the cloud application: it publishes through the instances' HTTP APIs, each call to the next instance in
 * turn, over an undici Pool per instance. Each run through one instance, then through three, back to back (the same
 * emulators, database and stores):
 *
 * - real time (`latency: 'realtime'`: the HTTP answer carries the store's reply over the relay);
 * - queue request/reply (`awaitReplyInMs`: the store's reply comes back through the inbox topic's replies session);
 * each sequentially (p50/p99) and with 32 and 96 calls in flight in total (per second). Every answer is checked
 * (channel, delivered, the reply to that payload); failures are counted and make the run fail. Beside each run, the
 * CPU each process used, so the scaling figure says what limits it.
 *
 *   node --import tsx bench/instances.bench.ts
 *   env: BENCH_SMOKE=1 (tiny counts, 2 stores), BENCH_STORES=<n> (default 20), BENCH_ONLY=realtime,requestreply
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { generateSigningKeyPair, keyPairToPem } from '../src/core/signing.js';
import { embeddedPostgresUnavailable, startEmbeddedPostgres, type EmbeddedPostgresServer } from '../test/support/embeddedPostgres.js';
import { forkChild, nextMessage, stopChild, type KeyPem, type ParentToChild } from './wholePath/protocol.js';
import { startCloudInstance, untilRelayLinks, writeCloudDeployment, type CloudInstance } from './instances/cloudInstances.js';
import { CpuMeter, machineBusyCpuSeconds, postmasterPid, processCpuSeconds, treeCpuSeconds } from './instances/cpuTime.js';
import { Driver, type Measurement, type PathName } from './instances/driver.js';

const smoke = process.env['BENCH_SMOKE'] === '1';
const storeTotal = Number(process.env['BENCH_STORES'] ?? (smoke ? 2 : 20));
const only = new Set((process.env['BENCH_ONLY'] ?? 'realtime,requestreply').split(','));
const INSTANCE_IDS = ['cloud-a', 'cloud-b', 'cloud-c'];
const INSTANCE_COUNTS = [1, INSTANCE_IDS.length];
const IN_FLIGHT = [1, 32, 96];
const cpus = availableParallelism();

/** Each timed run stops issuing calls after this long, whatever its count: `npm run bench` stays short on a busy machine. */
const MAX_SECONDS = smoke ? 30 : 4;
const COUNTS: Record<PathName, { sequential: number; concurrent: number; warmUp: number }> = smoke
  ? { realtime: { sequential: 4, concurrent: 16, warmUp: 2 }, requestreply: { sequential: 4, concurrent: 16, warmUp: 2 } }
  : { realtime: { sequential: 400, concurrent: 2_000, warmUp: 100 }, requestreply: { sequential: 150, concurrent: 800, warmUp: 50 } };

interface Row {
  path: PathName;
  inFlight: number;
  instances: number;
  measurement: Measurement;
  /** Per process: cores busy during the timed run (CPU seconds per wall second). */
  cpu: Record<string, number>;
  /** The whole machine's busy cores meanwhile: ours and any other program's. */
  machine: number;
}

const began = performance.now();
const progress = (text: string) => process.stderr.write(`[${((performance.now() - began) / 1000).toFixed(1)} s] ${text}\n`);
const keyPem = (keyId: string): KeyPem => ({ keyId, ...keyPairToPem(generateSigningKeyPair()) });

let database: EmbeddedPostgresServer;
try {
  database = await startEmbeddedPostgres();
} catch (error) {
  const unavailable = embeddedPostgresUnavailable(error);
  if (unavailable === undefined) throw error;
  console.log(`instances benchmark skipped: it ${unavailable}`);
  console.log(`BENCH_JSON ${JSON.stringify({ bench: 'instances', smoke, skipped: unavailable })}`);
  process.exit(0);
}

const work = await mkdtemp(path.join(tmpdir(), 'storelink-instances-'));
const children: ChildProcess[] = [];
const clouds: CloudInstance[] = [];
const rows: Row[] = [];
const drivers: Driver[] = [];
try {
  const storeIds = Array.from({ length: storeTotal }, (_, i) => `bench-${i + 1}`);
  const emulator = forkChild('emulatorProcess.ts', { env: { BENCH_STORE_IDS: storeIds.join(','), BENCH_INSTANCES: INSTANCE_IDS.join(',') } });
  children.push(emulator);
  const { endpoints } = await nextMessage(emulator, 'endpoints');
  const env = endpoints.caFile === undefined ? {} : { NODE_EXTRA_CA_CERTS: endpoints.caFile };
  const cloudKey = keyPem('cloud-bench');
  const storeKeys = Object.fromEntries(storeIds.map((storeId) => [storeId, keyPem(`store-${storeId}`)]));

  const processes = storeTotal === 1 ? 1 : 2;
  const stores = Array.from({ length: processes }, () => forkChild('storeProcess.ts', { env }));
  children.push(...stores);
  await Promise.all(
    stores.map((store, i) => {
      const ready = nextMessage(store, 'ready');
      const setup = { endpoints, cloudKey, storeKeys, dataDir: path.join(work, 'stores'), raw: false, storeIds: storeIds.filter((_, n) => n % processes === i) };
      store.send({ type: 'setup-stores', setup } satisfies ParentToChild);
      return ready;
    }),
  );
  progress(`emulators, PostgreSQL and ${storeTotal} store agents up`);

  const deployment = await writeCloudDeployment(path.join(work, 'cloud'), { endpoints, cloudKey, storeKeys, storeIds, databaseConnectionString: database.connectionString });
  const databaseDir = decodeURIComponent(/[?&]host=([^&]+)/.exec(database.connectionString)![1]!);
  const started = process.cpuUsage();
  const meter = new CpuMeter({
    driver: () => {
      const used = process.cpuUsage(started);
      return (used.user + used.system) / 1e6;
    },
    ...Object.fromEntries(stores.map((store, i) => [`stores-${i + 1}`, () => processCpuSeconds(store.pid)])),
    emulators: () => processCpuSeconds(emulator.pid),
    postgres: () => treeCpuSeconds(postmasterPid(databaseDir)),
  });
  const machineMeter = new CpuMeter({ machine: machineBusyCpuSeconds });

  // All three start at once; each run goes through the first alone, then through all three, back to back (the order
  // alternating from one run to the next), so both sides of a ratio see the same machine: it is shared, and its load
  // drifts. The two instances a one-instance run leaves idle cost next to nothing (their CPU is in the table).
  clouds.push(...(await Promise.all(INSTANCE_IDS.map((id) => startCloudInstance(deployment, id)))));
  await Promise.all(clouds.map((cloud) => untilRelayLinks(cloud, deployment)));
  for (const cloud of clouds) meter.add(cloud.id, () => processCpuSeconds(cloud.pid));
  progress(`${clouds.length} cloud instances serving: ${clouds.map((cloud) => `${cloud.id} ${cloud.url}`).join(', ')}`);
  const driverOf = new Map(INSTANCE_COUNTS.map((count) => [count, new Driver(clouds.slice(0, count).map((cloud) => cloud.url), storeIds, deployment.apiKey)] as const));
  drivers.push(...driverOf.values());
  let turn = 0;
  for (const pathName of ['realtime', 'requestreply'] as const) {
    if (!only.has(pathName)) continue;
    for (const inFlight of IN_FLIGHT) {
      const counts = COUNTS[pathName];
      const order = turn++ % 2 === 0 ? INSTANCE_COUNTS : [...INSTANCE_COUNTS].reverse();
      for (const instanceCount of order) {
        const request = { path: pathName, inFlight, count: inFlight === 1 ? counts.sequential : counts.concurrent, warmUp: counts.warmUp, maxSeconds: MAX_SECONDS };
        const measurement = await driverOf.get(instanceCount)!.measure(request, () => {
          meter.start();
          machineMeter.start();
        });
        rows.push({ path: pathName, inFlight, instances: instanceCount, measurement, cpu: meter.since(), machine: machineMeter.since()['machine']! });
        progress(`measured ${JSON.stringify(rows.at(-1))}`);
      }
    }
  }
} finally {
  await Promise.all(drivers.map((driver) => driver.close()));
  await Promise.all(clouds.map((cloud) => cloud.stop()));
  await Promise.all(children.slice(1).map((child) => stopChild(child)));
  if (children[0] !== undefined) await stopChild(children[0]);
  await database.close();
  await rm(work, { recursive: true, force: true });
  progress('every process stopped');
}

const LABEL: Record<PathName, string> = { realtime: 'real time', requestreply: 'queue request/reply' };
const many = INSTANCE_COUNTS.at(-1)!;
const find = (pathName: PathName, inFlight: number, instances: number) => rows.find((row) => row.path === pathName && row.inFlight === inFlight && row.instances === instances);
const ms = (value: number) => `${value.toFixed(2)} ms`;
const cores = (value: number) => (Number.isFinite(value) ? value.toFixed(2) : 'n/a');
const sum = (cpu: Record<string, number>, prefix: string) => Object.entries(cpu).filter(([name]) => name.startsWith(prefix)).reduce((total, [, value]) => total + value, 0);

console.log(
  `whole path through 1 and ${many} storelink cloud instances${smoke ? ' (smoke: counts too small to mean anything)' : ''}; ${storeTotal} stores in ${storeTotal === 1 ? 1 : 2} store processes; each run ${COUNTS.realtime.sequential}/${COUNTS.realtime.concurrent} real-time and ${COUNTS.requestreply.sequential}/${COUNTS.requestreply.concurrent} queued calls (sequential/in flight), or ${MAX_SECONDS} s; this machine has ${cpus} CPU${cpus === 1 ? '' : 's'}`,
);
console.log(`| path | in flight | figure | 1 instance | ${many} instances | ${many} / 1 |`);
console.log('| --- | --- | --- | --- | --- | --- |');
const scaling: Record<string, unknown>[] = [];
for (const pathName of ['realtime', 'requestreply'] as const) {
  for (const inFlight of IN_FLIGHT) {
    const one = find(pathName, inFlight, 1);
    const several = find(pathName, inFlight, many);
    if (one === undefined || several === undefined) continue;
    const head = `| ${LABEL[pathName]} | ${inFlight}`;
    if (inFlight === 1) {
      console.log(`${head} | p50 | ${ms(one.measurement.p50Ms)} | ${ms(several.measurement.p50Ms)} | ${(several.measurement.p50Ms / one.measurement.p50Ms).toFixed(2)}× |`);
      console.log(`${head} | p99 | ${ms(one.measurement.p99Ms)} | ${ms(several.measurement.p99Ms)} | ${(several.measurement.p99Ms / one.measurement.p99Ms).toFixed(2)}× |`);
    }
    const rateRatio = several.measurement.perSecond / one.measurement.perSecond;
    console.log(`${head} | per second | ${one.measurement.perSecond.toFixed(0)} | ${several.measurement.perSecond.toFixed(0)} | ${rateRatio.toFixed(2)}× |`);
    scaling.push({
      path: pathName,
      inFlight,
      p50Ratio: several.measurement.p50Ms / one.measurement.p50Ms,
      p99Ratio: several.measurement.p99Ms / one.measurement.p99Ms,
      rateRatio,
    });
  }
}

const processNames = [...new Set(rows.flatMap((row) => Object.keys(row.cpu)))];
console.log(`\nCPU per process during each timed run, in cores (1.00 = one core busy throughout; ${cpus} available):`);
// CPU per call (all our processes) bounds the rate: this machine's cores can carry at most cpus / (CPU per call) a second.
console.log(`| path | in flight | instances | ${processNames.join(' | ')} | these together | other programs | whole machine | our CPU per call | rate ${cpus} cores allow at that cost |`);
console.log(`| --- | --- | --- | ${processNames.map(() => '---').join(' | ')} | --- | --- | --- | --- | --- |`);
for (const row of rows) {
  const total = Object.values(row.cpu).reduce((all, value) => all + value, 0);
  const cells = processNames.map((name) => cores(row.cpu[name] ?? Number.NaN)).join(' | ');
  const perCallMs = (total / row.measurement.perSecond) * 1000;
  console.log(
    `| ${LABEL[row.path]} | ${row.inFlight} | ${row.instances} | ${cells} | ${cores(total)} | ${cores(Math.max(0, row.machine - total))} | ${cores(row.machine)} | ${Number.isFinite(perCallMs) ? `${perCallMs.toFixed(2)} ms` : 'n/a'} | ${Number.isFinite(perCallMs) ? ((cpus * 1000) / perCallMs).toFixed(0) : 'n/a'} |`,
  );
}
// What limits the figure with several instances: the machine's cores, one process's one JavaScript thread, or neither.
for (const row of rows.filter((candidate) => candidate.instances === many && candidate.inFlight === IN_FLIGHT.at(-1))) {
  const total = Object.values(row.cpu).reduce((all, value) => all + value, 0);
  if (!Number.isFinite(total)) {
    console.log(`${LABEL[row.path]}, ${row.inFlight} in flight: no CPU figures on this platform (they come from /proc)`);
    continue;
  }
  const groups = { 'cloud instances': sum(row.cpu, 'cloud-'), stores: sum(row.cpu, 'stores-'), emulators: row.cpu['emulators']!, PostgreSQL: row.cpu['postgres']!, driver: row.cpu['driver']! };
  const [busiestName, busiest] = Object.entries(row.cpu).sort((a, b) => b[1] - a[1])[0]!;
  const shares = Object.entries(groups).map(([name, value]) => `${name} ${cores(value)}`).join(', ');
  const others = Math.max(0, row.machine - total);
  const largest = Object.entries(groups).sort((a, b) => b[1] - a[1])[0]![0];
  const verdict =
    row.machine >= 0.9 * cpus
      ? `the machine is saturated (${cores(row.machine)} of ${cpus} cores busy, ${cores(others)} of them other programs'), so more instances only share the same cores; of ours, the largest share is the ${largest}'s`
      : busiest >= 0.9
        ? `${busiestName} is at one core (its JavaScript runs on one thread): it is the bottleneck`
        : `no process is at a core and the machine is not saturated (${cores(row.machine)} of ${cpus} cores busy): the limit is waiting, not CPU`;
  const perCallMs = (total / row.measurement.perSecond) * 1000;
  const cost = `each call cost ${perCallMs.toFixed(2)} ms of CPU over our processes (${((groups['cloud instances'] / row.measurement.perSecond) * 1000).toFixed(2)} ms in the instances), so ${cpus} cores carry at most ${((cpus * 1000) / perCallMs).toFixed(0)}/s at that cost, however many instances share them`;
  console.log(`${LABEL[row.path]}, ${row.inFlight} in flight through ${many} instances: cores busy: ${shares}; ${verdict}; ${cost}`);
}

const failed = rows.filter((row) => row.measurement.failures > 0);
for (const row of failed) {
  console.log(`FAILED CALLS: ${LABEL[row.path]}, ${row.inFlight} in flight, ${row.instances} instance(s): ${row.measurement.failures} (last: ${row.measurement.lastFailure ?? ''})`);
}
console.log(
  `BENCH_JSON ${JSON.stringify({
    bench: 'instances',
    smoke,
    stores: storeTotal,
    cpus,
    node: process.version,
    rows: rows.map((row) => ({
      path: row.path,
      inFlight: row.inFlight,
      instances: row.instances,
      ...row.measurement,
      cpu: row.cpu,
      machineCpu: row.machine,
      cpuMsPerCall: (Object.values(row.cpu).reduce((all, value) => all + value, 0) / row.measurement.perSecond) * 1000,
    })),
    scaling,
  })}`,
);
// Figures with failed calls are not comparable: the run says so, and fails.
if (failed.length > 0) process.exitCode = 1;
