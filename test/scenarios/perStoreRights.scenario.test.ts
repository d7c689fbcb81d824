/**
 * Least privilege per store, as README "Running against real Azure" provisions it: store alpha holds a Listen rule on
 * its own queue, a pre-issued Send token for the shared inbox (signed by the inbox's one Send rule), and a Listen rule
 * on its own hybrid connection; the cloud holds its namespace policy. With only those, alpha's store agent works end
 * to end, and each attack of issue 14 tried with alpha's credentials gets the answer Azure gives. Every attack first
 * shows the same credential working where it should, so a refusal is the rule at work and never a broken key.
 * Real @azure/service-bus, hyco-https and store agents against the emulators.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient, isServiceBusError } from '@azure/service-bus';
import hycoHttps from 'hyco-https';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatcher, type Dispatcher } from '../../src/cloud/dispatcher.js';
import { parsePolicy } from '../../src/core/policy.js';
import { createSasToken } from '../../src/core/sas.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { createClickAndCollectHandlers, EXPOSED_TYPES } from '../../samples/store-click-and-collect/handlers.js';
import { openInventory } from '../../samples/store-click-and-collect/inventory.js';
import { dispatcherSigningOptions, storePublicKeys, storeSigningOptions } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const RETRY = { maxRetries: 0, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 4_000 };
const STORE_IDS = ['alpha', 'beta'] as const;
type StoreId = (typeof STORE_IDS)[number];

/** Each store's rule keys (one per entity, the same name on each entity, different keys), and the cloud's policy. */
const KEYS = {
  cloud: { keyName: 'cloud', primaryKey: 'cloud-key-0123456789', rights: ['Listen', 'Send'] as ('Listen' | 'Send')[] },
  inboxSend: { keyName: 'stores-send', primaryKey: 'inbox-send-key-0123456789', rights: ['Send'] as 'Send'[] },
  queue: (storeId: StoreId) => ({ keyName: 'store', primaryKey: `${storeId}-queue-listen-key`, rights: ['Listen'] as 'Listen'[] }),
  hybridConnection: (storeId: StoreId) => ({ keyName: 'store', primaryKey: `${storeId}-hc-listen-key`, rights: ['Listen'] as 'Listen'[] }),
};

async function leastPrivilegeEmulators(): Promise<Emulators> {
  const azure = await startEmulators({
    namespaces: [
      {
        queues: [
          ...STORE_IDS.map((storeId) => ({ name: `store-${storeId}`, lockDurationInMs: 2_000, authorizationRules: [KEYS.queue(storeId)] })),
          { name: 'cloud-inbox', requiresDuplicateDetection: true, authorizationRules: [KEYS.inboxSend] },
        ],
      },
    ],
    hybridConnections: STORE_IDS.map((storeId) => ({ name: `store-${storeId}`, authorizationRules: [KEYS.hybridConnection(storeId)] })),
    sharedAccessPolicies: [KEYS.cloud],
  });
  closeables.push(() => azure.close());
  return azure;
}

interface Credentials {
  queue: string;
  inbox: string;
  relay: string;
}

/** What the provisioner hands store `storeId`: nothing that names another store's entity or the namespace. */
function credentialsOf(azure: Emulators, storeId: StoreId): Credentials {
  const sbPort = azure.serviceBus.port;
  const inboxToken = createSasToken({
    resource: `sb://127.0.0.1:${sbPort}/cloud-inbox`,
    keyName: KEYS.inboxSend.keyName,
    key: KEYS.inboxSend.primaryKey,
    timeToLiveInMs: 60 * 60_000,
  });
  const queue = KEYS.queue(storeId);
  const relay = KEYS.hybridConnection(storeId);
  return {
    queue: `Endpoint=sb://127.0.0.1:${sbPort}/;SharedAccessKeyName=${queue.keyName};SharedAccessKey=${queue.primaryKey};UseDevelopmentEmulator=true`,
    inbox: `Endpoint=sb://127.0.0.1:${sbPort}/;SharedAccessSignature=${inboxToken};UseDevelopmentEmulator=true`,
    relay: `Endpoint=sb://127.0.0.1:${azure.relay.port}/;SharedAccessKeyName=${relay.keyName};SharedAccessKey=${relay.primaryKey};UseDevelopmentEmulator=true`,
  };
}

