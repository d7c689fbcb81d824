/**
 * `POST /stores/:storeId/operations`: publish an operation and answer with its delivery. A store's own refusal is not
 * an error: it is a 200 delivery whose outcome is `rejected`. An error answer names the operation (`operationId`): the
 * id the dispatcher gave it, or the request's own id when the request was refused before reaching the dispatcher.
 */
import { errorCodes, type FastifyError, type FastifyPluginCallback, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isStorelinkError, withOperationId } from '../../core/errors.js';
import type { JsonValue } from '../../core/json.js';
import { operationTypeSchema } from '../../core/names.js';
import { latencySchema } from '../../core/operation.js';
import type { Dispatcher } from '../dispatcher.js';
import { allowOnly } from './errors.js';
import { acceptsAsJson, emptyBody, parseJsonBody } from './jsonBody.js';
import { deliverySchema } from './responseSchemas.js';
import { storeParamsSchema, type ZodTypeProvider } from './zodValidation.js';

/** How long a publish may wait for a queued operation's reply: a request should not hang longer than a relay call. */
export const MAX_AWAIT_REPLY_IN_MS = 60_000;
const DAY_IN_MS = 24 * 60 * 60 * 1000;

const publishBodySchema = z.strictObject({
  type: operationTypeSchema,
  payload: z.custom<JsonValue>((value) => value !== undefined, { message: 'is required (any JSON value)' }),
  latency: latencySchema.optional(),
  awaitReplyInMs: z
    .number({ message: 'expected a whole number of milliseconds' })
    .int('expected a whole number of milliseconds')
    .min(0, 'expected at least 0 ms')
    .max(MAX_AWAIT_REPLY_IN_MS, `expected at most ${MAX_AWAIT_REPLY_IN_MS} ms`)
    .optional(),
  timeToLiveInMs: z
    .number({ message: 'expected a whole number of milliseconds' })
    .int('expected a whole number of milliseconds')
    .min(1_000, 'expected at least 1000 ms')
    .max(366 * DAY_IN_MS, `expected at most ${366 * DAY_IN_MS} ms`)
    .optional(),
  id: z.uuid({ message: 'must be a UUID' }).optional(),
});

/** One publish under way: its signal is aborted when the API closes, `release` forgets it. */
export interface PublishCall {
  signal: AbortSignal;
  release(): void;
}

export interface OperationsRoutesOptions {
  dispatcher: Dispatcher;
  /** The API's one error handler, which this route's errors go through once they name their operation. */
  handleError: (error: unknown, request: FastifyRequest, reply: FastifyReply) => void;
  /** Throws when the API is closing. */
  startPublish: () => PublishCall;
}

export const operationsRoutes: FastifyPluginCallback<OperationsRoutesOptions> = (fastify, { dispatcher, startPublish, handleError }, done) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  // Encapsulated: only this plugin reads bodies, and only as JSON.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, parsed) => {
    try {
      parsed(null, parseJsonBody(body as string));
    } catch (error) {
      parsed(error as Error, undefined);
    }
  });
  // Before the body is read: a client sending the wrong thing learns it without uploading it first.
  app.addHook('preParsing', (request, _reply, payload, next) => {
    if (acceptsAsJson(request.headers['content-type'])) next(null, payload);
    else next(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE());
  });
  // A request without a body (and without a Content-Type) skips the parser.
  app.addHook('preValidation', (request, _reply, next) => next(request.body === undefined ? emptyBody() : undefined));

  const errorHandler = (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const id = requestedIdOf(request.body);
    handleError(id !== undefined && isStorelinkError(error) ? withOperationId(error, id) : error, request, reply);
  };
  app.post('/stores/:storeId/operations', { schema: { params: storeParamsSchema, body: publishBodySchema }, errorHandler, config: { scope: 'publish', openapi: { summary: 'Publish an operation to a store', response: { description: 'What the publish did (a store\'s refusal is a 200 with outcome `rejected`)', schema: deliverySchema }, errors: ['STORE_UNKNOWN', 'PAYLOAD_TOO_LARGE', 'ABORTED', 'SERVICE_BUS_UNAVAILABLE'] } } }, async (request) => {
    const { awaitReplyInMs, ...rest } = request.body;
    // A call per request, not one shared signal: the dispatcher adds abort listeners it never removes. A client that
    // leaves does not abort its call either: the operation may already be on its way, and its delivery still shows on
    // /events and in the metrics.
    const call = startPublish();
    try {
      return await dispatcher.publish(
        { storeId: request.params.storeId, ...rest },
        { abortSignal: call.signal, ...(awaitReplyInMs === undefined ? {} : { awaitReplyInMs }) },
      );
    } finally {
      call.release();
    }
  });
  // GET is the store's operation history (operationStatusRoutes.ts).
  allowOnly(fastify, '/stores/:storeId/operations', ['POST', 'GET']);
  done();
};

/** The id a request asks its operation to have, if it is one the dispatcher could have taken (a UUID). */
function requestedIdOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || !('id' in body)) return undefined;
  return z.uuid().safeParse(body.id).success ? (body.id as string) : undefined;
}
