import { describe, expect, it } from 'vitest';
import { closeReason } from '../../../src/emulator/relay/listenerChannel.js';

describe('closeReason', () => {
  it('keeps short ASCII reasons', () => {
    expect(closeReason('ExpiredToken: gone')).toBe('ExpiredToken: gone');
  });

  it('replaces non-ASCII and control characters and fits the 123-byte limit', () => {
    const reason = closeReason(`bad \u2603\r\n${'x'.repeat(500)}`);
    expect(reason.startsWith('bad ???')).toBe(true);
    expect(Buffer.byteLength(reason)).toBe(123);
  });
});
