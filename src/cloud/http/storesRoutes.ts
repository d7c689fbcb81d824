/** `GET /stores` and `GET /stores/:storeId`: each known store with its link. */
import type { FastifyPluginCallback } from 'fastify';
import { StorelinkError } from '../../core/errors.js';
import type { Dispatcher } from '../dispatcher.js';
import { allowOnly } from './errors.js';
import { storeLinkViewOf } from './linkViews.js';
import { storeLinkViewSchema, storeListSchema } from './responseSchemas.js';
import { storeParamsSchema, type ZodTypeProvider } from './zodValidation.js';

export interface StoresRoutesOptions {
  dispatcher: Dispatcher;
}

export const storesRoutes: FastifyPluginCallback<StoresRoutesOptions> = (fastify, { dispatcher }, done) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  app.get('/stores', { config: { scope: 'read', openapi: { summary: 'Every known store with its link', response: { description: 'The stores', schema: storeListSchema } } } }, async () => {
    await dispatcher.start();
    return { stores: dispatcher.stores().map(({ storeId }) => storeLinkViewOf(dispatcher.link(storeId))) };
  });
  app.get('/stores/:storeId', { schema: { params: storeParamsSchema }, config: { scope: 'read', openapi: { summary: 'One store with its link, backlog and outbox', response: { description: 'The store', schema: storeLinkViewSchema }, errors: ['STORE_UNKNOWN'] } } }, async (request) => {
    const { storeId } = request.params;
    await dispatcher.start();
    if (!dispatcher.stores().some((store) => store.storeId === storeId)) {
      throw new StorelinkError('STORE_UNKNOWN', `unknown store "${storeId}"`, { field: 'storeId' });
    }
    return storeLinkViewOf(dispatcher.link(storeId));
  });
  allowOnly(fastify, '/stores', ['GET']);
  allowOnly(fastify, '/stores/:storeId', ['GET']);
  done();
};
