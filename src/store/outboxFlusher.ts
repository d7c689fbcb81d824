/**
 * Drains the store's outbox to the cloud inbox, oldest first, in batches. Each event is sent with its own id as the
 * Service Bus messageId, so a batch resent after a crash or a lost acknowledgement is dropped by duplicate detection
 * (and by the cloud's correlation). While Service Bus is unreachable it retries with a doubling wait; nothing leaves
 * the outbox until Service Bus accepted it.
 */
import { Subject, type Observable } from 'rxjs';
import type { OutgoingQueueMessage, QueueSender } from '../channels/servicebus/serviceBusConnection.js';
import { Backoff } from '../core/backoff.js';
import type { StorelinkError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { OutboxEvent } from './outbox.js';


export interface DrainableOutbox {
  peek(limit: number): OutboxEvent[];
  acknowledge(ids: readonly string[]): Promise<void>;
  readonly size: number;
}

export interface OutboxFlusherOptions {
  outbox: DrainableOutbox;
  sender: Pick<QueueSender, 'send'>;
  batchSize?: number;
  initialRetryDelayInMs?: number;
  maxRetryDelayInMs?: number;
  logger?: Logger;
}

export type OutboxFlusherEvent = { type: 'flushed'; count: number; pending: number } | { type: 'error'; error: StorelinkError; retryInMs: number };

/** The Service Bus message for an outbox event: the whole event as the body, routing facts as properties. */
export function toInboxMessage(event: OutboxEvent): OutgoingQueueMessage {
  return {
    messageId: event.id,
    body: event,
    subject: event.kind,
    ...(event.correlationId === undefined ? {} : { correlationId: event.correlationId }),
    applicationProperties: { storeId: event.storeId, kind: event.kind, type: event.type },
  };
}

export class OutboxFlusher {
  readonly #options: OutboxFlusherOptions;
  readonly #events = new Subject<OutboxFlusherEvent>();
  readonly #logger: Logger;
  #wake: (() => void) | undefined;
  #running: Promise<void> | undefined;
  #stopping = false;

  constructor(options: OutboxFlusherOptions) {
    this.#options = options;
    this.#logger = (options.logger ?? silentLogger).child({ component: 'outbox' });
  }

  get events$(): Observable<OutboxFlusherEvent> {
    return this.#events.asObservable();
  }

  start(): void {
    this.#running ??= this.#loop();
  }

  /** Something was appended: send it now rather than at the next retry. */
  notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async #sleep(ms: number | undefined): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
  }

  async #loop(): Promise<void> {
    const batchSize = this.#options.batchSize ?? 100;
    const backoff = new Backoff({ initialInMs: this.#options.initialRetryDelayInMs ?? 200, maxInMs: this.#options.maxRetryDelayInMs ?? 30_000 });
    while (!this.#stopping) {
      const batch = this.#options.outbox.peek(batchSize);
      if (batch.length === 0) {
        await this.#sleep(undefined);
        continue;
      }
      try {
        await this.#options.sender.send(batch.map(toInboxMessage));
        await this.#options.outbox.acknowledge(batch.map((event) => event.id));
        backoff.reset();
        this.#events.next({ type: 'flushed', count: batch.length, pending: this.#options.outbox.size });
      } catch (error) {
        const failure = error as StorelinkError;
        const wait = backoff.next();
        this.#logger.info({ err: failure, retryInMs: wait, pending: this.#options.outbox.size }, 'outbox flush failed; will retry');
        this.#events.next({ type: 'error', error: failure, retryInMs: wait });
        // Appends do not cut a back-off short: only the timer (or close) ends it.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          this.#wake = undefined;
          this.#stopWaiting = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#stopWaiting = undefined;
      }
    }
  }

  #stopWaiting: (() => void) | undefined;

  /** Stops after the batch in flight; what is still pending stays in the outbox for the next start. */
  async close(): Promise<void> {
    this.#stopping = true;
    this.notify();
    this.#stopWaiting?.();
    await this.#running;
    this.#events.complete();
  }
}
