import { describe, expect, it } from 'vitest';
import { ledgerEntrySchema, type LedgerEntry } from '../../src/core/ledgerEntry.js';
import { announcementBodySchema, parseStoreMessage, replyBodySchema, type StoreMessage } from '../../src/core/storeMessage.js';
import { validate } from '../../src/core/validation.js';

const reply: StoreMessage = {
  id: '7d3f0c1e-2a4b-8c5d-9e6f-0a1b2c3d4e5f',
  kind: 'reply',
  type: 'clickAndCollect.order',
  storeId: 'paris-12',
  correlationId: '3b241101-e2bb-4255-8caf-4136c566a962',
  body: { outcome: 'done', result: { accepted: true } },
  createdAt: '2026-11-28T17:00:00.000Z',
};

const entry: LedgerEntry = {
  id: '3b241101-e2bb-4255-8caf-4136c566a962',
  storeId: 'paris-12',
  type: 'clickAndCollect.order',
  outcome: 'rejected',
  error: { code: 'OPERATION_REJECTED', message: 'no stock' },
  channel: 'relay',
  executedAt: '2026-11-28T17:00:00.000Z',
  expiresAt: '2026-11-28T18:00:00+01:00',
};

describe('parseStoreMessage: what the cloud inbox accepts from a store', () => {
  it('reads a store message', () => {
    expect(parseStoreMessage(reply)).toEqual(reply);
  });

  it('drops a field it does not know, as from a newer store, and reads the rest', () => {
    expect(parseStoreMessage({ ...reply, priority: 'from-a-newer-store' })).toEqual(reply);
  });

  it('keeps the signature whatever it holds, for the signature check to judge (a malformed one is a bad signature)', () => {
    expect(parseStoreMessage({ ...reply, signature: 'trust me' })).toEqual({ ...reply, signature: 'trust me' });
  });

  it.each([
    ['not an object', 'reply'],
    ['no body', { ...reply, body: undefined }],
    ['an unknown kind', { ...reply, kind: 'notice' }],
    ['a date without a time zone', { ...reply, createdAt: '2026-11-28T17:00:00' }],
  ])('refuses %s', (_label, body) => {
    expect(parseStoreMessage(body)).toBeUndefined();
  });
});

describe('the bodies of replies and announcements', () => {
  it.each([
    [{ outcome: 'done', result: null }, true],
    [{ outcome: 'rejected', error: { code: 'OPERATION_REJECTED', message: 'no stock' } }, true],
    [{ outcome: 'done' }, false],
    [{ outcome: 'rejected', result: 1 }, false],
    [{ outcome: 'rejected', error: { code: 'OPERATION_REJECTED' } }, false],
    [{ outcome: 'maybe', result: 1 }, false],
  ])('reply body %j is valid: %s', (body, valid) => {
    expect(replyBodySchema.safeParse(body).success).toBe(valid);
  });

  it.each([
    [{ relay: 'up' }, true],
    [{ relay: 'disabled' }, true],
    [{ relay: true }, false],
    [{ relay: 'up', since: 0 }, false],
    [{ relay: 'down', outbox: { pending: 3, parked: 0 } }, true],
    [{ outbox: { pending: 0, parked: 2 } }, true],
    [{}, false],
    [{ outbox: { pending: -1, parked: 0 } }, false],
    [{ outbox: { pending: 1.5, parked: 0 } }, false],
    [{ outbox: { pending: 1 } }, false],
  ])('announcement body %j is valid: %s', (body, valid) => {
    expect(announcementBodySchema.safeParse(body).success).toBe(valid);
  });
});

describe('ledger entries', () => {
  it('accepts a refusal, with any time zone offset', () => {
    expect(validate(ledgerEntrySchema, entry)).toEqual({ success: true, data: entry });
  });

  it('gives back the fields in one order, whatever order they came in', () => {
    const shuffled = Object.fromEntries(Object.entries(entry).reverse());
    const checked = validate(ledgerEntrySchema, shuffled);
    expect(checked.success && Object.keys(checked.data)).toEqual(['id', 'storeId', 'type', 'outcome', 'error', 'channel', 'executedAt', 'expiresAt']);
  });

  it('tells a misspelt field before the missing one it explains', () => {
    const { id, ...rest } = entry;
    expect(validate(ledgerEntrySchema, { ...rest, ID: id })).toEqual({
      success: false,
      problem: ' has an unknown field "ID" (allowed: id, storeId, type, outcome, result, error, channel, executedAt, expiresAt)',
    });
  });

  it.each([
    ['an empty store id', { ...entry, storeId: '' }, '.storeId must be a non-empty string, got ""'],
    ['a refusal that is not an object', { ...entry, error: 'no stock' }, '.error must be { code, message }, got "no stock"'],
    ['a refusal without its reason', { ...entry, error: undefined }, '.error must be { code, message } when outcome is "rejected"'],
    ['a result that is not JSON', { ...entry, result: { lines: [1, Number.POSITIVE_INFINITY] } }, '.result.lines[1] must be a finite number, got Infinity'],
    ['an array', [1], ' must be an object, got [1]'],
  ])('describes %s', (_label, value, problem) => {
    expect(validate(ledgerEntrySchema, value)).toEqual({ success: false, problem });
  });
});
