/**
 * The single path both channels feed. An operation takes effect exactly once whichever way it arrives, however often:
 * the cloud's signature → envelope check → addressed to this store → ledger look-up (a known id returns its first outcome, never runs
 * twice) → in-flight look-up (the same id arriving on both channels at once shares one run) → expiry → handler with
 * its payload schema → ledger record, durable before the caller acknowledges anything → reply through the outbox, for
 * every operation whichever channel carried it: the cloud learns each final outcome, late ones too. From the queue the
 * reply is durable before `execute` resolves (the caller then completes the message); on the relay the HTTP answer
 * carries the outcome, and the outbox reply follows off the hot path (appended once the answer is on its way, not
 * awaited): the store cannot know that the relay delivered its answer, so the reply still goes, for a cloud whose
 * call timed out or whose fallback was not the queue.
 */
import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { StorelinkError, isStorelinkError } from '../core/errors.js';
import { findNonJson, type JsonValue } from '../core/json.js';
import { isExpired, operationBoundsError, parseOperation, type Operation } from '../core/operation.js';
import { instanceIdSchema } from '../core/names.js';
import { MAX_STORE_MESSAGE_BYTES, type ReplyBody, type StoreMessage } from '../core/storeMessage.js';
import { operationSignedFields, type Verifier } from '../core/signing.js';
import { describeIssue } from '../core/validation.js';
import type { LedgerEntry } from './ledger.js';

export type Channel = 'relay' | 'queue';

export interface HandlerContext {
  operation: Operation;
  channel: Channel;
  abortSignal: AbortSignal;
}

/**
 * What a store does for one operation type. Throw `rejectOperation(...)` to refuse it for good (insufficient stock, an
 * invalid order): the refusal is recorded and never retried. Throw anything else for a transient failure (database
 * down, a timeout): nothing is recorded; from the queue the store retries it with back-off while holding the message,
 * then gives it back to the queue, and dead-letters it HANDLER_FAILED on its last allowed delivery; on the relay the
 * cloud takes the type's fallback (the queue, by default) or answers the failure, as its policy says.
 */
export interface OperationHandler<Payload = unknown> {
  /** Validates the payload before the handler sees it (a zod schema); a failure is a permanent OPERATION_INVALID. */
  payload: { safeParse(value: unknown): z.ZodSafeParseResult<Payload> };
  handle(payload: Payload, context: HandlerContext): Promise<JsonValue> | JsonValue;
}

/** Any handler, whatever its payload type (the executor validates the payload before calling it). */
export interface AnyOperationHandler {
  payload: { safeParse(value: unknown): z.ZodSafeParseResult<unknown> };
  handle(payload: never, context: HandlerContext): Promise<JsonValue> | JsonValue;
}

export type OperationHandlers = Readonly<Record<string, AnyOperationHandler>>;

/** Declares a handler with its payload schema, keeping the payload's type. */
export function defineHandler<Schema extends z.ZodType>(
  payload: Schema,
  handle: (payload: z.infer<Schema>, context: HandlerContext) => Promise<JsonValue> | JsonValue,
): OperationHandler<z.infer<Schema>> {
  return { payload, handle };
}

/**
 * The error a handler throws to refuse an operation for good (insufficient stock, say): recorded in the ledger as the
 * operation's outcome, returned again on a redelivery, never retried. Throw any other error for a failure that may
 * pass; that one is retried.
 */
export function rejectOperation(message: string): StorelinkError {
  return new StorelinkError('OPERATION_REJECTED', message);
}

/** What the executor keeps per operation id. */
export type ExecutionRecord = LedgerEntry;

export interface ExecutionLedger {
  get(id: string): ExecutionRecord | undefined;
  /** Durable when resolved; the first record of an id wins and is returned. */
  record(entry: ExecutionRecord): Promise<ExecutionRecord>;
}

export type ReplyEvent = StoreMessage & { kind: 'reply'; correlationId: string };

export interface ReplyOutbox {
  append(event: ReplyEvent, options?: { holdForInMs?: number }): Promise<void>;
}

