/**
 * Header rewriting between HTTP and the relay's JSON messages (spec §5.2, §6.1): hop-by-hop and framing headers never
 * cross the relay, the relay's own token header never reaches the listener, and both directions gain a `Via`.
 */
import type { OutgoingHttpHeaders } from 'node:http';

const REQUEST_DROPPED = new Set([
  'connection',
  'content-length',
  'host',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'keep-alive',
  'proxy-connection',
  'close',
  'expect',
  'servicebusauthorization',
]);

const RESPONSE_DROPPED = new Set([
  'connection',
  'content-length',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'keep-alive',
  'proxy-connection',
  'close',
]);

const TOKEN = /^[\^_`a-zA-Z\-0-9!#$%&'*+.|~]+$/;
const INVALID_VALUE_CHAR = /[^\t\x20-\x7e\x80-\xff]/;

function connectionNamed(value: string | undefined): Set<string> {
  const named = new Set<string>();
  if (value === undefined) return named;
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name.length > 0) named.add(name);
  }
  return named;
}

export interface RequestHeaderOptions {
  /** Also drop `Authorization` (when it carried the relay token). */
  dropAuthorization: boolean;
  /** Host for the `Via` entry. */
  viaHost: string;
}

/**
 * Builds the listener's view of the sender's headers from Node's `rawHeaders` (name/value pairs as received):
 * repeated headers are joined with `, ` (`; ` for Cookie), keeping the first spelling of the name.
 */
export function buildRequestHeaders(rawHeaders: readonly string[], options: RequestHeaderOptions): Record<string, string> {
  const lowerToName = new Map<string, string>();
  const values = new Map<string, string>();
  let connection: string | undefined;
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    const name = rawHeaders[index]!;
    const value = rawHeaders[index + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
    const previous = values.get(lower);
    if (previous === undefined) {
      lowerToName.set(lower, name);
      values.set(lower, value);
    } else {
      values.set(lower, `${previous}${lower === 'cookie' ? '; ' : ', '}${value}`);
    }
  }
  const dropped = connectionNamed(connection);
  const headers: Record<string, string> = {};
  let via: string | undefined;
  for (const [lower, value] of values) {
    if (REQUEST_DROPPED.has(lower) || dropped.has(lower)) continue;
    if (lower === 'authorization' && options.dropAuthorization) continue;
    if (lower === 'via') {
      via = value;
      continue;
    }
    headers[lowerToName.get(lower)!] = value;
  }
  headers.Via = via === undefined ? `1.1 ${options.viaHost}` : `${via}, 1.1 ${options.viaHost}`;
  return headers;
}

function headerValue(value: unknown): string | undefined {
  if (typeof value === 'string') return INVALID_VALUE_CHAR.test(value) ? undefined : value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}

export interface ResponseHeaders {
  headers: OutgoingHttpHeaders;
  /** Names of headers that were dropped because their name or value was not valid HTTP. */
  rejected: string[];
}

/**
 * Turns a listener's `responseHeaders` into headers Node can write without throwing: framing and hop-by-hop headers
 * are removed (the relay computes framing itself), invalid names or values are dropped and reported.
 */
export function buildResponseHeaders(raw: Record<string, unknown> | null | undefined, viaHost: string): ResponseHeaders {
  const headers: OutgoingHttpHeaders = {};
  const rejected: string[] = [];
  const entries = Object.entries(raw ?? {});
  const connectionEntry = entries.find(([name]) => name.toLowerCase() === 'connection');
  const dropped = connectionNamed(typeof connectionEntry?.[1] === 'string' ? connectionEntry[1] : undefined);
  let via: string | undefined;
  for (const [name, value] of entries) {
    const lower = name.toLowerCase();
    if (RESPONSE_DROPPED.has(lower) || dropped.has(lower)) continue;
    if (!TOKEN.test(name)) {
      rejected.push(name);
      continue;
    }
    if (Array.isArray(value)) {
      const converted = value.map(headerValue);
      if (converted.length === 0 || converted.some((item) => item === undefined)) {
        rejected.push(name);
        continue;
      }
      if (lower === 'via') via = converted.join(', ');
      else headers[name] = converted as string[];
      continue;
    }
    const converted = headerValue(value);
    if (converted === undefined) {
      rejected.push(name);
      continue;
    }
    if (lower === 'via') via = converted;
    else headers[name] = converted;
  }
  headers.Via = via === undefined ? `1.1 ${viaHost}` : `${via}, 1.1 ${viaHost}`;
  return { headers, rejected };
}

/** A reason phrase Node accepts, or undefined to let Node use the standard one. */
export function validReasonPhrase(description: string | null | undefined): string | undefined {
  if (description === undefined || description === null || description.length === 0) return undefined;
  return INVALID_VALUE_CHAR.test(description) || /[\r\n]/.test(description) ? undefined : description;
}
