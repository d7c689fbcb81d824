/**
 * The emulators' process of the whole-path benchmark: Service Bus and Relay with a queue and a hybrid connection per
 * store for storelink and for the raw parts, the cloud inbox and the raw parts' inbox, on one TLS port as the demo
 * runs them (or on the plaintext ports). Store ids come in BENCH_STORE_IDS, the transport in BENCH_TRANSPORT.
 */
import { startEmulators } from '../../src/emulator/startEmulators.js';
import { DEFAULT_CLOUD_INBOX } from '../../src/core/names.js';
import { RAW_INBOX, failOnError, rawEntity, storeQueue, tell, type Endpoints, type ParentToChild, type Transport } from './protocol.js';

const storeIds = (process.env['BENCH_STORE_IDS'] ?? '').split(',').filter((id) => id.length > 0);
const transport = (process.env['BENCH_TRANSPORT'] ?? 'tls-websockets') as Transport;
const queues = [DEFAULT_CLOUD_INBOX, RAW_INBOX, ...storeIds.flatMap((id) => [storeQueue(id), rawEntity(id)])];

try {
  const emulators = await startEmulators({
    namespaces: [{ queues: queues.map((name) => ({ name })) }],
    hybridConnections: storeIds.flatMap((id) => [{ name: storeQueue(id) }, { name: rawEntity(id) }]),
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
