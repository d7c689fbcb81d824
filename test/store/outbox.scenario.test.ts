import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient, type ServiceBusReceivedMessage } from '@azure/service-bus';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { createOperation } from '../../src/core/operation.js';
import { MAX_STORE_MESSAGE_BYTES } from '../../src/core/storeMessage.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { openOutbox } from '../../src/store/outbox.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { createClickAndCollectHandlers } from '../../samples/store-click-and-collect/handlers.js';
import { openInventory } from '../../samples/store-click-and-collect/inventory.js';
import { signed, storeSigningOptions } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const STORE = 'lyon-2';
const QUEUE = `store-${STORE}`;
const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const KIB = 1024;

async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-outbox-'));
  closeables.push(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

async function emulators(inboxMaxMessageSizeInBytes?: number): Promise<Emulators> {
  const started = await startEmulators({
    namespaces: [
      {
        queues: [
          { name: QUEUE, lockDurationInMs: 2_000 },
          {
            name: 'cloud-inbox',
            requiresDuplicateDetection: true,
            ...(inboxMaxMessageSizeInBytes === undefined ? {} : { maxMessageSizeInBytes: inboxMaxMessageSizeInBytes }),
          },
        ],
      },
    ],
    hybridConnections: [{ name: QUEUE }],
  });
  closeables.push(() => started.close());
  return started;
}

function cloudClient(azure: Emulators): ServiceBusClient {
  const client = new ServiceBusClient(azure.serviceBusConnectionString(), { retryOptions: RETRY });
  closeables.push(() => client.close());
  return client;
}

async function startStore(azure: Emulators, dataDir: string, withRelay = false): Promise<StoreAgent> {
  const inventory = await openInventory(path.join(dataDir, 'inventory'));
  const agent = createStoreAgent({
    storeId: STORE,
    ...storeSigningOptions(STORE),
    handlers: createClickAndCollectHandlers(inventory),
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    ...(withRelay ? { relay: { connectionString: azure.relayConnectionString() } } : {}),
    dataDir,
  });
  closeables.push(() => agent.close());
  await agent.start();
  return agent;
}

interface Received {
  subject: string | undefined;
  type: string;
  body: unknown;
  correlationId: string | undefined;
}

/** Receives from the cloud inbox until `done` says enough arrived; fails when nothing more arrives for 5 s. */
async function receiveUntil(client: ServiceBusClient, done: (received: Received[]) => boolean): Promise<Received[]> {
  const receiver = client.createReceiver('cloud-inbox');
  const received: Received[] = [];
  try {
    while (!done(received)) {
      const batch: ServiceBusReceivedMessage[] = await receiver.receiveMessages(10, { maxWaitTimeInMs: 5_000 });
      if (batch.length === 0) throw new Error(`the cloud inbox went quiet after ${JSON.stringify(received.map((m) => m.type))}`);
      for (const message of batch) {
        await receiver.completeMessage(message);
        const body = message.body as { type: string; body: unknown; correlationId?: string };
        received.push({ subject: message.subject, type: body.type, body: body.body, correlationId: body.correlationId });
      }
    }
    return received;
  } finally {
    await receiver.close();
  }
}

function stockQuery(): ReturnType<typeof createOperation> {
  return signed(createOperation({ storeId: STORE, type: 'stock.query', payload: { skus: ['SKU-KETTLE'] }, latency: 'async', timeToLiveInMs: 60_000, replyTo: 'cloud-inbox' }));
}

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), cwd: tmpdir() });
  return { code, stdout, stderr };
}

