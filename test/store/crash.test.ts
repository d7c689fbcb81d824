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

/** Runs the child until it has confirmed KILL_AFTER ids, kills it with SIGKILL, and returns every id it printed. */
async function writeUntilKilled(mode: 'ledger' | 'outbox', directory: string): Promise<string[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, mode, directory, String(SEGMENT_SIZE)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const printed: string[] = [];
  const lines = createInterface({ input: child.stdout });
  // Everything the child wrote before it died is read: the stream ends only after the kill.
  const ended = new Promise<void>((resolve) => lines.once('close', resolve));
  lines.on('line', (line) => {
    printed.push(line);
    if (printed.length === KILL_AFTER) child.kill('SIGKILL');
  });
  expect(await exited).toBe('SIGKILL');
  await ended;
  return printed;
}

async function expectFilesParse(directory: string, prefix: string): Promise<number> {
  let records = 0;
  for (const name of await readdir(directory)) {
    if (!name.startsWith(`${prefix}-`)) continue;
    const content = JSON.parse(await readFile(path.join(directory, name), 'utf8')) as { records: unknown[] };
    records += content.records.length;
  }
  return records;
}

describe('a store process killed with SIGKILL', () => {
  it('loses no ledger entry whose record() had resolved', async () => {
    const directory = await tempDir();
    const printed = await writeUntilKilled('ledger', directory);
    expect(printed.length).toBeGreaterThanOrEqual(KILL_AFTER);

    expect(await expectFilesParse(directory, 'ledger')).toBeGreaterThanOrEqual(printed.length);
    const ledger = closing(await openLedger({ directory, segmentSize: SEGMENT_SIZE }));
    expect(printed.filter((id) => ledger.get(id) === undefined)).toEqual([]);
    expect(ledger.size).toBeGreaterThanOrEqual(printed.length);
  });

  it('loses no outbox event whose append() had resolved, and keeps append order with no gaps', async () => {
    const directory = await tempDir();
    const printed = await writeUntilKilled('outbox', directory);
    expect(printed.length).toBeGreaterThanOrEqual(KILL_AFTER);

    expect(await expectFilesParse(directory, 'outbox')).toBeGreaterThanOrEqual(printed.length);
    const outbox = closing(await openOutbox({ directory, segmentSize: SEGMENT_SIZE }));
    const events = outbox.peek(outbox.size);
    const survivors = new Set(events.map((event) => event.id));
    expect(printed.filter((id) => !survivors.has(id))).toEqual([]);
    // What survives is a prefix of what was appended: sequences 0, 1, 2, … in order, none missing.
    const sequences = events.map((event) => (event.body as { sequence: number }).sequence);
    expect(sequences).toEqual(sequences.map((_, i) => i));
  });
});
