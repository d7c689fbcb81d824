import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openLinkStore } from '../../src/cloud/linkStore.js';

const directories: string[] = [];
afterEach(async () => {
  for (const directory of directories.splice(0)) await rm(directory, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-links-'));
  directories.push(directory);
  return directory;
}

/** The journal's lines after its generation header. */
async function journalLines(directory: string): Promise<{ s: string; l?: { enteredAtInMs: number }; d?: 1 }[]> {
  const text = await readFile(path.join(directory, 'links.journal'), 'utf8');
  return text
    .split('\n')
    .slice(1)
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as { s: string; l?: { enteredAtInMs: number }; d?: 1 });
}

const link = (n: number) => ({ snapshot: { value: 'healthy', n }, chart: { id: 'storeLink', hash: 'abc' }, enteredAtInMs: n });

describe('link store', () => {
  it('gathers the changes of its write delay into one write, and flush() writes at once', async () => {
    const directory = await tempDir();
    const store = await openLinkStore(directory, 60_000);
    for (let n = 0; n < 1_000; n += 1) store.set(`store-${n % 10}`, link(n));
    // Several turns of the event loop later, still nothing written: the delay has not run out.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.writeCount).toBe(0);
    expect(await journalLines(directory)).toEqual([]);
    await store.flush();
    expect(store.writeCount).toBe(1);
    // One line per link that changed, with its last state.
    const lines = await journalLines(directory);
    expect(lines).toHaveLength(10);
    expect(lines.find((line) => line.s === 'store-9')?.l?.enteredAtInMs).toBe(999);

    const reopened = await openLinkStore(directory, 60_000);
    expect(reopened.get('store-3')).toEqual(link(993));
  });

  it('writes again after a change that follows a flush, and forgets deleted links', async () => {
    const directory = await tempDir();
    const store = await openLinkStore(directory, 60_000);
    store.set('a', link(1));
    await store.flush();
    store.delete('a');
    store.set('b', link(2));
    await store.flush();
    const reopened = await openLinkStore(directory, 60_000);
    expect(reopened.get('a')).toBeUndefined();
    expect(reopened.get('b')).toEqual(link(2));
  });

  it('writes what changed, not the whole set: one link of 10,000 changing appends one line', async () => {
    const directory = await tempDir();
    const store = await openLinkStore(directory, 60_000);
    for (let n = 0; n < 10_000; n += 1) store.set(`store-${n}`, link(n));
    await store.flush();
    const reopened = await openLinkStore(directory, 60_000);
    // Opening compacted the journal into links.json.
    expect(JSON.parse(await readFile(path.join(directory, 'links.json'), 'utf8'))).toMatchObject({ generation: 1 });
    expect(await journalLines(directory)).toEqual([]);
    const before = reopened.bytesWritten;
    reopened.set('store-42', link(-42));
    await reopened.flush();
    const appended = reopened.bytesWritten - before;
    expect(appended).toBe(Buffer.byteLength(`${JSON.stringify({ s: 'store-42', l: link(-42) })}\n`));
    expect(await journalLines(directory)).toEqual([{ s: 'store-42', l: link(-42) }]);
    expect((await openLinkStore(directory, 60_000)).get('store-42')).toEqual(link(-42));
  });

  it('compacts once the journal outgrows the base file, and reads what it wrote at every step', async () => {
    const directory = await tempDir();
    const store = await openLinkStore(directory, { writeDelayInMs: 60_000, compactAfterBytes: 2_000 });
    for (let round = 0; round < 60; round += 1) {
      for (let n = 0; n < 5; n += 1) store.set(`store-${n}`, link(round * 10 + n));
      await store.flush();
    }
    const base = JSON.parse(await readFile(path.join(directory, 'links.json'), 'utf8')) as { generation: number };
    expect(base.generation).toBeGreaterThan(1);
    expect((await readFile(path.join(directory, 'links.journal'), 'utf8')).length).toBeLessThan(2_000 + 1_000);
    const reopened = await openLinkStore(directory, 60_000);
    for (let n = 0; n < 5; n += 1) expect(reopened.get(`store-${n}`)).toEqual(link(590 + n));
  });

  it('ignores a torn last journal line, a journal of an older generation, and a temporary file a crash left', async () => {
    const directory = await tempDir();
    const store = await openLinkStore(directory, 60_000);
    store.set('a', link(1));
    store.set('b', link(2));
    await store.flush();
    // A crash mid-append: half a line at the end.
    const journal = path.join(directory, 'links.journal');
    await writeFile(journal, `${await readFile(journal, 'utf8')}{"s":"a","l":{"snaps`);
    const afterTear = await openLinkStore(directory, 60_000);
    expect(afterTear.get('a')).toEqual(link(1));
    expect(afterTear.get('b')).toEqual(link(2));
    // A crash between a compaction's rename and its journal reset: the journal names the generation before the base.
    const generation = (JSON.parse(await readFile(path.join(directory, 'links.json'), 'utf8')) as { generation: number }).generation;
    await writeFile(journal, `${JSON.stringify({ generation: generation - 1 })}\n${JSON.stringify({ s: 'a', l: link(-1) })}\n`);
    // And a crash mid-compaction: a half-written temporary file that was never renamed.
    await writeFile(path.join(directory, '.links.json.tmp'), '{"generation": 9, "links": {"a": ');
    const reopened = await openLinkStore(directory, 60_000);
    expect(reopened.get('a')).toEqual(link(1));
    expect(reopened.get('b')).toEqual(link(2));
  });

  it('reads a links.json written before the journal (no generation)', async () => {
    const directory = await tempDir();
    await writeFile(path.join(directory, 'links.json'), JSON.stringify({ links: { a: link(7) } }));
    const store = await openLinkStore(directory, 60_000);
    expect(store.get('a')).toEqual(link(7));
    store.set('b', link(8));
    await store.flush();
    const reopened = await openLinkStore(directory, 60_000);
    expect(reopened.get('a')).toEqual(link(7));
    expect(reopened.get('b')).toEqual(link(8));
  });
});
