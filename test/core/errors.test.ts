import { describe, expect, it } from 'vitest';
import { STORELINK_ERROR_CODES, StorelinkError, isStorelinkError, type StorelinkErrorCode } from '../../src/core/errors.js';

describe('StorelinkError', () => {
  const codes = Object.keys(STORELINK_ERROR_CODES) as StorelinkErrorCode[];

  it.each(codes)('%s carries its code, default retryability and name', (code) => {
    const error = new StorelinkError(code, 'message');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('StorelinkError');
    expect(error.code).toBe(code);
    expect(error.retryable).toBe(STORELINK_ERROR_CODES[code].retryable);
  });

  it('keeps the cause and field, and lets the caller override retryability', () => {
    const cause = new Error('socket closed');
    const error = new StorelinkError('SAS_TOKEN_EXPIRED', 'expired', { cause, retryable: false, field: 'se' });
    expect(error.cause).toBe(cause);
    expect(error.retryable).toBe(false);
    expect(error.field).toBe('se');
  });

  it('is recognised by isStorelinkError, optionally by code', () => {
    const error = new StorelinkError('POLICY_INVALID', 'bad');
    expect(isStorelinkError(error)).toBe(true);
    expect(isStorelinkError(error, 'POLICY_INVALID')).toBe(true);
    expect(isStorelinkError(error, 'OPERATION_INVALID')).toBe(false);
    expect(isStorelinkError(new Error('plain'))).toBe(false);
  });
});

describe('isStorelinkError across module instances', () => {
  it('recognises an error from another copy of the class by its brand', async () => {
    const url = new URL('../../src/core/errors.ts', import.meta.url);
    const other = (await import(`${url.href}?copy=${Date.now()}`)) as { StorelinkError: typeof StorelinkError };
    expect(other.StorelinkError).not.toBe(StorelinkError);
    const foreign = new other.StorelinkError('OPERATION_REJECTED', 'no stock');
    expect(foreign instanceof StorelinkError).toBe(false);
    expect(isStorelinkError(foreign, 'OPERATION_REJECTED')).toBe(true);
    expect(isStorelinkError(Object.assign(new Error('x'), { code: 'OPERATION_REJECTED', name: 'StorelinkError' }))).toBe(false);
  });
});
