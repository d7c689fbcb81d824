import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openLedger } from '../../src/store/ledger.js';
import { openOutbox, type OutboxEvent, type OutboxOptions } from '../../src/store/outbox.js';
import { T0, closing, ledgerEntry, outboxEvent, tempDir } from './harness.js';

async function segmentFiles(directory: string): Promise<string[]> {
  return (await readdir(directory)).filter((name) => /^outbox-\d+\.json$/.test(name)).sort();
}

const ids = (events: readonly OutboxEvent[]): string[] => events.map((event) => event.id);

function numbered(count: number, from = 0): OutboxEvent[] {
  return Array.from({ length: count }, (_, i) => outboxEvent({ body: { sequence: from + i } }));
}

describe('outbox', () => {
  it('keeps appended events in order across close and reopen, over several segments', async () => {
    const directory = await tempDir();
    const first = await openOutbox({ directory, segmentSize: 10 });
    const events = [
      outboxEvent({ kind: 'reply', type: 'clickAndCollect.order', correlationId: '9f4c1a52-7d0e-4c5b-9a37-2f0f5e3b8d11', body: { accepted: true } }),
      outboxEvent({ kind: 'announcement', type: 'store.announced', body: { relay: true } }),
      ...numbered(23),
    ];
    for (const event of events) await first.append(event);
    // The announcement jumps the queue; the rest keep their order.
    const sendOrder = [events[1]!, events[0]!, ...events.slice(2)];
    expect(first.size).toBe(25);
    expect(first.peek(100)).toEqual(sendOrder);
    await first.close();
    expect(await segmentFiles(directory)).toHaveLength(3);

    const second = closing(await openOutbox({ directory, segmentSize: 10 }));
    expect(second.size).toBe(25);
    expect(second.peek(100)).toEqual(sendOrder);
    expect(second.peek(3)).toEqual(sendOrder.slice(0, 3));
    expect(second.peek(0)).toEqual([]);
  });

  it('forgets acknowledged events for good and brings the others back, in order, after a restart', async () => {
    const directory = await tempDir();
    const events = numbered(25);
    const first = await openOutbox({ directory, segmentSize: 10 });
    await Promise.all(events.map((event) => first.append(event)));
    // The head as a flush would acknowledge it, plus stragglers from the middle and the open segment.
    const acknowledged = [...ids(events.slice(0, 4)), events[12]!.id, events[24]!.id];
    await first.acknowledge(acknowledged);
    const remaining = events.filter((event) => !acknowledged.includes(event.id));
    expect(first.peek(100)).toEqual(remaining);
    expect(first.size).toBe(19);
    await first.close();

    const second = closing(await openOutbox({ directory, segmentSize: 10 }));
    expect(second.peek(100)).toEqual(remaining);
    expect(second.size).toBe(19);
  });

  it('acknowledging one event appends a removal line to its own segment only; a fully acknowledged segment is deleted', async () => {
    const directory = await tempDir();
    const outbox = closing(await openOutbox({ directory, segmentSize: 10 }));
    const events = numbered(30);
    await Promise.all(events.map((event) => outbox.append(event)));
    const [head, middle, tail] = await segmentFiles(directory);
    const bytes = async (name: string): Promise<string> => readFile(path.join(directory, name), 'utf8');
    const headBefore = await bytes(head!);
    const middleBefore = await bytes(middle!);
    const tailBefore = await bytes(tail!);
    const writesBefore = outbox.writes;

    await outbox.acknowledge([events[0]!.id]);

    expect(outbox.writes).toBe(writesBefore + 1);
    // Appended, not rewritten: the segment's bytes are what they were, plus one line.
    expect(await bytes(head!)).toBe(`${headBefore}${JSON.stringify({ removed: [events[0]!.id] })}\n`);
    expect(await bytes(middle!)).toBe(middleBefore);
    expect(await bytes(tail!)).toBe(tailBefore);
    expect((await readdir(directory)).filter((name) => name.endsWith('.tmp'))).toEqual([]);

    await outbox.acknowledge(ids(events.slice(1, 10)));
    expect(await segmentFiles(directory)).toEqual([middle, tail]);
    expect(outbox.peek(1)).toEqual([events[10]]);
  });

  it('acknowledges unknown ids as a no-op', async () => {
    const directory = await tempDir();
    const outbox = closing(await openOutbox({ directory }));
    const event = outboxEvent();
    await outbox.append(event);
    const writes = outbox.writes;
    await outbox.acknowledge(['not-in-the-outbox', '2b1f0c7e-0000-4000-8000-000000000000']);
    await outbox.acknowledge([]);
    expect(outbox.writes).toBe(writes);
    expect(outbox.peek(10)).toEqual([event]);
    await outbox.acknowledge([event.id, event.id]);
    await outbox.acknowledge([event.id]);
    expect(outbox.size).toBe(0);
  });

  it('keeps the first of two appends with the same id while it is pending', async () => {
    const directory = await tempDir();
    const outbox = closing(await openOutbox({ directory }));
    const event = outboxEvent({ body: 'first' });
    await outbox.append(event);
    await outbox.append({ ...event, body: 'second' });
    expect(outbox.peek(10)).toEqual([event]);
    // Once acknowledged the id is forgotten: appending it again is a new event.
    await outbox.acknowledge([event.id]);
    await outbox.append({ ...event, body: 'again' });
    expect(outbox.peek(10).map((e) => e.body)).toEqual(['again']);
  });

  it('goes on appending in order after everything was acknowledged', async () => {
    const directory = await tempDir();
    const first = await openOutbox({ directory, segmentSize: 4 });
    const early = numbered(6);
    for (const event of early) await first.append(event);
    await first.acknowledge(ids(early));
    expect(first.size).toBe(0);
    const late = numbered(6, 6);
    for (const event of late) await first.append(event);
    await first.close();

    const second = closing(await openOutbox({ directory, segmentSize: 4 }));
    expect(second.peek(100)).toEqual(late);
    const more = numbered(3, 12);
    for (const event of more) await second.append(event);
    expect(second.peek(100)).toEqual([...late, ...more]);
  });

  it('serves 1,000 concurrent appends and their acknowledgement with a handful of writes', async () => {
    const directory = await tempDir();
    const outbox = closing(await openOutbox({ directory }));
    const events = numbered(1000);
    await Promise.all(events.map((event) => outbox.append(event)));
    expect(outbox.writes).toBeLessThanOrEqual(3);
    expect(outbox.peek(1000)).toEqual(events);
    const writes = outbox.writes;
    await Promise.all(events.map((event) => outbox.acknowledge([event.id])));
    expect(outbox.writes - writes).toBeLessThanOrEqual(3);
    expect(outbox.size).toBe(0);
  });

  it('close waits for pending appends, is idempotent, and refuses appends and acknowledgements afterwards', async () => {
    const directory = await tempDir();
    const outbox = await openOutbox({ directory });
    const events = numbered(20);
    const appending = Promise.all(events.map((event) => outbox.append(event)));
    const closed = outbox.close();
    expect(outbox.close()).toBe(closed);
    expect(outbox[Symbol.asyncDispose]()).toBe(closed);
    await closed;
    await appending;
    await expect(outbox.append(outboxEvent())).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(outbox.acknowledge([events[0]!.id])).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });

    const reopened = closing(await openOutbox({ directory }));
    expect(reopened.peek(100)).toEqual(events);
  });

  it('refuses to open over an unparsable segment, naming the file', async () => {
    const directory = await tempDir();
    const outbox = await openOutbox({ directory });
    await outbox.append(outboxEvent());
    await outbox.close();
    const file = path.join(directory, 'outbox-000000000001.json');
    await writeFile(file, 'not json');
    await expect(openOutbox({ directory })).rejects.toMatchObject({ code: 'FILE_UNREADABLE', message: expect.stringContaining(file) });
  });

  it('refuses to open when one event id appears twice in the files', async () => {
    const directory = await tempDir();
    const event = outboxEvent();
    const content = JSON.stringify({ format: 'storelink.outbox', version: 1, records: [event] });
    await writeFile(path.join(directory, 'outbox-000000000001.json'), content);
    await writeFile(path.join(directory, 'outbox-000000000002.json'), content);
    await expect(openOutbox({ directory })).rejects.toThrow(`outbox event id ${event.id} appears twice`);
    // The failed open released the directory.
    await writeFile(path.join(directory, 'outbox-000000000002.json'), JSON.stringify({ format: 'storelink.outbox', version: 1, records: [] }));
    expect(closing(await openOutbox({ directory })).size).toBe(1);
  });

  it('shares a directory with a ledger without either reading the other’s files', async () => {
    const directory = await tempDir();
    const ledger = closing(await openLedger({ directory }));
    const outbox = closing(await openOutbox({ directory }));
    await ledger.record(ledgerEntry());
    await outbox.append(outboxEvent());
    await outbox.close();
    await ledger.close();
    expect(closing(await openOutbox({ directory })).size).toBe(1);
    expect(closing(await openLedger({ directory })).size).toBe(1);
  });

  it.each<[string, unknown, ErrorConstructor, string]>([
    ['no options', null, TypeError, 'OutboxOptions must be an options object'],
    ['a directory that is not a string', { directory: 42 }, TypeError, 'OutboxOptions.directory must be the path of a directory'],
    ['an option that belongs to the ledger', { directory: '/tmp/x', retentionAfterExpiryInMs: 5 }, TypeError, 'unknown field "retentionAfterExpiryInMs"'],
    ['a huge segment size', { directory: '/tmp/x', segmentSize: 1e9 }, RangeError, 'OutboxOptions.segmentSize must be a whole number of records from 1 to 1000000'],
  ])('rejects %s', async (_name, options, type, message) => {
    const opening = openOutbox(options as OutboxOptions);
    await expect(opening).rejects.toThrow(type);
    await expect(opening).rejects.toThrow(message);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['an unknown kind', { kind: 'notice' }, 'outbox event.kind must be one of "reply", "event", "announcement"'],
    ['no body', { body: undefined }, '.body must be a JSON value, got undefined'],
    ['a bigint in the body', { body: { total: 10n } }, '.body.total must be a JSON value, got bigint'],
    ['a Map as the body', { body: new Map() }, '.body must be a plain JSON object, got a Map'],
    ['an empty correlation id', { correlationId: '' }, '.correlationId must be a non-empty string'],
    ['a createdAt that is a number', { createdAt: 1764331200000 }, '.createdAt must be an ISO 8601 timestamp'],
  ])('rejects an event with %s', async (_name, overrides, message) => {
    const outbox = closing(await openOutbox({ directory: await tempDir() }));
    const appending = outbox.append({ ...outboxEvent(), ...overrides });
    await expect(appending).rejects.toThrow(TypeError);
    await expect(appending).rejects.toThrow(message);
    expect(outbox.size).toBe(0);
  });

  it('checks the arguments of peek and acknowledge', async () => {
    const outbox = closing(await openOutbox({ directory: await tempDir() }));
    expect(() => outbox.peek(-1)).toThrow(RangeError);
    expect(() => outbox.peek(1.5)).toThrow('outbox.peek(limit) takes a whole number of events');
    await expect(outbox.acknowledge('id' as unknown as string[])).rejects.toThrow(TypeError);
    await expect(outbox.acknowledge([1] as unknown as string[])).rejects.toThrow('takes an array of event id strings');
  });
});

