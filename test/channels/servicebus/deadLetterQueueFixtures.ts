/** Shared by the dead-letter tooling tests: an emulator, and messages put in a dead-letter queue with the raw SDK. */
import { ServiceBusClient, type ServiceBusReceivedMessage } from '@azure/service-bus';
import { afterEach } from 'vitest';
import { createOperation, type Operation } from '../../../src/core/operation.js';
import { startServiceBusEmulator, type ServiceBusEmulator, type ServiceBusEmulatorOptions } from '../../../src/emulator/servicebus/index.js';

export const FAST = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
export const STORE = 'paris-1';
export const QUEUE = 'store-paris-1';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

export function onCleanup(close: () => Promise<unknown>): void {
  closeables.push(close);
}

export async function startEmulator(options: ServiceBusEmulatorOptions = {}): Promise<ServiceBusEmulator> {
  const emulator = await startServiceBusEmulator({
    namespaces: [{ queues: [{ name: QUEUE }, { name: 'store-dedup', requiresDuplicateDetection: true }] }],
    ...options,
  });
  onCleanup(() => emulator.close());
  return emulator;
}

export function rawClient(connectionString: string): ServiceBusClient {
  const client = new ServiceBusClient(connectionString, { retryOptions: FAST });
  onCleanup(() => client.close());
  return client;
}

export function operation(type: string, options: { expired?: boolean; storeId?: string } = {}): Operation {
  return createOperation(
    { storeId: options.storeId ?? STORE, type, payload: { sku: 'A-1', n: 1 }, latency: 'async', timeToLiveInMs: 3_600_000 },
    options.expired === true ? { nowInMs: Date.now() - 2 * 3_600_000 } : {},
  );
}

export interface DeadLetterEntry {
  messageId: string;
  body: unknown;
  reason: string;
  description: string;
  applicationProperties?: Record<string, string | number | boolean>;
  correlationId?: string;
}

/** Sends the entries to the queue, receives them in peek-lock and dead-letters each with its reason, in order. */
export async function deadLetter(client: ServiceBusClient, queue: string, entries: readonly DeadLetterEntry[]): Promise<void> {
  const sender = client.createSender(queue);
  const receiver = client.createReceiver(queue, { receiveMode: 'peekLock' });
  try {
    for (let start = 0; start < entries.length; start += 100) {
      await sender.sendMessages(
        entries.slice(start, start + 100).map((entry) => ({
          messageId: entry.messageId,
          body: entry.body,
          contentType: 'application/json',
          ...(entry.correlationId === undefined ? {} : { correlationId: entry.correlationId }),
          ...(entry.applicationProperties === undefined ? {} : { applicationProperties: entry.applicationProperties }),
        })),
      );
    }
    const byId = new Map(entries.map((entry) => [entry.messageId, entry]));
    let done = 0;
    while (done < entries.length) {
      const batch = await receiver.receiveMessages(Math.min(100, entries.length - done), { maxWaitTimeInMs: 5_000 });
      if (batch.length === 0) throw new Error(`only ${done} of ${entries.length} messages arrived to be dead-lettered`);
      for (const message of batch) {
        const entry = byId.get(String(message.messageId))!;
        await receiver.deadLetterMessage(message, { deadLetterReason: entry.reason, deadLetterErrorDescription: entry.description });
        done++;
      }
    }
  } finally {
    await receiver.close();
    await sender.close();
  }
}

/** Receives (and deletes) exactly `count` messages from `queue`, failing if they do not arrive. */
export async function drain(client: ServiceBusClient, queue: string, count: number, subQueueType?: 'deadLetter'): Promise<ServiceBusReceivedMessage[]> {
  const receiver = client.createReceiver(queue, { receiveMode: 'receiveAndDelete', ...(subQueueType === undefined ? {} : { subQueueType }) });
  const got: ServiceBusReceivedMessage[] = [];
  try {
    while (got.length < count) {
      const batch = await receiver.receiveMessages(count - got.length, { maxWaitTimeInMs: 5_000 });
      if (batch.length === 0) break;
      got.push(...batch);
    }
  } finally {
    await receiver.close();
  }
  return got;
}

/** Every message now in the queue (or its dead-letter queue), by peeking. */
export async function peekAll(client: ServiceBusClient, queue: string, subQueueType?: 'deadLetter'): Promise<ServiceBusReceivedMessage[]> {
  const receiver = client.createReceiver(queue, subQueueType === undefined ? {} : { subQueueType });
  const all: ServiceBusReceivedMessage[] = [];
  try {
    for (;;) {
      const page = await receiver.peekMessages(100);
      if (page.length === 0) return all;
      all.push(...page);
    }
  } finally {
    await receiver.close();
  }
}

/** Three dead-lettered operations as the store leaves them, plus one body that is not an envelope. */
export function storeDeadLetters(): { entries: DeadLetterEntry[]; invalid: Operation; expired: Operation; crashed: Operation } {
  const invalid = operation('price.update');
  const expired = operation('clickAndCollect.order', { expired: true });
  const crashed = operation('stock.query');
  return {
    invalid,
    expired,
    crashed,
    entries: [
      { messageId: invalid.id, body: invalid, reason: 'OPERATION_INVALID', description: 'invalid price.update operation: payload.price is required', correlationId: 'c-1', applicationProperties: { storeId: STORE } },
      { messageId: expired.id, body: expired, reason: 'OPERATION_EXPIRED', description: `operation ${expired.id} expired at ${expired.expiresAt}` },
      { messageId: crashed.id, body: crashed, reason: 'MaxDeliveryCountExceeded', description: 'Message could not be consumed after 10 delivery attempts.' },
      { messageId: 'not-an-envelope', body: { hello: 'world' }, reason: 'OPERATION_INVALID', description: 'Invalid operation: id must be a UUID' },
    ],
  };
}
