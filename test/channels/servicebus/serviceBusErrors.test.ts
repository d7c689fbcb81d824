import { ServiceBusError } from '@azure/service-bus';
import { describe, expect, it } from 'vitest';
import { CODE_BY_SERVICE_BUS_CODE, toStorelinkError } from '../../../src/channels/servicebus/serviceBusErrors.js';
import { StorelinkError } from '../../../src/core/errors.js';

describe('toStorelinkError: every ServiceBusError code has one storelink code', () => {
  it.each([
    ['MessagingEntityNotFound', 'QUEUE_NOT_FOUND', false],
    ['MessagingEntityDisabled', 'QUEUE_NOT_FOUND', false],
    ['UnauthorizedAccess', 'SERVICE_BUS_UNAUTHORIZED', false],
    ['MessageSizeExceeded', 'PAYLOAD_TOO_LARGE', false],
    ['MessageLockLost', 'MESSAGE_LOCK_LOST', false],
    ['SessionLockLost', 'MESSAGE_LOCK_LOST', false],
    ['MessageNotFound', 'MESSAGE_LOCK_LOST', false],
    ['QuotaExceeded', 'SERVICE_BUS_UNAVAILABLE', true],
    ['ServiceBusy', 'SERVICE_BUS_UNAVAILABLE', true],
    ['ServiceTimeout', 'SERVICE_BUS_UNAVAILABLE', true],
    ['ServiceCommunicationProblem', 'SERVICE_BUS_UNAVAILABLE', true],
    ['GeneralError', 'SERVICE_BUS_UNAVAILABLE', true],
    ['MessagingEntityAlreadyExists', 'SERVICE_BUS_UNAVAILABLE', true],
    ['SessionCannotBeLocked', 'SERVICE_BUS_UNAVAILABLE', true],
  ] as const)('%s → %s (retryable %s)', (sdkCode, code, retryable) => {
    const mapped = toStorelinkError(new ServiceBusError('boom', sdkCode), 'sending to q1');
    expect(mapped.code).toBe(code);
    expect(mapped.retryable).toBe(retryable);
    expect(mapped.message).toBe(`sending to q1 failed (${sdkCode}): boom`);
    expect(mapped.cause).toBeInstanceOf(ServiceBusError);
  });

  it('covers every code of the table', () => {
    expect(Object.keys(CODE_BY_SERVICE_BUS_CODE).length).toBe(12);
  });

  it('takes the last attempt of an AggregateError of retries', () => {
    const error = new AggregateError([new ServiceBusError('first', 'ServiceBusy'), new ServiceBusError('last', 'UnauthorizedAccess')]);
    expect(toStorelinkError(error, 'x').code).toBe('SERVICE_BUS_UNAUTHORIZED');
  });

  it('maps aborts, socket errors and unknown throws', () => {
    const abort = Object.assign(new Error('The operation was aborted.'), { name: 'AbortError' });
    expect(toStorelinkError(abort, 'x').code).toBe('ABORTED');
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5672'), { code: 'ECONNREFUSED' });
    expect(toStorelinkError(refused, 'x')).toMatchObject({ code: 'SERVICE_BUS_UNAVAILABLE', retryable: true });
    expect(toStorelinkError('weird', 'x').message).toBe('x failed: weird');
  });

  it('passes StorelinkErrors through', () => {
    const original = new StorelinkError('PAYLOAD_TOO_LARGE', 'too big');
    expect(toStorelinkError(original, 'x')).toBe(original);
  });
});
