/**
 * An answer through the relay counts only if the store's key signed it for that very call. Whoever holds a store's
 * relay credential can listen on its hybrid connection and answer the cloud's calls; such an answer, unsigned, signed
 * with another key, or a genuine signature lifted from another answer, settles nothing: the operation takes its
 * fallback (the queue here), and the real store runs it from there, once. Real SDKs, the emulators on 127.0.0.1.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { filter, firstValueFrom } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ANSWER_SIGNATURE_HEADER, STORE_ORIGIN_HEADER, signatureHeaderOf } from '../../src/channels/relay/relayProtocol.js';
import { createDispatcher, type Dispatcher, type OperationOutcome } from '../../src/cloud/dispatcher.js';
import { parsePolicy } from '../../src/core/policy.js';
import { Signer, relayAnswerSignedFields } from '../../src/core/signing.js';
import { startEmulators, type Emulators } from '../../src/emulator/startEmulators.js';
import { defineHandler } from '../../src/store/executor.js';
import { createStoreAgent } from '../../src/store/storeAgent.js';
import { Closeables, readBody, startListener } from '../emulator/relay/relayTestKit.js';
import { oneStoreDispatcherOptions } from '../support/emulatorDispatcher.js';
import { storeKey, storeSigningOptions, strangerKey } from '../support/signingKeys.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

const RETRY = { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 3_000 };
const STORE_ID = 'nantes-4';
const POLICY = parsePolicy({ operations: { 'instant.order': { latency: 'realtime', fallback: 'queue' } } });
const FORGED = JSON.stringify({ result: { accepted: 'forged' } });

/** How the rogue listener signs what it answers: not at all, with a key the cloud does not trust, or with the store's. */
type Signing = (operationId: string, status: number, body: string) => string | undefined;

interface World {
  azure: Emulators;
  cloud: Dispatcher;
  /** The operation ids the rogue listener was asked. */
  asked: string[];
  outcomes: OperationOutcome[];
}

async function world(sign: Signing, body: (operationId: string) => string = () => FORGED): Promise<World> {
  const azure = await startEmulators({
    namespaces: [{ queues: [{ name: `store-${STORE_ID}`, lockDurationInMs: 2_000 }, { name: 'cloud-inbox', requiresDuplicateDetection: true }] }],
    hybridConnections: [{ name: `store-${STORE_ID}` }],
  });
  closeables.add(() => azure.close());
  const asked: string[] = [];
  // Listening with a relay credential, as a stolen one would: it answers health checks and every operation.
  await startListener(closeables, azure.relay, `store-${STORE_ID}`, (request: IncomingMessage, response: ServerResponse) => {
    void readBody(request).then((raw) => {
      response.setHeader(STORE_ORIGIN_HEADER, 'store');
      response.setHeader('content-type', 'application/json');
      if (request.url?.endsWith('/health') === true) {
        response.end(JSON.stringify({ result: { status: 'ok' } }));
        return;
      }
      const operationId = (JSON.parse(raw.toString('utf8')) as { id: string }).id;
      asked.push(operationId);
      const text = body(operationId);
      const signature = sign(operationId, 200, text);
      if (signature !== undefined) response.setHeader(ANSWER_SIGNATURE_HEADER, signature);
      response.end(text);
    });
  });
  const cloud = createDispatcher(oneStoreDispatcherOptions(azure, { storeId: STORE_ID, policy: POLICY, retry: RETRY }));
  closeables.add(() => cloud.close());
  const outcomes: OperationOutcome[] = [];
  cloud.outcomes$.subscribe((outcome) => outcomes.push(outcome));
  await cloud.start();
  return { azure, cloud, asked, outcomes };
}

/** The real store, on the queue only: it runs what fell back there. */
async function realStore(azure: Emulators, executed: string[]): Promise<void> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-answers-'));
  closeables.add(() => rm(dataDir, { recursive: true, force: true }));
  const agent = createStoreAgent({
    storeId: STORE_ID,
    ...storeSigningOptions(STORE_ID),
    handlers: {
      'instant.order': defineHandler(z.object({ orderId: z.string() }), ({ orderId }, context) => {
        executed.push(context.operation.id);
        return { accepted: orderId };
      }),
    },
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: RETRY },
    dataDir,
  });
  closeables.add(() => agent.close());
  await agent.start();
}

