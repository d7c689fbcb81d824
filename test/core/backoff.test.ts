import { describe, expect, it } from 'vitest';
import { Backoff, RetryWindow, type RetryStep, withJitter } from '../../src/core/backoff.js';

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

describe('RetryWindow: retries bounded by a window and a deadline', () => {
  const T = 1_000_000;
  /** Plays failed attempts that each fail the moment they start, and returns the waits until the window says stop. */
  function waits(window: RetryWindow, startInMs = T): number[] {
    const result: number[] = [];
    let now = startInMs;
    for (let step: RetryStep = window.next(now); step.retry; step = window.next(now)) {
      result.push(step.delayInMs);
      now += step.delayInMs;
      if (result.length > 100) throw new Error('the window never closed');
    }
    return result;
  }

  it('backs off exponentially and cuts the last wait at the end of the window', () => {
    const window = new RetryWindow({ initialDelayInMs: 100, maxDelayInMs: 5_000, maxRetryWindowInMs: 10_000, startedAtInMs: T, random: () => 0.999_999 });
    expect(waits(window)).toEqual([100, 200, 400, 800, 1_600, 3_200, 3_700]);
  });

  it('never waits less than half the nominal delay, so a short outage costs few attempts', () => {
    const window = new RetryWindow({ initialDelayInMs: 100, maxDelayInMs: 5_000, maxRetryWindowInMs: 5_000, startedAtInMs: T, random: () => 0 });
    expect(waits(window)).toEqual([50, 100, 200, 400, 800, 1_600, 1_850]);
  });

  it('makes no retry with an empty window', () => {
    const window = new RetryWindow({ initialDelayInMs: 100, maxDelayInMs: 5_000, maxRetryWindowInMs: 0, startedAtInMs: T });
    expect(window.next(T)).toEqual({ retry: false });
  });

  it('waits no later than the deadline, retries once at it, then stops', () => {
    const window = new RetryWindow({ initialDelayInMs: 100, maxDelayInMs: 5_000, maxRetryWindowInMs: 60_000, startedAtInMs: T, deadlineInMs: T + 1_000, random: () => 0.999_999 });
    expect(waits(window)).toEqual([100, 200, 400, 300, 0]);
  });

  it('retries at once, a single time, when the deadline passed before the first failure', () => {
    const window = new RetryWindow({ initialDelayInMs: 100, maxDelayInMs: 5_000, maxRetryWindowInMs: 60_000, startedAtInMs: T, deadlineInMs: T - 1 });
    expect(waits(window)).toEqual([0]);
  });

  it('lets the deadline win over an ended window, so an expired operation is reported as expired', () => {
    const window = new RetryWindow({ initialDelayInMs: 100, maxDelayInMs: 5_000, maxRetryWindowInMs: 1_000, startedAtInMs: T, deadlineInMs: T + 500 });
    expect(window.next(T + 2_000)).toEqual({ retry: true, delayInMs: 0 });
    expect(window.next(T + 2_000)).toEqual({ retry: false });
  });

  it.each([
    [{ maxRetryWindowInMs: -1 }, 'maxRetryWindowInMs must be'],
    [{ maxRetryWindowInMs: Number.NaN }, 'maxRetryWindowInMs must be'],
    [{ startedAtInMs: Number.NaN }, 'startedAtInMs must be'],
    [{ initialDelayInMs: 0 }, 'initialInMs must be a positive'],
    [{ maxDelayInMs: 10 }, 'maxInMs must be at least initialInMs'],
  ])('refuses %j', (override, message) => {
    expect(() => new RetryWindow({ initialDelayInMs: 100, maxDelayInMs: 5_000, maxRetryWindowInMs: 1_000, startedAtInMs: T, ...override })).toThrow(message);
  });
});
