/**
 * Nothing silent: every operation's final outcome reaches the cloud, late ones too, through the real SDKs and the
 * emulators on 127.0.0.1.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { filter, firstValueFrom, type Observable } from 'rxjs';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createDispatcher, type Dispatcher, type OperationOutcome } from '../../src/cloud/dispatcher.js';
import { createCloudHttpApi } from '../../src/cloud/httpApi.js';
import { MAX_STORE_MESSAGE_BYTES } from '../../src/core/storeMessage.js';
import { parsePolicy } from '../../src/core/policy.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { defineHandler } from '../../src/store/executor.js';
import { openLedger } from '../../src/store/ledger.js';
import { createStoreAgent, type StoreAgent, type StoreAgentEvent } from '../../src/store/storeAgent.js';
import { dispatcherSigningOptions, storePublicKeys, storeSigningOptions } from '../support/signingKeys.js';

const closeables: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!().catch(() => undefined);
});

const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const TOKEN = 'outcomes-token-0123456789';
const STORES = [
  { storeId: 'paris-1', bidirectional: true, ...storePublicKeys('paris-1') },
  { storeId: 'nice-3', bidirectional: false, ...storePublicKeys('nice-3') },
];
const POLICY = parsePolicy({
  operations: {
    // Shorter than the slow handler takes: the relay call times out while the store is still running it.
    'slow.order': { latency: 'realtime', fallback: 'reject', relayTimeoutInMs: 200 },
    'big.report': { latency: 'async' },
    'quick.note': { latency: 'async' },
  },
});
const MINUTE = 60_000;

async function tempDir(): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'storelink-outcomes-'));
  closeables.push(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

/** A promise released from outside: the slow handler waits for it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

function outcomeOf(cloud: Dispatcher, operationId: string): Promise<OperationOutcome> {
  return firstValueFrom(cloud.outcomes$.pipe(filter((outcome) => outcome.operationId === operationId)));
}

function storeEvent<T extends StoreAgentEvent['type']>(events$: Observable<StoreAgentEvent>, type: T): Promise<Extract<StoreAgentEvent, { type: T }>> {
  return firstValueFrom(events$.pipe(filter((event): event is Extract<StoreAgentEvent, { type: T }> => event.type === type)));
}

interface World {
  azure: Emulators;
  cloud: Dispatcher;
  agent: (storeId: string, options?: { now?: () => number; start?: boolean }) => Promise<{ agent: StoreAgent; dataDir: string }>;
  slow: ReturnType<typeof gate>;
  calls: Map<string, number>;
}

async function world(options: { now?: () => number } = {}): Promise<World> {
  const azure = await startEmulators({
    ...(options.now === undefined ? {} : { now: options.now }),
    namespaces: [
      {
        queues: [
          ...STORES.map(({ storeId }) => ({ name: `store-${storeId}`, lockDurationInMs: 2_000 })),
          { name: 'cloud-inbox', requiresDuplicateDetection: true },
        ],
      },
    ],
    hybridConnections: [{ name: 'store-paris-1' }],
  });
  closeables.push(() => azure.close());
  const slow = gate();
  const calls = new Map<string, number>();
  const count = (type: string) => calls.set(type, (calls.get(type) ?? 0) + 1);
  const handlers = {
    'slow.order': defineHandler(z.object({ orderId: z.string() }), async ({ orderId }) => {
      count('slow.order');
      await slow.opened;
      return { prepared: orderId };
    }),
    'big.report': defineHandler(z.object({}), () => {
      count('big.report');
      return { rows: 'r'.repeat(300 * 1024) };
    }),
    'quick.note': defineHandler(z.object({ text: z.string() }), ({ text }) => ({ noted: text })),
  };
  const agent = async (storeId: string, options: { now?: () => number; start?: boolean } = {}) => {
    const dataDir = await tempDir();
    const bidirectional = STORES.find((store) => store.storeId === storeId)!.bidirectional;
    const created = createStoreAgent({
      storeId,
      ...storeSigningOptions(storeId),
      handlers,
      serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
      ...(bidirectional ? { relay: { connectionString: azure.relayConnectionString() }, expose: ['slow.order'] } : {}),
      dataDir,
      ...(options.now === undefined ? {} : { now: options.now }),
    });
    closeables.push(() => created.close());
    if (options.start !== false) {
      await created.start();
      if (bidirectional) await firstValueFrom(created.state$.pipe(filter((state) => state.relay === 'listening')));
    }
    return { agent: created, dataDir };
  };
  const cloud = createDispatcher({
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    relay: { connectionString: azure.relayConnectionString() },
    policy: POLICY,
    stores: STORES,
    ...dispatcherSigningOptions(),
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  closeables.push(() => cloud.close());
  await cloud.start();
  return { azure, cloud, agent, slow, calls };
}

interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/** Reads a server-sent event stream with undici, block by block. */
async function openEvents(baseUrl: string, lastEventId?: string) {
  const response = await request(`${baseUrl}/events`, {
    headers: { authorization: `Bearer ${TOKEN}`, ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }) },
  });
  expect(response.statusCode).toBe(200);
  const chunks = response.body[Symbol.asyncIterator]();
  let buffer = '';
  const close = async () => {
    response.body.destroy();
    await chunks.return?.().catch(() => undefined);
  };
  closeables.push(close);
  const next = async (accept: (event: SseEvent) => boolean): Promise<SseEvent> => {
    for (;;) {
      let boundary = buffer.indexOf('\n\n');
      while (boundary >= 0) {
        const lines = buffer.slice(0, boundary).split('\n');
        buffer = buffer.slice(boundary + 2);
        const field = (name: string) => lines.find((line) => line.startsWith(`${name}: `))?.slice(name.length + 2);
        const event = field('event');
        if (event !== undefined) {
          const parsed = { id: field('id'), event, data: field('data') ?? '' };
          if (accept(parsed)) return parsed;
        }
        boundary = buffer.indexOf('\n\n');
      }
      const chunk = await chunks.next();
      if (chunk.done === true) throw new Error('the event stream ended');
      buffer += Buffer.from(chunk.value as Uint8Array).toString('utf8');
    }
  };
  return { next, close };
}

