/**
 * Ledger write cost, each figure against two references measured in the same run:
 *
 * - "raw": the best hand-written equivalent, a bare `fs` append of the same JSON line to one open file, with the same
 *   group commit (every line queued while a write runs goes into the next one) and the same fsync setting;
 * - "rewrite": the segment format this ledger replaced, written the way it was: each group write rewrites the open
 *   segment of up to 1,000 records (lowdb DataFile: temp file + rename; with fsync, the temp file and the directory
 *   are flushed too, which the old code never did).
 *
 * Measured: records/s sequentially and with 100 concurrent callers, with and without fsync; the cost of one record
 * (sequential, without fsync) when the ledger already holds 1k, 10k, 100k and 1M entries; the time and heap it takes
 * to open each of those ledgers. The large ledgers are written directly as segment files in the current format (what
 * record() would have written, far faster than recording a million entries one by one), then opened with openLedger.
 *
 *   node --import tsx bench/ledger.bench.ts            # full run (about a minute)
 *   node --import tsx bench/ledger.bench.ts --smoke    # tiny counts, to check that it still runs
 *
 * Prints a table and one `BENCH_JSON {...}` line.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, open, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Low } from 'lowdb';
import { DataFile } from 'lowdb/node';
import { openLedger, type LedgerEntry } from '../src/store/ledger.js';
import { mean, median, percentile } from './stats.js';

const SMOKE = process.argv.includes('--smoke') || process.env['STORELINK_BENCH_SMOKE'] === '1';
const SEGMENT_SIZE = 1_000;
const SIZES = SMOKE ? [1_000, 10_000] : [1_000, 10_000, 100_000, 1_000_000];
const MEASURED_AT_SIZE = SMOKE ? 200 : 2_000;
const SEQUENTIAL = { plain: SMOKE ? 300 : 5_000, fsync: SMOKE ? 30 : 300 };
const CONCURRENT = { callers: 100, plain: SMOKE ? 1_000 : 20_000, fsync: SMOKE ? 300 : 3_000 };

// A full collection before each measurement, so that garbage left by the setup does not land a major GC inside it.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const expiresAt = new Date(Date.now() + 7 * 24 * 60 * 60 * 1000).toISOString();
function entry(sequence: number): LedgerEntry {
  return {
    id: randomUUID(),
    storeId: 'store-042',
    type: 'clickAndCollect.order',
    outcome: 'done',
    result: { orderId: `CC-${sequence}`, accepted: true, lines: [{ sku: 'A-1', quantity: 2 }] },
    channel: 'queue',
    executedAt: new Date().toISOString(),
    expiresAt,
  };
}

/** What is measured: something that records one entry and resolves once it is written. */
interface Recorder {
  record(entry: LedgerEntry): Promise<unknown>;
  readonly writes: number;
  close(): Promise<void>;
}

async function withDirectory<T>(run: (directory: string) => Promise<T>): Promise<T> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-ledger-bench-'));
  try {
    return await run(directory);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** Runs `write` for every item queued while the previous run was in flight: the group commit both references use. */
class GroupCommit<T> {
  #queue: { item: T; resolve: () => void; reject: (error: unknown) => void }[] = [];
  #running = false;
  readonly #write: (items: T[]) => Promise<void>;
  writes = 0;

  constructor(write: (items: T[]) => Promise<void>) {
    this.#write = write;
  }

  add(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#running) this.#schedule();
    });
  }

  #schedule(): void {
    this.#running = true;
    setImmediate(() => void this.#run());
  }

  async #run(): Promise<void> {
    const batch = this.#queue;
    this.#queue = [];
    try {
      await this.#write(batch.map((waiter) => waiter.item));
      this.writes++;
      for (const waiter of batch) waiter.resolve();
    } catch (error) {
      for (const waiter of batch) waiter.reject(error);
    }
    if (this.#queue.length > 0) this.#schedule();
    else this.#running = false;
  }
}

/** The hand-written best: one open file, each group of JSON lines appended with one write (and one fdatasync). */
async function openRawAppender(directory: string, fsync: boolean, existingLines = 0): Promise<Recorder> {
  const file = path.join(directory, 'raw.jsonl');
  if (existingLines > 0) await writeLines(file, existingLines);
  const handle: FileHandle = await open(file, 'a');
  const group = new GroupCommit<string>(async (lines) => {
    await handle.write(`${lines.join('\n')}\n`);
    if (fsync) await handle.datasync();
  });
  return {
    record: (value) => group.add(JSON.stringify(value)),
    get writes() {
      return group.writes;
    },
    close: () => handle.close(),
  };
}

