/** The cloud's senders to each store, made on first use and reused: one relay sender per store, one queue sender per queue. */
import { createRelaySender, type FetchFunction, type RelaySender, type RelaySenderOptions } from '../channels/relay/relaySender.js';
import type { QueueSender, ServiceBusConnection } from '../channels/servicebus/serviceBusConnection.js';
import { StorelinkError } from '../core/errors.js';
import { defaultStoreEntityName } from '../core/names.js';

export interface StoreAddress {
  storeId: string;
  /** Default `store-<storeId>`. */
  queue?: string;
  /** Default `store-<storeId>`. */
  hybridConnection?: string;
}

export interface StoreSendersOptions {
  stores: ReadonlyMap<string, StoreAddress>;
  connection: ServiceBusConnection;
  /** Absent: no store is reachable through the relay. */
  relay?: { connectionString: string; fetch?: FetchFunction } & Pick<RelaySenderOptions, 'proxy' | 'tls'>;
  now: () => number;
}

export class StoreSenders {
  readonly #options: StoreSendersOptions;
  readonly #relay = new Map<string, RelaySender>();
  readonly #queue = new Map<string, QueueSender>();

  constructor(options: StoreSendersOptions) {
    this.#options = options;
  }

  #store(storeId: string): StoreAddress {
    const store = this.#options.stores.get(storeId);
    if (store === undefined) throw new StorelinkError('STORE_UNKNOWN', `unknown store "${storeId}"`, { field: 'storeId' });
    return store;
  }

  relay(storeId: string): RelaySender {
    let sender = this.#relay.get(storeId);
    if (sender === undefined) {
      const relay = this.#options.relay;
      if (relay === undefined) throw new StorelinkError('RELAY_UNREACHABLE', 'the dispatcher has no relay connection string');
      sender = createRelaySender({
        connectionString: relay.connectionString,
        hybridConnection: this.#store(storeId).hybridConnection ?? defaultStoreEntityName(storeId),
        // An injected fetch decides its own route; the proxy and CA are for the built-in pool.
        ...(relay.fetch === undefined
          ? { ...(relay.proxy === undefined ? {} : { proxy: relay.proxy }), ...(relay.tls === undefined ? {} : { tls: relay.tls }) }
          : { fetch: relay.fetch }),
        now: this.#options.now,
      });
      this.#relay.set(storeId, sender);
    }
    return sender;
  }

  /** Closes the relay senders (their keep-alive connections); the queue senders close with their connection. */
  async close(): Promise<void> {
    await Promise.all([...this.#relay.values()].map((sender) => sender.close()));
    this.#relay.clear();
  }

  queue(storeId: string): QueueSender {
    const queue = this.#store(storeId).queue ?? defaultStoreEntityName(storeId);
    let sender = this.#queue.get(queue);
    if (sender === undefined) {
      sender = this.#options.connection.createSender(queue);
      this.#queue.set(queue, sender);
    }
    return sender;
  }
}
