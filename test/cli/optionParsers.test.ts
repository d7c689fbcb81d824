import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { portNumber, wholeNumber } from '../../src/cli/optionParsers.js';

describe('command-line whole numbers', () => {
  it.each([
    ['1', 1],
    ['50', 50],
  ])('reads %s', (value, expected) => {
    expect(wholeNumber(1, 50)(value)).toBe(expected);
  });

  it.each(['0', '51', '-1', '2.5', '1e3', '', ' 7', '99999999999999999999'])('refuses %j with the range it expects', (value) => {
    expect(() => wholeNumber(1, 50)(value)).toThrow(new InvalidArgumentError('expected a whole number from 1 to 50'));
  });

  it('reads ports from 0 to 65535 and says what 0 means', () => {
    expect(portNumber('0')).toBe(0);
    expect(portNumber('65535')).toBe(65_535);
    expect(() => portNumber('65536')).toThrow('0 picks a free port');
  });
});