const signWith = (signer: Signer): Signing => (operationId, status, body) => signatureHeaderOf(signer.sign(relayAnswerSignedFields(STORE_ID, operationId, status, body)));
const storeSigner = () => new Signer({ keyId: storeKey(STORE_ID).keyId, privateKey: storeKey(STORE_ID).privateKey }, 'relay-answer', 'test');

describe('an answer through the relay counts only if the store signed it for that call', () => {
  it.each([
    ['unsigned', (): Signing => () => undefined],
    ['signed with a key the cloud does not trust for the store', (): Signing => {
      const stranger = strangerKey(storeKey(STORE_ID).keyId);
      return signWith(new Signer({ keyId: stranger.keyId, privateKey: stranger.privateKey }, 'relay-answer', 'test'));
    }],
    ['signed by the store as a message, not as a relay answer', (): Signing => (operationId, status, body) => {
      const asMessage = new Signer({ keyId: storeKey(STORE_ID).keyId, privateKey: storeKey(STORE_ID).privateKey }, 'store-message', 'test');
      return signatureHeaderOf(asMessage.sign(relayAnswerSignedFields(STORE_ID, operationId, status, body)));
    }],
    ["the store's genuine signature of another operation's answer", (): Signing => (_operationId, status, body) => signWith(storeSigner())('7f2b7c44-52c3-4a43-9d1e-51d9d3b1a0c2', status, body)],
    ["the store's genuine signature of another status", (): Signing => (operationId, _status, body) => signWith(storeSigner())(operationId, 422, body)],
  ])('refuses an answer %s: the operation falls back to the queue and the real store runs it once', async (_name, signing) => {
    const { azure, cloud, asked, outcomes } = await world(signing());
    const delivery = await cloud.publish({ storeId: STORE_ID, type: 'instant.order', payload: { orderId: 'CC-1' } });
    // The relay was tried and its answer refused: nothing of the forged answer reached the caller.
    expect(asked).toEqual([delivery.operationId]);
    expect(delivery).toMatchObject({ channel: 'queue', outcome: 'queued', fallbackReason: 'RELAY_ANSWER_UNVERIFIED', attempts: 2 });
    expect(JSON.stringify(delivery)).not.toContain('forged');
    expect(outcomes).toEqual([]);
    // The real store, back on the queue, runs it; its signed reply is the outcome.
    const executed: string[] = [];
    const outcome = firstValueFrom(cloud.outcomes$.pipe(filter((candidate) => candidate.operationId === delivery.operationId)));
    await realStore(azure, executed);
    expect(await outcome).toMatchObject({ operationId: delivery.operationId, outcome: 'done', channel: 'queue', reply: { accepted: 'CC-1' } });
    expect(executed).toEqual([delivery.operationId]);
  });

  it("refuses the store's genuine signature over another body", async () => {
    const genuine = JSON.stringify({ result: { accepted: 'CC-2' } });
    const { cloud } = await world((operationId, status) => signWith(storeSigner())(operationId, status, genuine), () => FORGED);
    const delivery = await cloud.publish({ storeId: STORE_ID, type: 'instant.order', payload: { orderId: 'CC-2' } });
    expect(delivery).toMatchObject({ channel: 'queue', outcome: 'queued', fallbackReason: 'RELAY_ANSWER_UNVERIFIED' });
  });

  it("takes an answer the store's key signed for that call (the control: the check is the key, not the listener)", async () => {
    const { cloud, asked } = await world(signWith(storeSigner()));
    const delivery = await cloud.publish({ storeId: STORE_ID, type: 'instant.order', payload: { orderId: 'CC-3' } });
    expect(asked).toEqual([delivery.operationId]);
    expect(delivery).toMatchObject({ channel: 'relay', outcome: 'delivered', reply: { accepted: 'forged' } });
  });
});
