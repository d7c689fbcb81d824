import { describe, expect, it } from 'vitest';
import { Backoff, withJitter } from '../../src/core/backoff.js';

describe('back-off with jitter', () => {
  it('doubles the nominal delay up to the maximum and draws each wait from its upper half', () => {
    const lowest = new Backoff({ initialInMs: 100, maxInMs: 1_000, random: () => 0 });
    expect(Array.from({ length: 6 }, () => lowest.next())).toEqual([50, 100, 200, 400, 500, 500]);
    const highest = new Backoff({ initialInMs: 100, maxInMs: 1_000, random: () => 0.999_999 });
    expect(Array.from({ length: 6 }, () => highest.next())).toEqual([100, 200, 400, 800, 1_000, 1_000]);
  });

  it('spreads the waits of many clients that failed together', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 16_807) % 2_147_483_647) - 1) / 2_147_483_646;
    const waits = new Set(Array.from({ length: 100 }, () => new Backoff({ initialInMs: 1_000, maxInMs: 30_000, random }).next()));
    expect(waits.size).toBeGreaterThan(50);
    for (const wait of waits) expect(wait).toBeGreaterThanOrEqual(500);
  });

  it('starts over after reset', () => {
    const backoff = new Backoff({ initialInMs: 100, maxInMs: 1_000, random: () => 0 });
    backoff.next();
    backoff.next();
    backoff.reset();
    expect(backoff.next()).toBe(50);
  });

  it.each([
    [{ initialInMs: 0, maxInMs: 10 }, 'initialInMs must be a positive'],
    [{ initialInMs: 100, maxInMs: 10 }, 'maxInMs must be at least initialInMs'],
  ])('refuses %j', (options, message) => {
    expect(() => new Backoff(options)).toThrow(message);
  });
});

describe('withJitter', () => {
  it('draws from the upper half of the nominal delay', () => {
    expect(withJitter(1_000, () => 0)).toBe(500);
    expect(withJitter(1_000, () => 0.5)).toBe(750);
    expect(withJitter(1_000, () => 0.999_999)).toBe(1_000);
  });
});