describe('the store outbox never jams', () => {
  it('refuses a 300 KiB emit() with PAYLOAD_TOO_LARGE at once, and a later event and a queued operation’s reply still reach the cloud inbox', async () => {
    const azure = await emulators();
    const dataDir = await tempDir();
    const agent = await startStore(azure, dataDir);
    const huge = 'x'.repeat(300 * KIB);

    const refused = agent.emit({ type: 'sale.recorded', body: { receipt: huge } });
    await expect(refused).rejects.toMatchObject({ name: 'StorelinkError', code: 'PAYLOAD_TOO_LARGE' });
    await expect(refused).rejects.toThrow(String(MAX_STORE_MESSAGE_BYTES));

    await agent.emit({ type: 'sale.recorded', body: { ticket: 'T-9' } });
    const query = stockQuery();
    await cloudClient(azure).createSender(QUEUE).sendMessages({ body: query, messageId: query.id });

    const inbox = await receiveUntil(cloudClient(azure), (got) => got.some((m) => m.subject === 'reply'));
    expect(inbox.filter((m) => m.subject === 'event').map((m) => m.body)).toEqual([{ ticket: 'T-9' }]);
    expect(inbox.find((m) => m.subject === 'reply')).toMatchObject({ correlationId: query.id, body: { outcome: 'done' } });
  });

  it('parks an event the cloud inbox cannot take, delivers the entries behind it, and lists the parked one in `storelink outbox list`', async () => {
    // The inbox takes 64 KiB: a 100 KiB event is within a store message's limit but can never be sent there.
    const azure = await emulators(64 * KIB);
    const dataDir = await tempDir();
    const agent = await startStore(azure, dataDir);
    const parked = firstValueFrom(agent.events$.pipe(filter((event) => event.type === 'outbox.parked')));
    await agent.emit({ type: 'receipt.printed', body: { receipt: 'r'.repeat(100 * KIB) } });
    await agent.emit({ type: 'sale.recorded', body: { ticket: 'T-10' } });
    const query = stockQuery();
    await cloudClient(azure).createSender(QUEUE).sendMessages({ body: query, messageId: query.id });

    const inbox = await receiveUntil(cloudClient(azure), (got) => got.some((m) => m.subject === 'reply') && got.some((m) => m.type === 'sale.recorded'));
    expect(inbox.map((m) => m.type)).not.toContain('receipt.printed');
    expect(inbox.find((m) => m.subject === 'reply')).toMatchObject({ correlationId: query.id });
    expect(await parked).toMatchObject({ type: 'outbox.parked', kind: 'event', entryType: 'receipt.printed', code: 'PAYLOAD_TOO_LARGE' });

    // While the agent holds the data dir the CLI refuses to touch its files.
    const busy = await cli('outbox', 'list', '--data-dir', dataDir);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain('in use');

    await agent.close();
    const listed = await cli('outbox', 'list', '--data-dir', dataDir, '--json');
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    const entries = (JSON.parse(listed.stdout) as { entries: { state: string; type: string; code?: string; size: number }[] }).entries;
    expect(entries).toEqual([expect.objectContaining({ state: 'parked', kind: 'event', type: 'receipt.printed', code: 'PAYLOAD_TOO_LARGE' })]);
    expect(entries[0]!.size).toBeGreaterThan(100 * KIB);
  });

  it('delivers a relay-down announcement made while an older entry is stuck at the head of the outbox', async () => {
    const azure = await emulators();
    const dataDir = await tempDir();
    // An entry written before emit() checked sizes: larger than the inbox takes, at the head of the outbox.
    const seeded = await openOutbox({ directory: path.join(dataDir, 'outbox') });
    await seeded.append({
      id: '3d1f2a60-5b7c-4e8d-9f01-2a3b4c5d6e7f',
      kind: 'event',
      type: 'receipt.printed',
      storeId: STORE,
      body: { receipt: 'r'.repeat(300 * KIB) },
      createdAt: new Date().toISOString(),
    });
    await seeded.close();

    const agent = await startStore(azure, dataDir, true);
    await firstValueFrom(agent.state$.pipe(filter((state) => state.relay === 'listening')));
    await azure.relay.close();

    const inbox = await receiveUntil(cloudClient(azure), (got) => got.some((m) => m.subject === 'announcement' && (m.body as { relay: string }).relay === 'down'));
    expect(inbox.map((m) => m.type)).not.toContain('receipt.printed');
  });
});
