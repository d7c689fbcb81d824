/**
 * Azure shared access signature (SAS) tokens, as used by Service Bus and Relay:
 * `SharedAccessSignature sr=<url-encoded resource>&sig=<url-encoded base64 HMAC-SHA256>&se=<unix seconds>&skn=<key name>`.
 * The string to sign is the url-encoded resource exactly as it appears in `sr`, a newline, and `se`; the HMAC key is
 * the UTF-8 bytes of the key string itself (not its base64-decoded bytes). Shared by the channels and both emulators.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { StorelinkError, isStorelinkError } from './errors.js';

const PREFIX = 'SharedAccessSignature ';
const DEFAULT_TIME_TO_LIVE_IN_MS = 60 * 60 * 1000;

export interface CreateSasTokenOptions {
  /** The resource (audience) URI the token grants access to, not yet url-encoded: `sb://ns.servicebus.windows.net/q1`. */
  resource: string;
  keyName: string;
  key: string;
  /** Lifetime from `nowInMs`; default one hour. Ignored when `expiresOnInSeconds` is given. */
  timeToLiveInMs?: number;
  /** Absolute expiry in Unix seconds. */
  expiresOnInSeconds?: number;
  /** The current time; default `Date.now()`. */
  nowInMs?: number;
}

export interface SasToken {
  /** The resource URI, url-decoded. */
  resource: string;
  /** The resource exactly as it appears in the token, still url-encoded: the text that was signed. */
  encodedResource: string;
  /** The base64 signature, url-decoded. */
  signature: string;
  /** Expiry in Unix seconds, exactly as signed. */
  expiresOnInSeconds: number;
  /** `se` exactly as it appears in the token (signed verbatim). */
  encodedExpiry: string;
  keyName: string;
}

export interface VerifySasTokenOptions {
  /** The keys accepted for a key name (primary and secondary), or undefined when the name is unknown. */
  keysFor: (keyName: string) => readonly string[] | undefined;
  /** The current time; default `Date.now()`. */
  nowInMs?: number;
  /** Tolerated clock skew when checking expiry; default 0. */
  clockSkewInMs?: number;
}

export function signSasString(encodedResource: string, expiry: string, key: string): string {
  return createHmac('sha256', Buffer.from(key, 'utf8')).update(`${encodedResource}\n${expiry}`, 'utf8').digest('base64');
}

export function createSasToken(options: CreateSasTokenOptions): string {
  const { resource, keyName, key } = options;
  if (resource.length === 0) throw new TypeError('createSasToken: resource must be a non-empty URI');
  if (keyName.length === 0) throw new TypeError('createSasToken: keyName must be non-empty');
  if (key.length === 0) throw new TypeError('createSasToken: key must be non-empty');
  const nowInMs = options.nowInMs ?? Date.now();
  let expiresOn = options.expiresOnInSeconds;
  if (expiresOn === undefined) {
    const ttl = options.timeToLiveInMs ?? DEFAULT_TIME_TO_LIVE_IN_MS;
    if (!Number.isFinite(ttl) || ttl <= 0) {
      throw new RangeError(`createSasToken: timeToLiveInMs must be a positive number of milliseconds, got ${ttl}`);
    }
    expiresOn = Math.floor((nowInMs + ttl) / 1000);
  }
  if (!Number.isSafeInteger(expiresOn) || expiresOn <= 0) {
    throw new RangeError(`createSasToken: expiresOnInSeconds must be a positive integer, got ${expiresOn}`);
  }
  const encodedResource = encodeURIComponent(resource);
  const expiry = String(expiresOn);
  const signature = signSasString(encodedResource, expiry, key);
  return `${PREFIX}sr=${encodedResource}&sig=${encodeURIComponent(signature)}&se=${expiry}&skn=${encodeURIComponent(keyName)}`;
}

function malformed(reason: string): StorelinkError {
  return new StorelinkError('SAS_TOKEN_MALFORMED', `Malformed SAS token: ${reason}`);
}

function decodeComponent(name: string, value: string): string {
  try {
    return decodeURIComponent(value);
  } catch (cause) {
    throw new StorelinkError('SAS_TOKEN_MALFORMED', `Malformed SAS token: "${name}" is not valid URL encoding`, { cause });
  }
}

