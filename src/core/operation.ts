/**
 * The operation envelope: what the cloud sends a store, on either channel. `id` is the idempotency key: the store's
 * ledger and Service Bus duplicate detection both key on it, so a resend after a fallback is harmless.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { StorelinkError } from './errors.js';
import { entityNameSchema, instanceIdSchema, operationTypeSchema, storeIdSchema } from './names.js';
import { MAX_JSON_DEPTH, findNonJson, valueNestsDeeperThan, type JsonValue } from './json.js';
import { messageSignatureSchema, type MessageSignature } from './signing.js';
import { describeIssue, parseReportingInput, timestampSchema } from './validation.js';

export type { JsonValue } from './json.js';

export const DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024;
/**
 * The largest operation envelope as UTF-8 JSON, where a boundary reads one whole (the store's relay listener): a
 * payload of the default limit and room for the rest. A queue message is bounded by Service Bus already.
 */
export const MAX_OPERATION_BYTES = DEFAULT_MAX_PAYLOAD_BYTES + 16 * 1024;
/** How deep a payload may nest: the envelope holding it is the first level of MAX_JSON_DEPTH. */
export const MAX_PAYLOAD_DEPTH = MAX_JSON_DEPTH - 1;

function tooDeep(): string {
  return `nests deeper than ${MAX_JSON_DEPTH} levels (the envelope is the first; a payload may nest ${MAX_PAYLOAD_DEPTH})`;
}

/** A payload: bounded in depth first, so nothing after this check (findNonJson, JSON.stringify) meets a deep value. */
const payloadSchema = z.custom<JsonValue>().check((context) => {
  if (valueNestsDeeperThan(context.value, MAX_PAYLOAD_DEPTH)) {
    context.issues.push({ code: 'custom', message: tooDeep(), input: undefined });
    return;
  }
  const problem = findNonJson(context.value);
  if (problem !== undefined) context.issues.push({ code: 'custom', message: problem.message, path: problem.path, input: undefined });
});

export const LATENCIES = ['async', 'realtime'] as const;
export type Latency = (typeof LATENCIES)[number];
export const latencySchema = z.enum(LATENCIES);

export interface OperationSchemaOptions {
  /** Largest accepted `JSON.stringify(payload)` in UTF-8 bytes; default 256 KiB. */
  maxPayloadBytes?: number;
}

export function createOperationSchema(options: OperationSchemaOptions = {}) {
  const maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  if (!Number.isSafeInteger(maxPayloadBytes) || maxPayloadBytes <= 0) {
    throw new RangeError(`maxPayloadBytes must be a positive integer, got ${maxPayloadBytes}`);
  }
  return z
    .object({
      id: z.uuid({ message: 'must be a UUID' }),
      storeId: storeIdSchema,
      type: operationTypeSchema,
      payload: payloadSchema,
      latency: latencySchema,
      createdAt: timestampSchema,
      expiresAt: timestampSchema,
      replyTo: entityNameSchema.optional(),
      /**
       * The session of the cloud's replies subscription the store's reply goes to: the id of the cloud instance that
       * sent it (README "Several cloud instances"). Not signed: changing it can only misdirect a reply, which the
       * cloud still accepts only with the store's signature.
       */
      replyToSessionId: instanceIdSchema.optional(),
      correlationId: z.string().min(1, 'must not be empty').max(128, 'must be at most 128 characters').optional(),
      /** The cloud's signature over the signed fields (see core/signing.ts); the store refuses an operation without one. */
      signature: messageSignatureSchema.optional(),
    })
    // Zod runs this only once every field passed, so the payload is known to be shallow, plain JSON here (a test pins
    // it: a BigInt payload is refused, not thrown on by JSON.stringify).
    .superRefine((operation, context) => {
      const bytes = Buffer.byteLength(JSON.stringify(operation.payload), 'utf8');
      if (bytes > maxPayloadBytes) {
        context.addIssue({
          code: 'custom',
          path: ['payload'],
          message: `serializes to ${bytes} bytes; the limit is ${maxPayloadBytes}`,
          params: { storelinkCode: 'PAYLOAD_TOO_LARGE' },
        });
      }
      if (Date.parse(operation.expiresAt) <= Date.parse(operation.createdAt)) {
        context.addIssue({ code: 'custom', path: ['expiresAt'], message: 'must be later than createdAt' });
      }
    });
}

