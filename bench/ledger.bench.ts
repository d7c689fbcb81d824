/**
 * Ledger write cost: throughput of record() sequentially and with 100 concurrent callers, and the cost of one record
 * when the ledger already holds 1k, 10k and 100k entries, against the baseline it replaces — one lowdb JSON file
 * whose write() rewrites every record — at the same sizes, in the same run.
 *
 *   node --import tsx bench/ledger.bench.ts
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Low } from 'lowdb';
import { JSONFile } from 'lowdb/node';
import { openLedger, type Ledger, type LedgerEntry } from '../src/store/ledger.js';
import { mean, median } from './stats.js';

const SIZES = [1_000, 10_000, 100_000];
/** One full segment cycle (the default segment size), so every fill level of the open segment is measured once. */
const MEASURED_RECORDS = 1_000;
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

async function withDirectory<T>(run: (directory: string) => Promise<T>): Promise<T> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-ledger-bench-'));
  try {
    return await run(directory);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

async function prefill(ledger: Ledger, count: number): Promise<void> {
  for (let done = 0; done < count; done += 1_000) {
    await Promise.all(Array.from({ length: Math.min(1_000, count - done) }, (_, i) => ledger.record(entry(done + i))));
  }
}


async function sequentialThroughput(total: number): Promise<{ opsPerSecond: number; writes: number }> {
  return withDirectory(async (directory) => {
    const ledger = await openLedger({ directory });
    const started = performance.now();
    for (let i = 0; i < total; i++) await ledger.record(entry(i));
    const seconds = (performance.now() - started) / 1000;
    const { writes } = ledger;
    await ledger.close();
    return { opsPerSecond: total / seconds, writes };
  });
}

async function concurrentThroughput(callers: number, total: number): Promise<{ opsPerSecond: number; writes: number }> {
  return withDirectory(async (directory) => {
    const ledger = await openLedger({ directory });
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: callers }, async () => {
        while (next < total) await ledger.record(entry(next++));
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const { writes } = ledger;
    await ledger.close();
    return { opsPerSecond: total / seconds, writes };
  });
}

interface SizedCost {
  size: number;
  meanMs: number;
  medianMs: number;
  maxMs: number;
  openMs: number;
}

async function ledgerCostAt(size: number): Promise<SizedCost> {
  return withDirectory(async (directory) => {
    const filling = await openLedger({ directory });
    await prefill(filling, size);
    await filling.close();
    const opening = performance.now();
    const ledger = await openLedger({ directory });
    const openMs = performance.now() - opening;
    const times: number[] = [];
    for (let i = 0; i < MEASURED_RECORDS; i++) {
      const started = performance.now();
      await ledger.record(entry(size + i));
      times.push(performance.now() - started);
    }
    await ledger.close();
    return { size, meanMs: mean(times), medianMs: median(times), maxMs: Math.max(...times), openMs };
  });
}

async function singleFileCostAt(size: number): Promise<SizedCost> {
  return withDirectory(async (directory) => {
    const database = new Low<{ records: LedgerEntry[] }>(new JSONFile(path.join(directory, 'ledger.json')), { records: [] });
    for (let i = 0; i < size; i++) database.data.records.push(entry(i));
    await database.write();
    // Enough writes for a stable figure without spending minutes at 100k (each rewrites the whole file).
    const rounds = Math.max(10, Math.min(200, Math.round(200_000 / size)));
    const times: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const started = performance.now();
      database.data.records.push(entry(size + i));
      await database.write();
      times.push(performance.now() - started);
    }
    return { size, meanMs: mean(times), medianMs: median(times), maxMs: Math.max(...times), openMs: 0 };
  });
}

const format = (ms: number): string => (ms < 10 ? ms.toFixed(3) : ms.toFixed(1));

const sequential = await sequentialThroughput(2_000);
const concurrent = await concurrentThroughput(100, 20_000);
console.log('record() throughput (default segment size 1,000)');
console.log(`  sequential:     ${Math.round(sequential.opsPerSecond)} ops/s (${(2_000 / sequential.writes).toFixed(1)} records per disk write)`);
console.log(`  100 concurrent: ${Math.round(concurrent.opsPerSecond)} ops/s (${(20_000 / concurrent.writes).toFixed(1)} records per disk write)`);
console.log(`  concurrent / sequential: ${(concurrent.opsPerSecond / sequential.opsPerSecond).toFixed(1)}x`);
console.log('');
console.log(`cost of one record (sequential, ${MEASURED_RECORDS} measured) vs one single-file lowdb write(), by history size`);
console.log('  entries   ledger mean / p50 / max ms   single file mean / p50 / max ms   single / ledger   ledger open ms');
const ledgerCosts: SizedCost[] = [];
for (const size of SIZES) {
  const ledger = await ledgerCostAt(size);
  const single = await singleFileCostAt(size);
  ledgerCosts.push(ledger);
  console.log(
    `  ${String(size).padStart(7)}   ${`${format(ledger.meanMs)} / ${format(ledger.medianMs)} / ${format(ledger.maxMs)}`.padEnd(29)}` +
      `${`${format(single.meanMs)} / ${format(single.medianMs)} / ${format(single.maxMs)}`.padEnd(34)}` +
      `${(single.meanMs / ledger.meanMs).toFixed(1).padStart(8)}x   ${format(ledger.openMs).padStart(12)}`,
  );
}
const largest = ledgerCosts.at(-1)!;
const smallest = ledgerCosts[0]!;
console.log(
  `  ledger record cost at ${largest.size} / at ${smallest.size} entries: mean ${(largest.meanMs / smallest.meanMs).toFixed(2)}x, ` +
    `p50 ${(largest.medianMs / smallest.medianMs).toFixed(2)}x (1.00x is perfectly flat)`,
);
