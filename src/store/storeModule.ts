/**
 * A store module is what a retailer writes: its operation handlers and which of them the relay publishes.
 * `storelink store` loads one (a .ts or .js file) that exports `createStore(context)`.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { StorelinkError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { importUserModule } from '../userModules.js';
import type { OperationHandlers } from './executor.js';

export interface StoreModuleContext {
  storeId: string;
  /** The store's data directory; the module may keep its own files below it. */
  dataDir: string;
  logger: Logger;
}

export interface StoreModule {
  handlers: OperationHandlers;
  /** Operation types published on the relay (when the store has one). */
  expose?: readonly string[];
  /** Releases what createStore opened. */
  close?(): Promise<void>;
}

export type CreateStore = (context: StoreModuleContext) => Promise<StoreModule> | StoreModule;

export async function loadStoreModule(file: string): Promise<CreateStore> {
  if (!existsSync(file)) throw new StorelinkError('FILE_NOT_FOUND', `${file}: no such store module`);
  let exports: Record<string, unknown>;
  try {
    exports = await importUserModule(path.resolve(file));
  } catch (cause) {
    throw new StorelinkError('FILE_UNREADABLE', `${file}: the store module failed to load: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
  const createStore = exports['createStore'];
  if (typeof createStore !== 'function') {
    throw new StorelinkError('FILE_UNREADABLE', `${file}: a store module must export "createStore(context)"`);
  }
  return createStore as CreateStore;
}
