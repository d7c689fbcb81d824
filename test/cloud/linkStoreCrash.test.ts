import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { openLinkStore } from '../../src/cloud/linkStore.js';

const CHILD = fileURLToPath(new URL('./linkStoreWriter.ts', import.meta.url));
const LINKS = 300;
/** Enough confirmed rounds for several compactions before the kill. */
const KILL_AFTER = 150;

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Runs the writer until it has confirmed KILL_AFTER rounds, kills it with SIGKILL, and returns the last it confirmed. */
async function writeUntilKilled(directory: string): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, directory, String(LINKS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  let confirmed = -1;
  const lines = createInterface({ input: child.stdout });
  const ended = new Promise<void>((resolve) => lines.once('close', resolve));
  lines.on('line', (line) => {
    confirmed = Number(line.split(' ')[1]);
    if (confirmed + 1 === KILL_AFTER) child.kill('SIGKILL');
  });
  expect(await exited).toBe('SIGKILL');
  await ended;
  return confirmed;
}

describe('a cloud process killed with SIGKILL while its link store writes', () => {
  it('leaves files that open, with every link at least as new as the last flush that resolved', async () => {
    const directory = await mkdtemp(path.join(tmpdir(), 'storelink-links-crash-'));
    cleanups.push(() => rm(directory, { recursive: true, force: true }));
    const confirmed = await writeUntilKilled(directory);
    expect(confirmed).toBeGreaterThanOrEqual(KILL_AFTER - 1);
    // The base file is whole JSON whatever the moment of the kill (it is only ever replaced by rename).
    const base = JSON.parse(await readFile(path.join(directory, 'links.json'), 'utf8')) as { generation: number };
    expect(base.generation).toBeGreaterThan(1);

    const store = await openLinkStore(directory, 60_000);
    for (let n = 0; n < LINKS; n += 1) {
      const round = (store.get(`store-${n}`)?.snapshot as { round: number } | undefined)?.round;
      // The last round at or before the confirmed one that set this link: on disk when its flush resolved.
      let expected = confirmed;
      while ((n + expected) % 3 !== 0) expected -= 1;
      expect(round, `store-${n}`).toBeGreaterThanOrEqual(expected);
      // Newer only by the round in flight at the kill, and only a round that set it.
      expect(round! - confirmed, `store-${n}`).toBeLessThanOrEqual(1);
      expect((n + round!) % 3, `store-${n}`).toBe(0);
    }
  });
});
