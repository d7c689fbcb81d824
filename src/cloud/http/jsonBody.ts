/**
 * The API's request bodies: JSON only, bounded in size by fastify's bodyLimit and in nesting depth here, before
 * JSON.parse builds anything (a small body of 100,000 brackets would otherwise cost a deep object graph, and deeper
 * still a stack overflow in whoever walks it next).
 */
import { StorelinkError } from '../../core/errors.js';

/** An operation request is an object holding a payload: 64 levels leave a payload 62 of its own. */
export const MAX_JSON_DEPTH = 64;

const JSON_MEDIA_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/** `application/json` and its `+json` relatives; a body without a Content-Type is taken as JSON too. */
export function acceptsAsJson(contentType: string | undefined): boolean {
  return contentType === undefined || JSON_MEDIA_TYPE.test(contentType);
}

/** Whether brackets outside strings open more than `maxDepth` levels at some point; one pass, no allocation. */
export function nestsDeeperThan(text: string, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let index = 0; index < text.length; index += 1) {
    const character = text.charCodeAt(index);
    if (inString) {
      if (character === 0x5c /* \ */) index += 1;
      else if (character === 0x22 /* " */) inString = false;
    } else if (character === 0x22) {
      inString = true;
    } else if (character === 0x7b /* { */ || character === 0x5b /* [ */) {
      depth += 1;
      if (depth > maxDepth) return true;
    } else if (character === 0x7d /* } */ || character === 0x5d /* ] */) {
      depth -= 1;
    }
  }
  return false;
}

export function parseJsonBody(text: string, maxDepth = MAX_JSON_DEPTH): unknown {
  if (text.trim() === '') throw emptyBody();
  if (nestsDeeperThan(text, maxDepth)) throw new StorelinkError('OPERATION_INVALID', `the request body nests deeper than ${maxDepth} levels`);
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new StorelinkError('OPERATION_INVALID', `the request body is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

export function emptyBody(): StorelinkError {
  return new StorelinkError('OPERATION_INVALID', 'the request body is empty; send a JSON object { type, payload, … }');
}
