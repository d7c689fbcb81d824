/**
 * Drains the store's outbox to the cloud inbox, in the order the outbox gives, in batches. Each event is sent with
 * its own id as the Service Bus messageId, so a batch resent after a crash or a lost acknowledgement is dropped by
 * duplicate detection (and by the cloud's correlation). While Service Bus is unreachable it retries with a doubling
 * wait; nothing leaves the outbox until Service Bus accepted it, or until it is parked: when a batch fails for good,
 * its events are sent one by one, and one whose own send fails with a code that condemns the message
 * (PAYLOAD_TOO_LARGE: the inbox's limit is smaller than the store's) is parked and reported, so the rest go on.
 * A failure that is about the queue or the credentials (QUEUE_NOT_FOUND, SERVICE_BUS_UNAUTHORIZED) parks nothing:
 * every event would fail alike, so the flusher waits and retries as for an outage.
 */
import { Subject, type Observable } from 'rxjs';
import type { OutgoingQueueMessage, QueueSender } from '../channels/servicebus/serviceBusConnection.js';
import { Backoff } from '../core/backoff.js';
import { StorelinkError, isStorelinkError, isUnsendableMessage } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { OutboxEvent, ParkedEvent, ParkReason } from './outbox.js';

export interface DrainableOutbox {
  peek(limit: number): OutboxEvent[];
  acknowledge(ids: readonly string[]): Promise<void>;
  park(id: string, reason: ParkReason): Promise<ParkedEvent | undefined>;
  /** When events are held back from peek(): how long until the next one may go (see Outbox). */
  nextReleaseInMs?(): number | undefined;
  readonly size: number;
}

export interface OutboxFlusherOptions {
  outbox: DrainableOutbox;
  sender: Pick<QueueSender, 'send'>;
  /**
   * Signs an event the outbox keeps unsigned (a relay answer's copy, signed only if it is ever sent), just before it
   * is sent; events that carry a signature go as they are. Without it, every event goes as it is.
   */
  seal?: (event: OutboxEvent) => OutboxEvent;
  batchSize?: number;
  initialRetryDelayInMs?: number;
  maxRetryDelayInMs?: number;
  logger?: Logger;
}

export type OutboxFlusherEvent =
  | { type: 'flushed'; count: number; pending: number }
  | { type: 'error'; error: StorelinkError; retryInMs: number }
  | { type: 'parked'; event: OutboxEvent; error: StorelinkError; pending: number };

function asStorelinkError(error: unknown): StorelinkError {
  if (isStorelinkError(error)) return error;
  // A failed outbox write (disk full, say) is not Service Bus's fault, but it heals the same way: wait and retry.
  return new StorelinkError('UNEXPECTED_FAILURE', `outbox flush failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

/** The Service Bus message for an outbox event: the whole event as the body, routing facts as properties. */
export function toInboxMessage(event: OutboxEvent): OutgoingQueueMessage {
  return {
    messageId: event.id,
    body: event,
    subject: event.kind,
    ...(event.correlationId === undefined ? {} : { correlationId: event.correlationId }),
    // A reply to an instance of a multi-instance cloud goes back in that instance's session (README "Several cloud instances").
    ...(event.sessionId === undefined ? {} : { sessionId: event.sessionId }),
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
        // Nothing to send now: sleep until something is appended, or until a held event may go.
        const release = this.#options.outbox.nextReleaseInMs?.();
        await this.#sleep(release === undefined ? undefined : Math.max(1, release));
        continue;
      }
      let failure: StorelinkError | undefined;
      try {
        await this.#options.sender.send(batch.map((event) => toInboxMessage(this.#sealed(event))));
        await this.#options.outbox.acknowledge(batch.map((event) => event.id));
        this.#events.next({ type: 'flushed', count: batch.length, pending: this.#options.outbox.size });
      } catch (error) {
        failure = asStorelinkError(error);
      }
      // A batch that failed for good may hold one event that can never be sent: find it rather than wait on it.
      if (failure !== undefined && !failure.retryable) failure = await this.#oneByOne(batch, failure);
      if (failure === undefined) {
        backoff.reset();
      } else {
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

  #sealed(event: OutboxEvent): OutboxEvent {
    const seal = this.#options.seal;
    return seal === undefined || event.signature !== undefined ? event : seal(event);
  }

  /**
   * Sends a batch's events one at a time, acknowledging each one sent and parking each one whose own send condemns
   * it. Returns the failure that stopped it (an outage, or a fault of the queue itself), or undefined.
   */
  async #oneByOne(batch: readonly OutboxEvent[], batchFailure: StorelinkError): Promise<StorelinkError | undefined> {
    const { outbox, sender } = this.#options;
    let sent = 0;
    try {
      for (const event of batch) {
        if (this.#stopping) break;
        let failure: StorelinkError | undefined = batch.length === 1 ? batchFailure : undefined;
        if (failure === undefined) {
          try {
            await sender.send(toInboxMessage(this.#sealed(event)));
          } catch (error) {
            failure = asStorelinkError(error);
          }
        }
        if (failure === undefined) {
          await outbox.acknowledge([event.id]);
          sent += 1;
        } else if (!failure.retryable && isUnsendableMessage(failure.code)) {
          await outbox.park(event.id, { code: failure.code, message: failure.message });
          this.#logger.warn({ err: failure, eventId: event.id, kind: event.kind, type: event.type }, 'outbox event can never be sent as it is; parked it');
          this.#events.next({ type: 'parked', event, error: failure, pending: outbox.size });
        } else {
          return failure;
        }
      }
      return undefined;
    } catch (error) {
      return asStorelinkError(error);
    } finally {
      if (sent > 0) this.#events.next({ type: 'flushed', count: sent, pending: outbox.size });
    }
  }

  /** Stops after the batch in flight; what is still pending stays in the outbox for the next start. */
  async close(): Promise<void> {
    this.#stopping = true;
    this.notify();
    this.#stopWaiting?.();
    await this.#running;
    this.#events.complete();
  }
}
