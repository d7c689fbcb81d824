import { describe, expect, it } from 'vitest';
import { createOperation, isExpired, parseOperation, type Operation } from '../../src/core/operation.js';

const valid: Operation = {
  id: '3b241101-e2bb-4255-8caf-4136c566a962',
  storeId: 'paris-12',
  type: 'clickAndCollect.order',
  payload: { orderId: 'A-1', lines: [{ sku: 'SKU-1', quantity: 2 }] },
  latency: 'realtime',
  createdAt: '2026-11-28T10:00:00.000Z',
  expiresAt: '2026-11-28T11:00:00.000Z',
};

function failureOf(value: unknown, options?: { maxPayloadBytes: number }) {
  const result = parseOperation(value, options);
  if (result.success) throw new Error('expected the operation to be rejected');
  return result.error;
}

describe('parseOperation', () => {
  it('accepts a valid envelope with and without reply fields', () => {
    expect(parseOperation(valid)).toEqual({ success: true, data: valid });
    const withReply = { ...valid, replyTo: 'cloud-inbox', correlationId: 'c-1' };
    expect(parseOperation(withReply)).toEqual({ success: true, data: withReply });
  });

  it('accepts time zone offsets', () => {
    expect(parseOperation({ ...valid, createdAt: '2026-11-28T11:00:00+01:00' }).success).toBe(true);
  });

  it.each([
    ['id', { id: 'not-a-uuid' }],
    ['storeId', { storeId: 'Paris 12' }],
    ['storeId', { storeId: 'Paris-12' }],
    ['storeId', { storeId: '-paris' }],
    ['storeId', { storeId: 'x'.repeat(65) }],
    ['type', { type: 'order' }],
    ['type', { type: 'clickAndCollect..order' }],
    ['type', { type: 'clickAndCollect/order' }],
    ['latency', { latency: 'instant' }],
    ['createdAt', { createdAt: 'yesterday' }],
    ['createdAt', { createdAt: '2026-11-28T10:00:00' }],
    ['expiresAt', { expiresAt: '2026-11-28T09:00:00.000Z' }],
    ['expiresAt', { expiresAt: valid.createdAt }],
    ['replyTo', { replyTo: 'cloud inbox' }],
    ['correlationId', { correlationId: '' }],
    ['payload', { payload: undefined }],
    ['payload.when', { payload: { when: new Date() } }],
    ['payload.n', { payload: { n: Number.NaN } }],
    // Neither reaches the size check's JSON.stringify, which would throw on both.
    ['payload.n', { payload: { n: 10n } }],
    ['payload', { payload: (() => { const cyclic: Record<string, unknown> = {}; cyclic['self'] = cyclic; return cyclic; })() }],
  ])('names the failing field %s', (field, change) => {
    const error = failureOf({ ...valid, ...change });
    expect(error.code).toBe('OPERATION_INVALID');
    expect(error.field).toBe(field);
    expect(error.message).toContain(field);
  });

  it.each([null, 'text', 42, []])('rejects a non-object envelope (%j)', (value) => {
    expect(failureOf(value).code).toBe('OPERATION_INVALID');
  });

  it('reports a missing field by name', () => {
    const { storeId: _storeId, ...withoutStore } = valid;
    const error = failureOf(withoutStore);
    expect(error.field).toBe('storeId');
    expect(error.message).toMatch(/storeId/);
  });

  it('limits the serialized payload, 256 KiB by default', () => {
    const atLimit = { blob: 'x'.repeat(256 * 1024 - '{"blob":""}'.length) };
    expect(parseOperation({ ...valid, payload: atLimit }).success).toBe(true);
    const error = failureOf({ ...valid, payload: { blob: `${atLimit.blob}x` } });
    expect(error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(error.field).toBe('payload');
    expect(error.message).toContain('262145 bytes; the limit is 262144');
  });

  it('counts the payload in UTF-8 bytes, against a configurable limit', () => {
    const payload = { text: 'é'.repeat(10) };
    expect(parseOperation({ ...valid, payload }, { maxPayloadBytes: 31 }).success).toBe(true);
    expect(failureOf({ ...valid, payload }, { maxPayloadBytes: 30 }).code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('rejects a nonsensical payload limit', () => {
    expect(() => parseOperation(valid, { maxPayloadBytes: 0 })).toThrow(RangeError);
  });

  it('strips unknown fields so a newer cloud can talk to an older store', () => {
    const result = parseOperation({ ...valid, priority: 'high' });
    expect(result.success && 'priority' in result.data).toBe(false);
  });
});

describe('createOperation', () => {
  it('stamps id, creation and expiry', () => {
    const operation = createOperation(
      { storeId: 'lyon-3', type: 'stock.query', payload: { skus: ['A'] }, latency: 'realtime', timeToLiveInMs: 60_000 },
      { nowInMs: Date.parse('2026-11-28T10:00:00.000Z'), newId: () => valid.id },
    );
    expect(operation).toEqual({
      id: valid.id,
      storeId: 'lyon-3',
      type: 'stock.query',
      payload: { skus: ['A'] },
      latency: 'realtime',
      createdAt: '2026-11-28T10:00:00.000Z',
      expiresAt: '2026-11-28T10:01:00.000Z',
    });
  });

  it('generates distinct UUIDs by default', () => {
    const init = { storeId: 'lyon-3', type: 'stock.query', payload: null, latency: 'async' as const, timeToLiveInMs: 1000 };
    expect(createOperation(init).id).not.toBe(createOperation(init).id);
  });

  it('throws the validation error for bad input', () => {
    expect(() =>
      createOperation({ storeId: 'LYON', type: 'stock.query', payload: null, latency: 'async', timeToLiveInMs: 1000 }),
    ).toThrow(expect.objectContaining({ code: 'OPERATION_INVALID', field: 'storeId' }));
    expect(() =>
      createOperation({ storeId: 'lyon', type: 'stock.query', payload: null, latency: 'async', timeToLiveInMs: -1 }),
    ).toThrow(RangeError);
  });
});

describe('isExpired', () => {
  it('is true from expiresAt on', () => {
    const expiry = Date.parse(valid.expiresAt);
    expect(isExpired(valid, expiry - 1)).toBe(false);
    expect(isExpired(valid, expiry)).toBe(true);
  });
});
