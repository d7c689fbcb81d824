/**
 * The API's request bodies: JSON only, bounded in size by fastify's bodyLimit and in nesting depth here, before
 * JSON.parse builds anything (a small body of 100,000 brackets would otherwise cost a deep object graph, and deeper
 * still a stack overflow in whoever walks it next).
 */
import { StorelinkError } from '../../core/errors.js';
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../core/json.js';

const JSON_MEDIA_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/** `application/json` and its `+json` relatives; a body without a Content-Type is taken as JSON too. */
export function acceptsAsJson(contentType: string | undefined): boolean {
  return contentType === undefined || JSON_MEDIA_TYPE.test(contentType);
}

export function parseJsonBody(text: string, maxDepth = MAX_JSON_DEPTH): unknown {
  if (text.trim() === '') throw emptyBody();
  if (nestsDeeperThan(text, maxDepth)) throw new StorelinkError('OPERATION_INVALID', `the request body nests deeper than ${maxDepth} levels (an operation's payload may nest ${maxDepth - 1})`);
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new StorelinkError('OPERATION_INVALID', `the request body is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

export function emptyBody(): StorelinkError {
  return new StorelinkError('OPERATION_INVALID', 'the request body is empty; send a JSON object { type, payload, … }');
}
