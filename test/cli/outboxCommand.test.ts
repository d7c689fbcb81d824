import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { lockDataDir } from '../../src/store/dataDirLock.js';
import { openOutbox, type OutboxEvent } from '../../src/store/outbox.js';

let dataDir: string;

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-outbox-cli-'));
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), cwd: path.dirname(dataDir) });
  return { code, stdout, stderr };
}

const CREATED = '2026-03-02T09:30:00.000Z';
const pending: OutboxEvent = {
  id: '0b6c3c1e-8a51-4d3e-9a3f-6c0c2d1e4f01',
  kind: 'event',
  type: 'sale.recorded',
  storeId: 'paris-1',
  body: { ticket: 'T-1' },
  createdAt: CREATED,
};
const stuck: OutboxEvent = { ...pending, id: '0b6c3c1e-8a51-4d3e-9a3f-6c0c2d1e4f02', type: 'receipt.printed', body: { receipt: 'long' } };

/** An outbox with one pending entry and one parked, as an agent leaves it. */
async function seed(): Promise<void> {
  const outbox = await openOutbox({ directory: path.join(dataDir, 'outbox'), now: () => Date.parse(CREATED) + 1000 });
  await outbox.append(stuck);
  await outbox.append(pending);
  await outbox.park(stuck.id, { code: 'PAYLOAD_TOO_LARGE', message: 'larger than cloud-inbox accepts' });
  await outbox.close();
}

async function reopened(): Promise<{ pending: string[]; parked: string[] }> {
  const outbox = await openOutbox({ directory: path.join(dataDir, 'outbox') });
  try {
    return { pending: outbox.peek(10).map((event) => event.id), parked: outbox.parked().map((parked) => parked.event.id) };
  } finally {
    await outbox.close();
  }
}

describe('storelink outbox', () => {
  it('lists pending then parked entries with their size and park reason, as a table and as JSON', async () => {
    await seed();
    const text = await run('outbox', 'list', '--data-dir', path.basename(dataDir));
    expect(text).toMatchObject({ code: 0, stderr: '' });
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^STATE\s+ID\s+KIND\s+TYPE\s+CREATED\s+BYTES\s+REASON$/);
    expect(lines[1]).toMatch(new RegExp(`^pending\\s+${pending.id}\\s+event\\s+sale.recorded\\s+${CREATED}\\s+\\d+\\s+-$`));
    expect(lines[2]).toMatch(new RegExp(`^parked\\s+${stuck.id}\\s+event\\s+receipt.printed\\s+${CREATED}\\s+\\d+\\s+PAYLOAD_TOO_LARGE: larger than cloud-inbox accepts$`));

    const json = await run('outbox', 'list', '--data-dir', dataDir, '--json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({
      dataDir,
      entries: [
        { id: pending.id, state: 'pending', kind: 'event', type: 'sale.recorded', createdAt: CREATED, size: Buffer.byteLength(JSON.stringify(pending)) },
        {
          id: stuck.id,
          state: 'parked',
          kind: 'event',
          type: 'receipt.printed',
          createdAt: CREATED,
          size: Buffer.byteLength(JSON.stringify(stuck)),
          code: 'PAYLOAD_TOO_LARGE',
          reason: 'larger than cloud-inbox accepts',
          parkedAt: '2026-03-02T09:30:01.000Z',
        },
      ],
    });
  });

  it('shows one entry with its body', async () => {
    await seed();
    const shown = await run('outbox', 'show', stuck.id, '--data-dir', dataDir);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain('state       parked');
    expect(shown.stdout).toContain('reason      PAYLOAD_TOO_LARGE: larger than cloud-inbox accepts');
    expect(shown.stdout).toContain('"receipt": "long"');
    const json = await run('outbox', 'show', pending.id, '--data-dir', dataDir, '--json');
    expect(JSON.parse(json.stdout)).toMatchObject({ id: pending.id, state: 'pending', event: pending });
  });

  it('resubmits a parked entry to the end of the pending ones', async () => {
    await seed();
    const resubmitted = await run('outbox', 'resubmit', stuck.id, '--data-dir', dataDir);
    expect(resubmitted).toMatchObject({ code: 0, stdout: `${stuck.id}: resubmitted (pending, at the end of the outbox)\n` });
    expect(await reopened()).toEqual({ pending: [pending.id, stuck.id], parked: [] });
  });

  it('discards a parked entry for good', async () => {
    await seed();
    const discarded = await run('outbox', 'discard', stuck.id, '--data-dir', dataDir, '--json');
    expect(discarded.code).toBe(0);
    expect(JSON.parse(discarded.stdout)).toEqual({ id: stuck.id, result: 'discarded' });
    expect(await reopened()).toEqual({ pending: [pending.id], parked: [] });
  });

  it.each([['resubmit'], ['discard']])('%s of a pending or unknown entry changes nothing and exits 1', async (command) => {
    await seed();
    const ofPending = await run('outbox', command, pending.id, '--data-dir', dataDir);
    expect(ofPending).toMatchObject({ code: 1, stdout: '' });
    expect(ofPending.stderr).toContain(`entry ${pending.id} is pending, not parked`);
    const ofUnknown = await run('outbox', command, 'no-such-id', '--data-dir', dataDir);
    expect(ofUnknown.code).toBe(1);
    expect(ofUnknown.stderr).toContain('no parked entry with id no-such-id');
    expect(await reopened()).toEqual({ pending: [pending.id], parked: [stuck.id] });
  });

  it('refuses while the data dir is held (a running store agent), and touches nothing', async () => {
    await seed();
    const lock = await lockDataDir(dataDir, 'the store agent of paris-1');
    try {
      const refused = await run('outbox', 'discard', stuck.id, '--data-dir', dataDir);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(`the data dir ${dataDir} is in use by the store agent of paris-1`);
    } finally {
      await lock.release();
    }
    expect(await reopened()).toEqual({ pending: [pending.id], parked: [stuck.id] });
  });

  it('is a usage error without --data-dir, or with one that does not exist', async () => {
    expect((await run('outbox', 'list')).code).toBe(2);
    const missing = await run('outbox', 'list', '--data-dir', path.join(dataDir, 'nope'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`no data dir at ${path.join(dataDir, 'nope')}`);
  });

  it('says so when the outbox is empty', async () => {
    const listed = await run('outbox', 'list', '--data-dir', dataDir);
    expect(listed).toMatchObject({ code: 0, stdout: `the outbox of ${dataDir} is empty\n` });
  });
});
