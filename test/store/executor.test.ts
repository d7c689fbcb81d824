import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { StorelinkError, isPermanentFailure } from '../../src/core/errors.js';
import { createOperation, type Operation } from '../../src/core/operation.js';
import { MAX_STORE_MESSAGE_BYTES, storeMessageSchema } from '../../src/core/storeMessage.js';
import {
  Executor,
  defineHandler,
  rejectOperation,
  replyIdFor,
  resultOf,
  type ExecutionLedger,
  type ExecutionRecord,
  type ReplyEvent,
  type ReplyTooLarge,
} from '../../src/store/executor.js';
import { CLOUD_KEY, cloudVerifier, signed, signedBody, strangerKey } from '../support/signingKeys.js';

// In-memory stand-ins: the executor's logic is what is under test here; the real ledger has its own tests.
function memoryLedger(): ExecutionLedger & { entries: Map<string, ExecutionRecord> } {
  const entries = new Map<string, ExecutionRecord>();
  return {
    entries,
    get: (id) => entries.get(id),
    record: (entry) => {
      const existing = entries.get(entry.id);
      if (existing !== undefined) return Promise.resolve(existing);
      entries.set(entry.id, entry);
      return Promise.resolve(entry);
    },
  };
}

/** The executor's injected clock: every instant in this file is relative to it, so no test depends on today's date. */
const NOW = Date.parse('2026-11-28T10:00:00.000Z');
const signal = new AbortController().signal;

function setup(handle: (payload: { n: number }) => unknown = (payload) => ({ doubled: payload.n * 2 })) {
  const ledger = memoryLedger();
  const replies: ReplyEvent[] = [];
  const tooLarge: ReplyTooLarge[] = [];
  let calls = 0;
  const executor = new Executor({
    storeId: 'paris-1',
    ledger,
    cloudKeys: cloudVerifier(),
    onReplyTooLarge: (event) => tooLarge.push(event),
    outbox: { append: (event) => Promise.resolve(void replies.push(event)) },
    now: () => NOW,
    handlers: {
      'demo.double': defineHandler(z.strictObject({ n: z.number().int() }), async (payload) => {
        calls += 1;
        await Promise.resolve();
        return handle(payload) as never;
      }),
    },
  });
  return { executor, ledger, replies, tooLarge, calls: () => calls };
}

/** An operation as the cloud sends it: the overrides are signed too (the cloud made them). */
function operation(overrides: Partial<Operation> = {}): Operation {
  return signed({
    ...createOperation({ storeId: 'paris-1', type: 'demo.double', payload: { n: 21 }, latency: 'async', timeToLiveInMs: 60_000 }, { nowInMs: NOW }),
    ...overrides,
  });
}

async function failure(promise: Promise<unknown>): Promise<StorelinkError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof StorelinkError) return error;
    throw error;
  }
  throw new Error('expected a failure');
}

/** An outbox whose appends stay pending until released, recording what was appended. */
function heldOutbox() {
  const appended: ReplyEvent[] = [];
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  return {
    appended,
    release: () => release(),
    outbox: {
      append: async (event: ReplyEvent) => {
        appended.push(event);
        await gate;
      },
    },
  };
}

/** Options of an executor that doubles, for tests that make their own. */
function executorOptions() {
  return {
    storeId: 'paris-1',
    ledger: memoryLedger(),
    cloudKeys: cloudVerifier(),
    outbox: { append: () => Promise.resolve() },
    now: () => NOW,
    handlers: { 'demo.double': defineHandler(z.object({ n: z.number() }), ({ n }) => n * 2) },
  };
}

