/** Relay answers' copies held back from the flusher, and dropped when the cloud confirms them (see relayProtocol.ts). */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { openOutbox, type OutboxEvent } from '../../src/store/outbox.js';
import { T0, closing, outboxEvent, tempDir } from './harness.js';

const ids = (events: readonly OutboxEvent[]): string[] => events.map((event) => event.id);

function replyTo(operationId: string): OutboxEvent {
  return outboxEvent({ kind: 'reply', type: 'instant.order', correlationId: operationId, body: { outcome: 'done', result: { accepted: true } } });
}

describe('outbox holds', () => {
  it('keeps a held event out of peek() until its hold is over, while later events go, and says when it may go', async () => {
    let now = T0;
    const outbox = closing(await openOutbox({ directory: await tempDir(), now: () => now }));
    expect(outbox.nextReleaseInMs()).toBeUndefined();
    const held = replyTo(randomUUID());
    const event = outboxEvent({ body: { n: 1 } });
    await outbox.append(held, { holdForInMs: 2_000 });
    await outbox.append(event);
    expect(ids(outbox.peek(10))).toEqual([event.id]);
    expect(outbox.size).toBe(2);
    now += 500;
    expect(outbox.nextReleaseInMs()).toBe(1_500);
    now += 1_500;
    expect(outbox.nextReleaseInMs()).toBeUndefined();
    expect(ids(outbox.peek(10))).toEqual([held.id, event.id]);
  });

  it('drops held replies by the operation they answer, and nothing else', async () => {
    const outbox = closing(await openOutbox({ directory: await tempDir(), now: () => T0 }));
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    await outbox.append(replyTo(a), { holdForInMs: 2_000 });
    await outbox.append(replyTo(b), { holdForInMs: 2_000 });
    // A reply appended without a hold (a queued operation's) is the cloud's to receive, confirmed or not.
    const queued = replyTo(c);
    await outbox.append(queued);
    expect(await outbox.acknowledgeHeldReplies([a, c, randomUUID()])).toBe(1);
    expect(outbox.size).toBe(2);
    expect(await outbox.acknowledgeHeldReplies([a])).toBe(0);
    expect(ids(outbox.peek(10))).toEqual([queued.id]);
    expect(outbox.nextReleaseInMs()).toBe(2_000);
  });

  it('forgets the hold when the event leaves otherwise (sent after its hold, parked)', async () => {
    let now = T0;
    const outbox = closing(await openOutbox({ directory: await tempDir(), now: () => now }));
    const operationId = randomUUID();
    const held = replyTo(operationId);
    await outbox.append(held, { holdForInMs: 1_000 });
    now += 1_000;
    await outbox.acknowledge(ids(outbox.peek(10)));
    expect(outbox.size).toBe(0);
    expect(await outbox.acknowledgeHeldReplies([operationId])).toBe(0);
    expect(outbox.nextReleaseInMs()).toBeUndefined();
  });

  it('holds in memory only: after a restart a held event is sent at once', async () => {
    const directory = await tempDir();
    const first = await openOutbox({ directory, now: () => T0 });
    const held = replyTo(randomUUID());
    await first.append(held, { holdForInMs: 60_000 });
    expect(first.peek(10)).toEqual([]);
    await first.close();
    const second = closing(await openOutbox({ directory, now: () => T0 }));
    expect(ids(second.peek(10))).toEqual([held.id]);
  });

  it('refuses a hold that is not a positive whole number of milliseconds', async () => {
    const outbox = closing(await openOutbox({ directory: await tempDir() }));
    for (const holdForInMs of [0, -1, 1.5, Number.NaN]) {
      await expect(outbox.append(outboxEvent(), { holdForInMs })).rejects.toThrow(/holdForInMs must be a positive whole number/);
    }
    await expect(outbox.acknowledgeHeldReplies('x' as unknown as string[])).rejects.toThrow(TypeError);
  });
});
