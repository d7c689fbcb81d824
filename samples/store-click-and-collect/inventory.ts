/**
 * The sample store's own data: stock per SKU, prices, and the preparation tickets its click-and-collect counter works
 * from, in one lowdb JSON file. Every change records the operation id it applied in the same atomic write, so a
 * handler that runs again after a crash (before the store's ledger recorded it) finds its own effect and does not
 * apply it twice.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Low } from 'lowdb';
import { JSONFile } from 'lowdb/node';

export interface PreparationTicket {
  ticketId: string;
  orderId: string;
  customer: string;
  lines: { sku: string; quantity: number }[];
  status: 'to-prepare';
  createdAt: string;
}

export interface InventoryData {
  stock: Record<string, number>;
  prices: Record<string, number>;
  tickets: PreparationTicket[];
  /** Operation id → what applying it produced; the handler's own idempotency record. */
  applied: Record<string, unknown>;
}

export const DEMO_STOCK: Readonly<Record<string, number>> = Object.freeze({
  'SKU-COFFEE-1KG': 40,
  'SKU-TEA-GREEN': 25,
  'SKU-MUG-BLUE': 12,
  'SKU-KETTLE': 4,
  'SKU-FILTERS-100': 60,
});

export const DEMO_PRICES: Readonly<Record<string, number>> = Object.freeze({
  'SKU-COFFEE-1KG': 14.9,
  'SKU-TEA-GREEN': 6.5,
  'SKU-MUG-BLUE': 8,
  'SKU-KETTLE': 39,
  'SKU-FILTERS-100': 3.2,
});

export interface Inventory {
  read(): InventoryData;
  /** Applies `change` once per operation id; a repeat returns what the first application produced. */
  applyOnce<T>(operationId: string, change: (data: InventoryData) => T): Promise<T>;
}

export async function openInventory(dataDir: string, seed: { stock?: Record<string, number>; prices?: Record<string, number> } = {}): Promise<Inventory> {
  await mkdir(dataDir, { recursive: true });
  const db = new Low<InventoryData>(new JSONFile(path.join(dataDir, 'inventory.json')), {
    stock: { ...(seed.stock ?? DEMO_STOCK) },
    prices: { ...(seed.prices ?? DEMO_PRICES) },
    tickets: [],
    applied: {},
  });
  await db.read();
  // One change at a time: each handler's read-modify-write must see the previous one's result.
  let queue: Promise<unknown> = Promise.resolve();
  return {
    read: () => db.data,
    applyOnce<T>(operationId: string, change: (data: InventoryData) => T): Promise<T> {
      const next = queue.then(async () => {
        if (Object.hasOwn(db.data.applied, operationId)) return db.data.applied[operationId] as T;
        const draft = structuredClone(db.data);
        const result = change(draft);
        draft.applied[operationId] = result;
        db.data = draft;
        await db.write();
        return result;
      });
      queue = next.catch(() => undefined);
      return next;
    },
  };
}
