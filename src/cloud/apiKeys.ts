/**
 * The cloud HTTP API's clients: named API keys, each with scopes, stored hashed in a key file
 * (`{ keys: [{ name, scopes, hash, createdAt, expiresAt? }] }`). A client presents `Authorization: Bearer
 * <name>.<secret>`; the key is looked up by name, then the hash of what was presented is compared with the stored one
 * in constant time.
 *
 * The secret is 256 random bits, so the hash is plain SHA-256, not a slow password hash (scrypt): nobody can guess a
 * 256-bit secret however fast each guess is, while scrypt would cost every request (and every forged one) tens of
 * milliseconds of CPU — a lever for anyone who wants to load the API.
 *
 * Scopes are independent: `publish` publishes, `read` reads, `admin` administers; a key needs each scope it uses.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { StorelinkError } from '../core/errors.js';
import { describeIssue } from '../core/validation.js';

export const API_SCOPES = ['publish', 'read', 'admin'] as const;
export type ApiScope = (typeof API_SCOPES)[number];

/** A key file this large is not a key file: refused before parsing. */
export const MAX_API_KEY_FILE_BYTES = 1024 * 1024;
export const MAX_API_KEYS = 1_000;
/** Bytes of randomness in a secret: 256 bits. */
const SECRET_BYTES = 32;
const HASH_PREFIX = 'sha256:';

const instantSchema = z.iso.datetime({ offset: true, message: 'expected an ISO 8601 date and time, e.g. 2030-01-31T00:00:00Z' });

/** Letters, digits, `-` and `_`: never a dot, which separates the name from the secret in what a client presents. */
export const apiKeyNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'expected 1 to 64 letters, digits, "-" or "_", starting with a letter or digit');

export const apiScopesSchema = z
  .array(z.enum(API_SCOPES, { message: `expected one of ${API_SCOPES.join(', ')}` }))
  .min(1, 'expected at least one scope')
  .refine((scopes) => new Set(scopes).size === scopes.length, 'lists a scope twice');

const apiKeyRecordSchema = z.strictObject({
  name: apiKeyNameSchema,
  scopes: apiScopesSchema,
  hash: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected "sha256:" and 64 hex digits'),
  createdAt: instantSchema,
  expiresAt: instantSchema.optional(),
});

export type ApiKeyRecord = z.output<typeof apiKeyRecordSchema>;

export const apiKeyFileSchema = z
  .strictObject({
    $schema: z.string().optional(),
    keys: z.array(apiKeyRecordSchema).max(MAX_API_KEYS, `expected at most ${MAX_API_KEYS} keys`),
  })
  .superRefine((file, context) => {
    const seen = new Set<string>();
    file.keys.forEach((key, index) => {
      if (seen.has(key.name)) context.addIssue({ code: 'custom', path: ['keys', index, 'name'], message: `"${key.name}" is listed twice` });
      seen.add(key.name);
    });
  });

export interface ApiKeyFile {
  keys: ApiKeyRecord[];
}

