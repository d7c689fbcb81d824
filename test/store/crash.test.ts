import { spawn } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { openLedger } from '../../src/store/ledger.js';
import { openOutbox } from '../../src/store/outbox.js';
import { closing, onCleanup, tempDir } from './harness.js';

const CHILD = fileURLToPath(new URL('./writeUntilKilled.ts', import.meta.url));
const SEGMENT_SIZE = 50;
/** Enough confirmed writes to have rolled over several segments before the kill. */
const KILL_AFTER = 400;

interface Confirmed {
  /** Ids recorded or appended, in the order the child confirmed them. */
  written: string[];
  acknowledged: Set<string>;
  /** Acknowledgements called but not confirmed before the kill: each may or may not have reached the disk. */
  acknowledging: Set<string>;
}

/** Runs the child until it has confirmed KILL_AFTER writes, kills it with SIGKILL, and returns all it confirmed. */
async function writeUntilKilled(mode: 'ledger' | 'outbox', directory: string, fsync = false): Promise<Confirmed> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, mode, directory, String(SEGMENT_SIZE), String(fsync)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const confirmed: Confirmed = { written: [], acknowledged: new Set(), acknowledging: new Set() };
  const lines = createInterface({ input: child.stdout });
  // Everything the child wrote before it died is read: the stream ends only after the kill.
  const ended = new Promise<void>((resolve) => lines.once('close', resolve));
  lines.on('line', (line) => {
    const [what, id] = line.split(' ');
    if (what === 'acknowledging') confirmed.acknowledging.add(id!);
    else if (what === 'acknowledged') {
      confirmed.acknowledging.delete(id!);
      confirmed.acknowledged.add(id!);
    } else confirmed.written.push(id!);
    if (confirmed.written.length === KILL_AFTER) child.kill('SIGKILL');
  });
  expect(await exited).toBe('SIGKILL');
  await ended;
  return confirmed;
}

/**
 * Counts the records in the segment files: every whole line after the header parses (a torn last line may not). The
 * outbox writes version 3, whose acknowledgements are removal lines (not counted as records).
 */
async function expectFilesParse(directory: string, prefix: string): Promise<number> {
  let records = 0;
  for (const name of await readdir(directory)) {
    if (!name.startsWith(`${prefix}-`)) continue;
    const text = await readFile(path.join(directory, name), 'utf8');
    const lines = text.slice(0, text.lastIndexOf('\n')).split('\n');
    expect(JSON.parse(lines[0]!)).toEqual({ format: `storelink.${prefix}`, version: prefix === 'outbox' ? 3 : 2 });
    for (const line of lines.slice(1)) {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      if (!('removed' in parsed)) records += 1;
    }
  }
  return records;
}

describe('a store process killed with SIGKILL', () => {
  it.each([
    ['without fsync', false],
    ['with fsync', true],
  ])('loses no ledger entry whose record() had resolved (%s)', async (_name, fsync) => {
    const directory = await tempDir();
    const { written } = await writeUntilKilled('ledger', directory, fsync);
    expect(written.length).toBeGreaterThanOrEqual(KILL_AFTER);

    expect(await expectFilesParse(directory, 'ledger')).toBeGreaterThanOrEqual(written.length);
    const ledger = closing(await openLedger({ directory, segmentSize: SEGMENT_SIZE, fsync }));
    expect(written.filter((id) => ledger.get(id) === undefined)).toEqual([]);
    expect(ledger.size).toBeGreaterThanOrEqual(written.length);
  });

  it('loses no outbox event whose append() had resolved, brings back none whose acknowledge() had, and keeps order', async () => {
    const directory = await tempDir();
    const { written, acknowledged, acknowledging } = await writeUntilKilled('outbox', directory);
    expect(written.length).toBeGreaterThanOrEqual(KILL_AFTER);
    // The acknowledger ran alongside, so both promises were tested at the moment of the kill.
    expect(acknowledged.size).toBeGreaterThan(0);

    expect(await expectFilesParse(directory, 'outbox')).toBeGreaterThanOrEqual(written.length - acknowledged.size - acknowledging.size);
    const outbox = closing(await openOutbox({ directory, segmentSize: SEGMENT_SIZE }));
    const events = outbox.peek(outbox.size);
    const survivors = new Set(events.map((event) => event.id));
    expect(written.filter((id) => !acknowledged.has(id) && !acknowledging.has(id) && !survivors.has(id))).toEqual([]);
    expect([...acknowledged].filter((id) => survivors.has(id))).toEqual([]);
    // Appends were numbered in order and acknowledged oldest first: what survives is one run of consecutive
    // sequence numbers, in order, none missing.
    const sequences = events.map((event) => (event.body as { sequence: number }).sequence);
    expect(sequences.length).toBeGreaterThan(0);
    expect(sequences).toEqual(sequences.map((_, i) => sequences[0]! + i));
  });
});
