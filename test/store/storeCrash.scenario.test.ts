import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ServiceBusClient } from '@azure/service-bus';
import { afterEach, describe, expect, it } from 'vitest';
import { createOperation } from '../../src/core/operation.js';
import { startServiceBusEmulator } from '../../src/emulator/servicebus/index.js';
import { keyPairToPem } from '../../src/core/signing.js';
import { CLOUD_KEY, signed } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const script = path.join(import.meta.dirname, 'crashingStore.ts');

interface StoreProcess {
  child: ChildProcessWithoutNullStreams;
  /** The next JSON line the store prints that matches. */
  next(predicate: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

function runStore(connectionString: string, dataDir: string, freeze: boolean): StoreProcess {
  // The child generates no keys of its own: it trusts this process's cloud key, passed in its environment.
  const child = spawn(process.execPath, ['--import', 'tsx', script, connectionString, dataDir, ...(freeze ? ['--freeze-after-execute'] : [])], {
    env: { ...process.env, STORELINK_TEST_CLOUD_PUBLIC_KEY: keyPairToPem(CLOUD_KEY).publicKeyPem },
  });
  closeables.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
  const lines: Record<string, unknown>[] = [];
  const waiters: { predicate: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];
  createInterface({ input: child.stdout }).on('line', (text) => {
    const line = JSON.parse(text) as Record<string, unknown>;
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (waiter.predicate(line)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  });
  return {
    child,
    next: (predicate) => {
      const seen = lines.find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve) => waiters.push({ predicate, resolve }));
    },
  };
}

describe('store crash between the handler and the completion', () => {
  it('a store SIGKILLed after recording an order but before completing it does not apply it twice on restart', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-crash-'));
    closeables.push(() => rm(dataDir, { recursive: true, force: true }));
    const emulator = await startServiceBusEmulator({
      namespaces: [{ queues: [{ name: 'store-paris-1', lockDurationInMs: 1_000 }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }],
    });
    closeables.push(() => emulator.close());
    const client = new ServiceBusClient(emulator.connectionString(), { retryOptions: { maxRetries: 1, retryDelayInMs: 50, timeoutInMs: 3_000 } });
    closeables.push(() => client.close());
    const operation = signed(
      createOperation({
        storeId: 'paris-1',
        type: 'clickAndCollect.order',
        payload: { orderId: 'CC-9', customer: 'Grace', lines: [{ sku: 'SKU-KETTLE', quantity: 3 }] },
        latency: 'async',
        timeToLiveInMs: 60_000,
        replyTo: 'cloud-inbox',
      }),
    );
    await client.createSender('store-paris-1').sendMessages({ body: operation, messageId: operation.id });

    const doomed = runStore(emulator.connectionString(), dataDir, true);
    expect(await doomed.next((line) => line['type'] === 'executed')).toMatchObject({ operationId: operation.id, replayed: false });
    doomed.child.kill('SIGKILL');
    await once(doomed.child, 'exit');
    const inventoryFile = path.join(dataDir, 'inventory', 'inventory.json');
    const afterCrash = JSON.parse(await readFile(inventoryFile, 'utf8')) as { stock: Record<string, number> };
    expect(afterCrash.stock['SKU-KETTLE']).toBe(1);

    const restarted = runStore(emulator.connectionString(), dataDir, false);
    expect(await restarted.next((line) => line['type'] === 'executed')).toMatchObject({ operationId: operation.id, replayed: true });
    await restarted.next((line) => line['type'] === 'acknowledged' && line['operationId'] === operation.id);
    await restarted.next((line) => line['type'] === 'outbox.flushed' && line['pending'] === 0);
    const [left] = await client.createReceiver('store-paris-1').peekMessages(1);
    expect(left).toBeUndefined();
    // The reply was sent once, or twice with one id (before and after the crash): the inbox holds it once.
    const inbox = await client.createReceiver('cloud-inbox', { receiveMode: 'receiveAndDelete' }).receiveMessages(20, { maxWaitTimeInMs: 5_000 });
    expect(inbox.filter((message) => message.subject === 'reply').map((message) => message.correlationId)).toEqual([operation.id]);
    expect(inbox.filter((message) => message.subject !== 'reply').every((message) => message.subject === 'announcement')).toBe(true);
    const final = JSON.parse(await readFile(inventoryFile, 'utf8')) as { stock: Record<string, number>; tickets: unknown[] };
    expect(final.stock['SKU-KETTLE']).toBe(1);
    expect(final.tickets).toHaveLength(1);
  });
});
