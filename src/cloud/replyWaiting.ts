/**
 * Publishers waiting for a store's reply to an operation sent through the queue, by operation id (the reply's
 * correlation id). Each wait ends exactly once: with the reply, at its deadline, when its caller aborts, or on close;
 * its timer and abort listener go with it.
 */
import type { Operation } from '../core/operation.js';
import type { ReplyBody } from '../core/storeMessage.js';

type Waiting = Pick<Operation, 'storeId' | 'type' | 'payload'>;

interface PendingReply {
  operation: Waiting;
  finish: (body: ReplyBody | undefined) => void;
}

export interface ReplyWait {
  /** The reply, or undefined when the wait ended without one. */
  promise: Promise<ReplyBody | undefined>;
  cancel(): void;
}

export class ReplyWaiting {
  readonly #pending = new Map<string, PendingReply>();

  wait(operation: Waiting & { id: string }, waitInMs: number, abortSignal?: AbortSignal): ReplyWait {
    let settle!: (body: ReplyBody | undefined) => void;
    const promise = new Promise<ReplyBody | undefined>((resolve) => (settle = resolve));
    const onAbort = () => finish(undefined);
    const finish = (body: ReplyBody | undefined) => {
      if (this.#pending.get(operation.id) !== pending) return;
      clearTimeout(timer);
      abortSignal?.removeEventListener('abort', onAbort);
      this.#pending.delete(operation.id);
      settle(body);
    };
    const pending: PendingReply = { operation, finish };
    this.#pending.get(operation.id)?.finish(undefined);
    this.#pending.set(operation.id, pending);
    const timer = setTimeout(onAbort, waitInMs);
    if (abortSignal?.aborted === true) finish(undefined);
    else abortSignal?.addEventListener('abort', onAbort, { once: true });
    return { promise, cancel: () => finish(undefined) };
  }

  /** The store a waiting operation was sent to. */
  storeOf(operationId: string): string | undefined {
    return this.#pending.get(operationId)?.operation.storeId;
  }

  /**
   * Hands a reply from store `storeId` to whoever waits for it; returns the operation it answered, or undefined when
   * nobody waits for a reply of that store to that id (a reply settles only an operation of the store that sent it).
   */
  settle(correlationId: string, storeId: string, body: ReplyBody): Waiting | undefined {
    const pending = this.#pending.get(correlationId);
    if (pending === undefined || pending.operation.storeId !== storeId) return undefined;
    pending.finish(body);
    return pending.operation;
  }

  get size(): number {
    return this.#pending.size;
  }

  /** Ends every wait without a reply. */
  cancelAll(): void {
    for (const pending of [...this.#pending.values()]) pending.finish(undefined);
  }
}