describe('Executor', () => {
  it('runs a handler once, records the outcome, and returns the recorded outcome on every later delivery', async () => {
    const { executor, ledger, calls } = setup();
    const op = operation();
    const first = await executor.execute(op, 'relay', signal);
    const second = await executor.execute(op, 'queue', signal);
    expect(first).toMatchObject({ replayed: false, record: { outcome: 'done', result: { doubled: 42 }, channel: 'relay' } });
    expect(second).toMatchObject({ replayed: true, record: { outcome: 'done', result: { doubled: 42 }, channel: 'relay' } });
    expect(calls()).toBe(1);
    expect(ledger.entries.get(op.id)).toEqual(first.record);
  });

  it('shares one run between two deliveries of the same id in flight at once', async () => {
    const { executor, calls } = setup();
    const op = operation();
    const [a, b] = await Promise.all([executor.execute(op, 'relay', signal), executor.execute(op, 'queue', signal)]);
    expect(calls()).toBe(1);
    expect([a.replayed, b.replayed].sort()).toEqual([false, true]);
    expect(a.record).toEqual(b.record);
  });

  it('records a refusal and returns the same refusal again', async () => {
    const { executor, calls } = setup(() => {
      throw rejectOperation('not today');
    });
    const op = operation();
    const first = await executor.execute(op, 'queue', signal);
    expect(first.record).toMatchObject({ outcome: 'rejected', error: { code: 'OPERATION_REJECTED', message: 'not today' } });
    expect(() => resultOf(first)).toThrow(expect.objectContaining({ code: 'OPERATION_REJECTED', message: 'not today' }));
    expect((await executor.execute(op, 'relay', signal)).replayed).toBe(true);
    expect(calls()).toBe(1);
  });

  it('does not record a handler crash, so a later delivery runs it again', async () => {
    let attempt = 0;
    const { executor, ledger } = setup(() => {
      attempt += 1;
      if (attempt === 1) throw new Error('disk full');
      return 'ok';
    });
    const op = operation();
    const error = await failure(executor.execute(op, 'queue', signal));
    expect(error.code).toBe('HANDLER_FAILED');
    expect(isPermanentFailure(error.code)).toBe(false);
    expect(ledger.entries.size).toBe(0);
    expect((await executor.execute(op, 'queue', signal)).record.result).toBe('ok');
  });

  it.each([
    ['an invalid envelope', signedBody({ id: 'nope' }), 'OPERATION_INVALID', 'id'],
    ['another store', operation({ storeId: 'lyon-2' }), 'OPERATION_MISROUTED', 'storeId'],
    ['an unknown type', operation({ type: 'demo.triple' }), 'OPERATION_TYPE_UNKNOWN', 'type'],
    ['a payload the schema refuses', operation({ payload: { n: 'x' } }), 'OPERATION_INVALID', 'payload.n'],
    ['an expired operation', operation({ createdAt: new Date(NOW - 3_600_000).toISOString(), expiresAt: new Date(NOW - 1_000).toISOString() }), 'OPERATION_EXPIRED', undefined],
  ])('refuses %s permanently, without running the handler', async (_label, input, code, field) => {
    const { executor, calls, ledger } = setup();
    const error = await failure(executor.execute(input, 'queue', signal));
    expect(error.code).toBe(code);
    expect(error.field).toBe(field);
    expect(isPermanentFailure(error.code)).toBe(true);
    expect(calls()).toBe(0);
    expect(ledger.entries.size).toBe(0);
  });

  it('returns a recorded outcome even after the operation expired', async () => {
    const ledger = memoryLedger();
    const op = operation();
    let now = NOW;
    const executor = new Executor({
      storeId: 'paris-1',
      ledger,
      cloudKeys: cloudVerifier(),
      outbox: { append: () => Promise.resolve() },
      now: () => now,
      handlers: { 'demo.double': defineHandler(z.object({ n: z.number() }), ({ n }) => n) },
    });
    await executor.execute(op, 'relay', signal);
    now = NOW + 3_600_000;
    expect((await executor.execute(op, 'queue', signal)).record.result).toBe(21);
  });

  it('replies through the outbox with a stable id for every operation, asked or not, again on every replay', async () => {
    const { executor, replies } = setup();
    const op = operation();
    // The relay's reply follows the answer, off the hot path: wait for it before the queue's.
    await (await executor.execute(op, 'relay', signal)).replyWritten;
    await executor.execute(op, 'queue', signal);
    expect(replies).toHaveLength(2);
    expect(replies[0]).toEqual({
      id: replyIdFor(op.id),
      kind: 'reply',
      type: 'demo.double',
      storeId: 'paris-1',
      correlationId: op.id,
      body: { outcome: 'done', result: { doubled: 42 } },
      createdAt: new Date(NOW).toISOString(),
    });
    expect(replies[1]!.id).toBe(replies[0]!.id);
  });

  it('correlates the reply with the operation id, whatever correlationId the envelope carries', async () => {
    const { executor, replies } = setup();
    const op = operation({ replyTo: 'cloud-inbox', correlationId: 'c-7' });
    await executor.execute(op, 'queue', signal);
    expect(replies[0]!.correlationId).toBe(op.id);
  });

  it('replies with a refusal as rejected', async () => {
    const { executor, replies } = setup(() => {
      throw rejectOperation('no stock');
    });
    await (await executor.execute(operation(), 'relay', signal)).replyWritten;
    expect(replies[0]!.body).toEqual({ outcome: 'rejected', error: { code: 'OPERATION_REJECTED', message: 'no stock' } });
  });

  it('answers a relay call without waiting for its outbox reply, which still goes after the answer', async () => {
    const held = heldOutbox();
    const executor = new Executor({ ...executorOptions(), outbox: held.outbox });
    const op = operation();
    const execution = await executor.execute(op, 'relay', signal);
    expect(resultOf(execution)).toBe(42);
    // Not appended while the answer is being written: the append comes on a later turn of the event loop.
    expect(held.appended).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(held.appended.map((reply) => reply.correlationId)).toEqual([op.id]);
    let written = false;
    void execution.replyWritten.then(() => (written = true));
    await Promise.resolve();
    expect(written).toBe(false);
    held.release();
    await execution.replyWritten;
    expect(written).toBe(true);
  });

  it('holds a queued delivery until the reply is durable, also when it shares the run of a relay call of the same id', async () => {
    const held = heldOutbox();
    const executor = new Executor({ ...executorOptions(), outbox: held.outbox });
    const op = operation();
    const relay = executor.execute(op, 'relay', signal);
    const queued = executor.execute(op, 'queue', signal);
    let queuedDone = false;
    void queued.then(() => (queuedDone = true));
    await relay;
    await new Promise((resolve) => setImmediate(resolve));
    expect(held.appended).toHaveLength(1);
    expect(queuedDone).toBe(false);
    held.release();
    expect((await queued).replayed).toBe(true);
  });

  it('reports a relay reply the outbox refused through onReplyFailed', async () => {
    const failures: { operationId: string; error: unknown }[] = [];
    const executor = new Executor({
      ...executorOptions(),
      outbox: { append: () => Promise.reject(new StorelinkError('STORE_UNAVAILABLE', 'the outbox is closed')) },
      onReplyFailed: (failure) => failures.push(failure),
    });
    const op = operation();
    const execution = await executor.execute(op, 'relay', signal);
    await expect(execution.replyWritten).rejects.toThrow('the outbox is closed');
    expect(failures.map((failure) => failure.operationId)).toEqual([op.id]);
  });

  it('replaces a result too large for a store message by a failed REPLY_TOO_LARGE reply, keeping the result in the ledger', async () => {
    const big = 'x'.repeat(300 * 1024);
    const { executor, ledger, replies, tooLarge } = setup(() => ({ big }));
    const op = operation();
    const execution = await executor.execute(op, 'queue', signal);
    expect(resultOf(execution)).toEqual({ big });
    expect(ledger.entries.get(op.id)?.result).toEqual({ big });
    expect(replies).toHaveLength(1);
    const body = replies[0]!.body as { outcome: string; executed: boolean; error: { code: string; message: string } };
    expect(body).toMatchObject({ outcome: 'failed', executed: true, error: { code: 'REPLY_TOO_LARGE' } });
    expect(body.error.message).toContain(String(MAX_STORE_MESSAGE_BYTES));
    expect(Buffer.byteLength(JSON.stringify(replies[0]))).toBeLessThan(MAX_STORE_MESSAGE_BYTES);
    expect(storeMessageSchema.safeParse(replies[0]).success).toBe(true);
    expect(tooLarge).toEqual([{ operationId: op.id, operationType: 'demo.double', bytes: expect.any(Number) as number, limitBytes: MAX_STORE_MESSAGE_BYTES }]);
    expect(tooLarge[0]!.bytes).toBeGreaterThan(MAX_STORE_MESSAGE_BYTES);
  });

  it('runs an operation parsed at the channel boundary (executeParsed) once, sharing the ledger with execute', async () => {
    const { executor, calls } = setup();
    const op = operation();
    const first = await executor.executeParsed(op, 'relay', signal);
    const again = await executor.execute(op, 'queue', signal);
    expect(first).toMatchObject({ replayed: false, record: { outcome: 'done', result: { doubled: 42 }, channel: 'relay' } });
    expect(again).toMatchObject({ replayed: true, record: first.record });
    expect(calls()).toBe(1);
  });

  it('answers a relay call before building its reply: a result too large for a reply still reaches the caller, and REPLY_TOO_LARGE goes to the outbox after', async () => {
    const big = 'x'.repeat(300 * 1024);
    const { executor, replies, tooLarge } = setup(() => ({ big }));
    const execution = await executor.executeParsed(operation(), 'relay', signal);
    expect(resultOf(execution)).toEqual({ big });
    // The answer is on its way before the reply exists: built (and its size checked) once the answer was sent.
    expect(tooLarge).toEqual([]);
    expect(replies).toEqual([]);
    await execution.replyWritten;
    expect(tooLarge).toHaveLength(1);
    expect(replies[0]!.body).toMatchObject({ outcome: 'failed', executed: true, error: { code: 'REPLY_TOO_LARGE' } });
  });

  it('sends a result that just fits as it is', async () => {
    const { executor, replies, tooLarge } = setup(() => 'y'.repeat(MAX_STORE_MESSAGE_BYTES - 400));
    await executor.execute(operation(), 'queue', signal);
    expect(replies[0]!.body).toMatchObject({ outcome: 'done' });
    expect(tooLarge).toEqual([]);
  });

  it('reports a dead-lettered operation as failed, unexecuted, with the reason as its code', async () => {
    const { executor, replies } = setup();
    const op = operation();
    const reply = await executor.reportDeadLettered(op, { reason: 'OPERATION_EXPIRED', description: 'expired at …' });
    expect(replies).toEqual([reply]);
    expect(reply).toEqual({
      id: replyIdFor(op.id),
      kind: 'reply',
      type: 'demo.double',
      storeId: 'paris-1',
      correlationId: op.id,
      body: { outcome: 'failed', executed: false, error: { code: 'OPERATION_EXPIRED', message: 'expired at …' } },
      createdAt: new Date(NOW).toISOString(),
    });
  });

  it.each<[string, unknown]>([
    ['not an object', 'hello'],
    ['null', null],
    ['no id', signedBody({ storeId: 'paris-1', type: 'demo.double' })],
    ['an empty id', signedBody({ id: '', storeId: 'paris-1' })],
    ['an id too long to be one', signedBody({ id: 'i'.repeat(129), storeId: 'paris-1' })],
    ['no storeId', signedBody({ id: 'op-1', type: 'demo.double' })],
  ])('reports nothing for a dead-lettered body with %s', async (_name, body) => {
    const { executor, replies } = setup();
    expect(await executor.reportDeadLettered(body, { reason: 'OPERATION_INVALID', description: 'bad' })).toBeUndefined();
    expect(replies).toEqual([]);
  });

  it('reports a dead-lettered body with an unusable type under type "unknown", as this store', async () => {
    const { executor, replies } = setup();
    await executor.reportDeadLettered(signedBody({ id: 'op-9', storeId: 'lyon-2', type: 42 }), { reason: 'OPERATION_MISROUTED', description: 'for lyon-2' });
    expect(replies[0]).toMatchObject({ type: 'unknown', storeId: 'paris-1', correlationId: 'op-9', body: { outcome: 'failed', executed: false } });
  });

  describe('the cloud signature', () => {
    const unsigned = (): Operation => {
      const { signature: _signature, ...rest } = operation();
      return rest;
    };
    it.each<[string, () => unknown, string]>([
      ['an unsigned operation', unsigned, 'carries no signature'],
      ['one signed by a key the store does not trust', () => signed(unsigned(), strangerKey('cloud-test-2')), 'not trusted'],
      ['one signed under the trusted key id by another key', () => signed(unsigned(), { ...strangerKey(), keyId: CLOUD_KEY.keyId }), 'does not match'],
      ['one whose payload was changed after signing', () => ({ ...operation(), payload: { n: 1000 } }), 'does not match'],
      ['one re-addressed to this store after the cloud signed it for another', () => ({ ...operation({ storeId: 'lyon-2' }), storeId: 'paris-1' }), 'does not match'],
      ['one whose expiry was pushed back after signing', () => ({ ...operation(), expiresAt: new Date(NOW + 86_400_000).toISOString() }), 'does not match'],
      ['a signature that is not { keyId, value }', () => ({ ...operation(), signature: 'trust me' }), 'not { keyId, value }'],
      ['a body that is not an object', () => 'hello', 'not an operation envelope'],
    ])('refuses %s with SIGNATURE_INVALID, permanently, before anything else', async (_label, input, message) => {
      const { executor, calls, ledger, replies } = setup();
      const error = await failure(executor.execute(input(), 'queue', signal));
      expect(error.code).toBe('SIGNATURE_INVALID');
      expect(error.message).toContain(message);
      expect(isPermanentFailure(error.code)).toBe(true);
      expect(calls()).toBe(0);
      expect(ledger.entries.size).toBe(0);
      expect(replies).toEqual([]);
    });

    it.each<[string, () => Operation, string]>([
      ['an unsigned operation', unsigned, 'carries no signature'],
      ['one whose payload was changed after signing', () => ({ ...operation(), payload: { n: 1000 } }), 'does not match'],
      ['one signed by a key the store does not trust', () => signed(unsigned(), strangerKey('cloud-test-2')), 'not trusted'],
    ])('refuses %s parsed at the channel boundary (executeParsed) with SIGNATURE_INVALID too, before anything else', async (_label, input, message) => {
      const { executor, calls, ledger, replies } = setup();
      const error = await failure(executor.executeParsed(input(), 'relay', signal));
      expect(error.code).toBe('SIGNATURE_INVALID');
      expect(error.message).toContain(message);
      expect(calls()).toBe(0);
      expect(ledger.entries.size).toBe(0);
      expect(replies).toEqual([]);
    });

    it('checks the signature before the envelope: an unsigned invalid one is SIGNATURE_INVALID, not OPERATION_INVALID', async () => {
      const { executor } = setup();
      expect((await failure(executor.execute({ id: 'nope' }, 'queue', signal))).code).toBe('SIGNATURE_INVALID');
    });

    it('runs an operation the cloud signed for another store no further than OPERATION_MISROUTED', async () => {
      const { executor, calls } = setup();
      expect((await failure(executor.execute(operation({ storeId: 'lyon-2' }), 'queue', signal))).code).toBe('OPERATION_MISROUTED');
      expect(calls()).toBe(0);
    });

    it('does not cover replyTo and correlationId: the store replies to its own inbox, under the operation id', async () => {
      const { executor, replies } = setup();
      await executor.execute({ ...operation(), replyTo: 'elsewhere', correlationId: 'forged' }, 'queue', signal);
      expect(replies[0]!.correlationId).not.toBe('forged');
    });

    it('reports nothing to the cloud about a dead-lettered body the cloud did not sign, even with a usable id', async () => {
      const { executor, replies } = setup();
      const genuine = operation();
      const forged = { ...genuine, payload: { n: 0 } };
      expect(await executor.reportDeadLettered(forged, { reason: 'SIGNATURE_INVALID', description: 'forged' })).toBeUndefined();
      expect(await executor.reportDeadLettered(unsigned(), { reason: 'OPERATION_INVALID', description: 'bad' })).toBeUndefined();
      expect(replies).toEqual([]);
    });

    it('accepts every trusted key while a key rotates, and refuses the old one once it is dropped', async () => {
      const next = strangerKey('cloud-test-next');
      const during = new Executor({ ...executorOptions(), cloudKeys: cloudVerifier([CLOUD_KEY, next]) });
      const op = (key = CLOUD_KEY) => signed(operation({ id: crypto.randomUUID() }), key);
      expect((await during.execute(op(CLOUD_KEY), 'queue', signal)).record.outcome).toBe('done');
      expect((await during.execute(op(next), 'queue', signal)).record.outcome).toBe('done');
      const after = new Executor({ ...executorOptions(), cloudKeys: cloudVerifier([next]) });
      expect((await after.execute(op(next), 'queue', signal)).record.outcome).toBe('done');
      expect((await failure(after.execute(op(CLOUD_KEY), 'queue', signal))).message).toContain('"cloud-test", which is not trusted');
    });
  });

  it('refuses a handler result that is not JSON', async () => {
    const { executor } = setup(() => ({ when: new Date() }));
    expect((await failure(executor.execute(operation(), 'queue', signal))).code).toBe('HANDLER_FAILED');
  });

  it('derives reply ids that are UUIDs, distinct per operation', () => {
    const a = replyIdFor('3b241101-e2bb-4255-8caf-4136c566a962');
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(replyIdFor('3b241101-e2bb-4255-8caf-4136c566a962')).toBe(a);
    expect(replyIdFor('3b241101-e2bb-4255-8caf-4136c566a963')).not.toBe(a);
  });
});
