/**
 * `GET /operations/:id` and `GET /stores/:storeId/operations?since=…&limit=…&cursor=…`: what became of an operation,
 * and a store's recent operations newest first, read from the operation records (operationRecords.ts), so any
 * instance sharing the database answers. Both need the `read` scope.
 */
import type { FastifyPluginCallback } from 'fastify';
import { z } from 'zod';
import { StorelinkError } from '../../core/errors.js';
import type { Dispatcher } from '../dispatcher.js';
import { DEFAULT_OPERATIONS_PAGE, MAX_OPERATIONS_PAGE } from '../operationRecords.js';
import { allowOnly } from './errors.js';
import { storeParamsSchema, type ZodTypeProvider } from './zodValidation.js';
import { operationPageSchema, operationStatusSchema } from './responseSchemas.js';

/** A cursor is ours (base64url of a small JSON array): anything longer was not made here. */
const MAX_CURSOR_LENGTH = 200;

const operationParamsSchema = z.object({ id: z.uuid({ message: 'must be a UUID' }) });

export const storeOperationsQuerySchema = z.strictObject({
  since: z.iso.datetime({ offset: true, message: 'must be an ISO 8601 instant with its offset (2026-01-31T09:00:00Z)' }).optional(),
  limit: z
    .string()
    .regex(/^\d{1,3}$/, `must be a whole number from 1 to ${MAX_OPERATIONS_PAGE}`)
    .transform(Number)
    .pipe(z.number().min(1, `must be a whole number from 1 to ${MAX_OPERATIONS_PAGE}`).max(MAX_OPERATIONS_PAGE, `must be a whole number from 1 to ${MAX_OPERATIONS_PAGE}`))
    .optional(),
  cursor: z.string().min(1, 'must not be empty').max(MAX_CURSOR_LENGTH, 'is not a cursor this API gave').optional(),
});

export interface OperationStatusRoutesOptions {
  dispatcher: Dispatcher;
}

export const operationStatusRoutes: FastifyPluginCallback<OperationStatusRoutesOptions> = (fastify, { dispatcher }, done) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  app.get('/operations/:id', { schema: { params: operationParamsSchema }, config: { scope: 'read', openapi: { summary: 'What became of one operation, from the operation records (any instance)', response: { description: 'The operation', schema: operationStatusSchema }, errors: ['OPERATION_NOT_FOUND', 'ROUTE_NOT_FOUND', 'DATABASE_UNAVAILABLE'] } } }, async (request) => {
    await dispatcher.start();
    return dispatcher.operation(request.params.id);
  });
  app.get('/stores/:storeId/operations', { schema: { params: storeParamsSchema, querystring: storeOperationsQuerySchema }, config: { scope: 'read', openapi: { summary: "A store's recent operations, newest first, paged", response: { description: 'One page', schema: operationPageSchema }, errors: ['STORE_UNKNOWN', 'ROUTE_NOT_FOUND', 'DATABASE_UNAVAILABLE'] } } }, async (request) => {
    const { storeId } = request.params;
    await dispatcher.start();
    if (!dispatcher.stores().some((store) => store.storeId === storeId)) {
      throw new StorelinkError('STORE_UNKNOWN', `unknown store "${storeId}"`, { field: 'storeId' });
    }
    const { since, limit, cursor } = request.query;
    return dispatcher.storeOperations(storeId, {
      limit: limit ?? DEFAULT_OPERATIONS_PAGE,
      ...(since === undefined ? {} : { since: new Date(since) }),
      ...(cursor === undefined ? {} : { cursor }),
    });
  });
  allowOnly(fastify, '/operations/:id', ['GET']);
  done();
};
