/**
 * Ed25519 signatures on everything that crosses between the cloud and a store: the cloud signs every operation, each
 * store signs every message it sends the cloud. What is signed is a canonical form of the message's own fields
 * (deterministic JSON: object keys sorted, no whitespace, arrays in order), preceded by a label naming what kind of
 * message it is, so a signature made for one kind can never be passed off as another. Keys carry a short id, and a
 * verifier may trust several at once, which is how keys rotate: trust the new one, switch the signer, drop the old.
 * Pure: node:crypto only, no I/O (the CLI reads key files).
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { MAX_JSON_DEPTH } from './json.js';

/** A key id: 1 to 64 letters, digits, `.`, `_` or `-` (say `cloud-2025-06`). */
export const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
export const keyIdSchema = z.string().regex(KEY_ID_PATTERN, 'must be 1 to 64 letters, digits, ".", "_" or "-"');

/** An Ed25519 signature is 64 bytes: 86 characters of base64url without padding. */
const SIGNATURE_VALUE_LENGTH = 86;

/** The signature a message carries: the signer's key id and the Ed25519 signature, base64url. */
export interface MessageSignature {
  keyId: string;
  value: string;
}

export const messageSignatureSchema = z.strictObject(
  {
    keyId: keyIdSchema,
    value: z.string().regex(/^[A-Za-z0-9_-]{86}$/, 'must be an Ed25519 signature in base64url (86 characters)'),
  },
  { error: 'must be { keyId, value }' },
);

/** A private key as a KeyObject or PEM text (PKCS #8), and the id verifiers know its public half by. */
export interface SigningKey {
  keyId: string;
  privateKey: KeyObject | string;
}

/** Public keys trusted at once, by key id: a KeyObject or PEM text (SPKI) each. */
export type TrustedKeys = Readonly<Record<string, KeyObject | string>>;

/**
 * What a signature is over: the label separates operations, store messages, the cloud's confirmations that it holds
 * relay answers, and the store's HTTP answers to relay calls (see relayProtocol.ts).
 */
export type SignedKind = 'operation' | 'store-message' | 'relay-confirmation' | 'relay-answer';

const LABELS: Record<SignedKind, string> = {
  operation: 'storelink operation v1\n',
  'store-message': 'storelink store message v1\n',
  'relay-confirmation': 'storelink relay confirmation v1\n',
  'relay-answer': 'storelink relay answer v1\n',
};

/** Why a message's signature was not accepted. */
export type SignatureProblem = 'unsigned' | 'unknown-key' | 'bad-signature';

export type SignatureCheck = { valid: true; keyId: string } | { valid: false; problem: SignatureProblem; message: string };

export interface SigningKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** A new Ed25519 key pair. */
export function generateSigningKeyPair(): SigningKeyPair {
  return generateKeyPairSync('ed25519');
}

