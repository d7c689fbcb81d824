import { filter, firstValueFrom, take, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { OutgoingQueueMessage } from '../../src/channels/servicebus/serviceBusConnection.js';
import { StorelinkError, type StorelinkErrorCode } from '../../src/core/errors.js';
import { openOutbox, type Outbox, type OutboxEvent } from '../../src/store/outbox.js';
import { OutboxFlusher, type OutboxFlusherEvent } from '../../src/store/outboxFlusher.js';
import { closing, onCleanup, outboxEvent, tempDir } from './harness.js';

/** A queue sender that fails a send containing a listed id with that id's code, and records every call. */
class ScriptedSender {
  readonly calls: string[][] = [];
  readonly failures = new Map<string, StorelinkErrorCode>();
  /** Fails every call with this code while set. */
  outage: StorelinkErrorCode | undefined;

  send(messages: OutgoingQueueMessage | readonly OutgoingQueueMessage[]): Promise<void> {
    const list = Array.isArray(messages) ? (messages as readonly OutgoingQueueMessage[]) : [messages as OutgoingQueueMessage];
    const ids = list.map((message) => message.messageId);
    this.calls.push(ids);
    if (this.outage !== undefined) return Promise.reject(new StorelinkError(this.outage, 'scripted outage'));
    const failing = ids.find((id) => this.failures.has(id));
    if (failing !== undefined) return Promise.reject(new StorelinkError(this.failures.get(failing)!, `message ${failing} refused`));
    return Promise.resolve();
  }
}

async function setUp(events: readonly OutboxEvent[]): Promise<{ outbox: Outbox; sender: ScriptedSender; flusher: OutboxFlusher }> {
  const outbox = closing(await openOutbox({ directory: await tempDir() }));
  for (const event of events) await outbox.append(event);
  const sender = new ScriptedSender();
  const flusher = new OutboxFlusher({ outbox, sender, initialRetryDelayInMs: 1, maxRetryDelayInMs: 2 });
  onCleanup(() => flusher.close());
  return { outbox, sender, flusher };
}

function next(flusher: OutboxFlusher, type: OutboxFlusherEvent['type'], count = 1): Promise<OutboxFlusherEvent[]> {
  return firstValueFrom(flusher.events$.pipe(filter((event) => event.type === type), take(count), toArray()));
}

function drained(flusher: OutboxFlusher): Promise<unknown> {
  return firstValueFrom(flusher.events$.pipe(filter((event) => event.type === 'flushed' && event.pending === 0)));
}

describe('outbox flusher', () => {
  it('seals an unsigned event just before sending it, and sends a signed one as it is', async () => {
    const signature = { keyId: 'store-paris-1', value: 'B'.repeat(86) };
    const unsigned = outboxEvent({ body: { n: 1 } });
    const signed = outboxEvent({ body: { n: 2 }, signature: { keyId: 'store-paris-1', value: 'A'.repeat(86) } });
    const outbox = closing(await openOutbox({ directory: await tempDir() }));
    await outbox.append(unsigned);
    await outbox.append(signed);
    const sent: OutgoingQueueMessage[] = [];
    const flusher = new OutboxFlusher({
      outbox,
      sender: {
        send: (messages) => {
          sent.push(...(Array.isArray(messages) ? (messages as readonly OutgoingQueueMessage[]) : [messages as OutgoingQueueMessage]));
          return Promise.resolve();
        },
      },
      seal: (event) => ({ ...event, signature }),
    });
    onCleanup(() => flusher.close());
    const done = drained(flusher);
    flusher.start();
    await done;
    expect(sent.map((message) => (message.body as OutboxEvent).signature)).toEqual([signature, signed.signature]);
    // The outbox kept what it was given: the seal is for the wire only.
    expect(unsigned.signature).toBeUndefined();
  });

  it('finds the one event of a failed batch that can never be sent, parks it, and sends the others in order', async () => {
    const events = Array.from({ length: 5 }, (_, n) => outboxEvent({ body: { n } }));
    const { outbox, sender, flusher } = await setUp(events);
    const culprit = events[2]!;
    sender.failures.set(culprit.id, 'PAYLOAD_TOO_LARGE');
    const parked = next(flusher, 'parked');
    const done = drained(flusher);
    flusher.start();

    expect(await parked).toEqual([
      { type: 'parked', event: culprit, error: expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE' }), pending: 2 },
    ]);
    await done;
    const ids = events.map((event) => event.id);
    // The batch, then each event on its own.
    expect(sender.calls).toEqual([ids, ...ids.map((id) => [id])]);
    expect(outbox.size).toBe(0);
    expect(outbox.parked()).toEqual([expect.objectContaining({ event: culprit, code: 'PAYLOAD_TOO_LARGE', message: `message ${culprit.id} refused` })]);
  });

  it('parks a lone unsendable event without sending it again, and goes on with what is appended after it', async () => {
    const lone = outboxEvent();
    const { outbox, sender, flusher } = await setUp([lone]);
    sender.failures.set(lone.id, 'PAYLOAD_TOO_LARGE');
    const parked = next(flusher, 'parked');
    flusher.start();
    await parked;
    expect(sender.calls).toEqual([[lone.id]]);

    const later = outboxEvent();
    const done = drained(flusher);
    await outbox.append(later);
    flusher.notify();
    await done;
    expect(sender.calls.at(-1)).toEqual([later.id]);
    expect(outbox.parkedSize).toBe(1);
  });

  it.each<[string, StorelinkErrorCode]>([
    ['Service Bus is unreachable', 'SERVICE_BUS_UNAVAILABLE'],
    ['the inbox queue does not exist', 'QUEUE_NOT_FOUND'],
    ['the key is refused', 'SERVICE_BUS_UNAUTHORIZED'],
  ])('parks nothing while %s: it backs off and retries, then delivers everything', async (_name, code) => {
    const events = Array.from({ length: 3 }, () => outboxEvent());
    const { outbox, sender, flusher } = await setUp(events);
    sender.outage = code;
    const errors = next(flusher, 'error', 2);
    flusher.start();
    const [first, second] = await errors;
    expect(first).toMatchObject({ type: 'error', error: { code } });
    expect(second).toMatchObject({ type: 'error', error: { code } });
    expect(outbox.size).toBe(3);
    expect(outbox.parkedSize).toBe(0);

    const done = drained(flusher);
    sender.outage = undefined;
    await done;
    expect(outbox.parkedSize).toBe(0);
    expect(sender.calls.at(-1)).toEqual(events.map((event) => event.id));
  });

  it('sends the pending announcement before older events, and only the newest one', async () => {
    const older = outboxEvent();
    const up = outboxEvent({ kind: 'announcement', type: 'store.announced', body: { relay: 'up' } });
    const down = outboxEvent({ kind: 'announcement', type: 'store.announced', body: { relay: 'down' } });
    const { sender, flusher } = await setUp([older, up, down]);
    const done = drained(flusher);
    flusher.start();
    await done;
    expect(sender.calls).toEqual([[down.id, older.id]]);
  });
});
