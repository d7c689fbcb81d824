/**
 * The one place where @azure/service-bus errors become storelink error codes. Retryability follows the storelink
 * code, not the SDK's flag: the SDK calls UnauthorizedAccess retryable, but a wrong key does not heal by retrying.
 */
import { isServiceBusError } from '@azure/service-bus';
import { StorelinkError, isStorelinkError, type StorelinkErrorCode } from '../../core/errors.js';

/** ServiceBusError.code → storelink code. Codes not listed become SERVICE_BUS_UNAVAILABLE. */
export const CODE_BY_SERVICE_BUS_CODE: Readonly<Record<string, StorelinkErrorCode>> = Object.freeze({
  MessagingEntityNotFound: 'QUEUE_NOT_FOUND',
  MessagingEntityDisabled: 'QUEUE_NOT_FOUND',
  UnauthorizedAccess: 'SERVICE_BUS_UNAUTHORIZED',
  MessageSizeExceeded: 'PAYLOAD_TOO_LARGE',
  MessageLockLost: 'MESSAGE_LOCK_LOST',
  SessionLockLost: 'MESSAGE_LOCK_LOST',
  MessageNotFound: 'MESSAGE_LOCK_LOST',
  QuotaExceeded: 'SERVICE_BUS_UNAVAILABLE',
  ServiceBusy: 'SERVICE_BUS_UNAVAILABLE',
  ServiceTimeout: 'SERVICE_BUS_UNAVAILABLE',
  ServiceCommunicationProblem: 'SERVICE_BUS_UNAVAILABLE',
  GeneralError: 'SERVICE_BUS_UNAVAILABLE',
});

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Maps anything the SDK throws (or reports to processError) to a StorelinkError. */
export function toStorelinkError(error: unknown, doing: string): StorelinkError {
  if (isStorelinkError(error)) return error;
  // After its retries the SDK may throw every attempt's error together; the last one says how it ended.
  if (error instanceof AggregateError && error.errors.length > 0) return toStorelinkError(error.errors.at(-1), doing);
  if (error instanceof Error && (error.name === 'AbortError' || error.name === 'AbortError2')) {
    return new StorelinkError('ABORTED', `${doing} was aborted`, { cause: error });
  }
  if (isServiceBusError(error)) {
    const code = CODE_BY_SERVICE_BUS_CODE[error.code] ?? 'SERVICE_BUS_UNAVAILABLE';
    return new StorelinkError(code, `${doing} failed (${error.code}): ${error.message}`, { cause: error });
  }
  // Socket-level failures (ECONNREFUSED, ETIMEDOUT, …) and anything else: the service could not be used just now.
  return new StorelinkError('SERVICE_BUS_UNAVAILABLE', `${doing} failed: ${messageOf(error)}`, { cause: error, retryable: true });
}
