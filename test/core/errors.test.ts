import { describe, expect, it } from 'vitest';
import {
  STORELINK_ERROR_CODES,
  StorelinkError,
  cloudHttpStatusOf,
  isPermanentFailure,
  isStoreAnswerCode,
  isStorelinkError,
  isUnsendableMessage,
  isUsageErrorCode,
  relayFailureReasonOf,
  storeHttpStatusOf,
  withOperationId,
  type StorelinkErrorCode,
} from '../../src/core/errors.js';
import { RELAY_FAILURE_REASON_BY_CODE, type RelayFailureReason } from '../../src/core/linkContract.js';

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

  it('names the operation it is about, keeping code, message, field and retryability (withOperationId)', () => {
    const original = new StorelinkError('SERVICE_BUS_UNAVAILABLE', 'busy', { retryable: false, field: 'storeId' });
    expect(original.operationId).toBeUndefined();
    const named = withOperationId(original, 'op-1');
    expect(named).toMatchObject({ code: 'SERVICE_BUS_UNAVAILABLE', message: 'busy', retryable: false, field: 'storeId', operationId: 'op-1' });
    expect(named.cause).toBe(original);
    expect(withOperationId(named, 'op-2')).toBe(named);
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

type Row = [
  code: StorelinkErrorCode,
  retryable: boolean,
  relayFailure: RelayFailureReason | undefined,
  storeHttpStatus: number | undefined,
  storeAnswer: boolean,
  permanent: boolean,
  cloudHttpStatus: number,
  usageError: boolean,
];

// Written out by hand, not read from the table: a change to any fact of any code has to show up here as well.
const U = undefined;
const EXPECTED: Row[] = [
  // code                        retry  relay          store answer perm   cloud usage
  ['OPERATION_INVALID',          false, U,             400,  true,  true,  400,  false],
  ['PAYLOAD_TOO_LARGE',          false, U,             413,  true,  true,  413,  false],
  ['POLICY_INVALID',             false, U,             U,    false, false, 502,  false],
  ['FILE_NOT_FOUND',             false, U,             U,    false, false, 502,  true],
  ['FILE_UNREADABLE',            false, U,             U,    false, false, 502,  false],
  ['DATA_DIR_IN_USE',            true,  U,             U,    false, false, 503,  false],
  ['CHART_NOT_FOUND',            false, U,             U,    false, false, 502,  true],
  ['CHART_UNLOADABLE',           false, U,             U,    false, false, 502,  false],
  ['CHART_CONTRACT_VIOLATED',    false, U,             U,    false, false, 502,  false],
  ['CONNECTION_STRING_INVALID',  false, U,             U,    false, false, 502,  false],
  ['SAS_TOKEN_MALFORMED',        false, U,             U,    false, false, 502,  false],
  ['SAS_KEY_UNKNOWN',            false, U,             U,    false, false, 502,  false],
  ['SAS_SIGNATURE_INVALID',      false, U,             U,    false, false, 502,  false],
  ['SAS_TOKEN_EXPIRED',          true,  U,             U,    false, false, 503,  false],
  ['RELAY_NO_LISTENER',          true,  'no-listener', U,    false, false, 503,  false],
  ['RELAY_TIMEOUT',              true,  'timeout',     U,    false, false, 503,  false],
  ['RELAY_UNREACHABLE',          true,  'unreachable', U,    false, false, 503,  false],
  ['RELAY_UNAUTHORIZED',         false, 'unauthorized',U,    false, false, 502,  false],
  ['RELAY_ENDPOINT_NOT_FOUND',   false, 'no-listener', U,    false, false, 502,  false],
  ['RELAY_ANSWER_UNVERIFIED',    true,  'unauthorized',U,    false, false, 503,  false],
  ['QUEUE_NOT_FOUND',            false, U,             U,    false, false, 502,  false],
  ['SERVICE_BUS_UNAUTHORIZED',   false, U,             U,    false, false, 502,  false],
  ['SERVICE_BUS_UNAVAILABLE',    true,  U,             U,    false, false, 503,  false],
  ['MESSAGE_LOCK_LOST',          false, U,             U,    false, false, 502,  false],
  ['SIGNATURE_INVALID',          false, U,             400,  true,  true,  502,  false],
  ['OPERATION_MISROUTED',        false, U,             421,  true,  true,  502,  false],
  ['OPERATION_TYPE_UNKNOWN',     false, U,             U,    false, true,  502,  false],
  ['OPERATION_NOT_EXPOSED',      false, U,             404,  true,  false, 502,  false],
  ['OPERATION_EXPIRED',          false, U,             410,  true,  true,  502,  false],
  ['OPERATION_REJECTED',         false, U,             422,  true,  false, 502,  false],
  ['REPLY_TOO_LARGE',            false, U,             U,    false, false, 502,  false],
  ['HANDLER_FAILED',             true,  U,             500,  true,  false, 503,  false],
  ['STORE_UNAVAILABLE',          true,  'no-listener', 503,  true,  false, 503,  false],
  ['ROUTE_NOT_FOUND',            false, U,             404,  true,  false, 404,  false],
  ['STORE_UNKNOWN',              false, U,             U,    false, false, 404,  false],
  ['REALTIME_UNAVAILABLE',       true,  U,             U,    false, false, 503,  false],
  ['NO_CACHED_REPLY',            true,  U,             U,    false, false, 503,  false],
  ['ABORTED',                    false, U,             U,    false, false, 503,  false],
  ['OPERATION_NOT_FOUND',        false, U,             U,    false, false, 404,  false],
  ['OPERATION_ID_CONFLICT',      false, U,             U,    false, false, 409,  false],
  ['DATABASE_UNAVAILABLE',       true,  U,             U,    false, false, 503,  false],
  ['DATABASE_QUERY_FAILED',      false, U,             U,    false, false, 500,  false],
  ['DATABASE_MIGRATION_FAILED',  false, U,             U,    false, false, 502,  false],
  ['API_UNAUTHORIZED',           false, U,             U,    false, false, 401,  false],
  ['API_FORBIDDEN',              false, U,             U,    false, false, 403,  false],
  ['API_KEYS_UNAVAILABLE',       true,  U,             U,    false, false, 503,  false],
  ['DEAD_LETTER_NOT_FOUND',      false, U,             U,    false, false, 404,  false],
  ['REQUEST_TIMEOUT',            true,  U,             U,    false, false, 408,  false],
  ['UNEXPECTED_FAILURE',         true,  U,             U,    false, false, 500,  false],
];

describe('the error code table', () => {
  it('has a row here for every code, and no other', () => {
    expect(EXPECTED.map(([code]) => code).sort()).toEqual(Object.keys(STORELINK_ERROR_CODES).sort());
  });

  it.each(EXPECTED)('%s: retryable %s, relay failure %s, store status %s, store answer %s, permanent %s, cloud status %s, usage error %s', (
    code,
    retryable,
    relayFailure,
    storeHttpStatus,
    storeAnswer,
    permanent,
    cloudHttpStatus,
    usageError,
  ) => {
    const error = new StorelinkError(code, 'message');
    expect(error.retryable).toBe(retryable);
    expect(relayFailureReasonOf(code)).toBe(relayFailure);
    expect(storeHttpStatusOf(code)).toBe(storeHttpStatus);
    expect(isStoreAnswerCode(code)).toBe(storeAnswer);
    expect(isPermanentFailure(code)).toBe(permanent);
    expect(cloudHttpStatusOf(error)).toBe(cloudHttpStatus);
    expect(isUsageErrorCode(code)).toBe(usageError);
  });

  it('gives the cloud status from the error, so an overridden retryability moves a code between 502 and 503', () => {
    expect(cloudHttpStatusOf(new StorelinkError('SAS_TOKEN_EXPIRED', 'expired', { retryable: false }))).toBe(502);
    expect(cloudHttpStatusOf(new StorelinkError('QUEUE_NOT_FOUND', 'gone', { retryable: true }))).toBe(503);
    expect(cloudHttpStatusOf(new StorelinkError('OPERATION_INVALID', 'bad', { retryable: true }))).toBe(400);
  });

  it('names the codes that condemn a message at send, so the outbox parks it (and only those)', () => {
    const codes = Object.keys(STORELINK_ERROR_CODES) as StorelinkErrorCode[];
    expect(codes.filter((code) => isUnsendableMessage(code))).toEqual(['PAYLOAD_TOO_LARGE']);
  });

  it.each([['NOT_A_CODE'], [''], [42], [undefined], ['toString'], ['__proto__']])('does not take %j from a store as its answer', (code) => {
    expect(isStoreAnswerCode(code)).toBe(false);
  });

  it('still publishes the relay failure reasons by code, read from the table', () => {
    expect(RELAY_FAILURE_REASON_BY_CODE).toEqual({
      RELAY_NO_LISTENER: 'no-listener',
      RELAY_ENDPOINT_NOT_FOUND: 'no-listener',
      STORE_UNAVAILABLE: 'no-listener',
      RELAY_TIMEOUT: 'timeout',
      RELAY_UNREACHABLE: 'unreachable',
      RELAY_UNAUTHORIZED: 'unauthorized',
      RELAY_ANSWER_UNVERIFIED: 'unauthorized',
    });
    expect(Object.isFrozen(RELAY_FAILURE_REASON_BY_CODE)).toBe(true);
  });
});
