/**
 * The outbox records acknowledgements as appended removal lines (segment file version 3) instead of rewriting a
 * segment per flush: what that keeps — older files open, a torn line is cut, order and re-appends survive a reopen,
 * disk use stays bounded. The SIGKILL test (crash.test.ts) kills a process between appends and acknowledgements.
 */
import { appendFile, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openOutbox, type OutboxEvent } from '../../src/store/outbox.js';
import { closing, outboxEvent, tempDir } from './harness.js';

const numbered = (count: number, from = 0): OutboxEvent[] => Array.from({ length: count }, (_, i) => outboxEvent({ body: { sequence: from + i } }));
const ids = (events: readonly OutboxEvent[]): string[] => events.map((event) => event.id);

async function segmentFiles(directory: string): Promise<string[]> {
  return (await readdir(directory)).filter((name) => /^outbox-\d+\.json$/.test(name)).sort();
}

async function linesOf(directory: string, name: string): Promise<unknown[]> {
  const text = await readFile(path.join(directory, name), 'utf8');
  return text.slice(0, -1).split('\n').map((line) => JSON.parse(line) as unknown);
}

describe('outbox acknowledgements as appended lines', () => {
  it('opens a version 2 outbox as it was, and rewrites a segment in version 3 once, at its first acknowledgement', async () => {
    const directory = await tempDir();
    const events = numbered(3);
    const file = path.join(directory, 'outbox-000000000001.json');
    await writeFile(file, [JSON.stringify({ format: 'storelink.outbox', version: 2 }), ...events.map((event) => JSON.stringify(event))].join('\n') + '\n');

    const first = await openOutbox({ directory });
    expect(first.peek(10)).toEqual(events);
    await first.acknowledge([events[0]!.id]);
    await first.close();
    // No removal line in a version 2 file: the segment was rewritten, in version 3, with the live events.
    expect(await linesOf(directory, 'outbox-000000000001.json')).toEqual([{ format: 'storelink.outbox', version: 3 }, events[1], events[2]]);

    const second = await openOutbox({ directory });
    expect(second.peek(10)).toEqual(events.slice(1));
    await second.acknowledge([events[1]!.id]);
    await second.close();
    expect(await linesOf(directory, 'outbox-000000000001.json')).toEqual([{ format: 'storelink.outbox', version: 3 }, events[1], events[2], { removed: [events[1]!.id] }]);
    expect(closing(await openOutbox({ directory })).peek(10)).toEqual([events[2]]);
  });

  it('cuts off an acknowledgement torn by a crash, so its events are sent again, and goes on appending after it', async () => {
    const directory = await tempDir();
    const events = numbered(3);
    const first = await openOutbox({ directory });
    for (const event of events) await first.append(event);
    await first.acknowledge([events[0]!.id]);
    await first.close();
    const file = path.join(directory, 'outbox-000000000001.json');
    const whole = await readFile(file, 'utf8');
    // The start of a removal line that never got its end: the acknowledge() it belonged to never resolved.
    await appendFile(file, `{"removed":["${events[1]!.id}","${events[2]!.id.slice(0, 8)}`);

    const second = await openOutbox({ directory });
    expect(second.peek(10)).toEqual(events.slice(1));
    expect(await readFile(file, 'utf8')).toBe(whole);
    await second.acknowledge([events[1]!.id]);
    await second.close();
    expect(closing(await openOutbox({ directory })).peek(10)).toEqual([events[2]]);
  });

  it('keeps an event appended again after its acknowledgement, in the same write too, across a reopen', async () => {
    const directory = await tempDir();
    const event = outboxEvent({ body: 'first' });
    const first = await openOutbox({ directory });
    await first.append(event);
    await first.acknowledge([event.id]);
    await first.append({ ...event, body: 'second' });
    // Acknowledged and appended again before either write: one group commit, in that order.
    await Promise.all([first.acknowledge([event.id]), first.append({ ...event, body: 'third' })]);
    expect(first.peek(10).map((e) => e.body)).toEqual(['third']);
    await first.close();
    expect(closing(await openOutbox({ directory })).peek(10).map((e) => e.body)).toEqual(['third']);
  });

  it('compacts a segment no longer appended to once most of it is acknowledged, and keeps the open one bounded', async () => {
    const directory = await tempDir();
    const outbox = await openOutbox({ directory, segmentSize: 10 });
    const events = numbered(25);
    for (const event of events) await outbox.append(event);
    const [, middle] = await segmentFiles(directory);
    await outbox.acknowledge(ids(events.slice(10, 14)));
    // Four of ten gone: removal lines only.
    expect((await linesOf(directory, middle!)).length).toBe(1 + 10 + 1);
    await outbox.acknowledge(ids(events.slice(14, 16)));
    // Six of ten gone, more dead than live: rewritten as the four live events.
    expect(await linesOf(directory, middle!)).toEqual([{ format: 'storelink.outbox', version: 3 }, ...events.slice(16, 20)]);

    // A flusher's steady state: append one, acknowledge it, many times over. Only the open segment is left, never
    // more than segmentSize events and as many removal lines.
    await outbox.acknowledge(ids(events));
    for (const event of numbered(95, 100)) {
      await outbox.append(event);
      await outbox.acknowledge([event.id]);
    }
    expect(outbox.size).toBe(0);
    const files = await segmentFiles(directory);
    expect(files).toHaveLength(1);
    expect((await linesOf(directory, files[0]!)).length).toBeLessThanOrEqual(1 + 10 + 10);
    await outbox.close();
    const reopened = closing(await openOutbox({ directory, segmentSize: 10 }));
    expect(reopened.size).toBe(0);
    const late = numbered(3, 500);
    for (const event of late) await reopened.append(event);
    expect(reopened.peek(10)).toEqual(late);
  });
});