/** The replaced format: segments of up to 1,000 records, the open one rewritten whole by each group write. */
function openSegmentRewriter(directory: string, fsync: boolean, existing = 0): Recorder {
  const texts = new WeakMap<LedgerEntry, string>();
  const segments: LedgerEntry[][] = [];
  const stringify = (file: { records: LedgerEntry[] }): string => {
    const lines = file.records.map((record) => texts.get(record) ?? JSON.stringify(record));
    return `{"format":"storelink.ledger","version":1,"records":[${lines.length === 0 ? '' : `\n${lines.join(',\n')}\n`}]}\n`;
  };
  const fileOf = (index: number): string => path.join(directory, `ledger-${String(index + 1).padStart(12, '0')}.json`);
  const databases = new Map<number, Low<{ records: LedgerEntry[] }>>();
  // History before the measurement stays in memory as the old ledger kept it; only the open segment is ever written.
  for (let i = 0; i < existing; i++) {
    if (i % SEGMENT_SIZE === 0) segments.push([]);
    segments.at(-1)!.push(entry(i));
  }
  const writeSegment = async (index: number): Promise<void> => {
    const records = [...segments[index]!];
    if (!fsync) {
      let database = databases.get(index);
      if (database === undefined) {
        database = new Low(new DataFile(fileOf(index), { parse: (text) => JSON.parse(text) as { records: LedgerEntry[] }, stringify }), { records: [] });
        databases.set(index, database);
      }
      database.data = { records };
      await database.write();
      return;
    }
    const temp = path.join(directory, `.${path.basename(fileOf(index))}.tmp`);
    const handle = await open(temp, 'w');
    await handle.writeFile(stringify({ records }));
    await handle.sync();
    await handle.close();
    await rename(temp, fileOf(index));
    const dir = await open(directory, 'r');
    await dir.sync();
    await dir.close();
  };
  const touched = new Set<number>();
  const group = new GroupCommit<null>(async () => {
    const indexes = [...touched].sort((a, b) => a - b);
    touched.clear();
    for (const index of indexes) await writeSegment(index);
  });
  return {
    record(value) {
      // As the old ledger did: a frozen-style copy through JSON, its text kept for the rewrites.
      const copy = JSON.parse(JSON.stringify(value)) as LedgerEntry;
      texts.set(copy, JSON.stringify(copy));
      if (segments.length === 0 || segments.at(-1)!.length >= SEGMENT_SIZE) segments.push([]);
      segments.at(-1)!.push(copy);
      touched.add(segments.length - 1);
      return group.add(null);
    },
    get writes() {
      return group.writes;
    },
    close: () => Promise.resolve(),
  };
}

/** Writes `count` entries as JSON lines (the raw appender's history). */
async function writeLines(file: string, count: number): Promise<void> {
  const handle = await open(file, 'w');
  for (let done = 0; done < count; done += 10_000) {
    const lines: string[] = [];
    for (let i = done; i < Math.min(count, done + 10_000); i++) lines.push(JSON.stringify(entry(i)));
    await handle.write(`${lines.join('\n')}\n`);
  }
  await handle.close();
}

/** Writes `count` entries as ledger segment files in the current format, as record() would have. */
async function writeLedgerSegments(directory: string, count: number): Promise<void> {
  await mkdir(directory, { recursive: true });
  const header = JSON.stringify({ format: 'storelink.ledger', version: 2 });
  for (let segment = 0; segment * SEGMENT_SIZE < count; segment++) {
    const lines = [header];
    for (let i = segment * SEGMENT_SIZE; i < Math.min(count, (segment + 1) * SEGMENT_SIZE); i++) lines.push(JSON.stringify(entry(i)));
    await writeFile(path.join(directory, `ledger-${String(segment + 1).padStart(12, '0')}.json`), `${lines.join('\n')}\n`);
  }
}

async function sequential(recorder: Recorder, count: number): Promise<{ perSecond: number; times: number[] }> {
  collectGarbage();
  const times: number[] = [];
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const value = entry(i);
    const before = performance.now();
    await recorder.record(value);
    times.push(performance.now() - before);
  }
  return { perSecond: count / ((performance.now() - started) / 1000), times };
}

