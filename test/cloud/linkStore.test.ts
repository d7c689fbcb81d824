import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
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

const link = (n: number) => ({ snapshot: { value: 'healthy', n }, chart: { id: 'storeLink', hash: 'abc' }, enteredAtInMs: n });

describe('link store', () => {
  it('gathers the changes of its write delay into one write, and flush() writes at once', async () => {
    const directory = await tempDir();
    const store = await openLinkStore(directory, 60_000);
    for (let n = 0; n < 1_000; n += 1) store.set(`store-${n % 10}`, link(n));
    // Several turns of the event loop later, still nothing written: the delay has not run out.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(existsSync(path.join(directory, 'links.json'))).toBe(false);
    await store.flush();
    const written = JSON.parse(await readFile(path.join(directory, 'links.json'), 'utf8')) as { links: Record<string, { enteredAtInMs: number }> };
    expect(Object.keys(written.links)).toHaveLength(10);
    expect(written.links['store-9']!.enteredAtInMs).toBe(999);

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
});
