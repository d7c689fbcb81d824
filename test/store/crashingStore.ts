/**
 * A store process for the crash test: the sample click-and-collect store on the given Service Bus. It prints one JSON
 * line per executed operation. With `--freeze-after-execute` it stops dead right after the first execution is in the
 * ledger and before the queue message is completed, by blocking its only thread, so the parent can SIGKILL it exactly
 * there.
 *
 *   node --import tsx test/store/crashingStore.ts <serviceBusConnectionString> <dataDir> [--freeze-after-execute]
 */
import { writeSync } from 'node:fs';
import path from 'node:path';
import { createStoreAgent } from '../../src/store/storeAgent.js';
import { createClickAndCollectHandlers } from '../../samples/store-click-and-collect/handlers.js';
import { openInventory } from '../../samples/store-click-and-collect/inventory.js';
import { CLOUD_KEY, storeSigningOptions } from '../support/signingKeys.js';

const [connectionString, dataDir, mode] = process.argv.slice(2);
if (connectionString === undefined || dataDir === undefined) throw new TypeError('usage: crashingStore.ts <connectionString> <dataDir> [--freeze-after-execute]');

const inventory = await openInventory(path.join(dataDir, 'inventory'));
const agent = createStoreAgent({
  storeId: 'paris-1',
  // Signs with a key of its own; trusts the parent's cloud key (its operations are signed with it).
  signing: storeSigningOptions('paris-1').signing,
  trustedCloudKeys: { [CLOUD_KEY.keyId]: process.env['STORELINK_TEST_CLOUD_PUBLIC_KEY'] ?? '' },
  handlers: createClickAndCollectHandlers(inventory),
  serviceBus: { connectionString, retry: { maxRetries: 1, retryDelayInMs: 50, timeoutInMs: 3_000 } },
  dataDir,
});
agent.events$.subscribe((event) => {
  if (event.type !== 'executed' && event.type !== 'acknowledged' && event.type !== 'outbox.flushed') return;
  writeSync(1, `${JSON.stringify(event)}\n`);
  if (event.type === 'executed' && mode === '--freeze-after-execute') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
});
process.once('SIGTERM', () => void agent.close().then(() => process.exit(0)));
await agent.start();
writeSync(1, `${JSON.stringify({ type: 'started' })}\n`);
