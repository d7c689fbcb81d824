/**
 * The cloud's process of the whole-path benchmark: a storelink dispatcher as shipped (signatures, its Service Bus
 * connection and inbox, the relay sender, pino at the CLI's default level into a file), and beside it the raw parts a
 * careful engineer writes by hand: an undici Pool with a SAS token made once per store, the @azure/service-bus sender
 * per queue and a receiver on the raw inbox correlating replies by id. The parent asks for measurements one at a time.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { ServiceBusClient, type ServiceBusSender } from '@azure/service-bus';
import hycoHttps from 'hyco-https';
import { pino, destination } from 'pino';
import { Pool } from 'undici';
import WebSocket from 'ws';
import { createDispatcher, type Dispatcher } from '../../src/cloud/dispatcher.js';
import { createOperation } from '../../src/core/operation.js';
import { parsePolicy } from '../../src/core/policy.js';
import { ANSWER_SIGNATURE_HEADER, signatureFromHeader } from '../../src/channels/relay/relayProtocol.js';
import { Signer, Verifier, operationSignedFields, relayAnswerSignedFields, storeMessageSignedFields } from '../../src/core/signing.js';
import { percentile } from '../stats.js';
import { disableNagleOnAmqpSockets } from '../../src/channels/servicebus/amqpSockets.js';
import {
  ECHO_TYPE,
  ONE_WAY_TYPE,
  RAW_INBOX,
  SIGNED_HEADER,
  benchPayload,
  failOnError,
  rawEntity,
  tell,
  wallClockMs,
  type CloudSetup,
  type MeasureRequest,
  type Measurement,
  type ParentToChild,
} from './protocol.js';

// The raw SDK as a careful engineer uses it over AMQP: Nagle off on its sockets, as storelink's own clients have it
// (src/channels/servicebus/amqpSockets.ts; without it a send after a completion waits ~43 ms). Before any client exists.
disableNagleOnAmqpSockets();

const WAIT_LIMIT_IN_MS = 30_000;

interface Cloud {
  dispatcher: Dispatcher;
  storeIds: string[];
  pool: Pool;
  tokens: Map<string, string>;
  templates: Map<string, Record<string, unknown>>;
  /** The `signed` side's: the cloud's operation signer, and a verifier of each store's answers. */
  signer: Signer;
  storeVerifiers: Map<string, Verifier>;
  senders: Map<string, ServiceBusSender>;
  client: ServiceBusClient;
  close(): Promise<void>;
}

/** Waiters for a store's one-way run (stamped there) and for raw replies, by operation id. */
const executed = new Map<string, (atMs: number) => void>();
const rawReplies = new Map<string, () => void>();
/** Signed raw answers whose signature did not check out; a signed run that saw any fails. */
let refusedAnswers = 0;
let lastRefusal = '';

function waitFor<T>(map: Map<string, (value: T) => void>, id: string, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      map.delete(id);
      reject(new Error(`no ${what} for ${id} within ${WAIT_LIMIT_IN_MS} ms`));
    }, WAIT_LIMIT_IN_MS);
    map.set(id, (value) => {
      clearTimeout(timer);
      map.delete(id);
      resolve(value);
    });
  });
}

function keyOf(connectionString: string): { keyName: string; key: string } {
  const fields = Object.fromEntries(connectionString.split(';').map((part) => [part.slice(0, part.indexOf('=')), part.slice(part.indexOf('=') + 1)]));
  return { keyName: fields['SharedAccessKeyName']!, key: fields['SharedAccessKey']! };
}

