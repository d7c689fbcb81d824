/**
 * Raw Service Bus throughput through the local emulator with the unmodified SDK: each worker sends a batch
 * (createMessageBatch + sendMessages), receives it in peekLock and completes every message, in a loop.
 * Run: node --import tsx bench/servicebusRaw.bench.ts [messagesPerRun]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient } from '@azure/service-bus';
import { startServiceBusEmulator } from '../src/emulator/servicebus/index.js';

const TOTAL = Number(process.argv[2] ?? 20_000);
const BATCH = 50;

async function run(concurrency: number, dataDir: string | undefined): Promise<number> {
  const names = Array.from({ length: concurrency }, (_, i) => `bench-${i}`);
  const emulator = await startServiceBusEmulator({ dataDir, namespaces: [{ queues: names.map((name) => ({ name })) }] });
  const clients = names.map(() => new ServiceBusClient(emulator.connectionString()));
  try {
    const workers = names.map((name, i) => ({ sender: clients[i]!.createSender(name), receiver: clients[i]!.createReceiver(name) }));
    // Warm up: open every link once.
    for (const { sender, receiver } of workers) {
      await sender.sendMessages({ body: 'warm-up' });
      for (const m of await receiver.receiveMessages(1, { maxWaitTimeInMs: 5000 })) await receiver.completeMessage(m);
    }
    const perWorker = Math.ceil(TOTAL / concurrency / BATCH) * BATCH;
    const started = performance.now();
    await Promise.all(
      workers.map(async ({ sender, receiver }) => {
        for (let done = 0; done < perWorker; ) {
          const batch = await sender.createMessageBatch();
          for (let j = 0; j < BATCH; j++) batch.tryAddMessage({ body: { n: done + j, text: 'order line' } });
          await sender.sendMessages(batch);
          let got = 0;
          while (got < BATCH) {
            const messages = await receiver.receiveMessages(BATCH - got, { maxWaitTimeInMs: 5000 });
            for (const m of messages) await receiver.completeMessage(m);
            got += messages.length;
          }
          done += BATCH;
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    return (perWorker * concurrency) / seconds;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await emulator.close();
  }
}

const rows: Array<{ concurrency: number; storage: string; msgPerSecond: number }> = [];
for (const storage of ['memory', 'dataDir']) {
  for (const concurrency of [1, 16]) {
    const dir = storage === 'dataDir' ? await mkdtemp(path.join(tmpdir(), 'sb-bench-')) : undefined;
    try {
      const rate = await run(concurrency, dir);
      rows.push({ concurrency, storage, msgPerSecond: Math.round(rate) });
      console.log(`batched send -> peekLock receive -> complete | ${storage.padEnd(7)} | ${String(concurrency).padStart(2)} concurrent | ${Math.round(rate)} msg/s`);
    } finally {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    }
  }
}
console.log(JSON.stringify({ bench: 'servicebusRaw', messagesPerRun: TOTAL, batch: BATCH, node: process.version, results: rows }));
