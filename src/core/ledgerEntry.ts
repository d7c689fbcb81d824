/**
 * A ledger entry: what a store remembers of one operation it executed, so that a redelivery gets the first outcome
 * again. The same schema checks an entry before it is recorded and every entry read back from disk.
 */
import type { z } from 'zod';
import { jsonValueSchema } from './json.js';
import { refusalSchema } from './storeMessage.js';
import { nonEmptyStringSchema, oneOf, strictFields, timestampSchema } from './validation.js';

export const ledgerEntrySchema = strictFields({
  /** The operation id (UUID): the idempotency key. */
  id: nonEmptyStringSchema,
  storeId: nonEmptyStringSchema,
  type: nonEmptyStringSchema,
  outcome: oneOf(['done', 'rejected']),
  /** The handler's result, when done. */
  result: jsonValueSchema.optional(),
  /** Why the handler refused, when rejected: a redelivery gets the same refusal. */
  error: refusalSchema.optional(),
  channel: oneOf(['relay', 'queue']),
  executedAt: timestampSchema,
  /** The operation's expiry: until then it may be redelivered, so its entry is kept at least that long. */
  expiresAt: timestampSchema,
}).check((context) => {
  const entry = context.value;
  const fail = (field: 'result' | 'error', message: string) => context.issues.push({ code: 'custom', path: [field], message, input: undefined });
  if (entry.outcome === 'done') {
    if (entry.error !== undefined) fail('error', 'must be absent when outcome is "done"');
  } else if (entry.result !== undefined) {
    fail('result', 'must be absent when outcome is "rejected" (put the refusal in .error)');
  } else if (entry.error === undefined) {
    fail('error', 'must be { code, message } when outcome is "rejected"');
  }
});

export type LedgerEntry = z.infer<typeof ledgerEntrySchema>;
