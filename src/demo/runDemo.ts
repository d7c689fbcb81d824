/**
 * The embedded demo (`npm start`): both emulators, a cloud dispatcher and N stores as separate processes running the
 * sample click-and-collect store, through a scripted retail morning with faults, then a reconciliation of both sides'
 * records. A composition root: it may use every part of storelink.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { Duplex } from 'node:stream';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createDispatcher, type Delivery, type Dispatcher, type PublishRequest } from '../cloud/dispatcher.js';
import { newApiKey } from '../cloud/apiKeys.js';
import { writeApiKeyFile } from '../cloud/apiKeyFile.js';
import { createCloudHttpApi, type CloudHttpApi } from '../cloud/httpApi.js';
import { topStateOf } from '../cloud/storeLinks.js';
import { createDeadLetterQueue } from '../channels/servicebus/deadLetterQueue.js';
import { chartModelOf } from '../charts/chartModel.js';
import { BUILT_IN_CHARTS } from '../charts/loadChart.js';
import { parsePolicy } from '../core/policy.js';
import { ensureDevelopmentCertificates, tlsConnectionString } from '../emulator/index.js';
import { startRelayEmulator, type AcceptConnectionOptions, type RelayEmulator } from '../emulator/relay/index.js';
import { startServiceBusEmulator, type ServiceBusEmulator } from '../emulator/servicebus/index.js';
import { startTlsPort } from '../emulator/tlsPort.js';
import { openLedger } from '../store/ledger.js';
import { storelinkPackage } from '../packageRoot.js';

export interface DemoOptions {
  stores: number;
  durationInSeconds: number;
  seed: number;
  faults: boolean;
  /** Redraws a live table when true; prints a line per event otherwise. */
  live: boolean;
  write: (text: string) => void;
}

export interface DemoReport {
  stores: { storeId: string; bidirectional: boolean; link: string; deliveries: Record<string, number>; fallbacks: Record<string, number> }[];
  published: number;
  outcomes: Record<string, number>;
  fallbacks: number;
  executed: number;
  deadLettered: { operationId: string; reason: string }[];
  rejected: { operationId: string; code: string }[];
  servedCached: number;
  lost: string[];
  duplicated: string[];
  faults: string[];
  reconciled: boolean;
}

/** A small deterministic PRNG (mulberry32): the same seed plays the same morning. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SKUS = ['SKU-COFFEE-1KG', 'SKU-TEA-GREEN', 'SKU-MUG-BLUE', 'SKU-KETTLE', 'SKU-FILTERS-100'];
const CITIES = ['paris', 'lyon', 'nice', 'lille', 'nantes', 'brest', 'dijon', 'metz', 'caen', 'tours'];

interface StoreProcess {
  storeId: string;
  bidirectional: boolean;
  dataDir: string;
  configFile: string;
  child: ChildProcess | undefined;
  log: string;
}

const cliEntry = (): string => {
  const here = fileURLToPath(import.meta.url);
  return path.join(path.dirname(here), '..', 'cli', here.endsWith('.ts') ? 'main.ts' : 'main.js');
};

// From source (tsx) a child needs the TypeScript loader; from dist/ it runs as plain JavaScript.
const loader = (): string[] => (cliEntry().endsWith('.ts') ? ['--import', 'tsx'] : []);

/** `storelink provision` itself, as a child process; the Manage connection string goes by environment, not argv. */
async function runProvision(args: string[], connectionString: string): Promise<void> {
  await promisify(execFile)(process.execPath, [...loader(), cliEntry(), 'provision', ...args], {
    env: { ...process.env, STORELINK_PROVISION_CONNECTION_STRING: connectionString },
  });
}