async function setUp(setup: CloudSetup): Promise<Cloud> {
  const { endpoints } = setup;
  const logger = pino({ name: 'storelink-cloud', level: 'info' }, destination({ dest: path.join(setup.dataDir, 'cloud.log'), mkdir: true }));
  const dispatcher = createDispatcher({
    serviceBus: { connectionString: endpoints.serviceBus, transport: endpoints.transport === 'tls-websockets' ? 'websockets' : 'amqp' },
    relay: { connectionString: endpoints.relay },
    proxy: false,
    // A generous relay timeout: a slow call is measured as slow, not turned into a fallback to the queue.
    policy: parsePolicy({ operations: { [ECHO_TYPE]: { relayTimeoutInMs: WAIT_LIMIT_IN_MS } } }),
    ...(endpoints.caFile === undefined ? {} : { tls: { caFile: endpoints.caFile } }),
    stores: setup.storeIds.map((storeId) => ({
      storeId,
      bidirectional: true,
      publicKeys: { [setup.storeKeys[storeId]!.keyId]: setup.storeKeys[storeId]!.publicKeyPem },
    })),
    signing: { keyId: setup.cloudKey.keyId, privateKey: setup.cloudKey.privateKeyPem },
    dataDir: path.join(setup.dataDir, 'cloud'),
    logger,
  });
  await dispatcher.start();
  // Every link healthy (its store announced its relay) before anything is timed; the chart has no other event to wait on here.
  const deadline = Date.now() + 120_000;
  while (!setup.storeIds.every((storeId) => dispatcher.link(storeId).tags.includes('relay'))) {
    if (Date.now() > deadline) throw new Error('the stores did not all announce their relay within 120 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  const { keyName, key } = keyOf(endpoints.relay);
  const relayHost = new URL(endpoints.relayOrigin);
  const tokens = new Map(
    setup.storeIds.map((storeId) => [storeId, hycoHttps.createRelayToken(`http://${relayHost.host}/${rawEntity(storeId)}`, keyName, key, 3600)] as const),
  );
  const signer = new Signer({ keyId: setup.cloudKey.keyId, privateKey: setup.cloudKey.privateKeyPem }, 'operation', 'bench');
  const templates = new Map(
    setup.storeIds.map((storeId) => {
      const operation = createOperation({ storeId, type: ECHO_TYPE, payload: benchPayload(0), latency: 'realtime', timeToLiveInMs: 3_600_000 });
      return [storeId, { ...operation, signature: signer.sign(operationSignedFields(operation)) }] as const;
    }),
  );
  const pool = new Pool(endpoints.relayOrigin);
  const client =
    endpoints.transport === 'tls-websockets'
      ? new ServiceBusClient(endpoints.serviceBus, { webSocketOptions: { webSocket: WebSocket } })
      : new ServiceBusClient(endpoints.serviceBus);
  const senders = new Map(setup.storeIds.map((storeId) => [storeId, client.createSender(rawEntity(storeId))] as const));
  const inbox = client.createReceiver(RAW_INBOX);
  const storeVerifiers = new Map(
    setup.storeIds.map((storeId) => {
      const storeKey = setup.storeKeys[storeId]!;
      return [storeId, new Verifier({ [storeKey.keyId]: storeKey.publicKeyPem }, 'store-message', 'bench')] as const;
    }),
  );
  const subscription = inbox.subscribe(
    {
      processMessage: async (message) => {
        await inbox.completeMessage(message);
        // The signed side's answers (one-way outcomes too) are checked as the design checks them.
        const answer = message.body as { storeId?: string; signature?: unknown };
        if (message.applicationProperties?.[SIGNED_HEADER] === true) {
          const check = storeVerifiers.get(String(answer.storeId))?.verify(storeMessageSignedFields(answer), answer.signature);
          if (check?.valid !== true) {
            refusedAnswers += 1;
            lastRefusal = check?.valid === false ? check.message : `unknown store ${String(answer.storeId)}`;
            return;
          }
        }
        rawReplies.get(String(message.correlationId))?.();
      },
      processError: () => Promise.resolve(),
    },
    { autoCompleteMessages: false, maxConcurrentCalls: 16 },
  );
  return {
    dispatcher,
    storeIds: setup.storeIds,
    pool,
    tokens,
    templates,
    signer,
    storeVerifiers,
    senders,
    client,
    close: async () => {
      await subscription.close();
      await client.close();
      await pool.close();
      await dispatcher.close();
    },
  };
}

/** One call of a path; resolves with its latency in ms (for one-way: until the store stamped its run). */
function callOf(cloud: Cloud, request: MeasureRequest): (storeId: string, n: number) => Promise<number> {
  const { dispatcher } = cloud;
  const rawBody = (storeId: string, id: string, n: number, type: string) => JSON.stringify({ ...cloud.templates.get(storeId), id, type, payload: benchPayload(n) });
  const rawMessage = (storeId: string, id: string, n: number, type: string) => ({ ...cloud.templates.get(storeId), id, type, payload: benchPayload(n) });
  if (request.side === 'storelink') {
    if (request.path === 'realtime') {
      return async (storeId, n) => {
        const started = performance.now();
        const delivery = await dispatcher.publish({ storeId, type: ECHO_TYPE, payload: benchPayload(n), latency: 'realtime' });
        if (delivery.channel !== 'relay' || delivery.outcome !== 'delivered') throw new Error(`a real-time call went ${delivery.channel}/${delivery.outcome} (${delivery.fallbackReason ?? ''})`);
        return performance.now() - started;
      };
    }
    if (request.path === 'oneway') {
      return async (storeId, n) => {
        const id = randomUUID();
        const done = waitFor(executed, id, 'execution');
        const started = wallClockMs();
        const delivery = await dispatcher.publish({ id, storeId, type: ONE_WAY_TYPE, payload: benchPayload(n), latency: 'async' });
        if (delivery.outcome !== 'queued') throw new Error(`a one-way operation was ${delivery.outcome}`);
        return (await done) - started;
      };
    }
    return async (storeId, n) => {
      const started = performance.now();
      const delivery = await dispatcher.publish({ storeId, type: ECHO_TYPE, payload: benchPayload(n), latency: 'async' }, { awaitReplyInMs: WAIT_LIMIT_IN_MS });
      if (delivery.channel !== 'queue' || delivery.outcome !== 'delivered') throw new Error(`a queued request went ${delivery.channel}/${delivery.outcome}`);
      return performance.now() - started;
    };
  }
  if (request.path === 'realtime' && request.side === 'signed') {
    return async (storeId, n) => {
      const started = performance.now();
      const operation = { ...cloud.templates.get(storeId), id: randomUUID(), type: ECHO_TYPE, payload: benchPayload(n), createdAt: new Date().toISOString() };
      const response = await cloud.pool.request({
        path: `/${rawEntity(storeId)}/operations/${ECHO_TYPE}`,
        method: 'POST',
        headers: { ServiceBusAuthorization: cloud.tokens.get(storeId)!, 'content-type': 'application/json', [SIGNED_HEADER]: '1' },
        body: JSON.stringify({ ...operation, signature: cloud.signer.sign(operationSignedFields(operation)) }),
      });
      const text = await response.body.text();
      const signature = signatureFromHeader(response.headers[ANSWER_SIGNATURE_HEADER]);
      const check = cloud.storeVerifiers.get(storeId)!.verifyAs('relay-answer', relayAnswerSignedFields(storeId, operation.id, response.statusCode, text), signature);
      if (!check.valid) throw new Error(`the signed raw relay answer was refused: ${check.message}`);
      const answer = JSON.parse(text) as { result?: { ok?: boolean } };
      if (response.statusCode !== 200 || answer.result?.ok !== true) throw new Error(`the signed raw relay call answered ${response.statusCode}`);
      return performance.now() - started;
    };
  }
  if (request.path === 'realtime') {
    return async (storeId, n) => {
      const started = performance.now();
      const response = await cloud.pool.request({
        path: `/${rawEntity(storeId)}/operations/${ECHO_TYPE}`,
        method: 'POST',
        headers: { ServiceBusAuthorization: cloud.tokens.get(storeId)!, 'content-type': 'application/json' },
        body: rawBody(storeId, randomUUID(), n, ECHO_TYPE),
      });
      const answer = (await response.body.json()) as { result?: { ok?: boolean } };
      if (response.statusCode !== 200 || answer.result?.ok !== true) throw new Error(`the raw relay call answered ${response.statusCode}`);
      return performance.now() - started;
    };
  }
  // The signed side: a fresh operation signed per call, checked and answered with a signed message at the store.
  const signedMessage = (storeId: string, id: string, n: number, type: string) => {
    const operation = { ...rawMessage(storeId, id, n, type), createdAt: new Date().toISOString() };
    return { messageId: id, body: { ...operation, signature: cloud.signer.sign(operationSignedFields(operation)) }, replyTo: RAW_INBOX, applicationProperties: { [SIGNED_HEADER]: true } };
  };
  if (request.path === 'oneway') {
    return async (storeId, n) => {
      const id = randomUUID();
      const done = waitFor(executed, id, 'execution');
      const started = wallClockMs();
      const message = request.side === 'signed' ? signedMessage(storeId, id, n, ONE_WAY_TYPE) : { messageId: id, body: rawMessage(storeId, id, n, ONE_WAY_TYPE) };
      await cloud.senders.get(storeId)!.sendMessages(message);
      return (await done) - started;
    };
  }
  return async (storeId, n) => {
    const id = randomUUID();
    const replied = waitFor(rawReplies, id, 'raw reply');
    const started = performance.now();
    const message = request.side === 'signed' ? signedMessage(storeId, id, n, ECHO_TYPE) : { messageId: id, body: rawMessage(storeId, id, n, ECHO_TYPE), replyTo: RAW_INBOX };
    await cloud.senders.get(storeId)!.sendMessages(message);
    await replied;
    return performance.now() - started;
  };
}

async function measure(cloud: Cloud, request: MeasureRequest): Promise<Measurement> {
  const call = callOf(cloud, request);
  const stores = cloud.storeIds.slice(0, request.storeCount);
  let next = 0;
  let failures = 0;
  let lastFailure: string | undefined;
  const run = async (count: number, latencies: number[] | undefined) => {
    let issued = 0;
    await Promise.all(
      Array.from({ length: request.inFlight }, async () => {
        while (issued < count) {
          const n = issued++;
          try {
            const latency = await call(stores[next++ % stores.length]!, n);
            latencies?.push(latency);
          } catch (error) {
            // Counted and reported, not fatal: one fallback should not cost the whole run's figures.
            failures += 1;
            lastFailure = error instanceof Error ? error.message : String(error);
          }
        }
      }),
    );
  };
  const refusedBefore = refusedAnswers;
  await run(request.warmUp, undefined);
  failures = 0;
  const latencies: number[] = [];
  const started = performance.now();
  await run(request.count, latencies);
  const elapsed = performance.now() - started;
  if (latencies.length === 0) throw new Error(`every call failed (${failures}): ${lastFailure ?? ''}`);
  if (refusedAnswers > refusedBefore) throw new Error(`${refusedAnswers - refusedBefore} signed raw answers were refused: ${lastRefusal}`);
  return {
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    perSecond: (latencies.length / elapsed) * 1000,
    count: latencies.length,
    failures,
    ...(lastFailure === undefined ? {} : { lastFailure }),
  };
}

let cloud: Cloud | undefined;
process.on('message', (message: ParentToChild) => {
  if (message.type === 'setup-cloud') {
    void setUp(message.setup)
      .then((ready) => {
        cloud = ready;
        tell({ type: 'ready' });
      })
      .catch(failOnError);
  } else if (message.type === 'executed') {
    executed.get(message.operationId)?.(message.atMs);
  } else if (message.type === 'measure') {
    void measure(cloud!, message.request)
      .then((measurement) => tell({ type: 'measured', id: message.id, measurement }))
      .catch(failOnError);
  } else if (message.type === 'stop') {
    void (async () => {
      await cloud?.close().catch(() => undefined);
      process.exit(0);
    })();
  }
});
