/**
 * A relay answer's outbox copy is held back at the store and dropped once a later call from the cloud confirms it
 * (signed) holds the answer; unconfirmed, it is sent after the hold, and it survives a restart. Real SDKs, the
 * emulators on 127.0.0.1.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createRelaySender } from '../../src/channels/relay/relaySender.js';
import { createDispatcher, type Dispatcher, type OperationOutcome } from '../../src/cloud/dispatcher.js';
import { CONFIRMATIONS_PER_BATCH } from '../../src/cloud/relayConfirmations.js';
import { parsePolicy } from '../../src/core/policy.js';
import { Signer, relayConfirmationSignedFields } from '../../src/core/signing.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { defineHandler } from '../../src/store/executor.js';
import { openOutbox } from '../../src/store/outbox.js';
import { createStoreAgent, type StoreAgent, type StoreAgentEvent } from '../../src/store/storeAgent.js';
import { oneStoreDispatcherOptions } from '../support/emulatorDispatcher.js';
import { dispatcherSigningOptions, storeSigningOptions, strangerKey } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const STORE_ID = 'lyon-2';
const POLICY = parsePolicy({ operations: { 'instant.order': { latency: 'realtime', fallback: 'reject' } } });
const HOUR = 60 * 60_000;

interface World {
  azure: Emulators;
  cloud: Dispatcher;
  agent: StoreAgent;
  dataDir: string;
  events: StoreAgentEvent[];
  handedOff: OperationOutcome[];
  /** The store agent's clock, moved by the test. */
  clock: { offsetInMs: number };
}

async function world(options: { replyHoldInMs: number; handoff?: (outcome: OperationOutcome) => Promise<void> }): Promise<World> {
  const azure = await startEmulators({
    namespaces: [{ queues: [{ name: `store-${STORE_ID}`, lockDurationInMs: 2_000 }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }],
    hybridConnections: [{ name: `store-${STORE_ID}` }],
  });
  closeables.push(() => azure.close());
  const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-confirm-'));
  closeables.push(() => rm(dataDir, { recursive: true, force: true }));
  const clock = { offsetInMs: 0 };
  const agent = createStoreAgent({
    storeId: STORE_ID,
    ...storeSigningOptions(STORE_ID),
    handlers: { 'instant.order': defineHandler(z.object({ orderId: z.string() }), ({ orderId }) => ({ accepted: orderId })) },
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString(), replyHoldInMs: options.replyHoldInMs },
    expose: ['instant.order'],
    dataDir,
    now: () => Date.now() + clock.offsetInMs,
  });
  closeables.push(() => agent.close());
  const events: StoreAgentEvent[] = [];
  agent.events$.subscribe((event) => events.push(event));
  await agent.start();
  await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
  // The start-up announcement is sent before the test begins, so the outbox holds only what the test puts there.
  await expect.poll(() => events.some((event) => event.type === 'outbox.flushed') && agent.state.outboxPending === 0).toBe(true);
  const handedOff: OperationOutcome[] = [];
  const cloud = createDispatcher({
    ...oneStoreDispatcherOptions(azure, { storeId: STORE_ID, policy: POLICY, retry: RETRY }),
    handoff: {
      outcome: (outcome) => {
        handedOff.push(outcome);
        return options.handoff?.(outcome) ?? Promise.resolve();
      },
    },
  });
  closeables.push(() => cloud.close());
  await cloud.start();
  return { azure, cloud, agent, dataDir, events, handedOff, clock };
}

function nextEvent<T extends StoreAgentEvent['type']>(agent: StoreAgent, type: T): Promise<Extract<StoreAgentEvent, { type: T }>> {
  return firstValueFrom(agent.events$.pipe(filter((event): event is Extract<StoreAgentEvent, { type: T }> => event.type === type)));
}

/** Waits until the outbox holds this many events (the relay answers' copies, appended just after the answers). */
async function outboxSettlesAt(agent: StoreAgent, pending: number): Promise<void> {
  await firstValueFrom(agent.state$.pipe(filter((state) => state.outboxPending === pending)));
}

async function publishOrder(cloud: Dispatcher, orderId: string): Promise<string> {
  const delivery = await cloud.publish({ storeId: STORE_ID, type: 'instant.order', payload: { orderId } });
  expect(delivery).toMatchObject({ channel: 'relay', outcome: 'delivered', reply: { accepted: orderId } });
  return delivery.operationId;
}

async function pendingReplies(dataDir: string): Promise<string[]> {
  const outbox = await openOutbox({ directory: path.join(dataDir, 'outbox') });
  try {
    return outbox.peek(100).filter((event) => event.kind === 'reply').map((event) => event.correlationId!);
  } finally {
    await outbox.close();
  }
}