describe('every operation has a known outcome, late ones too', () => {
  it('a real-time order whose relay call times out while the store runs it ends as a late done outcome, executed once', async () => {
    const { cloud, agent, slow, calls } = await world();
    const { agent: paris, dataDir } = await agent('paris-1');
    const outcome = firstValueFrom(cloud.outcomes$.pipe(filter((candidate) => candidate.type === 'slow.order')));
    const executed = storeEvent(paris.events$, 'executed');

    const delivery = await cloud.publish({ storeId: 'paris-1', type: 'slow.order', payload: { orderId: 'CC-77' } });
    const operationId = delivery.operationId;
    // The caller was told it did not happen in time…
    expect(delivery).toMatchObject({ outcome: 'rejected', channel: null, fallbackReason: 'RELAY_TIMEOUT' });
    // …while the store is still running it: released only now, after the timeout.
    slow.open();

    expect(await executed).toMatchObject({ operationId, channel: 'relay', outcome: 'done', replayed: false });
    expect(await outcome).toMatchObject({
      operationId,
      storeId: 'paris-1',
      type: 'slow.order',
      outcome: 'done',
      reply: { prepared: 'CC-77' },
      channel: 'queue',
      late: true,
    });
    expect(calls.get('slow.order')).toBe(1);
    await paris.close();
    const ledger = await openLedger({ directory: path.join(dataDir, 'ledger') });
    expect(ledger.get(operationId)).toMatchObject({ outcome: 'done', result: { prepared: 'CC-77' }, channel: 'relay' });
    await ledger.close();
  });

  it('a queued operation the store dead-letters as expired has its failed outcome, with the reason, reach the cloud', async () => {
    const { cloud, agent } = await world();
    // The store's clock runs ten minutes ahead: what the cloud sent with a minute to live has expired when it runs.
    const { agent: nice } = await agent('nice-3', { now: () => Date.now() + 10 * MINUTE, start: false });
    const delivery = await cloud.publish({ storeId: 'nice-3', type: 'quick.note', payload: { text: 'hello' }, timeToLiveInMs: MINUTE });
    expect(delivery).toMatchObject({ channel: 'queue', outcome: 'queued' });
    const outcome = outcomeOf(cloud, delivery.operationId);
    const deadLettered = storeEvent(nice.events$, 'dead-lettered');
    await nice.start();

    expect(await deadLettered).toMatchObject({ operationId: delivery.operationId, reason: 'OPERATION_EXPIRED', reported: true });
    const failed = await outcome;
    expect(failed).toMatchObject({
      operationId: delivery.operationId,
      storeId: 'nice-3',
      type: 'quick.note',
      outcome: 'failed',
      failure: { code: 'OPERATION_EXPIRED', executed: false },
      channel: 'queue',
      late: true,
    });
    expect(failed.failure!.message).toContain('expired');
  });

  it('an operation that expires in the queue while its store is away is still reported expired when the store is back', async () => {
    // One clock for Service Bus, the cloud and the store, moved past the operation's expiry while the store is away.
    let aheadInMs = 0;
    const clock = () => Date.now() + aheadInMs;
    const { cloud, agent } = await world({ now: clock });
    const { agent: nice } = await agent('nice-3', { now: clock, start: false });
    const delivery = await cloud.publish({ storeId: 'nice-3', type: 'quick.note', payload: { text: 'hello' }, timeToLiveInMs: MINUTE });
    expect(delivery).toMatchObject({ channel: 'queue', outcome: 'queued' });
    aheadInMs = 10 * MINUTE;
    const outcome = outcomeOf(cloud, delivery.operationId);
    const deadLettered = storeEvent(nice.events$, 'dead-lettered');
    await nice.start();

    expect(await deadLettered).toMatchObject({ operationId: delivery.operationId, reason: 'OPERATION_EXPIRED', reported: true });
    expect(await outcome).toMatchObject({
      operationId: delivery.operationId,
      outcome: 'failed',
      failure: { code: 'OPERATION_EXPIRED', executed: false },
      late: true,
    });
  });

  it('a 300 KiB result through the queue ends as a failed REPLY_TOO_LARGE delivery, and a later reply still arrives', async () => {
    const { cloud, agent } = await world();
    const { agent: nice } = await agent('nice-3');
    const tooLarge = storeEvent(nice.events$, 'reply.too-large');
    const big = await cloud.publish({ storeId: 'nice-3', type: 'big.report', payload: {} }, { awaitReplyInMs: 20_000 });
    expect(big).toMatchObject({ channel: 'queue', outcome: 'failed', failure: { code: 'REPLY_TOO_LARGE', executed: true } });
    expect(big.failure!.message).toContain(String(MAX_STORE_MESSAGE_BYTES));
    expect(await tooLarge).toMatchObject({ operationId: big.operationId, operationType: 'big.report', limitBytes: MAX_STORE_MESSAGE_BYTES });

    const next = await cloud.publish({ storeId: 'nice-3', type: 'quick.note', payload: { text: 'after' } }, { awaitReplyInMs: 20_000 });
    expect(next).toMatchObject({ channel: 'queue', outcome: 'delivered', reply: { noted: 'after' } });
  });

  it('an error answer of POST /stores/:storeId/operations names the operation', async () => {
    const { cloud } = await world();
    const api = createCloudHttpApi({ dispatcher: cloud, token: TOKEN });
    closeables.push(() => api.close());
    const { port } = await api.listen();
    const post = async (storeId: string, body: unknown) => {
      const response = await request(`http://127.0.0.1:${port}/stores/${storeId}/operations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: response.statusCode, body: (await response.body.json()) as { error: { code: string; operationId?: string } } };
    };

    // Refused by the dispatcher: the id it made for the operation.
    const unknown = await post('lille-9', { type: 'quick.note', payload: { text: 'x' } });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: 'STORE_UNKNOWN', operationId: expect.stringMatching(/^[0-9a-f-]{36}$/) as string });

    // Refused before the dispatcher: the request's own id.
    const id = '3b241101-e2bb-4255-8caf-4136c566a962';
    const invalid = await post('nice-3', { id, type: 'not a type', payload: {} });
    expect(invalid.status).toBe(400);
    expect(invalid.body.error).toMatchObject({ code: 'OPERATION_INVALID', operationId: id });
  });

  it('the event stream carries outcomes with ids and resumes from Last-Event-ID, or says it cannot', async () => {
    const { cloud, agent } = await world();
    await agent('nice-3');
    const api = createCloudHttpApi({ dispatcher: cloud, token: TOKEN, eventReplayWindow: 100 });
    closeables.push(() => api.close());
    const { port } = await api.listen();
    const baseUrl = `http://127.0.0.1:${port}`;

    const first = await openEvents(baseUrl);
    const a = await cloud.publish({ storeId: 'nice-3', type: 'quick.note', payload: { text: 'a' } }, { awaitReplyInMs: 20_000 });
    const seenA = await first.next((event) => event.event === 'outcome' && (JSON.parse(event.data) as OperationOutcome).operationId === a.operationId);
    expect(JSON.parse(seenA.data)).toMatchObject({ operationId: a.operationId, outcome: 'done', reply: { noted: 'a' }, late: false });
    expect(seenA.id).toMatch(/^[0-9a-z]+-\d+$/);
    await first.close();

    // While no stream is open; the outcome is out before publish returns.
    const bOutcome = firstValueFrom(cloud.outcomes$.pipe(filter((outcome) => outcome.type === 'quick.note' && outcome.operationId !== a.operationId)));
    const b = await cloud.publish({ storeId: 'nice-3', type: 'quick.note', payload: { text: 'b' } }, { awaitReplyInMs: 20_000 });
    expect(await bOutcome).toMatchObject({ operationId: b.operationId, late: false });

    const resumed = await openEvents(baseUrl, seenA.id);
    const delivered = await resumed.next((event) => event.event === 'delivery' || event.event === 'outcome');
    expect(JSON.parse(delivered.data)).toMatchObject({ operationId: b.operationId, outcome: 'delivered' });
    const missed = await resumed.next((event) => event.event === 'outcome');
    expect(JSON.parse(missed.data)).toMatchObject({ operationId: b.operationId, outcome: 'done', reply: { noted: 'b' } });
    expect(Number(missed.id!.split('-')[1])).toBeGreaterThan(Number(seenA.id!.split('-')[1]));

    const lost = await openEvents(baseUrl, 'elsewhere-12');
    const reset = await lost.next(() => true);
    expect(reset.event).toBe('reset');
    expect(JSON.parse(reset.data)).toMatchObject({ reason: 'unknown-id', lastEventId: 'elsewhere-12', resumeFrom: missed.id });
  });
});