/** A key pair as PEM texts: the private key as PKCS #8, the public key as SPKI. */
export function keyPairToPem(pair: SigningKeyPair): { privateKeyPem: string; publicKeyPem: string } {
  return {
    privateKeyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

function checkKeyId(keyId: unknown, where: string): asserts keyId is string {
  if (typeof keyId !== 'string' || !KEY_ID_PATTERN.test(keyId)) {
    throw new TypeError(`${where}: key id ${JSON.stringify(keyId)} must be 1 to 64 letters, digits, ".", "_" or "-"`);
  }
}

function ed25519(key: KeyObject, where: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError(`${where} must be an Ed25519 key, got ${key.asymmetricKeyType ?? key.type}`);
  return key;
}

function privateKeyOf(input: unknown, where: string): KeyObject {
  if (typeof input === 'string') {
    try {
      return ed25519(createPrivateKey(input), where);
    } catch (error) {
      if (error instanceof TypeError && error.message.startsWith(where)) throw error;
      throw new TypeError(`${where} is not a private key in PEM (PKCS #8): ${(error as Error).message}`);
    }
  }
  if (typeof input === 'object' && input !== null && (input as KeyObject).type === 'private') return ed25519(input as KeyObject, where);
  throw new TypeError(`${where} must be an Ed25519 private key (a KeyObject or PEM text)`);
}

function publicKeyOf(input: unknown, where: string): KeyObject {
  if (typeof input === 'string') {
    try {
      return ed25519(createPublicKey(input), where);
    } catch (error) {
      if (error instanceof TypeError && error.message.startsWith(where)) throw error;
      throw new TypeError(`${where} is not a public key in PEM (SPKI): ${(error as Error).message}`);
    }
  }
  if (typeof input === 'object' && input !== null && (input as KeyObject).type === 'public') return ed25519(input as KeyObject, where);
  throw new TypeError(`${where} must be an Ed25519 public key (a KeyObject or PEM text)`);
}

/**
 * The canonical JSON text of a value: object keys sorted (by UTF-16 code units, as `Array.prototype.sort` does),
 * no whitespace, arrays in order, strings and numbers as JSON.stringify writes them; a key whose value is undefined
 * is left out, as JSON.stringify leaves it out. Throws a TypeError for anything that is not plain JSON, or that
 * nests deeper than MAX_JSON_DEPTH + 1 levels (an envelope holding a payload of the deepest accepted depth).
 */
export function canonicalJson(value: unknown): string {
  return write(value, 0, new Map());
}

/** Whether the keys are in sorted order already (JSON written by JSON.stringify of a sorted object usually is). */
function isSorted(keys: string[]): boolean {
  for (let index = 1; index < keys.length; index += 1) if (keys[index - 1]! > keys[index]!) return false;
  return true;
}

/**
 * What JSON.stringify escapes in a string: `"`, `\\`, control characters and lone surrogates. A string with none of
 * them (most) is written between quotes as it is, with no call into JSON.stringify; the others go through it, so the
 * text is JSON.stringify's in both cases (a test compares every UTF-16 code unit).
 */
// eslint-disable-next-line no-control-regex -- control characters are exactly what JSON escapes
const ESCAPED_IN_JSON = /["\\\u0000-\u001f\ud800-\udfff]/;

// String concatenation rather than an array of parts: V8 builds it as a rope, which measures faster here.
function write(value: unknown, depth: number, quotedKeys: Map<string, string>): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return ESCAPED_IN_JSON.test(value) ? JSON.stringify(value) : `"${value}"`;
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`cannot sign a non-finite number (${value})`);
      // A finite number's JSON text is its String() text (-0 included: both write "0").
      return String(value);
    case 'object':
      break;
    default:
      throw new TypeError(`cannot sign a ${typeof value}`);
  }
  if (depth >= MAX_JSON_DEPTH + 1) throw new TypeError(`cannot sign a value nested deeper than ${MAX_JSON_DEPTH + 1} levels`);
  if (Array.isArray(value)) {
    let text = '[';
    for (let index = 0; index < value.length; index += 1) {
      if (index > 0) text += ',';
      text += write(value[index], depth + 1, quotedKeys);
    }
    return `${text}]`;
  }
  const prototype = Object.getPrototypeOf(value) as unknown;
  if (prototype !== Object.prototype && prototype !== null) throw new TypeError('cannot sign an object that is not plain JSON');
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  if (!isSorted(keys)) keys.sort();
  let text = '{';
  let first = true;
  for (const key of keys) {
    const child = record[key];
    if (child === undefined) continue;
    if (!first) text += ',';
    first = false;
    // Payloads repeat their keys (order lines, say): each is quoted once per call.
    let quoted = quotedKeys.get(key);
    if (quoted === undefined) {
      quoted = `${JSON.stringify(key)}:`;
      quotedKeys.set(key, quoted);
    }
    text += quoted + write(child, depth + 1, quotedKeys);
  }
  return `${text}}`;
}

function signedBytes(kind: SignedKind, fields: unknown): Buffer {
  return Buffer.from(LABELS[kind] + canonicalJson(fields), 'utf8');
}

/** Signs one kind of message with one private key. */
export class Signer {
  readonly keyId: string;
  readonly #kind: SignedKind;
  readonly #key: KeyObject;

  /** `where` names the option in error messages (`createDispatcher: signing`). */
  constructor(key: SigningKey, kind: SignedKind, where: string) {
    if (typeof key !== 'object' || key === null) throw new TypeError(`${where} must be { keyId, privateKey }`);
    checkKeyId(key.keyId, where);
    this.keyId = key.keyId;
    this.#kind = kind;
    this.#key = privateKeyOf(key.privateKey, `${where}.privateKey`);
  }

