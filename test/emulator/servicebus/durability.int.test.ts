import { spawn, type ChildProcess } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ServiceBusReceivedMessage, ServiceBusReceiver } from '@azure/service-bus';
import { describe, expect, it } from 'vitest';
import { client, emulator, onCleanup, tempDir } from './harness.js';

async function drain(receiver: ServiceBusReceiver, expected: number, maxWaitTimeInMs = 2000): Promise<ServiceBusReceivedMessage[]> {
  const received: ServiceBusReceivedMessage[] = [];
  while (received.length < expected) {
    const batch = await receiver.receiveMessages(Math.min(500, Math.max(1, expected - received.length)), { maxWaitTimeInMs });
    if (batch.length === 0) return received;
    received.push(...batch);
  }
  return received;
}

const CHILD = fileURLToPath(new URL('./emulatorProcess.ts', import.meta.url));

async function startChild(dataDir: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, 'durable'], { stdio: ['ignore', 'pipe', 'inherit'] });
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  });
  const lines = createInterface({ input: child.stdout });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`emulator process exited early with ${code}`)));
    lines.once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
  });
  return { child, port };
}

const connectionString = (port: number): string =>
  `Endpoint=sb://127.0.0.1:${port};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true`;

describe('service bus emulator: durability', () => {
  it('keeps accepted messages, their state and session state across a graceful restart', async () => {
    const dataDir = await tempDir();
    const namespaces = [{ queues: [{ name: 'q1', maxDeliveryCount: 5 }, { name: 'qs', requiresSession: true }, { name: 'dd', requiresDuplicateDetection: true }] }];
    const first = await emulator({ dataDir, namespaces });
    const c1 = client(first.connectionString());
    await c1.createSender('q1').sendMessages(['keep', 'abandon', 'defer', 'dead', 'done'].map((body) => ({ body, messageId: body })));
    await c1.createSender('qs').sendMessages({ body: 's', sessionId: 'S' });
    await c1.createSender('dd').sendMessages({ body: 'once', messageId: 'dup-1' });
    const receiver = c1.createReceiver('q1');
    const got = await drain(receiver, 5);
    const byBody = new Map(got.map((m) => [m.body as string, m]));
    await receiver.abandonMessage(byBody.get('abandon')!, { note: 'x' });
    await receiver.deferMessage(byBody.get('defer')!);
    await receiver.deadLetterMessage(byBody.get('dead')!, { deadLetterReason: 'r', deadLetterErrorDescription: 'd' });
    await receiver.completeMessage(byBody.get('done')!);
    const session = await c1.acceptSession('qs', 'S');
    await session.setSessionState('remember me');
    await c1.close();
    await first.close();

    const second = await emulator({ dataDir, namespaces });
    expect(second.messageCounts()).toMatchObject({ q1: 3, 'q1/$DeadLetterQueue': 1, qs: 1 });
    const c2 = client(second.connectionString());
    // Duplicate detection remembers what it accepted before the restart.
    await c2.createSender('dd').sendMessages({ body: 'twice', messageId: 'dup-1' });
    expect(second.messageCounts().dd).toBe(1);
    const r2 = c2.createReceiver('q1');
    const again = await drain(r2, 2, 1000);
    // 'keep' was locked when the emulator stopped: locks do not survive, the message does.
    expect(again.map((m): unknown[] => [m.body, m.deliveryCount, m.applicationProperties])).toEqual([
      ['keep', 0, undefined],
      ['abandon', 1, { note: 'x' }],
    ]);
    const [deferred] = await r2.receiveDeferredMessages([byBody.get('defer')!.sequenceNumber!]);
    expect(deferred!.body).toBe('defer');
    const [dead] = await drain(c2.createReceiver('q1', { subQueueType: 'deadLetter' }), 1, 1000);
    expect(dead!.deadLetterReason).toBe('r');
    expect(await (await c2.acceptSession('qs', 'S')).getSessionState()).toBe('remember me');
    // Sequence numbers continue after a restart.
    await c2.createSender('q1').sendMessages({ body: 'new' });
    const peeked = await r2.peekMessages(10);
    expect(Number(peeked[peeked.length - 1]!.sequenceNumber)).toBe(6);
  });

  it('keeps subscription rules changed through the SDK across restarts (journal and snapshot)', async () => {
    const dataDir = await tempDir();
    const namespaces = [{ topics: [{ name: 't1', subscriptions: [{ name: 's1' }] }] }];
    const first = await emulator({ dataDir, namespaces });
    const c1 = client(first.connectionString());
    const rules = c1.createRuleManager('t1', 's1');
    await rules.deleteRule('$Default');
    await rules.createRule('gold', { sqlExpression: "tier = 'gold'" });
    await c1.close();
    await first.close();
    // Restart twice: the second start recovers from the snapshot written by a compaction on the first.
    const second = await emulator({ dataDir, namespaces, compactJournalAfterBytes: 1 });
    const c2 = client(second.connectionString());
    await c2.createSender('t1').sendMessages([
      { body: 'lead', applicationProperties: { tier: 'silver' } },
      { body: 'gold', applicationProperties: { tier: 'gold' } },
    ]);
    expect(second.messageCounts()['t1/Subscriptions/s1']).toBe(1);
    await c2.close();
    await second.close();
    expect((await readdir(dataDir)).some((name) => /^snapshot-[1-9]\d*\.json$/.test(name))).toBe(true);
    const third = await emulator({ dataDir, namespaces });
    const c3 = client(third.connectionString());
    await c3.createSender('t1').sendMessages({ body: 'copper', applicationProperties: { tier: 'copper' } });
    expect(third.messageCounts()['t1/Subscriptions/s1']).toBe(1);
    const names: string[] = [];
    for await (const rule of c3.createRuleManager('t1', 's1').listRules()) names.push(rule.name);
    expect(names).toEqual(['gold']);
  });

  it('compacts the journal into a snapshot and recovers from it', async () => {
    const dataDir = await tempDir();
    const namespaces = [{ queues: [{ name: 'q1' }] }];
    const first = await emulator({ dataDir, namespaces, compactJournalAfterBytes: 8 * 1024 });
    const c1 = client(first.connectionString());
    const sender = c1.createSender('q1');
    for (let i = 0; i < 10; i++) await sender.sendMessages(Array.from({ length: 20 }, (_, j) => ({ body: i * 20 + j })));
    const receiver = c1.createReceiver('q1', { receiveMode: 'receiveAndDelete' });
    const removed = await drain(receiver, 150, 500);
    expect(removed.length).toBeGreaterThanOrEqual(150);
    await c1.close();
    await first.close();
    const files = await readdir(dataDir);
    expect(files.some((name) => /^snapshot-[1-9]\d*\.json$/.test(name))).toBe(true);
    expect(files).not.toContain('journal-0.log');

    const second = await emulator({ dataDir, namespaces });
    const left = await drain(client(second.connectionString()).createReceiver('q1', { receiveMode: 'receiveAndDelete' }), 200, 1000);
    expect(left.length + removed.length).toBe(200);
    expect(new Set([...removed, ...left].map((m) => m.body as number)).size).toBe(200);
  });

  it('loses nothing acknowledged when the emulator process is SIGKILLed: 1,000 messages received exactly once', { timeout: 60_000 }, async () => {
    const dataDir = await tempDir();
    const first = await startChild(dataDir);
    const c1 = client(connectionString(first.port));
    const sender = c1.createSender('durable');
    for (let i = 0; i < 1000; i += 100) {
      await sender.sendMessages(Array.from({ length: 100 }, (_, j) => ({ body: i + j, messageId: `m-${i + j}` })));
    }
    const exited = new Promise((resolve) => first.child.once('exit', resolve));
    first.child.kill('SIGKILL');
    await exited;
    await c1.close();

    const second = await startChild(dataDir);
    const receiver = client(connectionString(second.port)).createReceiver('durable', { receiveMode: 'receiveAndDelete' });
    const received = await drain(receiver, 1000, 1500);
    const bodies = received.map((m) => m.body as number).sort((a, b) => a - b);
    expect(bodies).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  it('a SIGKILL in the middle of concurrent sends keeps every acknowledged message, once', { timeout: 60_000 }, async () => {
    const dataDir = await tempDir();
    const first = await startChild(dataDir);
    const c1 = client(connectionString(first.port), { retryOptions: { maxRetries: 0, retryDelayInMs: 50, timeoutInMs: 3000 } });
    const acknowledged = new Set<number>();
    let killed = false;
    const exited = new Promise((resolve) => first.child.once('exit', resolve));
    await Promise.all(
      Array.from({ length: 4 }, async (_, worker) => {
        const sender = c1.createSender('durable');
        for (let batch = 0; !killed; batch++) {
          const bodies = Array.from({ length: 10 }, (_, k) => worker * 1_000_000 + batch * 10 + k);
          try {
            await sender.sendMessages(bodies.map((body) => ({ body })));
          } catch {
            return;
          }
          for (const body of bodies) acknowledged.add(body);
          if (acknowledged.size >= 400 && !killed) {
            killed = true;
            first.child.kill('SIGKILL');
          }
        }
      }),
    );
    await exited;
    await c1.close();

    const second = await startChild(dataDir);
    const receiver = client(connectionString(second.port)).createReceiver('durable', { receiveMode: 'receiveAndDelete' });
    const received = (await drain(receiver, 100_000, 1500)).map((m) => m.body as number);
    expect(new Set(received).size).toBe(received.length);
    const missing = [...acknowledged].filter((body) => !received.includes(body));
    expect(missing).toEqual([]);
    expect(received.length).toBeGreaterThanOrEqual(400);
  });
});
