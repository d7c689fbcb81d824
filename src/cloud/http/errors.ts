/**
 * How the cloud HTTP API answers a failure: `{ error: { code, message, field?, operationId? } }` with the HTTP status of its
 * StorelinkError code. fastify's own refusals (body limits, media types, URLs it cannot decode) are turned into the
 * API's codes here, so a client only ever sees storelink codes.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { StorelinkError, cloudHttpStatusOf, isStorelinkError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { DEFAULT_MAX_PAYLOAD_BYTES } from '../../core/operation.js';

/** A failure as the API answers it: the status is its code's, except where HTTP has a more precise word (415, 405). */
interface Refusal {
  status: number;
  error: StorelinkError;
}

function pathOf(request: FastifyRequest): string {
  return request.url.split('?', 1)[0]!;
}

/** fastify's own errors, and anything unforeseen, as StorelinkErrors. */
function storelinkErrorOf(error: unknown, request: FastifyRequest): StorelinkError {
  const invalid = (message: string) => new StorelinkError('OPERATION_INVALID', message, { cause: error });
  switch ((error as Partial<FastifyError> | undefined)?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': {
      const message = `the request body is larger than ${request.routeOptions.bodyLimit} bytes (an operation's payload may be ${DEFAULT_MAX_PAYLOAD_BYTES})`;
      return new StorelinkError('PAYLOAD_TOO_LARGE', message, { cause: error });
    }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return invalid(`send the operation as application/json, not ${String(request.headers['content-type'])}`);
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return invalid('the request body is not as long as its Content-Length says');
    case 'FST_ERR_BAD_URL':
      return invalid(`the path ${pathOf(request)} is not valid percent-encoding`);
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return invalid(`a segment of the path ${pathOf(request).slice(0, 100)}… is too long`);
  }
  // The client left while its body was on its way: nobody reads this answer, the log says what happened.
  if (request.raw.destroyed) return new StorelinkError('ABORTED', 'the client closed the connection before sending the whole body', { cause: error });
  return new StorelinkError('UNEXPECTED_FAILURE', error instanceof Error ? error.message : String(error), { cause: error });
}

function refusalOf(error: unknown, request: FastifyRequest): Refusal {
  const failure = isStorelinkError(error) ? error : storelinkErrorOf(error, request);
  const wrongMediaType = (error as Partial<FastifyError> | undefined)?.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE';
  return { status: wrongMediaType ? 415 : cloudHttpStatusOf(failure), error: failure };
}

export function sendError(reply: FastifyReply, status: number, error: StorelinkError): void {
  void reply.code(status).send({
    error: {
      code: error.code,
      message: error.message,
      ...(error.field === undefined ? {} : { field: error.field }),
      ...(error.operationId === undefined ? {} : { operationId: error.operationId }),
    },
  });
}

/** The one error handler: every thrown error, fastify's included, answers through it. */
export function createErrorHandler(logger: Logger) {
  return (error: unknown, request: FastifyRequest, reply: FastifyReply): void => {
    const { status, error: failure } = refusalOf(error, request);
    if (status >= 500) logger[status === 500 ? 'error' : 'warn']({ err: error, code: failure.code }, 'request failed');
    else logger.debug({ code: failure.code, field: failure.field }, 'request refused');
    // A stream already under way (the event stream) cannot take a JSON answer any more.
    if (reply.raw.headersSent) {
      reply.raw.destroy();
      return;
    }
    sendError(reply, status, failure);
  };
}

/**
 * Answers every method but `allowed` on `url` with 405 and `Allow`. fastify would say 404; the refusal runs as the
 * route's onRequest hook (after authentication), so a refused request's body is never read.
 */
export function allowOnly(app: FastifyInstance, url: string, allowed: readonly HTTPMethods[]): void {
  const allow = allowed.join(', ');
  app.route({
    method: app.supportedMethods.filter((method) => !allowed.includes(method)),
    url,
    // Any valid key learns which methods are served: that tells nothing a scope protects.
    config: { scope: 'authenticated', openapi: false },
    onRequest: (request, reply) => {
      const message = `${request.method} is not served on ${pathOf(request)}; use ${allowed.join(' or ')}`;
      sendError(reply.header('allow', allow), 405, new StorelinkError('ROUTE_NOT_FOUND', message));
    },
    handler: () => undefined,
  });
}

/**
 * Answers what Node refuses before fastify sees a request (a client too slow with its headers or body, malformed
 * HTTP, headers too large) in the API's error shape, then closes the connection: fastify's own answer has another shape.
 */
export function createClientErrorHandler(logger: Logger) {
  return (error: Error & { code?: string }, socket: Duplex): void => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    let status: number;
    let failure: StorelinkError;
    if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      status = 408;
      failure = new StorelinkError('REQUEST_TIMEOUT', 'the request headers or body did not arrive in time; the connection is closed');
    } else if (error.code === 'HPE_HEADER_OVERFLOW') {
      status = 431;
      failure = new StorelinkError('OPERATION_INVALID', 'the request headers are too large');
    } else {
      status = 400;
      failure = new StorelinkError('OPERATION_INVALID', 'the request is not valid HTTP/1.1');
    }
    logger.debug({ code: failure.code, cause: error.code }, 'connection refused');
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const body = JSON.stringify({ error: { code: failure.code, message: failure.message } });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  };
}
