/**
 * storelink's channels against the raw parts they wrap, through the same local emulators in the same run:
 * - relay: a real-time operation through storelink's sender and listener versus an undici Pool (keep-alive) calling a
 *   bare hyco-https listener (latency p50/p99, sequential, and throughput with 32 in flight); global fetch would
 *   make the baseline slower than the best hand-written client;
 * - queue: storelink's queue sender and consumer versus the raw @azure/service-bus sender and subscribe(), peekLock +
 *   complete, 1 message in flight.
 *
 *   node --import tsx bench/channels.bench.ts [requests]
 */
import hycoHttps from 'hyco-https';
import { ServiceBusClient } from '@azure/service-bus';
import { Pool } from 'undici';
import { createRelayListener } from '../src/channels/relay/relayListener.js';
import { createRelaySender } from '../src/channels/relay/relaySender.js';
import { createServiceBusConnection } from '../src/channels/servicebus/serviceBusConnection.js';
import { createOperation } from '../src/core/operation.js';
import { createSasToken } from '../src/core/sas.js';
import { startEmulators } from '../src/emulator/startEmulators.js';
import { percentile } from './stats.js';
import { disableNagleOnAmqpSockets } from '../src/channels/servicebus/amqpSockets.js';

// The raw SDK as a careful engineer uses it over AMQP: Nagle off on its sockets, as storelink's own clients have it
// (src/channels/servicebus/amqpSockets.ts; without it a send after a completion waits ~43 ms). Before any client exists.
disableNagleOnAmqpSockets();

const REQUESTS = Number(process.argv[2] ?? 2_000);
const MESSAGES = 2_000;

async function sequential(call: () => Promise<unknown>, count: number): Promise<{ p50: number; p99: number }> {
  for (let n = 0; n < 100; n += 1) await call();
  const times: number[] = [];
  for (let n = 0; n < count; n += 1) {
    const started = performance.now();
    await call();
    times.push(performance.now() - started);
  }
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

async function concurrent(call: () => Promise<unknown>, count: number, inFlight: number): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next++ < count) await call();
    }),
  );
  return (count / (performance.now() - started)) * 1000;
}

