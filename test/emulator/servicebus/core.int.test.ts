import { describe, expect, it } from 'vitest';
import { client, emulator, queues } from './harness.js';

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
    expect(batch.tryAddMessage({ body: 'b2', sessionId: undefined })).toBe(true);
    await sender.sendMessages(batch);
    expect(sb.messageCounts().q1).toBe(5);

    const receiver = c.createReceiver('q1');
    const received = [];
    while (received.length < 5) {
      received.push(...(await receiver.receiveMessages(5 - received.length, { maxWaitTimeInMs: 2000 })));
    }
    expect(received.map((m): unknown => m.body)).toEqual(['single', { n: 2 }, Buffer.from([1, 2, 3]), 'b1', 'b2']);
    expect(received[0]!.messageId).toBe('m1');
    expect(received[0]!.applicationProperties).toEqual({ kind: 'one' });
    expect(received.every((m) => typeof m.messageId === 'string' && m.messageId.length > 0)).toBe(true);
    expect(received.map((m) => Number(m.sequenceNumber))).toEqual([1, 2, 3, 4, 5]);
    expect(received[0]!.deliveryCount).toBe(0);
    expect(received[0]!.lockedUntilUtc!.getTime()).toBeGreaterThan(Date.now());
    for (const message of received) await receiver.completeMessage(message);
    expect(sb.messageCounts().q1).toBe(0);
  });
});
