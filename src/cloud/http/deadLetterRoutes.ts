/**
 * A store queue's dead letters over HTTP, for the console (the same tooling as `storelink dlq`):
 *
 *   GET  /stores/:storeId/dead-letters                                  read   { deadLetters: [...oldest first, at most 100] }
 *   POST /stores/:storeId/dead-letters/:sequenceNumber/resubmit         admin  { resubmitted, mayBeDroppedAsDuplicate }
 *
 * Each request opens the dead-letter queue with the connection string given (it needs Listen and Send on the store
 * queues, which the cloud's own key may not have) and closes it when answered. A resubmit sends the message back with
 * its original messageId, so the store's ledger still runs it at most once.
 */
import type { FastifyPluginCallback } from 'fastify';
import { z } from 'zod';
import { createDeadLetterQueue, type DeadLetteredMessage, type DeadLetterQueueOptions } from '../../channels/servicebus/deadLetterQueue.js';
import { StorelinkError } from '../../core/errors.js';
import { defaultStoreEntityName, storeIdSchema } from '../../core/names.js';
import type { Dispatcher } from '../dispatcher.js';
import { allowOnly } from './errors.js';
import { storeParamsSchema, type ZodTypeProvider } from './zodValidation.js';

/** Where the dead letters are read: a connection string with Listen and Send on the store queues, and its network settings. */
export type DeadLetterAccess = Omit<DeadLetterQueueOptions, 'queue'>;

export interface DeadLetterRoutesOptions {
  dispatcher: Dispatcher;
  /** Without it the routes answer 404: this cloud was not given a key to its stores' dead-letter queues. */
  access?: DeadLetterAccess;
}

/** Most dead letters listed. */
export const MAX_DEAD_LETTERS_LISTED = 100;

export const deadLetterParamsSchema = z.object({
  storeId: storeIdSchema,
  sequenceNumber: z.string().regex(/^\d{1,19}$/, 'expected a sequence number (digits)'),
});

export const deadLetterViewSchema = z.object({
  sequenceNumber: z.string(),
  messageId: z.string().nullable(),
  enqueuedAt: z.string().nullable(),
  deliveryCount: z.number().int(),
  reason: z.string().nullable(),
  description: z.string().nullable(),
  operation: z.object({ id: z.string(), type: z.string(), storeId: z.string(), expiresAt: z.string() }).nullable(),
});
export const deadLettersResponseSchema = z.object({ storeId: z.string(), deadLetters: z.array(deadLetterViewSchema) });
export const resubmitResponseSchema = z.object({ storeId: z.string(), sequenceNumber: z.string(), operationId: z.string().nullable(), mayBeDroppedAsDuplicate: z.boolean() });

function viewOf(message: DeadLetteredMessage): z.infer<typeof deadLetterViewSchema> {
  return {
    sequenceNumber: message.sequenceNumber,
    messageId: message.messageId ?? null,
    enqueuedAt: message.enqueuedAt?.toISOString() ?? null,
    deliveryCount: message.deliveryCount,
    reason: message.reason ?? null,
    description: message.description ?? null,
    operation: message.operation ?? null,
  };
}

export const deadLetterRoutes: FastifyPluginCallback<DeadLetterRoutesOptions> = (fastify, { dispatcher, access }, done) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const queueOf = async (storeId: string): Promise<string> => {
    await dispatcher.start();
    const store = dispatcher.stores().find((candidate) => candidate.storeId === storeId);
    if (store === undefined) throw new StorelinkError('STORE_UNKNOWN', `unknown store "${storeId}"`, { field: 'storeId' });
    if (access === undefined) throw new StorelinkError('ROUTE_NOT_FOUND', "this cloud was started without access to its stores' dead-letter queues (deadLetters.connectionString)");
    return store.queue ?? defaultStoreEntityName(storeId);
  };
  const opened = async <T>(queue: string, work: (dlq: ReturnType<typeof createDeadLetterQueue>) => Promise<T>): Promise<T> => {
    const dlq = createDeadLetterQueue({ ...access!, queue });
    try {
      return await work(dlq);
    } finally {
      await dlq.close();
    }
  };

  app.get('/stores/:storeId/dead-letters', { schema: { params: storeParamsSchema }, config: { scope: 'read', openapi: { summary: "A store's dead-lettered operations, oldest first (at most 100)", response: { description: 'The dead letters', schema: deadLettersResponseSchema }, errors: ['STORE_UNKNOWN'] } } }, async (request) => {
    const { storeId } = request.params;
    const queue = await queueOf(storeId);
    const messages = await opened(queue, (dlq) => dlq.list({ limit: MAX_DEAD_LETTERS_LISTED }));
    return { storeId, deadLetters: messages.map(viewOf) };
  });

  app.post('/stores/:storeId/dead-letters/:sequenceNumber/resubmit', { schema: { params: deadLetterParamsSchema }, config: { scope: 'admin', openapi: { summary: 'Send one dead-lettered operation back to its store queue', response: { description: 'Resubmitted', schema: resubmitResponseSchema }, errors: ['STORE_UNKNOWN', 'DEAD_LETTER_NOT_FOUND'] } } }, async (request) => {
    const { storeId, sequenceNumber } = request.params;
    const queue = await queueOf(storeId);
    const result = await opened(queue, (dlq) => dlq.resubmit({ ids: [sequenceNumber] }));
    const failed = result.failed[0];
    if (failed !== undefined) throw failed.error;
    const resubmitted = result.resubmitted.find(({ message }) => message.sequenceNumber === sequenceNumber);
    if (resubmitted === undefined) {
      throw new StorelinkError('DEAD_LETTER_NOT_FOUND', `no message with sequence number ${sequenceNumber} in the dead-letter queue of ${queue} (or another reader holds it)`, {
        field: 'sequenceNumber',
      });
    }
    return {
      storeId,
      sequenceNumber,
      operationId: resubmitted.message.operation?.id ?? resubmitted.message.messageId ?? null,
      mayBeDroppedAsDuplicate: resubmitted.mayBeDroppedAsDuplicate,
    };
  });

  allowOnly(fastify, '/stores/:storeId/dead-letters', ['GET']);
  allowOnly(fastify, '/stores/:storeId/dead-letters/:sequenceNumber/resubmit', ['POST']);
  done();
};
