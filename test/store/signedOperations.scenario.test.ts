/**
 * Only what the cloud signed runs at the store. An attacker holding a key with Send on the store's queue (here the
 * emulator's namespace key, as the raw SDK uses it) or the right to call its hybrid connection sends operations that
 * are unsigned, signed by a key the store does not trust, signed by the cloud for another store and re-addressed, or
 * signed and then changed (a 1,000-kettle order): each is dead-lettered SIGNATURE_INVALID at its first delivery, or
 * answered 400 on the relay, and nothing runs — no handler call, no ledger entry, no report to the cloud.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient, type ServiceBusReceivedMessage } from '@azure/service-bus';
import { filter, firstValueFrom, take, toArray } from 'rxjs';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { ANSWER_SIGNATURE_HEADER, operationPath, signatureFromHeader } from '../../src/channels/relay/relayProtocol.js';
import { parseConnectionString, relayHttpUrl, relayTokenAudience } from '../../src/core/connectionString.js';
import { createOperation, type Operation } from '../../src/core/operation.js';
import { createSasToken } from '../../src/core/sas.js';
import { Verifier, relayAnswerSignedFields, storeMessageSignedFields } from '../../src/core/signing.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { openLedger } from '../../src/store/ledger.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import type { OperationHandlers } from '../../src/store/executor.js';
import { createClickAndCollectHandlers, EXPOSED_TYPES } from '../../samples/store-click-and-collect/handlers.js';
import { openInventory, type Inventory } from '../../samples/store-click-and-collect/inventory.js';
import { CLOUD_KEY, signed, storeKey, storeSigningOptions, strangerKey, type TestKey } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const STORE = 'paris-1';
const QUEUE = `store-${STORE}`;
const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };

interface Store {
  agent: StoreAgent;
  inventory: Inventory;
  dataDir: string;
  /** Handler calls so far, all types together. */
  calls: () => number;
}

async function emulators(): Promise<Emulators> {
  const azure = await startEmulators({
    namespaces: [{ queues: [{ name: QUEUE, lockDurationInMs: 2_000 }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }],
    hybridConnections: [{ name: QUEUE }],
  });
  closeables.push(() => azure.close());
  return azure;
}

async function startStore(azure: Emulators, options: { dataDir?: string; cloudKeys?: TestKey[] } = {}): Promise<Store> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'storelink-signed-')));
  if (options.dataDir === undefined) closeables.push(() => rm(dataDir, { recursive: true, force: true }));
  const inventory = await openInventory(path.join(dataDir, 'inventory'));
  let calls = 0;
  const handlers: OperationHandlers = Object.fromEntries(
    Object.entries(createClickAndCollectHandlers(inventory)).map(([type, handler]) => [
      type,
      {
        payload: handler.payload,
        handle: (payload: never, context: Parameters<typeof handler.handle>[1]) => {
          calls += 1;
          return handler.handle(payload, context);
        },
      },
    ]),
  );
  const agent = createStoreAgent({
    storeId: STORE,
    ...storeSigningOptions(STORE, options.cloudKeys),
    handlers,
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString() },
    expose: [...EXPOSED_TYPES],
    dataDir,
  });
  closeables.push(() => agent.close());
  await agent.start();
  await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
  return { agent, inventory, dataDir, calls: () => calls };
}

function order(quantity: number, storeId = STORE): Operation {
  return createOperation({
    storeId,
    type: 'clickAndCollect.order',
    payload: { orderId: `CC-${randomUUID().slice(0, 8)}`, customer: 'Mallory', lines: [{ sku: 'SKU-KETTLE', quantity }] },
    latency: 'async',
    timeToLiveInMs: 60_000,
    replyTo: 'cloud-inbox',
  });
}

/** The forgeries, each as its sender would put it on the wire. */
function forgeries(): { name: string; body: Operation; says: string }[] {
  const unsignedOrder = order(1);
  const forBeta = signed(order(1, 'lyon-2'));
  const genuine = signed(order(1));
  return [
    { name: 'unsigned', body: unsignedOrder, says: 'carries no signature' },
    { name: 'signed by an unknown key', body: signed(order(1), strangerKey('cloud-test-rogue')), says: 'not trusted' },
    { name: "signed for lyon-2, re-addressed to paris-1", body: { ...forBeta, storeId: STORE }, says: 'does not match' },
    { name: 'signed, then changed to 1,000 kettles', body: { ...genuine, payload: { ...(genuine.payload as object), lines: [{ sku: 'SKU-KETTLE', quantity: 1_000 }] } }, says: 'does not match' },
  ];
}

