/**
 * A store whose handler fails for a while (its database restarting): the queue path holds the message and retries it
 * in process with back-off instead of burning its deliveries, and a real-time call that reaches the failing store
 * falls back to the queue. Real SDKs, real sockets, the emulators on 127.0.0.1.
 */
import path from 'node:path';
import { ServiceBusClient, type ServiceBusReceivedMessage } from '@azure/service-bus';
import { filter, firstValueFrom, type Observable } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createDispatcher, type Dispatcher } from '../../src/cloud/dispatcher.js';
import { topStateOf } from '../../src/cloud/storeLinks.js';
import { createOperation, type Operation } from '../../src/core/operation.js';
import { parsePolicy } from '../../src/core/policy.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { defineHandler, rejectOperation } from '../../src/store/executor.js';
import { openLedger } from '../../src/store/ledger.js';
import { createStoreAgent, type StoreAgentEvent, type StoreAgentOptions } from '../../src/store/storeAgent.js';
import { closing, onCleanup, tempDir } from './harness.js';
import { dispatcherSigningOptions, signed, storePublicKeys, storeSigningOptions } from '../support/signingKeys.js';

const STORE = 'lille-4';
const QUEUE = `store-${STORE}`;
const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const TYPE = 'order.place';
/** A short lock, so a message held through the outage lives on lock renewals. */
const LOCK_DURATION_IN_MS = 3_000;

async function emulators(queue: { maxDeliveryCount?: number } = {}): Promise<Emulators> {
  const started = await startEmulators({
    namespaces: [
      {
        queues: [
          { name: QUEUE, lockDurationInMs: LOCK_DURATION_IN_MS, ...queue },
          { name: 'cloud-inbox', requiresDuplicateDetection: true },
        ],
      },
    ],
    hybridConnections: [{ name: QUEUE }],
  });
  onCleanup(() => started.close());
  return started;
}

/** A store database that is down while `down()` says so: every call is counted, every success per order too. */
function flakyStore(down: (call: number) => boolean) {
  const stats = { calls: 0, failures: 0, executed: new Map<number, number>() };
  const handlers = {
    [TYPE]: defineHandler(z.object({ n: z.number().int() }), ({ n }) => {
      stats.calls += 1;
      if (down(stats.calls)) {
        stats.failures += 1;
        throw new Error('the store database is restarting');
      }
      if (n < 0) throw rejectOperation('no such order');
      stats.executed.set(n, (stats.executed.get(n) ?? 0) + 1);
      return { placed: n };
    }),
  };
  return { stats, handlers };
}

type StoreExtras = Omit<Partial<StoreAgentOptions>, 'serviceBus'> & { serviceBus?: Partial<StoreAgentOptions['serviceBus']> };

