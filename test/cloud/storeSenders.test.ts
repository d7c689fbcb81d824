import { describe, expect, it } from 'vitest';
import type { QueueSender, ServiceBusConnection } from '../../src/channels/servicebus/serviceBusConnection.js';
import { StoreSenders, type StoreAddress } from '../../src/cloud/storeSenders.js';

const RELAY = 'Endpoint=sb://relay.example.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0LWtleS1mb3ItdGVzdHM=';

/** Queue senders as the connection made them, each recording its sends and whether it was closed. */
function fakeConnection() {
  const made: { queue: string; closed: boolean; pending: (() => void)[] }[] = [];
  const connection = {
    createSender: (queue: string): QueueSender => {
      const record = { queue, closed: false, pending: [] as (() => void)[] };
      made.push(record);
      return {
        send: () => new Promise<void>((resolve) => record.pending.push(resolve)),
        close: () => {
          record.closed = true;
          return Promise.resolve();
        },
      };
    },
  } as unknown as ServiceBusConnection;
  return { connection, made };
}

function senders(options: { maxRelaySenders?: number; maxQueueSenders?: number }) {
  const stores = new Map<string, StoreAddress>(['a', 'b', 'c'].map((storeId) => [storeId, { storeId }]));
  const { connection, made } = fakeConnection();
  const fetch = () => Promise.reject(new Error('no call in this test'));
  return { senders: new StoreSenders({ stores, connection, relay: { connectionString: RELAY, fetch }, now: Date.now, ...options }), made };
}

describe('store senders', () => {
  it('keeps at most maxRelaySenders relay senders, closing the least recently used, and makes one again on use', async () => {
    const { senders: all } = senders({ maxRelaySenders: 2 });
    const a = all.relay('a');
    const b = all.relay('b');
    expect(all.relay('a')).toBe(a);
    all.relay('c');
    expect(all.openSenders.relay).toBe(2);
    expect(all.relay('a')).toBe(a);
    expect(all.relay('b')).not.toBe(b);
    await all.close();
    expect(all.openSenders.relay).toBe(0);
  });

  it('closes an evicted queue sender only once its sends in flight are done', async () => {
    const { senders: all, made } = senders({ maxQueueSenders: 1 });
    const sending = all.queue('a').send({ messageId: '1', body: {} });
    all.queue('b');
    expect(made.map(({ queue }) => queue)).toEqual(['store-a', 'store-b']);
    await Promise.resolve();
    expect(made[0]!.closed).toBe(false);
    made[0]!.pending[0]!();
    await sending;
    const closed = all.close();
    await closed;
    expect(made[0]!.closed).toBe(true);
    expect(made[1]!.closed).toBe(false);
  });

  it('refuses a bound below one', () => {
    expect(() => senders({ maxRelaySenders: 0 })).toThrow(RangeError);
  });
});
