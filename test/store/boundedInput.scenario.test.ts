/**
 * Hostile input at the store's two doors: a payload nested 10,000 deep, an oversized body and an operation for another
 * store, through the real relay emulator and hyco-https listener (sent with the cloud's relay sender over undici) and
 * through the real Service Bus emulator and SDK.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient } from '@azure/service-bus';
import { filter, firstValueFrom } from 'rxjs';
import { fetch as undiciFetch, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { createRelaySender, type FetchFunction } from '../../src/channels/relay/relaySender.js';
import { operationPath } from '../../src/channels/relay/relayProtocol.js';
import { parseConnectionString, relayHttpUrl, relayTokenAudience } from '../../src/core/connectionString.js';
import { createSasToken } from '../../src/core/sas.js';
import { MAX_OPERATION_BYTES, createOperation, type Operation } from '../../src/core/operation.js';
import type { JsonValue } from '../../src/core/json.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { createClickAndCollectHandlers, EXPOSED_TYPES } from '../../samples/store-click-and-collect/handlers.js';
import { openInventory } from '../../samples/store-click-and-collect/inventory.js';
import { signed, storeSigningOptions } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const STORE = 'paris-1';
const QUEUE = `store-${STORE}`;
const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };

/**
 * An operation as JSON text whose payload nests `depth` arrays deep. Text, not a value: JSON.stringify is recursive
 * and overflows on such a value before it could be sent (JSON.parse, which the receivers use, is not).
 */
function deepOperationText(operation: Operation, depth: number): string {
  return JSON.stringify({ ...operation, payload: 'DEEP' }).replace('"DEEP"', `${'['.repeat(depth)}${']'.repeat(depth)}`);
}

/** An order as the cloud sends it: signed, overrides included. */
function order(overrides: Partial<Operation> = {}): Operation {
  return signed({
    ...createOperation({
      storeId: STORE,
      type: 'clickAndCollect.order',
      payload: { orderId: 'CC-1', customer: 'Ada', lines: [{ sku: 'SKU-KETTLE', quantity: 1 }] },
      latency: 'realtime',
      timeToLiveInMs: 60_000,
    }),
    ...overrides,
  });
}

/** A value of `depth` nested arrays. */
function nestedArrays(depth: number): JsonValue {
  let value: JsonValue = [];
  for (let level = 1; level < depth; level += 1) value = [value];
  return value;
}

interface World {
  azure: Emulators;
  agent: StoreAgent;
  /** Sends through the relay with the cloud's sender; resolves with the HTTP status and the error the sender raised. */
  relay: (operation: Operation) => Promise<{ status: number | undefined; error: unknown }>;
  /** Posts a raw body through the relay with undici; resolves with the status and the parsed answer. */
  post: (type: string, text: string) => Promise<{ status: number; body: { error?: { code: string; message: string; field?: string } } }>;
}

async function world(): Promise<World> {
  const azure = await startEmulators({
    namespaces: [{ queues: [{ name: QUEUE, lockDurationInMs: 2_000 }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }],
    hybridConnections: [{ name: QUEUE }],
  });
  closeables.push(() => azure.close());
  const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-bounds-'));
  closeables.push(() => rm(dataDir, { recursive: true, force: true }));
  const inventory = await openInventory(path.join(dataDir, 'inventory'));
  const agent = createStoreAgent({
    storeId: STORE,
    ...storeSigningOptions(STORE),
    handlers: createClickAndCollectHandlers(inventory),
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString() },
    expose: [...EXPOSED_TYPES],
    dataDir,
  });
  closeables.push(() => agent.close());
  await agent.start();
  await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
  let status: number | undefined;
  const recording: FetchFunction = async (input, init) => {
    const response = (await undiciFetch(input, init as Parameters<typeof undiciFetch>[1])) as unknown as Response;
    status = response.status;
    return response;
  };
  const sender = createRelaySender({ connectionString: azure.relayConnectionString(), hybridConnection: QUEUE, fetch: recording });
  closeables.push(() => sender.close());
  const relay = async (operation: Operation) => {
    status = undefined;
    const error = await sender.send(operation, { timeoutInMs: 10_000 }).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    return { status, error };
  };
  const connection = parseConnectionString(azure.relayConnectionString());
  const token = createSasToken({ resource: relayTokenAudience(connection, QUEUE), keyName: connection.keyName, key: connection.key!, timeToLiveInMs: 60_000 });
  const post = async (type: string, text: string) => {
    const response = await request(`${relayHttpUrl(connection, QUEUE)}${operationPath(type)}`, {
      method: 'POST',
      headers: { ServiceBusAuthorization: token, 'content-type': 'application/json' },
      body: text,
    });
    return { status: response.statusCode, body: (await response.body.json()) as { error?: { code: string; message: string; field?: string } } };
  };
  return { azure, agent, relay, post };
}

