import { appendFile, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openLedger, type LedgerEntry, type LedgerOptions } from '../../src/store/ledger.js';
import { HOUR, T0, closing, ledgerEntry, tempDir } from './harness.js';

const DAY = 24 * HOUR;

async function segmentFiles(directory: string): Promise<string[]> {
  return (await readdir(directory)).filter((name) => /^ledger-\d+\.json$/.test(name)).sort();
}

/** The entries of a segment file in the current format: a header line, then one entry per line. */
async function readSegment(directory: string, name: string): Promise<LedgerEntry[]> {
  const text = await readFile(path.join(directory, name), 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  const [header, ...lines] = text.slice(0, -1).split('\n');
  expect(JSON.parse(header!)).toEqual({ format: 'storelink.ledger', version: 2 });
  return lines.map((line) => JSON.parse(line) as LedgerEntry);
}

/** A segment as the previous version wrote it (lowdb's DataFile): one JSON document, one record per line. */
function version1Segment(records: readonly LedgerEntry[]): string {
  const body = records.length === 0 ? '' : `\n${records.map((record) => JSON.stringify(record)).join(',\n')}\n`;
  return `{"format":"storelink.ledger","version":1,"records":[${body}]}\n`;
}

const silent = (warnings: string[]) => {
  const logger = { debug: () => undefined, info: () => undefined, warn: (_: object, message?: string) => void warnings.push(message ?? ''), error: () => undefined, child: () => logger };
  return logger;
};

describe('ledger', () => {
  it('keeps done and rejected entries across close and reopen', async () => {
    const directory = await tempDir();
    const first = closing(await openLedger({ directory }));
    const done = ledgerEntry({ channel: 'relay' });
    const rejected = ledgerEntry({ outcome: 'rejected', result: undefined, error: { code: 'OUT_OF_STOCK', message: 'no A-1 left' } });
    expect(await first.record(done)).toEqual(done);
    expect(await first.record(rejected)).toEqual(rejected);
    expect(first.get(done.id)).toEqual(done);
    expect(first.size).toBe(2);
    await first.close();

    const second = closing(await openLedger({ directory }));
    expect(second.size).toBe(2);
    expect(second.get(done.id)).toEqual(done);
    expect(second.get(rejected.id)).toEqual(rejected);
    expect(second.get('00000000-0000-4000-8000-000000000000')).toBeUndefined();
  });

  it('lets the first write win: a second record of an id writes nothing and returns the first entry', async () => {
    const directory = await tempDir();
    const ledger = closing(await openLedger({ directory }));
    const first = ledgerEntry({ result: { prepared: 1 } });
    await ledger.record(first);
    const writesBefore = ledger.writes;
    const [fileName] = await segmentFiles(directory);
    const bytesBefore = await readFile(path.join(directory, fileName!), 'utf8');

    const again = await ledger.record({ ...first, result: { prepared: 2 }, channel: 'relay' });

    expect(again).toEqual(first);
    expect(ledger.writes).toBe(writesBefore);
    expect(await readFile(path.join(directory, fileName!), 'utf8')).toBe(bytesBefore);
    await ledger.close();
    const reopened = closing(await openLedger({ directory }));
    expect(reopened.get(first.id)?.result).toEqual({ prepared: 1 });
  });

  it('resolves concurrent records of one id with the first entry, once it is on disk', async () => {
    const directory = await tempDir();
    const ledger = closing(await openLedger({ directory }));
    const first = ledgerEntry({ result: 'first' });
    const results = await Promise.all([ledger.record(first), ledger.record({ ...first, result: 'second' }), ledger.record({ ...first, result: 'third' })]);
    expect(results.map((entry) => entry.result)).toEqual(['first', 'first', 'first']);
    expect(ledger.size).toBe(1);
    expect((await readSegment(directory, (await segmentFiles(directory))[0]!)).map((entry) => entry.result)).toEqual(['first']);
  });

  it('serves 1,000 concurrent records with a handful of writes', async () => {
    const directory = await tempDir();
    const ledger = closing(await openLedger({ directory }));
    const entries = Array.from({ length: 1000 }, () => ledgerEntry());

    await Promise.all(entries.map((entry) => ledger.record(entry)));

    expect(ledger.writes).toBeGreaterThanOrEqual(1);
    expect(ledger.writes).toBeLessThanOrEqual(3);
    const files = await segmentFiles(directory);
    expect(files).toHaveLength(1);
    expect((await readSegment(directory, files[0]!)).map((entry) => entry.id)).toEqual(entries.map((entry) => entry.id));
  });

  it('appends a record to the open segment: the file is never replaced and what it held before stays byte for byte', async () => {
    const directory = await tempDir();
    const ledger = closing(await openLedger({ directory }));
    await ledger.record(ledgerEntry());
    const file = path.join(directory, (await segmentFiles(directory))[0]!);
    const { ino } = await stat(file);
    let before = await readFile(file, 'utf8');

    for (let i = 0; i < 5; i++) {
      const entry = ledgerEntry({ type: `step.${i}` });
      await ledger.record(entry);
      const after = await readFile(file, 'utf8');
      // A rewrite (temp file + rename) would give the file a new inode.
      expect((await stat(file)).ino).toBe(ino);
      expect(after).toBe(`${before}${JSON.stringify(entry)}\n`);
      before = after;
    }
  });

  it('with fsync, records, groups concurrent records into a few writes and reopens the same', async () => {
    const directory = await tempDir();
    const ledger = closing(await openLedger({ directory, fsync: true, segmentSize: 40 }));
    const entries = Array.from({ length: 100 }, () => ledgerEntry());
    await Promise.all(entries.map((entry) => ledger.record(entry)));
    expect(ledger.writes).toBeLessThanOrEqual(9);
    await ledger.close();
    expect(await segmentFiles(directory)).toHaveLength(3);
    const reopened = closing(await openLedger({ directory, fsync: true, segmentSize: 40 }));
    for (const entry of entries) expect(reopened.get(entry.id)).toEqual(entry);
  });

  it('ignores a torn last line left by a crash, cuts it off, and appends after the last whole line', async () => {
    const directory = await tempDir();
    const first = await openLedger({ directory });
    const kept = [ledgerEntry(), ledgerEntry()];
    for (const entry of kept) await first.record(entry);
    await first.close();
    const file = path.join(directory, 'ledger-000000000001.json');
    const whole = await readFile(file, 'utf8');
    // What a write cut short leaves: the start of a line, without its end of line.
    const torn = ledgerEntry();
    await appendFile(file, JSON.stringify(torn).slice(0, 57));
    const warnings: string[] = [];

    const reopened = closing(await openLedger({ directory, logger: silent(warnings) }));

    expect(reopened.size).toBe(2);
    for (const entry of kept) expect(reopened.get(entry.id)).toEqual(entry);
    expect(reopened.get(torn.id)).toBeUndefined();
    expect(warnings).toEqual([expect.stringContaining('cutting off the torn last line')]);
    expect(await readFile(file, 'utf8')).toBe(whole);
    const next = ledgerEntry();
    await reopened.record(next);
    expect((await readSegment(directory, 'ledger-000000000001.json')).map((entry) => entry.id)).toEqual([...kept, next].map((entry) => entry.id));
  });

  it('refuses a segment whose damage is not a torn last line, naming the file and the line', async () => {
    const directory = await tempDir();
    const ledger = await openLedger({ directory });
    const entries = [ledgerEntry(), ledgerEntry(), ledgerEntry()];
    for (const entry of entries) await ledger.record(entry);
    await ledger.close();
    const file = path.join(directory, 'ledger-000000000001.json');
    const lines = (await readFile(file, 'utf8')).split('\n');

    // A line cut short in the middle of the file: that is no crash of ours.
    await writeFile(file, [lines[0], lines[1], lines[2]!.slice(0, 40), lines[3], ''].join('\n'));
    await expect(openLedger({ directory })).rejects.toMatchObject({ code: 'FILE_UNREADABLE', message: expect.stringContaining(`ledger segment ${file} has a line that is not JSON at line 3`) });
    // A whole line that parses but is no entry.
    await writeFile(file, [lines[0], lines[1], JSON.stringify({ ...entries[1], outcome: 'maybe' }), lines[3], ''].join('\n'));
    await expect(openLedger({ directory })).rejects.toThrow(`ledger segment ${file} has an invalid record at records[1] (line 3): it.outcome must be one of`);
    // A header without its end of line (segment files are created whole, header included).
    await writeFile(file, lines[0]!);
    await expect(openLedger({ directory })).rejects.toMatchObject({ code: 'FILE_UNREADABLE', message: expect.stringContaining('version 2 header without its end of line') });
    // An empty file.
    await writeFile(file, '');
    await expect(openLedger({ directory })).rejects.toMatchObject({ code: 'FILE_UNREADABLE', message: expect.stringContaining('cannot be read as JSON') });
  });

  it('opens a directory written in the previous format and moves its open segment to the current one on the next record', async () => {
    const directory = await tempDir();
    const full = Array.from({ length: 3 }, (_, i) => ledgerEntry({ type: `old.${i}` }));
    const open = [ledgerEntry({ type: 'old.open' })];
    const fullText = version1Segment(full);
    await writeFile(path.join(directory, 'ledger-000000000001.json'), fullText);
    // Also as compact JSON, the way a hand-made or other-tool file looks.
    await writeFile(path.join(directory, 'ledger-000000000002.json'), JSON.stringify({ format: 'storelink.ledger', version: 1, records: open }));

    const ledger = closing(await openLedger({ directory, segmentSize: 3 }));
    expect(ledger.size).toBe(4);
    for (const entry of [...full, ...open]) expect(ledger.get(entry.id)).toEqual(entry);
    // Opening wrote nothing.
    expect(ledger.writes).toBe(0);
    expect(await readFile(path.join(directory, 'ledger-000000000001.json'), 'utf8')).toBe(fullText);

    const added = [ledgerEntry({ type: 'new.0' }), ledgerEntry({ type: 'new.1' }), ledgerEntry({ type: 'new.2' })];
    for (const entry of added) await ledger.record(entry);
    await ledger.close();

    // The full old segment is left as it was; the open one was rewritten in the current format, then appended to.
    expect(await readFile(path.join(directory, 'ledger-000000000001.json'), 'utf8')).toBe(fullText);
    expect((await readSegment(directory, 'ledger-000000000002.json')).map((entry) => entry.type)).toEqual(['old.open', 'new.0', 'new.1']);
    expect((await readSegment(directory, 'ledger-000000000003.json')).map((entry) => entry.type)).toEqual(['new.2']);
    const reopened = closing(await openLedger({ directory, segmentSize: 3 }));
    expect(reopened.size).toBe(7);
    for (const entry of [...full, ...open, ...added]) expect(reopened.get(entry.id)).toEqual(entry);
  });

  it('prunes a segment in the previous format like any other', async () => {
    const directory = await tempDir();
    const expired = [ledgerEntry({ expiresAt: new Date(T0 - 3 * DAY).toISOString() })];
    await writeFile(path.join(directory, 'ledger-000000000001.json'), version1Segment(expired));
    const ledger = closing(await openLedger({ directory, now: () => T0 }));
    expect(ledger.size).toBe(0);
    expect(await segmentFiles(directory)).toEqual([]);
  });

  it('writes once per record when records come one after another (each waits for its own write)', async () => {
    const directory = await tempDir();
    const ledger = closing(await openLedger({ directory }));
    for (let i = 0; i < 5; i++) await ledger.record(ledgerEntry());
    expect(ledger.writes).toBe(5);
  });

  it('rolls over to a new segment when one is full and never rewrites a full segment', async () => {
    const directory = await tempDir();
    const ledger = closing(await openLedger({ directory, segmentSize: 10 }));
    const entries = Array.from({ length: 25 }, (_, i) => ledgerEntry({ type: `step.${i}` }));
    for (const entry of entries.slice(0, 10)) await ledger.record(entry);
    const fullSegment = (await segmentFiles(directory))[0]!;
    const fullBytes = await readFile(path.join(directory, fullSegment), 'utf8');

    for (const entry of entries.slice(10)) await ledger.record(entry);

    const files = await segmentFiles(directory);
    expect(files).toEqual(['ledger-000000000001.json', 'ledger-000000000002.json', 'ledger-000000000003.json']);
    expect(await readFile(path.join(directory, fullSegment), 'utf8')).toBe(fullBytes);
    const counts = await Promise.all(files.map(async (name) => (await readSegment(directory, name)).length));
    expect(counts).toEqual([10, 10, 5]);
    await ledger.close();

    // After a reopen the open segment keeps filling.
    const reopened = closing(await openLedger({ directory, segmentSize: 10 }));
    expect(reopened.size).toBe(25);
    await reopened.record(ledgerEntry());
    expect(await segmentFiles(directory)).toHaveLength(3);
    expect(await readSegment(directory, 'ledger-000000000003.json')).toHaveLength(6);
  });

  it('prunes a full segment once every entry in it is past expiry plus retention, when the next segment fills', async () => {
    const directory = await tempDir();
    let now = T0;
    const options: LedgerOptions = { directory, segmentSize: 3, retentionAfterExpiryInMs: DAY, now: () => now };
    const ledger = closing(await openLedger(options));
    const soon = (i: number): LedgerEntry => ledgerEntry({ type: `soon.${i}`, expiresAt: new Date(T0 + HOUR).toISOString() });
    const early = [soon(0), soon(1), soon(2)];
    // One long-lived entry keeps its whole segment.
    const mixed = [soon(3), ledgerEntry({ type: 'late', expiresAt: new Date(T0 + 30 * DAY).toISOString() }), soon(4)];
    for (const entry of [...early, ...mixed]) await ledger.record(entry);
    expect(await segmentFiles(directory)).toHaveLength(2);

    // Exactly at expiry + retention the entries are still kept: they may be forgotten only once it has passed.
    now = T0 + HOUR + DAY;
    for (const entry of [soon(5), soon(6), soon(7)]) await ledger.record(entry);
    expect(ledger.get(early[0]!.id)).toBeDefined();
    expect(await segmentFiles(directory)).toHaveLength(3);

    now = T0 + HOUR + DAY + 1;
    const trigger = [soon(8), soon(9), soon(10)];
    for (const entry of trigger) await ledger.record(entry);

    // Segments 1, 3 and 4 (all short-lived) are gone; segment 2 stays for its long-lived entry.
    expect(await segmentFiles(directory)).toEqual(['ledger-000000000002.json']);
    for (const entry of [...early, ...trigger]) expect(ledger.get(entry.id)).toBeUndefined();
    for (const entry of mixed) expect(ledger.get(entry.id)).toEqual(entry);
    expect(ledger.size).toBe(3);
    await ledger.close();

    const reopened = closing(await openLedger(options));
    expect(reopened.size).toBe(3);
    // New segments are numbered after the newest surviving one, so file order stays record order.
    await reopened.record(soon(11));
    expect(await segmentFiles(directory)).toEqual(['ledger-000000000002.json', 'ledger-000000000003.json']);
  });

  it('prunes at open, the open segment included, and keeps unexpired history', async () => {
    const directory = await tempDir();
    let now = T0;
    const options: LedgerOptions = { directory, segmentSize: 2, retentionAfterExpiryInMs: 0, now: () => now };
    const ledger = closing(await openLedger(options));
    const expiring = Array.from({ length: 3 }, () => ledgerEntry({ expiresAt: new Date(T0 + HOUR).toISOString() }));
    const lasting = Array.from({ length: 2 }, () => ledgerEntry({ expiresAt: new Date(T0 + DAY).toISOString() }));
    for (const entry of [...expiring.slice(0, 2), ...lasting, expiring[2]!]) await ledger.record(entry);
    await ledger.close();
    expect(await segmentFiles(directory)).toHaveLength(3);

    now = T0 + 2 * HOUR;
    const reopened = closing(await openLedger(options));
    expect(reopened.size).toBe(2);
    expect(await segmentFiles(directory)).toEqual(['ledger-000000000002.json']);
    for (const entry of lasting) expect(reopened.get(entry.id)).toEqual(entry);
    for (const entry of expiring) expect(reopened.get(entry.id)).toBeUndefined();
  });

  it('refuses to open over an unparsable segment, naming the file', async () => {
    const directory = await tempDir();
    const ledger = await openLedger({ directory });
    await ledger.record(ledgerEntry());
    await ledger.close();
    const file = path.join(directory, 'ledger-000000000001.json');
    await writeFile(file, '{"format":"storelink.ledger","version":1,"records":[{"id":');

    const opening = openLedger({ directory });

    await expect(opening).rejects.toMatchObject({ code: 'FILE_UNREADABLE', message: expect.stringContaining(file) });
    await expect(opening).rejects.toThrow(/cannot be read as JSON/);
  });

  it('refuses to open over a segment holding an invalid entry, naming the file and the record', async () => {
    const directory = await tempDir();
    const file = path.join(directory, 'ledger-000000000001.json');
    await writeFile(file, JSON.stringify({ format: 'storelink.ledger', version: 1, records: [ledgerEntry(), { ...ledgerEntry(), outcome: 'maybe' }] }));
    await expect(openLedger({ directory })).rejects.toThrow(`ledger segment ${file} has an invalid record at records[1]: it.outcome must be one of`);
    await writeFile(file, JSON.stringify({ format: 'storelink.outbox', version: 1, records: [] }));
    await expect(openLedger({ directory })).rejects.toThrow(`ledger segment ${file} is not a storelink.ledger file (version 1 or 2)`);
    await writeFile(file, `${JSON.stringify({ format: 'storelink.outbox', version: 2 })}\n`);
    await expect(openLedger({ directory })).rejects.toThrow(`ledger segment ${file} is not a storelink.ledger file (version 1 or 2)`);
    await writeFile(file, JSON.stringify({ format: 'storelink.ledger', version: 3, records: [] }));
    await expect(openLedger({ directory })).rejects.toThrow(`ledger segment ${file} is not a storelink.ledger file (version 1 or 2)`);
  });

  it('opens past a temp file left by an interrupted write (removing it) and past files it did not write', async () => {
    const directory = await tempDir();
    const ledger = await openLedger({ directory });
    const entry = ledgerEntry();
    await ledger.record(entry);
    await ledger.close();
    await writeFile(path.join(directory, '.ledger-000000000001.json.tmp'), '{"format":"storelink.led');
    await writeFile(path.join(directory, '.ledger-000000000002.json.tmp'), '');
    // Not a name the ledger writes: left alone, with a warning.
    await writeFile(path.join(directory, 'ledger-2.json'), 'not json');
    const warnings: string[] = [];

    const reopened = closing(await openLedger({ directory, logger: silent(warnings) }));

    expect(reopened.get(entry.id)).toEqual(entry);
    expect(reopened.size).toBe(1);
    expect((await readdir(directory)).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    expect(warnings).toEqual([expect.stringContaining('ignoring a file that looks like a ledger segment')]);
  });

  it('stores a frozen copy: changing the caller object afterwards changes nothing', async () => {
    const directory = await tempDir();
    const ledger = closing(await openLedger({ directory }));
    const entry = ledgerEntry({ result: { lines: [1, 2] } });
    const stored = await ledger.record(entry);
    (entry.result as { lines: number[] }).lines.push(3);
    expect(ledger.get(entry.id)?.result).toEqual({ lines: [1, 2] });
    expect(Object.isFrozen(stored)).toBe(true);
    expect(() => (stored.result as { lines: number[] }).lines.push(4)).toThrow(TypeError);
  });

  it('close waits for pending writes, is idempotent, and refuses records afterwards', async () => {
    const directory = await tempDir();
    const ledger = await openLedger({ directory });
    const entries = Array.from({ length: 50 }, () => ledgerEntry());
    const recording = Promise.all(entries.map((entry) => ledger.record(entry)));
    const closed = ledger.close();
    expect(ledger.close()).toBe(closed);
    expect(ledger[Symbol.asyncDispose]()).toBe(closed);
    await closed;
    await recording;
    await expect(ledger.record(ledgerEntry())).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });

    const reopened = closing(await openLedger({ directory }));
    expect(reopened.size).toBe(50);
    for (const entry of entries) expect(reopened.get(entry.id)).toEqual(entry);
  });

  it('rejects the records of a failed write, keeps them in memory, and writes them with the next one', async () => {
    const directory = await tempDir();
    const warnings: string[] = [];
    const logger = { debug: () => undefined, info: () => undefined, warn: (_: object, message?: string) => void warnings.push(message ?? ''), error: () => undefined, child: () => logger };
    const ledger = closing(await openLedger({ directory, logger }));
    const lost = ledgerEntry();
    // The directory disappearing under the ledger makes the next write fail (ENOENT on the temp file).
    await rm(directory, { recursive: true });

    await expect(ledger.record(lost)).rejects.toThrow(`could not write ledger segment ${path.join(directory, 'ledger-000000000001.json')}`);
    expect(warnings).toEqual([expect.stringContaining('ledger write failed')]);
    expect(ledger.get(lost.id)).toEqual(lost);

    await mkdir(directory);
    const later = ledgerEntry();
    await ledger.record(later);
    await ledger.close();
    const reopened = closing(await openLedger({ directory }));
    expect(reopened.get(lost.id)).toEqual(lost);
    expect(reopened.get(later.id)).toEqual(later);
  });

  it('refuses a second open of the same directory in one process until the first is closed', async () => {
    const directory = await tempDir();
    const ledger = await openLedger({ directory });
    await expect(openLedger({ directory: `${directory}/.` })).rejects.toThrow(/already open in this process/);
    await ledger.close();
    closing(await openLedger({ directory }));
  });

  it.each<[string, unknown, ErrorConstructor, string]>([
    ['no options', undefined, TypeError, 'LedgerOptions must be an options object'],
    ['an empty directory', { directory: '' }, TypeError, 'LedgerOptions.directory must be the path of a directory'],
    ['a misspelt option', { directory: '/tmp/x', segmentsize: 10 }, TypeError, 'LedgerOptions has an unknown field "segmentsize"'],
    ['a zero segment size', { directory: '/tmp/x', segmentSize: 0 }, RangeError, 'LedgerOptions.segmentSize must be a whole number of records from 1'],
    ['a fractional segment size', { directory: '/tmp/x', segmentSize: 2.5 }, RangeError, 'segmentSize'],
    ['a negative retention', { directory: '/tmp/x', retentionAfterExpiryInMs: -1 }, RangeError, 'retentionAfterExpiryInMs must be a finite number'],
    ['a clock that is not a function', { directory: '/tmp/x', now: 5 }, TypeError, 'LedgerOptions.now must be a function'],
    ['an fsync that is not a boolean', { directory: '/tmp/x', fsync: 'yes' }, TypeError, 'LedgerOptions.fsync must be true or false'],
    ['a logger without methods', { directory: '/tmp/x', logger: {} }, TypeError, 'LedgerOptions.logger must be a pino-style logger'],
  ])('rejects %s', async (_name, options, type, message) => {
    const opening = openLedger(options as LedgerOptions);
    await expect(opening).rejects.toThrow(type);
    await expect(opening).rejects.toThrow(message);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['a missing id', { id: undefined }, 'ledger entry.id must be a non-empty string'],
    ['an unknown outcome', { outcome: 'ok' }, '.outcome must be one of "done", "rejected"'],
    ['an unknown channel', { channel: 'email' }, '.channel must be one of "relay", "queue"'],
    ['a date that is not ISO', { expiresAt: 'tomorrow' }, '.expiresAt must be an ISO 8601 timestamp'],
    ['a function in the result', { result: { run: () => 1 } }, '.result.run must be a JSON value, got function'],
    ['NaN in the result', { result: [1, Number.NaN] }, '.result[1] must be a finite number'],
    ['a Date in the result', { result: { at: new Date() } }, '.result.at must be a plain JSON object, got a Date'],
    ['a rejection without error', { outcome: 'rejected', result: undefined }, '.error must be { code, message }'],
    ['a done entry with an error', { error: { code: 'X', message: 'y' } }, '.error must be absent when outcome is "done"'],
    ['an extra field', { note: 'hi' }, 'ledger entry has an unknown field "note"'],
    ['an error with an extra field', { outcome: 'rejected', result: undefined, error: { code: 'X', message: 'y', stack: 's' } }, 'ledger entry.error has an unknown field "stack"'],
  ])('rejects an entry with %s', async (_name, overrides, message) => {
    const ledger = closing(await openLedger({ directory: await tempDir() }));
    const recording = ledger.record({ ...ledgerEntry(), ...overrides });
    await expect(recording).rejects.toThrow(TypeError);
    await expect(recording).rejects.toThrow(message);
    expect(ledger.size).toBe(0);
  });

  it('rejects a result that refers to itself', async () => {
    const ledger = closing(await openLedger({ directory: await tempDir() }));
    const result: Record<string, unknown> = {};
    result.self = result;
    await expect(ledger.record(ledgerEntry({ result: result as never }))).rejects.toThrow('.result.self must not contain a reference to itself');
  });
});