async function concurrent(recorder: Recorder, callers: number, count: number): Promise<number> {
  collectGarbage();
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (next < count) await recorder.record(entry(next++));
    }),
  );
  return count / ((performance.now() - started) / 1000);
}

type Kind = 'ledger' | 'raw' | 'rewrite';
const KINDS: Kind[] = ['ledger', 'raw', 'rewrite'];

async function openKind(kind: Kind, directory: string, fsync: boolean): Promise<Recorder> {
  if (kind === 'ledger') return openLedger({ directory, fsync });
  if (kind === 'raw') return openRawAppender(directory, fsync);
  return Promise.resolve(openSegmentRewriter(directory, fsync));
}

interface Throughput {
  sequential: Record<Kind, number>;
  concurrent: Record<Kind, number>;
  /** Records per write with 100 concurrent callers: how much one group commit carries. */
  recordsPerWrite: Record<Kind, number>;
}

async function throughput(fsync: boolean): Promise<Throughput> {
  const result: Throughput = {
    sequential: { ledger: 0, raw: 0, rewrite: 0 },
    concurrent: { ledger: 0, raw: 0, rewrite: 0 },
    recordsPerWrite: { ledger: 0, raw: 0, rewrite: 0 },
  };
  const count = fsync ? SEQUENTIAL.fsync : SEQUENTIAL.plain;
  const concurrentCount = fsync ? CONCURRENT.fsync : CONCURRENT.plain;
  for (const kind of KINDS) {
    await withDirectory(async (directory) => {
      const recorder = await openKind(kind, directory, fsync);
      result.sequential[kind] = (await sequential(recorder, count)).perSecond;
      await recorder.close();
    });
    await withDirectory(async (directory) => {
      const recorder = await openKind(kind, directory, fsync);
      const writesBefore = recorder.writes;
      result.concurrent[kind] = await concurrent(recorder, CONCURRENT.callers, concurrentCount);
      result.recordsPerWrite[kind] = concurrentCount / (recorder.writes - writesBefore);
      await recorder.close();
    });
  }
  return result;
}

interface SizedCost {
  size: number;
  ledger: { meanMs: number; p50Ms: number; p99Ms: number };
  raw: { meanMs: number; p50Ms: number };
  rewrite: { meanMs: number; p50Ms: number };
  /** Opening the ledger of `size` entries. */
  openMs: number;
  openHeapMB: number;
}

const summary = (times: number[]) => ({ meanMs: mean(times), p50Ms: median(times) });

async function costAt(size: number): Promise<SizedCost> {
  return withDirectory(async (directory) => {
    // The references first, each in a heap holding only its own history.
    const raw = await openRawAppender(directory, false, size);
    const rawTimes = (await sequential(raw, MEASURED_AT_SIZE)).times;
    await raw.close();

    const rewriteDirectory = path.join(directory, 'rewrite');
    await mkdir(rewriteDirectory);
    const rewriteTimes = (await sequential(openSegmentRewriter(rewriteDirectory, false, size), MEASURED_AT_SIZE)).times;

    const ledgerDirectory = path.join(directory, 'ledger');
    await writeLedgerSegments(ledgerDirectory, size);
    collectGarbage();
    const heapBefore = process.memoryUsage().heapUsed;
    const opening = performance.now();
    const ledger = await openLedger({ directory: ledgerDirectory });
    const openMs = performance.now() - opening;
    collectGarbage();
    const openHeapMB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    if (ledger.size !== size) throw new Error(`the ledger opened with ${ledger.size} entries, not ${size}`);
    const ledgerTimes = (await sequential(ledger, MEASURED_AT_SIZE)).times;
    await ledger.close();
    return {
      size,
      ledger: { ...summary(ledgerTimes), p99Ms: percentile(ledgerTimes, 99) },
      raw: summary(rawTimes),
      rewrite: summary(rewriteTimes),
      openMs,
      openHeapMB,
    };
  });
}

const started = performance.now();
const plain = await throughput(false);
const fsynced = await throughput(true);
const costs: SizedCost[] = [];
for (const size of SIZES) costs.push(await costAt(size));
const seconds = (performance.now() - started) / 1000;

const n = (value: number): string => Math.round(value).toLocaleString('en-US');
const ms = (value: number): string => (value < 10 ? value.toFixed(3) : value.toFixed(1));
const x = (value: number): string => `${value.toFixed(2)}x`;