/** What the demo's cloud takes from the cloud.json `storelink provision` wrote (key files read, relative to it). */
async function readProvisionedCloud(file: string) {
  const base = path.dirname(file);
  const text = (relative: string) => readFile(path.resolve(base, relative), 'utf8');
  const config = JSON.parse(await readFile(file, 'utf8')) as {
    serviceBus: { connectionString: string };
    relay?: { connectionString: string };
    stores: { storeId: string; bidirectional: boolean; publicKeys: Record<string, string> }[];
    signing: { keyId: string; privateKeyFile: string };
    http: { apiKeysFile: string };
    tls?: { caFile: string };
  };
  return {
    serviceBus: config.serviceBus,
    ...(config.relay === undefined ? {} : { relay: config.relay }),
    ...(config.tls === undefined ? {} : { tls: { caFile: path.resolve(base, config.tls.caFile) } }),
    stores: await Promise.all(
      config.stores.map(async (store) => ({
        ...store,
        publicKeys: Object.fromEntries(await Promise.all(Object.entries(store.publicKeys).map(async ([keyId, pem]) => [keyId, await text(pem)] as const))),
      })),
    ),
    signing: { keyId: config.signing.keyId, privateKey: await text(config.signing.privateKeyFile) },
    apiKeysFile: path.resolve(base, config.http.apiKeysFile),
  };
}

