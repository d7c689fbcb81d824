/**
 * Several cloud instances on one namespace, in one test process: the real SDK against the Service Bus and Relay
 * emulators on 127.0.0.1, the cloud inbox a topic with the subscriptions of src/cloud/inboxTopology.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createDispatcher, type Dispatcher, type DispatcherOptions, type OperationOutcome, type StoreEventMessage } from '../../src/cloud/dispatcher.js';
import { inboxSubscriptions } from '../../src/cloud/inboxTopology.js';
import { topStateOf } from '../../src/cloud/storeLinks.js';
import { parsePolicy } from '../../src/core/policy.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import type { SubscriptionOptions } from '../../src/emulator/servicebus/options.js';
import { defineHandler } from '../../src/store/executor.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { dispatcherSigningOptions, storePublicKeys, storeSigningOptions } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const INSTANCES = ['cloud-a', 'cloud-b', 'cloud-c'];
const STORES = [
  { storeId: 'paris-1', bidirectional: true, ...storePublicKeys('paris-1') },
  { storeId: 'lyon-2', bidirectional: false, ...storePublicKeys('lyon-2') },
  { storeId: 'nice-3', bidirectional: false, ...storePublicKeys('nice-3') },
];
const POLICY = parsePolicy({
  // Long cool-downs and probe intervals: a link moves only when told, so what moved it is the announcement.
  link: { failureThreshold: 2, openCooldownInMs: 60_000, maxCooldownInMs: 60_000, probeIntervalInMs: 60_000, healthyProbeIntervalInMs: 60_000 },
  operations: { 'note.add': { latency: 'async' } },
});

async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-multi-'));
  closeables.push(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

function emulatorSubscriptions(): SubscriptionOptions[] {
  return inboxSubscriptions(INSTANCES).map((subscription) => ({
    name: subscription.name,
    requiresSession: subscription.requiresSession,
    lockDurationInMs: 5_000,
    rules: [
      subscription.sqlFilter === undefined
        ? { name: 'storelink', correlationFilter: { applicationProperties: subscription.propertiesFilter ?? {} } }
        : { name: 'storelink', sqlFilter: subscription.sqlFilter },
    ],
  }));
}

async function emulators(): Promise<Emulators> {
  const azure = await startEmulators({
    namespaces: [
      {
        queues: STORES.map(({ storeId }) => ({ name: `store-${storeId}`, lockDurationInMs: 2_000 })),
        topics: [{ name: 'cloud-inbox', requiresDuplicateDetection: true, subscriptions: emulatorSubscriptions() }],
      },
    ],
    hybridConnections: STORES.filter((store) => store.bidirectional).map(({ storeId }) => ({ name: `store-${storeId}` })),
  });
  closeables.push(() => azure.close());
  return azure;
}

/** Counts each store's executions of each operation id, so a second run of one shows. */
async function store(azure: Emulators, storeId: string, executions: Map<string, number>, start = true): Promise<StoreAgent> {
  const bidirectional = STORES.find((candidate) => candidate.storeId === storeId)!.bidirectional;
  const agent = createStoreAgent({
    storeId,
    ...storeSigningOptions(storeId),
    handlers: {
      'note.add': defineHandler(z.object({ text: z.string() }), (payload, { operation }) => {
        executions.set(operation.id, (executions.get(operation.id) ?? 0) + 1);
        return { noted: payload };
      }),
    },
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    ...(bidirectional ? { relay: { connectionString: azure.relayConnectionString() } } : {}),
    dataDir: await tempDir(),
  });
  closeables.push(() => agent.close());
  if (start) {
    await agent.start();
    if (bidirectional) await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
  }
  return agent;
}

async function instance(azure: Emulators, instanceId: string, extra: Partial<DispatcherOptions> = {}, adoptRepliesAfterInMs = 0): Promise<Dispatcher> {
  const cloud = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY, inbox: 'topic', adoptRepliesAfterInMs },
    relay: { connectionString: azure.relayConnectionString() },
    policy: POLICY,
    stores: STORES,
    instanceId,
    ...dispatcherSigningOptions(),
    ...extra,
  });
  closeables.push(() => cloud.close());
  await cloud.start();
  return cloud;
}