/** Parses a key file's text; FILE_UNREADABLE naming `source` and the field when it is not one. */
export function parseApiKeyFile(text: string, source: string): ApiKeyFile {
  if (Buffer.byteLength(text, 'utf8') > MAX_API_KEY_FILE_BYTES) {
    throw new StorelinkError('FILE_UNREADABLE', `${source}: larger than ${MAX_API_KEY_FILE_BYTES} bytes, not an API key file`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (cause) {
    throw new StorelinkError('FILE_UNREADABLE', `${source}: not valid JSON: ${(cause as Error).message}`, { cause });
  }
  const parsed = apiKeyFileSchema.safeParse(document);
  if (!parsed.success) {
    const { field, text: problem } = describeIssue(parsed.error.issues[0]!);
    throw new StorelinkError('FILE_UNREADABLE', `${source}: invalid API key file: ${problem}`, { field });
  }
  return { keys: parsed.data.keys };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** What a key file stores for a presented key (`<name>.<secret>`): the secret itself is never stored. */
export function hashOfApiKey(presented: string): string {
  return `${HASH_PREFIX}${digest(presented).toString('hex')}`;
}

export interface NewApiKey {
  /** What the client presents as its bearer token: shown once, never stored. */
  presented: string;
  record: ApiKeyRecord;
}

/** Makes a key: a fresh 256-bit secret, and the record (its hash, never the secret) for the key file. */
export function newApiKey(options: { name: string; scopes: readonly ApiScope[]; now: number; expiresAt?: number }): NewApiKey {
  const name = apiKeyNameSchema.parse(options.name);
  const scopes = apiScopesSchema.parse([...options.scopes]);
  if (options.expiresAt !== undefined && options.expiresAt <= options.now) throw new RangeError('newApiKey: expiresAt must be after now');
  const presented = `${name}.${randomBytes(SECRET_BYTES).toString('base64url')}`;
  return {
    presented,
    record: {
      name,
      scopes: API_SCOPES.filter((scope) => scopes.includes(scope)),
      hash: hashOfApiKey(presented),
      createdAt: new Date(options.now).toISOString(),
      ...(options.expiresAt === undefined ? {} : { expiresAt: new Date(options.expiresAt).toISOString() }),
    },
  };
}

/** The client a request authenticated as. */
export interface ApiClient {
  name: string;
  scopes: readonly ApiScope[];
}

/** The name of the key that the deprecated single `token` becomes: every scope. */
export const LEGACY_TOKEN_KEY_NAME = 'token';

/** A hash to compare against when the name is unknown, so an unknown name costs what a known one does. */
const NO_KEY_DIGEST = digest('no such key');

/** The keys valid at one moment: looks a presented key up by name and checks its hash in constant time. */
export class ApiKeyRing {
  readonly #byName = new Map<string, { record: ApiKeyRecord; digest: Buffer; expiresAt: number | undefined }>();
  readonly #legacyDigest: Buffer | undefined;

  constructor(file: ApiKeyFile, options: { legacyToken?: string } = {}) {
    for (const record of file.keys) {
      this.#byName.set(record.name, {
        record,
        digest: Buffer.from(record.hash.slice(HASH_PREFIX.length), 'hex'),
        expiresAt: record.expiresAt === undefined ? undefined : Date.parse(record.expiresAt),
      });
    }
    this.#legacyDigest = options.legacyToken === undefined ? undefined : digest(options.legacyToken);
  }

  /** The keys as `apikeys list` and `GET /api-keys` show them: never a hash. */
  list(): Omit<ApiKeyRecord, 'hash'>[] {
    const keys = [...this.#byName.values()].map(({ record: { hash: _hash, ...rest } }) => rest);
    return this.#legacyDigest === undefined ? keys : [{ name: LEGACY_TOKEN_KEY_NAME, scopes: [...API_SCOPES], createdAt: new Date(0).toISOString() }, ...keys];
  }

  /** The client a bearer token belongs to, or undefined for an unknown, expired or wrong one. */
  authenticate(presented: string, now: number): ApiClient | undefined {
    const presentedDigest = digest(presented);
    if (this.#legacyDigest !== undefined && timingSafeEqual(presentedDigest, this.#legacyDigest)) {
      return { name: LEGACY_TOKEN_KEY_NAME, scopes: API_SCOPES };
    }
    const dot = presented.indexOf('.');
    const entry = dot > 0 ? this.#byName.get(presented.slice(0, dot)) : undefined;
    const matches = timingSafeEqual(presentedDigest, entry?.digest ?? NO_KEY_DIGEST);
    if (entry === undefined || !matches) return undefined;
    if (entry.expiresAt !== undefined && now >= entry.expiresAt) return undefined;
    return { name: entry.record.name, scopes: entry.record.scopes };
  }
}