async function startStore(azure: Emulators, handlers: StoreAgentOptions['handlers'], extra: StoreExtras = {}) {
  const dataDir = await tempDir();
  const agent = closing(
    createStoreAgent({
      storeId: STORE,
      ...storeSigningOptions(STORE),
      handlers,
      dataDir,
      ...extra,
      serviceBus: { ...extra.serviceBus, connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    }),
  );
  const events: StoreAgentEvent[] = [];
  const subscription = agent.events$.subscribe((event) => events.push(event));
  onCleanup(() => Promise.resolve(subscription.unsubscribe()));
  await agent.start();
  return { agent, dataDir, events };
}

function cloudClient(azure: Emulators): ServiceBusClient {
  const client = new ServiceBusClient(azure.serviceBusConnectionString(), { retryOptions: RETRY });
  onCleanup(() => client.close());
  return client;
}

function placeOrder(n: number, timeToLiveInMs = 10 * 60_000): Operation {
  return signed(createOperation({ storeId: STORE, type: TYPE, payload: { n }, latency: 'async', timeToLiveInMs }));
}

async function send(client: ServiceBusClient, operations: Operation[]): Promise<void> {
  const sender = client.createSender(QUEUE);
  for (let start = 0; start < operations.length; start += 100) {
    await sender.sendMessages(operations.slice(start, start + 100).map((operation) => ({ body: operation, messageId: operation.id })));
  }
  await sender.close();
}

async function deadLettered(client: ServiceBusClient, count: number): Promise<ServiceBusReceivedMessage[]> {
  const receiver = client.createReceiver(QUEUE, { subQueueType: 'deadLetter', receiveMode: 'receiveAndDelete' });
  const messages: ServiceBusReceivedMessage[] = [];
  while (messages.length < count) {
    const batch = await receiver.receiveMessages(count - messages.length, { maxWaitTimeInMs: 5_000 });
    if (batch.length === 0) break;
    messages.push(...batch);
  }
  await receiver.close();
  return messages;
}

/** The first event of these types about this operation. */
function first<T extends StoreAgentEvent['type']>(events$: Observable<StoreAgentEvent>, operationId: string, ...types: T[]) {
  const found = firstValueFrom(
    events$.pipe(filter((event): event is Extract<StoreAgentEvent, { type: T }> => (types as string[]).includes(event.type) && 'operationId' in event && event.operationId === operationId)),
  );
  // A test that fails before awaiting it closes the agent, which ends the stream: not a second failure.
  found.catch(() => undefined);
  return found;
}

describe('a store whose handler fails for a while', () => {
  it('holds and retries each operation with back-off through a 5-second outage: 300 queued operations, none dead-lettered, each run once', async () => {
    const azure = await emulators();
    // The outage: the first five seconds after the first handler call, measured by the test.
    let outageEndsAt: number | undefined;
    const { stats, handlers } = flakyStore(() => {
      outageEndsAt ??= performance.now() + 5_000;
      return performance.now() < outageEndsAt;
    });
    const { agent, dataDir, events } = await startStore(azure, handlers);
    const operations = Array.from({ length: 300 }, (_, n) => placeOrder(n));
    await send(cloudClient(azure), operations);

    // Nothing tells the test when Service Bus itself dead-letters a message, so it watches the queue drain.
    await expect.poll(() => azure.serviceBus.messageCounts()[QUEUE] ?? 0, { timeout: 60_000, interval: 100 }).toBe(0);
    const dead = azure.serviceBus.messageCounts()[`${QUEUE}/$DeadLetterQueue`] ?? 0;
    console.info(`handler calls ${stats.calls} (${stats.failures} failed), dead-lettered ${dead}`);
    expect(dead).toBe(0);
    expect(events.filter((event) => event.type === 'acknowledged')).toHaveLength(300);
    // Held through an outage longer than its lock, on renewals: never given back, never lost (a lost lock would
    // bring the message back, to be answered from the ledger).
    expect(events.filter((event) => event.type === 'failed' || event.type === 'queue.error')).toEqual([]);
    expect(events.filter((event) => event.type === 'executed' && event.replayed)).toEqual([]);
    expect([...stats.executed.keys()].sort((a, b) => a - b)).toEqual(operations.map((_, n) => n));
    expect([...stats.executed.values()].every((count) => count === 1)).toBe(true);
    // With concurrency 1 the retries hold the queue's head: only that message is retried, with a growing wait
    // (at least 50, 100, 200, 400, 800, 1600, 2500 ms), so five seconds hold at most eight failed calls.
    expect(stats.failures).toBeGreaterThan(0);
    expect(stats.failures).toBeLessThanOrEqual(8);
    expect(stats.calls).toBe(300 + stats.failures);
    const retrying = events.filter((event) => event.type === 'retrying');
    expect(retrying).toHaveLength(stats.failures);
    expect(new Set(retrying.map((event) => event.operationId))).toEqual(new Set([operations[0]!.id]));
    expect(retrying.map((event) => event.attempt)).toEqual(retrying.map((_, index) => index + 1));
    expect(retrying[0]).toMatchObject({ error: { code: 'HANDLER_FAILED' } });

    await agent.close();
    const ledger = await openLedger({ directory: path.join(dataDir, 'ledger') });
    onCleanup(() => ledger.close());
    expect(operations.filter((operation) => ledger.get(operation.id)?.outcome === 'done')).toHaveLength(300);
  }, 90_000);

  it('dead-letters an operation that expires while it is retried as OPERATION_EXPIRED, not MaxDeliveryCountExceeded', async () => {
    const azure = await emulators();
    const { stats, handlers } = flakyStore(() => true);
    const { agent } = await startStore(azure, handlers);
    const operation = placeOrder(1, 3_000);
    const retried = first(agent.events$, operation.id, 'retrying', 'failed');
    const settled = first(agent.events$, operation.id, 'dead-lettered');
    const client = cloudClient(azure);
    await send(client, [operation]);

    expect(await retried).toMatchObject({ type: 'retrying', attempt: 1 });
    const [dead] = await deadLettered(client, 1);
    expect(dead?.deadLetterReason).toBe('OPERATION_EXPIRED');
    expect(await settled).toMatchObject({ reason: 'OPERATION_EXPIRED' });
    // Held all along: one delivery, retried in process until the operation expired.
    expect(dead?.deliveryCount).toBe(0);
    expect(stats.executed.size).toBe(0);
  });

  it('dead-letters a message itself on its last allowed delivery, with HANDLER_FAILED and the last error', async () => {
    const azure = await emulators({ maxDeliveryCount: 3 });
    const { stats, handlers } = flakyStore(() => true);
    const { agent } = await startStore(azure, handlers, {
      serviceBus: { maxDeliveryCount: 3, handlerRetry: { initialDelayInMs: 20, maxDelayInMs: 40, maxRetryWindowInMs: 150 } },
    });
    const operation = placeOrder(7);
    const settled = first(agent.events$, operation.id, 'dead-lettered');
    const client = cloudClient(azure);
    await send(client, [operation]);

    const [dead] = await deadLettered(client, 1);
    expect(dead?.deadLetterReason).toBe('HANDLER_FAILED');
    expect(await settled).toMatchObject({ reason: 'HANDLER_FAILED' });
    expect(dead?.deadLetterErrorDescription).toContain('the store database is restarting');
    // Two abandons after their retry windows, then the third and last delivery is dead-lettered by the store.
    expect(dead?.deliveryCount).toBe(2);
    expect(stats.failures).toBeGreaterThanOrEqual(3);
  });

  it('records a refusal at once, without retrying it', async () => {
    const azure = await emulators();
    const { stats, handlers } = flakyStore(() => false);
    const { agent, events } = await startStore(azure, handlers);
    const operation = placeOrder(-1);
    const acknowledged = first(agent.events$, operation.id, 'acknowledged');
    await send(cloudClient(azure), [operation]);
    await acknowledged;
    expect(stats.calls).toBe(1);
    expect(events.filter((event) => event.type === 'retrying')).toHaveLength(0);
    expect(events.find((event) => event.type === 'executed')).toMatchObject({ operationId: operation.id, outcome: 'rejected' });
  });

  it('stops the retry wait at once on close and gives the message back, so the next agent runs it', async () => {
    const azure = await emulators();
    let down = true;
    const { stats, handlers } = flakyStore(() => down);
    // A first wait of a minute: a close that did not cut it short would outlast the test.
    const slow = { serviceBus: { handlerRetry: { initialDelayInMs: 60_000, maxDelayInMs: 60_000, maxRetryWindowInMs: 120_000 } } };
    const { agent } = await startStore(azure, handlers, slow);
    const operation = placeOrder(3);
    const retried = first(agent.events$, operation.id, 'retrying', 'failed');
    await send(cloudClient(azure), [operation]);
    expect(await retried).toMatchObject({ type: 'retrying', attempt: 1, delayInMs: expect.any(Number) });

    await agent.close();
    expect(stats.executed.size).toBe(0);
    down = false;
    const next = await startStore(azure, handlers);
    const executed = await first(next.agent.events$, operation.id, 'executed');
    expect(executed).toMatchObject({ outcome: 'done', replayed: false });
    expect(stats.executed.get(3)).toBe(1);
  });
});

describe('the store agent retry options', () => {
  const base = { storeId: STORE, handlers: flakyStore(() => false).handlers, dataDir: '/nowhere', ...storeSigningOptions(STORE) };
  it.each([
    [{ handlerRetry: { initialDelayInMs: 0 } }, 'serviceBus.handlerRetry.initialDelayInMs must be a positive'],
    [{ handlerRetry: { initialDelayInMs: 500, maxDelayInMs: 100 } }, 'serviceBus.handlerRetry.maxDelayInMs must be at least initialDelayInMs (500)'],
    [{ handlerRetry: { maxRetryWindowInMs: -1 } }, 'serviceBus.handlerRetry.maxRetryWindowInMs must be a number of milliseconds, 0 or more'],
    [{ maxDeliveryCount: 0 }, "serviceBus.maxDeliveryCount must be a positive whole number (the queue's MaxDeliveryCount)"],
    [{ maxDeliveryCount: 2.5 }, 'serviceBus.maxDeliveryCount must be a positive whole number'],
  ])('refuses %j, saying what to change', (serviceBus, message) => {
    expect(() => createStoreAgent({ ...base, serviceBus: { connectionString: 'unused', ...serviceBus } })).toThrow(new RangeError(`createStoreAgent: ${message}`).message);
  });
});

describe('a real-time call that reaches a failing store', () => {
  async function cloud(azure: Emulators, onStoreFailure?: 'fallback' | 'fail'): Promise<Dispatcher> {
    const dispatcher = createDispatcher({
      serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
      relay: { connectionString: azure.relayConnectionString() },
      // One channel failure would trip the breaker: a store failure must not count as one.
      policy: parsePolicy({
        link: { failureThreshold: 1, probeIntervalInMs: 60_000 },
        operations: { [TYPE]: { latency: 'realtime', fallback: 'queue', ...(onStoreFailure === undefined ? {} : { onStoreFailure }) } },
      }),
      stores: [{ storeId: STORE, bidirectional: true, ...storePublicKeys(STORE) }],
      ...dispatcherSigningOptions(),
    });
    onCleanup(() => dispatcher.close());
    await dispatcher.start();
    return dispatcher;
  }

  async function bidirectionalStore(azure: Emulators, down: () => boolean) {
    const flaky = flakyStore(down);
    const store = await startStore(azure, flaky.handlers, { relay: { connectionString: azure.relayConnectionString() }, expose: [TYPE] });
    await firstValueFrom(store.agent.state$.pipe(filter((state) => state.relay === 'listening')));
    return { ...flaky, ...store };
  }

  it('falls back to the queue under the same id, runs once after the outage, and leaves the link healthy', async () => {
    const azure = await emulators();
    let down = true;
    const { stats, agent } = await bidirectionalStore(azure, () => down);
    const dispatcher = await cloud(azure);
    const operationId = '0b9d2a4e-3c1f-4a7e-9f7d-2f6a1b8c9d01';
    // The outage ends when the store starts retrying the queued copy (the relay's run fails without retrying).
    const retrying = first(agent.events$, operationId, 'retrying');
    void retrying.then(() => (down = false));
    const executed = first(agent.events$, operationId, 'executed');

    const delivery = await dispatcher.publish({ id: operationId, storeId: STORE, type: TYPE, payload: { n: 42 } }, { awaitReplyInMs: 15_000 });
    expect(delivery).toMatchObject({ operationId, channel: 'queue', outcome: 'delivered', reply: { placed: 42 }, fallbackReason: 'HANDLER_FAILED', attempts: 2 });
    expect(await retrying).toMatchObject({ type: 'retrying' });
    expect(await executed).toMatchObject({ channel: 'queue', outcome: 'done', replayed: false });
    expect(stats.executed.get(42)).toBe(1);
    // The relay carried the call; the store failed: the breaker counted nothing.
    expect(topStateOf(dispatcher.link(STORE).state)).toBe('healthy');
    expect(dispatcher.link(STORE).tags).toContain('relay');
  });

  it("answers the store's failure as it is when the type's policy says onStoreFailure: fail", async () => {
    const azure = await emulators();
    const { stats } = await bidirectionalStore(azure, () => true);
    const dispatcher = await cloud(azure, 'fail');
    const delivery = await dispatcher.publish({ storeId: STORE, type: TYPE, payload: { n: 5 } });
    expect(delivery).toMatchObject({ channel: 'relay', outcome: 'rejected', rejection: { code: 'HANDLER_FAILED' }, attempts: 1 });
    expect(delivery.fallbackReason).toBeUndefined();
    expect(stats.calls).toBe(1);
    expect(topStateOf(dispatcher.link(STORE).state)).toBe('healthy');
  });
});
