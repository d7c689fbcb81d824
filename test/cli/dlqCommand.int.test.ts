import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { startServiceBusEmulator } from '../../src/emulator/servicebus/index.js';
import { deadLetter, drain, onCleanup, peekAll, QUEUE, rawClient, startEmulator, storeDeadLetters } from '../channels/servicebus/deadLetterQueueFixtures.js';

const root = path.resolve(import.meta.dirname, '../..');

afterEach(() => {
  vi.unstubAllEnvs();
});

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), cwd: root });
  return { code, stdout, stderr };
}

async function withDeadLetters() {
  const emulator = await startEmulator();
  const connectionString = emulator.connectionString();
  const client = rawClient(connectionString);
  const fixture = storeDeadLetters();
  await deadLetter(client, QUEUE, fixture.entries);
  return { emulator, connectionString, client, ...fixture };
}

describe('storelink dlq', () => {
  it('lists reasons, descriptions and operations as a table, and as JSON', async () => {
    const { connectionString, invalid, expired, crashed } = await withDeadLetters();

    const table = await run('dlq', 'list', '--store', 'paris-1', '--connection-string', connectionString);
    expect(table.code).toBe(0);
    expect(table.stderr).toBe('');
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SEQ\s+AGE\s+REASON\s+DESCRIPTION\s+OPERATION$/);
    expect(lines).toHaveLength(5);
    expect(lines[1]).toMatch(new RegExp(`OPERATION_INVALID\\s+invalid price\\.update operation: payload\\.price is required\\s+price\\.update ${invalid.id}$`));
    expect(lines[2]).toContain('OPERATION_EXPIRED');
    expect(lines[2]).toContain(`clickAndCollect.order ${expired.id}`);
    expect(lines[3]).toContain('MaxDeliveryCountExceeded');
    expect(lines[3]).toContain(`stock.query ${crashed.id}`);
    expect(lines[4]).toContain('(not an operation) not-an-envelope');
    expect(lines[1]).toMatch(/^\d+\s+\d+s\s/);

    const json = await run('dlq', 'list', '--store', 'paris-1', '--connection-string', connectionString, '--json', '--limit', '2');
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { queue: string; messages: { messageId: string; reason: string; description: string; operation: { id: string } }[] };
    expect(parsed.queue).toBe(QUEUE);
    expect(parsed.messages.map((message) => [message.reason, message.operation.id])).toEqual([
      ['OPERATION_INVALID', invalid.id],
      ['OPERATION_EXPIRED', expired.id],
    ]);
  });

  it('reads the connection string from STORELINK_SERVICEBUS, and says what to set when there is none', async () => {
    const { connectionString } = await withDeadLetters();
    vi.stubEnv('STORELINK_SERVICEBUS', connectionString);
    const fromEnv = await run('dlq', 'list', '--store', 'paris-1', '--json');
    expect(fromEnv.code).toBe(0);
    expect((JSON.parse(fromEnv.stdout) as { messages: unknown[] }).messages).toHaveLength(4);

    vi.stubEnv('STORELINK_SERVICEBUS', '');
    const missing = await run('dlq', 'list', '--store', 'paris-1');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('pass --connection-string or set STORELINK_SERVICEBUS');
    expect(missing.stdout).toBe('');
  });

  it.each([
    ['an invalid store id', ['dlq', 'list', '--store', 'Paris 1', '--connection-string', 'x'], /lower-case letters/],
    ['no store', ['dlq', 'list', '--connection-string', 'x'], /--store/],
    ['a malformed connection string', ['dlq', 'list', '--store', 'paris-1', '--connection-string', 'nonsense'], /Invalid connection string/],
    ['a bad limit', ['dlq', 'list', '--store', 'paris-1', '--connection-string', 'x', '--limit', '0'], /positive integer/],
    ['resubmit without a selection', ['dlq', 'resubmit', '--store', 'paris-1', '--connection-string', 'x'], /exactly one of them/],
    ['resubmit with two selections', ['dlq', 'resubmit', '--store', 'paris-1', '--connection-string', 'x', '--all', '--reason', 'X'], /exactly one of them/],
  ])('is a usage error (exit 2) for %s', async (_label, argv, message) => {
    const { code, stderr } = await run(...argv);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });

  it('shows one message by sequence number or messageId, and fails clearly for an unknown one', async () => {
    const { connectionString, crashed } = await withDeadLetters();

    const byId = await run('dlq', 'show', '--store', 'paris-1', '--connection-string', connectionString, crashed.id);
    expect(byId.code).toBe(0);
    expect(byId.stdout).toContain('reason           MaxDeliveryCountExceeded');
    expect(byId.stdout).toContain(`operation        stock.query ${crashed.id} for store paris-1`);
    expect(byId.stdout).toContain('"sku": "A-1"');

    const sequenceNumber = /sequence number\s+(\d+)/.exec(byId.stdout)![1]!;
    const bySequence = await run('dlq', 'show', '--store', 'paris-1', '--connection-string', connectionString, sequenceNumber, '--json');
    expect(bySequence.code).toBe(0);
    expect(JSON.parse(bySequence.stdout)).toMatchObject({ sequenceNumber, messageId: crashed.id, reason: 'MaxDeliveryCountExceeded', body: crashed });

    const unknown = await run('dlq', 'show', '--store', 'paris-1', '--connection-string', connectionString, 'no-such-message');
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toBe('storelink: no message with sequence number or messageId "no-such-message" in the dead-letter queue of store-paris-1\n');
  });

  it('resubmits by reason only the matching messages, and warns about an expired operation', async () => {
    const { connectionString, client, expired } = await withDeadLetters();

    const { code, stdout, stderr } = await run('dlq', 'resubmit', '--store', 'paris-1', '--connection-string', connectionString, '--reason', 'OPERATION_EXPIRED');

    expect(code).toBe(0);
    expect(stdout).toContain('resubmitted 1 message to store-paris-1');
    expect(stdout).toContain(`clickAndCollect.order ${expired.id}`);
    expect(stderr).toContain(`warning: operation ${expired.id} expired at ${expired.expiresAt}; the store will dead-letter it again as OPERATION_EXPIRED`);
    expect(stderr).toContain('duplicate detection');
    const back = await drain(client, QUEUE, 1);
    expect(back.map((message) => [message.messageId, message.body as unknown])).toEqual([[expired.id, expired]]);
    expect((await peekAll(client, QUEUE, 'deadLetter')).map((message) => message.deadLetterReason)).toEqual([
      'OPERATION_INVALID',
      'MaxDeliveryCountExceeded',
      'OPERATION_INVALID',
    ]);
  });

  it('resubmits chosen ids, reports the unknown ones with exit 1, then --all moves the rest (JSON, no warnings)', async () => {
    const { connectionString, client, entries, invalid, expired, crashed } = await withDeadLetters();

    const chosen = await run('dlq', 'resubmit', '--store', 'paris-1', '--connection-string', connectionString, invalid.id, 'no-such-id');
    expect(chosen.code).toBe(1);
    expect(chosen.stdout).toContain(`price.update ${invalid.id}`);
    expect(chosen.stderr).toContain('no-such-id: not in the dead-letter queue of store-paris-1');
    expect(chosen.stderr).toContain('1 of the selected messages was not resubmitted');
    expect((await drain(client, QUEUE, 1)).map((message) => message.messageId)).toEqual([invalid.id]);

    const all = await run('dlq', 'resubmit', '--store', 'paris-1', '--connection-string', connectionString, '--all', '--json');
    expect(all.code).toBe(0);
    expect(all.stderr).toBe('');
    const result = JSON.parse(all.stdout) as { resubmitted: { messageId: string; mayBeDroppedAsDuplicate: boolean }[]; failed: unknown[]; notFound: unknown[] };
    expect(result.resubmitted.map((message) => message.messageId)).toEqual([expired.id, crashed.id, 'not-an-envelope']);
    expect(result.resubmitted.every((message) => message.mayBeDroppedAsDuplicate)).toBe(true);
    expect(result).toMatchObject({ failed: [], notFound: [] });
    expect((await drain(client, QUEUE, 3)).map((message) => message.messageId)).toEqual(entries.slice(1).map((entry) => entry.messageId));
    expect(await peekAll(client, QUEUE, 'deadLetter')).toEqual([]);

    const empty = await run('dlq', 'resubmit', '--store', 'paris-1', '--connection-string', connectionString, '--all');
    expect(empty.code).toBe(0);
    expect(empty.stdout).toBe('nothing to resubmit: no dead-lettered message of store-paris-1 matched\n');
  });

  it('fails with exit 1 when Service Bus is down, and the dead-letter queue is intact after a restart', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-dlq-cli-'));
    onCleanup(() => rm(dataDir, { recursive: true, force: true }));
    const first = await startEmulator({ dataDir });
    const { entries } = storeDeadLetters();
    await deadLetter(rawClient(first.connectionString()), QUEUE, entries);
    const connectionString = first.connectionString();
    await first.close();

    const { code, stderr } = await run('dlq', 'resubmit', '--store', 'paris-1', '--connection-string', connectionString, '--all');
    expect(code).toBe(1);
    expect(stderr).toMatch(/^storelink: peeking the dead-letter queue of store-paris-1 failed/);

    const second = await startServiceBusEmulator({ dataDir, namespaces: [{ queues: [{ name: QUEUE }] }] });
    onCleanup(() => second.close());
    const still = await peekAll(rawClient(second.connectionString()), QUEUE, 'deadLetter');
    expect(still.map((message) => message.messageId)).toEqual(entries.map((entry) => entry.messageId));
  });
});