const defaultOperationSchema = createOperationSchema();

export interface Operation {
  id: string;
  storeId: string;
  type: string;
  payload: JsonValue;
  latency: Latency;
  createdAt: string;
  expiresAt: string;
  replyTo?: string | undefined;
  replyToSessionId?: string | undefined;
  correlationId?: string | undefined;
  /** The cloud's signature (`signOperation`); the store verifies it before anything else. */
  signature?: MessageSignature | undefined;
}

export type ParseResult<T> = { success: true; data: T } | { success: false; error: StorelinkError };

/**
 * The first check of an untrusted envelope, before zod and before its signature is checked: a deep payload is refused
 * at the cost of MAX_JSON_DEPTH levels, whatever its real depth (OPERATION_INVALID).
 */
export function operationBoundsError(value: unknown): StorelinkError | undefined {
  const payload = typeof value === 'object' && value !== null ? (value as { payload?: unknown }).payload : undefined;
  if (!valueNestsDeeperThan(payload, MAX_PAYLOAD_DEPTH)) return undefined;
  return new StorelinkError('OPERATION_INVALID', `Invalid operation: payload: ${tooDeep()}`, { field: 'payload' });
}

/**
 * Validates an untrusted value as an operation envelope. Never throws for bad input: the error's `field` and message
 * name the first failing field.
 */
export function parseOperation(value: unknown, options: OperationSchemaOptions = {}): ParseResult<Operation> {
  const bounds = operationBoundsError(value);
  if (bounds !== undefined) return { success: false, error: bounds };
  const schema = options.maxPayloadBytes === undefined ? defaultOperationSchema : createOperationSchema(options);
  const result = parseReportingInput(schema, value);
  if (result.success) return { success: true, data: result.data };
  const issue = result.error.issues[0]!;
  const { field, text } = describeIssue(issue);
  const tooLarge = issue.code === 'custom' && issue.params?.['storelinkCode'] === 'PAYLOAD_TOO_LARGE';
  const message = `Invalid operation: ${text}`;
  const more = result.error.issues.length - 1;
  return {
    success: false,
    error: new StorelinkError(tooLarge ? 'PAYLOAD_TOO_LARGE' : 'OPERATION_INVALID', more > 0 ? `${message} (and ${more} more)` : message, {
      field,
      cause: result.error,
    }),
  };
}

export interface CreateOperationInit {
  storeId: string;
  type: string;
  payload: JsonValue;
  latency: Latency;
  /** How long the operation stays valid from creation. */
  timeToLiveInMs: number;
  replyTo?: string;
  replyToSessionId?: string;
  correlationId?: string;
  /** Supply to resend an existing operation under its idempotency key; default a new UUID. */
  id?: string;
}

export interface CreateOperationClock {
  nowInMs?: number;
  newId?: () => string;
}

/** Builds and validates a new envelope; throws the parse error for bad input. */
export function createOperation(init: CreateOperationInit, clock: CreateOperationClock = {}): Operation {
  if (!Number.isFinite(init.timeToLiveInMs) || init.timeToLiveInMs <= 0) {
    throw new RangeError(`timeToLiveInMs must be a positive number of milliseconds, got ${init.timeToLiveInMs}`);
  }
  const nowInMs = clock.nowInMs ?? Date.now();
  const candidate = {
    id: init.id ?? (clock.newId ?? randomUUID)(),
    storeId: init.storeId,
    type: init.type,
    payload: init.payload,
    latency: init.latency,
    createdAt: new Date(nowInMs).toISOString(),
    expiresAt: new Date(nowInMs + init.timeToLiveInMs).toISOString(),
    ...(init.replyTo === undefined ? {} : { replyTo: init.replyTo }),
    ...(init.replyToSessionId === undefined ? {} : { replyToSessionId: init.replyToSessionId }),
    ...(init.correlationId === undefined ? {} : { correlationId: init.correlationId }),
  };
  const result = parseOperation(candidate);
  if (!result.success) throw result.error;
  return result.data;
}

/** Whether the operation's `expiresAt` has passed at `nowInMs`. */
export function isExpired(operation: Pick<Operation, 'expiresAt'>, nowInMs: number): boolean {
  return Date.parse(operation.expiresAt) <= nowInMs;
}
