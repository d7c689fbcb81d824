/**
 * A store process of the whole-path benchmark: for each of its stores, a storelink store agent (queue consumer,
 * relay listener, executor, ledger, outbox, signatures, pino at the CLI's default level into a file) and beside it the
 * raw parts a careful engineer writes by hand: a bare hyco-https listener answering the same result, and a
 * @azure/service-bus receiver (subscribe, one message at a time, as the store agent's queue) that completes each
 * message and sends the reply to the raw inbox when the message asks for one.
 */
import path from 'node:path';
import { ServiceBusClient, type ServiceBusSender } from '@azure/service-bus';
import { pino, destination } from 'pino';
import WebSocket from 'ws';
import { z } from 'zod';
import type { Logger } from '../../src/core/logger.js';
import { ANSWER_SIGNATURE_HEADER, signatureHeaderOf } from '../../src/channels/relay/relayProtocol.js';
import { Signer, Verifier, operationSignedFields, relayAnswerSignedFields, storeMessageSignedFields } from '../../src/core/signing.js';
import { defineHandler } from '../../src/store/executor.js';
import { createStoreAgent, type StoreAgent } from '../../src/store/storeAgent.js';
import { disableNagleOnAmqpSockets } from '../../src/channels/servicebus/amqpSockets.js';
import {
  ECHO_TYPE,
  ONE_WAY_TYPE,
  RAW_INBOX,
  SIGNED_HEADER,
  echoResult,
  failOnError,
  rawEntity,
  tell,
  wallClockMs,
  type Endpoints,
  type ParentToChild,
  type StoreSetup,
} from './protocol.js';

// The raw SDK as a careful engineer uses it over AMQP: Nagle off on its sockets, as storelink's own clients have it
// (src/channels/servicebus/amqpSockets.ts; without it a send after a completion waits ~43 ms). Before any client exists.
disableNagleOnAmqpSockets();

const payloadSchema = z.object({ n: z.number(), skus: z.array(z.string()), note: z.string() });
const closeables: (() => Promise<void>)[] = [];

function keyOf(connectionString: string): { keyName: string; key: string } {
  const fields = Object.fromEntries(connectionString.split(';').map((part) => [part.slice(0, part.indexOf('=')), part.slice(part.indexOf('=') + 1)]));
  return { keyName: fields['SharedAccessKeyName']!, key: fields['SharedAccessKey']! };
}

function rawClient(endpoints: Endpoints): ServiceBusClient {
  // The CA reaches the SDK's WebSockets through NODE_EXTRA_CA_CERTS, set by the parent for this process.
  return endpoints.transport === 'tls-websockets'
    ? new ServiceBusClient(endpoints.serviceBus, { webSocketOptions: { webSocket: WebSocket } })
    : new ServiceBusClient(endpoints.serviceBus);
}

async function startRaw(storeId: string, setup: StoreSetup): Promise<void> {
  const { endpoints } = setup;
  const own = setup.storeKeys[storeId]!;
  const signer = new Signer({ keyId: own.keyId, privateKey: own.privateKeyPem }, 'store-message', 'bench raw listener');
  const answerSigner = new Signer({ keyId: own.keyId, privateKey: own.privateKeyPem }, 'relay-answer', 'bench raw listener');
  const verifier = new Verifier({ [setup.cloudKey.keyId]: setup.cloudKey.publicKeyPem }, 'operation', 'bench raw listener');
  // Loaded only now: storelink's relay listener must be the first to load hyco-https (it routes its WebSockets for
  // tls.caFile); the raw listener trusts the CA through NODE_EXTRA_CA_CERTS instead.
  const { default: hycoHttps } = await import('hyco-https');
  const { keyName, key } = keyOf(endpoints.relay);
  const uri = `${endpoints.relayListenBase}/$hc/${rawEntity(storeId)}?sb-hc-action=listen`;
  const server = hycoHttps.createRelayedServer({ server: uri, token: () => hycoHttps.createRelayToken(uri, keyName, key) }, (request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const operation = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: string; type: string; payload: { n: number; skus: string[] }; signature?: unknown };
      response.setHeader('content-type', 'application/json');
      const result = echoResult(operation.payload);
      if (request.headers[SIGNED_HEADER] === undefined) {
        response.end(JSON.stringify({ result }));
        return;
      }
      // The design's signatures on this path and nothing else: the operation's is checked, and the answer is signed for
      // the call (README "Signatures": a relay credential alone must not answer for the store).
      const check = verifier.verify(operationSignedFields(operation), operation.signature);
      if (!check.valid) {
        response.statusCode = 403;
        response.end(JSON.stringify({ error: check.message }));
        return;
      }
      const text = JSON.stringify({ result });
      response.setHeader(ANSWER_SIGNATURE_HEADER, signatureHeaderOf(answerSigner.sign(relayAnswerSignedFields(storeId, operation.id, 200, text))));
      response.end(text);
    });
  });
  await new Promise<void>((resolve) => {
    server.once('listening', () => resolve());
    server.listen();
  });
  closeables.push(() => new Promise<void>((resolve) => {
    server.close();
    resolve();
  }));

  const client = rawClient(endpoints);
  const receiver = client.createReceiver(rawEntity(storeId));
  const replies: ServiceBusSender = client.createSender(RAW_INBOX);
  const subscription = receiver.subscribe(
    {
      processMessage: async (message) => {
        const operation = message.body as { id: string; type: string; payload: { n: number; skus: string[] }; signature?: unknown };
        const signed = message.applicationProperties?.[SIGNED_HEADER] === true;
        if (signed) {
          const check = verifier.verify(operationSignedFields(operation), operation.signature);
          if (!check.valid) {
            await receiver.deadLetterMessage(message, { deadLetterReason: 'bad-signature', deadLetterErrorDescription: check.message });
            return;
          }
        }
        if (operation.type === ONE_WAY_TYPE) tell({ type: 'executed', operationId: operation.id, atMs: wallClockMs() });
        const result = echoResult(operation.payload);
        await receiver.completeMessage(message);
        if (signed) {
          // The design's answer: signed, and sent for a one-way operation too.
          const reply = { id: `reply-${operation.id}`, kind: 'reply', type: operation.type, storeId, correlationId: operation.id, body: { result }, createdAt: new Date().toISOString() };
          await replies.sendMessages({
            messageId: reply.id,
            correlationId: operation.id,
            body: { ...reply, signature: signer.sign(storeMessageSignedFields(reply)) },
            applicationProperties: { [SIGNED_HEADER]: true },
          });
        } else if (message.replyTo !== undefined) {
          await replies.sendMessages({ messageId: `reply-${operation.id}`, correlationId: operation.id, body: { result } });
        }
      },
      processError: () => Promise.resolve(),
    },
    { autoCompleteMessages: false, maxConcurrentCalls: 1 },
  );
  closeables.push(async () => {
    await subscription.close();
    await client.close();
  });
}

