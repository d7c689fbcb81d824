/** The console benchmark's smoke mode, so it never rots: it runs and reports; no figure is judged here (bench/ does that). */
import { describe, expect, it } from 'vitest';
import { runConsoleBench } from '../../bench/console.bench.js';
import { HAS_CHROMIUM, NO_CHROMIUM_MESSAGE } from '../support/browser.js';

describe.skipIf(!HAS_CHROMIUM)(`bench/console.bench.ts in smoke mode${HAS_CHROMIUM ? '' : ` (${NO_CHROMIUM_MESSAGE})`}`, () => {
  it('scrolls and filters 2,000 stores with only the rows in view in the DOM, and reports every phase', async () => {
    const result = await runConsoleBench({ stores: 2_000, scrollFrames: 30 });
    expect(result.stores).toBe(2_000);
    // 448 px of 28 px rows, 8 either side, and one spare: 33 elements, whatever the number of stores.
    expect(result.domRowsWhileScrolling).toBeLessThanOrEqual(40);
    expect(result.domRowsWhileScrolling).toBeGreaterThan(10);
    expect([result.idle.frames, result.scroll.frames, result.filter.frames]).toEqual([30, 30, 22]);
    expect(result.filter.keystrokes).toBe(22);
  }, 60_000);
});
