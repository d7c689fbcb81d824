/**
 * Three `storelink cloud` processes on one namespace (the Service Bus emulator, the inbox a topic), twenty stores,
 * operations published round-robin through the three HTTP APIs with awaitReplyInMs; one instance SIGKILLed mid-run
 * and restarted with the same instance id. Reconciled against what the stores executed.
 *
 * Waiting for i16-db: "every operation's status is answered by every instance" (GET /operations/:id) and the killed
 * instance's outcomes as database records are not asserted here; this checks replies, executions and the restart.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { runCli } from '../../src/cli/program.js';
import { inboxSubscriptions } from '../../src/cloud/inboxTopology.js';
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { defineHandler } from '../../src/store/executor.js';
import { createStoreAgent } from '../../src/store/storeAgent.js';
import { firstLine, startCliProcess } from '../support/cliProcess.js';
import { storeSigningOptions, withSigningKeys } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const INSTANCES = ['cloud-a', 'cloud-b', 'cloud-c'];
const STORE_IDS = Array.from({ length: 20 }, (_, index) => `store-${String(index + 1).padStart(2, '0')}`);
const OPERATIONS = 2_000;
const IN_FLIGHT = 48;
const RETRY = { maxRetries: 2, retryDelayInMs: 50, maxRetryDelayInMs: 500, timeoutInMs: 5_000 };

async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-multi-scenario-'));
  closeables.push(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

interface Cloud {
  child: ChildProcessWithoutNullStreams;
  url: string;
  kill: () => Promise<void>;
}

describe('three cloud instances, twenty stores', () => {
  it('every reply reaches its caller through whichever instance it asked, one instance killed and restarted, nothing executed twice', async () => {
    const azure = await startEmulators({
      namespaces: [
        {
          queues: STORE_IDS.map((storeId) => ({ name: `store-${storeId}`, lockDurationInMs: 5_000 })),
          topics: [
            {
              name: 'cloud-inbox',
              requiresDuplicateDetection: true,
              subscriptions: inboxSubscriptions(INSTANCES).map((subscription) => ({
                name: subscription.name,
                requiresSession: subscription.requiresSession,
                lockDurationInMs: 5_000,
                rules: [
                  subscription.sqlFilter === undefined
                    ? { name: 'storelink', correlationFilter: { applicationProperties: subscription.propertiesFilter ?? {} } }
                    : { name: 'storelink', sqlFilter: subscription.sqlFilter },
                ],
              })),
            },
          ],
        },
      ],
    });
    closeables.push(() => azure.close());

    const executions = new Map<string, number>();
    for (const storeId of STORE_IDS) {
      const agent = createStoreAgent({
        storeId,
        ...storeSigningOptions(storeId),
        handlers: {
          'note.add': defineHandler(z.object({ n: z.number() }), (payload, { operation }) => {
            executions.set(operation.id, (executions.get(operation.id) ?? 0) + 1);
            return { n: payload.n };
          }),
        },
        serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY, concurrency: 4 },
        dataDir: await tempDir(),
      });
      closeables.push(() => agent.close());
      await agent.start();
    }

    const directory = await tempDir();
    await mkdir(path.join(directory, 'keys'));
    let apiKey = '';
    expect(
      await runCli(['apikeys', 'create', '--name', 'backend', '--scopes', 'publish,read', '--file', 'keys/api-keys.json'], {
        stdout: (text) => (apiKey += text),
        stderr: () => undefined,
        cwd: directory,
      }),
    ).toBe(0);
    apiKey = apiKey.trim();
    const configFile = path.join(directory, 'cloud.json');
    await writeFile(
      configFile,
      JSON.stringify(
        await withSigningKeys(directory, {
          serviceBus: { connectionString: 'env:TEST_STORELINK_SERVICEBUS', inbox: 'topic', adoptRepliesAfterInMs: 5_000 },
          policy: { operations: { 'note.add': { latency: 'async' } } },
          stores: STORE_IDS.map((storeId) => ({ storeId, bidirectional: false })),
          // One data dir for the three: each instance has its own folder in it.
          dataDir: 'data',
          http: { port: 0, apiKeysFile: 'keys/api-keys.json' },
        }),
      ),
    );
    const start = async (instanceId: string): Promise<Cloud> => {
      const { child, kill } = startCliProcess(['cloud', '--config', configFile, '--instance-id', instanceId, '--log-level', 'silent'], {
        TEST_STORELINK_SERVICEBUS: azure.serviceBusConnectionString(),
      });
      closeables.push(kill);
      const line = await firstLine(child);
      expect(line).toContain(`as instance ${instanceId}`);
      return { child, url: /(http:\/\/127\.0\.0\.1:\d+)/.exec(line)![1]!, kill };
    };
    const clouds = await Promise.all(INSTANCES.map((id) => start(id)));

    const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
    const answers = new Map<string, { instance: number; outcome?: string; reply?: unknown; failed?: string }>();
    let next = 0;
    let killed = false;
    let restarted: Promise<void> = Promise.resolve();
    const worker = async (): Promise<void> => {
      while (next < OPERATIONS) {
        const n = next++;
        const instance = n % clouds.length;
        if (n === Math.floor(OPERATIONS / 3) && !killed) {
          killed = true;
          // Mid-run: cloud-b dies without a word, then comes back under its id (its HTTP port is a new one).
          const dead = clouds[1]!;
          dead.child.kill('SIGKILL');
          restarted = (async () => {
            if (dead.child.exitCode === null && dead.child.signalCode === null) await new Promise((resolve) => dead.child.once('exit', resolve));
            clouds[1] = await start('cloud-b');
          })();
        }
        const id = randomUUID();
        // Callers of cloud-b wait for it to be back; those already in flight at the kill lose their connection.
        if (instance === 1) await restarted;
        const cloud = clouds[instance]!;
        try {
          const response = await fetch(`${cloud.url}/stores/${STORE_IDS[n % STORE_IDS.length]}/operations`, {
            method: 'POST',
            headers,
            body: JSON.stringify({ id, type: 'note.add', payload: { n }, awaitReplyInMs: 30_000 }),
          });
          const body = (await response.json()) as { outcome?: string; reply?: unknown };
          answers.set(id, { instance, ...(body.outcome === undefined ? {} : { outcome: body.outcome }), reply: body.reply });
        } catch (error) {
          // The killed instance's callers lose their connection: their operations may or may not have been sent.
          answers.set(id, { instance, failed: String(error) });
        }
      }
    };
    const began = performance.now();
    await Promise.all(Array.from({ length: IN_FLIGHT }, () => worker()));
    const seconds = (performance.now() - began) / 1000;

    const failed = [...answers.entries()].filter(([, answer]) => answer.failed !== undefined);
    const answered = [...answers.entries()].filter(([, answer]) => answer.failed === undefined);
    // Only the killed instance's callers can have lost their answer, and only those in flight at the kill.
    expect(failed.every(([, answer]) => answer.instance === 1)).toBe(true);
    expect(failed.length).toBeLessThanOrEqual(IN_FLIGHT);
    // Everyone else got the store's reply, whichever instance they asked, the restarted one too.
    expect(answered.filter(([, answer]) => answer.outcome !== 'delivered')).toEqual([]);
    for (const [id] of answered) expect(executions.get(id)).toBe(1);
    // Nothing ran twice; what the killed instance's callers never heard of ran at most once.
    expect([...executions.values()].filter((count) => count !== 1)).toEqual([]);
    for (const [id] of failed) expect(executions.get(id) ?? 0).toBeLessThanOrEqual(1);
    expect(answered.length + failed.length).toBe(OPERATIONS);
    expect(killed).toBe(true);
    // Figures for the report (indicative: the machine is shared).
    console.log(`${OPERATIONS} operations in ${seconds.toFixed(1)} s; ${failed.length} callers cut off by the kill, ${failed.filter(([id]) => executions.get(id) === 1).length} of those executed once`);
  }, 180_000);
});
