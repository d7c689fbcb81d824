/**
 * The `cached` fallback: a stock query every two seconds for a minute. Stop the store while it runs; the queries are
 * then served from the last reply, marked with its age, until the store is back.
 *
 *   node --import tsx samples/stock-query-cached/cloud.ts
 */
import { createDispatcher } from '../../src/cloud/dispatcher.js';
import { parsePolicy } from '../../src/core/policy.js';
import { RELAY, SERVICE_BUS, sampleCloudKeys } from '../connections.js';
import samplePolicy from '../policies/policy.json' with { type: 'json' };

const keys = sampleCloudKeys();
const dispatcher = createDispatcher({
  serviceBus: { connectionString: SERVICE_BUS },
  relay: { connectionString: RELAY },
  policy: parsePolicy(samplePolicy),
  stores: [{ storeId: 'paris-1', bidirectional: true, publicKeys: keys.paris1PublicKeys }],
  signing: keys.signing,
});
await dispatcher.start();
dispatcher.links$.subscribe((change) =>
  console.log(`  link ${change.storeId}: ${JSON.stringify(change.previousState ?? '-')} -> ${JSON.stringify(change.state)}`),
);
try {
  for (let round = 0; round < 30; round += 1) {
    const delivery = await dispatcher.publish({ storeId: 'paris-1', type: 'stock.query', payload: { skus: ['SKU-KETTLE', 'SKU-MUG-BLUE'] } });
    const age = delivery.cachedAgeInMs === undefined ? '' : ` (cached, ${(delivery.cachedAgeInMs / 1000).toFixed(1)} s old)`;
    console.log(`${new Date().toISOString()} ${delivery.outcome}${age}`, delivery.reply ?? delivery.rejection, delivery.fallbackReason ?? '');
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  }
} finally {
  await dispatcher.close();
}
