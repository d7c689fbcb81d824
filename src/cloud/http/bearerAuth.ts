/** The API's one credential: `Authorization: Bearer <token>`, compared in constant time. */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { StorelinkError } from '../../core/errors.js';

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * Refuses a request without the token: sets `WWW-Authenticate` on the reply and returns the error to answer with, or
 * undefined when the request may go on.
 */
export type BearerCheck = (request: FastifyRequest, reply: FastifyReply) => StorelinkError | undefined;

export function createBearerCheck(token: string): BearerCheck {
  const tokenDigest = sha256(token);
  return (request, reply) => {
    const match = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '');
    // Comparing digests keeps the comparison constant-time whatever the length of the token sent.
    if (match !== null && timingSafeEqual(sha256(match[1]!), tokenDigest)) return undefined;
    const missing = match === null;
    void reply.header('www-authenticate', missing ? 'Bearer realm="storelink"' : 'Bearer realm="storelink", error="invalid_token"');
    return new StorelinkError(
      'API_UNAUTHORIZED',
      missing ? 'send the API token as "Authorization: Bearer <token>"' : 'the bearer token is not the one configured',
    );
  };
}
