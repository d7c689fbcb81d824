import { appendFile, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import { SegmentedStore, frozenJsonCopy } from '../../src/store/segmentedStore.js';
import { onCleanup, tempDir } from './harness.js';

interface Item {
  id: string;
  n: number;
}

const itemSchema = z.object({ id: z.string(), n: z.number() }).strict();

async function openStore(directory: string, options: { segmentSize?: number; fsync?: boolean; warnings?: string[] } = {}): Promise<SegmentedStore<Item>> {
  const warnings = options.warnings;
  const logger: Logger = warnings === undefined ? silentLogger : { ...silentLogger, warn: (_: object, message?: string) => void warnings.push(message ?? ''), child: () => logger };
  const store = await SegmentedStore.open<Item>({ directory, kind: 'outbox', segmentSize: options.segmentSize ?? 10, recordSchema: itemSchema, logger, fsync: options.fsync });
  onCleanup(() => store.close());
  return store;
}

const item = (n: number): Item => frozenJsonCopy({ id: `item-${n}`, n });
const numbers = (store: SegmentedStore<Item>): number[][] => store.segments.map((segment) => segment.records.map((record) => record.n));

async function lines(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n');
}

describe('segmented store (the files under the ledger and the outbox)', () => {
  it.each([
    ['without fsync', false],
    ['with fsync', true],
  ])('appends to the open segment, rewrites a segment whose records were removed, and appends to the rewritten file (%s)', async (_name, fsync) => {
    const directory = await tempDir();
    const store = await openStore(directory, { fsync });
    for (let n = 0; n < 5; n++) store.append(item(n));
    await store.commit();
    const [segment] = store.segments;
    const created = (await stat(segment!.file)).ino;
    store.append(item(5));
    await store.commit();
    expect((await stat(segment!.file)).ino).toBe(created);

    store.removeRecords(segment!, (record) => record.n % 2 === 0);
    await store.commit();
    const rewritten = (await stat(segment!.file)).ino;
    expect(rewritten).not.toBe(created);
    store.append(item(6));
    await store.commit();
    expect((await stat(segment!.file)).ino).toBe(rewritten);
    expect((await lines(segment!.file)).slice(1).map((line) => (JSON.parse(line) as Item).n)).toEqual([1, 3, 5, 6]);
    await store.close();

    const reopened = await openStore(directory, { fsync });
    expect(numbers(reopened)).toEqual([[1, 3, 5, 6]]);
  });

  it('keeps what was removed and what was added while a write was in flight, in memory and on disk', async () => {
    const directory = await tempDir();
    const store = await openStore(directory);
    for (let n = 0; n < 4; n++) store.append(item(n));
    const first = store.commit();
    // The write has started (scheduled on setImmediate); these changes go into the next one.
    await new Promise((resolve) => setImmediate(resolve));
    store.removeRecords(store.segments[0]!, (record) => record.n === 1);
    store.append(item(4));
    const second = store.commit();
    await Promise.all([first, second]);
    expect(numbers(store)).toEqual([[0, 2, 3, 4]]);
    await store.close();
    expect(numbers(await openStore(directory))).toEqual([[0, 2, 3, 4]]);
  });

  it('rolls over at segmentSize, drops whole segments, and numbers new segments after the newest', async () => {
    const directory = await tempDir();
    const store = await openStore(directory, { segmentSize: 3, fsync: true });
    for (let n = 0; n < 8; n++) store.append(item(n));
    await store.commit();
    expect(numbers(store)).toEqual([[0, 1, 2], [3, 4, 5], [6, 7]]);
    store.dropSegment(store.segments[0]!);
    store.removeRecords(store.segments[0]!, () => true);
    await store.commit();
    expect(await readdir(directory)).toEqual(['outbox-000000000003.json']);
    await store.close();
    const reopened = await openStore(directory, { segmentSize: 3 });
    reopened.append(item(8));
    reopened.append(item(9));
    await reopened.commit();
    expect(numbers(reopened)).toEqual([[6, 7, 8], [9]]);
    expect((await readdir(directory)).sort()).toEqual(['outbox-000000000003.json', 'outbox-000000000004.json']);
  });

  it('cuts a torn last line off any segment (after a power loss an older one can have one too) and keeps the rest', async () => {
    const directory = await tempDir();
    const store = await openStore(directory, { segmentSize: 2 });
    for (let n = 0; n < 4; n++) store.append(item(n));
    await store.commit();
    await store.close();
    const older = path.join(directory, 'outbox-000000000001.json');
    const whole = await readFile(older, 'utf8');
    await appendFile(older, '{"id":"item-9","n');
    const warnings: string[] = [];

    const reopened = await openStore(directory, { segmentSize: 2, warnings });

    expect(numbers(reopened)).toEqual([[0, 1], [2, 3]]);
    expect(warnings).toEqual([expect.stringContaining('torn last line')]);
    expect(await readFile(older, 'utf8')).toBe(whole);
  });

  it('rewrites a segment in the previous format as the current one when records are removed from it', async () => {
    const directory = await tempDir();
    const file = path.join(directory, 'outbox-000000000001.json');
    await writeFile(file, `{"format":"storelink.outbox","version":1,"records":[\n${[0, 1, 2].map((n) => JSON.stringify({ id: `item-${n}`, n })).join(',\n')}\n]}\n`);
    const store = await openStore(directory);
    expect(numbers(store)).toEqual([[0, 1, 2]]);
    store.removeRecords(store.segments[0]!, (record) => record.n === 0);
    await store.commit();
    expect(await lines(file)).toEqual(['{"format":"storelink.outbox","version":2}', '{"id":"item-1","n":1}', '{"id":"item-2","n":2}']);
  });
});