console.log(`ledger benchmark${SMOKE ? ' (smoke: tiny counts, figures meaningless)' : ''}; segment size ${SEGMENT_SIZE}; references measured in the same run`);
console.log('');
console.log('records/s                 ledger   raw append  old rewrite   ledger/raw  ledger/rewrite   records per write (ledger, raw)');
for (const [label, figures] of [
  ['no fsync', plain],
  ['fsync', fsynced],
] as const) {
  for (const mode of ['sequential', 'concurrent'] as const) {
    const f = figures[mode];
    const per = mode === 'concurrent' ? `${figures.recordsPerWrite.ledger.toFixed(1)}, ${figures.recordsPerWrite.raw.toFixed(1)}` : '1';
    console.log(
      `  ${`${label}, ${mode === 'sequential' ? 'sequential' : `${CONCURRENT.callers} callers`}`.padEnd(22)}${n(f.ledger).padStart(8)}${n(f.raw).padStart(13)}${n(f.rewrite).padStart(13)}` +
        `${x(f.ledger / f.raw).padStart(13)}${x(f.ledger / f.rewrite).padStart(16)}   ${per}`,
    );
  }
}
console.log('');
console.log(`one sequential record (no fsync, ${MEASURED_AT_SIZE} measured), by entries already held; ms. Open: the ledger of that size.`);
console.log('    entries   ledger mean / p50 / p99   raw mean / p50   rewrite mean / p50   ledger/raw mean   open ms   open heap MB');
for (const cost of costs) {
  console.log(
    `  ${n(cost.size).padStart(9)}   ${`${ms(cost.ledger.meanMs)} / ${ms(cost.ledger.p50Ms)} / ${ms(cost.ledger.p99Ms)}`.padEnd(24)}` +
      `${`${ms(cost.raw.meanMs)} / ${ms(cost.raw.p50Ms)}`.padEnd(17)}${`${ms(cost.rewrite.meanMs)} / ${ms(cost.rewrite.p50Ms)}`.padEnd(21)}` +
      `${x(cost.ledger.meanMs / cost.raw.meanMs).padStart(15)}${n(cost.openMs).padStart(10)}${cost.openHeapMB.toFixed(0).padStart(15)}`,
  );
}
const smallest = costs[0]!;
const largest = costs.at(-1)!;
const flatness = { meanRatio: largest.ledger.meanMs / smallest.ledger.meanMs, p50Ratio: largest.ledger.p50Ms / smallest.ledger.p50Ms };
console.log(
  `  record cost at ${n(largest.size)} / at ${n(smallest.size)} entries: mean ${x(flatness.meanRatio)}, p50 ${x(flatness.p50Ratio)} (1.00x is flat); ` +
    `heap per entry held ${((largest.openHeapMB * 2 ** 20) / largest.size).toFixed(0)} B`,
);
console.log(`  run: ${seconds.toFixed(1)} s`);

console.log(
  `BENCH_JSON ${JSON.stringify({
    bench: 'ledger',
    smoke: SMOKE,
    segmentSize: SEGMENT_SIZE,
    recordsPerSecond: { noFsync: plain.sequential, fsync: fsynced.sequential },
    concurrentRecordsPerSecond: { callers: CONCURRENT.callers, noFsync: plain.concurrent, fsync: fsynced.concurrent },
    recordsPerWrite: { noFsync: plain.recordsPerWrite, fsync: fsynced.recordsPerWrite },
    ratios: {
      sequentialVsRaw: { noFsync: plain.sequential.ledger / plain.sequential.raw, fsync: fsynced.sequential.ledger / fsynced.sequential.raw },
      sequentialVsRewrite: { noFsync: plain.sequential.ledger / plain.sequential.rewrite, fsync: fsynced.sequential.ledger / fsynced.sequential.rewrite },
      concurrentVsRaw: { noFsync: plain.concurrent.ledger / plain.concurrent.raw, fsync: fsynced.concurrent.ledger / fsynced.concurrent.raw },
      concurrentVsRewrite: { noFsync: plain.concurrent.ledger / plain.concurrent.rewrite, fsync: fsynced.concurrent.ledger / fsynced.concurrent.rewrite },
    },
    costBySize: costs,
    flatness: { largest: largest.size, smallest: smallest.size, ...flatness },
    target: { sequentialNoFsyncAtLeast: 5_000, met: plain.sequential.ledger >= 5_000 },
    seconds,
  })}`,
);
