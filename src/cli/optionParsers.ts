/** How command-line option values are read: one parser for whole numbers in a range, with a message that says it. */
import { InvalidArgumentError } from 'commander';
import { KEY_ID_PATTERN } from '../core/signing.js';

/** A whole number from `min` to `max`; `expected` replaces the default message when a word says more (a port). */
export function wholeNumber(min: number, max: number, expected = `expected a whole number from ${min} to ${max}`) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed) || parsed < min || parsed > max) throw new InvalidArgumentError(expected);
    return parsed;
  };
}

export const portNumber = wholeNumber(0, 65_535, 'expected a port number from 0 to 65535 (0 picks a free port)');

/** A signing key id. */
export function keyId(value: string): string {
  if (!KEY_ID_PATTERN.test(value)) throw new InvalidArgumentError('expected a key id: 1 to 64 letters, digits, ".", "_" or "-"');
  return value;
}
