/**
 * The cloud inbox refuses a store message that is too large or nests too deep before any schema walks it: it is
 * dead-lettered INBOX_MESSAGE_INVALID at once. Real dispatcher, real Service Bus emulator and SDK.
 */
import { randomUUID } from 'node:crypto';
import { ServiceBusClient, type ServiceBusReceivedMessage } from '@azure/service-bus';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatcher, type Dispatcher } from '../../src/cloud/dispatcher.js';
import { MAX_STORE_MESSAGE_BYTES } from '../../src/core/storeMessage.js';
import { startServiceBusEmulator } from '../../src/emulator/servicebus/index.js';
import { dispatcherSigningOptions, signedStoreMessage, storeKey, storePublicKeys } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const STORE = 'paris-1';

async function world(): Promise<{ client: ServiceBusClient; dispatcher: Dispatcher }> {
  const emulator = await startServiceBusEmulator({
    namespaces: [{ queues: [{ name: `store-${STORE}` }, { name: 'cloud-inbox', requiresDuplicateDetection: true, lockDurationInMs: 2_000 }] }],
  });
  closeables.push(() => emulator.close());
  const dispatcher = createDispatcher({ serviceBus: { connectionString: emulator.connectionString(), retry: RETRY }, stores: [{ storeId: STORE, bidirectional: false, ...storePublicKeys(STORE) }], ...dispatcherSigningOptions() });
  closeables.push(() => dispatcher.close());
  await dispatcher.start();
  const client = new ServiceBusClient(emulator.connectionString(), { retryOptions: RETRY });
  closeables.push(() => client.close());
  return { client, dispatcher };
}

/** A store event as JSON text, its body replaced by `body` (text, so it may be deeper than JSON.stringify goes). */
function eventText(id: string, body: string): string {
  const event = { id, kind: 'event', type: 'sale.recorded', storeId: STORE, body: 'BODY', createdAt: new Date().toISOString() };
  return JSON.stringify(event).replace('"BODY"', body);
}

async function deadLettered(client: ServiceBusClient): Promise<ServiceBusReceivedMessage> {
  const receiver = client.createReceiver('cloud-inbox', { subQueueType: 'deadLetter' });
  const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 20_000 });
  if (message === undefined) throw new Error('nothing was dead-lettered');
  await receiver.completeMessage(message);
  await receiver.close();
  return message;
}

describe('cloud inbox: bounded messages', () => {
  it.each([
    ['nests 10,000 levels deep', `${'['.repeat(10_000)}${']'.repeat(10_000)}`, 'deeper than 64'],
    ['is larger than a store message may be', JSON.stringify('x'.repeat(MAX_STORE_MESSAGE_BYTES)), `${MAX_STORE_MESSAGE_BYTES}`],
  ])('dead-letters a store event whose body %s, at its first delivery, and still takes the next one', async (_name, body, says) => {
    const { client, dispatcher } = await world();
    const id = randomUUID();
    const sender = client.createSender('cloud-inbox');
    // A Buffer travels as it is; the dispatcher's SDK parses it as JSON.
    await sender.sendMessages({ body: Buffer.from(eventText(id, body)), messageId: id, subject: 'event' });
    const dead = await deadLettered(client);
    expect(dead).toMatchObject({ messageId: id, deadLetterReason: 'INBOX_MESSAGE_INVALID', deadLetterErrorDescription: expect.stringContaining(says) });
    const nextId = randomUUID();
    const next = firstValueFrom(dispatcher.events$.pipe(filter((event) => event.id === nextId)));
    const signedEvent = signedStoreMessage(JSON.parse(eventText(nextId, '{"till":3}')) as object, storeKey(STORE));
    await sender.sendMessages({ body: signedEvent, messageId: nextId, subject: 'event' });
    expect(await next).toMatchObject({ id: nextId, body: { till: 3 } });
  });
});