async function startAgent(storeId: string, setup: StoreSetup, logger: Logger): Promise<StoreAgent> {
  const { endpoints } = setup;
  const own = setup.storeKeys[storeId]!;
  const agent = createStoreAgent({
    storeId,
    handlers: {
      [ECHO_TYPE]: defineHandler(payloadSchema, (payload) => echoResult(payload)),
      [ONE_WAY_TYPE]: defineHandler(payloadSchema, (payload, context) => {
        tell({ type: 'executed', operationId: context.operation.id, atMs: wallClockMs() });
        return echoResult(payload);
      }),
    },
    expose: [ECHO_TYPE],
    serviceBus: {
      connectionString: endpoints.serviceBus,
      transport: endpoints.transport === 'tls-websockets' ? 'websockets' : 'amqp',
    },
    relay: { connectionString: endpoints.relay },
    proxy: false,
    ...(endpoints.caFile === undefined ? {} : { tls: { caFile: endpoints.caFile } }),
    dataDir: path.join(setup.dataDir, storeId),
    signing: { keyId: own.keyId, privateKey: own.privateKeyPem },
    trustedCloudKeys: { [setup.cloudKey.keyId]: setup.cloudKey.publicKeyPem },
    logger,
  });
  if (process.env['BENCH_DEBUG'] === '1') agent.state$.subscribe((state) => process.stderr.write(`${storeId} ${JSON.stringify(state)}\n`));
  await agent.start();
  // Listening on the relay before the benchmark starts.
  await new Promise<void>((resolve) => {
    const subscription = agent.state$.subscribe((state) => {
      if (state.relay === 'listening') {
        resolve();
        queueMicrotask(() => subscription.unsubscribe());
      }
    });
  });
  closeables.push(() => agent.close());
  return agent;
}

process.on('message', (message: ParentToChild) => {
  if (message.type === 'setup-stores') {
    void (async () => {
      const { setup } = message;
      const logger = pino({ name: 'storelink-store', level: 'info' }, destination({ dest: path.join(setup.dataDir, `store-${process.pid}.log`), mkdir: true }));
      // A few at a time: 50 agents connecting at once would only measure the emulator's start-up.
      for (let i = 0; i < setup.storeIds.length; i += 10) {
        await Promise.all(setup.storeIds.slice(i, i + 10).map(async (storeId) => {
          await startAgent(storeId, setup, logger);
          if (process.env['BENCH_DEBUG'] === '1') process.stderr.write(`${storeId}: agent up\n`);
          if (setup.raw !== false) await startRaw(storeId, setup);
          if (process.env['BENCH_DEBUG'] === '1') process.stderr.write(`${storeId}: raw up\n`);
        }));
      }
      tell({ type: 'ready' });
    })().catch(failOnError);
  } else if (message.type === 'stop') {
    void (async () => {
      for (const close of closeables.reverse()) await close().catch(() => undefined);
      process.exit(0);
    })();
  }
});