describe('relay answers confirmed by the cloud are not sent again through the inbox', () => {
  it('drops the held copies of answers once later calls confirm them, hands each outcome off once, and keeps the unconfirmed ones on disk', async () => {
    const { cloud, agent, dataDir, events, handedOff } = await world({ replyHoldInMs: HOUR });
    const confirmedCount = () => events.reduce((sum, event) => sum + (event.type === 'outbox.confirmed' ? event.count : 0), 0);
    const batch: string[] = [];
    for (let index = 0; index < CONFIRMATIONS_PER_BATCH; index += 1) batch.push(await publishOrder(cloud, `CC-${index}`));
    // Calls go on until the first batch is confirmed (a full batch rides on the next call; on a slow machine some
    // may go earlier, once the oldest has waited long enough): never more than a batch's worth.
    const later: string[] = [];
    while (later.length < 2 * CONFIRMATIONS_PER_BATCH) {
      later.push(await publishOrder(cloud, `CC-later-${later.length}`));
      if (confirmedCount() >= CONFIRMATIONS_PER_BATCH) break;
    }
    const published = [...batch, ...later];
    // Every copy is either dropped on confirmation or still held: none went to Service Bus.
    await expect.poll(() => confirmedCount() + agent.state.outboxPending).toBe(published.length);
    expect(confirmedCount()).toBeGreaterThanOrEqual(CONFIRMATIONS_PER_BATCH);
    // Each answer went to the application through the handoff, once, from the relay call itself.
    await expect.poll(() => handedOff.length).toBe(published.length);
    expect(handedOff.map((outcome) => [outcome.operationId, outcome.channel, outcome.late])).toEqual(published.map((id) => [id, 'relay', false]));
    const held = agent.state.outboxPending;
    await agent.close();
    // On disk: the copies still held (an hour) are kept, so a restart sends them; the confirmed ones are gone, never
    // sent (held all along, they were never offered to Service Bus: the only flush was the start-up announcement).
    const onDisk = await pendingReplies(dataDir);
    expect(onDisk).toHaveLength(held);
    expect(onDisk.filter((id) => batch.includes(id))).toEqual([]);
    expect(onDisk.every((id) => later.includes(id))).toBe(true);
    expect(events.filter((event) => event.type === 'outbox.flushed')).toHaveLength(1);
  });

  it('sends the copy once its hold is over when no later call confirms it, and the cloud reports the outcome once', async () => {
    const { cloud, agent, clock, handedOff } = await world({ replyHoldInMs: HOUR });
    const outcomes: OperationOutcome[] = [];
    cloud.outcomes$.subscribe((outcome) => outcomes.push(outcome));
    const operationId = await publishOrder(cloud, 'CC-3');
    await outboxSettlesAt(agent, 1);
    // A store event goes while the reply is still held…
    let flushed = nextEvent(agent, 'outbox.flushed');
    await agent.emit({ type: 'sale.recorded', body: { n: 1 } });
    expect(await flushed).toEqual({ type: 'outbox.flushed', count: 1, pending: 1 });
    // …and once the hold is over, the next flush takes the reply too.
    clock.offsetInMs = HOUR + 1_000;
    flushed = nextEvent(agent, 'outbox.flushed');
    await agent.emit({ type: 'sale.recorded', body: { n: 2 } });
    expect(await flushed).toEqual({ type: 'outbox.flushed', count: 2, pending: 0 });
    // The copy reached the cloud and its handoff (at least once), without a second outcome on the stream.
    await expect.poll(() => handedOff.filter((outcome) => outcome.operationId === operationId).length).toBe(2);
    expect(outcomes.filter((outcome) => outcome.operationId === operationId)).toHaveLength(1);
  });

  it("does not confirm an answer whose handoff failed: its copy comes through the inbox and is handed off again", async () => {
    let refused: string | undefined;
    const { cloud, agent, clock, handedOff } = await world({
      replyHoldInMs: HOUR,
      // The application refuses the first outcome it is handed, once.
      handoff: (outcome) => {
        if (refused !== undefined) return Promise.resolve();
        refused = outcome.operationId;
        return Promise.reject(new Error('the order system is down'));
      },
    });
    const first = await publishOrder(cloud, 'CC-5');
    // Enough later calls for a full batch of confirmations to have gone, twice over.
    for (let index = 0; index < 2 * CONFIRMATIONS_PER_BATCH + 1; index += 1) await publishOrder(cloud, `CC-5-${index}`);
    expect(refused).toBe(first);
    // Once the holds are over, what was not confirmed goes: the first answer's copy with it.
    clock.offsetInMs = HOUR + 1_000;
    await agent.emit({ type: 'sale.recorded', body: { n: 1 } });
    await expect.poll(() => handedOff.filter((outcome) => outcome.operationId === first).length).toBe(2);
    expect(handedOff.filter((outcome) => outcome.operationId === first).map((outcome) => outcome.channel)).toEqual(['relay', 'queue']);
  });

  it('ignores a confirmation not signed by a key the store trusts', async () => {
    const { azure, cloud, agent } = await world({ replyHoldInMs: HOUR });
    const operationId = await publishOrder(cloud, 'CC-4');
    await outboxSettlesAt(agent, 1);
    const forger = strangerKey('cloud-test');
    const forged = new Signer({ keyId: forger.keyId, privateKey: forger.privateKey }, 'relay-confirmation', 'test');
    const sender = createRelaySender({ connectionString: azure.relayConnectionString(), hybridConnection: `store-${STORE_ID}` });
    closeables.push(() => sender.close());
    const operationIds = [operationId];
    await sender.checkHealth({ timeoutInMs: 5_000, confirmation: { operationIds, signature: forged.sign(relayConfirmationSignedFields(STORE_ID, operationIds)) } });
    // A confirmation signed by the cloud's key for another store does not count here either.
    const cloudKey = dispatcherSigningOptions().signing;
    const elsewhere = new Signer(cloudKey, 'relay-confirmation', 'test').sign(relayConfirmationSignedFields('paris-1', operationIds));
    await sender.checkHealth({ timeoutInMs: 5_000, confirmation: { operationIds, signature: elsewhere } });
    expect(agent.state.outboxPending).toBe(1);
    // The genuine one, for this store, does.
    const confirmed = nextEvent(agent, 'outbox.confirmed');
    const genuine = new Signer(cloudKey, 'relay-confirmation', 'test').sign(relayConfirmationSignedFields(STORE_ID, operationIds));
    await sender.checkHealth({ timeoutInMs: 5_000, confirmation: { operationIds, signature: genuine } });
    expect(await confirmed).toEqual({ type: 'outbox.confirmed', count: 1, pending: 0 });
  });
});