async function startStore(azure: Emulators, storeId: StoreId): Promise<StoreAgent> {
  const dataDir = await mkdtemp(path.join(tmpdir(), `storelink-rights-${storeId}-`));
  closeables.push(() => rm(dataDir, { recursive: true, force: true }));
  const inventory = await openInventory(path.join(dataDir, 'inventory'));
  const credentials = credentialsOf(azure, storeId);
  const agent = createStoreAgent({
    storeId,
    ...storeSigningOptions(storeId),
    handlers: createClickAndCollectHandlers(inventory),
    serviceBus: { connectionString: credentials.queue, cloudInboxConnectionString: credentials.inbox, retry: RETRY },
    relay: { connectionString: credentials.relay },
    expose: [...EXPOSED_TYPES],
    dataDir,
  });
  closeables.push(() => agent.close());
  await agent.start();
  await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
  return agent;
}

async function cloud(azure: Emulators): Promise<Dispatcher> {
  const dispatcher = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString('cloud'), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString('cloud') },
    policy: parsePolicy({
      link: { failureThreshold: 2, openCooldownInMs: 300, maxCooldownInMs: 1_000, probeIntervalInMs: 60_000 },
      operations: {
        'clickAndCollect.order': { latency: 'realtime', fallback: 'queue', relayTimeoutInMs: 3_000 },
        'stock.query': { latency: 'realtime', fallback: 'reject', relayTimeoutInMs: 3_000 },
        'price.update': { latency: 'async' },
      },
    }),
    stores: STORE_IDS.map((storeId) => ({ storeId, bidirectional: true, ...storePublicKeys(storeId) })),
    ...dispatcherSigningOptions(),
  });
  closeables.push(() => dispatcher.close());
  await dispatcher.start();
  return dispatcher;
}

function sdk(connectionString: string): ServiceBusClient {
  const client = new ServiceBusClient(connectionString, { retryOptions: RETRY });
  closeables.push(() => client.close());
  return client;
}

async function failureOf(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a failure, but the call succeeded');
}

function expectUnauthorized(error: Error & { code?: string }): void {
  expect(isServiceBusError(error) && error.code).toBe('UnauthorizedAccess');
}

function order(storeId: StoreId, customer = 'Ada') {
  return { storeId, type: 'clickAndCollect.order', payload: { orderId: `CC-${randomUUID().slice(0, 8)}`, customer, lines: [{ sku: 'SKU-KETTLE', quantity: 1 }] } };
}

