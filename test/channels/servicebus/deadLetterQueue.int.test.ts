import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createDeadLetterQueue, type DeadLetterQueue, type DeadLetterQueueOptions } from '../../../src/channels/servicebus/deadLetterQueue.js';
import { isStorelinkError } from '../../../src/core/errors.js';
import { startServiceBusEmulator } from '../../../src/emulator/servicebus/index.js';
import { deadLetter, drain, FAST, onCleanup, operation, peekAll, QUEUE, rawClient, startEmulator, storeDeadLetters } from './deadLetterQueueFixtures.js';

function open(connectionString: string, options: Partial<DeadLetterQueueOptions> = {}): DeadLetterQueue {
  const dlq = createDeadLetterQueue({ connectionString, queue: QUEUE, retry: FAST, ...options });
  onCleanup(() => dlq.close());
  return dlq;
}

describe('dead-letter queue tooling against the emulator, with the real SDK', () => {
  it('lists reasons, descriptions and operation summaries, oldest first, without locking anything', async () => {
    const emulator = await startEmulator();
    const client = rawClient(emulator.connectionString());
    const { entries, invalid, expired, crashed } = storeDeadLetters();
    await deadLetter(client, QUEUE, entries);
    const dlq = open(emulator.connectionString());

    const listed = await dlq.list();

    expect(listed.map((message) => [message.messageId, message.reason, message.description])).toEqual(
      entries.map((entry) => [entry.messageId, entry.reason, entry.description]),
    );
    expect(listed[0]).toMatchObject({
      operation: { id: invalid.id, type: 'price.update', storeId: 'paris-1', expiresAt: invalid.expiresAt },
      body: invalid,
      applicationProperties: { storeId: 'paris-1' },
    });
    expect(listed[1]!.operation).toMatchObject({ id: expired.id, type: 'clickAndCollect.order' });
    expect(listed[2]!.operation).toMatchObject({ id: crashed.id, type: 'stock.query' });
    expect(listed[3]!.operation).toBeUndefined();
    for (const message of listed) {
      expect(message.sequenceNumber).toMatch(/^\d+$/);
      expect(message.enqueuedAt).toBeInstanceOf(Date);
    }
    // Peeking took no lock: a receiver gets every message at once.
    expect(await drain(client, QUEUE, 4, 'deadLetter')).toHaveLength(4);
  });

  it('pages through more than one peek, honours the limit, and starts from the oldest on every call', async () => {
    const emulator = await startEmulator();
    const client = rawClient(emulator.connectionString());
    const entries = Array.from({ length: 230 }, (_, n) => ({ messageId: `m-${n}`, body: { n }, reason: 'OPERATION_INVALID', description: `#${n}` }));
    await deadLetter(client, QUEUE, entries);
    const dlq = open(emulator.connectionString());

    expect((await dlq.list()).map((message) => message.messageId)).toEqual(entries.slice(0, 100).map((entry) => entry.messageId));
    expect((await dlq.list({ limit: 150 })).map((message) => message.messageId)).toEqual(entries.slice(0, 150).map((entry) => entry.messageId));
    const all = await dlq.list({ limit: 1_000 });
    expect(all.map((message) => message.messageId)).toEqual(entries.map((entry) => entry.messageId));
    expect(new Set(all.map((message) => message.sequenceNumber)).size).toBe(230);
    expect(() => dlq.list({ limit: 0 })).toThrow(RangeError);
  });

  it('keeps concurrent lists and shows on one instance apart', async () => {
    const emulator = await startEmulator();
    const client = rawClient(emulator.connectionString());
    const entries = Array.from({ length: 250 }, (_, n) => ({ messageId: `m-${n}`, body: { n }, reason: 'OPERATION_INVALID', description: `#${n}` }));
    await deadLetter(client, QUEUE, entries);
    const dlq = open(emulator.connectionString());

    const [first, shown, second, last] = await Promise.all([dlq.list({ limit: 250 }), dlq.show('m-7'), dlq.list({ limit: 250 }), dlq.show('m-249')]);

    const ids = entries.map((entry) => entry.messageId);
    expect(first.map((message) => message.messageId)).toEqual(ids);
    expect(second.map((message) => message.messageId)).toEqual(ids);
    expect(shown?.description).toBe('#7');
    expect(last?.description).toBe('#249');
  });

  it('reports a target another receiver holds locked as not found, and sends nothing for it', async () => {
    const emulator = await startEmulator();
    const client = rawClient(emulator.connectionString());
    const { entries, invalid } = storeDeadLetters();
    await deadLetter(client, QUEUE, entries);
    const dlq = open(emulator.connectionString());
    const before = await dlq.list();
    const other = client.createReceiver(QUEUE, { subQueueType: 'deadLetter', receiveMode: 'peekLock' });
    onCleanup(() => other.close());
    const [locked] = await other.receiveMessages(1, { maxWaitTimeInMs: 5_000 });
    expect(locked?.messageId).toBe(invalid.id);

    const result = await dlq.resubmit({ ids: [invalid.id] });

    expect(result).toEqual({ resubmitted: [], failed: [], notFound: [before[0]!.sequenceNumber] });
    expect(await peekAll(client, QUEUE)).toEqual([]);
    expect(await peekAll(client, QUEUE, 'deadLetter')).toHaveLength(4);
  });

  it('shows a message by sequence number or messageId, and nothing for an unknown one', async () => {
    const emulator = await startEmulator();
    const client = rawClient(emulator.connectionString());
    const { entries, crashed } = storeDeadLetters();
    await deadLetter(client, QUEUE, entries);
    const dlq = open(emulator.connectionString());
    const listed = await dlq.list();

    expect(await dlq.show(listed[2]!.sequenceNumber)).toEqual(listed[2]);
    // A fresh client has peeked nothing yet: show by sequence number must not depend on an earlier list().
    expect(await open(emulator.connectionString()).show(listed[3]!.sequenceNumber)).toEqual(listed[3]);
    expect(await open(emulator.connectionString()).show(listed[0]!.sequenceNumber)).toEqual(listed[0]);
    expect(await open(emulator.connectionString()).show('999999')).toBeUndefined();
    expect(await dlq.show(crashed.id)).toEqual(listed[2]);
    expect(await dlq.show('not-an-envelope')).toMatchObject({ reason: 'OPERATION_INVALID', body: { hello: 'world' } });
    expect(await dlq.show('999999')).toBeUndefined();
    expect(await dlq.show('no-such-message')).toBeUndefined();
  });

  it('resubmits exactly the chosen messages with their original messageId, body and properties, and removes them from the dead-letter queue', async () => {
    const emulator = await startEmulator();
    const client = rawClient(emulator.connectionString());
    const { entries, invalid, crashed } = storeDeadLetters();
    await deadLetter(client, QUEUE, entries);
    const dlq = open(emulator.connectionString());
    const before = await dlq.list();

    const result = await dlq.resubmit({ ids: [before[0]!.sequenceNumber, crashed.id, 'no-such-id'] });

    expect(result.resubmitted.map(({ message }) => message.messageId)).toEqual([invalid.id, crashed.id]);
    expect(result.failed).toEqual([]);
    expect(result.notFound).toEqual(['no-such-id']);
    const back = await drain(client, QUEUE, 2);
    expect(back.map((message): unknown[] => [message.messageId, message.body])).toEqual([
      [invalid.id, invalid],
      [crashed.id, crashed],
    ]);
    expect(back[0]).toMatchObject({ correlationId: 'c-1', contentType: 'application/json', applicationProperties: { storeId: 'paris-1' } });
    expect(back[0]!.applicationProperties).not.toHaveProperty('DeadLetterReason');
    expect((await dlq.list()).map((message) => message.messageId)).toEqual([entries[1]!.messageId, 'not-an-envelope']);
    // The others stay dead-lettered with their reasons; the one locked to reach the target behind it counts a delivery.
    expect(before.map((message) => message.deliveryCount)).toEqual([1, 1, 1, 1]);
    expect((await dlq.list()).map((message) => [message.reason, message.deliveryCount])).toEqual([
      ['OPERATION_EXPIRED', 2],
      ['OPERATION_INVALID', 1],
    ]);
  });

  it('resubmits by reason, then everything that is left', async () => {
    const emulator = await startEmulator();
    const client = rawClient(emulator.connectionString());
    const { entries, invalid } = storeDeadLetters();
    await deadLetter(client, QUEUE, entries);
    const dlq = open(emulator.connectionString());

    const byReason = await dlq.resubmit({ reason: 'OPERATION_INVALID' });
    expect(byReason.resubmitted.map(({ message }) => message.messageId)).toEqual([invalid.id, 'not-an-envelope']);
    expect((await drain(client, QUEUE, 2)).map((message) => message.messageId)).toEqual([invalid.id, 'not-an-envelope']);
    expect((await dlq.list()).map((message) => message.reason)).toEqual(['OPERATION_EXPIRED', 'MaxDeliveryCountExceeded']);

    expect(await dlq.resubmit({ reason: 'NO_SUCH_REASON' })).toEqual({ resubmitted: [], failed: [], notFound: [] });

    const rest = await dlq.resubmit({ all: true });
    expect(rest.resubmitted).toHaveLength(2);
    expect((await drain(client, QUEUE, 2)).map((message) => message.messageId)).toEqual([entries[1]!.messageId, entries[2]!.messageId]);
    expect(await dlq.list()).toEqual([]);
    expect(await dlq.resubmit({ all: true })).toEqual({ resubmitted: [], failed: [], notFound: [] });
  });

  it('keeps the original dead-lettered when the send back fails', async () => {
    const emulator = await startEmulator({
      sharedAccessPolicies: [
        { keyName: 'admin', primaryKey: 'admin-key', rights: ['Manage', 'Send', 'Listen'] },
        { keyName: 'reader', primaryKey: 'reader-key', rights: ['Listen'] },
      ],
    });
    const client = rawClient(emulator.connectionString('admin'));
    const { entries } = storeDeadLetters();
    await deadLetter(client, QUEUE, entries);
    const dlq = open(emulator.connectionString('reader'));

    const result = await dlq.resubmit({ all: true });

    expect(result.resubmitted).toEqual([]);
    expect(result.failed).toHaveLength(4);
    expect(result.failed.every(({ sent, error }) => !sent && error.code === 'SERVICE_BUS_UNAUTHORIZED')).toBe(true);
    const still = await peekAll(client, QUEUE, 'deadLetter');
    expect(still.map((message) => [message.messageId, message.deadLetterReason])).toEqual(entries.map((entry) => [entry.messageId, entry.reason]));
    expect(await peekAll(client, QUEUE)).toEqual([]);
  });

  it('loses nothing when Service Bus is down, and the dead-letter queue is intact after a restart', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-dlq-'));
    onCleanup(() => rm(dataDir, { recursive: true, force: true }));
    const first = await startEmulator({ dataDir });
    const { entries } = storeDeadLetters();
    await deadLetter(rawClient(first.connectionString()), QUEUE, entries);
    const dlq = open(first.connectionString());
    expect(await dlq.list()).toHaveLength(4);
    await first.close();

    const error = await dlq.resubmit({ all: true }).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(isStorelinkError(error, 'SERVICE_BUS_UNAVAILABLE')).toBe(true);

    const second = await startServiceBusEmulator({ dataDir, namespaces: [{ queues: [{ name: QUEUE }] }] });
    onCleanup(() => second.close());
    const still = await peekAll(rawClient(second.connectionString()), QUEUE, 'deadLetter');
    expect(still.map((message) => message.messageId)).toEqual(entries.map((entry) => entry.messageId));
  });

  it('flags a resubmit that duplicate detection may drop, because it keeps the original messageId', async () => {
    const emulator = await startEmulator();
    const client = rawClient(emulator.connectionString());
    const op = operation('price.update');
    await deadLetter(client, 'store-dedup', [{ messageId: op.id, body: op, reason: 'HANDLER_FAILED', description: 'boom' }]);

    const flagged = await open(emulator.connectionString(), { queue: 'store-dedup' }).resubmit({ all: true });
    expect(flagged.resubmitted).toEqual([expect.objectContaining({ mayBeDroppedAsDuplicate: true })]);
    // What the flag warns about: the queue saw this messageId minutes ago and dropped the copy.
    expect(await peekAll(client, 'store-dedup')).toEqual([]);
    expect(await peekAll(client, 'store-dedup', 'deadLetter')).toEqual([]);

    const op2 = operation('price.update');
    await deadLetter(client, QUEUE, [{ messageId: op2.id, body: op2, reason: 'HANDLER_FAILED', description: 'boom' }]);
    const unflagged = await open(emulator.connectionString(), { duplicateDetectionWindowInMs: 1 }).resubmit({ all: true });
    expect(unflagged.resubmitted).toEqual([expect.objectContaining({ mayBeDroppedAsDuplicate: false })]);
  });

  it('refuses an empty selection and a closed dead-letter queue', async () => {
    const emulator = await startEmulator();
    const dlq = open(emulator.connectionString());
    await expect(dlq.resubmit({ ids: [] })).rejects.toThrow(TypeError);
    await expect(dlq.resubmit({ reason: '' })).rejects.toThrow(TypeError);
    await dlq.close();
    await dlq.close();
    await expect(dlq.list()).rejects.toMatchObject({ code: 'SERVICE_BUS_UNAVAILABLE' });
  });
});
