import { isServiceBusError, type ServiceBusReceivedMessage } from '@azure/service-bus';
import { describe, expect, it } from 'vitest';
import { createSasToken } from '../../../src/core/sas.js';
import { client, emulator, failureOf, queues } from './harness.js';

async function receiveExactly(receiver: { receiveMessages(n: number, o: { maxWaitTimeInMs: number }): Promise<ServiceBusReceivedMessage[]> }, count: number): Promise<ServiceBusReceivedMessage[]> {
  const received: ServiceBusReceivedMessage[] = [];
  for (let attempt = 0; received.length < count && attempt < 20; attempt++) {
    received.push(...(await receiver.receiveMessages(count - received.length, { maxWaitTimeInMs: 3000 })));
  }
  return received;
}

describe('service bus emulator: core path', () => {
  it('sends one message and a batch, then receives them in peekLock and completes them', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    const sender = c.createSender('q1');
    await sender.sendMessages({ body: 'single', messageId: 'm1', applicationProperties: { kind: 'one' } });
    await sender.sendMessages([{ body: { n: 2 } }, { body: Buffer.from([1, 2, 3]) }]);
    const batch = await sender.createMessageBatch();
    expect(batch.maxSizeInBytes).toBe(256 * 1024);
    expect(batch.tryAddMessage({ body: 'b1' })).toBe(true);
    expect(batch.tryAddMessage({ body: 'b2', subject: 'second' })).toBe(true);
    await sender.sendMessages(batch);
    expect(sb.messageCounts().q1).toBe(5);

    const receiver = c.createReceiver('q1');
    const received = await receiveExactly(receiver, 5);
    expect(received.map((m): unknown => m.body)).toEqual(['single', { n: 2 }, Buffer.from([1, 2, 3]), 'b1', 'b2']);
    expect(received[0]!.messageId).toBe('m1');
    expect(received[0]!.applicationProperties).toEqual({ kind: 'one' });
    expect(received[4]!.subject).toBe('second');
    expect(received.every((m) => typeof m.messageId === 'string' && m.messageId.length > 0)).toBe(true);
    expect(received.map((m) => Number(m.sequenceNumber))).toEqual([1, 2, 3, 4, 5]);
    expect(received[0]!.deliveryCount).toBe(0);
    expect(received[0]!.lockedUntilUtc!.getTime()).toBeGreaterThan(Date.now());
    expect(received[0]!.enqueuedTimeUtc).toBeInstanceOf(Date);
    for (const message of received) await receiver.completeMessage(message);
    expect(sb.messageCounts().q1).toBe(0);
  });

  it('accepts a SharedAccessSignature connection string (no SASL layer)', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const token = createSasToken({ resource: `sb://127.0.0.1:${sb.port}/`, keyName: 'RootManageSharedAccessKey', key: 'SAS_KEY_VALUE' });
    const c = client(`Endpoint=sb://127.0.0.1:${sb.port};SharedAccessSignature=${token};UseDevelopmentEmulator=true`);
    await c.createSender('q1').sendMessages({ body: 'via token' });
    const [message] = await c.createReceiver('q1', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 3000 });
    expect(message?.body).toBe('via token');
    expect(message?.lockToken).toBeUndefined();
    expect(sb.messageCounts().q1).toBe(0);
  });

  it('abandon redelivers with deliveryCount 1 and merged properties; MaxDeliveryCount dead-letters', async () => {
    const sb = await emulator({ namespaces: [{ queues: [{ name: 'q1', maxDeliveryCount: 2 }] }] });
    const c = client(sb.connectionString());
    await c.createSender('q1').sendMessages({ body: 'again' });
    const receiver = c.createReceiver('q1');
    const [first] = await receiveExactly(receiver, 1);
    await receiver.abandonMessage(first!, { abandonedBy: 'test' });
    const [second] = await receiveExactly(receiver, 1);
    expect(second!.deliveryCount).toBe(1);
    expect(second!.applicationProperties).toEqual({ abandonedBy: 'test' });
    await receiver.abandonMessage(second!);
    const dlq = c.createReceiver('q1', { subQueueType: 'deadLetter' });
    const [dead] = await receiveExactly(dlq, 1);
    expect(dead!.body).toBe('again');
    expect(dead!.deadLetterReason).toBe('MaxDeliveryCountExceeded');
    await dlq.completeMessage(dead!);
    expect(sb.messageCounts()).toMatchObject({ q1: 0, 'q1/$DeadLetterQueue': 0 });
  });

  it('dead-letters with reason and description, readable from the dead-letter queue', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    await c.createSender('q1').sendMessages({ body: 'bad', applicationProperties: { a: 1 } });
    const receiver = c.createReceiver('q1');
    const [message] = await receiveExactly(receiver, 1);
    await receiver.deadLetterMessage(message!, { deadLetterReason: 'BadThing', deadLetterErrorDescription: 'it was bad' });
    expect(sb.messageCounts()['q1/$DeadLetterQueue']).toBe(1);
    // The transfer dead-letter queue is a different (here empty) queue.
    expect(await c.createReceiver('q1', { subQueueType: 'transferDeadLetter' }).receiveMessages(1, { maxWaitTimeInMs: 200 })).toEqual([]);
    const dlq = c.createReceiver('q1', { subQueueType: 'deadLetter' });
    const [dead] = await receiveExactly(dlq, 1);
    expect(dead!.body).toBe('bad');
    expect(dead!.deadLetterReason).toBe('BadThing');
    expect(dead!.deadLetterErrorDescription).toBe('it was bad');
    expect(dead!.applicationProperties).toMatchObject({ a: 1 });
    await dlq.completeMessage(dead!);
  });

  it('defers a message and receives it by sequence number, then completes it through $management', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    await c.createSender('q1').sendMessages([{ body: 'later' }, { body: 'now' }]);
    const receiver = c.createReceiver('q1');
    const [later, now] = await receiveExactly(receiver, 2);
    await receiver.deferMessage(later!);
    await receiver.completeMessage(now!);
    expect(await receiver.receiveMessages(1, { maxWaitTimeInMs: 300 })).toEqual([]);
    const [deferred] = await receiver.receiveDeferredMessages([later!.sequenceNumber!]);
    expect(deferred!.body).toBe('later');
    expect(deferred!.state).toBe('deferred');
    await receiver.completeMessage(deferred!);
    expect(sb.messageCounts().q1).toBe(0);
    const missing = await failureOf(receiver.receiveDeferredMessages([later!.sequenceNumber!]));
    expect(isServiceBusError(missing) && missing.code).toBe('MessageNotFound');
  });

  it('dead-letters and abandons deferred messages through $management update-disposition', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    await c.createSender('q1').sendMessages([{ body: 'd1' }, { body: 'd2' }]);
    const receiver = c.createReceiver('q1');
    const got = await receiveExactly(receiver, 2);
    for (const m of got) await receiver.deferMessage(m);
    const deferred = await receiver.receiveDeferredMessages(got.map((m) => m.sequenceNumber!));
    await receiver.deadLetterMessage(deferred[0]!, { deadLetterReason: 'late', deadLetterErrorDescription: 'too late' });
    await receiver.abandonMessage(deferred[1]!);
    // An abandoned deferred message stays deferred.
    const [still] = await receiver.receiveDeferredMessages([got[1]!.sequenceNumber!]);
    expect([still!.body, still!.deliveryCount]).toEqual(['d2', 1]);
    await receiver.completeMessage(still!);
    const [dead] = await receiveExactly(c.createReceiver('q1', { subQueueType: 'deadLetter' }), 1);
    expect([dead!.body, dead!.deadLetterReason]).toEqual(['d1', 'late']);
  });

  it('renews a lock, redelivers after lock expiry, and reports MessageLockLost on a late settle', async () => {
    const sb = await emulator({ namespaces: [{ queues: [{ name: 'q1', lockDurationInMs: 300 }] }] });
    const c = client(sb.connectionString());
    await c.createSender('q1').sendMessages({ body: 'locked' });
    const receiver = c.createReceiver('q1', { maxAutoLockRenewalDurationInMs: 0 });
    const [message] = await receiveExactly(receiver, 1);
    const before = message!.lockedUntilUtc!.getTime();
    const renewed = await receiver.renewMessageLock(message!);
    expect(renewed.getTime()).toBeGreaterThanOrEqual(before);
    // The lock lapses; the next receive gets the message again with its delivery counted.
    const [again] = await receiveExactly(receiver, 1);
    expect(again!.body).toBe('locked');
    expect(again!.deliveryCount).toBe(1);
    const lost = await failureOf(receiver.completeMessage(message!));
    expect(isServiceBusError(lost) && lost.code).toBe('MessageLockLost');
    await receiver.completeMessage(again!);
  });

  it('settles through $management after the receive link is closed (locks belong to the entity)', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    await c.createSender('q1').sendMessages({ body: 'x' });
    const receiver = c.createReceiver('q1');
    const [message] = await receiveExactly(receiver, 1);
    await receiver.close();
    const other = c.createReceiver('q1');
    await other.completeMessage(message!);
    expect(sb.messageCounts().q1).toBe(0);
  });

  it('unknown entity gives MessagingEntityNotFound, for senders and receivers', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    const send = await failureOf(c.createSender('nope').sendMessages({ body: 1 }));
    expect(isServiceBusError(send) && send.code).toBe('MessagingEntityNotFound');
    const receive = await failureOf(c.createReceiver('nope').receiveMessages(1, { maxWaitTimeInMs: 1000 }));
    expect(isServiceBusError(receive) && receive.code).toBe('MessagingEntityNotFound');
  });

  it('a bad key gives UnauthorizedAccess', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString().replace('SAS_KEY_VALUE', 'wrong-key'), { retryOptions: { maxRetries: 0, retryDelayInMs: 50, timeoutInMs: 3000 } });
    const error = await failureOf(c.createSender('q1').sendMessages({ body: 1 }));
    expect(isServiceBusError(error) && error.code).toBe('UnauthorizedAccess');
    expect(error.message).toMatch(/InvalidSignature/);
  });

  it('a listen-only key cannot send', async () => {
    const sb = await emulator({
      namespaces: queues('q1'),
      sharedAccessPolicies: [
        { keyName: 'listener', primaryKey: 'k1', rights: ['Listen'] },
        { keyName: 'admin', primaryKey: 'k2', rights: ['Manage'] },
      ],
    });
    const c = client(sb.connectionString('listener'), { retryOptions: { maxRetries: 0, retryDelayInMs: 50, timeoutInMs: 3000 } });
    const error = await failureOf(c.createSender('q1').sendMessages({ body: 1 }));
    expect(isServiceBusError(error) && error.code).toBe('UnauthorizedAccess');
    expect(await c.createReceiver('q1').receiveMessages(1, { maxWaitTimeInMs: 200 })).toEqual([]);
  });

  it('rejects a message over the size limit with MessageSizeExceeded', async () => {
    const sb = await emulator({ namespaces: [{ queues: [{ name: 'q1', maxMessageSizeInBytes: 1024 }] }] });
    const c = client(sb.connectionString());
    const sender = c.createSender('q1');
    const error = await failureOf(sender.sendMessages({ body: Buffer.alloc(2048) }));
    expect(isServiceBusError(error) && error.code).toBe('MessageSizeExceeded');
    await sender.sendMessages({ body: Buffer.alloc(100) });
    expect(sb.messageCounts().q1).toBe(1);
  });

  it('auto-creates unknown queues when asked to', async () => {
    const sb = await emulator({ autoCreate: true });
    const c = client(sb.connectionString());
    await c.createSender('fresh').sendMessages({ body: 'made on demand' });
    const [message] = await c.createReceiver('fresh', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 3000 });
    expect(message?.body).toBe('made on demand');
  });

  it('streams with subscribe() and auto-completes', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    await c.createSender('q1').sendMessages([{ body: 1 }, { body: 2 }, { body: 3 }]);
    const receiver = c.createReceiver('q1');
    const bodies: unknown[] = [];
    await new Promise<void>((resolve, reject) => {
      receiver.subscribe(
        {
          processMessage: async (message) => {
            bodies.push(message.body);
            if (bodies.length === 3) resolve();
            return Promise.resolve();
          },
          processError: async (args) => {
            reject(args.error);
            return Promise.resolve();
          },
        },
        { maxConcurrentCalls: 2 },
      );
    });
    await receiver.close();
    expect(bodies.sort()).toEqual([1, 2, 3]);
    expect(sb.messageCounts().q1).toBe(0);
  });

  it('closes gracefully: close() is idempotent and counts connections', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    await c.createSender('q1').sendMessages({ body: 1 });
    expect(sb.activeConnections).toBe(1);
    await Promise.all([sb.close(), sb.close()]);
    expect(sb.activeConnections).toBe(0);
  });
});
