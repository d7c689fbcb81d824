/** The StorelinkError a call fails with; any other error is thrown again, and a call that succeeds fails the test. */
import { isStorelinkError, type StorelinkError } from '../../src/core/errors.js';

export async function failureOf(promise: Promise<unknown>): Promise<StorelinkError> {
  try {
    await promise;
  } catch (error) {
    if (isStorelinkError(error)) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}
