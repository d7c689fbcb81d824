/**
 * The emulators' process of the whole-path benchmark: Service Bus and Relay with a queue and a hybrid connection per
 * store for storelink and for the raw parts, the cloud inbox and the raw parts' inbox, on one TLS port as the demo
 * runs them (or on the plaintext ports). Store ids come in BENCH_STORE_IDS, the transport in BENCH_TRANSPORT.
 * With BENCH_INSTANCES (cloud instance ids, for bench/instances.bench.ts) the cloud inbox is a topic with those
 * instances' subscriptions instead, and the raw parts' entities are left out.
 */
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { DEFAULT_CLOUD_INBOX } from '../../src/core/names.js';
import { inboxSubscriptions } from '../../src/cloud/inboxTopology.js';
import { RAW_INBOX, failOnError, rawEntity, storeQueue, tell, type Endpoints, type ParentToChild, type Transport } from './protocol.js';

const storeIds = (process.env['BENCH_STORE_IDS'] ?? '').split(',').filter((id) => id.length > 0);
const transport = (process.env['BENCH_TRANSPORT'] ?? 'tls-websockets') as Transport;
const instanceIds = (process.env['BENCH_INSTANCES'] ?? '').split(',').filter((id) => id.length > 0);
const queues =
  instanceIds.length === 0 ? [DEFAULT_CLOUD_INBOX, RAW_INBOX, ...storeIds.flatMap((id) => [storeQueue(id), rawEntity(id)])] : storeIds.map((id) => storeQueue(id));
// The several-instances inbox, as `storelink provision --instances` makes it (README "Several cloud instances").
const topics =
  instanceIds.length === 0
    ? []
    : [
        {
          name: DEFAULT_CLOUD_INBOX,
          requiresDuplicateDetection: true,
          subscriptions: inboxSubscriptions(instanceIds).map((subscription) => ({
            name: subscription.name,
            requiresSession: subscription.requiresSession,
            rules: [
              subscription.sqlFilter === undefined
                ? { name: 'storelink', correlationFilter: { applicationProperties: subscription.propertiesFilter ?? {} } }
                : { name: 'storelink', sqlFilter: subscription.sqlFilter },
            ],
          })),
        },
      ];

try {
  const emulators = await startEmulators({
    namespaces: [{ queues: queues.map((name) => ({ name })), topics }],
    hybridConnections: storeIds.flatMap((id) => (instanceIds.length === 0 ? [{ name: storeQueue(id) }, { name: rawEntity(id) }] : [{ name: storeQueue(id) }])),
    ...(transport === 'tls-websockets' ? { tlsPort: 0 } : {}),
  });
  const tls = emulators.tls;
  const endpoints: Endpoints =
    transport === 'tls-websockets' && tls !== undefined
      ? {
          transport,
          serviceBus: tls.serviceBusConnectionString(),
          relay: tls.relayConnectionString(),
          caFile: tls.caFile,
          relayOrigin: `https://localhost:${tls.port}`,
          relayListenBase: `wss://localhost:${tls.port}`,
        }
      : {
          transport,
          serviceBus: emulators.serviceBusConnectionString(),
          relay: emulators.relayConnectionString(),
          caFile: undefined,
          relayOrigin: `http://127.0.0.1:${emulators.relay.port}`,
          relayListenBase: `ws://127.0.0.1:${emulators.relay.port}`,
        };
  process.on('message', (message: ParentToChild) => {
    if (message.type === 'stop') void emulators.close().then(() => process.exit(0));
  });
  tell({ type: 'endpoints', endpoints, queueCount: queues.length });
} catch (error) {
  failOnError(error);
  process.exit(1);
}
