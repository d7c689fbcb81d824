/**
 * Executor + ledger throughput: operations per second through the store's executor (signature and envelope checks, ledger look-up,
 * handler, durable ledger record), sequentially and with 100 operations in flight, when the ledger already holds
 * 1k, 10k and 100k entries. Baseline, measured in the same run at the same sizes: the ledger's record() alone, so the
 * ratio shows what the executor adds on top of the durable write.
 *
 *   node --import tsx bench/executor.bench.ts
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { createOperation } from '../src/core/operation.js';
import { Signer, Verifier, generateSigningKeyPair, operationSignedFields } from '../src/core/signing.js';
import { Executor, defineHandler } from '../src/store/executor.js';
import { openLedger, type Ledger } from '../src/store/ledger.js';

const SIZES = [1_000, 10_000, 100_000];
const MEASURED = 2_000;
const signal = new AbortController().signal;
const expiresAt = new Date(Date.now() + 7 * 86_400_000).toISOString();

async function filledLedger(size: number): Promise<{ ledger: Ledger; directory: string }> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-bench-exec-'));
  const ledger = await openLedger({ directory });
  const batch: Promise<unknown>[] = [];
  for (let n = 0; n < size; n += 1) {
    batch.push(
      ledger.record({ id: randomUUID(), storeId: 'paris-1', type: 'price.update', outcome: 'done', result: { n }, channel: 'queue', executedAt: new Date().toISOString(), expiresAt }),
    );
    if (batch.length === 1_000) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
  return { ledger, directory };
}

// Signed as the cloud signs them, so the executor's signature check is part of what is measured.
const cloudKey = generateSigningKeyPair();
const cloudSigner = new Signer({ keyId: 'bench', privateKey: cloudKey.privateKey }, 'operation', 'bench');
const cloudKeys = new Verifier({ bench: cloudKey.publicKey }, 'operation', 'bench');

function operations(count: number) {
  return Array.from({ length: count }, (_, n) => {
    const operation = createOperation({ storeId: 'paris-1', type: 'price.update', payload: { sku: `SKU-${n % 50}`, price: n }, latency: 'async', timeToLiveInMs: 3_600_000 });
    return { ...operation, signature: cloudSigner.sign(operationSignedFields(operation)) };
  });
}

async function timed(work: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

async function run(work: ((index: number) => Promise<unknown>), count: number, inFlight: number): Promise<number> {
  return timed(async () => {
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < count) await work(next++);
      }),
    );
  });
}

const rows: string[] = [];
for (const size of SIZES) {
  for (const inFlight of [1, 100]) {
    const forExecutor = await filledLedger(size);
    const executor = new Executor({
      storeId: 'paris-1',
      ledger: forExecutor.ledger,
      cloudKeys,
      outbox: { append: () => Promise.resolve() },
      handlers: { 'price.update': defineHandler(z.strictObject({ sku: z.string(), price: z.number() }), ({ sku, price }) => ({ sku, price })) },
    });
    const ops = operations(MEASURED);
    const executorMs = await run((index) => executor.execute(ops[index]!, 'queue', signal), MEASURED, inFlight);
    await forExecutor.ledger.close();
    await rm(forExecutor.directory, { recursive: true, force: true });

    const forBaseline = await filledLedger(size);
    const baselineMs = await run(
      (index) =>
        forBaseline.ledger.record({ id: randomUUID(), storeId: 'paris-1', type: 'price.update', outcome: 'done', result: { index }, channel: 'queue', executedAt: new Date().toISOString(), expiresAt }),
      MEASURED,
      inFlight,
    );
    await forBaseline.ledger.close();
    await rm(forBaseline.directory, { recursive: true, force: true });

    const executorRate = (MEASURED / executorMs) * 1000;
    const baselineRate = (MEASURED / baselineMs) * 1000;
    rows.push(
      `| ${size.toLocaleString('en')} | ${inFlight} | ${executorRate.toFixed(0)} | ${baselineRate.toFixed(0)} | ${(executorRate / baselineRate).toFixed(2)} |`,
    );
  }
}
console.log('| ledger entries | in flight | executor + ledger (ops/s) | ledger record() alone (ops/s) | ratio |');
console.log('| --- | --- | --- | --- | --- |');
for (const row of rows) console.log(row);