describe('outbox: parked events', () => {
  const tooLarge = { code: 'PAYLOAD_TOO_LARGE', message: 'larger than the inbox takes' };

  it('parks a pending event: peek skips it, parked() lists it with the reason and the injected date, and both survive a reopen', async () => {
    const directory = await tempDir();
    const parkedAt = T0 + 5_000;
    const first = await openOutbox({ directory, now: () => parkedAt });
    const [a, b, c] = numbered(3);
    for (const event of [a!, b!, c!]) await first.append(event);

    const parked = await first.park(b!.id, tooLarge);
    expect(parked).toEqual({ event: b, ...tooLarge, parkedAt: new Date(parkedAt).toISOString() });
    expect(ids(first.peek(10))).toEqual([a!.id, c!.id]);
    expect(first.size).toBe(2);
    expect(first.parkedSize).toBe(1);
    expect(await first.park('not-pending', tooLarge)).toBeUndefined();
    await first.close();
    expect((await readdir(directory)).filter((name) => name.startsWith('parked-'))).toEqual(['parked-000000000001.json']);

    const second = closing(await openOutbox({ directory }));
    expect(ids(second.peek(10))).toEqual([a!.id, c!.id]);
    expect(second.parked()).toEqual([parked]);
  });

  it('resubmits a parked event at the end of the pending ones, and discards another for good, across a reopen', async () => {
    const directory = await tempDir();
    const first = await openOutbox({ directory });
    const [a, b, c, d] = numbered(4);
    for (const event of [a!, b!, c!]) await first.append(event);
    await first.park(a!.id, tooLarge);
    await first.park(b!.id, tooLarge);
    await first.append(d!);

    expect(await first.resubmit(a!.id)).toBe('resubmitted');
    expect(await first.discard(b!.id)).toBe(true);
    expect(await first.discard(b!.id)).toBe(false);
    expect(await first.resubmit('unknown')).toBeUndefined();
    expect(ids(first.peek(10))).toEqual([c!.id, d!.id, a!.id]);
    expect(first.parked()).toEqual([]);
    await first.close();

    const second = closing(await openOutbox({ directory }));
    expect(ids(second.peek(10))).toEqual([c!.id, d!.id, a!.id]);
    expect(second.parkedSize).toBe(0);
  });

  it('settles an event found both pending and parked (a crash mid-move) as pending', async () => {
    const directory = await tempDir();
    const event = outboxEvent();
    await writeFile(path.join(directory, 'outbox-000000000001.json'), JSON.stringify({ format: 'storelink.outbox', version: 1, records: [event] }));
    const parked = { event, ...tooLarge, parkedAt: new Date(T0).toISOString() };
    await writeFile(path.join(directory, 'parked-000000000001.json'), JSON.stringify({ format: 'storelink.parked', version: 1, records: [parked] }));
    const first = await openOutbox({ directory });
    expect(first.peek(10)).toEqual([event]);
    expect(first.parked()).toEqual([]);
    await first.close();
    expect(closing(await openOutbox({ directory })).parkedSize).toBe(0);
  });

  it('refuses a park reason that is not { code, message }', async () => {
    const outbox = closing(await openOutbox({ directory: await tempDir() }));
    const event = outboxEvent();
    await outbox.append(event);
    await expect(outbox.park(event.id, { code: '' } as unknown as { code: string; message: string })).rejects.toThrow(TypeError);
    expect(outbox.size).toBe(1);
  });
});