export interface ExecutorOptions {
  storeId: string;
  /** Told when the outbox refused a relay operation's reply (appended off the hot path, so nobody else awaits it). */
  onReplyFailed?: (failure: { operationId: string; error: unknown }) => void;
  handlers: OperationHandlers;
  ledger: ExecutionLedger;
  outbox: ReplyOutbox;
  /**
   * How long the outbox holds a relay answer's reply back, waiting for the cloud to confirm it has the answer
   * (relayProtocol.ts); undefined or 0: sent at once.
   */
  relayReplyHoldInMs?: number;
  /** The cloud's public keys (kind `operation`): an operation runs only if one of them signed it. */
  cloudKeys: Verifier;
  now?: () => number;
  /** Told when a result is too large to send: the reply says REPLY_TOO_LARGE instead (the ledger keeps the result). */
  onReplyTooLarge?: (tooLarge: ReplyTooLarge) => void;
}

export interface ReplyTooLarge {
  operationId: string;
  operationType: string;
  /** The whole reply message as UTF-8 JSON, had it carried the result. */
  bytes: number;
  limitBytes: number;
}

/** What the store tells the cloud about an operation it dead-lettered: why, in the dead letter's words. */
export interface DeadLetterReport {
  reason: string;
  description: string;
}

/** An id the cloud could have given an operation: a correlation id at most this long. */
const MAX_REPORTED_ID_LENGTH = 128;
const MAX_REPORTED_TYPE_LENGTH = 256;

export interface Execution {
  operation: Operation;
  record: ExecutionRecord;
  /** True when the ledger already had the outcome: the handler did not run this time. */
  replayed: boolean;
  /**
   * Resolves once the reply is durable in the outbox. Already resolved from the queue; on the relay it settles after
   * the answer (rejections are reported through `onReplyFailed` too).
   */
  replyWritten: Promise<void>;
}

export function replyBodyOf(record: ExecutionRecord): ReplyBody {
  return record.outcome === 'done'
    ? { outcome: 'done', result: record.result ?? null }
    : { outcome: 'rejected', error: record.error ?? { code: 'OPERATION_REJECTED', message: 'rejected' } };
}

