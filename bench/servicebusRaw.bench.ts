/**
 * Raw Service Bus throughput through the local emulator with the unmodified SDK: each worker sends a batch of 50
 * (createMessageBatch + sendMessages), receives it in peekLock and completes every message, in a loop, on its own
 * connection and queue. Reported for 1 and 16 concurrent workers, with the emulator in its own process (as a real
 * deployment runs it) and in the benchmark's process, in memory and with a dataDir.
 *
 *   node --import tsx bench/servicebusRaw.bench.ts [messagesPerRun]
 *   (internal) node --import tsx bench/servicebusRaw.bench.ts --serve <queues> [dataDir]
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ServiceBusClient } from '@azure/service-bus';
import { disableNagleOnAmqpSockets } from '../src/channels/servicebus/amqpSockets.js';
import { startServiceBusEmulator } from '../src/emulator/servicebus/index.js';

// The raw SDK as a careful engineer uses it over AMQP: Nagle off on its sockets, as storelink's own clients have it
// (src/channels/servicebus/amqpSockets.ts; without it a send after a completion waits ~43 ms). Before any client exists.
disableNagleOnAmqpSockets();

const BATCH = 50;
const queueNames = (count: number): string[] => Array.from({ length: count }, (_, i) => `bench-${i}`);

if (process.argv[2] === '--serve') {
  const emulator = await startServiceBusEmulator({
    dataDir: process.argv[4],
    namespaces: [{ queues: queueNames(Number(process.argv[3])).map((name) => ({ name })) }],
  });
  process.stdout.write(`${JSON.stringify({ port: emulator.port })}\n`);
  process.on('SIGTERM', () => void emulator.close().then(() => process.exit(0)));
} else {
  await main();
}

interface Target {
  connectionString: string;
  stop(): Promise<void>;
}

async function inProcess(queues: number, dataDir: string | undefined): Promise<Target> {
  const emulator = await startServiceBusEmulator({ dataDir, namespaces: [{ queues: queueNames(queues).map((name) => ({ name })) }] });
  return { connectionString: emulator.connectionString(), stop: () => emulator.close() };
}

async function childProcess(queues: number, dataDir: string | undefined): Promise<Target> {
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, ['--import', 'tsx', self, '--serve', String(queues), ...(dataDir === undefined ? [] : [dataDir])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`emulator process exited with ${code}`)));
    createInterface({ input: child.stdout }).once('line', resolve);
  });
  const { port } = JSON.parse(line) as { port: number };
  return {
    connectionString: `Endpoint=sb://127.0.0.1:${port};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true`,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function run(target: Target, concurrency: number, total: number): Promise<number> {
  const clients = queueNames(concurrency).map(() => new ServiceBusClient(target.connectionString));
  try {
    const workers = queueNames(concurrency).map((name, i) => ({ sender: clients[i]!.createSender(name), receiver: clients[i]!.createReceiver(name) }));
    for (const { sender, receiver } of workers) {
      await sender.sendMessages({ body: 'warm-up' });
      for (const m of await receiver.receiveMessages(1, { maxWaitTimeInMs: 5000 })) await receiver.completeMessage(m);
    }
    const perWorker = Math.ceil(total / concurrency / BATCH) * BATCH;
    const started = performance.now();
    await Promise.all(
      workers.map(async ({ sender, receiver }) => {
        for (let done = 0; done < perWorker; done += BATCH) {
          const batch = await sender.createMessageBatch();
          for (let j = 0; j < BATCH; j++) batch.tryAddMessage({ body: { n: done + j, text: 'order line' } });
          await sender.sendMessages(batch);
          for (let got = 0; got < BATCH; ) {
            const messages = await receiver.receiveMessages(BATCH - got, { maxWaitTimeInMs: 5000 });
            for (const m of messages) await receiver.completeMessage(m);
            got += messages.length;
          }
        }
      }),
    );
    return (perWorker * concurrency) / ((performance.now() - started) / 1000);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

async function main(): Promise<void> {
  const total = Number(process.argv[2] ?? 20_000);
  const results: Array<{ emulator: string; storage: string; concurrency: number; msgPerSecond: number }> = [];
  for (const where of ['own process', 'same process'] as const) {
    for (const storage of ['memory', 'dataDir'] as const) {
      for (const concurrency of [1, 16]) {
        const dir = storage === 'dataDir' ? await mkdtemp(path.join(tmpdir(), 'sb-bench-')) : undefined;
        const target = where === 'own process' ? await childProcess(concurrency, dir) : await inProcess(concurrency, dir);
        try {
          const rate = Math.round(await run(target, concurrency, total));
          results.push({ emulator: where, storage, concurrency, msgPerSecond: rate });
          console.log(`send batch(50) -> peekLock receive -> complete | emulator in ${where.padEnd(12)} | ${storage.padEnd(7)} | ${String(concurrency).padStart(2)} concurrent | ${rate} msg/s`);
        } finally {
          await target.stop();
          if (dir !== undefined) await rm(dir, { recursive: true, force: true });
        }
      }
    }
  }
  console.log(JSON.stringify({ bench: 'servicebusRaw', messagesPerRun: total, batch: BATCH, node: process.version, results }));
}
