/**
 * The sample store's operations: an instant click-and-collect order (a preparation ticket plus a stock reservation,
 * refused when stock is short), a query of the real stock, and an asynchronous price update.
 */
import { z } from 'zod';
import { defineHandler, rejectOperation, type OperationHandlers } from '../../src/store/executor.js';
import type { Inventory } from './inventory.js';

const sku = z.string().regex(/^[A-Z0-9-]{1,64}$/, 'must be an upper-case SKU code');

export const clickAndCollectOrderSchema = z.strictObject({
  orderId: z.string().min(1).max(64),
  customer: z.string().min(1).max(200),
  lines: z.array(z.strictObject({ sku, quantity: z.number().int().positive().max(1_000) })).min(1).max(100),
});

export const stockQuerySchema = z.strictObject({ skus: z.array(sku).min(1).max(500) });

export const priceUpdateSchema = z.strictObject({
  prices: z.record(sku, z.number().nonnegative().max(1_000_000)),
});

/** Published on the relay: the two operations that cannot wait for the queue. */
export const EXPOSED_TYPES = ['clickAndCollect.order', 'stock.query'] as const;

export function createClickAndCollectHandlers(inventory: Inventory): OperationHandlers {
  return {
    'clickAndCollect.order': defineHandler(clickAndCollectOrderSchema, (order, { operation }) =>
      inventory.applyOnce(operation.id, (data) => {
        const wanted = new Map<string, number>();
        for (const line of order.lines) wanted.set(line.sku, (wanted.get(line.sku) ?? 0) + line.quantity);
        const short = [...wanted].filter(([code, quantity]) => (data.stock[code] ?? 0) < quantity);
        if (short.length > 0) {
          throw rejectOperation(
            `insufficient stock: ${short.map(([code, quantity]) => `${code} (wanted ${quantity}, have ${data.stock[code] ?? 0})`).join(', ')}`,
          );
        }
        for (const [code, quantity] of wanted) data.stock[code] = data.stock[code]! - quantity;
        const ticket = {
          ticketId: `T-${operation.id.slice(0, 8)}`,
          orderId: order.orderId,
          customer: order.customer,
          lines: order.lines,
          status: 'to-prepare' as const,
          createdAt: operation.createdAt,
        };
        data.tickets.push(ticket);
        return { ticketId: ticket.ticketId, reserved: Object.fromEntries(wanted) };
      }),
    ),
    'stock.query': defineHandler(stockQuerySchema, ({ skus }) => {
      const { stock } = inventory.read();
      return { stock: Object.fromEntries(skus.map((code) => [code, stock[code] ?? 0])) };
    }),
    'price.update': defineHandler(priceUpdateSchema, ({ prices }, { operation }) =>
      inventory.applyOnce(operation.id, (data) => {
        Object.assign(data.prices, prices);
        return { updated: Object.keys(prices).length };
      }),
    ),
  };
}