/** Parses a token without checking its signature. Field order is free; field names are case-insensitive. */
export function parseSasToken(token: string): SasToken {
  if (typeof token !== 'string' || !token.startsWith(PREFIX)) {
    throw malformed('it must start with "SharedAccessSignature "');
  }
  const fields = new Map<string, string>();
  for (const pair of token.slice(PREFIX.length).split('&')) {
    const separator = pair.indexOf('=');
    if (separator <= 0) throw malformed(`"${pair}" is not a name=value pair`);
    const name = pair.slice(0, separator).toLowerCase();
    if (fields.has(name)) throw malformed(`"${name}" appears more than once`);
    fields.set(name, pair.slice(separator + 1));
  }
  const missing = ['sr', 'sig', 'se', 'skn'].filter((name) => !fields.get(name));
  if (missing.length > 0) throw malformed(`missing ${missing.map((name) => `"${name}"`).join(', ')}`);
  const encodedResource = fields.get('sr')!;
  const encodedExpiry = fields.get('se')!;
  if (!/^\d{1,15}$/.test(encodedExpiry)) throw malformed(`"se" must be Unix seconds, got "${encodedExpiry}"`);
  return {
    resource: decodeComponent('sr', encodedResource),
    encodedResource,
    signature: decodeComponent('sig', fields.get('sig')!),
    expiresOnInSeconds: Number(encodedExpiry),
    encodedExpiry,
    keyName: decodeComponent('skn', fields.get('skn')!),
  };
}

function signaturesEqual(expected: string, actual: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(actual, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Parses and verifies a token: known key name, signature over the resource text as it appears in the token (never
 * re-encoded, since client libraries differ in hex case), and expiry. Audience checks are the caller's: see
 * `audienceCovers`.
 */
export function verifySasToken(token: string, options: VerifySasTokenOptions): SasToken {
  const parsed = parseSasToken(token);
  const keys = options.keysFor(parsed.keyName);
  if (keys === undefined || keys.length === 0) {
    throw new StorelinkError('SAS_KEY_UNKNOWN', `SAS token names an unknown key "${parsed.keyName}"`);
  }
  const valid = keys.some((key) =>
    signaturesEqual(signSasString(parsed.encodedResource, parsed.encodedExpiry, key), parsed.signature),
  );
  if (!valid) {
    throw new StorelinkError('SAS_SIGNATURE_INVALID', `SAS token signature does not match key "${parsed.keyName}"`);
  }
  const nowInMs = options.nowInMs ?? Date.now();
  if (parsed.expiresOnInSeconds * 1000 + (options.clockSkewInMs ?? 0) < nowInMs) {
    throw new StorelinkError(
      'SAS_TOKEN_EXPIRED',
      `SAS token expired at ${new Date(parsed.expiresOnInSeconds * 1000).toISOString()}`,
    );
  }
  return parsed;
}

/** The comparable parts of an audience URI: lower-case host without port, and path segments without `$hc`. */
export interface NormalizedAudience {
  host: string;
  segments: string[];
}

export function normalizeAudience(uri: string): NormalizedAudience {
  const match = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)([^?#]*)/i.exec(uri);
  if (match === null) return { host: '', segments: splitPath(uri) };
  const host = match[1]!.replace(/^.*@/, '').replace(/:\d*$/, '').toLowerCase();
  return { host, segments: splitPath(match[2]!) };
}

function splitPath(path: string): string[] {
  return path
    .split('/')
    .filter((segment) => segment.length > 0)
    .map((segment) => segment.toLowerCase())
    .filter((segment, index) => !(index === 0 && segment === '$hc'));
}

export interface AudienceCoversOptions {
  /** Compare hosts too (the relay does; Service Bus tolerates a different host). Default true. */
  compareHost?: boolean;
}

/**
 * Whether a token minted for `audience` grants access to `target`: the audience's path is a whole-segment prefix of
 * the target's, compared case-insensitively, ignoring scheme, port, a leading `$hc` segment and trailing slashes.
 */
export function audienceCovers(audience: string, target: string, options: AudienceCoversOptions = {}): boolean {
  const granted = normalizeAudience(audience);
  const wanted = normalizeAudience(target);
  if ((options.compareHost ?? true) && granted.host !== wanted.host) return false;
  if (granted.segments.length > wanted.segments.length) return false;
  return granted.segments.every((segment, index) => segment === wanted.segments[index]);
}

/** Azure's prefix for a refused SAS token, from the error `verifySasToken` threw (both emulators answer with it). */
export type SasFailurePrefix = 'ExpiredToken' | 'MalformedToken' | 'InvalidSignature' | 'InvalidToken';

export function sasFailurePrefixOf(error: unknown): SasFailurePrefix {
  if (isStorelinkError(error, 'SAS_TOKEN_EXPIRED')) return 'ExpiredToken';
  if (isStorelinkError(error, 'SAS_TOKEN_MALFORMED')) return 'MalformedToken';
  if (isStorelinkError(error, 'SAS_KEY_UNKNOWN') || isStorelinkError(error, 'SAS_SIGNATURE_INVALID')) return 'InvalidSignature';
  return 'InvalidToken';
}