function note(storeId: string, text: string) {
  return { storeId, type: 'note.add', payload: { text } };
}

describe('several cloud instances on one namespace', () => {
  it('every reply reaches the instance its publisher waits on, and each outcome is reported by that instance only', async () => {
    const azure = await emulators();
    const executions = new Map<string, number>();
    await store(azure, 'lyon-2', executions);
    await store(azure, 'nice-3', executions);
    const clouds = await Promise.all(INSTANCES.map((id) => instance(azure, id)));
    const outcomes = clouds.map(() => [] as OperationOutcome[]);
    clouds.forEach((cloud, index) => cloud.outcomes$.subscribe((outcome) => outcomes[index]!.push(outcome)));

    const published = await Promise.all(
      Array.from({ length: 30 }, (_, index) => {
        const cloud = clouds[index % clouds.length]!;
        return cloud.publish(note(index % 2 === 0 ? 'lyon-2' : 'nice-3', `n-${index}`), { awaitReplyInMs: 20_000 }).then((delivery) => ({ delivery, by: index % clouds.length }));
      }),
    );
    // With one queue for every instance, about two replies in three went to an instance nobody waited on (queued).
    expect(published.map(({ delivery }) => delivery.outcome)).toEqual(Array.from({ length: 30 }, () => 'delivered'));
    expect(published.every(({ delivery }) => (delivery.reply as { noted: { text: string } }).noted.text.startsWith('n-'))).toBe(true);
    for (const { delivery, by } of published) {
      expect(outcomes[by]!.filter((outcome) => outcome.operationId === delivery.operationId)).toHaveLength(1);
      outcomes.forEach((list, index) => {
        if (index !== by) expect(list.some((outcome) => outcome.operationId === delivery.operationId)).toBe(false);
      });
    }
    expect([...executions.values()].every((count) => count === 1)).toBe(true);
    expect(executions.size).toBe(30);
  });

  it("an announcement from one store changes that store's link in every instance", async () => {
    const azure = await emulators();
    await store(azure, 'paris-1', new Map());
    const clouds = await Promise.all(INSTANCES.map((id) => instance(azure, id)));
    for (const cloud of clouds) expect(topStateOf(cloud.link('paris-1').state)).toBe('healthy');
    const tripped = clouds.map((cloud) => firstValueFrom(cloud.links$.pipe(filter((change) => change.storeId === 'paris-1' && topStateOf(change.state) === 'tripped'))));
    // The store's listener is dropped and refused: the store announces its relay down.
    azure.relay.refuseListeners('store-paris-1');
    azure.relay.dropListeners('store-paris-1');
    await Promise.all(tripped);
    for (const cloud of clouds) expect(topStateOf(cloud.link('paris-1').state)).toBe('tripped');
  });

  it('store events are handed off once across the instances, and one whose handoff fails is delivered again', async () => {
    const azure = await emulators();
    const agent = await store(azure, 'lyon-2', new Map());
    const handedOff: StoreEventMessage[] = [];
    const clouds = await Promise.all(
      INSTANCES.map((id) => instance(azure, id, { handoff: { event: (event) => Promise.resolve(void handedOff.push(event)) } })),
    );
    for (let index = 0; index < 20; index += 1) await agent.emit({ type: 'sale.recorded', body: { index } });
    await until(() => handedOff.length >= 20);
    expect(handedOff.map((event) => (event.body as { index: number }).index).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, index) => index));
    expect(new Set(handedOff.map((event) => event.id)).size).toBe(20);
    await Promise.all(clouds.map((cloud) => cloud.close()));

    // One instance whose application refuses each event once: every event comes back and is handed off the second time.
    const attempts = new Map<string, number>();
    const accepted: string[] = [];
    const flaky = await instance(azure, 'cloud-a', {
      handoff: {
        event: (event) => {
          const attempt = (attempts.get(event.id) ?? 0) + 1;
          attempts.set(event.id, attempt);
          if (attempt === 1) return Promise.reject(new Error('the application is not ready'));
          accepted.push(event.id);
          return Promise.resolve();
        },
      },
    });
    const seen: string[] = [];
    flaky.events$.subscribe((event) => seen.push(event.id));
    for (let index = 0; index < 5; index += 1) await agent.emit({ type: 'sale.recorded', body: { index } });
    await until(() => accepted.length >= 5);
    expect([...attempts.values()]).toEqual([2, 2, 2, 2, 2]);
    // events$ shows an event only once its handoff succeeded.
    expect(seen.sort()).toEqual([...accepted].sort());
  });

  it("the replies of an instance that is gone are recorded as outcomes by another, and on its return it takes its session back", async () => {
    const azure = await emulators();
    const executions = new Map<string, number>();
    const agent = await store(azure, 'lyon-2', executions, false);
    const recorded: OperationOutcome[] = [];
    await instance(azure, 'cloud-a', { handoff: { outcome: (outcome) => Promise.resolve(void recorded.push(outcome)) } }, 3_000);
    let gone = await instance(azure, 'cloud-c');
    // The store is away: the caller stops waiting, the operation stays queued.
    const first = await gone.publish(note('lyon-2', 'while away'), { awaitReplyInMs: 200 });
    expect(first.outcome).toBe('queued');
    await gone.close();
    await agent.start();
    await until(() => recorded.some((outcome) => outcome.operationId === first.operationId));
    const adopted = recorded.find((outcome) => outcome.operationId === first.operationId)!;
    expect(adopted).toMatchObject({ outcome: 'done', storeId: 'lyon-2', late: true, reply: { noted: { text: 'while away' } } });

    gone = await instance(azure, 'cloud-c');
    const again = await gone.publish(note('lyon-2', 'back'), { awaitReplyInMs: 20_000 });
    expect(again.outcome).toBe('delivered');
    expect(executions.get(first.operationId)).toBe(1);
    expect(executions.get(again.operationId)).toBe(1);
  });

  it('refuses a second live instance on the same folder of a shared data dir', async () => {
    const azure = await emulators();
    const dataDir = await tempDir();
    const one = await instance(azure, 'cloud-a', { dataDir });
    const twin = createDispatcher({
      serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY, inbox: 'topic' },
      relay: { connectionString: azure.relayConnectionString() },
      stores: STORES,
      instanceId: 'cloud-a',
      dataDir,
      ...dispatcherSigningOptions(),
    });
    closeables.push(() => twin.close());
    await expect(twin.start()).rejects.toMatchObject({ code: 'DATA_DIR_IN_USE' });
    // Another instance id on the same data dir has its own folder.
    const other = await instance(azure, 'cloud-b', { dataDir });
    expect(other.instanceId).toBe('cloud-b');
    expect(one.instanceId).toBe('cloud-a');
  });

  // An instance added without provisioning would otherwise run with charts that never hear an announcement.
  it('refuses to start an instance whose announcements subscription was never provisioned, saying how to add it', async () => {
    const azure = await emulators();
    const unprovisioned = createDispatcher({
      serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY, inbox: 'topic' },
      relay: { connectionString: azure.relayConnectionString() },
      stores: STORES,
      instanceId: 'cloud-d',
      ...dispatcherSigningOptions(),
    });
    closeables.push(() => unprovisioned.close());
    const started = unprovisioned.start();
    await expect(started).rejects.toMatchObject({ code: 'QUEUE_NOT_FOUND' });
    await expect(started).rejects.toThrow(/announcements-cloud-d of cloud-inbox does not exist.*storelink provision --instances/);
  });
});

/** Waits for a condition no event announces (handoffs spread over three instances), within the test's timeout. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20));
}