function startStoreProcess(store: StoreProcess): void {
  const child = spawn(process.execPath, [...loader(), cliEntry(), 'store', '--config', store.configFile, '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // Keep the store's warnings for the report (a store's log is JSON lines on stderr).
  child.stderr?.on('data', (chunk: Buffer) => {
    store.log += chunk.toString('utf8');
    if (store.log.length > 200_000) store.log = store.log.slice(-100_000);
  });
  store.child = child;
}

async function stopStoreProcess(store: StoreProcess, signal: NodeJS.Signals): Promise<void> {
  const child = store.child;
  store.child = undefined;
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

export async function runDemo(options: DemoOptions): Promise<DemoReport> {
  const rand = random(options.seed);
  const work = await mkdtemp(path.join(tmpdir(), 'storelink-demo-'));
  const faults: string[] = [];
  const say = (text: string) => {
    faults.push(text);
    if (!options.live) options.write(`${text}\n`);
  };
  // Every store runs from the store.json `storelink provision` writes for it, the cloud from its cloud.json.
  const provisioned = path.join(work, 'provisioned');
  const stores: StoreProcess[] = Array.from({ length: options.stores }, (_, index) => {
    const storeId = `${CITIES[index % CITIES.length]}-${index + 1}`;
    return {
      storeId,
      bidirectional: index % 3 !== 2,
      dataDir: path.join(provisioned, storeId, 'data'),
      configFile: path.join(provisioned, storeId, 'store.json'),
      child: undefined,
      log: '',
    };
  });
  // No queue is declared here: `storelink provision` creates them, with their rules, through the management API. The
  // emulator journals what it creates, so a restart (a fault below) comes back with the same queues and keys.
  const busDir = path.join(work, 'servicebus');
  const busOptions = { dataDir: busDir };
  let serviceBus: ServiceBusEmulator = await startServiceBusEmulator(busOptions);
  // The relay takes its rules only at start, from the provisioner's Config.json fragment. Until provisioning wrote it,
  // a relay with no hybrid connection stands behind the TLS port (its HTTP stack carries the management requests
  // there); then the TLS port hands new connections to the relay started with the fragment.
  let relay: RelayEmulator = await startRelayEmulator({ port: null });
  // The stores and the cloud connect the production way: one TLS port for both emulators (Azure's 443 in miniature),
  // with a development CA of this run that their configs trust through tls.caFile, production-form connection
  // strings; the stores use Service Bus over WebSockets. The port hands AMQP and management requests to whichever
  // Service Bus emulator runs now (a fault below restarts it).
  const certificates = await ensureDevelopmentCertificates({ dir: path.join(work, 'tls') });
  const tlsPort = await startTlsPort({
    host: '127.0.0.1',
    port: 0,
    cert: certificates.server.cert,
    key: certificates.server.key,
    serviceBus: {
      acceptConnection: (socket) => serviceBus.acceptConnection(socket),
      handleUpgrade: (req, socket, head) => serviceBus.handleUpgrade(req, socket, head),
      handleManagementRequest: (req, res) => serviceBus.handleManagementRequest(req, res),
    },
    relay: {
      acceptConnection: (socket: Duplex, accept?: AcceptConnectionOptions) => relay.acceptConnection(socket, accept),
    },
  });
  const storeConnection = tlsConnectionString(tlsPort.port);
  let dispatcher: Dispatcher | undefined;
  let api: CloudHttpApi | undefined;
  let apiUrl = '';
  let publishOverHttp: (request: PublishRequest) => Promise<void> = () => Promise.reject(new Error('the cloud HTTP API is not up'));
  const deliveries: Delivery[] = [];
  try {
    // `storelink provision`'s own code, against the TLS port's management API with the namespace's Manage key: a
    // queue per store with its rules, the inbox, the relay rules, signing keys, one store.json per store holding only
    // its own credentials (Listen on its queue, a pre-issued Send token for the inbox, Listen on its hybrid
    // connection, its signing key, the cloud's public key) and cloud.json (Send on store queues, Listen on the inbox).
    const storesFile = path.join(work, 'stores.json');
    const storeModule = path.join(storelinkPackage().root, 'samples', 'store-click-and-collect', 'store.ts');
    await writeFile(storesFile, JSON.stringify({ module: storeModule, stores: stores.map(({ storeId, bidirectional }) => ({ storeId, bidirectional })) }));
    await runProvision(['--stores', storesFile, '--out', provisioned, '--token-days', '1', '--ca-file', certificates.caFile], storeConnection);
    const fragment = JSON.parse(await readFile(path.join(provisioned, 'relay', 'hybrid-connections.json'), 'utf8')) as {
      HybridConnections: { Name: string; AuthorizationRules: { KeyName: string; PrimaryKey: string; Rights: ('Listen' | 'Send')[] }[] }[];
    };
    await relay.close();
    relay = await startRelayEmulator({
      port: null,
      hybridConnections: fragment.HybridConnections.map((hc) => ({
        name: hc.Name,
        authorizationRules: hc.AuthorizationRules.map((rule) => ({ keyName: rule.KeyName, primaryKey: rule.PrimaryKey, rights: rule.Rights })),
      })),
    });
    for (const store of stores) {
      // Two settings of this machine, not credentials: Service Bus over WebSockets, and no proxy (the emulators are
      // here, whatever proxy the environment names).
      const config = JSON.parse(await readFile(store.configFile, 'utf8')) as { serviceBus: Record<string, unknown> };
      await writeFile(store.configFile, JSON.stringify({ ...config, serviceBus: { ...config.serviceBus, transport: 'websockets' }, proxy: false }, null, 2) + '\n', { mode: 0o600 });
      await mkdir(store.dataDir, { recursive: true });
      startStoreProcess(store);
    }
    const cloud = await readProvisionedCloud(path.join(provisioned, 'cloud', 'cloud.json'));
    const policy = parsePolicy(JSON.parse(await readFile(path.join(storelinkPackage().root, 'samples', 'policies', 'policy.json'), 'utf8')));
    policy.link = { failureThreshold: 2, openCooldownInMs: 2_000, maxCooldownInMs: 8_000, probeIntervalInMs: 1_500, healthyProbeIntervalInMs: 5_000 };
    dispatcher = createDispatcher({
      // The same two settings of this machine as the stores': the CA reaches the SDK over WebSockets only, and no proxy.
      serviceBus: { ...cloud.serviceBus, transport: 'websockets', retry: { maxRetries: 2, retryDelayInMs: 100, timeoutInMs: 3_000 } },
      ...(cloud.relay === undefined ? {} : { relay: cloud.relay }),
      ...(cloud.tls === undefined ? {} : { tls: cloud.tls }),
      proxy: false,
      policy,
      stores: cloud.stores,
      signing: cloud.signing,
      dataDir: path.join(work, 'cloud'),
      // Operation records in the embedded PGlite under the cloud's data dir: GET /operations/:id answers from them.
      database: {},
    });
    await dispatcher.start();
    dispatcher.deliveries$.subscribe((delivery) => deliveries.push(delivery));
    // The cloud's HTTP API, as a cloud application uses it: the demo publishes through it with a publish key, and
    // prints a read-only key to try `GET /stores` or `/events` with while it runs.
    const publisher = newApiKey({ name: 'demo-publisher', scopes: ['publish'], now: Date.now() });
    const viewer = newApiKey({ name: 'viewer', scopes: ['read'], now: Date.now() });
    // A development key for the console: read, and admin so its resubmit buttons show.
    const operator = newApiKey({ name: 'console-operator', scopes: ['read', 'admin'], now: Date.now() });
    const apiKeysFile = cloud.apiKeysFile;
    await writeApiKeyFile(apiKeysFile, { keys: [publisher.record, viewer.record, operator.record] });
    api = createCloudHttpApi({
      dispatcher,
      apiKeysFile,
      console: { assetsDir: path.join(storelinkPackage().root, 'dist', 'console'), chart: chartModelOf(BUILT_IN_CHARTS['storeLink']!) },
      // The emulator's development key (Manage): this machine's own emulator, for the console's dead-letter pages.
      deadLetters: { connectionString: serviceBus.connectionString(), retry: { maxRetries: 1, retryDelayInMs: 100, timeoutInMs: 3_000 } },
    });
    const { port } = await api.listen();
    const baseUrl = `http://127.0.0.1:${port}`;
    apiUrl = `${baseUrl} (read-only: Authorization: Bearer ${viewer.presented})`;
    const consoleLine = `console: ${baseUrl}/console/ (sign in with the development key ${operator.presented}: read, admin)`;
    publishOverHttp = async ({ storeId, ...body }) => {
      const response = await fetch(`${baseUrl}/stores/${encodeURIComponent(storeId)}/operations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${publisher.presented}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        const { error } = (await response.json()) as { error: { code: string; message: string } };
        throw new Error(`${response.status} ${error.code}: ${error.message}`);
      }
    };
    options.write(`cloud HTTP API on ${apiUrl}\n`);
    options.write(`${consoleLine}\n`);
    apiUrl = `${apiUrl}\n${consoleLine}`;
    options.write(`stores provisioned with least-privilege credentials: ${provisioned}\n`);
    options.write(`stores connect over TLS on 127.0.0.1:${tlsPort.port}, Service Bus over WebSockets, CA ${certificates.caFile}\n`);
    if (!options.live) options.write(`starting ${stores.length} stores (${stores.filter((store) => store.bidirectional).length} bi-directional)\n`);
    await waitUntil(() => stores.every((store) => !store.bidirectional || relay.listenerCount(`store-${store.storeId}`) > 0), 60_000, 'the stores did not connect their relay listeners within 60 s');

    const durationInMs = options.durationInSeconds * 1000;
    const started = Date.now();
    const timeline = options.faults
      ? [
          { at: 0.2, run: () => cutRelay(stores[0]!) },
          { at: 0.45, run: () => restoreRelay(stores[0]!) },
          { at: 0.35, run: () => killStore(stores[Math.min(1, stores.length - 1)]!) },
          { at: 0.5, run: () => restartStore(stores[Math.min(1, stores.length - 1)]!) },
          { at: 0.65, run: () => restartServiceBus() },
        ].sort((a, b) => a.at - b.at)
      : [];
    function cutRelay(store: StoreProcess) {
      if (!store.bidirectional) return;
      relay.refuseListeners(`store-${store.storeId}`);
      relay.dropListeners(`store-${store.storeId}`);
      say(`fault: relay of ${store.storeId} cut (listeners dropped and refused)`);
    }
    function restoreRelay(store: StoreProcess) {
      if (!store.bidirectional) return;
      relay.acceptListeners(`store-${store.storeId}`);
      say(`fault over: relay of ${store.storeId} accepts listeners again`);
    }
    async function killStore(store: StoreProcess) {
      await stopStoreProcess(store, 'SIGKILL');
      say(`fault: store ${store.storeId} SIGKILLed`);
    }
    function restartStore(store: StoreProcess) {
      startStoreProcess(store);
      say(`fault over: store ${store.storeId} restarted`);
    }
    async function restartServiceBus() {
      const port = serviceBus.port;
      await serviceBus.close();
      say('fault: Service Bus emulator stopped');
      serviceBus = await startServiceBusEmulator({ ...busOptions, port });
      say('fault over: Service Bus emulator restarted with its data');
    }

    let orderNumber = 0;
    const inFlight = new Set<Promise<unknown>>();
    const render = setInterval(() => {
      if (options.live) options.write(renderTable(dispatcher!, stores, deliveries, faults, Date.now() - started, durationInMs, apiUrl));
    }, 500);
    try {
      while (Date.now() - started < durationInMs) {
        const elapsed = (Date.now() - started) / durationInMs;
        while (timeline.length > 0 && timeline[0]!.at <= elapsed) await Promise.resolve(timeline.shift()!.run());
        const store = stores[Math.floor(rand() * stores.length)]!;
        const roll = rand();
        const sku = SKUS[Math.floor(rand() * SKUS.length)]!;
        const request: PublishRequest =
          roll < 0.3
            ? { storeId: store.storeId, type: 'price.update', payload: { prices: { [sku]: Math.round(rand() * 5000) / 100 } } }
            : roll < 0.75
              ? {
                  storeId: store.storeId,
                  type: 'clickAndCollect.order',
                  payload: { orderId: `CC-${++orderNumber}`, customer: `customer-${Math.floor(rand() * 1000)}`, lines: [{ sku, quantity: 1 + Math.floor(rand() * 2) }] },
                }
              : { storeId: store.storeId, type: 'stock.query', payload: { skus: [sku] } };
        const call = publishOverHttp(request).catch((error: unknown) => {
          say(`publish failed: ${error instanceof Error ? error.message : String(error)}`);
        });
        inFlight.add(call);
        void call.finally(() => inFlight.delete(call));
        await new Promise((resolve) => setTimeout(resolve, 60 + rand() * 120));
      }
      for (const step of timeline) await Promise.resolve(step.run());
      await Promise.allSettled([...inFlight]);
    } finally {
      clearInterval(render);
    }
    // Every store must be up to catch up: restart any that is down.
    for (const store of stores) if (store.child === undefined) startStoreProcess(store);
    if (!options.live) options.write('draining: waiting for every store queue to empty\n');
    const undrained = await waitForDrain(() => serviceBus, stores, 60_000);
    if (Object.keys(undrained).length > 0) say(`queues not drained after 60 s: ${JSON.stringify(undrained)}`);
    for (const store of stores) await stopStoreProcess(store, 'SIGTERM');
    const deadLettered = await readDeadLetters(serviceBus.connectionString(), stores);
    const report = await reconcile(dispatcher, stores, deliveries, deadLettered, faults);
    if (process.env['STORELINK_DEMO_DEBUG'] !== undefined) {
      for (const store of stores) options.write(`--- ${store.storeId}\n${store.log}\n`);
      for (const delivery of deliveries) if (delivery.outcome === 'rejected') options.write(`rejected ${delivery.type} ${JSON.stringify(delivery.rejection)}\n`);
    }
    if (options.live) options.write(renderTable(dispatcher, stores, deliveries, faults, durationInMs, durationInMs, apiUrl));
    return report;
  } finally {
    await api?.close();
    await dispatcher?.close();
    for (const store of stores) await stopStoreProcess(store, 'SIGKILL').catch(() => undefined);
    await tlsPort.close();
    await relay.close();
    await serviceBus.close();
    await rm(work, { recursive: true, force: true });
  }
}

/** Polls a condition (the demo watches other processes, which offer no event to wait on). */
async function waitUntil(condition: () => boolean, limitInMs: number, failure: string): Promise<void> {
  const deadline = Date.now() + limitInMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(failure);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Waits until every store queue is empty; resolves with what is left when the time is up. */
async function waitForDrain(serviceBus: () => ServiceBusEmulator, stores: StoreProcess[], limitInMs: number): Promise<Record<string, number>> {
  const deadline = Date.now() + limitInMs;
  for (;;) {
    const counts = serviceBus().messageCounts();
    const left = Object.fromEntries(
      stores.map((store) => [store.storeId, counts[`store-${store.storeId}`] ?? 0] as const).filter(([, count]) => count > 0),
    );
    if (Object.keys(left).length === 0 || Date.now() > deadline) return left;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function readDeadLetters(connectionString: string, stores: StoreProcess[]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const store of stores) {
    const queue = createDeadLetterQueue({ connectionString, queue: `store-${store.storeId}`, retry: { maxRetries: 1, retryDelayInMs: 50, timeoutInMs: 3_000 } });
    try {
      for (const message of await queue.list({ limit: 10_000 })) {
        const id = message.operation?.id ?? message.messageId;
        if (id !== undefined) found.set(id, message.reason ?? 'unknown');
      }
    } finally {
      await queue.close();
    }
  }
  return found;
}

async function reconcile(
  dispatcher: Dispatcher,
  stores: StoreProcess[],
  deliveries: Delivery[],
  deadLettered: Map<string, string>,
  faults: string[],
): Promise<DemoReport> {
  const executed = new Map<string, number>();
  const duplicated: string[] = [];
  for (const store of stores) {
    const ledger = await openLedger({ directory: path.join(store.dataDir, 'ledger') });
    for (const delivery of deliveries.filter((candidate) => candidate.storeId === store.storeId)) {
      if (ledger.get(delivery.operationId) !== undefined) executed.set(delivery.operationId, 1);
    }
    await ledger.close();
    const inventory = JSON.parse(await readFile(path.join(store.dataDir, 'inventory', 'inventory.json'), 'utf8')) as { tickets: { orderId: string }[] };
    const seen = new Set<string>();
    for (const ticket of inventory.tickets) {
      if (seen.has(ticket.orderId)) duplicated.push(`${store.storeId}:${ticket.orderId}`);
      seen.add(ticket.orderId);
    }
  }
  const outcomes: Record<string, number> = {};
  const lost: string[] = [];
  const rejected: { operationId: string; code: string }[] = [];
  const dead: { operationId: string; reason: string }[] = [];
  for (const delivery of deliveries) {
    const key = `${delivery.channel ?? 'none'}:${delivery.outcome}`;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
    if (delivery.outcome === 'rejected') rejected.push({ operationId: delivery.operationId, code: delivery.rejection?.code ?? 'unknown' });
    if (delivery.outcome === 'failed' && delivery.failure !== undefined) {
      // The store's own report: dead-lettered unexecuted (its reason), or executed with a reply too large to send.
      if (!delivery.failure.executed) dead.push({ operationId: delivery.operationId, reason: delivery.failure.code });
      else if (!executed.has(delivery.operationId)) lost.push(delivery.operationId);
      continue;
    }
    if (delivery.outcome === 'queued' || delivery.outcome === 'delivered') {
      const reason = deadLettered.get(delivery.operationId);
      if (executed.has(delivery.operationId)) continue;
      if (reason !== undefined) dead.push({ operationId: delivery.operationId, reason });
      else lost.push(delivery.operationId);
    }
  }
  return {
    stores: stores.map((store) => {
      const view = dispatcher.link(store.storeId);
      return { storeId: store.storeId, bidirectional: store.bidirectional, link: topStateOf(view.state), ...view.counters };
    }),
    published: deliveries.length,
    outcomes,
    fallbacks: deliveries.filter((delivery) => delivery.fallbackReason !== undefined).length,
    executed: executed.size,
    deadLettered: dead,
    rejected,
    servedCached: deliveries.filter((delivery) => delivery.outcome === 'served-cached').length,
    lost,
    duplicated,
    faults,
    reconciled: lost.length === 0 && duplicated.length === 0,
  };
}

function renderTable(
  dispatcher: Dispatcher,
  stores: StoreProcess[],
  deliveries: Delivery[],
  faults: string[],
  elapsedInMs: number,
  totalInMs: number,
  apiUrl: string,
): string {
  const progress = Math.min(100, Math.round((elapsedInMs / totalInMs) * 100));
  const lines = [`\u001b[H\u001b[2Jstorelink demo — ${progress}%   ${deliveries.length} operations published`, `cloud HTTP API: ${apiUrl}`, ''];
  lines.push('store          mode       link        relay ok  queued  via queue  rejected  cached  fallbacks');
  for (const store of stores) {
    const view = dispatcher.link(store.storeId);
    const mine = deliveries.filter((delivery) => delivery.storeId === store.storeId);
    const count = (predicate: (delivery: Delivery) => boolean) => String(mine.filter(predicate).length);
    lines.push(
      [
        store.storeId.padEnd(14),
        (store.bidirectional ? 'real-time' : 'async').padEnd(10),
        topStateOf(view.state).padEnd(11),
        count((delivery) => delivery.channel === 'relay' && delivery.outcome === 'delivered').padStart(8),
        count((delivery) => delivery.outcome === 'queued').padStart(7),
        count((delivery) => delivery.channel === 'queue' && delivery.outcome === 'delivered').padStart(10),
        count((delivery) => delivery.outcome === 'rejected').padStart(9),
        count((delivery) => delivery.outcome === 'served-cached').padStart(7),
        count((delivery) => delivery.fallbackReason !== undefined).padStart(10),
      ].join(' '),
    );
  }
  lines.push('', ...faults.slice(-6).map((fault) => `  ${fault}`), '');
  return `${lines.join('\n')}\n`;
}