  sign(fields: unknown): MessageSignature {
    return { keyId: this.keyId, value: sign(null, signedBytes(this.#kind, fields), this.#key).toString('base64url') };
  }
}

/** Checks signatures of one kind of message against a set of trusted public keys. */
export class Verifier {
  readonly #kind: SignedKind;
  readonly #keys = new Map<string, KeyObject>();

  constructor(trusted: TrustedKeys, kind: SignedKind, where: string) {
    if (typeof trusted !== 'object' || trusted === null || Object.keys(trusted).length === 0) {
      throw new TypeError(`${where} must name at least one trusted public key: { [keyId]: publicKey }`);
    }
    for (const [keyId, key] of Object.entries(trusted)) {
      checkKeyId(keyId, where);
      this.#keys.set(keyId, publicKeyOf(key, `${where}.${keyId}`));
    }
    this.#kind = kind;
  }

  /** The key ids trusted. */
  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  /** Never throws: an unsigned message, an unknown key, a bad signature or fields that cannot be signed say so. */
  verify(fields: unknown, signature: unknown): SignatureCheck {
    return this.verifyAs(this.#kind, fields, signature);
  }

  /** `verify` for another kind of message signed by the same keys (a store's messages and its relay answers). */
  verifyAs(kind: SignedKind, fields: unknown, signature: unknown): SignatureCheck {
    if (signature === undefined || signature === null) return { valid: false, problem: 'unsigned', message: 'it carries no signature' };
    if (typeof signature !== 'object') return { valid: false, problem: 'bad-signature', message: 'its signature is not { keyId, value }' };
    const { keyId, value } = signature as Record<string, unknown>;
    if (typeof keyId !== 'string' || typeof value !== 'string') return { valid: false, problem: 'bad-signature', message: 'its signature is not { keyId, value }' };
    const key = this.#keys.get(keyId);
    if (key === undefined) {
      return { valid: false, problem: 'unknown-key', message: `it is signed with key "${keyId.slice(0, 64)}", which is not trusted (trusted: ${this.keyIds.join(', ')})` };
    }
    if (value.length !== SIGNATURE_VALUE_LENGTH) return { valid: false, problem: 'bad-signature', message: `its signature by key "${keyId}" is not an Ed25519 signature` };
    let bytes: Buffer;
    try {
      bytes = signedBytes(kind, fields);
    } catch (error) {
      return { valid: false, problem: 'bad-signature', message: `its fields cannot be signed: ${(error as Error).message}` };
    }
    if (!verify(null, bytes, key, Buffer.from(value, 'base64url'))) {
      return { valid: false, problem: 'bad-signature', message: `its signature by key "${keyId}" does not match its content` };
    }
    return { valid: true, keyId };
  }
}

/** The fields of an operation envelope a signature covers (correlationId and replyTo are not: see README "Signatures"). */
export function operationSignedFields(operation: object): Record<string, unknown> {
  const { id, storeId, type, latency, createdAt, expiresAt, payload } = operation as Record<string, unknown>;
  return { id, storeId, type, latency, createdAt, expiresAt, payload };
}

/** The fields of a store message a signature covers: all of them but the signature. */
export function storeMessageSignedFields(message: object): Record<string, unknown> {
  const { id, kind, type, storeId, correlationId, body, createdAt } = message as Record<string, unknown>;
  return { id, kind, type, storeId, correlationId, body, createdAt };
}

/**
 * What a store's answer to a relay call signs: the store, the operation it answers, the HTTP status and the SHA-256 of
 * the body exactly as sent (base64url). The cloud checks it against the call it made, so an answer is the store's only
 * if the store's key made it: a relay credential alone cannot answer for the store.
 */
export function relayAnswerSignedFields(storeId: string, operationId: string, status: number, body: string): Record<string, unknown> {
  return { storeId, operationId, status, bodySha256: createHash('sha256').update(body, 'utf8').digest('base64url') };
}

/** What the cloud's confirmation of relay answers signs: the store it is for and the operation ids, in order. */
export function relayConfirmationSignedFields(storeId: string, operationIds: readonly string[]): Record<string, unknown> {
  return { storeId, operationIds: [...operationIds] };
}