const azure = await startEmulators({
  namespaces: [{ queues: [{ name: 'raw-queue' }, { name: 'store-bench-1' }] }],
  hybridConnections: [{ name: 'raw-hc' }, { name: 'store-bench-1' }],
});
const rows: string[] = [];
try {
  // Relay baseline: a bare hyco-https listener and an undici Pool.
  const port = azure.relay.port;
  const rawUri = `ws://127.0.0.1:${port}/$hc/raw-hc?sb-hc-action=listen`;
  const raw = hycoHttps.createRelayedServer({ server: rawUri, token: () => hycoHttps.createRelayToken(rawUri, 'RootManageSharedAccessKey', 'SAS_KEY_VALUE') }, (request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ result: { ok: true, bytes: Buffer.concat(chunks).length } }));
    });
  });
  await new Promise<void>((resolve) => {
    raw.once('listening', () => resolve());
    raw.listen();
  });
  const token = createSasToken({ resource: `http://127.0.0.1:${port}/raw-hc`, keyName: 'RootManageSharedAccessKey', key: 'SAS_KEY_VALUE' });
  const operation = createOperation({ storeId: 'bench-1', type: 'stock.query', payload: { skus: ['SKU-1', 'SKU-2'] }, latency: 'realtime', timeToLiveInMs: 600_000 });
  const body = JSON.stringify(operation);
  const rawPool = new Pool(`http://127.0.0.1:${port}`);
  const rawCall = async () => {
    const response = await rawPool.request({
      path: '/raw-hc/operations/stock.query',
      method: 'POST',
      headers: { ServiceBusAuthorization: token, 'content-type': 'application/json' },
      body,
    });
    await response.body.text();
  };

  const listener = createRelayListener({
    connectionString: azure.relayConnectionString(),
    hybridConnection: 'store-bench-1',
    expose: ['stock.query'],
    execute: (received) => Promise.resolve({ ok: true, bytes: JSON.stringify(received).length }),
  });
  listener.start();
  await new Promise<void>((resolve) => listener.state$.subscribe((state) => state.status === 'listening' && resolve()));
  const sender = createRelaySender({ connectionString: azure.relayConnectionString(), hybridConnection: 'store-bench-1' });
  const storelinkCall = () => sender.send(operation, { timeoutInMs: 10_000 });

  const rawLatency = await sequential(rawCall, REQUESTS);
  const ourLatency = await sequential(storelinkCall, REQUESTS);
  const rawRate = await concurrent(rawCall, REQUESTS * 2, 32);
  const ourRate = await concurrent(storelinkCall, REQUESTS * 2, 32);
  rows.push(`| relay, sequential p50 | ${rawLatency.p50.toFixed(3)} ms | ${ourLatency.p50.toFixed(3)} ms | ${(ourLatency.p50 / rawLatency.p50).toFixed(2)}× |`);
  rows.push(`| relay, sequential p99 | ${rawLatency.p99.toFixed(3)} ms | ${ourLatency.p99.toFixed(3)} ms | ${(ourLatency.p99 / rawLatency.p99).toFixed(2)}× |`);
  rows.push(`| relay, 32 in flight | ${rawRate.toFixed(0)} req/s | ${ourRate.toFixed(0)} req/s | ${(ourRate / rawRate).toFixed(2)}× |`);
  await sender.close();
  await rawPool.close();
  await listener.close();
  raw.close();

  // Queue baseline: the raw SDK, one message in flight end to end.
  const retryOptions = { maxRetries: 2, retryDelayInMs: 100, timeoutInMs: 10_000 };
  const client = new ServiceBusClient(azure.serviceBusConnectionString(), { retryOptions });
  const rawSender = client.createSender('raw-queue');
  const rawReceiver = client.createReceiver('raw-queue');
  let rawDone: () => void = () => undefined;
  const rawSubscription = rawReceiver.subscribe(
    {
      processMessage: async (message) => {
        await rawReceiver.completeMessage(message);
        rawDone();
      },
      processError: () => Promise.resolve(),
    },
    { autoCompleteMessages: false, maxConcurrentCalls: 1 },
  );
  const rawQueueRate = await (async () => {
    const started = performance.now();
    for (let n = 0; n < MESSAGES; n += 1) {
      const done = new Promise<void>((resolve) => (rawDone = resolve));
      await rawSender.sendMessages({ messageId: `raw-${n}`, body: operation });
      await done;
    }
    return (MESSAGES / (performance.now() - started)) * 1000;
  })();
  await rawSubscription.close();
  await client.close();

  const connection = createServiceBusConnection({ connectionString: azure.serviceBusConnectionString(), retry: retryOptions });
  const queueSender = connection.createSender('store-bench-1');
  let ourDone: () => void = () => undefined;
  const consumer = connection.createConsumer({
    queue: 'store-bench-1',
    handler: async (delivery) => {
      await delivery.complete();
      ourDone();
    },
  });
  consumer.start();
  const ourQueueRate = await (async () => {
    const started = performance.now();
    for (let n = 0; n < MESSAGES; n += 1) {
      const done = new Promise<void>((resolve) => (ourDone = resolve));
      await queueSender.send({ messageId: `ours-${n}`, body: operation });
      await done;
    }
    return (MESSAGES / (performance.now() - started)) * 1000;
  })();
  await connection.close();
  rows.push(`| queue, send → peekLock → complete, 1 in flight | ${rawQueueRate.toFixed(0)} msg/s | ${ourQueueRate.toFixed(0)} msg/s | ${(ourQueueRate / rawQueueRate).toFixed(2)}× |`);
} finally {
  await azure.close();
}
console.log('| path | raw parts | storelink | storelink / raw |');
console.log('| --- | --- | --- | --- |');
for (const row of rows) console.log(row);