describe('outbox: announcements', () => {
  const announcement = (relay: string, at: number): OutboxEvent =>
    outboxEvent({ kind: 'announcement', type: 'store.announced', body: { relay }, createdAt: new Date(at).toISOString() });

  it('sends the pending announcement before older events, and a newer one replaces it durably', async () => {
    const directory = await tempDir();
    const first = await openOutbox({ directory, segmentSize: 2 });
    const events = numbered(3);
    const up = announcement('up', T0 + 1);
    const down = announcement('down', T0 + 2);
    await first.append(events[0]!);
    await first.append(up);
    await first.append(events[1]!);
    expect(ids(first.peek(10))).toEqual([up.id, events[0]!.id, events[1]!.id]);
    expect(ids(first.peek(1))).toEqual([up.id]);

    await first.append(down);
    await first.append(events[2]!);
    expect(ids(first.peek(10))).toEqual([down.id, ...ids(events)]);
    expect(first.size).toBe(4);
    await first.close();

    const second = closing(await openOutbox({ directory, segmentSize: 2 }));
    expect(ids(second.peek(10))).toEqual([down.id, ...ids(events)]);
    await second.acknowledge([down.id]);
    expect(ids(second.peek(10))).toEqual(ids(events));
  });

  it('drops an announcement dated before the pending one, and keeps only the newest of several found at open', async () => {
    const directory = await tempDir();
    const newer = announcement('down', T0 + 10);
    const older = announcement('up', T0 + 5);
    const outbox = await openOutbox({ directory });
    await outbox.append(newer);
    await outbox.append(older);
    expect(outbox.peek(10)).toEqual([newer]);
    await outbox.close();

    // Two pending announcements: what a crash between writing the newer and removing the older leaves.
    const event = outboxEvent();
    const records = [older, event, newer];
    await writeFile(path.join(directory, 'outbox-000000000001.json'), JSON.stringify({ format: 'storelink.outbox', version: 1, records }));
    const reopened = await openOutbox({ directory });
    expect(reopened.peek(10)).toEqual([newer, event]);
    await reopened.close();
    expect(closing(await openOutbox({ directory })).size).toBe(2);
  });

  it('resubmits a parked announcement only if it is not older than the pending one', async () => {
    const outbox = closing(await openOutbox({ directory: await tempDir() }));
    const early = announcement('up', T0 + 1);
    await outbox.append(early);
    await outbox.park(early.id, { code: 'PAYLOAD_TOO_LARGE', message: 'x' });
    const later = announcement('down', T0 + 2);
    await outbox.append(later);
    expect(await outbox.resubmit(early.id)).toBe('superseded');
    expect(outbox.peek(10)).toEqual([later]);
    expect(outbox.parkedSize).toBe(0);
  });
});

describe('outbox: an event appended again while parked', () => {
  it('is pending again and no longer parked (a replayed operation re-sends its reply)', async () => {
    const directory = await tempDir();
    const first = await openOutbox({ directory });
    const reply = outboxEvent({ kind: 'reply', type: 'stock.query', correlationId: '5a0e8c1d-2b3f-4a5b-8c6d-7e8f9a0b1c2d' });
    await first.append(reply);
    await first.park(reply.id, { code: 'PAYLOAD_TOO_LARGE', message: 'x' });
    await first.append(reply);
    expect(first.peek(10)).toEqual([reply]);
    expect(first.parked()).toEqual([]);
    await first.close();
    const second = closing(await openOutbox({ directory }));
    expect([second.size, second.parkedSize]).toEqual([1, 0]);
  });
});
