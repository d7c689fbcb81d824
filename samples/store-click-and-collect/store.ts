/**
 * The sample store as a storelink store module: `storelink store --config store.json` with
 * `"module": "samples/store-click-and-collect/store.ts"` loads it, and so can code via `createStore`.
 */
import path from 'node:path';
import type { StoreModuleContext, StoreModule } from '../../src/store/storeModule.js';
import { EXPOSED_TYPES, createClickAndCollectHandlers } from './handlers.js';
import { openInventory } from './inventory.js';

export async function createStore(context: StoreModuleContext): Promise<StoreModule> {
  const inventory = await openInventory(path.join(context.dataDir, 'inventory'));
  return { handlers: createClickAndCollectHandlers(inventory), expose: [...EXPOSED_TYPES] };
}