describe('bounded input at the store', () => {
  it('answers a payload nested 10,000 deep on the relay with 400 OPERATION_INVALID, then still serves', async () => {
    const { relay, post } = await world();
    const deep = await post('clickAndCollect.order', deepOperationText(order(), 10_000));
    expect(deep.status).toBe(400);
    expect(deep.body.error).toMatchObject({ code: 'OPERATION_INVALID', message: expect.stringContaining('deeper than 64') });
    // The envelope is the first level: a payload of 64 is one too many, one of 63 reaches the handler's own schema.
    const justOver = await post('clickAndCollect.order', deepOperationText(order(), 64));
    expect([justOver.status, justOver.body.error?.message]).toEqual([400, expect.stringContaining('deeper than 64')]);
    // Signed as it is (the cloud could send it), so what refuses it is the handler's schema, not the signature.
    const atLimit = await post('clickAndCollect.order', JSON.stringify(order({ payload: nestedArrays(63) })));
    expect([atLimit.status, atLimit.body.error?.field, atLimit.body.error?.message]).toEqual([400, 'payload', expect.not.stringContaining('deeper')]);
    const fine = await relay(order());
    expect([fine.status, fine.error]).toEqual([200, undefined]);
  });

  it('answers a body over the envelope limit with 413 PAYLOAD_TOO_LARGE', async () => {
    const { relay } = await world();
    const huge = await relay(order({ payload: { orderId: 'CC-2', customer: 'x'.repeat(MAX_OPERATION_BYTES), lines: [] } }));
    expect(huge.status).toBe(413);
    expect(huge.error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
  });

  it('answers an operation for another store with 421 OPERATION_MISROUTED', async () => {
    const { relay } = await world();
    const misrouted = await relay(order({ storeId: 'lyon-2' }));
    expect(misrouted.status).toBe(421);
    expect(misrouted.error).toMatchObject({ code: 'OPERATION_MISROUTED', field: 'storeId', message: expect.stringContaining('lyon-2') });
  });

  it('dead-letters a payload nested 10,000 deep from the queue as OPERATION_INVALID at its first delivery', async () => {
    const { azure, agent } = await world();
    const client = new ServiceBusClient(azure.serviceBusConnectionString(), { retryOptions: RETRY });
    closeables.push(() => client.close());
    const operation = order({ latency: 'async' });
    const deadLettered = firstValueFrom(agent.events$.pipe(filter((event) => event.type === 'dead-lettered' || event.type === 'failed')));
    // A Buffer goes as it is; the store's SDK parses it as JSON.
    await client.createSender(QUEUE).sendMessages({ body: Buffer.from(deepOperationText(operation, 10_000)), messageId: operation.id });
    expect(await deadLettered).toMatchObject({ type: 'dead-lettered', operationId: operation.id, reason: 'OPERATION_INVALID' });
    const [dead] = await client.createReceiver(QUEUE, { subQueueType: 'deadLetter' }).peekMessages(1);
    // The first delivery settled it: no failed delivery came before (the emulator counts failed attempts, as the AMQP
    // header's delivery-count does, so a message dead-lettered by its first receiver shows 0).
    expect(dead).toMatchObject({
      messageId: operation.id,
      deadLetterReason: 'OPERATION_INVALID',
      deadLetterErrorDescription: expect.stringContaining('payload: nests deeper than 64'),
      deliveryCount: 0,
    });
  });
});