async function ledgerHas(dataDir: string, ids: string[]): Promise<boolean[]> {
  const ledger = await openLedger({ directory: path.join(dataDir, 'ledger') });
  try {
    return ids.map((id) => ledger.get(id) !== undefined);
  } finally {
    await ledger.close();
  }
}

async function drain(client: ServiceBusClient, queue: string, subQueue?: 'deadLetter'): Promise<ServiceBusReceivedMessage[]> {
  const receiver = client.createReceiver(queue, subQueue === undefined ? { receiveMode: 'receiveAndDelete' } : { subQueueType: subQueue, receiveMode: 'receiveAndDelete' });
  const messages = await receiver.receiveMessages(50, { maxWaitTimeInMs: 1_000 });
  await receiver.close();
  return messages;
}

describe('a store runs only operations the cloud signed', () => {
  it('dead-letters SIGNATURE_INVALID at first delivery, from the queue with a valid Send key, what the cloud did not sign, and runs nothing', async () => {
    const azure = await emulators();
    const store = await startStore(azure);
    const client = new ServiceBusClient(azure.serviceBusConnectionString(), { retryOptions: RETRY });
    closeables.push(() => client.close());
    const bad = forgeries();
    const deadLettered = firstValueFrom(store.agent.events$.pipe(filter((event) => event.type === 'dead-lettered'), take(bad.length), toArray()));
    const executed: string[] = [];
    store.agent.events$.pipe(filter((event) => event.type === 'executed')).subscribe((event) => executed.push(event.type));
    await client.createSender(QUEUE).sendMessages(bad.map(({ body }, index) => ({ body, messageId: `forged-${index}` })));

    const events = await deadLettered;
    expect(events.map((event) => event.type === 'dead-lettered' && [event.reason, event.reported])).toEqual(bad.map(() => ['SIGNATURE_INVALID', false]));
    const dead = await drain(client, QUEUE, 'deadLetter');
    const byId = new Map(dead.map((message) => [message.messageId, message]));
    bad.forEach(({ name, says }, index) => {
      expect(byId.get(`forged-${index}`), name).toMatchObject({ deadLetterReason: 'SIGNATURE_INVALID', deadLetterErrorDescription: expect.stringContaining(says), deliveryCount: 0 });
    });
    expect(store.calls()).toBe(0);
    expect(executed).toEqual([]);
    expect(store.inventory.read().stock['SKU-KETTLE']).toBe(4);
    // Nothing about them reached the cloud: once the outbox is empty, the inbox holds the relay announcement only.
    await firstValueFrom(store.agent.state$.pipe(filter((state) => state.outboxPending === 0)));
    const inbox = await drain(client, 'cloud-inbox');
    expect(inbox.map((message) => message.subject)).toEqual(['announcement']);
    await store.agent.close();
    expect(await ledgerHas(store.dataDir, bad.map(({ body }) => body.id))).toEqual(bad.map(() => false));
  });

  it('answers the same forgeries on the relay (hyco-https listener, undici sender) with 400 SIGNATURE_INVALID, and runs nothing', async () => {
    const azure = await emulators();
    const store = await startStore(azure);
    const connection = parseConnectionString(azure.relayConnectionString());
    const url = relayHttpUrl(connection, QUEUE);
    const token = createSasToken({ resource: relayTokenAudience(connection, QUEUE), keyName: connection.keyName, key: connection.key!, timeToLiveInMs: 60_000 });
    const bad = forgeries();
    for (const { name, body, says } of bad) {
      const response = await request(`${url}${operationPath(body.type)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ServiceBusAuthorization: token },
        body: JSON.stringify(body),
      });
      const answer = (await response.body.json()) as { error?: { code: string; message: string } };
      expect([response.statusCode, answer.error?.code], name).toEqual([400, 'SIGNATURE_INVALID']);
      expect(answer.error?.message, name).toContain(says);
      // Unsigned: a store-signed refusal of a forgery could be passed off as its answer to the genuine operation.
      expect(response.headers[ANSWER_SIGNATURE_HEADER], name).toBeUndefined();
    }
    // The same order, signed by the cloud as it is, goes through.
    const genuine = signed(order(1));
    const accepted = await request(`${url}${operationPath(genuine.type)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ServiceBusAuthorization: token },
      body: JSON.stringify(genuine),
    });
    expect(accepted.statusCode).toBe(200);
    // Its answer is signed by the store's key for this operation, this status and this body.
    const text = await accepted.body.text();
    const answerKeys = new Verifier({ [storeKey(STORE).keyId]: storeKey(STORE).publicKey }, 'relay-answer', 'test');
    expect(answerKeys.verify(relayAnswerSignedFields(STORE, genuine.id, 200, text), signatureFromHeader(accepted.headers[ANSWER_SIGNATURE_HEADER]))).toMatchObject({ valid: true });
    expect(store.calls()).toBe(1);
    expect(store.inventory.read().stock['SKU-KETTLE']).toBe(3);
    await store.agent.close();
    expect(await ledgerHas(store.dataDir, [...bad.map(({ body }) => body.id), genuine.id])).toEqual([...bad.map(() => false), true]);
  });

  it('accepts both cloud keys while it trusts two, and refuses the old one once it is dropped', async () => {
    const azure = await emulators();
    const next = strangerKey('cloud-test-next');
    const during = await startStore(azure, { cloudKeys: [CLOUD_KEY, next] });
    const client = new ServiceBusClient(azure.serviceBusConnectionString(), { retryOptions: RETRY });
    closeables.push(() => client.close());
    const sender = client.createSender(QUEUE);
    const byOld = signed(order(1), CLOUD_KEY);
    const byNew = signed(order(1), next);
    const bothRan = firstValueFrom(during.agent.events$.pipe(filter((event) => event.type === 'executed'), take(2), toArray()));
    await sender.sendMessages([byOld, byNew].map((body) => ({ body, messageId: body.id })));
    expect((await bothRan).map((event) => event.type === 'executed' && event.operationId).sort()).toEqual([byOld.id, byNew.id].sort());
    await during.agent.close();

    const after = await startStore(azure, { dataDir: during.dataDir, cloudKeys: [next] });
    const lateOld = signed(order(1), CLOUD_KEY);
    const lateNew = signed(order(1), next);
    const refused = firstValueFrom(after.agent.events$.pipe(filter((event) => event.type === 'dead-lettered')));
    const ran = firstValueFrom(after.agent.events$.pipe(filter((event) => event.type === 'executed')));
    await sender.sendMessages([lateOld, lateNew].map((body) => ({ body, messageId: body.id })));
    expect(await refused).toMatchObject({ operationId: lateOld.id, reason: 'SIGNATURE_INVALID', description: expect.stringContaining('"cloud-test", which is not trusted') });
    expect(await ran).toMatchObject({ operationId: lateNew.id, outcome: 'done' });
    expect(after.calls()).toBe(1);
  });

  it("signs every message it sends the cloud with its own key: the cloud can check each against the store's public key", async () => {
    const azure = await emulators();
    const store = await startStore(azure);
    const client = new ServiceBusClient(azure.serviceBusConnectionString(), { retryOptions: RETRY });
    closeables.push(() => client.close());
    const operation = signed(order(1));
    const replied = firstValueFrom(store.agent.events$.pipe(filter((event) => event.type === 'outbox.flushed' && event.pending === 0), take(1)));
    await client.createSender(QUEUE).sendMessages({ body: operation, messageId: operation.id });
    await store.agent.emit({ type: 'sale.recorded', body: { till: 2 } });
    await replied;
    const received: ServiceBusReceivedMessage[] = [];
    while (received.length < 3) received.push(...(await drain(client, 'cloud-inbox')));
    const verifier = new Verifier({ [storeKey(STORE).keyId]: storeKey(STORE).publicKey }, 'store-message', 'test');
    expect(received.map((message) => message.subject).sort()).toEqual(['announcement', 'event', 'reply']);
    for (const message of received) {
      const body = message.body as Record<string, unknown>;
      expect(verifier.verify(storeMessageSignedFields(body), body['signature']), String(message.subject)).toEqual({ valid: true, keyId: storeKey(STORE).keyId });
    }
  });
});