describe("least privilege per store: alpha's credentials reach only alpha's entities", () => {
  it("alpha's store agent works end to end with only its own credentials: a queued operation with a reply, and a real-time one", async () => {
    const azure = await leastPrivilegeEmulators();
    await startStore(azure, 'alpha');
    const dispatcher = await cloud(azure);
    const realtime = await dispatcher.publish(order('alpha'));
    expect(realtime).toMatchObject({ channel: 'relay', outcome: 'delivered', reply: { reserved: { 'SKU-KETTLE': 1 } } });
    const queued = await dispatcher.publish({ storeId: 'alpha', type: 'price.update', payload: { prices: { 'SKU-KETTLE': 35 } } }, { awaitReplyInMs: 15_000 });
    expect(queued).toMatchObject({ channel: 'queue', outcome: 'delivered' });
    expect(queued.reply).toBeDefined();
  });

  it("alpha's queue credential cannot receive from, peek or send to beta's queue (UnauthorizedAccess)", async () => {
    const azure = await leastPrivilegeEmulators();
    const cloudSender = sdk(azure.serviceBusConnectionString('cloud'));
    await cloudSender.createSender('store-alpha').sendMessages({ body: 'for alpha' });
    await cloudSender.createSender('store-beta').sendMessages({ body: { customer: 'Grace Hopper' } });
    const alpha = sdk(credentialsOf(azure, 'alpha').queue);
    expect((await alpha.createReceiver('store-alpha').peekMessages(1)).map((m): unknown => m.body)).toEqual(['for alpha']);

    expectUnauthorized(await failureOf(alpha.createReceiver('store-beta').receiveMessages(1, { maxWaitTimeInMs: 2_000 })));
    expectUnauthorized(await failureOf(alpha.createReceiver('store-beta').peekMessages(1)));
    expectUnauthorized(await failureOf(alpha.createSender('store-beta').sendMessages({ body: 'forged' })));
    expect(azure.serviceBus.messageCounts()['store-beta']).toBe(1);
  });

  it("alpha's inbox token sends to the inbox but cannot read it, nor send to beta's queue (UnauthorizedAccess)", async () => {
    const azure = await leastPrivilegeEmulators();
    const inbox = sdk(credentialsOf(azure, 'alpha').inbox);
    await inbox.createSender('cloud-inbox').sendMessages({ body: 'an announcement' });
    expect(azure.serviceBus.messageCounts()['cloud-inbox']).toBe(1);

    expectUnauthorized(await failureOf(inbox.createReceiver('cloud-inbox').receiveMessages(1, { maxWaitTimeInMs: 2_000 })));
    expectUnauthorized(await failureOf(inbox.createReceiver('cloud-inbox').peekMessages(1)));
    expectUnauthorized(await failureOf(inbox.createSender('store-beta').sendMessages({ body: 'forged' })));
    // Nor does alpha's queue key read the inbox.
    expectUnauthorized(await failureOf(sdk(credentialsOf(azure, 'alpha').queue).createReceiver('cloud-inbox').peekMessages(1)));
    expect(azure.serviceBus.messageCounts()['cloud-inbox']).toBe(1);
  });

  it("a rogue listener with alpha's relay key on beta's hybrid connection is refused (401), and beta answers all 40 of its orders", async () => {
    const azure = await leastPrivilegeEmulators();
    const beta = await startStore(azure, 'beta');
    const alphaKey = KEYS.hybridConnection('alpha');
    let stolen = 0;
    const rogueServer = (hybridConnection: string) => {
      const uri = `ws://127.0.0.1:${azure.relay.port}/$hc/${hybridConnection}?sb-hc-action=listen`;
      const server = hycoHttps.createRelayedServer({ server: uri, token: () => hycoHttps.createRelayToken(uri, alphaKey.keyName, alphaKey.primaryKey, 3600) }, (_req, res) => {
        stolen += 1;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ result: { reserved: { 'SKU-KETTLE': 1 } } }));
      });
      closeables.push(() => Promise.resolve(server.close()));
      return server;
    };
    // Control: alpha's relay key listens on alpha's own hybrid connection.
    const own = rogueServer('store-alpha');
    const listening = new Promise<void>((resolve) => own.once('listening', () => resolve()));
    own.listen();
    await listening;
    expect(azure.relay.listeners('store-alpha')).toHaveLength(1);

    const rogue = rogueServer('store-beta');
    const refused = new Promise<Error>((resolve) => rogue.once('error', (error: Error) => resolve(error)));
    rogue.listen();
    expect((await refused).message).toBe('Unexpected server response: 401');
    rogue.close();
    expect(azure.relay.listeners('store-beta')).toHaveLength(1);

    const dispatcher = await cloud(azure);
    let executed = 0;
    beta.events$.pipe(filter((event) => event.type === 'executed')).subscribe(() => (executed += 1));
    const deliveries = [];
    for (let index = 0; index < 40; index += 1) deliveries.push(await dispatcher.publish({ storeId: 'beta', type: 'stock.query', payload: { skus: ['SKU-KETTLE'] } }));
    expect(deliveries.filter((delivery) => delivery.channel === 'relay' && delivery.outcome === 'delivered')).toHaveLength(40);
    expect(stolen).toBe(0);
    expect(executed).toBe(40);
  });
});
