/**
 * The cloud's senders to each store, made on first use and reused: one relay sender per store, one queue sender per
 * queue. Each kind is bounded (the least recently used is closed past `maxRelaySenders` / `maxQueueSenders`): a relay
 * sender holds about a kilobyte of heap, so one per store of a large chain would be the dispatcher's largest cost,
 * and a closed one is made again on next use (a parse of the connection string and a fresh SAS token).
 */
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
  /** Relay senders kept open at most; default `DEFAULT_MAX_SENDERS`. */
  maxRelaySenders?: number;
  /** Queue senders kept open at most; default `DEFAULT_MAX_SENDERS`. */
  maxQueueSenders?: number;
}

export const DEFAULT_MAX_SENDERS = 1_000;

/**
 * A queue sender that, closed to make room, closes the SDK's sender only once its sends in flight are done (the SDK
 * would fail them): a relay sender already lets its calls finish.
 */
class DrainingQueueSender implements QueueSender {
  readonly #sender: QueueSender;
  #inFlight = 0;
  #closing: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  constructor(sender: QueueSender) {
    this.#sender = sender;
  }

  async send(messages: Parameters<QueueSender['send']>[0], options?: Parameters<QueueSender['send']>[1]): Promise<void> {
    // A caller that took the sender just before it was closed still sends: the closing waits for it.
    this.#inFlight += 1;
    try {
      await this.#sender.send(messages, options);
    } finally {
      this.#inFlight -= 1;
      if (this.#inFlight === 0) this.#drained?.();
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
      await this.#sender.close();
    })();
    return this.#closing;
  }
}

function bound(value: number | undefined, name: string): number {
  const bounded = value ?? DEFAULT_MAX_SENDERS;
  if (!Number.isInteger(bounded) || bounded < 1) throw new RangeError(`StoreSenders: ${name} must be a whole number, at least 1`);
  return bounded;
}

export class StoreSenders {
  readonly #options: StoreSendersOptions;
  /** In order of last use, least recent first. */
  readonly #relay = new Map<string, RelaySender>();
  readonly #queue = new Map<string, QueueSender>();
  readonly #maxRelay: number;
  readonly #maxQueue: number;
  /** Senders closed to make room, still finishing their calls: close() waits for them. */
  readonly #closing = new Set<Promise<void>>();

  constructor(options: StoreSendersOptions) {
    this.#options = options;
    this.#maxRelay = bound(options.maxRelaySenders, 'maxRelaySenders');
    this.#maxQueue = bound(options.maxQueueSenders, 'maxQueueSenders');
  }

  /** Senders open now, by kind. */
  get openSenders(): { relay: number; queue: number } {
    return { relay: this.#relay.size, queue: this.#queue.size };
  }

  /** The sender under `key`, marked most recently used. */
  #reuse<Sender>(senders: Map<string, Sender>, key: string): Sender | undefined {
    const sender = senders.get(key);
    if (sender !== undefined) {
      senders.delete(key);
      senders.set(key, sender);
    }
    return sender;
  }

  /** Keeps `sender` as the most recently used, closing the least recently used past `max`. */
  #keep<Sender extends { close(): Promise<void> }>(senders: Map<string, Sender>, key: string, sender: Sender, max: number): void {
    senders.set(key, sender);
    while (senders.size > max) {
      const [oldest, evicted] = senders.entries().next().value as [string, Sender];
      senders.delete(oldest);
      // Calls in flight on it finish; a failure to close is not the caller's.
      const closing = evicted.close().catch(() => undefined);
      this.#closing.add(closing);
      void closing.then(() => this.#closing.delete(closing));
    }
  }

  #store(storeId: string): StoreAddress {
    const store = this.#options.stores.get(storeId);
    if (store === undefined) throw new StorelinkError('STORE_UNKNOWN', `unknown store "${storeId}"`, { field: 'storeId' });
    return store;
  }

  relay(storeId: string): RelaySender {
    let sender = this.#reuse(this.#relay, storeId);
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
      this.#keep(this.#relay, storeId, sender, this.#maxRelay);
    }
    return sender;
  }

  /** Closes the relay senders (their keep-alive connections); the queue senders close with their connection. */
  async close(): Promise<void> {
    await Promise.all([...this.#relay.values()].map((sender) => sender.close()));
    this.#relay.clear();
    await Promise.all([...this.#closing]);
  }

  queue(storeId: string): QueueSender {
    const queue = this.#store(storeId).queue ?? defaultStoreEntityName(storeId);
    let sender = this.#reuse(this.#queue, queue);
    if (sender === undefined) {
      sender = new DrainingQueueSender(this.#options.connection.createSender(queue));
      this.#keep(this.#queue, queue, sender, this.#maxQueue);
    }
    return sender;
  }
}