/** A stable UUID for the reply to an operation, so a resent reply is dropped by duplicate detection. */
export function replyIdFor(operationId: string): string {
  const hex = createHash('sha256').update(`storelink-reply:${operationId}`).digest('hex');
  // Shaped as an RFC 9562 version 8 (custom) UUID.
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${((parseInt(hex.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${hex.slice(18, 20)}-${hex.slice(20, 32)}`;
}

export class Executor {
  readonly #options: ExecutorOptions;
  readonly #inFlight = new Map<string, Promise<Execution>>();
  readonly #now: () => number;

  constructor(options: ExecutorOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** The operation types this executor can run. */
  get types(): string[] {
    return Object.keys(this.#options.handlers);
  }

  /**
   * Runs an untrusted envelope. Resolves with the outcome (a refusal is an outcome, recorded like a result); rejects
   * with a StorelinkError for anything else — a permanent failure (`isPermanentFailure`) never succeeds, the rest
   * may on a later delivery.
   */
  async execute(input: unknown, channel: Channel, abortSignal: AbortSignal): Promise<Execution> {
    // Its depth bounded first (the signature check walks it), then before anything else its signature: nothing about
    // an operation the cloud did not sign is looked at, recorded or reported.
    const bounds = operationBoundsError(input);
    if (bounds !== undefined) throw bounds;
    const refusal = this.#signatureRefusal(input);
    if (refusal !== undefined) throw refusal;
    const parsed = parseOperation(input);
    if (!parsed.success) throw parsed.error;
    return this.#accepted(parsed.data, channel, abortSignal);
  }

  /**
   * Runs an envelope its channel already bounded and parsed at the boundary (`parseOperation`, after the size and
   * depth checks of the request text: the relay listener), without parsing it again. Its signature is still the
   * first thing checked here, as in `execute`, and a refused one is neither recorded nor reported.
   */
  async executeParsed(operation: Operation, channel: Channel, abortSignal: AbortSignal): Promise<Execution> {
    const refusal = this.#signatureRefusal(operation);
    if (refusal !== undefined) throw refusal;
    return this.#accepted(operation, channel, abortSignal);
  }

  /** The rest of a run, once the operation is known to be the cloud's and well formed. */
  async #accepted(operation: Operation, channel: Channel, abortSignal: AbortSignal): Promise<Execution> {
    if (operation.storeId !== this.#options.storeId) {
      throw new StorelinkError('OPERATION_MISROUTED', `operation ${operation.id} is for store "${operation.storeId}", not "${this.#options.storeId}"`, {
        field: 'storeId',
      });
    }
    // In flight first: the ledger may show an entry before its write is durable, and a delivery must not be
    // acknowledged on the strength of an entry that a crash could still lose.
    const running = this.#inFlight.get(operation.id);
    if (running !== undefined) {
      const shared = await running;
      // A queued delivery is completed only once the cloud's reply is durable, whichever channel ran the operation.
      if (channel === 'queue') await shared.replyWritten;
      return { ...shared, replayed: true };
    }
    const known = this.#options.ledger.get(operation.id);
    if (known !== undefined) return this.#replied(operation, known, true, channel);
    const execution = this.#run(operation, channel, abortSignal);
    this.#inFlight.set(operation.id, execution);
    try {
      return await execution;
    } finally {
      this.#inFlight.delete(operation.id);
    }
  }

  /** Why the envelope is not the cloud's (SIGNATURE_INVALID), or undefined when a trusted cloud key signed it. */
  #signatureRefusal(input: unknown): StorelinkError | undefined {
    const envelope = typeof input === 'object' && input !== null && !Array.isArray(input) ? (input as Record<string, unknown>) : undefined;
    const check =
      envelope === undefined
        ? { valid: false as const, message: 'it is not an operation envelope (a JSON object)' }
        : this.#options.cloudKeys.verify(operationSignedFields(envelope), envelope['signature']);
    if (check.valid) return undefined;
    const id = typeof envelope?.['id'] === 'string' ? ` ${JSON.stringify(envelope['id'].slice(0, MAX_REPORTED_ID_LENGTH))}` : '';
    return new StorelinkError('SIGNATURE_INVALID', `operation${id} refused: ${check.message}`, { field: 'signature' });
  }

  async #run(operation: Operation, channel: Channel, abortSignal: AbortSignal): Promise<Execution> {
    if (isExpired(operation, this.#now())) {
      throw new StorelinkError('OPERATION_EXPIRED', `operation ${operation.id} expired at ${operation.expiresAt}`);
    }
    const handler = Object.hasOwn(this.#options.handlers, operation.type) ? this.#options.handlers[operation.type] : undefined;
    if (handler === undefined) {
      throw new StorelinkError('OPERATION_TYPE_UNKNOWN', `this store has no handler for "${operation.type}"`, { field: 'type' });
    }
    const payload = (handler as OperationHandler).payload.safeParse(operation.payload);
    if (!payload.success) {
      const issue = payload.error.issues[0]!;
      const { field, text } = describeIssue({ ...issue, path: ['payload', ...issue.path] });
      throw new StorelinkError('OPERATION_INVALID', `invalid ${operation.type} operation: ${text}`, { field, cause: payload.error });
    }
    const base = {
      id: operation.id,
      storeId: operation.storeId,
      type: operation.type,
      channel,
      expiresAt: operation.expiresAt,
    };
    let entry: ExecutionRecord;
    try {
      const result = await (handler as OperationHandler).handle(payload.data, { operation, channel, abortSignal });
      const problem = findNonJson(result);
      if (problem !== undefined) {
        throw new StorelinkError('HANDLER_FAILED', `the ${operation.type} handler returned a result that is not JSON: ${problem.message}`);
      }
      entry = { ...base, outcome: 'done', result: result ?? null, executedAt: new Date(this.#now()).toISOString() };
    } catch (error) {
      if (isStorelinkError(error, 'OPERATION_REJECTED')) {
        entry = { ...base, outcome: 'rejected', error: { code: error.code, message: error.message }, executedAt: new Date(this.#now()).toISOString() };
      } else if (isStorelinkError(error) && error.code !== 'OPERATION_REJECTED') {
        throw error.code === 'HANDLER_FAILED' ? error : new StorelinkError('HANDLER_FAILED', error.message, { cause: error });
      } else {
        throw new StorelinkError('HANDLER_FAILED', `the ${operation.type} handler failed: ${error instanceof Error ? error.message : String(error)}`, {
          cause: error,
        });
      }
    }
    const recorded = await this.#options.ledger.record(entry);
    return this.#replied(operation, recorded, false, channel);
  }

  /**
   * Reports the outcome through the outbox, whether or not the operation asked for a reply (again on a replay: the
   * stable id makes the resend harmless). A result too large for a store message is replaced by a `failed` reply
   * that says so; the ledger keeps the result, so a relay caller still gets it.
   */
  async #replied(operation: Operation, record: ExecutionRecord, replayed: boolean, channel: Channel): Promise<Execution> {
    if (channel === 'queue') {
      await this.#options.outbox.append(this.#replyOf(operation, record));
      return { operation, record, replayed, replyWritten: Promise.resolve() };
    }
    // After the relay answer is written: setImmediate runs once the promise chain that carries the result to the
    // listener (microtasks) has sent it; building the reply (its id, its size check), its signature and its write
    // then cost the answer nothing.
    const holdForInMs = this.#options.relayReplyHoldInMs;
    const appendOptions = holdForInMs === undefined || holdForInMs === 0 ? undefined : { holdForInMs };
    const replyWritten = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#options.outbox.append(this.#replyOf(operation, record), appendOptions));
    replyWritten.catch((error: unknown) => this.#options.onReplyFailed?.({ operationId: operation.id, error }));
    return { operation, record, replayed, replyWritten };
  }

  /** The reply reporting a record; a result too large for a store message is replaced by a REPLY_TOO_LARGE failure. */
  #replyOf(operation: Operation, record: ExecutionRecord): ReplyEvent {
    const reply = this.#replyFor(operation.id, operation.type, replyBodyOf(record), operation.replyToSessionId);
    const bytes = Buffer.byteLength(JSON.stringify(reply), 'utf8');
    if (bytes > MAX_STORE_MESSAGE_BYTES) {
      this.#options.onReplyTooLarge?.({ operationId: operation.id, operationType: operation.type, bytes, limitBytes: MAX_STORE_MESSAGE_BYTES });
      reply.body = {
        outcome: 'failed',
        executed: true,
        error: {
          code: 'REPLY_TOO_LARGE',
          message: `the ${operation.type} result makes a ${bytes}-byte reply; a store message may be at most ${MAX_STORE_MESSAGE_BYTES} bytes (the store's ledger keeps the result)`,
        },
      };
    }
    return reply;
  }

  /** `sessionId`: the cloud instance that sent the operation (its replyToSessionId), which the reply goes back to. */
  #replyFor(operationId: string, type: string, body: ReplyBody, sessionId?: string): ReplyEvent {
    return {
      id: replyIdFor(operationId),
      kind: 'reply',
      type,
      storeId: this.#options.storeId,
      correlationId: operationId,
      ...(sessionId === undefined ? {} : { sessionId }),
      body,
      createdAt: new Date(this.#now()).toISOString(),
    };
  }

  /**
   * Tells the cloud that the store set an operation aside unexecuted (a `failed` reply, executed false, the dead-letter
   * reason as its code). `body` is the untrusted message as it came: without a usable id and storeId nobody could be
   * told, and nothing is sent (resolves undefined). Nor is anything sent about a message the cloud did not sign: the
   * store's signed report would lend a forger's operation id the store's word, and settle as failed a genuine
   * operation still on its way (see README "Threat model"). Append it before dead-lettering: a crash in between
   * redelivers the message, and the resent report has the same id.
   */
  async reportDeadLettered(body: unknown, report: DeadLetterReport): Promise<ReplyEvent | undefined> {
    if (typeof body !== 'object' || body === null) return undefined;
    if (this.#signatureRefusal(body) !== undefined) return undefined;
    const { id, storeId, type, replyToSessionId } = body as Record<string, unknown>;
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_REPORTED_ID_LENGTH || typeof storeId !== 'string' || storeId.length === 0) return undefined;
    const reportedType = typeof type === 'string' && type.length > 0 && type.length <= MAX_REPORTED_TYPE_LENGTH ? type : 'unknown';
    const sessionId = instanceIdSchema.safeParse(replyToSessionId).data;
    const reply = this.#replyFor(id, reportedType, { outcome: 'failed', executed: false, error: { code: report.reason, message: report.description } }, sessionId);
    await this.#options.outbox.append(reply);
    return reply;
  }
}

/** The outcome as the relay answers it: the result, or the refusal thrown again. */
export function resultOf(execution: Execution): JsonValue {
  const { record } = execution;
  if (record.outcome === 'done') return record.result ?? null;
  throw new StorelinkError('OPERATION_REJECTED', record.error?.message ?? 'the store refused the operation');
}
