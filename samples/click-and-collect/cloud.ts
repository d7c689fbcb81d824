/**
 * The cloud side of the click-and-collect sample: publishes instant orders (real time, through the store's relay)
 * and a price update (asynchronous, through its queue), and prints each delivery.
 *
 *   node --import tsx samples/click-and-collect/cloud.ts
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
try {
  for (const [orderId, sku, quantity] of [
    ['CC-1001', 'SKU-COFFEE-1KG', 2],
    ['CC-1002', 'SKU-KETTLE', 1],
    ['CC-1003', 'SKU-KETTLE', 9],
  ] as const) {
    const delivery = await dispatcher.publish(
      { storeId: 'paris-1', type: 'clickAndCollect.order', payload: { orderId, customer: 'Ada Lovelace', lines: [{ sku, quantity }] } },
      { awaitReplyInMs: 10_000 },
    );
    console.log(`${orderId}: ${delivery.outcome} via ${delivery.channel ?? 'nothing'}`, delivery.reply ?? delivery.rejection ?? '', delivery.fallbackReason ? `(fallback: ${delivery.fallbackReason})` : '');
  }
  const prices = await dispatcher.publish({ storeId: 'paris-1', type: 'price.update', payload: { prices: { 'SKU-KETTLE': 35.9 } } });
  console.log(`price.update: ${prices.outcome} via ${prices.channel}`);
} finally {
  await dispatcher.close();
}
